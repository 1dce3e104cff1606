//! Dense layers: activations against f64, the f32 layer against an f64 reference, the int8 layer
//! bit for bit against a TFLite-style (unfolded, i64) reference and within the derived error bound
//! of the f32 layer, typed vs runtime-shaped views, and chains.
//!
//! Run with `cargo test --test dense -- --nocapture` to print the measured maxima.

// The references index explicitly, like the formulas they transcribe.
#![allow(clippy::needless_range_loop)]

use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use tinyvae::{
    build_lut, dequantize, fold_bias, math, per_channel_multiplier, quantize, quantize_multiplier,
    quantized_activation_range, requantize, Activation, Chain, Dense, DenseView, Dequantize, Error,
    Layer, QDense, QDenseView, QParams, Quantize, Requant,
};

const U: f64 = 1.0 / 16_777_216.0; // 2^-24, f32 unit roundoff

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn uniform(rng: &mut XorShiftRng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * ((rng.next_u32() >> 8) as f32 / 16_777_216.0)
}

fn ulp(x: f32) -> f64 {
    let a = x.abs();
    if a < f32::MIN_POSITIVE {
        return f64::from(f32::from_bits(1));
    }
    let next = f32::from_bits(a.to_bits() + 1);
    f64::from(next) - f64::from(a)
}

// ---------------------------------------------------------------- activations

#[test]
fn relu_relu6_identity_exact() {
    let cases: [(f32, f32, f32); 8] = [
        (-2.0, 0.0, 0.0),
        (0.0, 0.0, 0.0),
        (3.5, 3.5, 3.5),
        (6.0, 6.0, 6.0),
        (6.5, 6.5, 6.0),
        (f32::INFINITY, f32::INFINITY, 6.0),
        (f32::NEG_INFINITY, 0.0, 0.0),
        (1e-40, 1e-40, 1e-40),
    ];
    for (x, relu, relu6) in cases {
        assert_eq!(Activation::Relu.apply(x), relu, "relu({x})");
        assert_eq!(Activation::Relu6.apply(x), relu6, "relu6({x})");
        assert_eq!(Activation::Identity.apply(x), x, "identity({x})");
    }
    // TFLite's std::max(x, 0.f): NaN and -0.0 pass through.
    for a in [Activation::Relu, Activation::Relu6, Activation::Identity] {
        assert!(a.apply(f32::NAN).is_nan(), "{a:?}(NaN)");
        assert_eq!(a.apply(-0.0).to_bits(), (-0.0f32).to_bits(), "{a:?}(-0.0)");
    }
    // NaN propagation of the smooth activations is libm's; micromath's exp does not promise it.
    if cfg!(not(feature = "fast-math")) {
        for a in [Activation::Tanh, Activation::Sigmoid, Activation::Softplus] {
            assert!(a.apply(f32::NAN).is_nan(), "{a:?}(NaN)");
        }
    }
}

/// Max error in ULPs of the result of `act` against an f64 reference, over a dense grid.
fn max_ulps(act: Activation, reference: impl Fn(f64) -> f64, lo: f32, hi: f32) -> (f64, f32) {
    let mut worst = (0.0, 0.0);
    let n = 200_000;
    for k in 0..=n {
        let x = lo + (hi - lo) * (k as f32 / n as f32);
        let got = act.apply(x);
        let want = reference(f64::from(x));
        let err = (f64::from(got) - want).abs() / ulp(want as f32);
        assert!(
            err <= 4.0,
            "{act:?}({x}): got {got}, expected {want} ({err} ulp)"
        );
        if err > worst.0 {
            worst = (err, x);
        }
    }
    worst
}

#[test]
#[cfg_attr(
    feature = "fast-math",
    ignore = "checks libm accuracy; fast-math trades it for speed"
)]
fn smooth_activations_against_f64() {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    let (t, tx) = max_ulps(Activation::Tanh, f64::tanh, -12.0, 12.0);
    let (s, sx) = max_ulps(Activation::Sigmoid, sig, -100.0, 30.0);
    let (p, px) = max_ulps(Activation::Softplus, softplus, -100.0, 100.0);
    println!("max error: tanh {t:.2} ulp (x={tx}), sigmoid {s:.2} ulp (x={sx}), softplus {p:.2} ulp (x={px})");
    assert!(t <= 2.0 && s <= 2.0 && p <= 2.0, "documented bound: 2 ulp");
    // Tails: no overflow, full relative accuracy.
    assert!(Activation::Sigmoid.apply(-100.0) > 0.0);
    assert_eq!(Activation::Sigmoid.apply(100.0), 1.0);
    assert_eq!(Activation::Softplus.apply(1000.0), 1000.0);
    assert!(Activation::Softplus.apply(-100.0) > 0.0);
}

#[test]
fn apply_slice_is_elementwise() {
    let xs = [-3.0f32, -0.5, 0.0, 0.25, 7.0, 40.0];
    for a in [
        Activation::Identity,
        Activation::Relu,
        Activation::Relu6,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
    ] {
        let mut v = xs;
        a.apply_slice(&mut v);
        for (&x, &y) in xs.iter().zip(&v) {
            assert_eq!(y.to_bits(), a.apply(x).to_bits(), "{a:?}({x})");
        }
    }
}

// ---------------------------------------------------------------- f32 dense

#[test]
fn dense_sums_in_index_order_and_adds_bias_last() {
    // 0 + 1e8 - 1e8 = 0, then + 1 = 1. Bias first would give (1 + 1e8) - 1e8 = 0 in f32.
    static W: [[f32; 2]; 1] = [[1e8, -1e8]];
    static B: [f32; 1] = [1.0];
    let d = Dense::new(&W, &B, Activation::Identity);
    let mut y = [0.0];
    d.forward(&[1.0, 1.0], &mut y, &mut ());
    assert_eq!(y, [1.0], "bias must be added after the sum");
    // Index order: (0 + 1) + 1e8 - 1e8 = 0 (1 is absorbed); reversed it would be 1.
    static W2: [[f32; 3]; 1] = [[1.0, 1e8, -1e8]];
    static B2: [f32; 1] = [0.0];
    let d = Dense::new(&W2, &B2, Activation::Identity);
    d.forward(&[1.0, 1.0, 1.0], &mut y, &mut ());
    assert_eq!(y, [0.0], "sum must run in index order");
}

fn random_dense<const IN: usize, const OUT: usize>(
    rng: &mut XorShiftRng,
    act: Activation,
) -> Dense<IN, OUT> {
    let mut w = [[0.0f32; IN]; OUT];
    let mut b = [0.0f32; OUT];
    for row in &mut w {
        for v in row.iter_mut() {
            *v = uniform(rng, -1.0, 1.0);
        }
    }
    for v in &mut b {
        *v = uniform(rng, -1.0, 1.0);
    }
    Dense::new(leak(w), leak(b), act)
}

#[test]
fn dense_against_f64() {
    let mut rng = XorShiftRng::seed_from_u64(1);
    let mut worst = 0.0f64;
    for _ in 0..200 {
        let d: Dense<32, 8> = random_dense(&mut rng, Activation::Identity);
        let mut x = [0.0f32; 32];
        for v in &mut x {
            *v = uniform(&mut rng, -4.0, 4.0);
        }
        let mut y = [0.0f32; 8];
        d.forward(&x, &mut y, &mut ());
        for o in 0..8 {
            let terms: Vec<f64> = (0..32)
                .map(|i| f64::from(d.weights[o][i]) * f64::from(x[i]))
                .collect();
            let exact = terms.iter().sum::<f64>() + f64::from(d.bias[o]);
            let mag = terms.iter().map(|t| t.abs()).sum::<f64>() + f64::from(d.bias[o]).abs();
            let bound = 33.0 * U * mag * 1.01;
            let err = (f64::from(y[o]) - exact).abs();
            assert!(
                err <= bound,
                "output {o}: got {}, expected {exact}, error {err} > bound {bound}",
                y[o]
            );
            worst = worst.max(err / (U * mag));
        }
    }
    println!("f32 dense 32->8: max error {worst:.2} u * sum|w x| (bound 33)");
}

#[test]
fn dense_typed_view_and_errors() {
    let mut rng = XorShiftRng::seed_from_u64(2);
    let d: Dense<5, 3> = random_dense(&mut rng, Activation::Tanh);
    let x = [0.3f32, -1.0, 2.0, 0.0, 0.7];
    let mut y1 = [0.0; 3];
    d.forward(&x, &mut y1, &mut ());
    let mut y2 = [0.0; 3];
    d.view().forward(&x, &mut y2).unwrap();
    let v = DenseView::new(5, 3, d.weights.as_flattened(), d.bias, Activation::Tanh).unwrap();
    let mut y3 = [0.0; 3];
    v.forward(&x, &mut y3).unwrap();
    assert_eq!(y1.map(f32::to_bits), y2.map(f32::to_bits));
    assert_eq!(y1.map(f32::to_bits), y3.map(f32::to_bits));
    assert_eq!(
        (v.in_dim(), v.out_dim(), v.activation()),
        (5, 3, Activation::Tanh)
    );

    let w = d.weights.as_flattened();
    let mm = |expected, found| Err(Error::ShapeMismatch { expected, found });
    assert_eq!(
        DenseView::new(5, 3, &w[1..], d.bias, Activation::Relu).map(|_| ()),
        mm(15, 14)
    );
    assert_eq!(
        DenseView::new(5, 3, w, &d.bias[1..], Activation::Relu).map(|_| ()),
        mm(3, 2)
    );
    assert_eq!(v.forward(&x[..4], &mut y3), mm(5, 4));
    assert_eq!(v.forward(&x, &mut [0.0; 4]), mm(3, 4));
    assert_eq!(
        DenseView::new(usize::MAX, 2, w, d.bias, Activation::Relu).map(|_| ()),
        Err(Error::InvalidModel)
    );
    // Zero inputs: act(bias).
    let v0 = DenseView::new(0, 2, &[], &[1.5, -1.0], Activation::Relu).unwrap();
    let mut y = [9.0; 2];
    v0.forward(&[], &mut y).unwrap();
    assert_eq!(y, [1.5, 0.0]);
    assert_eq!(<Dense<5, 3> as Layer<5, 3>>::MACS, 15);
}

// ---------------------------------------------------------------- int8 dense

/// A random int8 layer built the way an exporter builds one, with everything the references need.
struct QLayer<const IN: usize, const OUT: usize> {
    layer: QDense<IN, OUT>,
    in_q: QParams,
    out_q: QParams,
    s_w: [f32; OUT],
    w_q: &'static [[i8; IN]; OUT],
    b_q: [i32; OUT],
    /// f32 reference on dequantized weights and the real bias (identity activation).
    reference: Dense<IN, OUT>,
}

fn random_weights<const IN: usize, const OUT: usize>(
    rng: &mut XorShiftRng,
) -> ([[f32; IN]; OUT], [f32; OUT]) {
    let mut w = [[0.0f32; IN]; OUT];
    let mut b = [0.0f32; OUT];
    for (row, bo) in w.iter_mut().zip(&mut b) {
        let gain = 2f32.powf(uniform(rng, -4.0, 1.0)) / (IN as f32).sqrt();
        for v in row.iter_mut() {
            *v = uniform(rng, -1.0, 1.0) * gain;
        }
        *bo = uniform(rng, -1.0, 1.0);
    }
    (w, b)
}

fn build_qlayer<const IN: usize, const OUT: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    in_q: QParams,
    out_q: QParams,
    act: Activation,
    lut: Option<&'static [i8; 256]>,
) -> QLayer<IN, OUT> {
    let mut s_w = [0.0f32; OUT];
    let mut w_q = [[0i8; IN]; OUT];
    let mut w_hat = [[0.0f32; IN]; OUT];
    let mut b_q = [0i32; OUT];
    let mut bias = [0i32; OUT];
    let mut requant = [Requant::ZERO; OUT];
    for o in 0..OUT {
        let max = w[o].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        s_w[o] = max / 127.0;
        let wq = QParams::new(s_w[o], 0);
        for i in 0..IN {
            w_q[o][i] = quantize(w[o][i], wq);
            w_hat[o][i] = dequantize(w_q[o][i], wq);
        }
        let acc_scale = f64::from(in_q.scale) * f64::from(s_w[o]);
        b_q[o] = (f64::from(b[o]) / acc_scale).round() as i32;
        bias[o] = fold_bias(b_q[o], &w_q[o], in_q.zero_point);
        requant[o] = quantize_multiplier(per_channel_multiplier(in_q.scale, s_w[o], out_q.scale))
            .expect("multiplier in range");
    }
    let (act_min, act_max) = quantized_activation_range(act, out_q).expect("fusable");
    let w_q = leak(w_q);
    QLayer {
        layer: QDense::new(
            w_q,
            leak(bias),
            leak(requant),
            out_q.zero_point,
            act_min,
            act_max,
            lut,
        ),
        in_q,
        out_q,
        s_w,
        w_q,
        b_q,
        reference: Dense::new(leak(w_hat), leak(*b), Activation::Identity),
    }
}

/// TFLite's reference int8 FullyConnected(PerChannel), unfolded and in i64:
/// `acc = Σ w (x - zp_in) + b_q`, then requantize, + zp_out, clamp.
fn tflite_reference<const IN: usize, const OUT: usize>(
    q: &QLayer<IN, OUT>,
    x: &[i8; IN],
) -> [i8; OUT] {
    let mut y = [0i8; OUT];
    for o in 0..OUT {
        let acc: i64 = (0..IN)
            .map(|i| i64::from(q.w_q[o][i]) * (i64::from(x[i]) - i64::from(q.in_q.zero_point)))
            .sum::<i64>()
            + i64::from(q.b_q[o]);
        let acc = i32::try_from(acc).expect("TFLite's accumulator fits i32");
        let v = requantize(acc, q.layer.requant[o]) + q.out_q.zero_point;
        let v = v
            .max(i32::from(q.layer.act_min))
            .min(i32::from(q.layer.act_max));
        y[o] = v as i8;
    }
    y
}

/// The documented bound (module doc of `qdense`) plus the f32 rounding of the reference.
fn error_bound<const IN: usize, const OUT: usize>(
    q: &QLayer<IN, OUT>,
    x_hat: &[f32; IN],
    o: usize,
    y_exact: f64,
) -> f64 {
    let s_out = f64::from(q.out_q.scale);
    let right = (-q.layer.requant[o].shift).max(0);
    let first = if right == 0 {
        0.0
    } else {
        2f64.powi(-(right + 1))
    };
    let steps = 0.5 + first + 2f64.powi(-31) * y_exact.abs() / s_out;
    let bias_rounding = 0.5 * f64::from(q.in_q.scale) * f64::from(q.s_w[o]);
    let mag: f64 = (0..IN)
        .map(|i| (f64::from(q.reference.weights[o][i]) * f64::from(x_hat[i])).abs())
        .sum::<f64>()
        + f64::from(q.reference.bias[o]).abs();
    // f32 reference: summation, plus the 2^-24 roundings of the dequantized w, x and output.
    let f32_rounding = f64::from(IN as u32 + 4) * U * mag * 1.01 + U * (y_exact.abs() + s_out);
    s_out * steps + bias_rounding + f32_rounding
}

struct Stats {
    worst_steps: f64,
    worst_ratio: f64,
    n: usize,
}

/// Runs `q` on random inputs; checks bit-exactness against the TFLite reference and the error
/// bound against the f32 layer clamped to the quantized activation range.
fn check_qlayer<const IN: usize, const OUT: usize>(
    q: &QLayer<IN, OUT>,
    rng: &mut XorShiftRng,
    lo: f32,
    hi: f32,
    trials: usize,
    mut on_output: impl FnMut(usize, f64, i8),
) -> Stats {
    let mut stats = Stats {
        worst_steps: 0.0,
        worst_ratio: 0.0,
        n: 0,
    };
    let s_out = f64::from(q.out_q.scale);
    let zp_out = q.out_q.zero_point;
    let clamp_lo = s_out * f64::from(i32::from(q.layer.act_min) - zp_out);
    let clamp_hi = s_out * f64::from(i32::from(q.layer.act_max) - zp_out);
    for _ in 0..trials {
        let mut x_q = [0i8; IN];
        let mut x_hat = [0.0f32; IN];
        for i in 0..IN {
            x_q[i] = quantize(uniform(rng, lo, hi), q.in_q);
            x_hat[i] = dequantize(x_q[i], q.in_q);
        }
        let mut y_q = [0i8; OUT];
        q.layer.forward(&x_q, &mut y_q, &mut ());
        let want = tflite_reference(q, &x_q);
        assert_eq!(
            y_q, want,
            "not bit-exact with the TFLite reference for x = {x_q:?}"
        );
        let mut y_f = [0.0f32; OUT];
        q.reference.forward(&x_hat, &mut y_f, &mut ());
        for o in 0..OUT {
            let got = f64::from(dequantize(y_q[o], q.out_q));
            let reference = f64::from(y_f[o]).clamp(clamp_lo, clamp_hi);
            let y_exact: f64 = (0..IN)
                .map(|i| f64::from(q.reference.weights[o][i]) * f64::from(x_hat[i]))
                .sum::<f64>()
                + f64::from(q.reference.bias[o]);
            let bound = error_bound(q, &x_hat, o, y_exact);
            let err = (got - reference).abs();
            assert!(
                err <= bound,
                "output {o}: x_q = {x_q:?}: got {} ({got}), f32 reference {} clamped {reference}, \
                 error {err} > bound {bound}",
                y_q[o],
                y_f[o]
            );
            stats.worst_steps = stats.worst_steps.max(err / s_out);
            stats.worst_ratio = stats.worst_ratio.max(err / bound);
            stats.n += 1;
            on_output(o, y_exact, y_q[o]);
        }
    }
    stats
}

fn calibrate<const IN: usize, const OUT: usize>(
    d: &Dense<IN, OUT>,
    rng: &mut XorShiftRng,
    lo: f32,
    hi: f32,
) -> QParams {
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for _ in 0..200 {
        let mut x = [0.0f32; IN];
        for v in &mut x {
            *v = uniform(rng, lo, hi);
        }
        let mut y = [0.0f32; OUT];
        d.forward(&x, &mut y, &mut ());
        for v in y {
            min = min.min(v);
            max = max.max(v);
        }
    }
    QParams::from_range(min, max).expect("nonempty range")
}

#[test]
fn qdense_identity_bit_exact_and_within_bound() {
    let mut rng = XorShiftRng::seed_from_u64(3);
    let (mut worst_steps, mut worst_ratio, mut n) = (0.0f64, 0.0f64, 0);
    for trial in 0..40 {
        let (w, b) = random_weights::<24, 10>(&mut rng);
        let (lo, hi) = (-uniform(&mut rng, 0.1, 3.0), uniform(&mut rng, 0.1, 5.0));
        let in_q = QParams::from_range(lo, hi).unwrap();
        let f = Dense::new(leak(w), leak(b), Activation::Identity);
        let out_q = calibrate(&f, &mut rng, lo, hi);
        let q = build_qlayer(&w, &b, in_q, out_q, Activation::Identity, None);
        let s = check_qlayer(&q, &mut rng, lo * 1.1, hi * 1.1, 50, |_, _, _| {});
        worst_steps = worst_steps.max(s.worst_steps);
        worst_ratio = worst_ratio.max(s.worst_ratio);
        n += s.n;
        assert!(s.n > 0, "trial {trial}");
    }
    println!(
        "int8 dense 24->10 (identity, {n} outputs): max |deq(y_q) - clamp(y_f32)| = {worst_steps:.3} output steps, \
         {worst_ratio:.3} of the bound"
    );
}

#[test]
fn qdense_relu_clamps() {
    let mut rng = XorShiftRng::seed_from_u64(4);
    let (mut clamped, mut worst) = (0, 0.0f64);
    for _ in 0..20 {
        let (w, b) = random_weights::<16, 8>(&mut rng);
        let in_q = QParams::from_range(-2.0, 2.0).unwrap();
        let f = Dense::new(leak(w), leak(b), Activation::Identity);
        let out_q = calibrate(&f, &mut rng, -2.0, 2.0);
        let q = build_qlayer(&w, &b, in_q, out_q, Activation::Relu, None);
        assert_eq!(
            i32::from(q.layer.act_min),
            out_q.zero_point,
            "ReLU's lower clamp is the zero point"
        );
        assert_eq!(q.layer.act_max, 127);
        let s_out = f64::from(out_q.scale);
        let s = check_qlayer(&q, &mut rng, -2.0, 2.0, 50, |o, y, y_q| {
            assert!(
                i32::from(y_q) >= out_q.zero_point,
                "output {o}: {y_q} below the ReLU clamp"
            );
            if y < -s_out {
                assert_eq!(
                    i32::from(y_q),
                    out_q.zero_point,
                    "output {o}: y = {y} must clamp to 0"
                );
                clamped += 1;
            }
        });
        worst = worst.max(s.worst_steps);
    }
    assert!(
        clamped > 100,
        "the test must exercise the clamp ({clamped} clamped)"
    );
    println!("int8 dense + fused ReLU: {clamped} outputs clamped, max error {worst:.3} steps");
}

#[test]
fn qdense_relu6_clamps() {
    let mut rng = XorShiftRng::seed_from_u64(5);
    let (mut clamped_hi, mut clamped_lo, mut worst) = (0, 0, 0.0f64);
    for _ in 0..20 {
        let (mut w, b) = random_weights::<16, 8>(&mut rng);
        for row in &mut w {
            for v in row.iter_mut() {
                *v *= 8.0; // outputs well beyond 6
            }
        }
        let in_q = QParams::from_range(-2.0, 2.0).unwrap();
        let out_q = QParams::from_range(-1.0, 7.5).unwrap();
        let q = build_qlayer(&w, &b, in_q, out_q, Activation::Relu6, None);
        let six = f64::from(dequantize(q.layer.act_max, out_q));
        assert!(
            (six - 6.0).abs() <= 0.5 * f64::from(out_q.scale),
            "act_max {} is {six}",
            q.layer.act_max
        );
        assert_eq!(q.layer.act_max, quantize(6.0, out_q));
        let s_out = f64::from(out_q.scale);
        let (amin, amax) = (q.layer.act_min, q.layer.act_max);
        let s = check_qlayer(&q, &mut rng, -2.0, 2.0, 50, |o, y, y_q| {
            assert!(
                (amin..=amax).contains(&y_q),
                "output {o}: {y_q} outside [{amin}, {amax}]"
            );
            if y > 6.0 + s_out {
                assert_eq!(y_q, amax, "output {o}: y = {y} must clamp to 6");
                clamped_hi += 1;
            }
            if y < -s_out {
                assert_eq!(y_q, amin, "output {o}: y = {y} must clamp to 0");
                clamped_lo += 1;
            }
        });
        worst = worst.max(s.worst_steps);
    }
    assert!(
        clamped_hi > 100 && clamped_lo > 100,
        "clamps exercised: {clamped_hi} high, {clamped_lo} low"
    );
    println!("int8 dense + fused ReLU6: {clamped_hi} clamped at 6, {clamped_lo} at 0, max error {worst:.3} steps");
}

#[test]
fn qdense_extreme_zero_points_and_mlperf_shape() {
    // 640 -> 128 is the first layer of the MLPerf Tiny anomaly-detection autoencoder. Its f32
    // arrays are built on the stack (several copies in a debug build): use a big one.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(mlperf_shape)
        .unwrap()
        .join()
        .unwrap();
}

fn mlperf_shape() {
    let mut rng = XorShiftRng::seed_from_u64(6);
    for (lo, hi) in [(0.0f32, 3.0f32), (-3.0, 0.0), (-1.0, 4.0)] {
        let (w, b) = random_weights::<640, 128>(&mut rng);
        let in_q = QParams::from_range(lo, hi).unwrap();
        let f = Dense::new(leak(w), leak(b), Activation::Identity);
        let out_q = calibrate(&f, &mut rng, lo, hi);
        let q = build_qlayer(&w, &b, in_q, out_q, Activation::Relu, None);
        let s = check_qlayer(&q, &mut rng, lo, hi, 5, |_, _, _| {});
        println!(
            "640->128, input zp {}: max error {:.3} steps",
            in_q.zero_point, s.worst_steps
        );
    }
}

#[test]
fn qdense_wrapping_accumulator_is_exact() {
    // Intermediate sums overflow i32 (bias near i32::MAX, then positive products) but the final
    // accumulator fits: wrapping arithmetic must still give TFLite's value.
    static W: [[i8; 4]; 1] = [[127, 127, -127, -127]];
    let big = i32::MAX - 100;
    let bias = fold_bias(big, &W[0], 0);
    assert_eq!(bias, big);
    let b: &'static [i32; 1] = leak([bias]);
    let rq: &'static [Requant; 1] = leak([Requant::new(1 << 30, -23)]); // M = 2^-24
    let layer = QDense::new(&W, b, rq, 0, -128, 127, None);
    let x = [127i8, 127, 127, 127]; // +2 * 16129 (overflows) then -2 * 16129
    let mut y = [0i8];
    layer.forward(&x, &mut y, &mut ());
    let want = requantize(big, rq[0]); // 128 -> saturates to 127
    assert_eq!(i32::from(y[0]), want.clamp(-128, 127));
    // Folding a large input zero point also wraps harmlessly.
    let row = [127i8; 1000];
    let folded = fold_bias(5, &row, -128);
    assert_eq!(i64::from(folded), 5 + 128 * 127_000, "exact when it fits");
}

#[test]
#[cfg_attr(
    feature = "fast-math",
    ignore = "checks libm accuracy; fast-math trades it for speed"
)]
fn lut_tanh_within_half_a_step() {
    let mut rng = XorShiftRng::seed_from_u64(7);
    let tanh_q = QParams::new(1.0 / 128.0, 0);
    for _ in 0..20 {
        let in_q =
            QParams::from_range(-uniform(&mut rng, 0.5, 6.0), uniform(&mut rng, 0.5, 6.0)).unwrap();
        let mut lut = [0i8; 256];
        build_lut(math::tanh, in_q, tanh_q, &mut lut);
        for q in i8::MIN..=i8::MAX {
            let entry = lut[(i32::from(q) + 128) as usize];
            let got = f64::from(dequantize(entry, tanh_q));
            let want = f64::from(dequantize(q, in_q))
                .tanh()
                .clamp(-1.0, 127.0 / 128.0);
            let err = (got - want).abs();
            assert!(
                err <= 0.5 / 128.0 + 1e-6,
                "lut[{q}] = {entry}: {got} vs tanh = {want}, error {} steps (in_q {in_q:?})",
                err * 128.0
            );
        }
    }
}

#[test]
fn qdense_lut_tanh_end_to_end() {
    let mut rng = XorShiftRng::seed_from_u64(8);
    let tanh_q = QParams::new(1.0 / 128.0, 0);
    let mut worst_steps = 0.0f64;
    for _ in 0..20 {
        let (w, b) = random_weights::<16, 8>(&mut rng);
        let in_q = QParams::from_range(-2.0, 2.0).unwrap();
        let f = Dense::new(leak(w), leak(b), Activation::Identity);
        let pre_q = calibrate(&f, &mut rng, -2.0, 2.0);
        let mut lut = [0i8; 256];
        build_lut(math::tanh, pre_q, tanh_q, &mut lut);
        let lut: &'static [i8; 256] = leak(lut);
        let plain = build_qlayer(&w, &b, in_q, pre_q, Activation::Identity, None);
        let with_lut = build_qlayer(&w, &b, in_q, pre_q, Activation::Identity, Some(lut));
        for _ in 0..50 {
            let mut x_q = [0i8; 16];
            let mut x_hat = [0.0f32; 16];
            for i in 0..16 {
                x_q[i] = quantize(uniform(&mut rng, -2.0, 2.0), in_q);
                x_hat[i] = dequantize(x_q[i], in_q);
            }
            let (mut pre, mut post) = ([0i8; 8], [0i8; 8]);
            plain.layer.forward(&x_q, &mut pre, &mut ());
            with_lut.layer.forward(&x_q, &mut post, &mut ());
            let mut y_f = [0.0f32; 8];
            plain.reference.forward(&x_hat, &mut y_f, &mut ());
            for o in 0..8 {
                assert_eq!(
                    post[o],
                    lut[(i32::from(pre[o]) + 128) as usize],
                    "LUT applied last"
                );
                // tanh is 1-Lipschitz: the pre-activation bound carries over, plus half a step.
                let y_exact = f64::from(y_f[o]);
                let pre_bound = error_bound(&plain, &x_hat, o, y_exact);
                let clamp_lo = f64::from(pre_q.scale) * f64::from(-128 - pre_q.zero_point);
                let clamp_hi = f64::from(pre_q.scale) * f64::from(127 - pre_q.zero_point);
                let want = y_exact
                    .clamp(clamp_lo, clamp_hi)
                    .tanh()
                    .clamp(-1.0, 127.0 / 128.0);
                let got = f64::from(dequantize(post[o], tanh_q));
                let bound = pre_bound + 0.5 / 128.0 + 1e-6;
                let err = (got - want).abs();
                assert!(
                    err <= bound,
                    "output {o}: x_q {x_q:?}: got {got}, tanh(y_f32) = {want}, error {err} > bound {bound}"
                );
                worst_steps = worst_steps.max(err * 128.0);
            }
        }
    }
    println!("int8 dense + tanh LUT (output step 1/128): max error {worst_steps:.3} steps vs tanh of the f32 layer");
}

#[test]
fn typed_and_view_are_identical() {
    let mut rng = XorShiftRng::seed_from_u64(9);
    let mut lut = [0i8; 256];
    build_lut(
        |v| Activation::Sigmoid.apply(v),
        QParams::new(0.05, 3),
        QParams::new(1.0 / 256.0, -128),
        &mut lut,
    );
    let lut: &'static [i8; 256] = leak(lut);
    for (act, l) in [
        (Activation::Identity, None),
        (Activation::Relu, None),
        (Activation::Relu6, None),
        (Activation::Identity, Some(lut)),
    ] {
        let (w, b) = random_weights::<12, 7>(&mut rng);
        let q = build_qlayer(
            &w,
            &b,
            QParams::new(0.02, -5),
            QParams::new(0.05, 3),
            act,
            l,
        );
        let typed = q.layer;
        assert_eq!(typed.validate(), Ok(()));
        let view = typed.view();
        let owned_w: Vec<i8> = typed.weights.as_flattened().to_vec();
        let owned_b: Vec<i32> = typed.bias.to_vec();
        let owned_r: Vec<Requant> = typed.requant.to_vec();
        let rt = QDenseView::new(
            12,
            7,
            &owned_w,
            &owned_b,
            &owned_r,
            typed.output_zero_point,
            typed.act_min,
            typed.act_max,
            l,
        )
        .unwrap();
        for _ in 0..200 {
            let mut x = [0i8; 12];
            for v in &mut x {
                *v = (rng.next_u32() >> 24) as u8 as i8;
            }
            let (mut a, mut b2, mut c) = ([0i8; 7], [0i8; 7], [0i8; 7]);
            typed.forward(&x, &mut a, &mut ());
            view.forward(&x, &mut b2).unwrap();
            rt.forward(&x, &mut c).unwrap();
            assert_eq!(a, b2, "typed vs view, x = {x:?}");
            assert_eq!(a, c, "typed vs runtime view, x = {x:?}");
        }
    }
}

#[test]
fn qdense_view_rejects_bad_models() {
    static W: [i8; 6] = [1, 2, 3, 4, 5, 6];
    static B: [i32; 2] = [0, 0];
    static R: [Requant; 2] = [Requant::new(1 << 30, -3); 2];
    let ok = QDenseView::new(3, 2, &W, &B, &R, 0, -128, 127, None).unwrap();
    assert_eq!(
        (ok.in_dim(), ok.out_dim(), ok.act_range()),
        (3, 2, (-128, 127))
    );
    let mm = |expected, found| Err(Error::ShapeMismatch { expected, found });
    let new = |i, o, w: &'static [i8], b: &'static [i32], r: &'static [Requant], zp, lo, hi| {
        QDenseView::new(i, o, w, b, r, zp, lo, hi, None).map(|_| ())
    };
    assert_eq!(new(3, 2, &W[..5], &B, &R, 0, -128, 127), mm(6, 5));
    assert_eq!(new(2, 2, &W, &B, &R, 0, -128, 127), mm(4, 6));
    assert_eq!(new(3, 2, &W, &B[..1], &R, 0, -128, 127), mm(2, 1));
    assert_eq!(new(3, 2, &W, &B, &R[..1], 0, -128, 127), mm(2, 1));
    assert_eq!(
        new(usize::MAX, 2, &W, &B, &R, 0, -128, 127),
        Err(Error::InvalidModel)
    );
    static BAD_R: [Requant; 2] = [Requant::new(1 << 30, -3), Requant::new(5, 0)];
    assert_eq!(
        new(3, 2, &W, &B, &BAD_R, 0, -128, 127),
        Err(Error::InvalidModel)
    );
    static BAD_S: [Requant; 2] = [Requant::new(1 << 30, 31), Requant::ZERO];
    assert_eq!(
        new(3, 2, &W, &B, &BAD_S, 0, -128, 127),
        Err(Error::InvalidModel)
    );
    assert_eq!(
        new(3, 2, &W, &B, &R, 128, -128, 127),
        Err(Error::InvalidModel)
    );
    assert_eq!(new(3, 2, &W, &B, &R, 0, 10, 9), Err(Error::InvalidModel));

    let mut y = [0i8; 2];
    assert_eq!(ok.forward(&[1, 2], &mut y), mm(3, 2));
    assert_eq!(ok.forward(&[1, 2, 3], &mut [0i8; 3]), mm(2, 3));
    assert_eq!(y, [0, 0], "nothing written on error");
    ok.forward(&[1, 2, 3], &mut y).unwrap();
    // acc = [14, 32], M = 2^-4 (m = 2^30, shift -3): 0.875 -> 1, 2.0 -> 2
    assert_eq!(y, [1, 2]);

    // Zero inputs: the output is the requantized bias.
    static B0: [i32; 2] = [80, -80];
    let v0 = QDenseView::new(0, 2, &[], &B0, &R, 1, -128, 127, None).unwrap();
    v0.forward(&[], &mut y).unwrap();
    assert_eq!(y, [6, -4]); // 80 / 16 = 5, + 1; -5 + 1
}

#[test]
fn activation_ranges() {
    let qp = QParams::new(0.05, -100);
    assert_eq!(
        quantized_activation_range(Activation::Identity, qp),
        Ok((-128, 127))
    );
    assert_eq!(
        quantized_activation_range(Activation::Relu, qp),
        Ok((-100, 127))
    );
    assert_eq!(
        quantized_activation_range(Activation::Relu6, qp),
        Ok((-100, 20))
    );
    // 6 / 0.02 = 300 levels: capped at 127.
    let qp = QParams::new(0.02, -10);
    assert_eq!(
        quantized_activation_range(Activation::Relu6, qp),
        Ok((-10, 127))
    );
    assert_eq!(
        quantized_activation_range(Activation::Tanh, qp),
        Err(Error::InvalidParameter)
    );
}

// ---------------------------------------------------------------- chains

static CW: [[i8; 4]; 3] = [[10, -20, 30, 40], [-127, 0, 127, 5], [1, 1, 1, 1]];
static CB: [i32; 3] = [100, -50, 0];
static CR: [Requant; 3] = [
    Requant::new(1_374_389_535, -8),
    Requant::new(1_717_986_918, -3),
    Requant::new(1 << 30, 0),
];
const IN_Q: QParams = QParams::new(0.05, 2);
const OUT_Q: QParams = QParams::new(0.1, -3);
type QNet = Chain<Chain<Quantize<4>, QDense<4, 3>, 4>, Dequantize<3>, 3>;
static QNET: QNet = Chain::new(
    Chain::new(
        Quantize::new(IN_Q),
        QDense::new(&CW, &CB, &CR, -3, -128, 127, None),
    ),
    Dequantize::new(OUT_Q),
);

#[test]
fn chain_quantize_qdense_dequantize() {
    assert_eq!(<QNet as Layer<4, 3>>::MACS, 12);
    let mut scratch = <QNet as Layer<4, 3>>::SCRATCH;
    let x = [0.5f32, -1.25, 2.0, 0.07];
    let mut y = [0.0f32; 3];
    QNET.forward(&x, &mut y, &mut scratch);

    // The same by hand.
    let xq = x.map(|v| quantize(v, IN_Q));
    let mut yq = [0i8; 3];
    QNET.first.second.forward(&xq, &mut yq, &mut ());
    let want = yq.map(|q| dequantize(q, OUT_Q));
    assert_eq!(y, want, "chain vs by hand (x_q {xq:?}, y_q {yq:?})");
    assert_eq!(
        scratch.1 .0, xq,
        "the inner chain keeps the quantized input in scratch"
    );
    assert_eq!(
        scratch.0, yq,
        "the outer chain keeps the int8 output in scratch"
    );
    // And by the integer definition.
    for o in 0..3 {
        let acc: i32 = CB[o]
            + (0..4)
                .map(|i| i32::from(CW[o][i]) * i32::from(xq[i]))
                .sum::<i32>();
        let v = (requantize(acc, CR[o]) - 3).clamp(-128, 127);
        assert_eq!(i32::from(yq[o]), v, "output {o}: acc {acc}");
    }
}
