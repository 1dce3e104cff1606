//! Training orchestration: load the stream, fit the standardization on its training part, cut
//! the windows, select the latent size by validation ELBO (`--latent auto`), train, and
//! calibrate the result ([`train_model`]); and the one-line descriptions `train` and `demo`
//! print.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::calibrate::{calibrate, split_windows, CalibOpts, TrainSplit};
use super::config::{resolve, LatentSpec, ModelOpts, AUTO_LATENTS, SELECTION_PATIENCE};
use crate::checkpoint::{Checkpoint, CheckpointConfig};
use crate::data::{self, Norm};
use crate::model::HostModel;
use crate::scale;
use crate::train::{self, Arch, TrainReport};

/// What `train` produced (also used by `demo`).
pub struct Trained {
    /// The calibrated checkpoint.
    pub ck: Checkpoint,
    /// Wall time of all training runs (every candidate latent size).
    pub seconds: f64,
    /// The final training run's report.
    pub report: TrainReport,
    /// The f32 runtime model.
    pub f32: HostModel,
    /// The int8 runtime model.
    pub int8: HostModel,
    /// The windows it was trained and calibrated on.
    pub split: TrainSplit,
}

/// Trains on the stream at `data_path` with the options `o` (every candidate latent size with
/// `--latent auto`) and calibrates the result with `c`.
///
/// # Errors
/// Invalid options, bad data, or a failed training run.
pub fn train_model(data_path: &Path, o: &ModelOpts, c: &CalibOpts) -> Result<Trained> {
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
pub fn selection_line(c: &CheckpointConfig) -> Option<String> {
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

/// `384-60-8 / 8-60-384`: the layer widths of encoder and decoder.
pub fn arch_string(a: &Arch) -> String {
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
