//! The slice quantize/dequantize (integer arithmetic, `src/quant_fast.rs`) against the f32
//! formulas element by element: every int8 value, random values, each rounding threshold of
//! `fl(x / s)` and its neighbours, special values, and scales across the whole exponent range.

use tinyvae::{dequantize, dequantize_slice, quantize, quantize_slice, QParams};

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

/// Scales: typical ones, powers of two, extremes of the normal range, random bit patterns.
fn scales(rng: &mut Rng) -> Vec<f32> {
    let mut s = vec![
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
    for _ in 0..200 {
        let e = 1 + (rng.next() % 254) as u32;
        let m = (rng.next() >> 40) as u32 & 0x7F_FFFF;
        s.push(f32::from_bits((e << 23) | m));
    }
    s
}

fn check_quantize(xs: &[f32], qp: QParams) {
    let mut q = vec![0i8; xs.len()];
    quantize_slice(xs, qp, &mut q).unwrap();
    for (&x, &got) in xs.iter().zip(&q) {
        let want = quantize(x, qp);
        assert_eq!(
            got,
            want,
            "quantize({x:e} = {:08x}, scale {:e} = {:08x}, zp {})",
            x.to_bits(),
            qp.scale,
            qp.scale.to_bits(),
            qp.zero_point
        );
    }
}

/// Each threshold `fl(x / s) >= j + 1/2` in `x`: the x found by bisection on the bits where
/// `roundf(x / s)` steps, and its neighbours; plus random values around the grid.
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
    for s in scales(&mut rng) {
        for zp in [-128, -127, -1, 0, 1, 5, 126, 127] {
            let qp = QParams::new(s, zp);
            let mut xs: Vec<f32> = special.to_vec();
            // Around every half-integer multiple of s that matters (and a little beyond).
            for j in 0..=600i32 {
                let c = (j as f32 + 0.5) * s;
                if !c.is_finite() {
                    continue;
                }
                for sign in [1.0f32, -1.0] {
                    let b = (c * sign).to_bits();
                    for dlt in -3i64..=3 {
                        let v = f32::from_bits((i64::from(b) + dlt) as u32);
                        xs.push(v);
                    }
                }
            }
            // Random values of every magnitude near the scale.
            for _ in 0..2000 {
                let r = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                let m = [0.3f32, 1.0, 10.0, 200.0, 700.0, 5000.0][(rng.next() % 6) as usize];
                xs.push((r - 0.5) * 2.0 * m * s);
                xs.push(f32::from_bits(rng.next() as u32));
            }
            check_quantize(&xs, qp);
        }
    }
}

/// Exact thresholds by bisection: for scales with many significand bits, the last x below and
/// the first x at each step of `quantize`, found on the f32 formula itself.
#[test]
fn quantize_matches_at_exact_steps() {
    let mut rng = Rng(7);
    for s in scales(&mut rng).into_iter().take(60) {
        let qp = QParams::new(s, 0);
        let mut xs = Vec::new();
        for j in 0..300i32 {
            // Bisect on the positive bit patterns (monotone in the value).
            let target = (j + 1).min(127) as i8;
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
                xs.push(f32::from_bits(b));
                xs.push(-f32::from_bits(b));
            }
        }
        check_quantize(&xs, qp);
    }
}

#[test]
fn dequantize_matches_the_f32_formula() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let all: Vec<i8> = (-128..=127).collect();
    for s in scales(&mut rng) {
        for zp in [-128, -100, -1, 0, 1, 64, 127] {
            let qp = QParams::new(s, zp);
            let mut got = vec![0f32; all.len()];
            dequantize_slice(&all, qp, &mut got).unwrap();
            for (&q, &g) in all.iter().zip(&got) {
                let want = dequantize(q, qp);
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "dequantize({q}, scale {s:e} = {:08x}, zp {zp}): {g:e} vs {want:e}",
                    s.to_bits()
                );
            }
        }
    }
}

/// Parameters outside the integer path (zero, subnormal, negative, infinite or NaN scale, a
/// zero point outside -128..=127) still give the f32 formula's values.
#[test]
fn unusual_parameters_take_the_f32_formula() {
    let xs = [0.0f32, 1.0, -1.0, 0.4, 200.0, -3.5, f32::NAN];
    let qs: Vec<i8> = (-128..=127).step_by(7).collect();
    for s in [
        0.0f32,
        f32::from_bits(3),
        -1.0,
        f32::INFINITY,
        f32::NAN,
        1.0,
    ] {
        for zp in [-300, -128, 0, 127, 200] {
            let qp = QParams::new(s, zp);
            let mut q = vec![0i8; xs.len()];
            quantize_slice(&xs, qp, &mut q).unwrap();
            for (&x, &g) in xs.iter().zip(&q) {
                assert_eq!(g, quantize(x, qp));
            }
            let mut f = vec![0f32; qs.len()];
            dequantize_slice(&qs, qp, &mut f).unwrap();
            for (&v, &g) in qs.iter().zip(&f) {
                assert_eq!(g.to_bits(), dequantize(v, qp).to_bits());
            }
        }
    }
}
