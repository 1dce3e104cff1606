//! What a fleet scoring job computes, as plain data ([`ScoreSpec`]) that travels from the client
//! to the executors (JSON inside the plan, see [`super::codec`]), and its resolution against the
//! checkpoint ([`Scorer`]): the score kind, the threshold and the library's detector
//! configuration, resolved exactly as `tinyvae score` resolves its flags, so that a device's
//! fleet rows are that command's rows on the device's stream.
//!
//! Per-device thresholds (`fleet calibrate`'s table) override the alarm threshold of the devices
//! they name; every other device keeps the `--threshold` or the checkpoint's calibrated one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tinyvae::ScoreKind;

use crate::model::{self, HostModel};
use crate::options;
use crate::pipeline::{load_model, Loaded};
use crate::stream::StreamConfig;

/// The options of a fleet scoring job (those of `tinyvae score` that apply to an archive).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ScoreSpec {
    /// Checkpoint directory (an absolute path: the executors open it).
    pub model: PathBuf,
    /// Score with the f32 model instead of the int8 one.
    pub f32: bool,
    /// Score name (`elbo`, `elbo-sampled`, `iwae`, `recon-prob`); `None`: the checkpoint's.
    pub score: Option<String>,
    /// Samples of a sampled score.
    pub samples: u16,
    /// Seed of the sampled scores.
    pub seed: u64,
    /// Samples between window starts; `None`: the checkpoint's.
    pub stride: Option<usize>,
    /// Alarm threshold; `None`: the checkpoint's calibrated one for the score.
    pub threshold: Option<f32>,
    /// Per-device thresholds (device name to threshold), overriding `threshold`.
    pub thresholds: BTreeMap<String, f32>,
    /// EMA weight of the newest score.
    pub ema: Option<f32>,
    /// Hysteresis clear level.
    pub clear_threshold: Option<f32>,
    /// k-of-n debounce `(K, N, CLEAR)`.
    pub debounce: Option<(u8, u8, u8)>,
    /// Saturation limits in physical units.
    pub limits: Option<(f32, f32)>,
    /// Flagged windows update the alarm too.
    pub alarm_on_flagged: bool,
}

/// A [`ScoreSpec`] resolved against its checkpoint: ready to build a detector per device.
pub struct Scorer {
    /// The loaded checkpoint and its two models.
    pub loaded: Loaded,
    /// The score.
    pub kind: ScoreKind,
    /// The threshold of devices without their own.
    pub threshold: f32,
    spec: ScoreSpec,
}

impl Scorer {
    /// Loads the checkpoint and resolves the score and the threshold (as `tinyvae score`).
    ///
    /// # Errors
    /// An unreadable checkpoint, an unknown or uncalibrated score, bad alarm options.
    pub fn new(spec: &ScoreSpec) -> Result<Self> {
        if crate::poe_checkpoint::is_poe(&spec.model) {
            anyhow::bail!(
                "{}: a multi-sensor (--group) checkpoint; fleet scoring takes single-sensor and \
                 mixture (--experts) models (score a --group model's devices with `tinyvae score`)",
                spec.model.display()
            );
        }
        let m = load_model(&spec.model)?;
        let kind = match &spec.score {
            Some(name) => model::parse_score_kind(name, spec.samples)?,
            None => model::parse_score_kind(
                m.th.score.split('-').next().unwrap_or("elbo"),
                spec.samples,
            )?,
        };
        let name = model::score_name(kind);
        let threshold = match spec.threshold {
            Some(t) => t,
            None => m.th.for_score(&name, spec.f32, &spec.model, spec.samples)?,
        };
        let s = Self {
            loaded: m,
            kind,
            threshold,
            spec: spec.clone(),
        };
        // Check the options once, before any task runs.
        s.config(None)?;
        for d in spec.thresholds.keys() {
            s.config(Some(d))?;
        }
        Ok(s)
    }

    /// The runtime model (int8 unless `f32`).
    pub fn model(&self) -> &HostModel {
        if self.spec.f32 {
            &self.loaded.f32
        } else {
            &self.loaded.int8
        }
    }

    /// The model's channel names, in its input order.
    pub fn channels(&self) -> &[String] {
        &self.loaded.ck.config.channels
    }

    /// The detector configuration of `device` (`None`: a device without its own threshold).
    ///
    /// # Errors
    /// Bad alarm options (threshold, EMA, hysteresis, debounce).
    pub fn config(&self, device: Option<&str>) -> Result<StreamConfig> {
        let own = device.and_then(|d| self.spec.thresholds.get(d)).copied();
        let threshold = own.unwrap_or(self.threshold);
        let source = if own.is_some() || self.spec.threshold.is_some() {
            options::ThresholdSource::Flag
        } else {
            options::ThresholdSource::Checkpoint
        };
        let alarm = options::AlarmOptions {
            threshold,
            source,
            ema: self.spec.ema,
            clear_threshold: self.spec.clear_threshold,
            debounce: self.spec.debounce,
        }
        .config()?;
        let mut cfg = StreamConfig::new(
            self.kind,
            self.spec.stride.unwrap_or(self.loaded.ck.config.stride),
            self.spec.seed,
            threshold,
        );
        cfg.alarm = alarm;
        cfg.limits = self.spec.limits;
        cfg.alarm_on_flagged = self.spec.alarm_on_flagged;
        cfg.attribution = true;
        Ok(cfg)
    }
}
