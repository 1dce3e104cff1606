//! Training configuration: the `train`/`demo` options ([`ModelOpts`]), the `--config` TOML file
//! (`[model]` and `[train]` tables) and their resolution into one [`Resolved`] set (defaults,
//! then the file, then flags), with the defaults and why they were chosen.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::train::poe::DecoderLayout;
use crate::train::{self, NoiseKind, TrainConfig};

/// Architecture and training options shared by `train` and `demo`.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelOpts {
    /// TOML file with `[model]` (window, stride, encoder_hidden, decoder_hidden, latent, noise,
    /// val_fraction) and `[train]` (epochs, batch, lr, kl_warmup, patience, seed, ...) tables;
    /// flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Samples (time steps) per window [default: 64].
    #[arg(long)]
    pub window: Option<usize>,
    /// Samples between window starts in deployment and evaluation [default: 32].
    #[arg(long)]
    pub stride: Option<usize>,
    /// Samples between the starts of training and validation windows (finer = more,
    /// overlapping windows; 1 = every shift of the window, chosen by validation ELBO) [default: 1].
    #[arg(long)]
    pub train_stride: Option<usize>,
    /// Encoder hidden widths, e.g. `60` or `128,64` (1 to 3 layers) [default: 60].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Decoder hidden widths, e.g. `60` or `64,128` (1 to 3 layers) [default: the encoder's,
    /// reversed].
    #[arg(long, value_delimiter = ',')]
    pub decoder_hidden: Option<Vec<usize>>,
    /// Latent size, or `auto`: train one model per size in 8, 16, 24, 32 (with early stopping),
    /// keep the best validation ELBO and train that size to the end [default: auto].
    #[arg(long)]
    pub latent: Option<LatentSpec>,
    /// Decoder output variance: learned per feature (each window position of each channel),
    /// learned per channel, or unit (fixed at 1) [default: per-feature].
    #[arg(long)]
    pub noise: Option<NoiseArg>,
    /// Fraction of the stream (its tail, by time) held out for validation [default: 0.2].
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Maximum training epochs (with --patience 0 all of them run) [default: 300].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training windows per minibatch [default: 64].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long)]
    pub lr: Option<f64>,
    /// KL warm-up: the KL term's weight rises linearly from 0 to 1 over this many epochs (0: 1
    /// from the start) [default: 10].
    #[arg(long)]
    pub kl_warmup: Option<usize>,
    /// Early-stopping patience in epochs (0: never; every epoch runs and the weights of the best
    /// validation ELBO are kept) [default: 0].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Seed of every random draw [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not show the training progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// `--noise` values. The variants stay without doc comments: clap would print them as a
/// per-value list and change `train --help`.
#[allow(missing_docs)]
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseArg {
    PerFeature,
    PerChannel,
    Unit,
}

/// `[model]` table of the TOML config.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    window: Option<usize>,
    stride: Option<usize>,
    train_stride: Option<usize>,
    encoder_hidden: Option<Vec<usize>>,
    decoder_hidden: Option<Vec<usize>>,
    latent: Option<LatentSpec>,
    noise: Option<NoiseKind>,
    val_fraction: Option<f64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigToml {
    #[serde(default)]
    model: ModelToml,
    train: Option<TrainConfig>,
}

/// Maximum epochs (with the default patience 0, every run trains all of them).
pub const DEFAULT_EPOCHS: usize = 300;
/// Epochs without a better validation ELBO before stopping: 0, never stop (all `DEFAULT_EPOCHS`
/// run and the weights of the best validation ELBO are kept). The validation ELBO of these models
/// often dips for more than 20 epochs and then climbs past its earlier best (best epochs of full
/// runs: median 196 of 300), so patience 20 stopped early in a dip; training to the end raised
/// the validation ELBO on 8 of 9 runs (3 seeds x 3 tasks), never lowered it, at 5-11x the epochs.
/// Figures: README, "Detection quality".
pub const DEFAULT_PATIENCE: usize = 0;
/// Patience of the candidate runs of `--latent auto` when the final patience is 0: each latent
/// size is trained with early stopping, then the winner is trained to the end, in less than half
/// the time of full candidate runs. (Bundled set, seed 0: full candidate runs reach validation
/// ELBOs -333.3 / -161.2 / -101.2 / -30.5 for latents 8 / 16 / 24 / 32, the early-stopped ones
/// -333.3 / -161.2 / -101.2 / -31.6: the same winner by 70 nats.)
pub const SELECTION_PATIENCE: usize = 20;

/// Default `--train-stride`: every shift of the window. On the bundled set it raised the
/// validation ELBO, measured on the same stride-8 validation windows, from about -163 (stride 8)
/// to -135 (4), -86 (2) and -46 (1) nats per window (seed 0; `examples/agg_prior.rs` with
/// `VAL_STRIDE=8`): the shifted copies act as data augmentation, at a training cost linear in the
/// number of windows. Deployment windows keep `--stride`.
pub const DEFAULT_TRAIN_STRIDE: usize = 1;

/// Default hidden width of each side. 60 rather than 64 keeps the largest `--latent auto`
/// candidate (32) within the flash budget of a tenth of the full-covariance Gaussian's 609 KB on
/// 384-value windows: int8 parameters of 384-60-32 / 32-60-384 with per-feature variance take
/// 60,196 bytes, 384-64-32 takes 63,748. On the bundled set it also had the better validation
/// ELBO at every seed (0, 1, 2: -31.6, -53.8, -26.4 vs -64.8, -89.8, -54.5 nats per window).
pub const DEFAULT_HIDDEN: usize = 60;

/// Default hidden width of each per-group decoder of a multi-sensor model (`train --group`,
/// `--decoder per-group`): the widest multiple of 4 (the M4's 4-row int8 kernels; 54 or 70
/// rows fall back to slower code) at which the full-set score with autoregressive decoder
/// noise of the highest order (3) stays within the cost goal of 1.15 x the single VAE's M4
/// instructions (125,452): 44 units measure 123,822, 48 units 126,362. Two 32-44-192 decoders
/// take 19,712 multiply-adds. Figures: README, "Multi-sensor models".
pub const DEFAULT_GROUP_DECODER_HIDDEN: usize = 44;

/// The decoder widths of a multi-sensor model when `--decoder-hidden` is not given: per-group
/// decoders [`DEFAULT_GROUP_DECODER_HIDDEN`] wide, a shared decoder as the encoder, reversed.
pub fn default_decoder_hidden(layout: DecoderLayout, encoder_hidden: &[usize]) -> Vec<usize> {
    match layout {
        DecoderLayout::Shared => encoder_hidden.iter().rev().copied().collect(),
        DecoderLayout::PerGroup => vec![DEFAULT_GROUP_DECODER_HIDDEN],
    }
}

/// Candidate latent sizes of `--latent auto`.
pub const AUTO_LATENTS: [usize; 4] = [8, 16, 24, 32];

/// A latent size, or automatic selection by validation ELBO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LatentSpec {
    /// This size.
    Fixed(usize),
    /// `auto`.
    #[serde(deserialize_with = "auto_only")]
    Auto,
}

fn auto_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    let s = String::deserialize(d)?;
    if s == "auto" {
        Ok(())
    } else {
        Err(serde::de::Error::custom(format!(
            "latent must be a number or \"auto\", found {s:?}"
        )))
    }
}

impl std::str::FromStr for LatentSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(LatentSpec::Auto);
        }
        s.parse()
            .map(LatentSpec::Fixed)
            .map_err(|_| format!("expected a number or `auto`, found {s:?}"))
    }
}

/// Everything a training run needs, resolved from defaults, the TOML config and flags.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Samples per window.
    pub window: usize,
    /// Deployment/evaluation stride.
    pub stride: usize,
    /// Stride of the training and validation windows.
    pub train_stride: usize,
    /// Encoder hidden widths.
    pub encoder_hidden: Vec<usize>,
    /// Decoder hidden widths (`None`: the encoder's, reversed).
    pub decoder_hidden: Option<Vec<usize>>,
    /// Latent size or `auto`.
    pub latent: LatentSpec,
    /// Decoder variance.
    pub noise: NoiseKind,
    /// Held-out fraction of the stream's tail.
    pub val_fraction: f64,
    /// Optimizer settings.
    pub train: TrainConfig,
}

/// Resolves `o`: built-in defaults, then its `--config` file, then its flags; checks the
/// ranges and the size limits before anything trains.
///
/// # Errors
/// An unreadable or invalid config file (with file:line:column), or an option out of range.
pub fn resolve(o: &ModelOpts) -> Result<Resolved> {
    let cfg: ConfigToml = match &o.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {}",
                    p.display(),
                    if e.kind() == std::io::ErrorKind::NotFound {
                        "no such file".to_string()
                    } else {
                        e.to_string()
                    }
                )
            })?;
            toml::from_str(&text).map_err(|e| {
                let msg = e.message().replace('\n', " ");
                match e.span() {
                    Some(sp) => {
                        let line = text[..sp.start].matches('\n').count() + 1;
                        let col = sp.start - text[..sp.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                        anyhow::anyhow!("{}:{line}:{col}: {msg}", p.display())
                    }
                    None => anyhow::anyhow!("{}: {msg}", p.display()),
                }
            })?
        }
        None => ConfigToml::default(),
    };
    let m = cfg.model;
    let mut train = cfg.train.unwrap_or_else(|| TrainConfig {
        epochs: DEFAULT_EPOCHS,
        patience: DEFAULT_PATIENCE,
        ..TrainConfig::default()
    });
    if let Some(v) = o.epochs {
        train.epochs = v;
    }
    if let Some(v) = o.batch {
        train.batch = v;
    }
    if let Some(v) = o.lr {
        train.lr = v;
    }
    if let Some(v) = o.kl_warmup {
        train.kl_warmup = v;
    }
    if let Some(v) = o.patience {
        train.patience = v;
    }
    if let Some(v) = o.seed {
        train.seed = v;
    }
    train.quiet = o.quiet;
    let noise = match o.noise {
        Some(NoiseArg::PerFeature) => NoiseKind::PerFeature,
        Some(NoiseArg::PerChannel) => NoiseKind::PerChannel,
        Some(NoiseArg::Unit) => NoiseKind::Unit,
        None => m.noise.unwrap_or_default(),
    };
    let r = Resolved {
        window: o.window.or(m.window).unwrap_or(64),
        stride: o.stride.or(m.stride).unwrap_or(32),
        train_stride: o
            .train_stride
            .or(m.train_stride)
            .unwrap_or(DEFAULT_TRAIN_STRIDE),
        encoder_hidden: o
            .hidden
            .clone()
            .or(m.encoder_hidden)
            .unwrap_or_else(|| vec![DEFAULT_HIDDEN]),
        decoder_hidden: o.decoder_hidden.clone().or(m.decoder_hidden),
        latent: o.latent.or(m.latent).unwrap_or(LatentSpec::Auto),
        noise,
        val_fraction: o.val_fraction.or(m.val_fraction).unwrap_or(0.2),
        train,
    };
    if r.window == 0 {
        bail!("--window must be at least 1");
    }
    if r.stride == 0 || r.train_stride == 0 {
        bail!("--stride and --train-stride must be at least 1");
    }
    if !(r.val_fraction > 0.0 && r.val_fraction < 1.0) {
        bail!("--val-fraction must be in (0, 1), found {}", r.val_fraction);
    }
    r.train.validate()?;
    train::limits::check_request(
        r.window,
        [r.stride, r.train_stride],
        &r.encoder_hidden,
        r.decoder_hidden.as_deref(),
        match r.latent {
            LatentSpec::Fixed(z) => Some(z),
            LatentSpec::Auto => None,
        },
        &r.train,
    )?;
    Ok(r)
}
