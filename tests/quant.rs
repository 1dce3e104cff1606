//! Quantization arithmetic against wide-integer references written from the definitions.
//!
//! The references below use i128 and the *mathematical* characterisation of each gemmlowp
//! primitive (not a transcription of the same bit tricks), so an error in either shows up:
//! - `SaturatingRoundingDoublingHighMul(a, b)` = `floor((a*b + 2^30) / 2^31)` (round to nearest,
//!   ties toward +inf), except `i32::MIN * i32::MIN` -> `i32::MAX`;
//! - `RoundingDivideByPOT(x, e)` = `x / 2^e` rounded to nearest, ties away from zero;
//! - `MultiplyByQuantizedMultiplier(acc, m, shift)` = the second applied to the first at
//!   `acc * 2^max(shift,0)` (wrapped to i32 as C++ does on two's-complement hardware) and `m`,
//!   with exponent `max(-shift, 0)`.

use proptest::prelude::*;
use tinyvae::{
    dequantize, dequantize_slice, quantize, quantize_multiplier, quantize_slice, requantize,
    rounding_divide_by_pot, saturate_i8, saturating_rounding_doubling_high_mul, Error, QParams,
    Requant,
};

fn ref_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i128::from(a) * i128::from(b);
    let r = (ab + (1i128 << 30)).div_euclid(1i128 << 31);
    i32::try_from(r).expect("high mul fits i32 outside the saturating case")
}

fn ref_div_pot(x: i32, e: u32) -> i32 {
    if e == 0 {
        return x;
    }
    let d = 1i128 << e;
    let ax = i128::from(x).abs();
    let q = (ax + d / 2) / d; // |x| / 2^e rounded half up = half away from zero after the sign
    let r = if x < 0 { -q } else { q };
    i32::try_from(r).expect("fits")
}

fn ref_requantize(acc: i32, rq: Requant) -> i32 {
    let left = rq.shift.max(0) as u32;
    let right = (-rq.shift).max(0) as u32;
    let x = (i128::from(acc) << left) as i32; // wraps like the C++ int32 multiply
    ref_div_pot(ref_high_mul(x, rq.multiplier), right)
}

const EDGE_ACCS: [i32; 21] = [
    0,
    1,
    -1,
    2,
    -2,
    3,
    -3,
    127,
    -128,
    1000,
    -1000,
    1 << 15,
    -(1 << 15),
    (1 << 24) + 1,
    -(1 << 24) - 1,
    (1 << 30) - 1,
    -(1 << 30),
    i32::MAX,
    i32::MIN,
    i32::MAX - 1,
    i32::MIN + 1,
];

const EDGE_MULTS: [i32; 7] = [
    0,
    1 << 30,
    (1 << 30) + 1,
    1_374_389_535,
    1_717_986_918,
    i32::MAX - 1,
    i32::MAX,
];

#[test]
fn high_mul_edge_cases() {
    let cases: [(i32, i32, i32); 12] = [
        (i32::MIN, i32::MIN, i32::MAX), // the only saturating case
        (i32::MIN, i32::MAX, -i32::MAX),
        (i32::MAX, i32::MAX, i32::MAX - 1),
        (i32::MIN, 1, -1),
        (1, 1 << 30, 1),   // 0.5 -> 1
        (-1, 1 << 30, 0),  // -0.5 -> 0 (ties toward +inf)
        (3, 1 << 30, 2),   // 1.5 -> 2
        (-3, 1 << 30, -1), // -1.5 -> -1
        (-5, 1 << 30, -2), // -2.5 -> -2
        (-7, 1 << 29, -2), // -1.75 -> -2
        (0, i32::MIN, 0),
        (-1000, 1_374_389_535, -640),
    ];
    for (a, b, want) in cases {
        let got = saturating_rounding_doubling_high_mul(a, b);
        assert_eq!(got, want, "SRDHM({a}, {b}): got {got}, expected {want}");
        let r = ref_high_mul(a, b);
        assert_eq!(got, r, "SRDHM({a}, {b}): got {got}, reference {r}");
    }
}

#[test]
fn divide_by_pot_edge_cases() {
    let cases: [(i32, i32, i32); 14] = [
        (-6, 2, -2), // -1.5 -> -2 (away from zero)
        (6, 2, 2),   // 1.5 -> 2
        (-5, 1, -3), // -2.5 -> -3
        (5, 1, 3),
        (-2, 2, -1), // -0.5 -> -1
        (2, 2, 1),
        (-1, 2, 0), // -0.25 -> 0
        (-640, 8, -3),
        (640, 8, 3),
        (i32::MIN, 31, -1),
        (i32::MAX, 31, 1),
        (1 << 30, 31, 1), // 0.5 -> 1
        (-(1 << 30), 31, -1),
        (12345, 0, 12345),
    ];
    for (x, e, want) in cases {
        let got = rounding_divide_by_pot(x, e);
        assert_eq!(got, want, "RDBPOT({x}, {e}): got {got}, expected {want}");
        let r = ref_div_pot(x, e as u32);
        assert_eq!(got, r, "RDBPOT({x}, {e}): got {got}, reference {r}");
    }
}

#[test]
fn requantize_saturating_case() {
    // INT32_MIN * INT32_MIN saturates in the high multiply; with shift 0 that is the result.
    let rq = Requant::new(i32::MIN, 0);
    assert_eq!(requantize(i32::MIN, rq), i32::MAX);
    // ... and is then divided: 2^31 - 1 over 2^3, rounded.
    let rq = Requant::new(i32::MIN, -3);
    assert_eq!(requantize(i32::MIN, rq), 268_435_456);
    // Reached through the left shift too: (-2^30) * 2 is exactly i32::MIN.
    let rq = Requant::new(i32::MIN, 1);
    assert_eq!(requantize(-(1 << 30), rq), i32::MAX);
}

#[test]
fn requantize_all_shifts_edge_values() {
    let mut n = 0;
    for shift in -31..=30 {
        for &m in &EDGE_MULTS {
            for &acc in &EDGE_ACCS {
                let rq = Requant::new(m, shift);
                let got = requantize(acc, rq);
                let want = ref_requantize(acc, rq);
                assert_eq!(
                    got, want,
                    "requantize(acc={acc}, m={m}, shift={shift}): got {got}, expected {want}"
                );
                n += 1;
            }
        }
    }
    assert_eq!(n, 62 * EDGE_MULTS.len() * EDGE_ACCS.len());
}

#[test]
fn requantize_negative_ties() {
    // M = 1/2 (m = 2^30, shift = 0): only the high multiply rounds, and it sends ties toward +inf.
    let half = Requant::new(1 << 30, 0);
    for (acc, want) in [(1, 1), (-1, 0), (3, 2), (-3, -1), (5, 3), (-5, -2)] {
        assert_eq!(requantize(acc, half), want, "requantize({acc}, 1/2)");
    }
    // M = 2^-k, k >= 2 (m = 2^30, shift = 1 - k): the high multiply halves exactly and the
    // right shift sends ties away from zero. Odd multiples of 2^(k-1) are exact ties.
    for k in 2..=20 {
        let rq = Requant::new(1 << 30, 1 - k);
        assert_eq!(rq.to_f64(), 2f64.powi(-k));
        for j in [1i32, 3, 5, 7, 101] {
            let acc = j << (k - 1); // acc / 2^k = j / 2
            let want = (j + 1) / 2; // j/2 rounded away from zero
            assert_eq!(requantize(acc, rq), want, "acc={acc} k={k}");
            assert_eq!(requantize(-acc, rq), -want, "acc={} k={k}", -acc);
        }
    }
}

/// Checks `|result - acc * M'| <= 1/2 + 2^-(right+1)` (1/2 when right = 0) exactly in i128,
/// for accumulators whose left shift does not wrap.
fn check_error_bound(acc: i32, rq: Requant) {
    let left = rq.shift.max(0) as u32;
    let right = (-rq.shift).max(0) as u32;
    let shifted = i128::from(acc) << left;
    if i32::try_from(shifted).is_err() || rq.multiplier == i32::MIN {
        return;
    }
    let got = requantize(acc, rq);
    // Scaled by 2^(31 + right): exact = acc * m * 2^left.
    let exact = shifted * i128::from(rq.multiplier);
    let diff = (i128::from(got) << (31 + right)) - exact;
    let bound = if right == 0 {
        1i128 << 30
    } else {
        (1i128 << (30 + right)) + (1i128 << 30)
    };
    assert!(
        diff.abs() <= bound,
        "acc={acc} rq={rq:?}: got {got}, exact {} (error {} steps, bound {})",
        exact as f64 / 2f64.powi(31 + right as i32),
        diff as f64 / 2f64.powi(31 + right as i32),
        bound as f64 / 2f64.powi(31 + right as i32),
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(20_000)
    })]

    #[test]
    fn requantize_matches_reference(
        acc in any::<i32>(),
        m in (1i32 << 30)..=i32::MAX,
        shift in -31i32..=30,
    ) {
        let rq = Requant::new(m, shift);
        let got = requantize(acc, rq);
        let want = ref_requantize(acc, rq);
        prop_assert_eq!(got, want, "acc={} m={} shift={}", acc, m, shift);
        check_error_bound(acc, rq);
    }

    #[test]
    fn requantize_small_accumulators(
        acc in -(1i32 << 20)..(1i32 << 20),
        m in (1i32 << 30)..=i32::MAX,
        shift in -31i32..=10,
    ) {
        let rq = Requant::new(m, shift);
        prop_assert_eq!(requantize(acc, rq), ref_requantize(acc, rq));
        check_error_bound(acc, rq);
    }

    #[test]
    fn high_mul_matches_reference(a in any::<i32>(), b in any::<i32>()) {
        prop_assert_eq!(saturating_rounding_doubling_high_mul(a, b), ref_high_mul(a, b));
    }

    #[test]
    fn divide_by_pot_matches_reference(x in any::<i32>(), e in 0i32..=31) {
        prop_assert_eq!(rounding_divide_by_pot(x, e), ref_div_pot(x, e as u32));
    }

    #[test]
    fn quantize_multiplier_round_trips(mant in 1.0f64..2.0, exp in -35i32..=29) {
        let real = mant * 2f64.powi(exp);
        let rq = quantize_multiplier(real).expect("in range");
        if rq.multiplier == 0 {
            // Flushed: only below 2^-32 (after rounding of the mantissa).
            prop_assert!(real < 2f64.powi(-32), "real {} flushed to zero", real);
        } else {
            prop_assert!((1 << 30..=i32::MAX).contains(&rq.multiplier), "{:?}", rq);
            prop_assert!((-31..=30).contains(&rq.shift), "{:?}", rq);
            let approx = rq.to_f64();
            // Sterbenz: the difference of two values within a factor 2 is exact.
            let err = (approx - real).abs();
            prop_assert!(
                err <= real * 2f64.powi(-31),
                "real {} -> {:?} = {}: relative error {} > 2^-31", real, rq, approx, err / real
            );
        }
    }
}

#[test]
fn quantize_multiplier_known_values() {
    let p = |k: i32| 2f64.powi(k);
    let cases: [(f64, Requant); 14] = [
        (0.5, Requant::new(1 << 30, 0)),
        (1.0, Requant::new(1 << 30, 1)),
        (0.75, Requant::new(1_610_612_736, 0)),
        (0.1, Requant::new(1_717_986_918, -3)), // 0.8 * 2^31 = 1717986918.4
        (0.0025, Requant::new(1_374_389_535, -8)),
        (1.0 / 255.0, Requant::new(1_077_952_576, -7)),
        (1e-3 / 3.0, Requant::new(1_466_015_504, -11)),
        (p(-32), Requant::new(1 << 30, -31)), // shift -31 is kept
        (p(-33), Requant::ZERO),              // shift -32 is flushed
        (0.0, Requant::ZERO),
        (1.0 - p(-40), Requant::new(1 << 30, 1)), // carry: mantissa rounds to 2^31
        (0.5 - p(-34), Requant::new(1 << 30, 0)), // carry within [0.5, 1)
        (p(-32) * (1.0 - p(-40)), Requant::new(1 << 30, -31)), // carry rescues from the flush
        (0.5 + p(-32), Requant::new((1 << 30) + 1, 0)), // 2^30 + 0.5 rounds away from zero
    ];
    for (real, want) in cases {
        let got = quantize_multiplier(real);
        assert_eq!(
            got,
            Ok(want),
            "quantize_multiplier({real:e}): got {got:?}, expected {want:?}"
        );
    }
    assert_eq!(quantize_multiplier(-0.0), Ok(Requant::ZERO));
    assert_eq!(quantize_multiplier(p(29)), Ok(Requant::new(1 << 30, 30)));
    for bad in [-1e-3, f64::NAN, f64::INFINITY, p(30), p(40)] {
        let got = quantize_multiplier(bad);
        assert_eq!(
            got,
            Err(Error::InvalidParameter),
            "quantize_multiplier({bad})"
        );
    }
}

#[test]
fn requant_validate() {
    assert_eq!(Requant::ZERO.validate(), Ok(()));
    assert_eq!(Requant::new(1 << 30, -31).validate(), Ok(()));
    assert_eq!(Requant::new(i32::MAX, 30).validate(), Ok(()));
    for bad in [
        Requant::new((1 << 30) - 1, 0),
        Requant::new(-5, 0),
        Requant::new(1 << 30, 31),
        Requant::new(1 << 30, -32),
    ] {
        assert_eq!(bad.validate(), Err(Error::InvalidParameter), "{bad:?}");
    }
}

#[test]
fn quantize_rounds_half_away_and_saturates() {
    let qp = QParams::new(0.5, 3);
    let cases: [(f32, i8); 12] = [
        (0.0, 3),
        (-0.0, 3),
        (0.25, 4),   // 0.5 -> 1
        (-0.25, 2),  // -0.5 -> -1
        (0.75, 5),   // 1.5 -> 2
        (-0.75, 1),  // -1.5 -> -2
        (0.2, 3),    // 0.4 -> 0
        (62.0, 127), // 124 + 3
        (62.5, 127), // saturates
        (-65.5, -128),
        (f32::INFINITY, 127),
        (f32::NEG_INFINITY, -128),
    ];
    for (x, want) in cases {
        let got = quantize(x, qp);
        assert_eq!(
            got, want,
            "quantize({x}, {qp:?}): got {got}, expected {want}"
        );
    }
    assert_eq!(quantize(f32::NAN, qp), 3, "NaN maps to the zero point");
    assert_eq!(quantize(1e30, QParams::new(1e-30, -128)), 127);
}

#[test]
fn dequantize_equals_tflite_double_form() {
    // TFLite: static_cast<float>(double(scale) * (q - zp)); ours is the f32 product.
    let scales = [
        1.0f32,
        0.1,
        1.0 / 3.0,
        0.007_843_138,
        3.3e-7,
        1234.5678,
        1e-38,
    ];
    for &s in &scales {
        for zp in [-128, -1, 0, 5, 127] {
            let qp = QParams::new(s, zp);
            for q in i8::MIN..=i8::MAX {
                let got = dequantize(q, qp);
                let want = (f64::from(s) * f64::from(i32::from(q) - zp)) as f32;
                assert_eq!(got.to_bits(), want.to_bits(), "dequantize({q}, {qp:?})");
            }
        }
    }
}

#[test]
fn quantize_dequantize_round_trip() {
    let qp = QParams::new(0.037, -17);
    for q in i8::MIN..=i8::MAX {
        let x = dequantize(q, qp);
        assert_eq!(quantize(x, qp), q, "q={q} x={x}");
    }
}

#[test]
fn slices_check_lengths() {
    let qp = QParams::new(0.5, 0);
    let mut q = [0i8; 3];
    assert_eq!(
        quantize_slice(&[1.0, 2.0], qp, &mut q),
        Err(Error::ShapeMismatch {
            expected: 2,
            found: 3
        })
    );
    assert_eq!(q, [0; 3], "nothing written on error");
    quantize_slice(&[1.0, -2.0, 0.75], qp, &mut q).unwrap();
    assert_eq!(q, [2, -4, 2]);
    let mut x = [0.0f32; 2];
    assert_eq!(
        dequantize_slice(&q, qp, &mut x),
        Err(Error::ShapeMismatch {
            expected: 3,
            found: 2
        })
    );
    let mut x = [0.0f32; 3];
    dequantize_slice(&q, qp, &mut x).unwrap();
    assert_eq!(x, [1.0, -2.0, 1.0]);
}

#[test]
fn saturate_i8_edges() {
    let cases = [(0, 0), (127, 127), (128, 127), (-128, -128), (-129, -128)];
    for (x, want) in cases {
        assert_eq!(saturate_i8(x), want, "saturate_i8({x})");
    }
    assert_eq!(saturate_i8(i32::MAX), 127);
    assert_eq!(saturate_i8(i32::MIN), -128);
}

#[test]
fn from_range_known_values() {
    let cases: [(f32, f32, f64, i32); 6] = [
        (-1.0, 3.0, 4.0 / 255.0, -64),  // zp -64.25
        (-1.0, 1.0, 2.0 / 255.0, -1),   // zp -0.5 rounds away from zero
        (0.5, 2.0, 2.0 / 255.0, -128),  // widened to [0, 2]
        (-2.0, -0.5, 2.0 / 255.0, 127), // widened to [-2, 0]
        (0.0, 255.0, 1.0, -128),
        (-12.75, 0.0, 0.05, 127),
    ];
    for (min, max, scale, zp) in cases {
        let got = QParams::from_range(min, max).unwrap();
        let want = QParams::new(scale as f32, zp);
        assert_eq!(
            got, want,
            "from_range({min}, {max}): got {got:?}, expected {want:?}"
        );
    }
    for (min, max) in [
        (0.0, 0.0),
        (1.0, -1.0),
        (f32::NAN, 1.0),
        (-1.0, f32::INFINITY),
    ] {
        assert_eq!(
            QParams::from_range(min, max),
            Err(Error::InvalidParameter),
            "from_range({min}, {max})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn from_range_covers_the_range(a in -1e3f32..1e3, b in -1e3f32..1e3) {
        let (min, max) = if a <= b { (a, b) } else { (b, a) };
        prop_assume!(min < 0.0 || max > 0.0);
        let qp = QParams::from_range(min, max).unwrap();
        prop_assert_eq!(qp.validate(), Ok(()));
        let s = f64::from(qp.scale);
        let lo = s * f64::from(-128 - qp.zero_point);
        let hi = s * f64::from(127 - qp.zero_point);
        // 0 is exact (it is the zero point); the ends are within half a step, plus f32 rounding.
        let slack = 0.5 * s + 1e-6 * s * 255.0;
        prop_assert!(lo <= f64::from(min.min(0.0)) + slack, "{:?}: lo {} vs min {}", qp, lo, min);
        prop_assert!(hi >= f64::from(max.max(0.0)) - slack, "{:?}: hi {} vs max {}", qp, hi, max);
        prop_assert_eq!(dequantize(qp.zero_point as i8, qp), 0.0);
    }
}
