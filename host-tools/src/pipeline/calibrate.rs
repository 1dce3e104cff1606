//! Calibration, stored in the checkpoint's `config.json`: int8 activation ranges from the
//! training windows and alarm thresholds at the target false-positive rate on the validation
//! windows, for every score kind ([`Thresholds`], [`Calibration`]), and the f32/int8 score
//! difference ([`ScoreDiff`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use tinyvae::ScoreKind;

use crate::checkpoint::{Checkpoint, CheckpointConfig};
use crate::data::{self, Norm, Series, Windows};
use crate::metrics;
use crate::model::{self, HostModel, Ranges};

/// Calibration options shared by `train`, `quantize` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct CalibOpts {
    /// Target false-positive rate of the alarm threshold on held-out normal windows.
    #[arg(long, default_value_t = 0.01)]
    pub fpr: f64,
    /// Samples of the sampled scores (IWAE-K, reconstruction probability, sampled ELBO).
    #[arg(long, default_value_t = 16)]
    pub samples: u16,
}

/// Thresholds of one score kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KindThreshold {
    /// Score name (`elbo`, `iwae-16`, ...).
    pub score: String,
    /// Threshold of the f32 model.
    pub f32: f32,
    /// Threshold of the int8 model.
    pub int8: f32,
}

/// `config.json`'s `threshold` object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Target false-positive rate on the held-out normal windows.
    pub fpr: f64,
    /// The default score (what `export` and `score` use).
    pub score: String,
    /// Threshold of the default score, f32 model.
    pub f32: f32,
    /// Threshold of the default score, int8 model (the exported `THRESHOLD`).
    pub int8: f32,
    /// Validation windows the thresholds were calibrated on.
    pub windows: usize,
    /// Seed of the sampled scores.
    pub seed: u64,
    /// Every calibrated score kind.
    pub kinds: Vec<KindThreshold>,
}

impl Thresholds {
    /// The calibrated threshold of score `name` (f32 or int8 model), for a checkpoint at
    /// `model` (named in the error, with the calibrated scores and the `quantize --samples
    /// samples` that would add it).
    ///
    /// # Errors
    /// `name` is not calibrated in the checkpoint.
    pub fn for_score(
        &self,
        name: &str,
        f32: bool,
        model: &std::path::Path,
        samples: u16,
    ) -> anyhow::Result<f32> {
        self.kinds
            .iter()
            .find(|k| k.score == name)
            .map(|k| if f32 { k.f32 } else { k.int8 })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "score {name} is not calibrated in {} (calibrated: {}); run `tinyvae quantize --samples {samples}` or give --threshold",
                    model.display(),
                    self.kinds.iter().map(|k| k.score.as_str()).collect::<Vec<_>>().join(", "),
                )
            })
    }
}

/// `config.json`'s `calibration` object: int8 ranges, the data, and the f32/int8 difference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Activation ranges of the f32 model on the training windows.
    pub ranges: Ranges,
    /// The training stream (as given).
    pub train_data: String,
    /// Held-out fraction of its tail.
    pub val_fraction: f64,
    /// Stride of the training and validation windows.
    #[serde(default)]
    pub train_stride: Option<usize>,
    /// Training windows (ranges) and validation windows (thresholds).
    pub train_windows: usize,
    /// Validation windows.
    pub val_windows: usize,
    /// f32 vs int8 default score on the validation windows.
    pub score_diff: ScoreDiff,
}

/// How far the int8 scores are from the f32 scores.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ScoreDiff {
    /// max |s_int8 - s_f32|, nats.
    pub max_abs: f64,
    /// mean |s_int8 - s_f32|, nats.
    pub mean_abs: f64,
    /// mean |s_int8 - s_f32| / standard deviation of s_f32.
    pub mean_abs_over_std: f64,
}

/// How far the int8 scores `q` are from the f32 scores `f` (same windows, same order).
pub fn score_diff(f: &[f32], q: &[f32]) -> ScoreDiff {
    let n = f.len().max(1) as f64;
    let mean = f.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let sd = (f
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let d: Vec<f64> = f
        .iter()
        .zip(q)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .collect();
    let mean_abs = d.iter().sum::<f64>() / n;
    ScoreDiff {
        max_abs: d.iter().copied().fold(0.0, f64::max),
        mean_abs,
        mean_abs_over_std: if sd > 0.0 { mean_abs / sd } else { 0.0 },
    }
}

/// The score kinds evaluated and calibrated.
pub fn score_kinds(samples: u16) -> Vec<ScoreKind> {
    vec![
        ScoreKind::Elbo,
        ScoreKind::Iwae { samples },
        ScoreKind::ReconProb { samples },
        ScoreKind::ElboSampled { samples },
    ]
}

/// The `kind` score of every window of `w` under model `m` (sampled scores drawn from `seed`).
///
/// # Errors
/// A window the model rejects.
pub fn scores_of(m: &HostModel, w: &Windows, kind: ScoreKind, seed: u64) -> Result<Vec<f32>> {
    Ok(model::score_windows(m, w.iter(), kind, seed)?
        .into_iter()
        .map(|s| s.score)
        .collect())
}

/// The training stream cut like training cut it.
pub struct TrainSplit {
    /// Training windows (the head of the stream).
    pub train: Windows,
    /// Validation windows (the held-out tail).
    pub val: Windows,
    /// Stride both were cut with.
    pub stride: usize,
}

/// Cuts `series` at its validation split (the last `val_fraction` of its rows) into training
/// and validation windows of `window` samples every `stride`, standardized with `norm`.
///
/// # Errors
/// A stream too short for one window on either side.
pub fn split_windows(
    series: &Series,
    window: usize,
    stride: usize,
    val_fraction: f64,
    norm: &Norm,
) -> Result<TrainSplit> {
    let split = data::split_row(series, val_fraction, window)?;
    Ok(TrainSplit {
        train: Windows::cut_rows(series, 0..split, window, stride, norm)?,
        val: Windows::cut_rows(series, split..series.rows(), window, stride, norm)?,
        stride,
    })
}

/// Calibrates `ck` in place: int8 ranges from the training windows, thresholds on the validation
/// windows; returns the two models.
pub fn calibrate(
    ck: &mut Checkpoint,
    split: &TrainSplit,
    train_data: &Path,
    val_fraction: f64,
    c: &CalibOpts,
) -> Result<(HostModel, HostModel)> {
    if !(0.0..=1.0).contains(&c.fpr) {
        bail!("--fpr must be in [0, 1], found {}", c.fpr);
    }
    if c.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let f = HostModel::float(&ck.params)?;
    let ranges = f.calibrate(split.train.iter())?;
    let q = HostModel::int8(&ck.params, &ranges)?;
    calibrate_models(ck, split, train_data, val_fraction, c, (f, q), ranges)
}

/// [`calibrate`] with the two models given (a mixture of experts builds its own): thresholds of
/// `f` and `q` on the validation windows, `ranges` stored as the int8 calibration.
pub fn calibrate_models(
    ck: &mut Checkpoint,
    split: &TrainSplit,
    train_data: &Path,
    val_fraction: f64,
    c: &CalibOpts,
    (f, q): (HostModel, HostModel),
    ranges: Ranges,
) -> Result<(HostModel, HostModel)> {
    if !(0.0..=1.0).contains(&c.fpr) {
        bail!("--fpr must be in [0, 1], found {}", c.fpr);
    }
    if c.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let seed = 0;
    let mut kinds = Vec::new();
    let mut diff = None;
    for kind in score_kinds(c.samples) {
        let sf = scores_of(&f, &split.val, kind, seed)?;
        let sq = scores_of(&q, &split.val, kind, seed)?;
        if diff.is_none() {
            diff = Some(score_diff(&sf, &sq));
        }
        let t = |s: &[f32]| {
            metrics::threshold_at_fpr(s, c.fpr).context("no validation windows to calibrate on")
        };
        kinds.push(KindThreshold {
            score: model::score_name(kind),
            f32: t(&sf)?,
            int8: t(&sq)?,
        });
    }
    let def = kinds[0].clone();
    let th = Thresholds {
        fpr: c.fpr,
        score: def.score.clone(),
        f32: def.f32,
        int8: def.int8,
        windows: split.val.len(),
        seed,
        kinds,
    };
    let cal = Calibration {
        ranges,
        train_data: std::fs::canonicalize(train_data)
            .unwrap_or_else(|_| train_data.to_path_buf())
            .display()
            .to_string(),
        val_fraction,
        train_stride: Some(split.stride),
        train_windows: split.train.len(),
        val_windows: split.val.len(),
        score_diff: diff.unwrap_or(ScoreDiff {
            max_abs: 0.0,
            mean_abs: 0.0,
            mean_abs_over_std: 0.0,
        }),
    };
    ck.config.threshold = Some(serde_json::to_value(&th)?);
    ck.config
        .extra
        .insert("calibration".to_string(), serde_json::to_value(&cal)?);
    Ok((f, q))
}

/// The `threshold` and `calibration` objects of a checkpoint's `config.json`.
///
/// # Errors
/// Either is missing or malformed (the checkpoint is not calibrated).
pub fn calibration_of(c: &CheckpointConfig) -> Result<(Thresholds, Calibration)> {
    let th = c
        .threshold
        .clone()
        .context("no `threshold` in config.json")?;
    let cal = c
        .extra
        .get("calibration")
        .cloned()
        .context("no `calibration` in config.json")?;
    Ok((
        serde_json::from_value(th).context("config.json: invalid `threshold`")?,
        serde_json::from_value(cal).context("config.json: invalid `calibration`")?,
    ))
}

/// The sample count K of the calibrated IWAE-K score (16 when there is none): what `eval` and
/// `demo` evaluate the sampled scores with.
pub fn samples_of(th: &Thresholds) -> u16 {
    th.kinds
        .iter()
        .find_map(|k| k.score.strip_prefix("iwae-").and_then(|s| s.parse().ok()))
        .unwrap_or(16)
}
