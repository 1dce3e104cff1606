//! The streaming anomaly detector: a ring buffer of samples, windows scored every `stride`
//! samples, alarms, attribution, sensor faults and on-device adaptation. The firmware and the
//! host tool run this same code, so the host's alarms are the chip's alarms.
//!
//! # Windows
//!
//! Samples `[f32; C]` (or raw `[i16; C]` through [`RawScale`]) are numbered `0, 1, 2, ...` in
//! arrival order (from `first_window * stride` with [`DetectorConfig::first_window`]); a dropped sample ([`Detector::mark_gap`]) takes a number too, so the numbering
//! is time. The last `W` samples are kept, in physical units, in a [`SampleRing`]: a
//! `heapless::Deque<[f32; C], W>` for a [`Detector`] (every size in the type, the firmware's),
//! or a [`SliceRing`] over caller-owned memory for a [`SliceDetector`] (window length read at run
//! time, the host tool's). Both are the one [`StreamDetector`] and run the same code, so the host
//! tool's windows, scores, alarms and faults are the chip's.
//! Window `k` covers samples `[k stride, k stride + W)` (end exclusive) and is formed when its
//! last sample arrives: the first after `W` samples, then every `stride` samples. Its input is
//! the standardized window flattened time-major, oldest first,
//!
//! ```text
//! x[t C + c] = normalize(sample[start + t])[c],      t = 0..W, c = 0..C,  X = W C
//! ```
//!
//! (standardized at scoring time with the normalizer current then, see [`Normalizer`]), scored
//! with [`ScoreKind`] chosen at construction. The `X == W * C` and `1 <= C <= 32` constraints are
//! checked at compile time.
//!
//! # Random numbers
//!
//! Sampled scores draw from a generator seeded per window, [`window_rng`]`(seed, k)`
//! (`XorShiftRng::seed_from_u64(seed ^ k * 0x9E3779B97F4A7C15)`), with the normal sampler reset
//! first. A window's score is therefore a function of its samples, the normalizer, the seed and
//! its index only: skipped windows, faults and earlier windows do not shift later draws, and a
//! host can reproduce any single window.
//!
//! # Sensor faults
//!
//! Faults are facts about samples, reported per window in [`WindowReport::faults`] (and as
//! [`SensorFault`] events through [`Faults::iter`]); each window containing a faulty sample
//! reports it, so with overlapping windows one bad sample shows in up to `ceil(W / stride)`
//! reports. Cumulative counts are in [`Detector::fault_counts`].
//!
//! | fault | detected | the window | state |
//! |---|---|---|---|
//! | `NonFinite { channel }` | a NaN/±inf value in [`Detector::push`] | **skipped**: never scored, score `None`, alarm and adaptation untouched | the sample is replaced in the ring by a copy of the previous stored sample (zeros at start) and never reaches the running statistics |
//! | `Gap` | [`Detector::mark_gap`] (a dropped sample) | **skipped**, as above | a placeholder sample as above keeps the time grid |
//! | `Saturated { channel }` | `x <= lo` or `x >= hi` ([`SaturationLimits`]), or a raw count at its rail ([`RawScale`]) | **scored and flagged** | the value is stored; it is excluded from the channel's running statistics |
//! | `Stuck { channel }` | all `W` values of a channel in the window are equal (`==`), `W >= 2`, evaluated on windows that are not skipped | **scored and flagged** | nothing (a property of the window) |
//!
//! A flagged window (saturated or stuck) updates the alarm only if
//! [`DetectorConfig::alarm_on_flagged`] is set (a saturating accelerometer may be the process
//! anomaly itself); it never feeds the adaptation. Because the ring holds raw physical values and
//! windows are independent (see *Random numbers*), a window that no longer contains a faulty
//! sample scores bit-identically to the same window in a run without the fault. Skipped windows do
//! not advance the EMA or the k-of-n history, so alarm *levels* can differ from a run without the
//! fault.
//!
//! # Alarm
//!
//! The score of every scored, unflagged window (while [`Phase::Running`]) goes through [`Alarm`]
//! (EMA, hysteresis, k-of-n debounce; see its module), which yields
//! [`AlarmEvent::AlarmRaised`]/[`AlarmEvent::AlarmCleared`] with the window index.
//!
//! # Attribution
//!
//! [`Detector::attribute`] explains the last scored window through the reconstruction term at
//! the posterior mean: with `m = D(mu)` (for [`ScoreKind::Elbo`] the score's own decode; for
//! sampled kinds one extra decode) and the decoder precisions `p`,
//!
//! ```text
//! e[t C + c]   = 1/2 (x[t C + c] - m[t C + c])^2 p[t C + c]      (DecoderNoise::contributions)
//! channels[c]  = sum_t e[t C + c],     steps[t] = sum_c e[t C + c]
//! ```
//!
//! with the top channel and time step (first maximum). `sum_c channels[c] = log_norm - ln p(x|mu)`
//! up to rounding. Cost: `X` multiply-adds (plus one decode for sampled kinds).
//!
//! # On-device adaptation (opt-in, [`AdaptConfig`])
//!
//! For a machine whose baseline differs from the training data, counting windows from
//! construction (or [`Detector::restart_adaptation`]):
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
//!
//! # Counters and their limits
//!
//! | counter | width | at its limit |
//! |---|---|---|
//! | sample index ([`StreamDetector::samples`], [`WindowReport::start`]/`end`, fault positions) | `u64` | saturates at `u64::MAX` (5.8e8 years at 1 kHz, 584 years at 1 GHz): windows are still formed every `stride` samples, all with `start = u64::MAX - W`, and a fault seen after that point marks every later window |
//! | window index ([`WindowReport::window`], alarm events, [`window_rng`]) | `u64` | saturates at `u64::MAX` (reached only after the sample index) |
//! | windows into the statistics phase (window index minus the phase's first) | `u64` | as the window index; compared with [`AdaptConfig::stats_windows`] (`u32`) |
//! | clean windows into the threshold phase | `u32` | never past [`AdaptConfig::threshold_windows`] (`u32`), where the phase ends |
//! | values per channel in [`Welford`], values in [`P2Quantile`] | `u32` | both stop taking values at `u32::MAX` (see their docs); only reachable with `stats_windows * stride` or `threshold_windows` near 2^32 |
//! | cumulative fault counts ([`FaultCounts`]) | `u32` each | saturate at `u32::MAX`; nothing depends on them |
//! | samples until the next window | `usize` | counts down from `stride` (a `u32`) |
//!
//! The alarm keeps no counter (two 32-bit histories shifted once per window). So a sensor at
//! 1 kHz for a year (3.2e10 samples, past 2^32) is numbered, windowed, scored and alarmed exactly
//! as in its first hour; `tests/counters.rs` starts the counters just below 2^32, `u32::MAX` and
//! `u64::MAX` ([`DetectorConfig::first_window`], [`StreamDetector::restore_fault_counts`]) and
//! runs across. The QEMU programs print window and sample indices as `u32` (their streams are
//! 2,048 samples long).
//!
//! # Memory
//!
//! `8 X` bytes (ring and standardized window) plus the workspace plus about `140 C + 170` bytes
//! of configuration and state; no heap, no recursion. Measured `size_of`: 5 616 bytes for
//! `C = 6, W = 64, Z = 8` (workspace 1 704), 952 bytes for `C = 3, W = 8, Z = 2`. A [`Detector`]
//! can live in a `static` ([`Detector::new`] is `const`).
//!
//! It is kept as one file because it is one concept: the streaming detector's state machine, every
//! part of which updates the same state per sample.

use core::marker::PhantomData;

use heapless::Deque;
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;

use crate::vae::same_len;
use crate::{
    Alarm, AlarmConfig, AlarmEvent, Buffers, DecoderNoise, Error, NormalSampler, Normalizer,
    P2Quantile, RawScale, SaturationLimits, Score, ScoreKind, VaeModel, Welford, Workspace,
};
use crate::{SampleRing, SliceRing};

/// A set of channels (bit `c` = channel `c`, so at most 32 channels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChannelMask(pub u32);

impl ChannelMask {
    /// No channel.
    pub const EMPTY: Self = Self(0);

    /// Whether no channel is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether channel `c` is set (false for `c >= 32`).
    pub const fn contains(self, c: usize) -> bool {
        c < 32 && self.0 & (1 << c) != 0
    }

    /// Sets channel `c` (ignored for `c >= 32`).
    pub fn insert(&mut self, c: usize) {
        if c < 32 {
            self.0 |= 1 << c;
        }
    }

    /// Number of channels set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The channels set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..32).filter(move |&c| self.contains(c))
    }
}

impl core::ops::BitOr for ChannelMask {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// One sensor fault, as an event (see the module doc for the behavior of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SensorFault {
    /// A NaN or infinite value in this channel; the window is skipped.
    NonFinite {
        /// Channel index.
        channel: usize,
    },
    /// A value at or beyond this channel's saturation limit; the window is scored and flagged.
    Saturated {
        /// Channel index.
        channel: usize,
    },
    /// This channel has one value for the whole window; the window is scored and flagged.
    Stuck {
        /// Channel index.
        channel: usize,
    },
    /// A dropped sample; the window is skipped.
    Gap,
}

/// The sensor faults within one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Faults {
    /// Channels with a non-finite sample in the window.
    pub non_finite: ChannelMask,
    /// Channels with a saturated sample in the window.
    pub saturated: ChannelMask,
    /// Channels with one value throughout the window.
    pub stuck: ChannelMask,
    /// A dropped sample in the window.
    pub gap: bool,
}

impl Faults {
    /// No fault.
    pub const fn is_clean(&self) -> bool {
        !self.skips_window() && !self.flags_window()
    }

    /// The window is not scored (a non-finite sample or a gap).
    pub const fn skips_window(&self) -> bool {
        self.gap || !self.non_finite.is_empty()
    }

    /// The window is scored but flagged (saturated or stuck channels).
    pub const fn flags_window(&self) -> bool {
        !self.saturated.is_empty() || !self.stuck.is_empty()
    }

    /// The faults as events: non-finite channels, saturated, stuck (each ascending), then the gap.
    pub fn iter(&self) -> impl Iterator<Item = SensorFault> {
        let nf = self
            .non_finite
            .iter()
            .map(|channel| SensorFault::NonFinite { channel });
        let sat = self
            .saturated
            .iter()
            .map(|channel| SensorFault::Saturated { channel });
        let st = self
            .stuck
            .iter()
            .map(|channel| SensorFault::Stuck { channel });
        nf.chain(sat)
            .chain(st)
            .chain(self.gap.then_some(SensorFault::Gap))
    }
}

/// Cumulative fault counts since construction (or since
/// [`restore_fault_counts`](StreamDetector::restore_fault_counts)). Each is a `u32` that
/// saturates: it stays at `u32::MAX` (4.29e9; 50 days of a fault in every sample at 1 kHz) and the
/// detector works on unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultCounts {
    /// Samples with at least one non-finite value.
    pub non_finite_samples: u32,
    /// Dropped samples ([`Detector::mark_gap`]).
    pub gaps: u32,
    /// Samples with at least one saturated channel.
    pub saturated_samples: u32,
    /// Windows not scored (non-finite or gap).
    pub skipped_windows: u32,
    /// Windows scored but flagged (saturated or stuck).
    pub flagged_windows: u32,
}

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
    /// Seed of the per-window generators ([`window_rng`]).
    pub seed: u64,
    /// The exported standardization (sanitized by [`Detector::new`], see
    /// [`Normalizer::sanitized`]).
    pub normalizer: Normalizer<C>,
    /// Conversion of raw counts for [`Detector::push_raw`].
    pub raw: RawScale<C>,
    /// Saturation limits in physical units (checked for every sample).
    pub limits: SaturationLimits<C>,
    /// The alarm logic (with the exported threshold).
    pub alarm: AlarmConfig,
    /// Whether saturated/stuck windows update the alarm (default false).
    pub alarm_on_flagged: bool,
    /// On-device adaptation (default off).
    pub adapt: Option<AdaptConfig>,
    /// Index of the first window (default 0): samples are numbered from `first_window *
    /// stride` (saturating), windows from `first_window`, so a restarted detector can continue
    /// a stream's time (and its sampled scores' per-window draws, see [`window_rng`]).
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
    /// reject a bad configuration at compile time). [`Detector::new`] never fails: it
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

/// What [`Detector::push`] reports for each formed window.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WindowReport {
    /// Window index `k` (0-based, counting skipped windows).
    pub window: u64,
    /// Index of the window's first sample (`k stride`).
    pub start: u64,
    /// One past the index of its last sample (`start + W`).
    pub end: u64,
    /// The score, `None` if the window was skipped (see [`Faults::skips_window`]).
    pub score: Option<Score>,
    /// The level (EMA-smoothed score) given to the alarm or to the threshold estimate, `None`
    /// if the window updated neither.
    pub level: Option<f32>,
    /// The alarm state after this window.
    pub alarm: bool,
    /// The alarm event this window caused.
    pub event: Option<AlarmEvent>,
    /// Sensor faults within the window.
    pub faults: Faults,
    /// The phase the window was processed in.
    pub phase: Phase,
}

/// Which channels and time steps of the last scored window contribute most to its
/// reconstruction term (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attribution<const C: usize, const W: usize> {
    /// The window explained.
    pub window: u64,
    /// Per-channel sums of `1/2 (x - m)^2 p` over the window's time steps.
    pub channels: [f32; C],
    /// Per-time-step sums over the channels, oldest first.
    pub steps: [f32; W],
    /// The channel with the largest sum (first on ties).
    pub top_channel: usize,
    /// The time step with the largest sum (0 = oldest; first on ties).
    pub top_step: usize,
}

/// [`Attribution`] without the per-time-step sums, which
/// [`StreamDetector::attribute_into`] writes to a caller's slice (window length at run time).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChannelAttribution<const C: usize> {
    /// The window explained.
    pub window: u64,
    /// Per-channel sums of `1/2 (x - m)^2 p` over the window's time steps.
    pub channels: [f32; C],
    /// The channel with the largest sum (first on ties).
    pub top_channel: usize,
    /// The time step with the largest sum (0 = oldest; first on ties).
    pub top_step: usize,
}

/// The buffers a [`Detector`] scores windows with: the typed [`Workspace`], a
/// [`BorrowedWorkspace`] over caller-owned slices (runtime-shaped models), or any other.
pub trait WindowScorer<V: VaeModel + ?Sized> {
    /// Scores one standardized window; sampled scores must draw from `rng` alone (no state
    /// carried over from earlier calls).
    ///
    /// # Errors
    /// As [`score()`](crate::score()).
    fn score_window(
        &mut self,
        model: &V,
        x: &[f32],
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error>;

    /// The decoder mean at the posterior mean, `D(mu)`, of the last scored window (`kind` is
    /// the kind it was scored with; for [`ScoreKind::Elbo`] no decode is needed).
    ///
    /// # Errors
    /// As the model's `decode`.
    fn reconstruction(&mut self, model: &V, kind: ScoreKind) -> Result<&[f32], Error>;
}

impl<V, S, const X: usize, const Z: usize> WindowScorer<V> for Workspace<S, X, Z>
where
    V: VaeModel<Scratch = S>,
{
    fn score_window(
        &mut self,
        model: &V,
        x: &[f32],
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        let x: &[f32; X] = x.try_into().map_err(|_| Error::ShapeMismatch {
            expected: X,
            found: x.len(),
        })?;
        self.reset_sampler();
        self.score(model, x, kind, rng)
    }

    fn reconstruction(&mut self, model: &V, kind: ScoreKind) -> Result<&[f32], Error> {
        if kind.is_sampled() {
            Ok(self.decode_mu(model)?)
        } else {
            Ok(self.mean())
        }
    }
}

/// Score buffers borrowed from the caller, for models whose shapes are known only at run time
/// (the host tool): lengths `Z` for the latent buffers, `X` for the decoder mean.
#[derive(Debug)]
pub struct BorrowedWorkspace<'a, S> {
    buf: Buffers<'a>,
    scratch: &'a mut S,
    sampler: NormalSampler,
}

impl<'a, S> BorrowedWorkspace<'a, S> {
    /// Wraps the buffers and the model scratch (lengths are checked when scoring).
    pub fn new(buf: Buffers<'a>, scratch: &'a mut S) -> Self {
        Self {
            buf,
            scratch,
            sampler: NormalSampler::new(),
        }
    }
}

impl<V, S> WindowScorer<V> for BorrowedWorkspace<'_, S>
where
    V: VaeModel<Scratch = S>,
{
    fn score_window(
        &mut self,
        model: &V,
        x: &[f32],
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        self.sampler = NormalSampler::new();
        let buf = Buffers {
            mu: &mut *self.buf.mu,
            logvar: &mut *self.buf.logvar,
            z: &mut *self.buf.z,
            eps: &mut *self.buf.eps,
            mean: &mut *self.buf.mean,
        };
        crate::score(model, x, kind, buf, self.scratch, &mut self.sampler, rng)
    }

    fn reconstruction(&mut self, model: &V, kind: ScoreKind) -> Result<&[f32], Error> {
        if kind.is_sampled() {
            model.decode(self.buf.mu, self.buf.mean, self.scratch)?;
        }
        Ok(self.buf.mean)
    }
}

/// The generator window `window` draws from: `XorShiftRng::seed_from_u64(seed ^ window *
/// 0x9E37_79B9_7F4A_7C15)` (wrapping).
pub fn window_rng(seed: u64, window: u64) -> XorShiftRng {
    XorShiftRng::seed_from_u64(seed ^ window.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A [`Detector`] scoring a typed model with the typed [`Workspace`].
pub type VaeDetector<V, const C: usize, const W: usize, const X: usize, const Z: usize> =
    Detector<V, Workspace<<V as VaeModel>::Scratch, X, Z>, C, W, X>;

/// The streaming detector with every size in its type (the firmware's): model type `V`,
/// scoring buffers `S`, `C` channels, window length `W`, window width `X = W * C`; the ring is a
/// `heapless::Deque<[f32; C], W>`. Built with [`Detector::new`].
pub type Detector<V, S, const C: usize, const W: usize, const X: usize> =
    StreamDetector<V, S, Deque<[f32; C], W>, [f32; X], C>;

/// The streaming detector with the window length chosen at run time (the host tool's, whose
/// window comes from the checkpoint): the ring and the standardized window live in caller-owned
/// slices. Built with [`SliceDetector::with_buffers`]; it runs the same code as [`Detector`].
pub type SliceDetector<'a, V, S, const C: usize> =
    StreamDetector<V, S, SliceRing<'a, C>, &'a mut [f32], C>;

/// The streaming detector (see the module doc), generic over its sample ring `R` (a
/// [`SampleRing`] whose capacity is the window length `W`) and its standardized-window buffer
/// `B` (`W * C` values). Use it through [`Detector`] (sizes in the type) or [`SliceDetector`]
/// (window length at run time).
#[derive(Debug)]
pub struct StreamDetector<V, S, R, B, const C: usize> {
    config: DetectorConfig<C>,
    scorer: S,
    ring: R,
    xbuf: B,
    normalizer: Normalizer<C>,
    alarm: Alarm,
    welford: Welford<C>,
    raise_q: P2Quantile,
    clear_q: P2Quantile,
    phase: Phase,
    phase_start: u64,
    threshold_count: u32,
    samples: u64,
    windows: u64,
    until_window: usize,
    last_gap: Option<u64>,
    last_non_finite: [Option<u64>; C],
    last_saturated: [Option<u64>; C],
    last_scored: Option<u64>,
    counts: FaultCounts,
    model: PhantomData<fn(&V)>,
}

const fn first_phase(adapt: Option<AdaptConfig>) -> Phase {
    match adapt {
        Some(a) if a.stats_windows > 0 => Phase::AdaptingStats,
        Some(a) if a.threshold_windows > 0 => Phase::AdaptingThreshold,
        _ => Phase::Running,
    }
}

impl<V, S, R, B, const C: usize> StreamDetector<V, S, R, B, C> {
    /// Sanitizes the configuration and assembles a detector over an empty `ring` of capacity
    /// `window`.
    #[inline(always)]
    const fn assemble(
        config: DetectorConfig<C>,
        scorer: S,
        ring: R,
        xbuf: B,
        window: usize,
    ) -> Self {
        let mut config = config;
        if config.stride == 0 {
            config.stride = 1;
        }
        config.normalizer = config.normalizer.sanitized();
        config.alarm = config.alarm.sanitized();
        let (fpr, clear_fpr) = match config.adapt {
            Some(a) => (a.fpr, a.clear_fpr),
            None => (0.5, 0.5),
        };
        Self {
            config,
            scorer,
            ring,
            xbuf,
            normalizer: config.normalizer,
            alarm: Alarm::new(config.alarm),
            welford: Welford::new(),
            raise_q: P2Quantile::new(1.0 - fpr),
            clear_q: P2Quantile::new(1.0 - clear_fpr),
            phase: first_phase(config.adapt),
            phase_start: config.first_window,
            threshold_count: 0,
            samples: config.first_window.saturating_mul(config.stride as u64),
            windows: config.first_window,
            until_window: window,
            last_gap: None,
            last_non_finite: [None; C],
            last_saturated: [None; C],
            last_scored: None,
            counts: FaultCounts {
                non_finite_samples: 0,
                gaps: 0,
                saturated_samples: 0,
                skipped_windows: 0,
                flagged_windows: 0,
            },
            model: PhantomData,
        }
    }

    /// The (sanitized) configuration.
    pub const fn config(&self) -> &DetectorConfig<C> {
        &self.config
    }

    /// The normalizer in use (the exported one, or the adapted one).
    pub const fn normalizer(&self) -> &Normalizer<C> {
        &self.normalizer
    }

    /// The alarm logic, with its current thresholds ([`Alarm::config`]) and state.
    pub const fn alarm(&self) -> &Alarm {
        &self.alarm
    }

    /// The current phase.
    pub const fn phase(&self) -> Phase {
        self.phase
    }

    /// The number the next sample gets: samples seen (including gaps) plus
    /// `first_window * stride` (see the module doc, *Counters*).
    pub const fn samples(&self) -> u64 {
        self.samples
    }

    /// The index the next window gets: windows formed (including skipped ones) plus
    /// `first_window`.
    pub const fn windows(&self) -> u64 {
        self.windows
    }

    /// Cumulative fault counts.
    pub const fn fault_counts(&self) -> &FaultCounts {
        &self.counts
    }

    /// Continues the cumulative fault counts from `counts` (e.g. saved before a restart, with
    /// [`DetectorConfig::first_window`] continuing the numbering); they saturate as documented
    /// in [`FaultCounts`].
    pub fn restore_fault_counts(&mut self, counts: FaultCounts) {
        self.counts = counts;
    }

    /// The running statistics of the current (or last) statistics phase.
    pub const fn running_stats(&self) -> &Welford<C> {
        &self.welford
    }

    /// The scoring buffers.
    pub fn scorer_mut(&mut self) -> &mut S {
        &mut self.scorer
    }

    /// Starts the adaptation of [`DetectorConfig::adapt`] again from the next window (nothing
    /// if adaptation is off): clears the running statistics and quantile estimates and resets
    /// the alarm (off, no history; no event is reported). The window contents are kept.
    pub fn restart_adaptation(&mut self) {
        if let Some(a) = self.config.adapt {
            self.welford = Welford::new();
            self.raise_q.reset();
            self.clear_q.reset();
            self.threshold_count = 0;
            self.phase = first_phase(Some(a));
            self.phase_start = self.windows;
            self.alarm.reset();
        }
    }
}

impl<V, S, const C: usize, const W: usize, const X: usize> Detector<V, S, C, W, X> {
    /// A detector with an empty window; `scorer` is e.g. `Workspace::new(MyVae::SCRATCH)`.
    /// Usable in `static` initialisers. Never fails: an invalid configuration is sanitized
    /// (see [`DetectorConfig::validate`]). Compile-time checks: `X == W * C`, `1 <= C <= 32`,
    /// `W >= 1`.
    pub const fn new(config: DetectorConfig<C>, scorer: S) -> Self {
        const {
            assert!(X == W * C, "X must equal W * C");
            assert!(C >= 1 && C <= 32, "1 to 32 channels");
            assert!(W >= 1, "window length must be at least 1");
        }
        Self::assemble(config, scorer, Deque::new(), [0.0; X], W)
    }

    /// The standardized input of the last scored window (`x[t C + c]`).
    pub const fn last_input(&self) -> &[f32; X] {
        &self.xbuf
    }
}

impl<'a, V, S, const C: usize> SliceDetector<'a, V, S, C> {
    /// A detector whose window length is `ring.len()` (`W`), with `input` (`W * C` values) for
    /// the standardized window; both buffers' contents are ignored. The configuration is
    /// sanitized as in [`Detector::new`].
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an empty ring or `C` outside `1..=32`;
    /// [`Error::ShapeMismatch`] if `input.len() != ring.len() * C`.
    pub fn with_buffers(
        config: DetectorConfig<C>,
        scorer: S,
        ring: &'a mut [[f32; C]],
        input: &'a mut [f32],
    ) -> Result<Self, Error> {
        if ring.is_empty() || !(1..=32).contains(&C) {
            return Err(Error::InvalidParameter);
        }
        let window = ring.len();
        same_len(window.saturating_mul(C), input.len())?;
        Ok(Self::assemble(
            config,
            scorer,
            SliceRing::new(ring),
            input,
            window,
        ))
    }
}

impl<V, S, R, B, const C: usize> StreamDetector<V, S, R, B, C>
where
    R: SampleRing<C>,
    B: AsRef<[f32]> + AsMut<[f32]>,
{
    /// The window length `W` (samples per window).
    pub fn window_len(&self) -> usize {
        self.ring.capacity()
    }

    /// The standardized input of the last scored window (`x[t C + c]`, `W * C` values).
    pub fn input(&self) -> &[f32] {
        self.xbuf.as_ref()
    }

    fn placeholder(&self) -> [f32; C] {
        self.ring.newest().copied().unwrap_or([0.0; C])
    }

    /// Index of the first sample of the window ending now.
    fn window_start(&self) -> u64 {
        self.samples.saturating_sub(self.window_len() as u64)
    }

    /// Records a dropped sample: time advances by one sample, the window that contains it is
    /// skipped (and reported with [`Faults::gap`]). Returns the report if a window is formed.
    pub fn mark_gap(&mut self) -> Option<WindowReport> {
        let i = self.samples;
        self.last_gap = Some(i);
        self.counts.gaps = self.counts.gaps.saturating_add(1);
        let stored = self.placeholder();
        if self.store(stored) {
            // The window contains the gap: it is skipped, no model needed.
            let faults = self.faults_in(self.window_start());
            Some(self.skip(faults))
        } else {
            None
        }
    }

    /// Appends a sample to the ring and advances time; true if a window is due.
    fn store(&mut self, sample: [f32; C]) -> bool {
        self.ring.push_evict(sample);
        self.samples = self.samples.saturating_add(1);
        self.until_window = self.until_window.saturating_sub(1);
        if self.until_window == 0 {
            self.until_window = self.config.stride as usize;
            true
        } else {
            false
        }
    }

    /// The faults of the window starting at sample `start` (the current ring).
    fn faults_in(&self, start: u64) -> Faults {
        let within = |v: Option<u64>| matches!(v, Some(i) if i >= start);
        let mut f = Faults {
            gap: within(self.last_gap),
            ..Faults::default()
        };
        for (c, (&nf, &sat)) in self
            .last_non_finite
            .iter()
            .zip(&self.last_saturated)
            .enumerate()
        {
            if within(nf) {
                f.non_finite.insert(c);
            }
            if within(sat) {
                f.saturated.insert(c);
            }
        }
        if !f.skips_window() && self.window_len() >= 2 {
            if let Some(first) = self.ring.oldest() {
                let mut same = [true; C];
                for s in self.ring.samples() {
                    for ((eq, &v), &f0) in same.iter_mut().zip(s).zip(first) {
                        *eq &= v == f0;
                    }
                }
                for (c, &eq) in same.iter().enumerate() {
                    if eq {
                        f.stuck.insert(c);
                    }
                }
            }
        }
        f
    }

    /// Forms the next window's report without scoring it.
    fn next_report(&mut self, faults: Faults) -> WindowReport {
        let window = self.windows;
        self.windows = self.windows.saturating_add(1);
        WindowReport {
            window,
            start: self.window_start(),
            end: self.samples,
            score: None,
            level: None,
            alarm: self.alarm.is_active(),
            event: None,
            faults,
            phase: self.phase,
        }
    }

    fn skip(&mut self, faults: Faults) -> WindowReport {
        self.counts.skipped_windows = self.counts.skipped_windows.saturating_add(1);
        let report = self.next_report(faults);
        self.end_stats_phase_if_due(report.window);
        report
    }

    /// Ends the statistics phase after its last window.
    fn end_stats_phase_if_due(&mut self, window: u64) {
        if let (Phase::AdaptingStats, Some(a)) = (self.phase, self.config.adapt) {
            if window.saturating_add(1).saturating_sub(self.phase_start)
                >= u64::from(a.stats_windows)
            {
                self.normalizer = self.welford.normalizer(&self.normalizer);
                self.alarm.reset_level();
                self.phase = if a.threshold_windows > 0 {
                    Phase::AdaptingThreshold
                } else {
                    Phase::Running
                };
            }
        }
    }
}

impl<V, S, R, B, const C: usize> StreamDetector<V, S, R, B, C>
where
    V: VaeModel,
    S: WindowScorer<V>,
    R: SampleRing<C>,
    B: AsRef<[f32]> + AsMut<[f32]>,
{
    /// Pushes one sample in physical units. Returns the report when a window is formed (every
    /// `stride` samples once `W` have arrived).
    ///
    /// A sample with a NaN or infinite value is not stored (see the module doc): the windows
    /// containing its position are skipped and report [`SensorFault::NonFinite`].
    ///
    /// # Errors
    /// Only from scoring, i.e. a configuration or model the score rejects (0 samples, a model
    /// whose shapes differ from `X`); the window still counts and the state stays consistent.
    pub fn push(&mut self, model: &V, sample: &[f32; C]) -> Result<Option<WindowReport>, Error> {
        self.ingest(model, sample, ChannelMask::EMPTY)
    }

    /// Pushes one sample of raw counts, converted by [`DetectorConfig::raw`]; a count at its
    /// rail is saturated. Otherwise as [`push`](Self::push).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn push_raw(&mut self, model: &V, raw: &[i16; C]) -> Result<Option<WindowReport>, Error> {
        let (x, sat) = self.config.raw.convert(raw);
        self.ingest(model, &x, sat)
    }

    fn ingest(
        &mut self,
        model: &V,
        x: &[f32; C],
        raw_saturated: ChannelMask,
    ) -> Result<Option<WindowReport>, Error> {
        let i = self.samples;
        let mut non_finite = ChannelMask::EMPTY;
        for (c, v) in x.iter().enumerate() {
            if !v.is_finite() {
                non_finite.insert(c);
            }
        }
        let stored = if non_finite.is_empty() {
            let sat = raw_saturated | self.config.limits.check(x);
            if !sat.is_empty() {
                self.counts.saturated_samples = self.counts.saturated_samples.saturating_add(1);
                for (c, last) in self.last_saturated.iter_mut().enumerate() {
                    if sat.contains(c) {
                        *last = Some(i);
                    }
                }
            }
            if self.phase == Phase::AdaptingStats {
                self.welford.push(x, sat);
            }
            *x
        } else {
            self.counts.non_finite_samples = self.counts.non_finite_samples.saturating_add(1);
            for (c, last) in self.last_non_finite.iter_mut().enumerate() {
                if non_finite.contains(c) {
                    *last = Some(i);
                }
            }
            self.placeholder()
        };
        if !self.store(stored) {
            return Ok(None);
        }
        let faults = self.faults_in(self.window_start());
        if faults.skips_window() {
            return Ok(Some(self.skip(faults)));
        }
        self.score_window(model, faults)
    }

    fn score_window(&mut self, model: &V, faults: Faults) -> Result<Option<WindowReport>, Error> {
        if faults.flags_window() {
            self.counts.flagged_windows = self.counts.flagged_windows.saturating_add(1);
        }
        let mut report = self.next_report(faults);
        let xbuf = self.xbuf.as_mut();
        for (step, s) in xbuf.chunks_exact_mut(C).zip(self.ring.samples()) {
            self.normalizer.normalize_into(s, step);
        }
        let mut rng = window_rng(self.config.seed, report.window);
        let result = self
            .scorer
            .score_window(model, xbuf, self.config.kind, &mut rng);
        if let Ok(score) = result {
            self.last_scored = Some(report.window);
            report.score = Some(score);
            let usable = !faults.flags_window();
            match self.phase {
                Phase::AdaptingStats => {}
                Phase::AdaptingThreshold => {
                    if usable {
                        let level = self.alarm.smooth(score.score);
                        report.level = Some(level);
                        // Levels are finite (smooth maps non-finite scores to f32::MAX).
                        let _ = self.raise_q.push(level);
                        let _ = self.clear_q.push(level);
                        self.threshold_count = self.threshold_count.saturating_add(1);
                        self.end_threshold_phase_if_due();
                    }
                }
                Phase::Running => {
                    if usable || self.config.alarm_on_flagged {
                        let level = self.alarm.smooth(score.score);
                        report.level = Some(level);
                        report.event = self.alarm.decide(report.window, level);
                        report.alarm = self.alarm.is_active();
                    }
                }
            }
        }
        self.end_stats_phase_if_due(report.window);
        result.map(|_| Some(report))
    }

    fn end_threshold_phase_if_due(&mut self) {
        if let Some(a) = self.config.adapt {
            if self.threshold_count >= a.threshold_windows {
                if let Some(t) = self.raise_q.estimate() {
                    let clear = self.clear_q.estimate().unwrap_or(t);
                    self.alarm
                        .set_thresholds(t, if clear < t { clear } else { t });
                }
                self.phase = Phase::Running;
            }
        }
    }

    /// Attribution of the last scored window (see the module doc), for a window length known
    /// only at run time: the per-time-step sums go to `steps` (`W` values, oldest first), the
    /// rest is returned.
    ///
    /// # Errors
    /// [`Error::Empty`] before the first scored window; [`Error::ShapeMismatch`] if `steps` is
    /// not `W` long or the model's decoder width differs from `W * C`; errors of the model's
    /// `decode`.
    pub fn attribute_into(
        &mut self,
        model: &V,
        steps: &mut [f32],
    ) -> Result<ChannelAttribution<C>, Error> {
        let window = self.last_scored.ok_or(Error::Empty)?;
        let x_len = self.xbuf.as_ref().len();
        same_len(self.window_len(), steps.len())?;
        let recon = self.scorer.reconstruction(model, self.config.kind)?;
        let noise = model.noise();
        same_len(x_len, recon.len())?;
        same_len(x_len, noise.inv_var.len())?;
        let mut channels = [0.0f32; C];
        let mut e = [0.0f32; C];
        let parts = self
            .xbuf
            .as_ref()
            .chunks_exact(C)
            .zip(recon.chunks_exact(C))
            .zip(noise.inv_var.chunks_exact(C));
        for (step, ((x, m), p)) in steps.iter_mut().zip(parts) {
            let noise_t = DecoderNoise {
                inv_var: p,
                log_norm: 0.0,
            };
            noise_t.contributions(x, m, &mut e)?;
            let mut sum = 0.0f32;
            for (ch, &v) in channels.iter_mut().zip(&e) {
                *ch += v;
                sum += v;
            }
            *step = sum;
        }
        Ok(ChannelAttribution {
            window,
            channels,
            top_channel: argmax(&channels),
            top_step: argmax(steps),
        })
    }
}

impl<V, S, const C: usize, const W: usize, const X: usize> Detector<V, S, C, W, X>
where
    V: VaeModel,
    S: WindowScorer<V>,
{
    /// Attribution of the last scored window (see the module doc).
    ///
    /// # Errors
    /// [`Error::Empty`] before the first scored window; [`Error::ShapeMismatch`] if the model's
    /// decoder width differs from `X`; errors of the model's `decode`.
    pub fn attribute(&mut self, model: &V) -> Result<Attribution<C, W>, Error> {
        let mut steps = [0.0f32; W];
        let a = self.attribute_into(model, &mut steps)?;
        Ok(Attribution {
            window: a.window,
            channels: a.channels,
            steps,
            top_channel: a.top_channel,
            top_step: a.top_step,
        })
    }
}

/// Index of the first maximum (0 for an empty slice; NaN never wins).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best = i;
            best_v = x;
        }
    }
    best
}
