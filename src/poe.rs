//! Product of Gaussian experts (PoE), as used by multimodal VAEs to fuse per-sensor posteriors.
//!
//! A product of Gaussian densities is, after normalization, Gaussian: per dimension, with expert
//! precisions `T_i = 1 / sigma_i^2 = e^-lv_i`,
//!
//! ```text
//! prod_i N(x; m_i, sigma_i^2)  ∝  N(x; m, sigma^2),   1/sigma^2 = sum_i T_i,   m = sum_i T_i m_i / sum_i T_i
//! ```
//!
//! Any subset of the experts can take part (a mask, e.g. for sensors that dropped out), and an
//! optional prior expert `N(0, I)` (precision 1, mean 0) keeps the product proper when every
//! expert is masked out.
//!
//! # Evaluation
//! Per dimension, with `M` the largest active `-lv_i` (and `0` for the prior): if `|M| <= 64`
//! the precisions `T_i = exp(-lv_i)` (the prior's `1`) are formed directly, they cannot overflow
//! or all underflow; otherwise they are scaled by `e^-M` first (`w_i = exp(-lv_i - M) <= 1`, the
//! largest exactly 1), so precisions far outside f32 (`e^100`) still give a finite result. With
//! `S = sum_i w_i` (the prior first, then the active experts in order) and `A = sum_i w_i m_i`:
//! `lv = -(M + ln S)` (`-ln S` when unscaled) and `m = A / S`. A single active expert without
//! the prior is returned exactly (equal values). Cost per dimension: one `exp` per active
//! expert, one `ln`, one division. The product of experts VAE ([`PoeVae`](crate::PoeVae)) clamps
//! log-variances to `-16..=16`, so its fusion ([`fuse_precisions`](crate::fuse_precisions))
//! is the unscaled case, bit for bit.
//!
//! Measured (`cargo test --test poe_moe -- --nocapture`): against a product of densities
//! integrated numerically on a 1-D grid, the mean agrees within 5e-7 standard deviations and the
//! variance within 1.5e-6 relative; the proptest checks `e^-lv_out = sum e^-lv_i` within 1e-5
//! relative, `lv_out <= min lv_i`, and `m` within the experts' range, for `lv` in -30..30.

use crate::math::{exp, ln};
use crate::{check_finite, DiagGaussian, Error};

/// Largest `|max_i -lv_i|` for which the precisions are formed unscaled (`e^64` ~ 6e27).
const SCALE_LIMIT: f32 = 64.0;

/// The product of the active `experts` (and of `N(0, I)` if `prior`), written to `out`.
///
/// `active[i]` selects `experts[i]`; `None` selects all. See the module documentation in `src/poe.rs`
/// for the formula and its evaluation. `out` is written only on success.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `active` is not as long as `experts`; [`Error::Empty`] if no expert
/// is active and `prior` is false; [`Error::NonFinite`] if an active expert has a NaN or infinite
/// mean or log-variance (`index` is the expert's position in `experts`).
pub fn product_of_experts<const D: usize>(
    experts: &[DiagGaussian<D>],
    active: Option<&[bool]>,
    prior: bool,
    out: &mut DiagGaussian<D>,
) -> Result<(), Error> {
    if let Some(mask) = active {
        if mask.len() != experts.len() {
            return Err(Error::ShapeMismatch {
                expected: experts.len(),
                found: mask.len(),
            });
        }
    }
    let selected = || {
        experts
            .iter()
            .enumerate()
            .filter(move |(i, _)| active.is_none_or(|m| m.get(*i).copied().unwrap_or(false)))
    };

    let mut count = 0usize;
    for (i, e) in selected() {
        if check_finite(&e.mean).is_err() || check_finite(&e.logvar).is_err() {
            return Err(Error::NonFinite { index: i });
        }
        count += 1;
    }
    if count == 0 && !prior {
        return Err(Error::Empty);
    }

    if count == 1 && !prior {
        if let Some((_, e)) = selected().next() {
            *out = *e;
            return Ok(());
        }
    }
    let mut mean = [0.0f32; D];
    let mut logvar = [0.0f32; D];
    for (d, (m_out, lv_out)) in mean.iter_mut().zip(logvar.iter_mut()).enumerate() {
        let lv_of = |e: &DiagGaussian<D>| e.logvar.get(d).copied().unwrap_or(0.0);
        let mut top = if prior { 0.0f32 } else { f32::NEG_INFINITY };
        for (_, e) in selected() {
            top = top.max(-lv_of(e));
        }
        let shift = if top.abs() <= SCALE_LIMIT { 0.0 } else { top };
        let mut s = match (prior, shift == 0.0) {
            (false, _) => 0.0f32,
            (true, true) => 1.0,
            (true, false) => exp(-shift),
        };
        let mut acc = 0.0f32;
        for (_, e) in selected() {
            let w = exp(-lv_of(e) - shift);
            s += w;
            acc += w * e.mean.get(d).copied().unwrap_or(0.0);
        }
        *m_out = acc / s;
        *lv_out = if shift == 0.0 {
            0.0 - ln(s)
        } else {
            0.0 - (shift + ln(s))
        };
    }
    out.mean = mean;
    out.logvar = logvar;
    Ok(())
}
