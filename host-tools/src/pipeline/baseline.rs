//! The classical baseline of `eval --baseline gaussian` and `demo`: a full-covariance Gaussian
//! fitted on the model's training windows, and the per-MAC cost figures both commands print.
//!
//! # Gaussian baseline (`eval --baseline gaussian`)
//! Fitted on the same training windows as the VAE (the training part of the stream, standardized
//! with the checkpoint's statistics): `m = mean`, `S = 1/n sum (x - m)(x - m)^T + r I` in f64,
//! rounded to f32 and factored by the library's [`tinyvae::FullGaussian`] (f32 Cholesky). `r`
//! starts at 1e-6 (scikit-learn's `reg_covar`) and grows ×10 while the f32 factorization fails.
//! Score `-ln N(x; m, S)`; threshold at the same false-positive rate on the validation windows.
//! [`tinyvae::FullGaussian`] is const-generic in `D = window × channels`, so the supported
//! window sizes are a fixed list ([`GAUSSIAN_DIMS`]).
//!
//! # Cost estimates
//! Flash is the bytes of parameters: the Gaussian stores `m` (D), the factor's lower triangle
//! (`D(D+1)/2`) and `ln det S` in f32; the VAE its exported constants
//! ([`crate::model::HostModel::param_bytes`]). Instructions per window are multiply-accumulates times a
//! per-MAC cost measured on the Cortex-M4 in `../shared/BENCHMARKS.md` (MLPerf Tiny autoencoder
//! row): plain f32 C at -O3, 1,343,870 / 264,192 = 5.09 instructions per MAC; int8 at the cost
//! tinyvae's own int8 path measured on the M4 (`tinyvae firmware bench`, the default model's whole
//! ELBO score, KL and output stages included): 109,089 / 51,840 = 2.10. The Gaussian's forward
//! substitution costs `D(D+1)/2` MACs (plus D for the squares); the VAE one encode and one
//! decode. These are estimates: `tinyvae firmware bench` measures the real counts under QEMU.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tinyvae::FullGaussian;

use super::load::Loaded;
use crate::checkpoint::CheckpointConfig;
use crate::data::{self, Norm, Windows};
use crate::metrics::{self, Confusion};
/// Instructions per f32 MAC on the Cortex-M4 (plain C -O3, BENCHMARKS.md).
pub const INSTR_PER_MAC_F32: f64 = 1_343_870.0 / 264_192.0;
/// Instructions per int8 MAC on the Cortex-M4: tinyvae's default model, whole ELBO score,
/// measured by `tinyvae firmware bench` (README results table).
pub const INSTR_PER_MAC_INT8: f64 = 108_847.0 / 51_840.0;

/// Window sizes `D = window × channels` the Gaussian baseline supports.
pub const GAUSSIAN_DIMS: [usize; 24] = [
    4, 6, 8, 12, 16, 18, 24, 32, 36, 48, 64, 72, 96, 128, 144, 192, 256, 288, 384, 432, 512, 576,
    640, 768,
];

/// The Gaussian baseline's figures.
#[derive(Serialize, Clone, Debug)]
pub struct BaselineResult {
    /// `gaussian`.
    pub name: String,
    /// D.
    pub dim: usize,
    /// Training windows it was fitted on.
    pub train_windows: usize,
    /// The diagonal regularization that made the f32 Cholesky succeed.
    pub reg: f64,
    /// ROC AUC on the test windows.
    pub roc_auc: Option<f64>,
    /// Average precision on the test windows.
    pub pr_auc: Option<f64>,
    /// Threshold at the target FPR on the validation windows.
    pub threshold: f32,
    /// At the threshold.
    pub at_threshold: Confusion,
    /// Bytes of parameters (f32 mean, lower triangle, log-determinant).
    pub flash_bytes: usize,
    /// Multiply-accumulates per window.
    pub macs: usize,
    /// Estimated Cortex-M4 instructions per window.
    pub est_instructions: f64,
    /// Test scores (for the ROC plot).
    #[serde(skip)]
    pub scores: Vec<f32>,
}

fn fit_score<const D: usize>(
    train: &Windows,
    val: &Windows,
    test: &Windows,
) -> Result<(Vec<f32>, Vec<f32>, f64)> {
    let n = train.len();
    if n < 2 {
        bail!("the Gaussian baseline needs at least 2 training windows, found {n}");
    }
    let mut mean = [0.0f64; D];
    for x in train.iter() {
        for (m, &v) in mean.iter_mut().zip(x) {
            *m += f64::from(v);
        }
    }
    for m in mean.iter_mut() {
        *m /= n as f64;
    }
    let mut cov = vec![0.0f64; D * D];
    let mut d = [0.0f64; D];
    for x in train.iter() {
        for ((di, &v), &m) in d.iter_mut().zip(x).zip(&mean) {
            *di = f64::from(v) - m;
        }
        for (i, &di) in d.iter().enumerate() {
            let row = &mut cov[i * D..(i + 1) * D];
            for (c, &dj) in row[..=i].iter_mut().zip(&d[..=i]) {
                *c += di * dj;
            }
        }
    }
    let mean32: [f32; D] = std::array::from_fn(|i| mean[i] as f32);
    let mut c32: Box<[[f32; D]; D]> = vec![[0.0f32; D]; D]
        .into_boxed_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("covariance allocation"))?;
    let mut g: Box<FullGaussian<D>> = Box::new(FullGaussian::standard());
    let mut reg = 1e-6f64;
    loop {
        for i in 0..D {
            for j in 0..=i {
                let v = (cov[i * D + j] / n as f64 + if i == j { reg } else { 0.0 }) as f32;
                c32[i][j] = v;
                c32[j][i] = v;
            }
        }
        match g.set_covariance(&mean32, &c32) {
            Ok(()) => break,
            Err(tinyvae::Error::NotPositiveDefinite) if reg < 1.0 => reg *= 10.0,
            Err(e) => bail!("fitting the Gaussian: {e}"),
        }
    }
    let score = |w: &Windows| -> Vec<f32> {
        w.iter()
            .map(|x| {
                let x: &[f32; D] = x.try_into().unwrap_or(&[0.0; D]);
                -g.log_density(x)
            })
            .collect()
    };
    Ok((score(val), score(test), reg))
}

macro_rules! dispatch_dims {
    ($d:expr, $tr:expr, $va:expr, $te:expr; $($n:literal)*) => {
        match $d {
            $( $n => fit_score::<$n>($tr, $va, $te), )*
            d => bail!(
                "the Gaussian baseline supports window x channels in {:?}, not {d}",
                GAUSSIAN_DIMS
            ),
        }
    };
}

/// Fits the full-covariance Gaussian on the training windows of `train_path` (cut as the
/// checkpoint was trained), calibrates its threshold on the validation windows at `fpr`, and
/// evaluates it on `test` (labeled windows standardized like the model's).
///
/// # Errors
/// Bad training data, an unsupported dimension, or a covariance that stays indefinite.
pub fn gaussian_baseline(
    train_path: &Path,
    cfg: &CheckpointConfig,
    val_fraction: f64,
    train_stride: usize,
    fpr: f64,
    test: &Windows,
) -> Result<BaselineResult> {
    let series = data::load_csv(train_path)?.select_channels(&cfg.channels)?;
    let norm = Norm {
        mean: cfg.norm_mean.clone(),
        std: cfg.norm_std.clone(),
    };
    let (tr, va) = data::split_tail(&series, val_fraction, cfg.window)?;
    let train = Windows::cut(&tr, cfg.window, train_stride, &norm)?;
    let val = Windows::cut(&va, cfg.window, train_stride, &norm)?;
    let train_windows = train.len();
    let dim = train.dim();
    let labels = test.labels.clone().context("test windows have no labels")?;
    let test = test.clone();
    // A FullGaussian<384> is 590 KB: run on a thread with a large stack.
    let (val_s, test_s, reg) = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || -> Result<(Vec<f32>, Vec<f32>, f64)> {
            dispatch_dims!(dim, &train, &val, &test;
                4 6 8 12 16 18 24 32 36 48 64 72 96 128 144 192 256 288 384 432 512 576 640 768)
        })
        .context("starting the baseline thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the Gaussian baseline failed"))??;
    let threshold = metrics::threshold_at_fpr(&val_s, fpr).context("no validation windows")?;
    let macs = dim * (dim + 1) / 2 + dim;
    Ok(BaselineResult {
        name: "gaussian".into(),
        dim,
        train_windows,
        reg,
        roc_auc: metrics::roc_auc(&test_s, &labels),
        pr_auc: metrics::average_precision(&test_s, &labels),
        threshold,
        at_threshold: metrics::confusion(&test_s, &labels, threshold),
        flash_bytes: 4 * (dim + dim * (dim + 1) / 2 + 1),
        macs,
        est_instructions: macs as f64 * INSTR_PER_MAC_F32,
        scores: test_s,
    })
}

/// [`gaussian_baseline`] for a loaded checkpoint: fitted on `train_path` cut as the checkpoint
/// recorded (its validation fraction and training stride), thresholded at its false-positive
/// rate, evaluated on `test`.
///
/// # Errors
/// As [`gaussian_baseline`].
pub fn gaussian_baseline_for(
    m: &Loaded,
    train_path: &Path,
    test: &Windows,
) -> Result<BaselineResult> {
    gaussian_baseline(
        train_path,
        &m.ck.config,
        m.cal.val_fraction,
        m.cal.train_stride.unwrap_or(m.ck.config.stride),
        m.th.fpr,
        test,
    )
}
