//! The fleet jobs a command runs on an [`Engine`]: [`score`] (the window table and the device
//! summary) and [`calibrate`] (per-device thresholds at a target false-positive rate), and the
//! thresholds table they share ([`read_thresholds`], [`thresholds_csv`]).
//!
//! Calibration follows the checkpoint's rule ([`crate::metrics::threshold_at_fpr`]): device
//! `d`'s threshold lets at most `floor(fpr n)` of its `n` normal windows raise the alarm, the
//! normal windows being the scored ones without a fault and (if the archive is labeled)
//! without an anomalous row. It keeps one `f32` per normal window until the end (4 bytes a
//! window: 40 MB for 10^7 windows).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float32Type;
use futures::StreamExt;

use super::archive;
use super::engine::{device_summary, local_context, write_batches, write_streams, Engine};
use super::spec::{ScoreSpec, Scorer};
use super::table::FleetScoreTable;
use crate::metrics::threshold_at_fpr;

/// What a scoring job wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSummary {
    /// Window rows.
    pub windows: u64,
    /// Devices.
    pub devices: usize,
    /// Output partitions (files under `windows/`).
    pub files: usize,
    /// Seconds of the scoring (plan, scan, sort, score, write).
    pub seconds: f64,
}

/// The table of `archive` scored as `spec` says (checking both first, on the client).
async fn scored_table(spec: &ScoreSpec, archive: &Path) -> Result<FleetScoreTable> {
    let mut spec = spec.clone();
    spec.model = std::path::absolute(&spec.model)?;
    let scorer = Scorer::new(&spec)?;
    let channels = scorer.channels().to_vec();
    let archive = std::path::absolute(archive)?;
    let ctx = local_context(1, 64 << 20)?;
    let t = archive::table(&ctx.state(), &archive).await?;
    let schema = datafusion::catalog::TableProvider::schema(&t);
    for c in &channels {
        if schema.column_with_name(c).is_none() {
            bail!(
                "{}: the archive has no column {c:?} (the model's channels are {})",
                archive.display(),
                channels.join(", ")
            );
        }
    }
    let labels = schema.column_with_name("label").is_some();
    Ok(FleetScoreTable::new(spec, archive, channels, labels))
}

/// Scores `archive` on `engine` into `out` (a directory, e.g. a staging one): `windows/part-*.
/// parquet` and `devices.parquet`.
///
/// # Errors
/// A bad model or archive, a failed task or write.
pub async fn score(
    engine: &Engine,
    spec: &ScoreSpec,
    archive: &Path,
    out: &Path,
) -> Result<ScoreSummary> {
    let table = scored_table(spec, archive).await?;
    let ctx = engine.context().await?;
    let t0 = std::time::Instant::now();
    let df = ctx.read_table(Arc::new(table))?;
    let streams = df.execute_stream_partitioned().await?;
    let files = streams.len();
    let windows_dir = out.join("windows");
    let windows = write_streams(streams, &windows_dir).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let summary = device_summary(&windows_dir).await?;
    let devices = summary.iter().map(|b| b.num_rows()).sum();
    if devices > 0 {
        write_batches(&out.join("devices.parquet"), &summary)?;
    } else {
        bail!("{}: no device has a full window", archive.display());
    }
    Ok(ScoreSummary {
        windows,
        devices,
        files,
        seconds,
    })
}

/// One device's calibrated threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceThreshold {
    /// The device.
    pub device: String,
    /// The threshold.
    pub threshold: f32,
    /// Normal windows it was calibrated on.
    pub normal_windows: usize,
}

/// What [`calibrate`] found: a threshold per device with normal windows, and the devices
/// without any (every window skipped, flagged or anomalous), which keep the model's threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Devices with a threshold, sorted by name.
    pub thresholds: Vec<DeviceThreshold>,
    /// Devices with windows but no normal one, sorted by name.
    pub without_normal: Vec<String>,
}

/// Calibrates a threshold per device of `archive` at `fpr` (see the module doc).
///
/// # Errors
/// A bad model or archive, `fpr` outside `0 < fpr < 1`, a failed task, no device with a
/// normal window.
pub async fn calibrate(
    engine: &Engine,
    spec: &ScoreSpec,
    archive: &Path,
    fpr: f64,
) -> Result<Calibration> {
    if !(fpr > 0.0 && fpr < 1.0) {
        bail!("--fpr {fpr}: valid values are 0 < FPR < 1");
    }
    let table = scored_table(spec, archive).await?;
    let labels = table.labels;
    let ctx = engine.context().await?;
    let mut cols = vec!["device", "score", "faults"];
    if labels {
        cols.push("label");
    }
    let df = ctx.read_table(Arc::new(table))?.select_columns(&cols)?;
    let mut scores: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut s = df.execute_stream().await?;
    while let Some(b) = s.next().await {
        let b = b?;
        let d = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )?;
        let d = d.as_string::<i32>();
        let v = b.column(1).as_primitive::<Float32Type>();
        let faults = b.column(2);
        let label = labels.then(|| b.column(3).as_boolean());
        for i in 0..b.num_rows() {
            let per_device = scores.entry(d.value(i).to_string()).or_default();
            let anomalous = label.is_some_and(|l| l.is_valid(i) && l.value(i));
            if v.is_valid(i) && faults.is_null(i) && !anomalous {
                per_device.push(v.value(i));
            }
        }
    }
    let mut out = Calibration {
        thresholds: Vec::new(),
        without_normal: Vec::new(),
    };
    for (device, s) in scores {
        match threshold_at_fpr(&s, fpr) {
            Some(threshold) => out.thresholds.push(DeviceThreshold {
                device,
                threshold,
                normal_windows: s.len(),
            }),
            None => out.without_normal.push(device),
        }
    }
    if out.thresholds.is_empty() {
        bail!(
            "{}: no device has a normal scored window",
            archive.display()
        );
    }
    Ok(out)
}

/// The thresholds table: `device,threshold,normal_windows,fpr`, one line per device
/// (thresholds printed so they parse back to the same `f32`).
pub fn thresholds_csv(t: &[DeviceThreshold], fpr: f64) -> String {
    let mut s = String::from("device,threshold,normal_windows,fpr\n");
    for d in t {
        s.push_str(&format!(
            "{},{:?},{},{fpr}\n",
            d.device, d.threshold, d.normal_windows
        ));
    }
    s
}

/// Reads a thresholds table (`fleet calibrate --out`): device to threshold.
///
/// # Errors
/// An unreadable file, a bad header or line (file:line).
pub fn read_thresholds(path: &Path) -> Result<BTreeMap<String, f32>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("");
    let cols: Vec<&str> = head.split(',').map(str::trim).collect();
    let (Some(di), Some(ti)) = (
        cols.iter().position(|c| *c == "device"),
        cols.iter().position(|c| *c == "threshold"),
    ) else {
        bail!(
            "{}:1: expected a header with `device` and `threshold` columns (fleet calibrate's table)",
            path.display()
        );
    };
    let mut out = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(d), Some(t)) = (f.get(di), f.get(ti)) else {
            bail!("{}:{}: missing fields", path.display(), i + 2);
        };
        let v: f32 = t
            .parse()
            .ok()
            .filter(|v: &f32| !v.is_nan())
            .with_context(|| {
                format!(
                    "{}:{}: threshold {t:?} is not a number",
                    path.display(),
                    i + 2
                )
            })?;
        if out.insert(d.to_string(), v).is_some() {
            bail!("{}:{}: device {d} appears twice", path.display(), i + 2);
        }
    }
    Ok(out)
}

/// The absolute path of `p` (for the plan: executors may run elsewhere).
///
/// # Errors
/// A path that cannot be made absolute.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}: bad path", p.display()))
}
