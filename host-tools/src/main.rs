//! `tinyvae`: the host tool. Train a VAE on a sensor CSV stream, quantize it to int8, evaluate
//! and calibrate it, score streams, export it as Rust source for the firmware, and run the
//! firmware in QEMU. `tinyvae demo` does it all on the bundled data set.
//!
//! Every inference here (f32 and int8) runs through the `tinyvae` library's kernels and score
//! functions (see `tinyvae_host_tools::model`), so the figures are what the chip computes.
//!
//! Errors are one line on stderr (`error: file:line:column: message` for bad input), with exit
//! status 1; nothing is written on failure (outputs go to a temporary file, then a rename).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tinyvae::ScoreKind;

use tinyvae_host_tools::checkpoint::{self, Checkpoint, CheckpointConfig};
use tinyvae_host_tools::columns::Matching;
use tinyvae_host_tools::data::{self, Norm, Series, Windows};
use tinyvae_host_tools::export;
use tinyvae_host_tools::metrics;
use tinyvae_host_tools::model::{self, HostModel, Ranges};
use tinyvae_host_tools::options::{self, parse_f32};
use tinyvae_host_tools::output::{self, Input};
use tinyvae_host_tools::scale;
use tinyvae_host_tools::stream;
use tinyvae_host_tools::train::{self, Arch, NoiseKind, TrainConfig, TrainReport};

mod demo;

/// Default data set, relative to the working directory, else to this crate at compile time.
fn default_data(file: &str) -> PathBuf {
    let rel = Path::new("data/watch_shoulder_pen").join(file);
    if rel.exists() {
        return rel;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/watch_shoulder_pen")
        .join(file)
}

#[derive(Parser, Debug)]
#[command(
    name = "tinyvae",
    version,
    about = "Train, quantize, evaluate and export variational autoencoders for anomaly \
             detection on microcontrollers",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Train a VAE on a CSV stream and write a checkpoint directory (calibrated for int8 and
    /// with alarm thresholds at the target false-positive rate).
    Train(TrainArgs),
    /// Recalibrate a checkpoint: int8 activation ranges and thresholds; reports the f32/int8
    /// score difference.
    Quantize(QuantizeArgs),
    /// Evaluate on a labeled stream: ROC AUC, PR AUC, precision/recall/F1, f32 and int8.
    Eval(EvalArgs),
    /// Score an (unlabeled) stream: one CSV row per window with its score and alarm.
    Score(ScoreArgs),
    /// Export the model as Rust source for the firmware (int8 by default).
    Export(ExportArgs),
    /// Train, quantize, evaluate, export and plot on the bundled data set.
    Demo(DemoArgs),
    /// Import a quantized TFLite model (dense layers) into a checkpoint directory.
    Import(ImportArgs),
    /// Build and run the firmware in QEMU.
    Firmware {
        #[command(subcommand)]
        cmd: FirmwareCmd,
    },
}

/// Architecture and training options shared by `train` and `demo`.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelOpts {
    /// TOML file with `[model]` (window, stride, encoder_hidden, decoder_hidden, latent, noise,
    /// val_fraction) and `[train]` (epochs, batch, lr, kl_warmup, patience, seed, ...) tables;
    /// flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Samples per window [default: 64].
    #[arg(long)]
    window: Option<usize>,
    /// Samples between window starts in deployment and evaluation [default: 32].
    #[arg(long)]
    stride: Option<usize>,
    /// Samples between the starts of training and validation windows (finer = more,
    /// overlapping windows; 1 = every shift of the window, chosen by validation ELBO) [default: 1].
    #[arg(long)]
    train_stride: Option<usize>,
    /// Encoder hidden widths, e.g. `60` or `128,64` (1 to 3 layers) [default: 60].
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Decoder hidden widths [default: the encoder's, reversed].
    #[arg(long, value_delimiter = ',')]
    decoder_hidden: Option<Vec<usize>>,
    /// Latent size, or `auto`: train one model per size in 8, 16, 24, 32 (with early stopping),
    /// keep the best validation ELBO and train that size to the end [default: auto].
    #[arg(long)]
    latent: Option<LatentSpec>,
    /// Decoder variance: per-feature, per-channel or unit [default: per-feature].
    #[arg(long)]
    noise: Option<NoiseArg>,
    /// Fraction of the stream (its tail, by time) held out for validation [default: 0.2].
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Maximum epochs [default: 300].
    #[arg(long)]
    epochs: Option<usize>,
    /// Minibatch size [default: 64].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// KL warm-up epochs [default: 10].
    #[arg(long)]
    kl_warmup: Option<usize>,
    /// Early-stopping patience in epochs (0: never; every epoch runs and the weights of the best
    /// validation ELBO are kept) [default: 0].
    #[arg(long)]
    patience: Option<usize>,
    /// Seed of every random draw [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum NoiseArg {
    PerFeature,
    PerChannel,
    Unit,
}

/// Calibration options shared by `train`, `quantize` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct CalibOpts {
    /// Target false-positive rate of the alarm threshold on held-out normal windows.
    #[arg(long, default_value_t = 0.01)]
    fpr: f64,
    /// Samples of the sampled scores (IWAE-K, reconstruction probability, sampled ELBO).
    #[arg(long, default_value_t = 16)]
    samples: u16,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Training stream (CSV: header, one row per time step, one column per channel; an optional
    /// `label` column must hold 0 or 1 on every row and is not used for training)
    /// [default: the bundled data/watch_shoulder_pen/train.csv].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Checkpoint directory to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    calib: CalibOpts,
}

#[derive(Args, Debug)]
struct QuantizeArgs {
    /// Checkpoint directory (updated in place).
    #[arg(long)]
    model: PathBuf,
    /// Training stream the model was trained on [default: the one recorded in the checkpoint].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    calib: CalibOpts,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Use the stream's channel columns in file order instead of matching them to the model's
    /// channels by name (the default; extra columns are then ignored with a note).
    #[arg(long)]
    by_position: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Baseline {
    /// Full-covariance Gaussian (Mahalanobis) on the same training windows.
    Gaussian,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Labeled test stream (needs a `label` column) [default: the bundled test.csv].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Window stride of the test windows [default: the checkpoint's].
    #[arg(long)]
    stride: Option<usize>,
    /// Print one JSON object to stdout instead of tables.
    #[arg(long)]
    json: bool,
    /// Also fit and evaluate a classical baseline on the same training windows.
    #[arg(long)]
    baseline: Option<Baseline>,
    /// Training stream for the baseline [default: the one recorded in the checkpoint].
    #[arg(long)]
    train_data: Option<PathBuf>,
    /// Seed of the sampled scores.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the stream's channel columns in file order instead of matching them to the model's
    /// channels by name (the default; extra columns are then ignored with a note).
    #[arg(long)]
    by_position: bool,
}

#[derive(Args, Debug)]
struct ScoreArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Stream to score (CSV with the model's channels; a `label` column is copied through).
    #[arg(long)]
    data: PathBuf,
    /// Output CSV: window,start,end,score,alarm (end exclusive), then label (if the stream has
    /// one), level, event, faults, top_channel.
    #[arg(long)]
    out: PathBuf,
    /// Window stride [default: the checkpoint's].
    #[arg(long)]
    stride: Option<usize>,
    /// Score with the f32 model instead of the int8 one.
    #[arg(long)]
    f32: bool,
    /// Score: elbo, elbo-sampled, iwae or recon-prob [default: the calibrated default].
    #[arg(long)]
    score: Option<String>,
    /// Samples of a sampled score.
    #[arg(long, default_value_t = 16)]
    samples: u16,
    /// Seed of the sampled scores.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Alarm threshold, any number but NaN [default: the checkpoint's calibrated one for the
    /// score].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_f32)]
    threshold: Option<f32>,
    /// Exponential moving average of the scores, weight ALPHA of the newest (0 < ALPHA <= 1)
    /// [default: 1, no smoothing].
    #[arg(long, value_name = "ALPHA", value_parser = parse_f32)]
    ema: Option<f32>,
    /// Hysteresis: once raised, the alarm clears only when the level drops to this value or
    /// below (at most the threshold) [default: the threshold].
    #[arg(long, value_name = "LEVEL", allow_hyphen_values = true, value_parser = parse_f32)]
    clear_threshold: Option<f32>,
    /// k-of-n debounce `K,N[,CLEAR]`: raise when K of the last N levels exceed the threshold,
    /// clear when fewer than CLEAR (default 1) of them are above the clear threshold
    /// (1 <= CLEAR <= K <= N <= 32).
    #[arg(long, value_name = "K,N[,CLEAR]", value_parser = parse_debounce)]
    debounce: Option<(u8, u8, u8)>,
    /// Saturation limits `LO,HI` in physical units (every channel): a value at or beyond them
    /// flags its windows as saturated.
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true, value_parser = parse_limits)]
    limits: Option<(f32, f32)>,
    /// Flagged windows (saturated or stuck channel) update the alarm too.
    #[arg(long)]
    alarm_on_flagged: bool,
    /// On-device adaptation `STATS,THRESHOLD`: learn the standardization over the first STATS
    /// windows, then the threshold over THRESHOLD windows at --adapt-fpr (as the chip would).
    #[arg(long, value_name = "STATS,THRESHOLD", value_parser = parse_adapt)]
    adapt: Option<(u32, u32)>,
    /// Target false-positive rate of the adapted threshold, 0 < FPR < 1 [default: the
    /// checkpoint's].
    #[arg(long, value_name = "FPR", value_parser = parse_f32)]
    adapt_fpr: Option<f32>,
    /// Use the stream's channel columns in file order instead of matching them to the model's
    /// channels by name (the default; extra columns are then ignored with a note).
    #[arg(long)]
    by_position: bool,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Rust source file to write.
    #[arg(long)]
    out: PathBuf,
    /// Export the f32 model instead of the int8 one.
    #[arg(long)]
    f32: bool,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Report directory (model/, model.rs, metrics.json, plots).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Training stream [default: the bundled train.csv].
    #[arg(long)]
    train_data: Option<PathBuf>,
    /// Labeled test stream [default: the bundled test.csv].
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Skip the QEMU run of the exported model.
    #[arg(long)]
    no_firmware: bool,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    calib: CalibOpts,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// TFLite flatbuffer with the VAE's dense layers.
    #[arg(long)]
    tflite: PathBuf,
    /// Checkpoint directory to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand, Debug)]
enum FirmwareCmd {
    /// Build the firmware for the core(s) and run it in QEMU, printing its log.
    Run(FirmwareArgs),
    /// Run in QEMU and check that the chip's scores equal the host's bit for bit.
    Parity(FirmwareArgs),
    /// Instructions per inference, flash and RAM on each core.
    Bench(FirmwareArgs),
}

#[derive(Args, Debug)]
struct FirmwareArgs {
    /// Core: m0, m3, m4, m7, m33, a comma-separated list, or all.
    #[arg(long, default_value = "m4")]
    core: String,
    /// Print JSON (`parity`, `bench`).
    #[arg(long)]
    json: bool,
    /// Exported model source to compile in [default: $TINYVAE_MODEL, else the firmware's
    /// default model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// `parity` only: export this checkpoint's int8 model, run it on the core(s) and compare
    /// every window's score and alarm with this tool's own scoring (`tinyvae score`).
    #[arg(long, conflicts_with = "model")]
    checkpoint: Option<PathBuf>,
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report): {info}");
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain on one line (`outer: inner: ...`), newlines flattened.
fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Train(a) => cmd_train(a).map(|()| ExitCode::SUCCESS),
        Cmd::Quantize(a) => cmd_quantize(a).map(|()| ExitCode::SUCCESS),
        Cmd::Eval(a) => cmd_eval(a).map(|()| ExitCode::SUCCESS),
        Cmd::Score(a) => cmd_score(a).map(|()| ExitCode::SUCCESS),
        Cmd::Export(a) => cmd_export(a).map(|()| ExitCode::SUCCESS),
        Cmd::Demo(a) => cmd_demo(a).map(|()| ExitCode::SUCCESS),
        Cmd::Import(a) => cmd_import(a).map(|()| ExitCode::SUCCESS),
        Cmd::Firmware { cmd } => cmd_firmware(cmd),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

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
    window: usize,
    stride: usize,
    train_stride: usize,
    encoder_hidden: Vec<usize>,
    decoder_hidden: Option<Vec<usize>>,
    latent: LatentSpec,
    noise: NoiseKind,
    val_fraction: f64,
    train: TrainConfig,
}

fn resolve(o: &ModelOpts) -> Result<Resolved> {
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

// ---------------------------------------------------------------------------------------------
// Calibration (stored in the checkpoint's config.json)

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

fn score_diff(f: &[f32], q: &[f32]) -> ScoreDiff {
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
fn score_kinds(samples: u16) -> Vec<ScoreKind> {
    vec![
        ScoreKind::Elbo,
        ScoreKind::Iwae { samples },
        ScoreKind::ReconProb { samples },
        ScoreKind::ElboSampled { samples },
    ]
}

fn scores_of(m: &HostModel, w: &Windows, kind: ScoreKind, seed: u64) -> Result<Vec<f32>> {
    Ok(model::score_windows(m, w.iter(), kind, seed)?
        .into_iter()
        .map(|s| s.score)
        .collect())
}

/// The training stream cut like training cut it.
struct TrainSplit {
    train: Windows,
    val: Windows,
    stride: usize,
}

fn split_windows(
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
fn calibrate(
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

/// A loaded, calibrated checkpoint with its two runtime models.
pub struct Loaded {
    ck: Checkpoint,
    th: Thresholds,
    cal: Calibration,
    f32: HostModel,
    int8: HostModel,
}

/// [`checkpoint::load`], with a clear message for a path that is not a checkpoint.
fn load_checkpoint(dir: &Path) -> Result<Checkpoint> {
    if !dir.exists() {
        bail!("{}: no such checkpoint directory", dir.display());
    }
    if dir.is_dir() && !dir.join(checkpoint::CONFIG_FILE).exists() {
        bail!(
            "{}: not a checkpoint directory (no {})",
            dir.display(),
            checkpoint::CONFIG_FILE
        );
    }
    checkpoint::load(dir)
}

pub fn load_model(dir: &Path) -> Result<Loaded> {
    let ck = load_checkpoint(dir)?;
    let (th, cal) = calibration_of(&ck.config).with_context(|| {
        format!(
            "{}: the checkpoint is not calibrated; run `tinyvae quantize --model {}`",
            dir.display(),
            dir.display()
        )
    })?;
    let f32 = HostModel::float(&ck.params)?;
    let int8 = HostModel::int8(&ck.params, &cal.ranges)?;
    Ok(Loaded {
        ck,
        th,
        cal,
        f32,
        int8,
    })
}

fn calibration_of(c: &CheckpointConfig) -> Result<(Thresholds, Calibration)> {
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

// ---------------------------------------------------------------------------------------------
// train

/// What `train` produced (also used by `demo`).
pub struct Trained {
    ck: Checkpoint,
    /// Wall time of all training runs (every candidate latent size).
    seconds: f64,
    report: TrainReport,
    f32: HostModel,
    int8: HostModel,
    split: TrainSplit,
}

fn train_model(data_path: &Path, o: &ModelOpts, c: &CalibOpts) -> Result<Trained> {
    let r = resolve(o)?;
    let series = data::load_csv(data_path)?;
    let norm = Norm::fit_rows(
        &series,
        0..data::split_row(&series, r.val_fraction, r.window)?,
    );
    for w in scale::norm_warnings(&norm, &series.channels) {
        eprintln!("warning: {}: {w}", data_path.display());
    }
    let split = split_windows(&series, r.window, r.train_stride, r.val_fraction, &norm)?;
    let ch = series.num_channels();
    let decoder_hidden = r
        .decoder_hidden
        .clone()
        .unwrap_or_else(|| r.encoder_hidden.iter().rev().copied().collect());
    let candidates: Vec<usize> = match r.latent {
        LatentSpec::Fixed(z) => vec![z],
        LatentSpec::Auto => AUTO_LATENTS.to_vec(),
    };
    let t0 = Instant::now();
    let mut best: Option<(f64, Arch, train::Params, TrainReport)> = None;
    let mut selection = Vec::new();
    // Several candidates: each is trained with early stopping (SELECTION_PATIENCE when the final
    // run trains to the end), then the winner is trained again with the final patience.
    let mut select_cfg = r.train.clone();
    if candidates.len() > 1 && select_cfg.patience == 0 {
        select_cfg.patience = SELECTION_PATIENCE;
    }
    let arch_of = |z: usize| -> Result<Arch> {
        let arch = Arch {
            input: r.window * ch,
            encoder_hidden: r.encoder_hidden.clone(),
            latent: z,
            decoder_hidden: decoder_hidden.clone(),
            noise: r.noise,
            channels: ch,
        };
        arch.validate()?;
        train::limits::check_arch(&arch)?;
        Ok(arch)
    };
    // Every candidate's size is checked before the first one trains.
    for &z in &candidates {
        arch_of(z)?;
    }
    for &z in &candidates {
        let arch = arch_of(z)?;
        let (params, report) =
            train::train_views(&arch, &select_cfg, split.train.view(), split.val.view())?;
        let val = report
            .history
            .iter()
            .find(|h| h.epoch == report.best_epoch)
            .and_then(|h| h.val_elbo)
            .unwrap_or(f64::NEG_INFINITY);
        selection.push(json!({"latent": z, "val_elbo": val, "epochs": report.history.len()}));
        if best.as_ref().is_none_or(|b| val > b.0) {
            best = Some((val, arch, params, report));
        }
    }
    let (_, arch, mut params, mut report) = best.context("no latent size to train")?;
    if report.stopped_early && select_cfg.patience != r.train.patience {
        // The same seed and data: the selection run's first epochs again, then to the end.
        (params, report) =
            train::train_views(&arch, &r.train, split.train.view(), split.val.view())?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let config = CheckpointConfig::new(
        series.channels.clone(),
        r.window,
        r.stride,
        norm.mean.clone(),
        norm.std.clone(),
        arch,
        r.train.clone(),
    );
    let mut ck = Checkpoint { config, params };
    if candidates.len() > 1 {
        ck.config.extra.insert(
            "latent_selection".into(),
            json!({"by": "validation ELBO", "candidates": selection}),
        );
    }
    let (f32, int8) = calibrate(&mut ck, &split, data_path, r.val_fraction, c)?;
    Ok(Trained {
        ck,
        seconds,
        report,
        f32,
        int8,
        split,
    })
}

/// `latent chosen by validation ELBO: 8 -319.6, 16 -213.7, ... -> 24`, for `--latent auto`.
fn selection_line(c: &CheckpointConfig) -> Option<String> {
    let cands = c
        .extra
        .get("latent_selection")?
        .get("candidates")?
        .as_array()?;
    let parts: Vec<String> = cands
        .iter()
        .map(|v| {
            format!(
                "{}: {:.1}",
                v["latent"],
                v["val_elbo"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect();
    Some(format!(
        "latent size chosen by validation ELBO ({}): {}",
        parts.join(", "),
        c.arch.latent
    ))
}

fn arch_string(a: &Arch) -> String {
    let enc: Vec<String> = a.encoder_hidden.iter().map(|h| h.to_string()).collect();
    let dec: Vec<String> = a.decoder_hidden.iter().map(|h| h.to_string()).collect();
    format!(
        "{}-{}-{} / {}-{}-{}",
        a.input,
        enc.join("-"),
        a.latent,
        a.latent,
        dec.join("-"),
        a.input
    )
}

/// The files a checkpoint directory holds (what `train` and `quantize` write).
const CHECKPOINT_FILES: [&str; 2] = [checkpoint::WEIGHTS_FILE, checkpoint::CONFIG_FILE];

fn cmd_train(a: TrainArgs) -> Result<()> {
    let data_path = a.data.unwrap_or_else(|| default_data("train.csv"));
    output::check_dir(&a.out, &CHECKPOINT_FILES, &[Input::File(&data_path)])?;
    let t = train_model(&data_path, &a.model, &a.calib)?;
    checkpoint::save(&a.out, &t.ck)?;
    let (th, cal) = calibration_of(&t.ck.config)?;
    let last = t
        .report
        .history
        .iter()
        .find(|h| h.epoch == t.report.best_epoch);
    println!(
        "trained {} on {} windows ({} validation) in {:.2} s ({:.2} s in all), {} epochs (best {}{})",
        arch_string(&t.ck.config.arch),
        t.report.n_train,
        t.report.n_val,
        t.report.seconds,
        t.seconds,
        t.report.history.len(),
        t.report.best_epoch,
        if t.report.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    if let Some(h) = last {
        if let Some(v) = h.val_elbo {
            println!("validation ELBO {v:.2} nats per window");
        }
    }
    if let Some(l) = selection_line(&t.ck.config) {
        println!("{l}");
    }
    println!(
        "threshold ({} at FPR {}): f32 {:.3}, int8 {:.3}; f32/int8 score difference: mean {:.4} nats, max {:.4}",
        th.score, th.fpr, th.f32, th.int8, cal.score_diff.mean_abs, cal.score_diff.max_abs
    );
    println!("wrote {}", a.out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// quantize

fn cmd_quantize(a: QuantizeArgs) -> Result<()> {
    let mut ck = load_checkpoint(&a.model)?;
    let recorded = ck
        .config
        .extra
        .get("calibration")
        .and_then(|c| serde_json::from_value::<Calibration>(c.clone()).ok());
    let data_path = a
        .data
        .or_else(|| recorded.as_ref().map(|c| PathBuf::from(&c.train_data)))
        .unwrap_or_else(|| default_data("train.csv"));
    output::check_dir(&a.model, &CHECKPOINT_FILES, &[Input::File(&data_path)])?;
    let val_fraction = recorded.as_ref().map_or(0.2, |c| c.val_fraction);
    let series = data::load_csv(&data_path)?
        .select_channels_with(&ck.config.channels, Matching::from_flag(a.by_position))?;
    let norm = Norm {
        mean: ck.config.norm_mean.clone(),
        std: ck.config.norm_std.clone(),
    };
    let train_stride = recorded
        .as_ref()
        .and_then(|c| c.train_stride)
        .unwrap_or(ck.config.stride);
    let split = split_windows(&series, ck.config.window, train_stride, val_fraction, &norm)?;
    let (_, q) = calibrate(&mut ck, &split, &data_path, val_fraction, &a.calib)?;
    checkpoint::save(&a.model, &ck)?;
    let (th, cal) = calibration_of(&ck.config)?;
    if a.json {
        println!(
            "{}",
            json!({
                "model": a.model.display().to_string(),
                "threshold": th,
                "calibration": cal,
                "flash_bytes_int8": q.param_bytes(),
            })
        );
    } else {
        println!(
            "int8 model: {} bytes of parameters, {} MACs per window",
            q.param_bytes(),
            q.macs()
        );
        println!(
            "f32 vs int8 score ({}) on {} validation windows: mean |diff| {:.4} nats ({:.4} of the score's std), max {:.4}",
            th.score,
            cal.val_windows,
            cal.score_diff.mean_abs,
            cal.score_diff.mean_abs_over_std,
            cal.score_diff.max_abs
        );
        for k in &th.kinds {
            println!(
                "threshold {:<16} f32 {:>12.4}  int8 {:>12.4}",
                k.score, k.f32, k.int8
            );
        }
        println!("updated {}", a.model.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// eval

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
    windows: Windows,
    rows: Vec<KindMetrics>,
    default_f32: Vec<f32>,
    default_int8: Vec<f32>,
    json: serde_json::Value,
}

fn labels_of(w: &Windows, path: &Path) -> Result<Vec<bool>> {
    w.labels.clone().with_context(|| {
        format!(
            "{}: no `label` column; evaluation needs labels (use `tinyvae score` for unlabeled data)",
            path.display()
        )
    })
}

fn load_stream(
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
fn detect(
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

fn evaluate(
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
    Ok(EvalResult {
        windows: w,
        rows,
        default_f32,
        default_int8,
        json,
    })
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.prec$}"))
}

fn print_eval_table(r: &EvalResult) {
    println!(
        "{:<16} {:<5} {:>8} {:>8} {:>12} {:>9} {:>7} {:>7} {:>7}",
        "score", "model", "ROC AUC", "PR AUC", "threshold", "precision", "recall", "F1", "FPR"
    );
    for k in &r.rows {
        let c = k.at_threshold;
        println!(
            "{:<16} {:<5} {:>8} {:>8} {:>12} {:>9} {:>7} {:>7} {:>7}",
            k.score,
            k.precision,
            fmt_opt(k.roc_auc, 4),
            fmt_opt(k.pr_auc, 4),
            k.threshold.map_or("-".into(), |t| format!("{t:.3}")),
            fmt_opt(c.map(|c| c.precision), 3),
            fmt_opt(c.map(|c| c.recall), 3),
            fmt_opt(c.map(|c| c.f1), 3),
            fmt_opt(c.map(|c| c.fpr), 3),
        );
    }
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let m = load_model(&a.model)?;
    let path = a.data.clone().unwrap_or_else(|| default_data("test.csv"));
    let samples = samples_of(&m.th);
    let matching = Matching::from_flag(a.by_position);
    let mut r = evaluate(&m, &path, a.stride, a.seed, samples, matching)?;
    let baseline = match a.baseline {
        Some(Baseline::Gaussian) => {
            let train_path = a
                .train_data
                .clone()
                .unwrap_or_else(|| PathBuf::from(&m.cal.train_data));
            Some(demo::gaussian_baseline(
                &train_path,
                &m.ck.config,
                m.cal.val_fraction,
                m.cal.train_stride.unwrap_or(m.ck.config.stride),
                m.th.fpr,
                &r.windows,
            )?)
        }
        None => None,
    };
    if let (Some(b), Some(obj)) = (&baseline, r.json.as_object_mut()) {
        obj.insert("baseline".into(), serde_json::to_value(b)?);
    }
    if a.json {
        println!("{}", r.json);
        return Ok(());
    }
    let labels = r.windows.labels.as_deref().unwrap_or(&[]);
    let n_anom = labels.iter().filter(|&&l| l).count();
    println!(
        "{}: {} windows of {} samples ({} anomalous, {} normal); thresholds at FPR {} on {} validation windows",
        path.display(),
        r.windows.len(),
        r.windows.window,
        n_anom,
        r.windows.len() - n_anom,
        m.th.fpr,
        m.th.windows
    );
    print_eval_table(&r);
    let d = score_diff(&r.default_f32, &r.default_int8);
    println!(
        "f32 vs int8 {} score: mean |diff| {:.4} nats ({:.4} of the score's std), max {:.4}",
        m.th.score, d.mean_abs, d.mean_abs_over_std, d.max_abs
    );
    if let Some(b) = &baseline {
        println!();
        demo::print_cost_table(&m.int8, &m.f32, &r.json, b);
    }
    Ok(())
}

fn samples_of(th: &Thresholds) -> u16 {
    th.kinds
        .iter()
        .find_map(|k| k.score.strip_prefix("iwae-").and_then(|s| s.parse().ok()))
        .unwrap_or(16)
}

// ---------------------------------------------------------------------------------------------
// score

/// `LO,HI` with `LO < HI`.
fn parse_limits(s: &str) -> Result<(f32, f32), String> {
    let parse = |t: &str| match parse_f32(t) {
        Ok(v) if v.is_nan() => Err(format!("{:?} is not a number", t.trim())),
        r => r,
    };
    match s.split_once(',') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo < hi {
                Ok((lo, hi))
            } else {
                Err(format!("LO {lo} must be below HI {hi}"))
            }
        }
        None => Err("expected LO,HI".into()),
    }
}

/// Comma-separated unsigned integers, `min..=max` of them.
fn parse_counts<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Result<Vec<T>, String> {
    let v = s
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<T>()
                .map_err(|_| format!("{t:?} is not a small non-negative integer"))
        })
        .collect::<Result<Vec<T>, String>>()?;
    if (min..=max).contains(&v.len()) {
        Ok(v)
    } else {
        Err(format!("expected {min} to {max} comma-separated values"))
    }
}

/// `K,N[,CLEAR]` (CLEAR defaults to 1; ranges are checked with the alarm configuration).
fn parse_debounce(s: &str) -> Result<(u8, u8, u8), String> {
    let v = parse_counts::<u8>(s, 2, 3)?;
    Ok((v[0], v[1], v.get(2).copied().unwrap_or(1)))
}

/// `STATS,THRESHOLD` window counts.
fn parse_adapt(s: &str) -> Result<(u32, u32), String> {
    let v = parse_counts::<u32>(s, 2, 2)?;
    Ok((v[0], v[1]))
}

/// Warns on stderr, per channel, about values the model's standardization clamps
/// ([`scale::ClampCheck`]): their windows score as extreme anomalies.
fn warn_clamped(m: &Loaded, series: &Series) {
    let mut check = scale::ClampCheck::new(&Norm {
        mean: m.ck.config.norm_mean.clone(),
        std: m.ck.config.norm_std.clone(),
    });
    check.push_rows(&series.values);
    for w in check.warnings(&series.channels) {
        eprintln!("warning: {}: {w}", series.path.display());
    }
}

fn cmd_score(a: ScoreArgs) -> Result<()> {
    output::check_file(&a.out, &[Input::Dir(&a.model), Input::File(&a.data)])?;
    let m = load_model(&a.model)?;
    let kind = match &a.score {
        Some(name) => model::parse_score_kind(name, a.samples)?,
        None => model::parse_score_kind(m.th.score.split('-').next().unwrap_or("elbo"), a.samples)?,
    };
    let name = model::score_name(kind);
    let source = if a.threshold.is_some() {
        options::ThresholdSource::Flag
    } else {
        options::ThresholdSource::Checkpoint
    };
    let threshold = match a.threshold {
        Some(t) => t,
        None => m
            .th
            .kinds
            .iter()
            .find(|k| k.score == name)
            .map(|k| if a.f32 { k.f32 } else { k.int8 })
            .with_context(|| {
                format!(
                    "score {name} is not calibrated in {} (calibrated: {}); run `tinyvae quantize --samples {}` or give --threshold",
                    a.model.display(),
                    m.th.kinds.iter().map(|k| k.score.as_str()).collect::<Vec<_>>().join(", "),
                    a.samples
                )
            })?,
    };
    let alarm = options::AlarmOptions {
        threshold,
        source,
        ema: a.ema,
        clear_threshold: a.clear_threshold,
        debounce: a.debounce,
    }
    .config()?;
    let mut cfg = stream::StreamConfig::new(
        kind,
        a.stride.unwrap_or(m.ck.config.stride),
        a.seed,
        threshold,
    );
    cfg.alarm = alarm;
    cfg.limits = a.limits;
    cfg.alarm_on_flagged = a.alarm_on_flagged;
    cfg.adapt = a
        .adapt
        .map(|(stats, windows)| {
            let fpr = a.adapt_fpr.unwrap_or(m.th.fpr as f32);
            options::adapt_config(stats, windows, fpr, a.adapt_fpr.is_some())
        })
        .transpose()?;
    cfg.attribution = true;
    if cfg.stride == 0 {
        bail!("{}: --stride must be at least 1", a.data.display());
    }
    // Streamed: one CSV row in, each window's line out as the detector reports it.
    let csv = data::CsvRows::open(&a.data, data::NonFinite::Keep)?;
    let mut src = stream::CsvSource::new(
        csv,
        &m.ck.config.channels,
        m.ck.config.window,
        Matching::from_flag(a.by_position),
    )?
    .check_clamped(&Norm {
        mean: m.ck.config.norm_mean.clone(),
        std: m.ck.config.norm_std.clone(),
    });
    let hm = if a.f32 { &m.f32 } else { &m.int8 };
    let channels = &m.ck.config.channels;
    let has_labels = src.has_labels();
    let mut out = data::AtomicWriter::create(&a.out)?;
    let write_err = || format!("{}: cannot write", a.out.display());
    let mut line = String::from("window,start,end,score,alarm");
    if has_labels {
        line.push_str(",label");
    }
    line.push_str(",level,event,faults,top_channel\n");
    out.write_all(line.as_bytes()).with_context(write_err)?;
    let (mut windows, mut alarmed, mut events, mut skipped, mut flagged) = (0, 0, 0, 0, 0);
    stream::run_rows(hm, &m.ck.config, &mut src, &cfg, |src, row| {
        use std::fmt::Write as _;
        let r = &row.report;
        windows += 1;
        alarmed += usize::from(r.alarm);
        events += usize::from(matches!(
            r.event,
            Some(tinyvae::AlarmEvent::AlarmRaised { .. })
        ));
        skipped += usize::from(r.faults.skips_window());
        flagged += usize::from(r.faults.flags_window() && !r.faults.skips_window());
        let score = r.score.map_or(String::new(), |s| format!("{:?}", s.score));
        line.clear();
        write!(
            line,
            "{},{},{},{score},{}",
            r.window,
            r.start,
            r.end,
            u8::from(r.alarm)
        )?;
        if has_labels {
            write!(line, ",{}", u8::from(src.any_label(r.start, r.end)))?;
        }
        let level = r.level.map_or(String::new(), |l| format!("{l:?}"));
        let event = match r.event {
            None => "",
            Some(tinyvae::AlarmEvent::AlarmRaised { .. }) => "raised",
            Some(tinyvae::AlarmEvent::AlarmCleared { .. }) => "cleared",
        };
        let top = row
            .top_channel
            .and_then(|c| channels.get(c))
            .map_or("", String::as_str);
        writeln!(line, ",{level},{event},{},{top}", row.faults_text(channels))?;
        out.write_all(line.as_bytes()).with_context(write_err)
    })?;
    data::window_count(src.rows_read(), m.ck.config.window, cfg.stride)
        .map_err(|e| anyhow!("{}: {e}", a.data.display()))?;
    out.commit()?;
    for w in src.clamp_warnings(channels) {
        eprintln!("warning: {}: {w}", a.data.display());
    }
    eprintln!(
        "{} windows, {} with the alarm on, {} alarms raised ({} {}, threshold {:.4}); {} skipped (non-finite samples or gaps), {} flagged (saturated or stuck); wrote {}",
        windows,
        alarmed,
        events,
        if a.f32 { "f32" } else { "int8" },
        name,
        threshold,
        skipped,
        flagged,
        a.out.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// export

fn cmd_export(a: ExportArgs) -> Result<()> {
    output::check_file(&a.out, &[Input::Dir(&a.model)])?;
    let m = load_model(&a.model)?;
    let src = if a.f32 {
        export::export_f32(&m.ck, &m.f32, m.th.f32)?
    } else {
        export::export_int8(&m.ck, &m.int8, m.th.int8)?
    };
    data::write_atomic(&a.out, src.as_bytes())?;
    eprintln!(
        "wrote {} ({} model, {} bytes of parameters, threshold {})",
        a.out.display(),
        if a.f32 { "f32" } else { "int8" },
        if a.f32 {
            m.f32.param_bytes()
        } else {
            m.int8.param_bytes()
        },
        if a.f32 { m.th.f32 } else { m.th.int8 }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// demo

fn cmd_demo(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let train_path = a
        .train_data
        .clone()
        .unwrap_or_else(|| default_data("train.csv"));
    let test_path = a
        .test_data
        .clone()
        .unwrap_or_else(|| default_data("test.csv"));
    let inputs = [Input::File(&train_path), Input::File(&test_path)];
    let staging = output::Staging::new(&a.out, "demo", &inputs)?;
    let dir = staging.path().to_path_buf();
    let t = train_model(&train_path, &a.model, &a.calib)?;
    let train_seconds = t.seconds;
    let model_dir = dir.join("model");
    checkpoint::save(&model_dir, &t.ck)?;
    let m = load_model(&model_dir)?;
    let samples = samples_of(&m.th);
    let mut r = evaluate(&m, &test_path, None, 0, samples, Matching::ByName)?;
    let src = export::export_int8(&m.ck, &m.int8, m.th.int8)?;
    data::write_atomic(&dir.join("model.rs"), src.as_bytes())?;
    let baseline = demo::gaussian_baseline(
        &train_path,
        &m.ck.config,
        m.cal.val_fraction,
        m.cal.train_stride.unwrap_or(m.ck.config.stride),
        m.th.fpr,
        &r.windows,
    )
    .map_err(|e| eprintln!("warning: Gaussian baseline skipped: {}", error_line(&e)))
    .ok();
    demo::plots(
        &dir,
        &t.report,
        &r.windows,
        &r.default_f32,
        &r.default_int8,
        &m.th.score,
        m.th.f32,
        m.th.int8,
        baseline.as_ref(),
    )?;
    if let Some(obj) = r.json.as_object_mut() {
        obj.insert("train_seconds".into(), json!(train_seconds));
        obj.insert("epochs".into(), json!(t.report.history.len()));
        obj.insert("best_epoch".into(), json!(t.report.best_epoch));
        obj.insert("arch".into(), json!(arch_string(&m.ck.config.arch)));
        obj.insert(
            "val_score_diff".into(),
            serde_json::to_value(m.cal.score_diff)?,
        );
        if let Some(b) = &baseline {
            obj.insert("baseline".into(), serde_json::to_value(b)?);
        }
    }
    let firmware = if a.no_firmware {
        None
    } else {
        eprintln!(
            "running the exported model on the Cortex-M4 in QEMU (first build takes a while)..."
        );
        Some(
            demo::firmware_check(&dir.join("model.rs"), &m.int8, &m.ck.config, m.th.int8)
                .unwrap_or_else(|e| json!({"error": error_line(&e)})),
        )
    };
    if let (Some(fw), Some(obj)) = (&firmware, r.json.as_object_mut()) {
        obj.insert("firmware".into(), fw.clone());
    }
    let wall = t0.elapsed().as_secs_f64();
    if let Some(obj) = r.json.as_object_mut() {
        obj.insert("demo_seconds".into(), json!(wall));
    }
    let mut text = serde_json::to_string_pretty(&r.json)?;
    text.push('\n');
    data::write_atomic(&dir.join("metrics.json"), text.as_bytes())?;
    let out = staging.commit()?;
    let _ = t.split;
    let _ = (&t.f32, &t.int8);
    demo::print_summary(
        &out,
        &m,
        &r.json,
        &r.rows,
        baseline.as_ref(),
        train_seconds,
        wall,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// import, firmware

fn cmd_import(a: ImportArgs) -> Result<()> {
    output::check_dir(
        &a.out,
        &["model.rs", "model.json"],
        &[Input::File(&a.tflite)],
    )?;
    let m = tinyvae_host_tools::tflite::import_to_dir(&a.tflite, &a.out)?;
    let layers: Vec<String> = m
        .layers
        .iter()
        .map(|l| format!("{}x{}", l.in_dim, l.out_dim))
        .collect();
    eprintln!(
        "imported {} dense layers ({}) from {}; wrote {}/model.rs and {}/model.json",
        m.layers.len(),
        layers.join(", "),
        a.tflite.display(),
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

fn cmd_firmware(cmd: FirmwareCmd) -> Result<ExitCode> {
    demo::firmware(cmd)
}
