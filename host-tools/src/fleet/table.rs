//! [`FleetScoreTable`]: the window table of an archive scored by a model, as a DataFusion table.
//!
//! Scanning it plans the archive's listing table (only the columns the detector reads) under a
//! [`FleetScoreExec`]; the engine adds the repartition by device and the sort by `(device, t)`
//! that operator requires. The table is what the client hands the engine: locally a
//! `SessionContext`, distributed Ballista's (its logical plan names this table, encoded by
//! [`super::codec`], and the scheduler plans it as here).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::archive;
use super::exec::FleetScoreExec;
use super::scan;
use super::schema::window_schema;
use super::spec::ScoreSpec;

/// An archive scored by a model (see the module doc).
#[derive(Debug, Clone)]
pub struct FleetScoreTable {
    /// The job.
    pub spec: ScoreSpec,
    /// The archive directory (absolute).
    pub archive: PathBuf,
    /// Channel columns to read (the model's).
    pub channels: Vec<String>,
    /// Whether the archive has a `label` column.
    pub labels: bool,
}

impl FleetScoreTable {
    /// The table of `archive` scored as `spec` says, reading `channels`.
    pub fn new(spec: ScoreSpec, archive: PathBuf, channels: Vec<String>, labels: bool) -> Self {
        Self {
            spec,
            archive,
            channels,
            labels,
        }
    }
}

fn df(e: anyhow::Error) -> DataFusionError {
    DataFusionError::External(format!("{e:#}").into())
}

#[async_trait]
impl TableProvider for FleetScoreTable {
    fn schema(&self) -> SchemaRef {
        window_schema(self.labels)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let t = archive::table(state, &self.archive).await.map_err(df)?;
        let schema = t.schema();
        let mut names = vec!["device".to_string(), "t".to_string()];
        names.extend(self.channels.iter().cloned());
        if self.labels {
            names.push("label".into());
        }
        let cols = names
            .iter()
            .map(|n| {
                schema.index_of(n).map_err(|_| {
                    DataFusionError::Plan(format!(
                        "{}: the archive has no column {n:?} (the model's channels are {})",
                        self.archive.display(),
                        self.channels.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // A Hive-partitioned archive is read device by device, already in order (no sort, no
        // shuffle: `super::scan`); a flat one through the listing table, and the engine sorts.
        let devices = if archive::is_hive(&self.archive).map_err(df)? {
            Some(scan::list_devices(&self.archive).map_err(df)?)
        } else {
            None
        };
        let in_order = devices.is_some();
        let input = match devices {
            Some(d) => {
                let tasks = state.config().target_partitions();
                scan::hive_scan(&d, &schema, &cols, tasks).map_err(df)?
            }
            None => t.scan(state, Some(&cols), &[], None).await?,
        };
        let exec: Arc<dyn ExecutionPlan> = Arc::new(FleetScoreExec::new(
            self.spec.clone(),
            self.labels,
            in_order,
            input,
        ));
        match projection {
            None => Ok(exec),
            Some(p) => {
                let exprs = p
                    .iter()
                    .map(|&i| {
                        let f = exec.schema().field(i).clone();
                        let c: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                            datafusion::physical_expr::expressions::Column::new(f.name(), i),
                        );
                        (c, f.name().to_string())
                    })
                    .collect::<Vec<_>>();
                Ok(Arc::new(
                    datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, exec)?,
                ))
            }
        }
    }
}
