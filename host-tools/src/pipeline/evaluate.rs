//! Evaluation on a labeled stream: every score kind at f32 and int8, run through the library's
//! streaming detector (what the chip runs), with ROC AUC, PR AUC and the confusion at the
//! calibrated threshold ([`evaluate`]); the JSON object `eval --json` prints.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use super::calibrate::{score_diff, score_kinds};
use super::load::Loaded;
use crate::columns::Matching;
use crate::data::{self, Norm, Series, Windows};
use crate::metrics;
use crate::model::{self, HostModel};
use crate::scale;
use crate::stream;

/// Metrics of one score kind at one precision.
#[derive(Serialize, Clone, Debug)]
pub struct KindMetrics {
    /// Score name.
    pub score: String,
    /// `f32` or `int8`.
    pub precision: String,
    /// ROC AUC.
    pub roc_auc: Option<f64>,
    /// Average precision.
    pub pr_auc: Option<f64>,
    /// The calibrated threshold, if this kind was calibrated.
    pub threshold: Option<f32>,
    /// Counts and rates at the threshold.
    pub at_threshold: Option<metrics::Confusion>,
}

/// The result of an evaluation.
pub struct EvalResult {
    /// The labeled test windows.
    pub windows: Windows,
    /// One row per score kind and precision (f32, int8).
    pub rows: Vec<KindMetrics>,
    /// The default score of every window, f32 model.
    pub default_f32: Vec<f32>,
    /// The default score of every window, int8 model.
    pub default_int8: Vec<f32>,
    /// What `eval --json` prints (the demo adds its keys to it).
    pub json: serde_json::Value,
}

/// The windows' labels.
///
/// # Errors
/// The stream at `path` has no `label` column.
pub fn labels_of(w: &Windows, path: &Path) -> Result<Vec<bool>> {
    w.labels.clone().with_context(|| {
        format!(
            "{}: no `label` column; evaluation needs labels (use `tinyvae score` for unlabeled data)",
            path.display()
        )
    })
}

/// Loads the stream at `path` with the model's channels, warns about clamped values, and cuts
/// it into the model's standardized windows (`stride`, default the checkpoint's).
///
/// # Errors
/// An unreadable or malformed stream, or missing channels.
pub fn load_stream(
    m: &Loaded,
    path: &Path,
    stride: Option<usize>,
    matching: Matching,
) -> Result<(Series, Windows)> {
    let series = data::load_csv(path)?.select_channels_with(&m.ck.config.channels, matching)?;
    warn_clamped(m, &series);
    let norm = Norm {
        mean: m.ck.config.norm_mean.clone(),
        std: m.ck.config.norm_std.clone(),
    };
    let w = Windows::cut(
        &series,
        m.ck.config.window,
        stride.unwrap_or(m.ck.config.stride),
        &norm,
    )?;
    Ok((series, w))
}

/// Runs the library's streaming detector (what the chip runs) over `series` with a plain
/// threshold; returns every window's score and alarm. The windows must be `w`'s.
pub fn detect(
    hm: &HostModel,
    m: &Loaded,
    series: &Series,
    w: &Windows,
    cfg: &stream::StreamConfig,
) -> Result<(Vec<f32>, Vec<bool>)> {
    let rows = stream::run(hm, &m.ck.config, series, cfg)?;
    if rows.len() != w.len()
        || rows
            .iter()
            .enumerate()
            .any(|(i, r)| r.report.start != w.start(i) as u64)
    {
        bail!(
            "the detector formed {} windows, the windowing {} (internal error)",
            rows.len(),
            w.len()
        );
    }
    rows.iter()
        .map(|r| {
            let r = &r.report;
            r.score
                .map(|s| (s.score, r.alarm))
                .with_context(|| format!("window {} was not scored ({:?})", r.window, r.faults))
        })
        .collect()
}

/// Evaluates `m` on the labeled stream at `path`: every score kind ([`score_kinds`] with
/// `samples`), f32 and int8, through the streaming detector at the calibrated thresholds.
///
/// # Errors
/// As [`load_stream`] and [`labels_of`]; a window the detector did not score.
pub fn evaluate(
    m: &Loaded,
    path: &Path,
    stride: Option<usize>,
    seed: u64,
    samples: u16,
    matching: Matching,
) -> Result<EvalResult> {
    let (series, w) = load_stream(m, path, stride, matching)?;
    let labels = labels_of(&w, path)?;
    let stride = stride.unwrap_or(m.ck.config.stride);
    let mut rows = Vec::new();
    let mut default_f32 = Vec::new();
    let mut default_int8 = Vec::new();
    for kind in score_kinds(samples) {
        let name = model::score_name(kind);
        let cal = m.th.kinds.iter().find(|k| k.score == name);
        for (prec, hm) in [("f32", &m.f32), ("int8", &m.int8)] {
            let threshold = cal.map(|k| if prec == "f32" { k.f32 } else { k.int8 });
            let cfg = stream::StreamConfig::new(kind, stride, seed, threshold.unwrap_or(f32::MAX));
            let (s, alarms) = detect(hm, m, &series, &w, &cfg)?;
            rows.push(KindMetrics {
                score: name.clone(),
                precision: prec.to_string(),
                roc_auc: metrics::roc_auc(&s, &labels),
                pr_auc: metrics::average_precision(&s, &labels),
                threshold,
                at_threshold: threshold.map(|_| metrics::confusion_of_alarms(&alarms, &labels)),
            });
            if name == m.th.score {
                if prec == "f32" {
                    default_f32 = s;
                } else {
                    default_int8 = s;
                }
            }
        }
    }
    let find = |p: &str| {
        rows.iter()
            .find(|r| r.score == m.th.score && r.precision == p)
            .cloned()
    };
    let (rf, rq) = (find("f32"), find("int8"));
    let diff = score_diff(&default_f32, &default_int8);
    let n_anom = labels.iter().filter(|&&l| l).count();
    let get = |r: &Option<KindMetrics>, f: fn(&KindMetrics) -> Option<f64>| r.as_ref().and_then(f);
    let json = json!({
        "data": path.display().to_string(),
        "windows": w.len(),
        "anomalous_windows": n_anom,
        "window": w.window,
        "stride": stride,
        "score": m.th.score,
        "fpr_target": m.th.fpr,
        "roc_auc_f32": get(&rf, |r| r.roc_auc),
        "roc_auc_int8": get(&rq, |r| r.roc_auc),
        "pr_auc_f32": get(&rf, |r| r.pr_auc),
        "pr_auc_int8": get(&rq, |r| r.pr_auc),
        "threshold_f32": m.th.f32,
        "threshold_int8": m.th.int8,
        "f1_f32": get(&rf, |r| r.at_threshold.map(|c| c.f1)),
        "f1_int8": get(&rq, |r| r.at_threshold.map(|c| c.f1)),
        "precision_int8": get(&rq, |r| r.at_threshold.map(|c| c.precision)),
        "recall_int8": get(&rq, |r| r.at_threshold.map(|c| c.recall)),
        "fpr_int8": get(&rq, |r| r.at_threshold.map(|c| c.fpr)),
        "score_diff": diff,
        "flash_bytes_int8": m.int8.param_bytes(),
        "flash_bytes_f32": m.f32.param_bytes(),
        "macs": m.int8.macs(),
        "kinds": rows,
    });
    let mut json = json;
    if let (Some(extra), Some(obj)) = (
        super::moe::eval_keys(m, &series, &w, &labels, stride, seed)?,
        json.as_object_mut(),
    ) {
        obj.extend(extra);
    }
    Ok(EvalResult {
        windows: w,
        rows,
        default_f32,
        default_int8,
        json,
    })
}

/// Warns on stderr, per channel, about values the model's standardization clamps
/// ([`scale::ClampCheck`]): their windows score as extreme anomalies.
pub fn warn_clamped(m: &Loaded, series: &Series) {
    let mut check = scale::ClampCheck::new(&Norm {
        mean: m.ck.config.norm_mean.clone(),
        std: m.ck.config.norm_std.clone(),
    });
    check.push_rows(&series.values);
    for w in check.warnings(&series.channels) {
        eprintln!("warning: {}: {w}", series.path.display());
    }
}
