//! [`Norm`]: per-channel standardization statistics, fitted on training rows and applied as the
//! library's normalizer does.
//!
//! # Standardization
//! Per channel, `x' = clamp((x - mean_c) * (1 / std_c), -NORM_LIMIT, NORM_LIMIT)` in f32: the
//! arithmetic of the library's [`tinyvae::Normalizer`] (which the firmware's detector runs), so
//! host and chip see the same bits (a unit test checks it against `Normalizer`). `mean_c` and
//! the population standard deviation `std_c` are accumulated in f64 over the training rows and
//! rounded to f32; a channel with `std_c < 1e-6` (constant) gets `std_c = 1` so it is centred
//! but not blown up.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::Series;

/// Per-channel standardization statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (1 for a constant channel).
    pub std: Vec<f32>,
}

impl Norm {
    /// Fits mean and population standard deviation per channel (f64 accumulation).
    pub fn fit(series: &Series) -> Norm {
        Self::fit_rows(series, 0..series.rows())
    }

    /// [`Norm::fit`] over the rows `rows` of `series` only (clamped to the data).
    pub fn fit_rows(series: &Series, rows: Range<usize>) -> Norm {
        let c = series.num_channels();
        let end = rows.end.min(series.rows());
        let start = rows.start.min(end);
        let values = &series.values[start * c..end * c];
        let n = (end - start).max(1) as f64;
        let mut sum = vec![0.0f64; c];
        for row in values.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut ss = vec![0.0f64; c];
        for row in values.chunks_exact(c) {
            for ((s, &v), &m) in ss.iter_mut().zip(row).zip(&mean) {
                let d = f64::from(v) - m;
                *s += d * d;
            }
        }
        let std = ss
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt() as f32;
                if sd < 1e-6 {
                    1.0
                } else {
                    sd
                }
            })
            .collect();
        Norm {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Standardizes consecutive samples in place (channels repeat every `channels()` values):
    /// `clamp((x - mean) * (1 / std), ±NORM_LIMIT)`, as [`tinyvae::Normalizer`] computes it.
    pub fn apply(&self, row: &mut [f32]) {
        for (v, (&m, &s)) in row.iter_mut().zip(self.mean.iter().zip(&self.std).cycle()) {
            let inv = 1.0 / s;
            *v = ((*v - m) * inv).clamp(-tinyvae::NORM_LIMIT, tinyvae::NORM_LIMIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_str as parse;

    #[test]
    fn standardization_is_the_librarys() {
        let norm = Norm {
            mean: vec![0.1, -3.7, 1e3],
            std: vec![0.3, 7.1, 1e-3],
        };
        let lib = tinyvae::Normalizer::<3>::from_std([0.1, -3.7, 1e3], [0.3, 7.1, 1e-3]).unwrap();
        let mut x = 0.123f32;
        for _ in 0..1000 {
            let raw = [x, -x * 17.0, 1e3 + x * 1e-2];
            let mut ours = raw;
            norm.apply(&mut ours);
            let want = lib.normalize(&raw);
            assert_eq!(
                ours.map(f32::to_bits),
                want.map(f32::to_bits),
                "raw {raw:?}"
            );
            x = x * 1.37 % 11.0 - 2.9;
        }
        let mut huge = [1e30f32, 0.0, 0.0];
        norm.apply(&mut huge);
        assert_eq!(huge[0], tinyvae::NORM_LIMIT);
    }

    #[test]
    fn norm_fit_matches_closed_form() {
        let s = parse("a,b\n1,5\n2,5\n3,5\n4,5\n").unwrap();
        let n = Norm::fit(&s);
        assert_eq!(n.mean, [2.5, 5.0]);
        // population std of 1..4 = sqrt(1.25)
        assert_eq!(n.std, [1.25f64.sqrt() as f32, 1.0]);
    }
}
