//! Alarm logic on a stream of window scores: threshold, exponential smoothing, hysteresis and
//! k-of-n debounce.
//!
//! For the scores `s_t` of consecutive scored windows:
//!
//! ```text
//! level    l_t = s_t                                   (first window, or alpha = 1)
//!          l_t = min(alpha s_t + (1 - alpha) l_{t-1}, f32::MAX)     (EMA, 0 < alpha <= 1)
//! over     o_t = [l_t > threshold]            under the last n levels: O_t = sum o
//! above    a_t = [l_t > clear_threshold]      under the last n levels: A_t = sum a
//! raise    when the alarm is off and O_t >= raise_count         -> AlarmRaised { window }
//! clear    when the alarm is on  and A_t <  clear_count         -> AlarmCleared { window }
//! ```
//!
//! with `1 <= clear_count <= raise_count <= n <= 32` and `clear_threshold <= threshold`, so
//! raising and clearing never hold at once (`A_t >= O_t`). Special cases:
//!
//! - plain threshold: `n = raise_count = clear_count = 1`, `clear_threshold = threshold`
//!   (raise when `l_t > threshold`, clear when `l_t <= threshold`), the default of
//!   [`AlarmConfig::threshold`];
//! - hysteresis: `clear_threshold < threshold` (clear only once `l_t <= clear_threshold`);
//! - k-of-n debounce: raise when `k` of the last `n` levels exceed; stay raised while at least
//!   `clear_count` of them are above `clear_threshold` (with `clear_count = 1`: clear after `n`
//!   quiet windows in a row). A single noisy window cannot raise the alarm when `k >= 2`.
//!
//! Before `n` windows have been seen, the missing history counts as not exceeding. A
//! non-finite score (which the library's scores never return) counts as `f32::MAX`.
//! All state is a few words: the level, two `u32` bit histories and the alarm flag. There is no
//! counter to overflow: the histories are shifted once per level and masked to `n` bits, and the
//! window index of an event is the caller's `u64` (see the detector's *Counters*).

use crate::Error;

/// A change of the alarm state, with the index of the window that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AlarmEvent {
    /// The alarm went on at this window.
    AlarmRaised {
        /// Window index (see [`WindowReport::window`](crate::WindowReport)).
        window: u64,
    },
    /// The alarm went off at this window.
    AlarmCleared {
        /// Window index.
        window: u64,
    },
}

/// Parameters of the alarm logic (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AlarmConfig {
    /// A level above this counts towards raising.
    pub threshold: f32,
    /// A level above this counts towards staying raised (`<= threshold`).
    pub clear_threshold: f32,
    /// EMA weight of the newest score, `0 < alpha <= 1` (1: no smoothing).
    pub alpha: f32,
    /// History length in windows, `1..=32`.
    pub n: u8,
    /// Raise when at least this many of the last `n` levels exceed `threshold` (`1..=n`).
    pub raise_count: u8,
    /// Clear when fewer than this many of the last `n` levels exceed `clear_threshold`
    /// (`1..=raise_count`).
    pub clear_count: u8,
}

impl AlarmConfig {
    /// A plain threshold: no smoothing, no hysteresis, no debounce.
    pub const fn threshold(threshold: f32) -> Self {
        Self {
            threshold,
            clear_threshold: threshold,
            alpha: 1.0,
            n: 1,
            raise_count: 1,
            clear_count: 1,
        }
    }

    /// The same with an exponential moving average of weight `alpha` on the newest score.
    pub const fn with_ema(self, alpha: f32) -> Self {
        Self { alpha, ..self }
    }

    /// The same with hysteresis: clear only at or below `clear_threshold`.
    pub const fn with_hysteresis(self, clear_threshold: f32) -> Self {
        Self {
            clear_threshold,
            ..self
        }
    }

    /// The same with k-of-n debounce: raise when `raise_count` of the last `n` levels exceed
    /// the threshold, clear when fewer than `clear_count` of them exceed the clear threshold.
    pub const fn with_debounce(self, raise_count: u8, n: u8, clear_count: u8) -> Self {
        Self {
            n,
            raise_count,
            clear_count,
            ..self
        }
    }

    /// Checks the documented ranges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if a threshold is NaN, `clear_threshold > threshold`,
    /// `alpha` is outside `(0, 1]`, or the counts are outside
    /// `1 <= clear_count <= raise_count <= n <= 32`.
    pub const fn validate(&self) -> Result<(), Error> {
        let ok = !self.threshold.is_nan()
            && !self.clear_threshold.is_nan()
            && self.clear_threshold <= self.threshold
            && self.alpha > 0.0
            && self.alpha <= 1.0
            && self.clear_count >= 1
            && self.clear_count <= self.raise_count
            && self.raise_count <= self.n
            && self.n <= 32;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidParameter)
        }
    }

    /// The nearest valid configuration: `n` clamped to `1..=32`, `raise_count` to `1..=n`,
    /// `clear_count` to `1..=raise_count`, an `alpha` outside `(0, 1]` (or NaN) becomes 1, a
    /// NaN threshold becomes `+inf` (never raises), a `clear_threshold` above `threshold` (or
    /// NaN) becomes `threshold`.
    pub const fn sanitized(self) -> Self {
        let n = clamp_u8(self.n, 1, 32);
        let raise_count = clamp_u8(self.raise_count, 1, n);
        let clear_count = clamp_u8(self.clear_count, 1, raise_count);
        let alpha = if self.alpha > 0.0 && self.alpha <= 1.0 {
            self.alpha
        } else {
            1.0
        };
        let threshold = if self.threshold.is_nan() {
            f32::INFINITY
        } else {
            self.threshold
        };
        let clear_threshold = if self.clear_threshold <= threshold {
            self.clear_threshold
        } else {
            threshold
        };
        Self {
            threshold,
            clear_threshold,
            alpha,
            n,
            raise_count,
            clear_count,
        }
    }
}

const fn clamp_u8(v: u8, lo: u8, hi: u8) -> u8 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// The alarm state machine (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Alarm {
    config: AlarmConfig,
    level: f32,
    primed: bool,
    over: u32,
    above_clear: u32,
    active: bool,
}

impl Alarm {
    /// An inactive alarm with the [sanitized](AlarmConfig::sanitized) configuration; usable in
    /// `static`s.
    pub const fn new(config: AlarmConfig) -> Self {
        Self {
            config: config.sanitized(),
            level: 0.0,
            primed: false,
            over: 0,
            above_clear: 0,
            active: false,
        }
    }

    /// The configuration in use.
    pub const fn config(&self) -> &AlarmConfig {
        &self.config
    }

    /// Whether the alarm is on.
    pub const fn is_active(&self) -> bool {
        self.active
    }

    /// The last level (smoothed score), `None` before the first score or after
    /// [`reset_level`](Self::reset_level).
    pub const fn level(&self) -> Option<f32> {
        if self.primed {
            Some(self.level)
        } else {
            None
        }
    }

    /// Replaces both thresholds (sanitized as in [`AlarmConfig::sanitized`]); keeps the state.
    pub fn set_thresholds(&mut self, threshold: f32, clear_threshold: f32) {
        self.config = AlarmConfig {
            threshold,
            clear_threshold,
            ..self.config
        }
        .sanitized();
    }

    /// Forgets the EMA (the next score starts it afresh); keeps the histories and the state.
    pub fn reset_level(&mut self) {
        self.primed = false;
        self.level = 0.0;
    }

    /// Back to the initial state (alarm off, no history, no level).
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// Feeds one score through the EMA and returns the new level, without deciding.
    pub fn smooth(&mut self, score: f32) -> f32 {
        let s = if score.is_finite() { score } else { f32::MAX };
        let a = self.config.alpha;
        self.level = if self.primed && a < 1.0 {
            let l = a * s + (1.0 - a) * self.level;
            if l > f32::MAX {
                f32::MAX
            } else {
                l
            }
        } else {
            s
        };
        self.primed = true;
        self.level
    }

    /// Pushes one level into the histories and returns the resulting event, if any.
    /// A NaN level counts as `f32::MAX`.
    pub fn decide(&mut self, window: u64, level: f32) -> Option<AlarmEvent> {
        let level = if level.is_nan() { f32::MAX } else { level };
        let cfg = &self.config;
        let mask = u32::MAX >> (32 - u32::from(cfg.n));
        self.over = ((self.over << 1) | u32::from(level > cfg.threshold)) & mask;
        self.above_clear =
            ((self.above_clear << 1) | u32::from(level > cfg.clear_threshold)) & mask;
        if !self.active && self.over.count_ones() >= u32::from(cfg.raise_count) {
            self.active = true;
            Some(AlarmEvent::AlarmRaised { window })
        } else if self.active && self.above_clear.count_ones() < u32::from(cfg.clear_count) {
            self.active = false;
            Some(AlarmEvent::AlarmCleared { window })
        } else {
            None
        }
    }

    /// [`smooth`](Self::smooth) then [`decide`](Self::decide): one scored window.
    pub fn update(&mut self, window: u64, score: f32) -> Option<AlarmEvent> {
        let level = self.smooth(score);
        self.decide(window, level)
    }
}
