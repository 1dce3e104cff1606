//! int8 quantization with the conventions and the exact integer arithmetic of TFLite's int8
//! specification and its reference kernels in their default double-rounding build (not
//! `TFLITE_SINGLE_ROUNDING`), which CMSIS-NN reproduces bit for bit (unless built with
//! `CMSIS_NN_USE_SINGLE_ROUNDING`).
//!
//! # Affine quantization
//!
//! A real value `r` is represented by an int8 `q` with a scale `s > 0` and a zero point
//! `zp in -128..=127` ([`QParams`]): `r = s * (q - zp)`.
//!
//! - [`quantize`]: `q = saturate_i8(round(x / s) + zp)`, the division in f32 and `round` half
//!   away from zero (TFLite's `TfLiteRound`, i.e. `std::round`), saturated to `-128..=127`.
//!   NaN maps to `zp` (the value 0); ±inf saturate. This is TFLite's reference `Quantize` op.
//! - [`dequantize`]: `s * (q - zp)` in f32. The integer `q - zp` is exact in f32 and the product
//!   is rounded once, so this equals TFLite's `static_cast<float>(double(s) * (q - zp))` bit for bit
//!   (the f64 product of a 24-bit mantissa and a 9-bit integer is exact too).
//! - [`QParams::from_range`]: TFLite's `ChooseQuantizationParams<int8_t>` (the same arithmetic as the
//!   MLIR converter's `getNudgedScaleAndZeroPoint`): the range is widened to contain 0,
//!   `[rmin, rmax] = [min(min, 0), max(max, 0)]`, in f64; `scale = (rmax - rmin) / 255`; the zero point
//!   `-128 - rmin / scale` or `127 - rmax / scale`, whichever adds the smaller magnitudes, is
//!   *nudged* to an integer: clamped to `[-128, 127]`, then rounded half away from zero. The scale is
//!   stored as f32. The real value 0 is then exactly representable (by `zp`), and the grid covers
//!   `[min, max]` up to that nudge (at most half a step at each end).
//!
//! # Requantization
//!
//! A dense layer accumulates `acc = Σ w_q x_q + bias_q` in i32 with the real value
//! `acc * s_in * s_w`; the output step is `s_out`, so `acc` must be multiplied by the real
//! `M = s_in * s_w / s_out`. [`quantize_multiplier`] (TFLite's `QuantizeMultiplier`) writes
//! `M = m * 2^(shift - 31)` with a Q31 `m in [2^30, 2^31)`:
//! `(q, e) = frexp(M)` (`q in [0.5, 1)`, `M = q * 2^e`), `m = round(q * 2^31)` half away from zero;
//! if that rounds up to `2^31` then `m = 2^30, e = e + 1`; if `e < -31` the multiplier is flushed to
//! `m = 0, shift = 0` (`M < 2^-32`). `shift = e`: positive is a left shift.
//! The relative error is `|m * 2^(shift-31) - M| <= 2^-31 * M` (half a unit of a 31-bit mantissa).
//!
//! [`requantize`] is TFLite's `MultiplyByQuantizedMultiplier` in its default (double-rounding,
//! gemmlowp) form, with `left = max(shift, 0)`, `right = max(-shift, 0)`:
//! ```text
//! requantize(acc) = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2^left, m), right)
//!
//! SaturatingRoundingDoublingHighMul(a, b):        // ≈ a * b / 2^31
//!     if a == b == i32::MIN: return i32::MAX        // the only overflow
//!     ab    = a * b                                 // exact, i64
//!     nudge = ab >= 0 ? 2^30 : 1 - 2^30
//!     return (ab + nudge) / 2^31                    // i64 division, truncating toward zero
//!
//! RoundingDivideByPOT(x, e):                      // ≈ x / 2^e, 0 <= e <= 31
//!     mask      = 2^e - 1
//!     remainder = x & mask
//!     threshold = (mask >> 1) + (x < 0 ? 1 : 0)
//!     return (x >> e) + (remainder > threshold ? 1 : 0)   // >> is arithmetic
//! ```
//! The high multiply rounds `a * b / 2^31` to nearest with ties toward +∞ (for `ab < 0` the
//! truncating division with nudge `1 - 2^30` equals `floor((ab + 2^30) / 2^31)`, which is how
//! CMSIS-NN's `arm_nn_doubling_high_mult_no_sat` computes it); the shift rounds `x / 2^e` to
//! nearest with ties away from zero. So a negative tie goes toward +∞ when `right = 0` (only the
//! high multiply rounds: `requantize(-3, M = 1/2) = -1`) and away from zero when the high multiply
//! is exact and `right > 0` (`requantize(-6, M = 1/4) = -2`). Two roundings in a row: the result is within
//! `1/2 + 2^-(right+1)` of `acc * m * 2^(shift-31)` (`1/2` when `right = 0`).
//! `acc * 2^left` wraps on overflow, as the C++ `x * (1 << left_shift)` does on every
//! two's-complement target (it is undefined behaviour in C++; with `M < 1`, `left = 0` anyway).
//! Shifts outside `-31..=30` are out of contract ([`Requant::validate`] rejects them);
//! [`requantize`] clamps them into that range instead of panicking.
//!
//! ## Worked example
//!
//! `M = 0.0025`: `frexp` gives `q = 0.64, e = -8`; `0.64 * 2^31 = 1374389534.72` rounds to
//! `m = 1374389535`, `shift = -8`. For `acc = -1000` (exact `-2.5`):
//! `ab = -1000 * 1374389535 = -1374389535000 = -(640 * 2^31 + 280)`;
//! `(ab + 1 - 2^30) / 2^31 = -640.50000013` truncates to `-640`. Then `RoundingDivideByPOT(-640, 8)`:
//! `mask = 255`, `remainder = -640 & 255 = 128`, `threshold = 127 + 1 = 128`, `-640 >> 8 = -3`,
//! `128 > 128` is false: the result is `-3` (the tie `-2.5` goes away from zero). For `acc = 1000`:
//! `640`, then `remainder = 128 > threshold = 127`, so `2 + 1 = 3`.
//!
//! ```
//! use tinyvae::{quantize_multiplier, requantize, Requant};
//! let rq = quantize_multiplier(0.0025).unwrap();
//! assert_eq!(rq, Requant::new(1_374_389_535, -8));
//! assert_eq!(requantize(-1000, rq), -3);
//! assert_eq!(requantize(1000, rq), 3);
//! ```
//!
//! # Where TFLite gets `M`
//!
//! The real multiplier is computed on the host from the f32 scales; TFLite's `Prepare` uses
//! `f64(s_in) * f64(s_w[c]) / f64(s_out)` for per-channel weights ([`per_channel_multiplier`]) but
//! `f64(s_in * s_w) / f64(s_out)` (the product in f32) for a per-tensor fully connected layer
//! ([`per_tensor_multiplier`]). The two can differ in the last bits of `M`, and rarely in `m`.

use crate::Error;

/// Affine int8 quantization parameters: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QParams {
    /// Size of one quantization step; finite and `> 0`.
    pub scale: f32,
    /// The int8 value that represents 0.0; in `-128..=127`.
    pub zero_point: i32,
}

impl QParams {
    /// Parameters with the given scale and zero point (not validated; see [`QParams::validate`]).
    pub const fn new(scale: f32, zero_point: i32) -> Self {
        Self { scale, zero_point }
    }

    /// Checks that the scale is finite and `> 0` and the zero point is in `-128..=127`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] otherwise.
    pub fn validate(self) -> Result<(), Error> {
        if self.scale.is_finite() && self.scale > 0.0 && (-128..=127).contains(&self.zero_point) {
            Ok(())
        } else {
            Err(Error::InvalidParameter)
        }
    }

    /// TFLite's asymmetric int8 parameters for values in `[min, max]` (see the module doc):
    /// the range is widened to contain 0, the scale is `(rmax - rmin) / 255` and the zero point is
    /// nudged to the nearest integer in `-128..=127`.
    ///
    /// ```
    /// use tinyvae::QParams;
    /// let qp = QParams::from_range(-1.0, 3.0).unwrap();
    /// assert_eq!(qp.scale, (4.0f64 / 255.0) as f32);
    /// assert_eq!(qp.zero_point, -64); // -128 + 1 / scale = -64.25, rounded
    /// assert_eq!(QParams::from_range(0.5, 2.0).unwrap().zero_point, -128); // widened to [0, 2]
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `min` or `max` is not finite, `min > max`, the widened range
    /// is the single point 0, or the scale is not a positive normal-or-subnormal f32.
    pub fn from_range(min: f32, max: f32) -> Result<QParams, Error> {
        if !(min.is_finite() && max.is_finite()) || min > max {
            return Err(Error::InvalidParameter);
        }
        let rmin = f64::from(if min < 0.0 { min } else { 0.0 });
        let rmax = f64::from(if max > 0.0 { max } else { 0.0 });
        if rmin == rmax {
            return Err(Error::InvalidParameter);
        }
        let (qmin, qmax) = (-128.0f64, 127.0f64);
        let scale = (rmax - rmin) / (qmax - qmin);
        let zp_from_min = qmin - rmin / scale;
        let zp_from_max = qmax - rmax / scale;
        let err_from_min = libm::fabs(qmin) + libm::fabs(rmin / scale);
        let err_from_max = libm::fabs(qmax) + libm::fabs(rmax / scale);
        let zp = if err_from_min < err_from_max {
            zp_from_min
        } else {
            zp_from_max
        };
        let zero_point = if zp < qmin {
            -128
        } else if zp > qmax {
            127
        } else {
            // In [-128, 127]: the conversion is exact.
            libm::round(zp) as i32
        };
        let qp = QParams::new(scale as f32, zero_point);
        qp.validate()?;
        Ok(qp)
    }
}

/// `saturate_i8(round_half_away_from_zero(x / qp.scale) + qp.zero_point)`; NaN maps to the zero
/// point, ±inf saturate to 127 / -128.
///
/// ```
/// use tinyvae::{quantize, QParams};
/// let qp = QParams::new(0.5, -10);
/// assert_eq!(quantize(1.25, qp), -7); // 2.5 rounds away from zero to 3
/// assert_eq!(quantize(-1.25, qp), -13);
/// assert_eq!(quantize(1e9, qp), 127);
/// assert_eq!(quantize(f32::NAN, qp), -10);
/// ```
#[inline]
pub fn quantize(x: f32, qp: QParams) -> i8 {
    // `as i32` saturates and maps NaN to 0.
    let r = libm::roundf(x / qp.scale) as i32;
    saturate_i8(r.saturating_add(qp.zero_point))
}

/// `qp.scale * (q - qp.zero_point)` in f32 (one rounding; see the module doc).
#[inline]
pub fn dequantize(q: i8, qp: QParams) -> f32 {
    qp.scale * i32::from(q).wrapping_sub(qp.zero_point) as f32
}

/// [`quantize`] element-wise: `q[i] = quantize(x[i], qp)`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `q.len() != x.len()` (nothing is written then).
pub fn quantize_slice(x: &[f32], qp: QParams, q: &mut [i8]) -> Result<(), Error> {
    check_len(x.len(), q.len())?;
    quantize_into(x, qp, q);
    Ok(())
}

/// [`dequantize`] element-wise: `x[i] = dequantize(q[i], qp)`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `x.len() != q.len()` (nothing is written then).
pub fn dequantize_slice(q: &[i8], qp: QParams, x: &mut [f32]) -> Result<(), Error> {
    check_len(q.len(), x.len())?;
    dequantize_into(q, qp, x);
    Ok(())
}

/// Infallible [`quantize_slice`] for equal lengths (the shortest length wins otherwise).
#[inline]
pub(crate) fn quantize_into(x: &[f32], qp: QParams, q: &mut [i8]) {
    // The same bits in integer arithmetic (`quant_fast.rs`).
    crate::quant_fast::quantize_into(x, qp, q);
}

/// Infallible [`dequantize_slice`] for equal lengths (the shortest length wins otherwise).
#[inline]
pub(crate) fn dequantize_into(q: &[i8], qp: QParams, x: &mut [f32]) {
    // The same bits in integer arithmetic (`quant_fast.rs`).
    crate::quant_fast::dequantize_into(q, qp, x);
}

fn check_len(expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { expected, found })
    }
}

/// A requantization multiplier `multiplier * 2^(shift - 31)` (TFLite's `quantized_multiplier` and
/// `shift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Requant {
    /// Q31 mantissa in `[2^30, 2^31)`, or 0 for the zero multiplier.
    pub multiplier: i32,
    /// Power-of-two exponent in `-31..=30`; positive is a left shift.
    pub shift: i32,
}

impl Requant {
    /// The zero multiplier: [`requantize`] maps everything to 0.
    pub const ZERO: Requant = Requant::new(0, 0);

    /// A multiplier from its parts (not validated; see [`Requant::validate`]).
    pub const fn new(multiplier: i32, shift: i32) -> Self {
        Self { multiplier, shift }
    }

    /// Checks `multiplier == 0 || multiplier >= 2^30` and `shift in -31..=30`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] otherwise.
    pub fn validate(self) -> Result<(), Error> {
        let m_ok = self.multiplier == 0 || self.multiplier >= 1 << 30;
        if m_ok && (-31..=30).contains(&self.shift) {
            Ok(())
        } else {
            Err(Error::InvalidParameter)
        }
    }

    /// The real multiplier `multiplier * 2^(shift - 31)` (exact in f64).
    pub fn to_f64(self) -> f64 {
        libm::ldexp(f64::from(self.multiplier), self.shift - 31)
    }
}

/// TFLite's `QuantizeMultiplier`: `real ≈ multiplier * 2^(shift - 31)` with a Q31 multiplier in
/// `[2^30, 2^31)` (see the module doc). `real < 2^-32` (after rounding) gives [`Requant::ZERO`].
///
/// ```
/// use tinyvae::{quantize_multiplier, Requant};
/// assert_eq!(quantize_multiplier(0.1).unwrap(), Requant::new(1_717_986_918, -3));
/// assert_eq!(quantize_multiplier(1.0).unwrap(), Requant::new(1 << 30, 1));
/// // the mantissa rounds up to 2^31: halved, shift + 1
/// assert_eq!(quantize_multiplier(1.0 - 1e-12).unwrap(), Requant::new(1 << 30, 1));
/// assert_eq!(quantize_multiplier(0.0).unwrap(), Requant::ZERO);
/// assert_eq!(quantize_multiplier(1e-10).unwrap(), Requant::ZERO);
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if `real` is negative, NaN or infinite, or `real >= 2^30`
/// (the shift would exceed 30, where TFLite's double-rounding path is undefined).
pub fn quantize_multiplier(real: f64) -> Result<Requant, Error> {
    if !real.is_finite() || real < 0.0 {
        return Err(Error::InvalidParameter);
    }
    if real == 0.0 {
        return Ok(Requant::ZERO);
    }
    let (q, mut shift) = libm::frexp(real);
    // q in [0.5, 1): q * 2^31 is exact and its rounding is in [2^30, 2^31].
    let mut q_fixed = libm::round(q * 2_147_483_648.0) as i64;
    if q_fixed == 1 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Ok(Requant::ZERO);
    }
    if shift > 30 {
        return Err(Error::InvalidParameter);
    }
    let multiplier = i32::try_from(q_fixed).map_err(|_| Error::InvalidParameter)?;
    Ok(Requant { multiplier, shift })
}

/// `f64(s_in) * f64(s_w) / f64(s_out)`: the real multiplier TFLite uses with per-channel weights.
pub fn per_channel_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f64 {
    f64::from(input_scale) * f64::from(weight_scale) / f64::from(output_scale)
}

/// `f64(s_in * s_w) / f64(s_out)` (the product in f32): the real multiplier TFLite uses for a
/// fully connected layer with per-tensor weights.
pub fn per_tensor_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f64 {
    f64::from(input_scale * weight_scale) / f64::from(output_scale)
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding): `≈ acc * multiplier * 2^(shift-31)`,
/// bit for bit (see the module doc for the arithmetic and its rounding).
///
/// Never panics: `acc * 2^left` wraps, shifts outside `-31..=30` are clamped into it.
#[inline]
pub fn requantize(acc: i32, rq: Requant) -> i32 {
    let shift = rq.shift.clamp(-31, 30);
    let left = shift.max(0);
    let right = (-shift).max(0);
    let x = acc.wrapping_mul(1 << left);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x, rq.multiplier),
        right,
    )
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `a * b / 2^31` rounded to nearest, ties toward
/// +∞; `i32::MIN * i32::MIN` saturates to `i32::MAX`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // |ab + nudge| / 2^31 < 2^31 except in the case handled above.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away from zero.
/// `exponent` is clamped to `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = exponent.clamp(0, 31);
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// Saturates an i32 to `-128..=127`.
#[inline]
pub fn saturate_i8(x: i32) -> i8 {
    // In range after the clamp: the cast is exact.
    x.clamp(-128, 127) as i8
}
