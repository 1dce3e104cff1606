//! The mixture-of-experts gate: a softmax linear layer on a cheap summary of the window, and the
//! top-1 [`Route`] it picks.
//!
//! For a standardized window `x` of `W` time steps by `C` channels (time-major, `x[t C + c]`),
//! the gate's input is the per-channel mean and mean square,
//!
//! ```text
//! f[c]     = 1/W sum_t x[t C + c]              (c < C)
//! f[C + c] = 1/W sum_t x[t C + c]^2
//! a_k      = b_k + sum_j w[k][j] f[j]          logits, k < K
//! log pi_k = a_k - LSE_j(a_j)                  log-softmax (max subtracted before exp)
//! route    = argmax_k a_k (first on ties),  its log pi_k
//! ```
//!
//! The summary costs `2 X` multiply-adds and the logits `2 C K`, against the tens of thousands of
//! an expert; it separates activities by posture (the mean of the accelerometer is the gravity
//! direction) and by intensity (the mean square). Sums run in index order, so the host and the
//! chip pick the same expert with the same weight, bit for bit.
//!
//! The gate stays f32 (its `2 C K + K` weights are a few hundred bytes); the experts may be int8.

use crate::math::{exp, ln};
use crate::Error;

/// Largest number of experts a gate may have.
pub const MAX_EXPERTS: usize = 8;
/// Largest channel count of a gated window (the detector's limit).
pub const MAX_GATE_CHANNELS: usize = 32;

/// The expert a window was routed to and the gate's log-weight of it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Route {
    /// Index of the chosen expert (`< K`).
    pub expert: u8,
    /// `log pi_k` of the chosen expert, `<= 0`.
    pub log_weight: f32,
}

/// A softmax-linear gate on the per-channel mean and mean square of the window (module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SummaryGate<'a> {
    /// Row-major `K x 2C` weights: row `k` is `[w_mean[0..C], w_meansq[0..C]]`.
    pub weight: &'a [f32],
    /// `K` biases.
    pub bias: &'a [f32],
    /// Channels `C` of the window.
    pub channels: usize,
}

impl<'a> SummaryGate<'a> {
    /// A gate from its weights; usable in `static` initialisers (checked by [`validate`](Self::validate)).
    pub const fn new(weight: &'a [f32], bias: &'a [f32], channels: usize) -> Self {
        Self {
            weight,
            bias,
            channels,
        }
    }

    /// Number of experts `K`.
    pub const fn experts(&self) -> usize {
        self.bias.len()
    }

    /// Checks the shapes: `1 <= K <= MAX_EXPERTS`, `1 <= C <= MAX_GATE_CHANNELS`, `K x 2C`
    /// finite weights.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `K` or `C` out of range, [`Error::ShapeMismatch`] for a
    /// weight matrix of the wrong size, [`Error::NonFinite`] for a NaN or infinite weight.
    pub fn validate(&self) -> Result<(), Error> {
        let k = self.experts();
        if !(1..=MAX_EXPERTS).contains(&k) || !(1..=MAX_GATE_CHANNELS).contains(&self.channels) {
            return Err(Error::InvalidParameter);
        }
        let expected = k * 2 * self.channels;
        if self.weight.len() != expected {
            return Err(Error::ShapeMismatch {
                expected,
                found: self.weight.len(),
            });
        }
        crate::check_finite(self.weight)?;
        crate::check_finite(self.bias)
    }

    /// Writes the `K` logits of window `x` into `out` (first `K` entries) and returns `K`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate); [`Error::ShapeMismatch`] if `x` is not a whole number
    /// (at least 1) of `C`-sample steps.
    pub fn logits(&self, x: &[f32], out: &mut [f32; MAX_EXPERTS]) -> Result<usize, Error> {
        self.validate()?;
        let c = self.channels;
        if x.is_empty() || !x.len().is_multiple_of(c) {
            return Err(Error::ShapeMismatch {
                expected: c * (x.len() / c).max(1),
                found: x.len(),
            });
        }
        let mut f = [0.0f32; 2 * MAX_GATE_CHANNELS];
        let (mean, sq) = f.split_at_mut(MAX_GATE_CHANNELS);
        for step in x.chunks_exact(c) {
            for ((m, s), &v) in mean.iter_mut().zip(sq.iter_mut()).zip(step) {
                *m += v;
                *s += v * v;
            }
        }
        let inv_w = 1.0 / (x.len() / c) as f32;
        for v in f.iter_mut() {
            *v *= inv_w;
        }
        let (mean, sq) = f.split_at(MAX_GATE_CHANNELS);
        let k = self.experts();
        for ((o, row), &b) in out
            .iter_mut()
            .zip(self.weight.chunks_exact(2 * c))
            .zip(self.bias)
        {
            let (wm, ws) = row.split_at(c);
            let mut a = b;
            for (&w, &m) in wm.iter().zip(mean) {
                a += w * m;
            }
            for (&w, &s) in ws.iter().zip(sq) {
                a += w * s;
            }
            *o = a;
        }
        Ok(k)
    }

    /// Routes window `x`: the expert with the largest logit and its log-weight (module doc).
    ///
    /// # Errors
    /// As [`logits`](Self::logits); [`Error::NonFinite`] if a logit overflows (a window far
    /// outside the training data; the caller's score flags it as such).
    pub fn route(&self, x: &[f32]) -> Result<Route, Error> {
        let mut a = [0.0f32; MAX_EXPERTS];
        let k = self.logits(x, &mut a)?;
        let a = a.get(..k).ok_or(Error::InvalidParameter)?;
        let (expert, log_weight) = top1_log(a)?;
        Ok(Route {
            expert: u8::try_from(expert).map_err(|_| Error::InvalidParameter)?,
            log_weight,
        })
    }

    /// The log-softmax of window `x`'s logits into `out` (first `K` entries); returns `K`. The
    /// dense mixture weights `log pi_k` for every expert.
    ///
    /// # Errors
    /// As [`route`](Self::route).
    pub fn log_weights(&self, x: &[f32], out: &mut [f32; MAX_EXPERTS]) -> Result<usize, Error> {
        let mut a = [0.0f32; MAX_EXPERTS];
        let k = self.logits(x, &mut a)?;
        let a = a.get(..k).ok_or(Error::InvalidParameter)?;
        let o = out.get_mut(..k).ok_or(Error::InvalidParameter)?;
        crate::log_softmax(a, o)?;
        Ok(k)
    }
}

/// Index of the largest logit (first on ties) and `a_k - LSE(a) = -ln sum_j e^{a_j - max}`.
fn top1_log(a: &[f32]) -> Result<(usize, f32), Error> {
    crate::check_finite(a)?;
    let m = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut index = None;
    let mut s = 0.0f32;
    for (i, &v) in a.iter().enumerate() {
        if index.is_none() && v == m {
            index = Some(i);
        }
        s += exp(v - m);
    }
    Ok((index.ok_or(Error::Empty)?, -ln(s)))
}
