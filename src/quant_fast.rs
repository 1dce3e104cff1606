//! [`quantize`] and [`dequantize`] of whole slices in integer arithmetic, bit for bit: on the
//! cores without an FPU (Cortex-M0/M0+/M3) every f32 operation is a library call, and the
//! division, `roundf`, the conversions and the product of these two ops cost hundreds of
//! instructions per element. Here each element costs a few integer multiplies instead, and the
//! result is the same i8 (quantize) or the same f32 bits (dequantize) as the f32 formula, for
//! every input: values where the integer path does not apply (NaN, ±inf, subnormal `x`, a
//! product that overflows) take the f32 formula itself.
//!
//! # Quantize: `q = saturate_i8(roundf(fl(x / s)) + zp)`
//!
//! Applies for a normal `s > 0` and `zp in -128..=127` (validated [`QParams`]); `k =
//! roundf(fl(y))` with `y = |x| / s`, negated for a negative `x` (the division rounds to
//! nearest even, and `roundf` rounds half away from zero: both are odd functions). With `x = mx
//! 2^(E - 150)` and `s = ms 2^(Es - 150)` (`mx, ms in [2^23, 2^24)`, biased exponents `E`, `Es`),
//! `y = (mx / ms) 2^d`, `d = E - Es`, so `y in [2^(d-1), 2^(d+1))`:
//!
//! - `d < -2`: `y < 1/4`, so `fl(y) <= 1/4` and `k = 0`;
//! - `d > 9`: `y >= 512`, so `k >= 512` and `k + zp > 127`: the result saturates (`k = 1024`
//!   stands for it);
//! - otherwise `k` counts the half-integers `c_j = j + 1/2` (`j >= 0`) with `fl(y) >= c_j`. Every
//!   `c_j < 2^22` has an even 24-bit significand, so a tie rounds to it, and `fl(y) >= c_j` iff
//!   `y >= t_j = c_j - δ_j` with `δ_j` half the f32 spacing just below `c_j`: `2^(e-24)` for
//!   `j >= 1` (`e = floor(log2 j)`, the binade of `c_j`), `2^-26` for `c_0 = 1/2`. In integers:
//!   `y >= t_j` iff `mx 2^(d+24-e) >= m_j ms` with `m_j = (2j+1) 2^(23-e) - 1` (`j >= 1`), and
//!   `mx 2^(d+26) >= (2^25 - 1) ms` for `j = 0`; both sides fit in u64 (`< 2^60`).
//!   The estimate `k0 = floor(mx inv / 2^(47-d) + 1/2)` with `inv = floor(2^47 / ms)` (one
//!   division per slice) is `floor(y + 1/2)` or one less (its error is below `2^(d-23) <= 2^-14`),
//!   and `k`, which is `floor(y + 1/2)` or one more, is `k0` plus the first one or two of the
//!   tests `y >= t_k0`, `y >= t_(k0+1)`.
//!
//! # Dequantize: `fl(s (q - zp))`
//!
//! With `zp in -128..=127`, `|q - zp| = a <= 255`; for a normal `s > 0` the product `P = ms a`
//! is exact in u32. It is rounded to 24 bits, to nearest even, by hand; the exponent is `Es`
//! plus the number of bits dropped, and a result that would overflow (`>= 2^128`) takes the f32
//! product (which gives the infinity). `a = 0` gives `+0.0`, as the f32 product does.
//!
//! `tests/quant_fast.rs` compares both with the f32 formulas on every int8 value, on millions of
//! random and boundary values (each `t_j` and its neighbours), and on the special values.

use crate::quant::{dequantize, quantize, saturate_i8};
use crate::QParams;

/// The constants of the integer path for one [`QParams`]: `None` when it does not apply.
#[derive(Clone, Copy)]
struct Fast {
    /// Biased exponent of the scale.
    es: i32,
    /// The scale's significand, `[2^23, 2^24)`.
    ms: u32,
    /// `floor(2^47 / ms)`.
    inv: u64,
    zp: i32,
}

impl Fast {
    fn new(qp: QParams) -> Option<Self> {
        let s = qp.scale;
        if !(s.is_normal() && s > 0.0) || !(-128..=127).contains(&qp.zero_point) {
            return None;
        }
        let bits = s.to_bits();
        let ms = (bits & 0x7F_FFFF) | 0x80_0000;
        Some(Self {
            es: ((bits >> 23) & 0xFF) as i32,
            ms,
            inv: (1u64 << 47) / u64::from(ms),
            zp: qp.zero_point,
        })
    }

    /// Whether `y = mx 2^d / ms >= t_j` (module doc), for `-2 <= d <= 9`, `j <= 1026`.
    #[inline(always)]
    fn at_least(&self, mx: u32, d: i32, j: u32) -> bool {
        let ms = u64::from(self.ms);
        if j == 0 {
            return u64::from(mx).wrapping_shl((d + 26) as u32) >= ((1u64 << 25) - 1) * ms;
        }
        let e = 31 - j.leading_zeros();
        let m = ((2 * j + 1) << (23 - e)) - 1;
        u64::from(mx).wrapping_shl((d + 24) as u32 - e) >= u64::from(m) * ms
    }

    /// `quantize(x, qp)`.
    #[inline(always)]
    fn quantize(&self, x: f32, qp: QParams) -> i8 {
        let bits = x.to_bits();
        let e = ((bits >> 23) & 0xFF) as i32;
        let frac = bits & 0x7F_FFFF;
        if e == 0xFF || (e == 0 && frac != 0) {
            return quantize(x, qp);
        }
        let d = e - self.es;
        let k = if e == 0 || d < -2 {
            0
        } else if d > 9 {
            1024
        } else {
            let mx = frac | 0x80_0000;
            let half = 1u64 << (46 - d) as u32;
            let mut k = ((u64::from(mx) * self.inv + half) >> (47 - d) as u32) as u32;
            if self.at_least(mx, d, k) {
                k += 1;
                if self.at_least(mx, d, k) {
                    k += 1;
                }
            }
            k as i32
        };
        let k = if bits >> 31 != 0 { -k } else { k };
        saturate_i8(k + self.zp)
    }

    /// `dequantize(q, qp)`.
    #[inline(always)]
    fn dequantize(&self, q: i8, qp: QParams) -> f32 {
        let n = i32::from(q) - self.zp;
        let a = n.unsigned_abs();
        if a == 0 {
            return 0.0;
        }
        // < 2^24 * 2^8: exact.
        let p = self.ms * a;
        // Bits to drop: the product has 24..=32 significant bits.
        let r = 8 - p.leading_zeros();
        let mut m = p >> r;
        if r > 0 {
            let rem = p & ((1 << r) - 1);
            let half = 1 << (r - 1);
            if rem > half || (rem == half && m & 1 == 1) {
                m += 1;
            }
        }
        let mut exp = self.es + r as i32;
        if m == 1 << 24 {
            m >>= 1;
            exp += 1;
        }
        if exp >= 0xFF {
            return dequantize(q, qp);
        }
        let sign = if n < 0 { 1u32 << 31 } else { 0 };
        f32::from_bits(sign | ((exp as u32) << 23) | (m & 0x7F_FFFF))
    }
}

/// `q[i] = quantize(x[i], qp)` for the common length.
pub(crate) fn quantize_into(x: &[f32], qp: QParams, q: &mut [i8]) {
    match Fast::new(qp) {
        Some(f) => q
            .iter_mut()
            .zip(x)
            .for_each(|(q, &x)| *q = f.quantize(x, qp)),
        None => q.iter_mut().zip(x).for_each(|(q, &x)| *q = quantize(x, qp)),
    }
}

/// `x[i] = dequantize(q[i], qp)` for the common length.
pub(crate) fn dequantize_into(q: &[i8], qp: QParams, x: &mut [f32]) {
    match Fast::new(qp) {
        Some(f) => x
            .iter_mut()
            .zip(q)
            .for_each(|(x, &q)| *x = f.dequantize(q, qp)),
        None => x
            .iter_mut()
            .zip(q)
            .for_each(|(x, &q)| *x = dequantize(q, qp)),
    }
}
