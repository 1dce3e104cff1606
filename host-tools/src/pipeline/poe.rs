//! The multi-sensor (product-of-experts) pipeline: `--group` parsing and validation
//! ([`parse_groups`]), training with latent selection and calibration of per-subset thresholds
//! ([`train_poe_model`]), loading ([`load_poe`]) and evaluation by subset ([`evaluate_poe`]).
//!
//! Thresholds: for every non-empty subset `S` of the groups, the `1 - fpr` quantile of the
//! int8 (and f32) model's `-ELBO_S` on the validation windows, the same rule and windows as the
//! single model's threshold. The detector compares a window scored with `S` against `S`'s
//! threshold ([`tinyvae::VaeModel::threshold_shift`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tinyvae::{GroupSet, ScoreKind};

use super::calibrate::{split_windows, CalibOpts};
use super::config::{
    default_decoder_hidden, resolve, LatentSpec, ModelOpts, AUTO_LATENTS, SELECTION_PATIENCE,
};
use crate::columns::Matching;
use crate::data::{self, Norm, Windows};
use crate::metrics;
use crate::model::PoeHost;
use crate::poe_checkpoint::{
    GroupSpec, PoeCalibration, PoeCheckpoint, PoeConfig, PoeWidths, POE_FORMAT,
};
use crate::train::poe::{fit_ar_noise, train_poe, DecoderLayout, NoiseFit, NoiseOrder, PoeArch};
use crate::train::TrainReport;

/// Parses `--group NAME=CH,CH,...` options against the stream's channel names.
///
/// # Errors
/// A malformed spec, an empty or repeated name, an unknown channel, a channel in two groups or
/// in none, or more than 4 groups; the message names the option value.
pub fn parse_groups(specs: &[String], channels: &[String]) -> Result<Vec<GroupSpec>> {
    if specs.len() > tinyvae::MAX_GROUPS {
        bail!(
            "--group: at most {} sensor groups, found {}",
            tinyvae::MAX_GROUPS,
            specs.len()
        );
    }
    let mut out: Vec<GroupSpec> = Vec::new();
    let mut owner: Vec<Option<String>> = vec![None; channels.len()];
    for s in specs {
        let (name, list) = s.split_once('=').with_context(|| {
            format!("--group {s:?}: expected NAME=CHANNEL,CHANNEL,... (e.g. acc=ax,ay,az)")
        })?;
        let name = name.trim();
        if name.is_empty() || name.contains('+') {
            bail!("--group {s:?}: the group name must be non-empty and must not contain '+'");
        }
        if out.iter().any(|g| g.name == name) {
            bail!("--group {s:?}: group name {name:?} is used twice");
        }
        let mut chans = Vec::new();
        for ch in list.split(',').map(str::trim) {
            let Some(i) = channels.iter().position(|c| c == ch) else {
                bail!(
                    "--group {s:?}: no channel {ch:?} in the data (channels: {})",
                    channels.join(", ")
                );
            };
            if let Some(o) = &owner[i] {
                bail!("--group {s:?}: channel {ch:?} is already in group {o:?}");
            }
            owner[i] = Some(name.to_string());
            chans.push(i);
        }
        chans.sort_unstable();
        out.push(GroupSpec {
            name: name.to_string(),
            channels: chans.iter().map(|&i| channels[i].clone()).collect(),
        });
    }
    if let Some(i) = owner.iter().position(Option::is_none) {
        bail!(
            "--group: channel {:?} is in no group (every channel must be in exactly one)",
            channels[i]
        );
    }
    Ok(out)
}

/// What [`train_poe_model`] produced.
pub struct PoeTrained {
    /// The calibrated checkpoint.
    pub ck: PoeCheckpoint,
    /// The final run's report.
    pub report: TrainReport,
    /// Wall time of every training run.
    pub seconds: f64,
    /// Validation objective per candidate latent size (`--latent auto`).
    pub selection: Vec<(usize, f64)>,
    /// The decoder noise fit (`--noise-ar`).
    pub noise: NoiseFit,
}

/// Trains a product-of-experts model on the stream at `data_path` with the groups `specs`
/// (`--group`), the options `o` (`--latent auto` picks the candidate with the best validation
/// objective, as for the single model) and the decoder layout `decoder` (`--decoder`; widths
/// without `--decoder-hidden`: [`default_decoder_hidden`]), fits its decoder noise (`noise`,
/// `--noise-ar`: [`fit_ar_noise`]), and calibrates it with `c`.
///
/// # Errors
/// Invalid options or groups, bad data, or a failed training run.
pub fn train_poe_model(
    data_path: &Path,
    o: &ModelOpts,
    c: &CalibOpts,
    specs: &[String],
    decoder: DecoderLayout,
    noise: NoiseOrder,
) -> Result<PoeTrained> {
    let r = resolve(o)?;
    let series = data::load_csv(data_path)?;
    let groups = parse_groups(specs, &series.channels)?;
    let norm = Norm::fit_rows(
        &series,
        0..data::split_row(&series, r.val_fraction, r.window)?,
    );
    let split = split_windows(&series, r.window, r.train_stride, r.val_fraction, &norm)?;
    let decoder_hidden = r
        .decoder_hidden
        .clone()
        .unwrap_or_else(|| default_decoder_hidden(decoder, &r.encoder_hidden));
    let mut config = PoeConfig {
        format: POE_FORMAT.to_string(),
        channels: series.channels.clone(),
        window: r.window,
        stride: r.stride,
        norm_mean: norm.mean.clone(),
        norm_std: norm.std.clone(),
        groups,
        arch: PoeWidths {
            encoder_hidden: r.encoder_hidden.clone(),
            latent: 0,
            decoder_hidden,
            noise: r.noise,
            decoder,
        },
        train: r.train.clone(),
        calibration: None,
    };
    let candidates: Vec<usize> = match r.latent {
        LatentSpec::Fixed(z) => vec![z],
        LatentSpec::Auto => AUTO_LATENTS.to_vec(),
    };
    let arch_of = |z: usize| -> Result<PoeArch> {
        let mut cfg = config.clone();
        cfg.arch.latent = z;
        cfg.poe_arch()
    };
    for &z in &candidates {
        arch_of(z)?;
    }
    let mut select_cfg = r.train.clone();
    if candidates.len() > 1 && select_cfg.patience == 0 {
        select_cfg.patience = SELECTION_PATIENCE;
    }
    let t0 = Instant::now();
    let mut best = None;
    let mut selection = Vec::new();
    for &z in &candidates {
        let arch = arch_of(z)?;
        let (p, rep) = train_poe(&arch, &select_cfg, split.train.view(), split.val.view())?;
        let val = rep
            .history
            .iter()
            .find(|h| h.epoch == rep.best_epoch)
            .and_then(|h| h.val_elbo)
            .unwrap_or(f64::NEG_INFINITY);
        selection.push((z, val));
        if best
            .as_ref()
            .is_none_or(|b: &(f64, PoeArch, _, _)| val > b.0)
        {
            best = Some((val, arch, p, rep));
        }
    }
    let (_, arch, mut params, mut report) = best.context("no latent size to train")?;
    if report.stopped_early && select_cfg.patience != r.train.patience {
        (params, report) = train_poe(&arch, &r.train, split.train.view(), split.val.view())?;
    }
    let noise = fit_ar_noise(&params, split.train.view(), split.val.view(), noise)?;
    params.noise = noise.chosen.clone();
    let seconds = t0.elapsed().as_secs_f64();
    config.arch.latent = arch.latent;
    let mut ck = PoeCheckpoint { config, params };
    calibrate_poe(&mut ck, &split.train, &split.val, c.fpr)?;
    Ok(PoeTrained {
        ck,
        report,
        seconds,
        selection,
        noise,
    })
}

/// int8 ranges from `train`, per-subset thresholds at `fpr` on `val` (see the module doc).
///
/// # Errors
/// An `fpr` outside [0, 1], no validation windows, or a library error.
pub fn calibrate_poe(
    ck: &mut PoeCheckpoint,
    train: &Windows,
    val: &Windows,
    fpr: f64,
) -> Result<()> {
    if !(0.0..=1.0).contains(&fpr) {
        bail!("--fpr must be in [0, 1], found {fpr}");
    }
    let f = PoeHost::float(&ck.params)?;
    let ranges = f.calibrate(train.iter())?;
    let q = PoeHost::int8(&ck.params, &ranges)?;
    let mut tf = BTreeMap::new();
    let mut tq = BTreeMap::new();
    for s in ck.config.subsets() {
        let name = ck.config.subset_name(s);
        for (m, out) in [(&f, &mut tf), (&q, &mut tq)] {
            let sc = m.scores(val.iter(), s, ScoreKind::Elbo, 0)?;
            let t = metrics::threshold_at_fpr(&sc, fpr)
                .context("no validation windows to calibrate on")?;
            out.insert(name.clone(), t);
        }
    }
    ck.config.calibration = Some(PoeCalibration {
        fpr,
        score: "elbo".into(),
        validation_windows: val.len(),
        thresholds_f32: tf,
        thresholds_int8: tq,
        ranges,
    });
    Ok(())
}

/// A loaded, calibrated PoE checkpoint with its f32 and int8 models (their threshold shifts
/// set from the calibration).
pub struct PoeLoaded {
    /// The checkpoint.
    pub ck: PoeCheckpoint,
    /// f32 model.
    pub f32: PoeHost,
    /// int8 model.
    pub int8: PoeHost,
}

/// Per-subset thresholds as a 16-entry table (NaN for subsets the model does not have).
pub fn threshold_table(cfg: &PoeConfig, by_name: &BTreeMap<String, f32>) -> [f32; 16] {
    let mut t = [f32::NAN; 16];
    for s in cfg.subsets() {
        if let Some(&v) = by_name.get(&cfg.subset_name(s)) {
            t[s.index()] = v;
        }
    }
    t
}

/// Loads the PoE checkpoint directory `dir` and builds its models.
///
/// # Errors
/// An unreadable or uncalibrated checkpoint.
pub fn load_poe(dir: &Path) -> Result<PoeLoaded> {
    let ck = crate::poe_checkpoint::load(dir)?;
    let cal = ck
        .config
        .calibration
        .clone()
        .with_context(|| format!("{}: the checkpoint is not calibrated", dir.display()))?;
    let mut f32 = PoeHost::float(&ck.params)?;
    let mut int8 = PoeHost::int8(&ck.params, &cal.ranges)?;
    f32.set_thresholds(&threshold_table(&ck.config, &cal.thresholds_f32));
    int8.set_thresholds(&threshold_table(&ck.config, &cal.thresholds_int8));
    Ok(PoeLoaded { ck, f32, int8 })
}

/// Evaluates a PoE model on the labeled stream at `path`: ROC AUC of every subset at int8 and
/// f32 (`roc_auc_int8_by_groups`, `roc_auc_f32_by_groups`), and the headline `roc_auc_int8` /
/// `roc_auc_f32` of the full set, or of the full set without the group `drop` ("as if that
/// group were dead").
///
/// # Errors
/// An unknown group in `drop`, a stream without labels, or a library error.
pub fn evaluate_poe(
    m: &PoeLoaded,
    path: &Path,
    stride: Option<usize>,
    drop: Option<&str>,
    matching: Matching,
) -> Result<Value> {
    let cfg = &m.ck.config;
    let series = data::load_csv(path)?.select_channels_with(&cfg.channels, matching)?;
    let norm = Norm {
        mean: cfg.norm_mean.clone(),
        std: cfg.norm_std.clone(),
    };
    let w = Windows::cut(&series, cfg.window, stride.unwrap_or(cfg.stride), &norm)?;
    let labels = w.labels.clone().with_context(|| {
        format!(
            "{}: no `label` column; evaluation needs labels",
            path.display()
        )
    })?;
    let all = GroupSet::first(cfg.groups.len());
    let headline = match drop {
        None => all,
        Some(name) => {
            let g = cfg
                .groups
                .iter()
                .position(|g| g.name == name)
                .with_context(|| {
                    format!(
                        "--drop {name:?}: the model has no such group (groups: {})",
                        cfg.groups
                            .iter()
                            .map(|g| g.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let mut s = all;
            s.remove(g);
            if s.is_empty() {
                bail!(
                    "--drop {name:?}: it is the model's only group; nothing would be left to score"
                );
            }
            s
        }
    };
    let mut by_q = serde_json::Map::new();
    let mut by_f = serde_json::Map::new();
    let mut head = (None, None);
    for s in cfg.subsets() {
        let q = m.int8.scores(w.iter(), s, ScoreKind::Elbo, 0)?;
        let f = m.f32.scores(w.iter(), s, ScoreKind::Elbo, 0)?;
        let (aq, af) = (metrics::roc_auc(&q, &labels), metrics::roc_auc(&f, &labels));
        by_q.insert(cfg.subset_name(s), json!(aq));
        by_f.insert(cfg.subset_name(s), json!(af));
        if s == headline {
            head = (aq, af);
        }
    }
    let n_anom = labels.iter().filter(|&&l| l).count();
    Ok(json!({
        "data": path.display().to_string(),
        "windows": w.len(),
        "anomalous": n_anom,
        "groups": cfg.subset_name(headline),
        "score": "elbo",
        "roc_auc_int8": head.0,
        "roc_auc_f32": head.1,
        "roc_auc_int8_by_groups": by_q,
        "roc_auc_f32_by_groups": by_f,
        "param_bytes_int8": m.int8.param_bytes(true),
        "macs": m.int8.macs(),
    }))
}
