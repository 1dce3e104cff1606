//! The scan of a Hive-partitioned archive (`DIR/device=NAME/*.parquet`) without a sort or a
//! shuffle: each task reads whole devices, one after the other, in name order, each device's
//! files in name order.
//!
//! The writers of this crate (`fleet convert`, `fleet generate`) write a device's samples in
//! `t` order, so the scan's output is already what the scoring operator needs: no device is
//! split between tasks and a task's rows are in `(device, t)` order. The scan reads each task's
//! files one after the other in the given order (the declared ordering makes DataFusion keep
//! the file order instead of letting idle tasks take files from one another), the operator asks
//! the planner for no repartition and no sort ([`super::exec::FleetScoreExec::in_order`]), and a
//! task holds one Parquet batch at a time however large the archive. DataFusion only trusts a
//! declared ordering across several files when per-file statistics prove it, so it may still
//! report the scan as unordered; the order is checked where it matters instead: the operator
//! refuses a `t` that repeats or goes back and a device that comes back after another
//! ([`super::rows`]), so an archive written out of order by another tool gets an error, not
//! wrong windows.
//!
//! Devices are spread over at most `target_partitions` tasks by size, largest first onto the
//! least loaded task (LPT: within 4/3 of the best balance).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

/// One device of a Hive-partitioned archive: its name and its Parquet files (name order) with
/// their sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceFiles {
    /// The device (`device=NAME`).
    pub name: String,
    /// Its files, sorted by name, with their sizes in bytes.
    pub files: Vec<(PathBuf, u64)>,
}

impl DeviceFiles {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }
}

/// The devices of a Hive-partitioned archive, sorted by name (devices without a Parquet file
/// are left out).
///
/// # Errors
/// An unreadable directory.
pub fn list_devices(archive: &Path) -> Result<Vec<DeviceFiles>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(archive)
        .with_context(|| format!("{}: cannot read the archive directory", archive.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(device) = name.strip_prefix("device=") else {
            continue;
        };
        if !e.file_type()?.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        for f in std::fs::read_dir(e.path())
            .with_context(|| format!("{}: cannot read", e.path().display()))?
        {
            let f = f?;
            let p = f.path();
            if f.file_type()?.is_file() && p.extension().is_some_and(|x| x == "parquet") {
                files.push((p, f.metadata()?.len()));
            }
        }
        if files.is_empty() {
            continue;
        }
        files.sort();
        out.push(DeviceFiles {
            name: device.to_string(),
            files,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Devices (by index into `devices`) per task: at most `tasks` non-empty groups, largest device
/// first onto the least loaded group, each group in name order.
pub fn assign(devices: &[DeviceFiles], tasks: usize) -> Vec<Vec<usize>> {
    let n = tasks.clamp(1, devices.len().max(1));
    let mut order: Vec<usize> = (0..devices.len()).collect();
    order.sort_by(|&a, &b| devices[b].bytes().cmp(&devices[a].bytes()).then(a.cmp(&b)));
    let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); n];
    for i in order {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += devices[i].bytes();
            g.1.push(i);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|(_, mut g)| {
            g.sort_unstable();
            g
        })
        .collect()
}

/// The scan of `devices` (columns of `table_schema`, whose last field is the `device`
/// partition column) projected to `projection`, in at most `tasks` partitions (see the module
/// doc).
///
/// # Errors
/// A schema without `device` last or without `t`, an empty archive.
pub fn hive_scan(
    devices: &[DeviceFiles],
    table_schema: &SchemaRef,
    projection: &[usize],
    tasks: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let n = table_schema.fields().len();
    let (Some(last), Ok(t_idx)) = (table_schema.fields().last(), table_schema.index_of("t")) else {
        bail!("archive: no \"t\" column");
    };
    if last.name() != "device" {
        bail!("archive: the device partition column is not last");
    }
    if devices.is_empty() {
        bail!("archive: no device has a Parquet file");
    }
    let device_idx = n - 1;
    let file_schema: SchemaRef =
        Arc::new(Schema::new(table_schema.fields()[..device_idx].to_vec()));
    let schema = TableSchemaBuilder::new(file_schema)
        .with_table_partition_cols(vec![Arc::new(Field::new("device", DataType::Utf8, false))])
        .build();
    let groups: Vec<FileGroup> = assign(devices, tasks)
        .into_iter()
        .map(|g| {
            FileGroup::new(
                g.into_iter()
                    .flat_map(|i| {
                        let d = &devices[i];
                        d.files.iter().map(move |(p, size)| {
                            PartitionedFile::new(p.to_string_lossy().to_string(), *size)
                                .with_partition_values(vec![ScalarValue::Utf8(Some(
                                    d.name.clone(),
                                ))])
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    let parts = groups.len();
    let device: Arc<dyn PhysicalExpr> = Arc::new(Column::new("device", device_idx));
    let t: Arc<dyn PhysicalExpr> = Arc::new(Column::new("t", t_idx));
    let ordering = LexOrdering::new([
        PhysicalSortExpr::new_default(device.clone()),
        PhysicalSortExpr::new_default(t),
    ]);
    let config = FileScanConfigBuilder::new(
        ObjectStoreUrl::local_filesystem(),
        Arc::new(ParquetSource::new(schema)),
    )
    .with_file_groups(groups)
    .with_projection_indices(Some(projection.to_vec()))?
    .with_output_ordering(ordering.into_iter().collect())
    .with_output_partitioning(Some(Partitioning::Hash(vec![device], parts)))
    .build();
    Ok(DataSourceExec::from_data_source(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, sizes: &[u64]) -> DeviceFiles {
        DeviceFiles {
            name: name.into(),
            files: sizes
                .iter()
                .enumerate()
                .map(|(i, s)| (PathBuf::from(format!("part-{i}.parquet")), *s))
                .collect(),
        }
    }

    #[test]
    fn assign_balances_whole_devices_and_keeps_name_order() {
        let d = [
            dev("a", &[10]),
            dev("b", &[50]),
            dev("c", &[20, 20]),
            dev("d", &[30]),
        ];
        let g = assign(&d, 2);
        assert_eq!(g, vec![vec![0, 1], vec![2, 3]], "b(50)+a(10) | c(40)+d(30)");
        let mut all: Vec<usize> = g.concat();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3], "every device once");
        assert_eq!(assign(&d, 9).len(), 4, "no empty task");
        assert_eq!(assign(&d, 0).len(), 1);
    }
}
