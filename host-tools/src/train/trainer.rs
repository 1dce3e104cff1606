//! The training loop: minibatch Adam on the negative ELBO with KL warm-up and early stopping.
//!
//! Per epoch e = 0, 1, ...:
//! - beta = min(1, e / kl_warmup) (1 throughout when `kl_warmup` = 0): the first epoch trains a
//!   plain autoencoder with the Gaussian likelihood, the KL weight reaches 1 at epoch `kl_warmup`.
//! - the training windows are shuffled (Fisher–Yates from the run's RNG) and cut into batches of
//!   `batch` (the last one may be smaller); each batch draws fresh eps, takes one gradient of
//!   the batch-mean `recon + beta * kl`, and one Adam step.
//! - the validation ELBO is `-(recon + kl)` (beta = 1) averaged over the validation windows, each
//!   with ONE noise draw fixed for the whole run (drawn once from a second RNG), so epochs are
//!   compared on the same noise.
//! - early stopping: the weights of the epoch with the highest validation ELBO are kept; training
//!   stops once `patience` epochs in a row brought no improvement, counted only after the
//!   warm-up (`patience` = 0 or no validation windows: all epochs run, the last weights are kept
//!   without validation, the best-validation ones with it).
//!
//! Randomness: `XorShiftRng::seed_from_u64(seed)` draws the initial weights, then every shuffle
//! and training eps in order; `seed_from_u64(seed ^ VAL_SEED_MIX)` draws the validation eps.
//! Single-threaded and allocation-free inside the loop, so the same seed, data and machine give
//! bit-identical weights.

use super::adam::Adam;
use super::arch::Arch;
use super::eval::eval_sum;
use super::model::{Layout, LossParts, Model};
use super::params::Params;
use super::rng;
use crate::data::WindowView;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::time::Instant;

/// XORed into the seed for the validation noise stream.
pub const VAL_SEED_MIX: u64 = 0x5641_4c49_4441_5445;

/// Hyper-parameters of a training run (serialized into checkpoints; missing fields take the
/// defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Maximum number of epochs (default 50).
    pub epochs: usize,
    /// Windows per minibatch (default 64).
    pub batch: usize,
    /// Adam learning rate (default 1e-3).
    pub lr: f64,
    /// Adam β1 (default 0.9).
    pub beta1: f64,
    /// Adam β2 (default 0.999).
    pub beta2: f64,
    /// Adam ε (default 1e-8).
    pub adam_eps: f64,
    /// Epochs over which the KL weight ramps linearly from 0 to 1 (default 10; 0 = no warm-up).
    pub kl_warmup: usize,
    /// Epochs without validation improvement before stopping, after the warm-up (default 10;
    /// 0 = never stop early).
    pub patience: usize,
    /// Seed of every random draw (default 0).
    pub seed: u64,
    /// No progress bar (it is also hidden when stderr is not a terminal). Not serialized.
    #[serde(skip)]
    pub quiet: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch: 64,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            kl_warmup: 10,
            patience: 10,
            seed: 0,
            quiet: false,
        }
    }
}

impl TrainConfig {
    /// Checks the values; the error names the field.
    ///
    /// # Errors
    /// Zero epochs or batch, a learning rate or Adam constant out of range.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.epochs > 0, "train.epochs must be > 0");
        anyhow::ensure!(self.batch > 0, "train.batch must be > 0");
        anyhow::ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "train.lr must be a positive number, found {}",
            self.lr
        );
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            anyhow::ensure!(
                (0.0..1.0).contains(&b),
                "train.{name} must be in [0, 1), found {b}"
            );
        }
        anyhow::ensure!(
            self.adam_eps.is_finite() && self.adam_eps > 0.0,
            "train.adam_eps must be > 0, found {}",
            self.adam_eps
        );
        Ok(())
    }

    /// The KL weight of epoch `e` (0-based).
    pub fn beta_at(&self, e: usize) -> f64 {
        if self.kl_warmup == 0 {
            1.0
        } else {
            (e as f64 / self.kl_warmup as f64).min(1.0)
        }
    }
}

/// Figures of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// KL weight used.
    pub beta: f64,
    /// Mean training objective `recon + beta * kl` per window (running over the epoch's steps).
    pub loss: f64,
    /// Mean training reconstruction term per window.
    pub recon: f64,
    /// Mean training KL per window.
    pub kl: f64,
    /// Validation ELBO per window (higher is better), if there are validation windows.
    pub val_elbo: Option<f64>,
    /// Validation reconstruction term per window.
    pub val_recon: Option<f64>,
    /// Validation KL per window.
    pub val_kl: Option<f64>,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// What a training run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// One entry per epoch run.
    pub history: Vec<EpochStats>,
    /// The epoch (from 1) whose weights were returned.
    pub best_epoch: usize,
    /// `true` if patience ran out before `epochs`.
    pub stopped_early: bool,
    /// Training windows.
    pub n_train: usize,
    /// Validation windows.
    pub n_val: usize,
    /// Trained parameters.
    pub n_params: usize,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

fn check_windows<'a>(what: &str, data: &'a [f32], x: usize) -> anyhow::Result<WindowView<'a>> {
    anyhow::ensure!(
        data.len().is_multiple_of(x),
        "{what} data: {} values is not a multiple of the window size {x}",
        data.len()
    );
    WindowView::contiguous(data, x)
        .ok_or_else(|| anyhow::anyhow!("{what} data: window size {x} is not positive"))
}

fn check_view(
    what: &str,
    w: &WindowView<'_>,
    x: usize,
    allow_empty: bool,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        w.dim() == x,
        "{what} data: windows of {} values, the model takes {x}",
        w.dim()
    );
    anyhow::ensure!(allow_empty || !w.is_empty(), "{what} data: no windows");
    for (i, win) in w.iter().enumerate() {
        if let Some(j) = win.iter().position(|v| !v.is_finite()) {
            anyhow::bail!(
                "{what} data: window {i} value {j} is {} (not finite)",
                win[j]
            );
        }
    }
    Ok(w.len())
}

/// Trains a model of shape `arch` on `train` (`n x X` row-major, standardized windows) with
/// early stopping on `val` (`m x X`, may be empty). Returns the best weights and the history.
///
/// # Errors
/// An invalid `arch` or `cfg`, empty / ragged / non-finite data, or a loss that became
/// non-finite (divergence; try a lower learning rate).
pub fn train(
    arch: &Arch,
    cfg: &TrainConfig,
    train: &[f32],
    val: &[f32],
) -> anyhow::Result<(Params, TrainReport)> {
    arch.validate()?;
    let t = check_windows("training", train, arch.input)?;
    let v = check_windows("validation", val, arch.input)?;
    train_views(arch, cfg, t, v)
}

/// [`train`] on windows given as views (e.g. the overlapping windows of a stream,
/// [`crate::data::Windows::view`]): no window is copied except into the current minibatch, so
/// the memory is the stream's plus the model's. The same windows give the same bits as [`train`].
///
/// # Errors
/// As [`train`].
pub fn train_views(
    arch: &Arch,
    cfg: &TrainConfig,
    train: WindowView<'_>,
    val: WindowView<'_>,
) -> anyhow::Result<(Params, TrainReport)> {
    let start = Instant::now();
    arch.validate()?;
    cfg.validate()?;
    super::limits::check_arch(arch)?;
    let (xd, zd) = (arch.input, arch.latent);
    let n = check_view("training", &train, xd, false)?;
    let nv = check_view("validation", &val, xd, true)?;
    let b = cfg.batch.min(n);
    let layout = Layout::new(arch)?;
    let mut model = Model::<f32>::new(arch, b)?;
    let mut rng = XorShiftRng::seed_from_u64(cfg.seed);
    let mut theta: Vec<f32> = layout.flatten(&Params::init_with(arch, &mut rng)?)?;
    let mut grad = vec![0.0f32; layout.total];
    let mut adam = Adam::new(layout.total, cfg.lr, cfg.beta1, cfg.beta2, cfg.adam_eps);
    let mut val_eps = vec![0.0f32; nv * zd];
    rng::fill_normal(
        &mut XorShiftRng::seed_from_u64(cfg.seed ^ VAL_SEED_MIX),
        &mut val_eps,
    );
    let mut order: Vec<u32> = (0..u32::try_from(n)?).collect();
    let mut xb = vec![0.0f32; b * xd];
    let mut eps = vec![0.0f32; b * zd];
    let mut val_batch = Vec::new();

    let fit = run_epochs(
        cfg,
        &mut theta,
        &mut model,
        |model, theta, _, beta| {
            shuffled_pass(&mut rng, &mut order, train, &mut xb, |xs, k, rng| {
                let es = &mut eps[..k * zd];
                rng::fill_normal(rng, es);
                let p = model.loss_grad(theta, xs, es, beta as f32, &mut grad)?;
                adam.step(theta, &grad);
                Ok(p)
            })
        },
        |model, theta| {
            if nv == 0 {
                return Ok(None);
            }
            eval_sum(model, theta, val, &val_eps, &mut val_batch).map(Some)
        },
    )?;
    let params = layout.unflatten(&fit.best);
    Ok((params, fit.report(n, nv, layout.total, start)))
}

/// One epoch's pass over `train` in a fresh shuffle of `order` (Fisher–Yates from `rng`): each
/// batch of `xb.len() / train.dim()` windows (the last may be smaller) is copied into `xb` and
/// given to `step(batch, windows, rng)`, which returns the batch means. Returns the epoch's means.
///
/// # Errors
/// What `step` returns.
pub(crate) fn shuffled_pass(
    rng: &mut XorShiftRng,
    order: &mut [u32],
    train: WindowView<'_>,
    xb: &mut [f32],
    mut step: impl FnMut(&[f32], usize, &mut XorShiftRng) -> anyhow::Result<LossParts>,
) -> anyhow::Result<LossParts> {
    let xd = train.dim();
    let b = xb.len() / xd;
    rng::shuffle(rng, order);
    let mut acc = LossParts::default();
    for idx in order.chunks(b) {
        let k = idx.len();
        for (dst, &i) in xb.chunks_exact_mut(xd).zip(idx) {
            dst.copy_from_slice(train.get(i as usize));
        }
        acc.add(&step(&xb[..k * xd], k, rng)?, k);
    }
    Ok(acc.mean(order.len()))
}

/// What [`run_epochs`] returns: the kept weights and how they were chosen.
pub(crate) struct Fit {
    /// The weights of the best validation objective (the last weights without validation).
    pub best: Vec<f32>,
    /// One entry per epoch run.
    pub history: Vec<EpochStats>,
    /// Index into `history` of `best`.
    pub best_epoch: usize,
    /// Patience ran out before `epochs`.
    pub stopped_early: bool,
}

impl Fit {
    /// The run's report.
    pub fn report(
        self,
        n_train: usize,
        n_val: usize,
        n_params: usize,
        start: Instant,
    ) -> TrainReport {
        TrainReport {
            best_epoch: self.best_epoch + 1,
            stopped_early: self.stopped_early,
            n_train,
            n_val,
            n_params,
            seconds: start.elapsed().as_secs_f64(),
            history: self.history,
        }
    }
}

/// The epoch loop every trainer shares: for each epoch `e` (from 0), `epoch(model, theta, e,
/// beta)` trains one pass and returns the mean training terms per window, `validate(model,
/// theta)` the mean validation terms (`None` without validation windows); `model` is whatever
/// state both need. It checks for divergence, keeps the weights of the best validation ELBO,
/// applies the patience after the KL warm-up and draws the progress bar.
///
/// # Errors
/// What `epoch` or `validate` return, or a non-finite loss or weight (divergence).
pub(crate) fn run_epochs<M>(
    cfg: &TrainConfig,
    theta: &mut [f32],
    model: &mut M,
    mut epoch: impl FnMut(&mut M, &mut [f32], usize, f64) -> anyhow::Result<LossParts>,
    mut validate: impl FnMut(&mut M, &[f32]) -> anyhow::Result<Option<LossParts>>,
) -> anyhow::Result<Fit> {
    let pb = progress_bar(cfg);
    let mut best = theta.to_vec();
    // Grows with the epochs actually run (early stopping may end long before `epochs`).
    let mut history = Vec::new();
    let mut best_epoch = 0usize; // index into history
    let mut best_val = f64::NEG_INFINITY;
    let mut stopped_early = false;
    let mut validated = false;
    for e in 0..cfg.epochs {
        let t0 = Instant::now();
        let beta = cfg.beta_at(e);
        let LossParts { loss, recon, kl } = epoch(model, theta, e, beta)?;
        anyhow::ensure!(
            loss.is_finite() && theta.iter().all(|v| v.is_finite()),
            "training diverged in epoch {} (loss {loss}); try a lower learning rate",
            e + 1
        );
        let v = validate(model, theta)?;
        validated |= v.is_some();
        let val_elbo = v.map(|p| -p.loss);
        history.push(EpochStats {
            epoch: e + 1,
            beta,
            loss,
            recon,
            kl,
            val_elbo,
            val_recon: v.map(|p| p.recon),
            val_kl: v.map(|p| p.kl),
            seconds: t0.elapsed().as_secs_f64(),
        });
        match val_elbo {
            Some(ve) if ve.is_finite() && ve > best_val => {
                best_val = ve;
                best_epoch = e;
                best.copy_from_slice(theta);
            }
            Some(_) => {}
            None => best_epoch = e,
        }
        pb.set_position(e as u64 + 1);
        pb.set_message(format!(
            "loss {loss:.3}  kl {kl:.3}  val elbo {}",
            val_elbo.map_or("-".to_string(), |v| format!("{v:.3}"))
        ));
        if validated && cfg.patience > 0 && e + 1 >= cfg.kl_warmup && e - best_epoch >= cfg.patience
        {
            stopped_early = e + 1 < cfg.epochs;
            break;
        }
    }
    pb.finish_and_clear();
    if !validated || best_val == f64::NEG_INFINITY {
        best.copy_from_slice(theta);
        best_epoch = history.len() - 1;
    }
    Ok(Fit {
        best,
        history,
        best_epoch,
        stopped_early,
    })
}

fn progress_bar(cfg: &TrainConfig) -> ProgressBar {
    let target = if cfg.quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let pb = ProgressBar::with_draw_target(Some(cfg.epochs as u64), target);
    if let Ok(style) =
        ProgressStyle::with_template("epoch {pos:>3}/{len} [{bar:24}] {msg} ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}
