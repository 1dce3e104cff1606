//! Channels whose scale is absurd: warnings for `train` (the fitted statistics) and `score`
//! (values the model's standardization clamps).
//!
//! # Bounds
//! - [`MAX_PLAUSIBLE_SCALE`] = 1e12: a channel whose mean magnitude or standard deviation
//!   exceeds it is not a physical sensor reading in any unit this tool expects (an IMU in m/s² or
//!   raw counts is below 1e5, pressure in Pa about 1e5); such values come from corrupt files,
//!   uninitialized memory or a wrong unit, and a model trained on them is useless (its
//!   standardized inputs are dominated by a few huge values).
//! - [`PRECISION_RATIO`] = 2^24: when `|mean| > 2^24 std`, the spacing of f32 values near the
//!   mean (at least `|mean| 2^-24`) exceeds one standard deviation, so standardized values
//!   `(x - mean) / std` keep no precision.
//! - Scoring: a value whose standardized magnitude reaches [`tinyvae::NORM_LIMIT`] (1e6 standard
//!   deviations of the model's training data) is clamped to it by the library's `Normalizer`, as
//!   on the chip. Its windows get extreme scores (and a constant such value is a stuck channel:
//!   flagged, so it does not raise the alarm unless `--alarm-on-flagged`). `score` still scores
//!   them, as the chip would, and warns once per channel with the count and the largest value.
//!
//! The checks are warnings on stderr, never errors: the numbers are what the data says.

use crate::columns::name_list;
use crate::data::Norm;

/// Largest plausible magnitude of a channel's mean or standard deviation (see the module doc).
pub const MAX_PLAUSIBLE_SCALE: f64 = 1e12;

/// `|mean| / std` beyond which standardized f32 values lose all precision: 2^24.
pub const PRECISION_RATIO: f64 = 16_777_216.0;

/// Warnings for the statistics a model is trained with, one per channel whose mean or standard
/// deviation is beyond [`MAX_PLAUSIBLE_SCALE`] or whose `|mean| / std` exceeds
/// [`PRECISION_RATIO`]; each names the channel and the values.
pub fn norm_warnings(norm: &Norm, channels: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (c, (&m, &s)) in norm.mean.iter().zip(&norm.std).enumerate() {
        let name = channels.get(c).map_or("?", String::as_str);
        let (m64, s64) = (f64::from(m).abs(), f64::from(s));
        if !(m64 <= MAX_PLAUSIBLE_SCALE && s64 <= MAX_PLAUSIBLE_SCALE) {
            out.push(format!(
                "channel {name}: mean {m:e} and standard deviation {s:e} are beyond the \
                 plausible scale of a sensor channel ({MAX_PLAUSIBLE_SCALE:e}); a model trained \
                 on them is unlikely to be useful (check the recording and its units)"
            ));
        } else if m64 > PRECISION_RATIO * s64 {
            out.push(format!(
                "channel {name}: |mean| {m:e} is more than 2^24 standard deviations ({s:e}): \
                 f32 values near the mean are spaced more than one standard deviation apart, so \
                 standardized values lose all precision (subtract an offset from the channel)"
            ));
        }
    }
    out
}

/// Counts, per channel, the finite values of a stream that the model's standardization clamps
/// (`|x - mean| / std >= NORM_LIMIT`). Rows are pushed one at a time, so it serves a whole
/// file and a streaming read alike.
#[derive(Clone, Debug)]
pub struct ClampCheck {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    count: Vec<u64>,
    largest: Vec<f32>,
}

impl ClampCheck {
    /// A check against the model's standardization.
    pub fn new(norm: &Norm) -> Self {
        let c = norm.channels();
        Self {
            mean: norm.mean.clone(),
            inv_std: norm.std.iter().map(|&s| 1.0 / s).collect(),
            count: vec![0; c],
            largest: vec![0.0; c],
        }
    }

    /// Checks one row (the model's channels, in its order).
    pub fn push(&mut self, row: &[f32]) {
        for (c, &x) in row.iter().enumerate() {
            let (Some(&m), Some(&inv)) = (self.mean.get(c), self.inv_std.get(c)) else {
                break;
            };
            if x.is_finite() && ((x - m) * inv).abs() >= tinyvae::NORM_LIMIT {
                if let (Some(n), Some(l)) = (self.count.get_mut(c), self.largest.get_mut(c)) {
                    *n += 1;
                    if x.abs() > l.abs() {
                        *l = x;
                    }
                }
            }
        }
    }

    /// Checks every row of `values` (row-major, the model's channel count per row).
    pub fn push_rows(&mut self, values: &[f32]) {
        let c = self.mean.len().max(1);
        for row in values.chunks_exact(c) {
            self.push(row);
        }
    }

    /// One warning per channel with clamped values, naming it, the count and the largest value.
    pub fn warnings(&self, channels: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (c, (&n, &l)) in self.count.iter().zip(&self.largest).enumerate() {
            if n == 0 {
                continue;
            }
            let name = channels.get(c).map_or("?", String::as_str);
            let (m, s) = (
                self.mean.get(c).copied().unwrap_or(0.0),
                self.inv_std.get(c).map_or(1.0, |i| 1.0 / i),
            );
            out.push(format!(
                "channel {name}: {n} value{} beyond {:e} standard deviations of the model's \
                 training data (largest {l:e}; mean {m}, std {s}) are clamped to that \
                 limit: their windows score as extreme anomalies, and a constant run of them is \
                 flagged stuck (check the recording and its units)",
                if n == 1 { "" } else { "s" },
                tinyvae::NORM_LIMIT
            ));
        }
        out
    }

    /// The channels with clamped values, as a short list (for summaries).
    pub fn channels_text(&self, channels: &[String]) -> String {
        let names: Vec<&str> = self
            .count
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, _)| channels.get(c).map_or("?", String::as_str))
            .collect();
        name_list(&names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["ax".into(), "ay".into(), "az".into()]
    }

    #[test]
    fn absurd_statistics_are_named() {
        let norm = Norm {
            mean: vec![0.1, 3e38, 1e8],
            std: vec![1.0, 3.3e37, 1.0],
        };
        let w = norm_warnings(&norm, &names());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("channel ay: mean 3e38"), "{}", w[0]);
        assert!(w[1].starts_with("channel az: |mean| 1e8"), "{}", w[1]);
        let fine = Norm {
            mean: vec![0.1, -9.8, 1e5],
            std: vec![1.0, 2.0, 300.0],
        };
        assert!(norm_warnings(&fine, &names()).is_empty());
    }

    #[test]
    fn clamped_values_are_counted_per_channel() {
        let norm = Norm {
            mean: vec![0.0; 3],
            std: vec![1.0, 1.0, 1e3],
        };
        let mut c = ClampCheck::new(&norm);
        c.push_rows(&[
            3e38,
            1.0,
            2e6,
            -3e38,
            f32::NAN,
            1e9,
            0.0,
            f32::INFINITY,
            0.0,
        ]);
        let w = c.warnings(&names());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("channel ax: 2 values beyond 1e6"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("largest 3e38"), "{}", w[0]);
        assert!(w[1].starts_with("channel az: 1 value beyond"), "{}", w[1]);
        assert_eq!(c.channels_text(&names()), "ax,az");
    }
}
