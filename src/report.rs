//! What a [`StreamDetector`](crate::StreamDetector) reports: a [`WindowReport`] per formed
//! window and, on request, an [`Attribution`] (or [`ChannelAttribution`]) of the last scored
//! window.
//!
//! # Attribution
//!
//! [`Detector::attribute`](crate::Detector::attribute) explains the last scored window through the reconstruction term at
//! the posterior mean: with `m = D(mu)` (for [`ScoreKind::Elbo`](crate::ScoreKind::Elbo) the score's own decode; for
//! sampled kinds one extra decode) and the decoder precisions `p`,
//!
//! ```text
//! e[t C + c]   = 1/2 (x[t C + c] - m[t C + c])^2 p[t C + c]      (DecoderNoise::contributions)
//! channels[c]  = sum_t e[t C + c],     steps[t] = sum_c e[t C + c]
//! ```
//!
//! with the top channel and time step (first maximum). `sum_c channels[c] = log_norm - ln p(x|mu)`
//! up to rounding. A window a multi-sensor model scored with fewer groups
//! ([`WindowReport::groups`]) holds placeholder values in the absent groups' channels: its top
//! channel among the present ones is `top_channel_among(groups.channels_of(report.groups))`.
//! Cost: `X` multiply-adds (plus one decode for sampled kinds).

use crate::{AlarmEvent, ChannelMask, Faults, GroupSet, Phase, Score};

/// What [`Detector::push`](crate::Detector::push) reports for each formed window.
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
    /// The sensor groups the window was scored with (empty if skipped; group 0 alone for a
    /// single-group model). Fewer than all of the model's groups is a *degraded* window: its
    /// score is `-ELBO` over those groups and the alarm compares it with their own threshold
    /// (see [`VaeModel::threshold_shift`](crate::VaeModel::threshold_shift)).
    pub groups: GroupSet,
    /// The phase the window was processed in.
    pub phase: Phase,
    /// The expert a mixture of experts routed the window to (`None` for a single VAE or an
    /// unscored window).
    pub expert: Option<u8>,
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
/// [`StreamDetector::attribute_into`](crate::StreamDetector::attribute_into) writes to a caller's slice (window length at run time).
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

/// The first channel of `mask` (below `C`) with the largest value, NaN never winning; `None` if
/// `mask` holds no channel below `C`.
fn top_among<const C: usize>(channels: &[f32; C], mask: ChannelMask) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (c, &v) in channels.iter().enumerate() {
        if !mask.contains(c) {
            continue;
        }
        match best {
            None => best = Some((c, v)),
            Some((_, b)) if v > b || (b.is_nan() && !v.is_nan()) => best = Some((c, v)),
            Some(_) => {}
        }
    }
    best.map(|(c, _)| c)
}

impl<const C: usize, const W: usize> Attribution<C, W> {
    /// The channel with the largest sum among the channels in `mask` (first on ties; `None` if
    /// `mask` holds none of the window's channels). For a window scored with the groups `S`:
    /// `mask = groups.channels_of(S)`, a channel of a present sensor.
    pub fn top_channel_among(&self, mask: ChannelMask) -> Option<usize> {
        top_among(&self.channels, mask)
    }
}

impl<const C: usize> ChannelAttribution<C> {
    /// As [`Attribution::top_channel_among`].
    pub fn top_channel_among(&self, mask: ChannelMask) -> Option<usize> {
        top_among(&self.channels, mask)
    }
}
