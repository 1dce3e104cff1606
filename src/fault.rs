//! Sensor faults: the per-window fault set ([`Faults`], over [`ChannelMask`]s), the fault
//! events ([`SensorFault`]) and the cumulative counts ([`FaultCounts`]) a
//! [`StreamDetector`](crate::StreamDetector) reports.
//!
//! # Behavior
//!
//! Faults are facts about samples, reported per window in [`WindowReport::faults`](crate::WindowReport::faults) (and as
//! [`SensorFault`] events through [`Faults::iter`]); each window containing a faulty sample
//! reports it, so with overlapping windows one bad sample shows in up to `ceil(W / stride)`
//! reports. Cumulative counts are in [`Detector::fault_counts`](crate::Detector::fault_counts).
//!
//! | fault | detected | the window | state |
//! |---|---|---|---|
//! | `NonFinite { channel }` | a NaN/±inf value in [`Detector::push`](crate::Detector::push) | **skipped**: never scored, score `None`, alarm and adaptation untouched | the sample is replaced in the ring by a copy of the previous stored sample (zeros at start) and never reaches the running statistics |
//! | `Gap` | [`Detector::mark_gap`](crate::Detector::mark_gap) (a dropped sample) | **skipped**, as above | a placeholder sample as above keeps the time grid |
//! | `Saturated { channel }` | `x <= lo` or `x >= hi` ([`SaturationLimits`](crate::SaturationLimits)), or a raw count at its rail ([`RawScale`](crate::RawScale)) | **scored and flagged** | the value is stored; it is excluded from the channel's running statistics |
//! | `Stuck { channel }` | all `W` values of a channel in the window are equal (`==`), `W >= 2`, evaluated on windows that are not skipped | **scored and flagged** | nothing (a property of the window) |
//!
//! A flagged window (saturated or stuck) updates the alarm only if
//! [`DetectorConfig::alarm_on_flagged`](crate::DetectorConfig::alarm_on_flagged) is set (a saturating accelerometer may be the process
//! anomaly itself); it never feeds the adaptation. Because the ring holds raw physical values and
//! windows are independent (see *Random numbers* in `detector.rs`), a window that no longer contains a faulty
//! sample scores bit-identically to the same window in a run without the fault. Skipped windows do
//! not advance the EMA or the k-of-n history, so alarm *levels* can differ from a run without the
//! fault.

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
/// [`restore_fault_counts`](crate::StreamDetector::restore_fault_counts)). Each is a `u32` that
/// saturates: it stays at `u32::MAX` (4.29e9; 50 days of a fault in every sample at 1 kHz) and the
/// detector works on unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultCounts {
    /// Samples with at least one non-finite value.
    pub non_finite_samples: u32,
    /// Dropped samples ([`Detector::mark_gap`](crate::Detector::mark_gap)).
    pub gaps: u32,
    /// Samples with at least one saturated channel.
    pub saturated_samples: u32,
    /// Windows not scored (non-finite or gap).
    pub skipped_windows: u32,
    /// Windows scored but flagged (saturated or stuck).
    pub flagged_windows: u32,
}
