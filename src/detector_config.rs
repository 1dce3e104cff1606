//! The configuration of a [`StreamDetector`](crate::StreamDetector), fixed at construction
//! ([`DetectorConfig`]), its optional on-device adaptation ([`AdaptConfig`]) and the
//! [`Phase`] the detector is in.
//!
//! # On-device adaptation (opt-in, [`AdaptConfig`])
//!
//! For a machine whose baseline differs from the training data, counting windows from
//! construction (or [`Detector::restart_adaptation`](crate::Detector::restart_adaptation)):
//!
//! 1. [`Phase::AdaptingStats`], windows `0 .. stats_windows`: every sample that arrives (not
//!    non-finite, not a gap; saturated values excluded per channel) updates per-channel Welford
//!    statistics. Windows are scored with the current normalizer and reported, but raise no alarm.
//!    When window `stats_windows - 1` has been formed, the normalizer becomes the running mean and
//!    `1/sqrt(population variance)` per channel (channels with fewer than 2 values or zero
//!    variance keep their current statistics) and the EMA restarts.
//! 2. [`Phase::AdaptingThreshold`]: the level (EMA-smoothed score) of each scored, unflagged
//!    window goes into two P² estimators, of the `1 - fpr` and `1 - clear_fpr` quantiles; no
//!    alarm. After `threshold_windows` such windows, `threshold` = the first estimate and
//!    `clear_threshold` = min(the second, `threshold`).
//! 3. [`Phase::Running`]: statistics and thresholds frozen; alarms as configured.
//!
//! So a fraction of about `fpr` of normal windows has a level above the threshold afterwards (the
//! per-window exceedance rate; with k-of-n debounce the alarm rate is lower). The threshold is
//! an empirical quantile of `threshold_windows` levels, so the achieved rate has a relative
//! standard error of about `1 / sqrt(threshold_windows * fpr)` (2000 windows at `fpr = 0.05`:
//! ±10 %). Measured (tests/detector.rs, `adaptation_reaches_the_target_false_positive_rate`,
//! 250 + 2000 adaptation windows, 20 000 fresh normal windows): 0.0450 without smoothing and
//! 0.0522 with EMA `alpha = 0.5`, for a target of 0.05.

use crate::{AlarmConfig, Error, Normalizer, RawScale, SaturationLimits, ScoreKind};

/// Where the detector is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Learning the normalization statistics; no alarms.
    AdaptingStats,
    /// Learning the threshold; no alarms.
    AdaptingThreshold,
    /// Statistics and thresholds fixed; alarms on.
    Running,
}

/// On-device adaptation (see the module doc for the exact procedure).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AdaptConfig {
    /// Windows over which the normalization statistics are learned (0: keep the exported ones).
    pub stats_windows: u32,
    /// Clean scored windows from which the thresholds are learned (0: keep the configured ones).
    pub threshold_windows: u32,
    /// Target per-window false-positive rate: `threshold` = quantile `1 - fpr` of the levels.
    pub fpr: f32,
    /// `clear_threshold` = quantile `1 - clear_fpr` (`fpr <= clear_fpr < 1`; equal: no
    /// hysteresis).
    pub clear_fpr: f32,
}

impl AdaptConfig {
    /// Learn statistics over `stats_windows`, then a threshold at `fpr` (no hysteresis) over
    /// `threshold_windows`.
    pub const fn new(stats_windows: u32, threshold_windows: u32, fpr: f32) -> Self {
        Self {
            stats_windows,
            threshold_windows,
            fpr,
            clear_fpr: fpr,
        }
    }

    /// The same, with the clear threshold at quantile `1 - clear_fpr`.
    pub const fn with_clear_fpr(self, clear_fpr: f32) -> Self {
        Self { clear_fpr, ..self }
    }

    /// Checks `0 < fpr <= clear_fpr < 1`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] otherwise.
    pub const fn validate(&self) -> Result<(), Error> {
        if self.fpr > 0.0 && self.fpr <= self.clear_fpr && self.clear_fpr < 1.0 {
            Ok(())
        } else {
            Err(Error::InvalidParameter)
        }
    }
}

/// Everything fixed at construction.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DetectorConfig<const C: usize> {
    /// The score.
    pub kind: ScoreKind,
    /// Samples between consecutive windows (`>= 1`; 0 is treated as 1).
    pub stride: u32,
    /// Seed of the per-window generators ([`window_rng`](crate::window_rng)).
    pub seed: u64,
    /// The exported standardization (sanitized by [`Detector::new`](crate::Detector::new), see
    /// [`Normalizer::sanitized`]).
    pub normalizer: Normalizer<C>,
    /// Conversion of raw counts for [`Detector::push_raw`](crate::Detector::push_raw).
    pub raw: RawScale<C>,
    /// Saturation limits in physical units (checked for every sample).
    pub limits: SaturationLimits<C>,
    /// The alarm logic (with the exported threshold).
    pub alarm: AlarmConfig,
    /// Whether saturated/stuck windows update the alarm (default false).
    pub alarm_on_flagged: bool,
    /// Whether a sensor group with a saturated or stuck channel is left out of the window's
    /// score, like a group with a non-finite sample (default false: it is scored and the window
    /// flagged). For a single-group model, such windows are then skipped.
    pub drop_flagged_groups: bool,
    /// On-device adaptation (default off).
    pub adapt: Option<AdaptConfig>,
    /// Index of the first window (default 0): samples are numbered from `first_window *
    /// stride` (saturating), windows from `first_window`, so a restarted detector can continue
    /// a stream's time (and its sampled scores' per-window draws, see [`window_rng`](crate::window_rng)).
    pub first_window: u64,
}

impl<const C: usize> DetectorConfig<C> {
    /// A configuration with seed 0, unit raw scale at the `i16` rails, no f32 saturation
    /// limits, flagged windows not alarming, no adaptation.
    pub const fn new(
        kind: ScoreKind,
        stride: u32,
        normalizer: Normalizer<C>,
        alarm: AlarmConfig,
    ) -> Self {
        Self {
            kind,
            stride,
            seed: 0,
            normalizer,
            raw: RawScale::unit(),
            limits: SaturationLimits::none(),
            alarm,
            alarm_on_flagged: false,
            drop_flagged_groups: false,
            adapt: None,
            first_window: 0,
        }
    }

    /// The same with another seed.
    pub const fn with_seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// The same with a raw-count conversion.
    pub const fn with_raw(self, raw: RawScale<C>) -> Self {
        Self { raw, ..self }
    }

    /// The same with saturation limits in physical units.
    pub const fn with_limits(self, limits: SaturationLimits<C>) -> Self {
        Self { limits, ..self }
    }

    /// The same with flagged windows updating the alarm or not.
    pub const fn with_alarm_on_flagged(self, alarm_on_flagged: bool) -> Self {
        Self {
            alarm_on_flagged,
            ..self
        }
    }

    /// The same with flagged (saturated or stuck) sensor groups left out of the score or not
    /// (see [`DetectorConfig::drop_flagged_groups`]).
    pub const fn with_drop_flagged_groups(self, drop_flagged_groups: bool) -> Self {
        Self {
            drop_flagged_groups,
            ..self
        }
    }

    /// The same with the numbering starting at window `first_window` (see
    /// [`DetectorConfig::first_window`]).
    pub const fn with_first_window(self, first_window: u64) -> Self {
        Self {
            first_window,
            ..self
        }
    }

    /// The same with on-device adaptation.
    pub const fn with_adaptation(self, adapt: AdaptConfig) -> Self {
        Self {
            adapt: Some(adapt),
            ..self
        }
    }

    /// Checks every documented range (use `const _: () = assert!(CFG.validate().is_ok());` to
    /// reject a bad configuration at compile time). [`Detector::new`](crate::Detector::new) never fails: it
    /// sanitizes instead (stride 0 becomes 1, the normalizer as in [`Normalizer::sanitized`],
    /// the alarm as in [`AlarmConfig::sanitized`]).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for stride 0, a score with 0 samples, a normalizer that is
    /// not [valid](Normalizer::is_valid), or an invalid alarm or adaptation configuration.
    pub const fn validate(&self) -> Result<(), Error> {
        if self.stride == 0 || self.kind.decodes() == 0 || !self.normalizer.is_valid() {
            return Err(Error::InvalidParameter);
        }
        if let Err(e) = self.alarm.validate() {
            return Err(e);
        }
        match &self.adapt {
            Some(a) => a.validate(),
            None => Ok(()),
        }
    }
}
