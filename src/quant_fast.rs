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
//!   The estimate `k0 = floor(y' + 1/2)` with `y' = floor(mx / 2^9) inv 2^(d-31)` and `inv =
//!   floor(2^40 / ms)` (one division per slice; the product fits in u32) is `floor(y + 1/2)` or
//!   one less (`y' <= y`, and both truncations together lose less than `2^-13 y < 2^-3`), and
//!   `k`, which is `floor(y + 1/2)` or one more, is `k0` plus the first one or two of the tests
//!   `y >= t_k0`, `y >= t_(k0+1)`. On Armv6-M the u64 products are four 16 x 16 `MULS` and the
//!   bit lengths come from a table (no `CLZ`).
//!
//! # Dequantize: `fl(s (q - zp))`
//!
//! With `zp in -128..=127`, `|q - zp| = a <= 255`; for a normal `s > 0` the product `P = ms a`
//! is exact in u32. It is rounded to 24 bits, to nearest even, by hand; the exponent is `Es`
//! plus the number of bits dropped, and a result that would overflow (`>= 2^128`) takes the f32
//! product (which gives the infinity). `a = 0` gives `+0.0`, as the f32 product does.
//!
//! The slices take this path only on Arm targets without an FPU ([`INTEGER`]); the unit tests
//! below run it on the host against the f32 formulas: every int8 value, random values, each
//! rounding threshold and its neighbours, the special values, scales over the whole exponent
//! range.

use crate::quant::{dequantize, quantize, saturate_i8};
use crate::QParams;

/// The constants of the integer path for one [`QParams`]: `None` when it does not apply.
#[derive(Clone, Copy)]
struct Fast {
    /// Biased exponent of the scale.
    es: i32,
    /// The scale's significand, `[2^23, 2^24)`.
    ms: u32,
    /// `floor(2^40 / ms)`, in `(2^16, 2^17]`.
    inv: u32,
    zp: i32,
}

impl Fast {
    fn new(qp: QParams) -> Option<Self> {
        let s = qp.scale;
        let integer = s.is_normal() && s > 0.0 && (-128..=127).contains(&qp.zero_point);
        if !integer {
            return None;
        }
        let bits = s.to_bits();
        let ms = (bits & 0x7F_FFFF) | 0x80_0000;
        Some(Self {
            es: ((bits >> 23) & 0xFF) as i32,
            ms,
            inv: ((1u64 << 40) / u64::from(ms)) as u32,
            zp: qp.zero_point,
        })
    }

    /// Whether `y = mx 2^d / ms >= t_j` (module doc), for `-2 <= d <= 9`, `j <= 1026`.
    #[inline(always)]
    fn at_least(&self, mx: u32, d: i32, j: u32) -> bool {
        let (shift, m) = if j == 0 {
            ((d + 26) as u32, (1 << 25) - 1)
        } else {
            let e = bit_length(j) - 1;
            ((d + 24) as u32 - e, ((2 * j + 1) << (23 - e)) - 1)
        };
        // `mx 2^shift` (shift in 12..=35) as (high, low) words.
        let lhs = if shift >= 32 {
            (mx << (shift - 32), 0)
        } else {
            (mx >> (32 - shift), mx << shift)
        };
        lhs >= mul_wide(m, self.ms)
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
            // floor(y' + 1/2) = floor((floor(4 y') + 2) / 4) for y' = (mx >> 9) inv 2^(d - 31).
            let t = ((mx >> 9) * self.inv) >> (29 - d) as u32;
            let mut k = (t + 2) >> 2;
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
        let r = bit_length(p >> 24);
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

/// The number of significant bits of `v < 2^11` (0 for 0): `32 - v.leading_zeros()`, from a
/// table of 16 where there is no `CLZ` (Armv6-M, where `leading_zeros` is a library call).
#[inline(always)]
fn bit_length(v: u32) -> u32 {
    if NO_CLZ {
        bit_length_table(v)
    } else {
        32 - v.leading_zeros()
    }
}

/// [`bit_length`] from a table of 16, for `v < 2^12`.
#[inline(always)]
fn bit_length_table(v: u32) -> u32 {
    const LEN: [u8; 16] = [0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4];
    let len = |v: u32| u32::from(LEN.get(v as usize & 15).copied().unwrap_or(0));
    let (v, base) = if v >= 256 { (v >> 8, 8) } else { (v, 0) };
    if v >= 16 {
        base + 4 + len(v >> 4)
    } else {
        base + len(v)
    }
}

/// Armv6-M (no 32-bit atomics, the only Arm profile without them): no `CLZ`, no 32 x 32 -> 64
/// multiply.
const NO_CLZ: bool = cfg!(all(target_arch = "arm", not(target_has_atomic = "32")));

/// `a b` as (high, low) words.
#[inline(always)]
fn mul_wide(a: u32, b: u32) -> (u32, u32) {
    if NO_CLZ {
        mul_wide_halves(a, b)
    } else {
        let p = u64::from(a) * u64::from(b);
        ((p >> 32) as u32, p as u32)
    }
}

/// [`mul_wide`] from four 16 x 16 products, for `a < 2^26` (so that the middle sum cannot
/// overflow twice), as Armv6-M does it (the u64 product is a 64 x 64 library call there).
#[inline(always)]
fn mul_wide_halves(a: u32, b: u32) -> (u32, u32) {
    let (al, ah) = (a & 0xFFFF, a >> 16);
    let (bl, bh) = (b & 0xFFFF, b >> 16);
    let (ll, hh) = (al * bl, ah * bh);
    let (mid, c1) = (al * bh).overflowing_add(ah * bl);
    let (lo, c2) = ll.overflowing_add(mid << 16);
    let hi = hh + (mid >> 16) + (u32::from(c1) << 16) + u32::from(c2);
    (hi, lo)
}

/// Whether the slices take the integer path: on Arm targets without a hardware FPU (soft-float
/// ABI: Cortex-M0/M0+/M3, and M4/M33 built without FPU). With an FPU (`eabihf`: M4F/M7/M33
/// here) and on the host the f32 formula is cheaper (measured: the M4's whole score went from
/// 109,095 to 137,402 instructions on the integer path). Both give the same bits.
const INTEGER: bool = cfg!(all(target_arch = "arm", not(target_abi = "eabihf")));

/// `q[i] = quantize(x[i], qp)` for the common length.
#[inline]
pub(crate) fn quantize_into(x: &[f32], qp: QParams, q: &mut [i8]) {
    match if INTEGER { Fast::new(qp) } else { None } {
        Some(f) => q
            .iter_mut()
            .zip(x)
            .for_each(|(q, &x)| *q = f.quantize(x, qp)),
        None => q.iter_mut().zip(x).for_each(|(q, &x)| *q = quantize(x, qp)),
    }
}

/// `x[i] = dequantize(q[i], qp)` for the common length.
#[inline]
pub(crate) fn dequantize_into(q: &[i8], qp: QParams, x: &mut [f32]) {
    match if INTEGER { Fast::new(qp) } else { None } {
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

#[cfg(test)]
mod tests {
    use super::{bit_length_table, mul_wide_halves, Fast};
    use crate::quant::{dequantize, quantize};
    use crate::QParams;

    /// xorshift64*.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    const FIXED_SCALES: [f32; 16] = [
        1.0,
        0.5,
        0.25,
        3.0,
        0.1,
        0.007_843_138,
        0.031_25,
        1.0e-3,
        12.345,
        f32::MIN_POSITIVE,
        f32::MAX,
        1.0e30,
        1.0e-30,
        f32::from_bits(0x3F7F_FFFF),
        f32::from_bits(0x3F80_0001),
        f32::from_bits(0x3FFF_FFFF),
    ];

    /// Scale `i`: the fixed ones, then random normal bit patterns.
    fn scale(rng: &mut Rng, i: usize) -> f32 {
        match FIXED_SCALES.get(i) {
            Some(&s) => s,
            None => {
                let e = 1 + (rng.next() % 254) as u32;
                let m = (rng.next() >> 40) as u32 & 0x7F_FFFF;
                f32::from_bits((e << 23) | m)
            }
        }
    }

    fn check_q(f: &Fast, x: f32, qp: QParams) {
        assert_eq!(
            f.quantize(x, qp),
            quantize(x, qp),
            "quantize({x:e} = {:08x}, scale {:e} = {:08x}, zp {})",
            x.to_bits(),
            qp.scale,
            qp.scale.to_bits(),
            qp.zero_point
        );
    }

    /// Around every half-integer multiple of the scale (the rounding steps of `fl(x / s)`),
    /// random values of every magnitude near the scale, random bit patterns, special values.
    #[test]
    fn quantize_matches_the_f32_formula() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let special = [
            0.0,
            -0.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x8000_0001),
            f32::from_bits(0x007F_FFFF),
            f32::MAX,
            f32::MIN,
        ];
        for i in 0..216 {
            let s = scale(&mut rng, i);
            for zp in [-128, -127, -1, 0, 1, 5, 126, 127] {
                let qp = QParams::new(s, zp);
                let f = Fast::new(qp);
                assert!(f.is_some(), "scale {s:e} zp {zp}: no integer path");
                let Some(f) = f else { return };
                for &x in &special {
                    check_q(&f, x, qp);
                }
                for j in 0..=600i32 {
                    let c = (j as f32 + 0.5) * s;
                    if !c.is_finite() {
                        continue;
                    }
                    for sign in [1.0f32, -1.0] {
                        let b = (c * sign).to_bits();
                        for dlt in -3i64..=3 {
                            check_q(&f, f32::from_bits((i64::from(b) + dlt) as u32), qp);
                        }
                    }
                }
                for _ in 0..2000 {
                    let r = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                    let m = [0.3f32, 1.0, 10.0, 200.0, 700.0, 5000.0]
                        .get((rng.next() % 6) as usize)
                        .copied()
                        .unwrap_or(1.0);
                    check_q(&f, (r - 0.5) * 2.0 * m * s, qp);
                    check_q(&f, f32::from_bits(rng.next() as u32), qp);
                }
            }
        }
    }

    /// The exact steps of the f32 formula, found by bisection on the bits of positive `x`
    /// (monotone in the value), and their neighbours, both signs.
    #[test]
    fn quantize_matches_at_exact_steps() {
        let mut rng = Rng(7);
        for i in 0..60 {
            let qp = QParams::new(scale(&mut rng, i), 0);
            let f = Fast::new(qp);
            assert!(f.is_some(), "no integer path");
            let Some(f) = f else { return };
            for j in 0..127i32 {
                let target = (j + 1) as i8;
                if quantize(f32::MAX, qp) < target {
                    break;
                }
                let (mut lo, mut hi) = (0u32, f32::MAX.to_bits());
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if quantize(f32::from_bits(mid), qp) >= target {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                for b in [lo.saturating_sub(1), lo, hi, hi + 1] {
                    check_q(&f, f32::from_bits(b), qp);
                    check_q(&f, -f32::from_bits(b), qp);
                }
            }
        }
    }

    /// Every int8 value, on every scale and several zero points.
    #[test]
    fn dequantize_matches_the_f32_formula() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for i in 0..216 {
            let s = scale(&mut rng, i);
            for zp in [-128, -100, -1, 0, 1, 64, 127] {
                let qp = QParams::new(s, zp);
                let f = Fast::new(qp);
                assert!(f.is_some(), "no integer path");
                let Some(f) = f else { return };
                for q in -128..=127i8 {
                    let (g, w) = (f.dequantize(q, qp), dequantize(q, qp));
                    assert_eq!(g.to_bits(), w.to_bits(), "{q}, scale {s:e}, zp {zp}");
                }
            }
        }
    }

    /// Parameters outside the integer path: zero, subnormal, negative, infinite or NaN scale, a
    /// zero point outside -128..=127.
    #[test]
    fn unusual_parameters_have_no_integer_path() {
        for s in [0.0f32, f32::from_bits(3), -1.0, f32::INFINITY, f32::NAN] {
            assert!(Fast::new(QParams::new(s, 0)).is_none(), "{s}");
        }
        for zp in [-129, 128, 300] {
            assert!(Fast::new(QParams::new(1.0, zp)).is_none(), "{zp}");
        }
    }

    /// The Armv6-M helpers against the native operations (the host runs the others).
    #[test]
    fn armv6m_helpers_are_exact() {
        for v in 0..4096u32 {
            assert_eq!(bit_length_table(v), 32 - v.leading_zeros(), "{v}");
        }
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut vals = [0u32; 512];
        let edges = [
            0u32,
            1,
            0xFFFF,
            0x1_0000,
            (1 << 24) - 1,
            1 << 23,
            (1 << 26) - 1,
        ];
        for (k, v) in vals.iter_mut().enumerate() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *v = edges.get(k).copied().unwrap_or((s >> 38) as u32);
        }
        for &a in &vals {
            for &b in &vals {
                let p = u64::from(a) * u64::from(b);
                assert_eq!(
                    mul_wide_halves(a, b),
                    ((p >> 32) as u32, p as u32),
                    "{a} {b}"
                );
            }
        }
    }
}
