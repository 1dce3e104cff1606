//! Fleet archives: Parquet files with one row per sample, and their conversion from CSV.
//!
//! Layout (what [`table`] reads):
//! - Hive-partitioned: `DIR/device=NAME/*.parquet`, the files holding `t`, the channel columns
//!   and optionally `label` (the device comes from the directory name); what `fleet convert`
//!   and `fleet generate` write; or
//! - flat: `DIR/*.parquet` (any depth), each file holding a `device` column too.
//!
//! Columns: `device` (string), `t` (unsigned or signed integer: the sample index, increasing
//! within a device; a missing index is a dropped sample), one float column per channel (named
//! as the model's channels; null or NaN is a sensor fault; a row whose channels are all null is
//! a dropped sample, as an empty CSV row is), and optionally `label` (0/1 or boolean).
//!
//! `fleet convert --data run.csv --device NAME --archive DIR` writes the CSV as
//! `DIR/device=NAME/part-0.parquet`: `t` is the CSV row index (from 0), an empty row becomes an
//! all-null row, so scoring the archive gives `tinyvae score`'s rows on the CSV.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use datafusion::arrow::array::{
    ArrayRef, Float32Builder, RecordBatch, UInt64Builder, UInt8Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::data::{CsvRows, NonFinite};
use crate::output::FileWriter;

/// Rows per Parquet row group (and per written batch).
pub const ROWS_PER_BATCH: usize = 65_536;

/// Checks a device name: 1 to 128 characters among `A-Z a-z 0-9 _ - .`, not starting with `.`
/// (it names a directory `device=NAME`).
///
/// # Errors
/// A name outside that set, with the rule.
pub fn check_device(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        bail!(
            "--device {name:?}: a device name is 1 to 128 characters among A-Z a-z 0-9 _ - . \
             (not starting with .)"
        );
    }
    Ok(())
}

/// The schema of a device's file: `t`, the channels, and `label` if `labels`.
pub fn sample_schema(channels: &[String], labels: bool) -> SchemaRef {
    let mut f = vec![Field::new("t", DataType::UInt64, false)];
    f.extend(
        channels
            .iter()
            .map(|c| Field::new(c.as_str(), DataType::Float32, true)),
    );
    if labels {
        f.push(Field::new("label", DataType::UInt8, false));
    }
    Arc::new(Schema::new(f))
}

/// Writes one device's samples as `archive/device=NAME/part-0.parquet`.
pub struct DeviceWriter {
    path: PathBuf,
    w: ArrowWriter<FileWriter>,
    schema: SchemaRef,
    t: UInt64Builder,
    ch: Vec<Float32Builder>,
    label: Option<UInt8Builder>,
    len: usize,
    /// Rows written.
    pub rows: u64,
}

impl DeviceWriter {
    /// Starts the file of device `name` in `archive` (refusing a device already there).
    ///
    /// # Errors
    /// A bad device name, an existing device, I/O errors.
    pub fn create(archive: &Path, name: &str, channels: &[String], labels: bool) -> Result<Self> {
        check_device(name)?;
        let dir = archive.join(format!("device={name}"));
        if dir.exists() {
            bail!(
                "{}: device {name} is already in the archive (remove that directory to replace it)",
                dir.display()
            );
        }
        let path = dir.join("part-0.parquet");
        let schema = sample_schema(channels, labels);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(ROWS_PER_BATCH))
            .build();
        let w = ArrowWriter::try_new(FileWriter::create(&path)?, schema.clone(), Some(props))?;
        Ok(Self {
            path,
            w,
            schema,
            t: UInt64Builder::with_capacity(ROWS_PER_BATCH),
            ch: channels
                .iter()
                .map(|_| Float32Builder::with_capacity(ROWS_PER_BATCH))
                .collect(),
            label: labels.then(|| UInt8Builder::with_capacity(ROWS_PER_BATCH)),
            len: 0,
            rows: 0,
        })
    }

    /// Appends the sample at index `t` (`None` values: null, e.g. a dropped sample's row).
    ///
    /// # Errors
    /// A failed write.
    pub fn push(&mut self, t: u64, values: &[Option<f32>], label: u8) -> Result<()> {
        self.t.append_value(t);
        for (b, v) in self.ch.iter_mut().zip(values) {
            b.append_option(*v);
        }
        if let Some(l) = self.label.as_mut() {
            l.append_value(label);
        }
        self.len += 1;
        self.rows += 1;
        if self.len >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.t.finish())];
        cols.extend(self.ch.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        if let Some(l) = self.label.as_mut() {
            cols.push(Arc::new(l.finish()));
        }
        self.w
            .write(&RecordBatch::try_new(self.schema.clone(), cols)?)?;
        self.len = 0;
        Ok(())
    }

    /// Finishes the file and moves it into place; returns its path.
    ///
    /// # Errors
    /// A failed write.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        let out = self
            .w
            .into_inner()
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        out.commit()?;
        Ok(self.path)
    }
}

/// `fleet convert`: adds the CSV stream `csv` to `archive` as device `name`; returns the rows
/// written and the file.
///
/// # Errors
/// A bad CSV (file:line:column), a bad or existing device, I/O errors.
pub fn convert(csv: &Path, name: &str, archive: &Path) -> Result<(u64, PathBuf)> {
    check_device(name)?;
    let mut rows = CsvRows::open(csv, NonFinite::Keep)?;
    let channels = rows.channels().to_vec();
    let mut w = DeviceWriter::create(archive, name, &channels, rows.has_labels())?;
    let mut values = vec![None; channels.len()];
    let mut t = 0u64;
    while let Some(row) = rows.next_row()? {
        for (v, x) in values.iter_mut().zip(&row.values) {
            *v = (!row.gap).then_some(*x);
        }
        w.push(t, &values, row.label.unwrap_or(0))?;
        t += 1;
    }
    if t == 0 {
        bail!("{}: no data rows", csv.display());
    }
    Ok((t, w.finish()?))
}

/// Whether `archive` is Hive-partitioned (holds a `device=...` directory).
pub fn is_hive(archive: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(archive)
        .with_context(|| format!("{}: cannot read the archive directory", archive.display()))?;
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() && e.file_name().to_string_lossy().starts_with("device=") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The archive as a DataFusion listing table (schema inferred from its files).
///
/// # Errors
/// A missing or empty archive, files DataFusion cannot read, no `device` or `t` column.
pub async fn table(state: &dyn Session, archive: &Path) -> Result<ListingTable> {
    let abs =
        std::path::absolute(archive).with_context(|| format!("{}: bad path", archive.display()))?;
    let mut opts =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if is_hive(&abs)? {
        opts = opts.with_table_partition_cols(vec![("device".to_string(), DataType::Utf8)]);
    }
    let mut url = abs.to_string_lossy().to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    let url = ListingTableUrl::parse(&url)?;
    let cfg = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .infer_schema(state)
        .await
        .with_context(|| format!("{}: cannot read the archive", archive.display()))?;
    let t = ListingTable::try_new(cfg)?;
    let schema = datafusion::catalog::TableProvider::schema(&t);
    for c in ["device", "t"] {
        if schema.column_with_name(c).is_none() {
            bail!("{}: the archive has no {c:?} column", archive.display());
        }
    }
    Ok(t)
}
