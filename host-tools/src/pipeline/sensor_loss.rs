//! The demo's sensor-loss table: ROC AUC (int8, `-ELBO`) on the test windows with each sensor
//! group dead, for the demo's single VAE with the dead group's channels replaced by their
//! training mean, and for a product-of-experts model (`--group`) trained briefly for the demo
//! ([`DEMO_POE_EPOCHS`] epochs, latent [`DEMO_POE_LATENT`]), which scores with the groups that
//! are left. Built only for data with the bundled set's channels (`ax, ay, az` and
//! `wx, wy, wz`, the accelerometer and the gyroscope; [`demo_groups`]).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use tinyvae::{GroupSet, ScoreKind};

use super::config::{LatentSpec, ModelOpts};
use super::poe::{evaluate_poe, load_poe, train_poe_model};
use super::{CalibOpts, Loaded};
use crate::data::Windows;
use crate::metrics::roc_auc;
use crate::model::score_windows;
use crate::train::poe::{DecoderLayout, NoiseOrder};

/// Training epochs of the demo's product-of-experts model (a short run: the README's
/// multi-sensor section has the figures of longer ones).
pub const DEMO_POE_EPOCHS: usize = 20;

/// Latent size of the demo's product-of-experts model.
pub const DEMO_POE_LATENT: usize = 32;

/// One row of the table: the sensors present and the ROC AUC of each model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SensorLossRow {
    /// The present groups, joined by `+` (`acc+gyro`, `acc`, `gyro`).
    pub groups: String,
    /// The demo's single VAE (int8, `-ELBO`), absent groups' channels set to their training
    /// mean.
    pub single_mean_filled: Option<f64>,
    /// The product of experts (int8, `-ELBO` over the present groups).
    pub product_of_experts: Option<f64>,
}

/// The table and how its product-of-experts model was trained.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SensorLoss {
    /// The full set first, then each single group.
    pub rows: Vec<SensorLossRow>,
    /// Epochs the product of experts ran.
    pub poe_epochs: usize,
    /// Its best validation epoch (the parameters kept).
    pub poe_best_epoch: usize,
    /// Its latent size.
    pub poe_latent: usize,
    /// Its training wall time.
    pub poe_train_seconds: f64,
}

/// The `--group` specs of the demo for these channels: `acc=ax,ay,az` and `gyro=wx,wy,wz` when
/// the channels are exactly those six (in any order), else `None`.
pub fn demo_groups(channels: &[String]) -> Option<Vec<String>> {
    let mut sorted: Vec<&str> = channels.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    (sorted == ["ax", "ay", "az", "wx", "wy", "wz"])
        .then(|| vec!["acc=ax,ay,az".to_string(), "gyro=wx,wy,wz".to_string()])
}

/// Windows with the channels not in `keep` set to 0 (their training mean, standardized).
fn mean_filled(w: &Windows, keep: &[usize]) -> Vec<f32> {
    let c = w.channels.max(1);
    w.iter()
        .flat_map(|x| {
            x.chunks_exact(c).flat_map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(ch, &v)| if keep.contains(&ch) { v } else { 0.0 })
            })
        })
        .collect()
}

/// Builds the table for the demo's single model `m` and its test windows `windows` (cut from
/// `test_path`): trains the product of experts on `train_path` with `opts` (epochs and latent
/// set as above), saves it in `poe_dir`, and evaluates both. `None` when the channels are not
/// the bundled set's ([`demo_groups`]).
///
/// # Errors
/// A failed training, save, load or evaluation.
pub fn sensor_loss(
    m: &Loaded,
    windows: &Windows,
    train_path: &Path,
    test_path: &Path,
    opts: &ModelOpts,
    calib: &CalibOpts,
    poe_dir: &Path,
) -> Result<Option<SensorLoss>> {
    let channels = &m.ck.config.channels;
    let Some(specs) = demo_groups(channels) else {
        return Ok(None);
    };
    let labels = windows
        .labels
        .clone()
        .context("the test windows have no labels")?;
    let mut o = opts.clone();
    o.epochs = Some(DEMO_POE_EPOCHS);
    o.latent = Some(LatentSpec::Fixed(DEMO_POE_LATENT));
    let t = train_poe_model(
        train_path,
        &o,
        calib,
        &specs,
        DecoderLayout::PerGroup,
        NoiseOrder::Auto,
    )?;
    crate::poe_checkpoint::save(poe_dir, &t.ck)?;
    let poe = load_poe(poe_dir)?;
    let eval = evaluate_poe(
        &poe,
        test_path,
        Some(windows.stride),
        None,
        crate::columns::Matching::ByName,
    )?;
    let cfg = &poe.ck.config;
    let mut subsets = vec![GroupSet::first(cfg.groups.len())];
    subsets.extend((0..cfg.groups.len()).map(|g| GroupSet(1 << g)));
    let mut rows = Vec::new();
    for s in subsets {
        let name = cfg.subset_name(s);
        let keep: Vec<usize> = s
            .iter()
            .flat_map(|g| {
                cfg.groups[g]
                    .channels
                    .iter()
                    .filter_map(|n| channels.iter().position(|c| c == n))
            })
            .collect();
        let x = mean_filled(windows, &keep);
        let scores: Vec<f32> =
            score_windows(&m.int8, x.chunks_exact(m.int8.input), ScoreKind::Elbo, 0)?
                .iter()
                .map(|s| s.score)
                .collect();
        rows.push(SensorLossRow {
            single_mean_filled: roc_auc(&scores, &labels),
            product_of_experts: eval
                .get("roc_auc_int8_by_groups")
                .and_then(|v| v.get(&name))
                .and_then(Value::as_f64),
            groups: name,
        });
    }
    Ok(Some(SensorLoss {
        rows,
        poe_epochs: t.report.history.len(),
        poe_best_epoch: t.report.best_epoch,
        poe_latent: cfg.arch.latent,
        poe_train_seconds: t.seconds,
    }))
}
