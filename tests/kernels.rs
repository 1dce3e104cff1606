//! The int8 dense kernels against each other, bit for bit: [`QKernel::Reference`] (the formula
//! as written, with `requantize`) vs [`QKernel::Portable`] (four rows per pass) vs
//! [`QKernel::Dsp`] (SXTB16/SMLAD on the widened input; on the host the same code runs on
//! portable emulations of the two instructions) vs [`QKernel::Multirow`] (on the host, the
//! portable emulation of the Armv6-M/Armv7-M `asm!` kernels' interface: widening, fused output
//! stage, fallbacks), through the typed layer, its `Layer::forward` and the runtime-shaped view.
//!
//! Shapes cover inputs and outputs that are and are not multiples of 4, 1 x 1, and the MLPerf
//! Tiny autoencoder's 640 x 128; values cover the whole int8 range (including -128 weights and
//! inputs), accumulators that wrap, outputs that saturate, every requantization shift (also
//! out-of-range ones), zero and invalid multipliers, zero points and clamps outside the valid
//! ranges (the kernels are specified on unvalidated constants too), and output tables.
//! The requantization itself is checked on all shifts in `-40..=40` and extreme accumulators
//! and multipliers, with the zero point chosen to expose its full 32-bit result.
//!
//! On a chip the instructions themselves are checked by the firmware: its benchmark first runs
//! every kernel on 400 random layers against the reference (`firmware/qemu/src/kernels.rs`),
//! and the benchmark checksums and `tinyvae firmware parity` must not change with the kernel.

use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use tinyvae::{requantize, Layer, QDense, QDenseView, QKernel, Requant};

const KERNELS: [QKernel; 4] = [
    QKernel::Reference,
    QKernel::Portable,
    QKernel::Dsp,
    QKernel::Multirow,
];

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// Uniform in `lo..=hi`.
fn range(rng: &mut XorShiftRng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

fn int8(rng: &mut XorShiftRng, extreme: u32) -> i8 {
    // `extreme` in 256ths: how often to force -128 or 127.
    match rng.next_u32() % 256 {
        r if r < extreme => -128,
        r if r < 2 * extreme => 127,
        _ => rng.next_u32() as i8,
    }
}

/// A random requantization constant: mostly valid (`m` in `[2^30, 2^31)`, shift in
/// `-31..=30`, weighted toward the shifts real layers use), sometimes zero or invalid.
fn requant(rng: &mut XorShiftRng) -> Requant {
    let m = match rng.next_u32() % 16 {
        0 => 0,
        1 => rng.next_u32() as i32, // any i32, negative and i32::MIN included
        2 => i32::MIN,
        3 => i32::MAX,
        4 => 1 << 30,
        _ => range(rng, 1 << 30, (1 << 31) - 1) as i32,
    };
    let shift = match rng.next_u32() % 16 {
        0 => range(rng, -40, 40) as i32,
        1 => rng.next_u32() as i32,
        2 => range(rng, 0, 30) as i32,
        3 => -1,
        4 => -2,
        5 => -31,
        _ => range(rng, -20, -2) as i32,
    };
    Requant::new(m, shift)
}

/// Constants of one random layer.
struct Case<const IN: usize, const OUT: usize> {
    layer: QDense<IN, OUT>,
    x: [i8; IN],
}

fn random_case<const IN: usize, const OUT: usize>(rng: &mut XorShiftRng) -> Case<IN, OUT> {
    let extreme = [0, 8, 64, 128][(rng.next_u32() % 4) as usize];
    let mut w = [[0i8; IN]; OUT];
    for row in w.iter_mut() {
        for v in row.iter_mut() {
            *v = int8(rng, extreme);
        }
    }
    let x: [i8; IN] = core::array::from_fn(|_| int8(rng, extreme));
    let bias_span = [0i64, 1 << 12, 1 << 20, i64::from(i32::MAX)][(rng.next_u32() % 4) as usize];
    let bias: [i32; OUT] = core::array::from_fn(|_| range(rng, -bias_span - 1, bias_span) as i32);
    // One constant per layer (per-tensor) or per row (per-channel).
    let shared = requant(rng);
    let per_row = rng.next_u32().is_multiple_of(2);
    let rq: [Requant; OUT] = core::array::from_fn(|_| if per_row { requant(rng) } else { shared });
    let zp = match rng.next_u32() % 8 {
        0 => rng.next_u32() as i32, // out of contract: saturating add
        1 => -128,
        2 => 127,
        _ => range(rng, -128, 127) as i32,
    };
    let (lo, hi) = match rng.next_u32() % 6 {
        0 => (-128, 127),
        1 => (int8(rng, 0), 127),
        2 => {
            let (a, b) = (int8(rng, 0), int8(rng, 0));
            (a.min(b), a.max(b))
        }
        3 => {
            // act_min > act_max: out of contract, but the kernels agree on it too.
            let (a, b) = (int8(rng, 0), int8(rng, 0));
            (a.max(b), a.min(b))
        }
        _ => (-128, 127),
    };
    let lut = rng.next_u32().is_multiple_of(4).then(|| {
        let t: [i8; 256] = core::array::from_fn(|_| rng.next_u32() as i8);
        leak(t)
    });
    Case {
        layer: QDense::new(leak(w), leak(bias), leak(rq), zp, lo, hi, lut),
        x,
    }
}

/// Every kernel, typed and view, against the reference: all bits equal.
fn check_case<const IN: usize, const OUT: usize>(c: &Case<IN, OUT>, label: &str) {
    let mut want = [0i8; OUT];
    c.layer.forward_with(QKernel::Reference, &c.x, &mut want);
    let check = |got: &[i8], how: &str| {
        if let Some(o) = (0..OUT).find(|&o| got[o] != want[o]) {
            let l = &c.layer;
            panic!(
                "{label} {IN}x{OUT} {how}: output {o} is {}, reference {} \
                 (bias {}, requant {:?}, zp {}, clamp [{}, {}], lut {}, row {:?}, x {:?})",
                got[o],
                want[o],
                l.bias[o],
                l.requant[o],
                l.output_zero_point,
                l.act_min,
                l.act_max,
                l.lut.is_some(),
                &l.weights[o][..IN.min(16)],
                &c.x[..IN.min(16)],
            );
        }
    };
    for kernel in KERNELS {
        let mut y = [0x55i8; OUT];
        c.layer.forward_with(kernel, &c.x, &mut y);
        check(&y, &format!("typed {kernel:?}"));
    }
    let mut y = [0x55i8; OUT];
    c.layer.forward(&c.x, &mut y, &mut ());
    check(&y, "Layer::forward");

    let view = c.layer.view();
    for kernel in KERNELS {
        let mut y = vec![0x55i8; OUT];
        view.forward_with(kernel, &c.x, &mut y).unwrap();
        check(&y, &format!("view {kernel:?}"));
    }
    let mut y = vec![0x55i8; OUT];
    view.forward(&c.x, &mut y).unwrap();
    check(&y, "view forward");
}

fn random_shape<const IN: usize, const OUT: usize>(seed: u64, trials: usize) {
    let mut rng = XorShiftRng::seed_from_u64(seed ^ ((IN as u64) << 32) ^ OUT as u64);
    for t in 0..trials {
        let c = random_case::<IN, OUT>(&mut rng);
        check_case(&c, &format!("seed {seed} trial {t}"));
    }
}

macro_rules! shapes {
    ($($name:ident: $in:literal x $out:literal, $trials:literal;)*) => {
        $(
            #[test]
            fn $name() {
                random_shape::<$in, $out>(0xD5_0000 + $in * 1000 + $out, $trials);
            }
        )*
    };
}

shapes! {
    one_by_one: 1 x 1, 2000;
    in1_out5: 1 x 5, 1000;
    in2_out3: 2 x 3, 1000;
    in3_out7: 3 x 7, 1000;
    in4_out4: 4 x 4, 1000;
    in5_out1: 5 x 1, 1000;
    in6_out2: 6 x 2, 1000;
    in7_out9: 7 x 9, 1000;
    in8_out64: 8 x 64, 300;
    in9_out4: 9 x 4, 1000;
    in13_out6: 13 x 6, 1000;
    in16_out16: 16 x 16, 500;
    in17_out5: 17 x 5, 500;
    in31_out33: 31 x 33, 300;
    in64_out16: 64 x 16, 300;
    in96_out64: 96 x 64, 100;
    in255_out3: 255 x 3, 300;
    in256_out8: 256 x 8, 200;
    in257_out7: 257 x 7, 200;
    in384_out9: 384 x 9, 100;
    in640_out128: 640 x 128, 10;
}

#[test]
fn zero_inputs() {
    let mut rng = XorShiftRng::seed_from_u64(7);
    for t in 0..2000 {
        let c = random_case::<0, 5>(&mut rng);
        check_case(&c, &format!("trial {t}"));
    }
}

/// Saturated accumulators and outputs: all weights and inputs -128 (each product 2^14) and
/// biases at the i32 limits, so the sums wrap; multipliers and shifts that push the result to
/// both ends.
#[test]
fn saturation_and_wrapping() {
    static W: [[i8; 33]; 6] = [[-128; 33]; 6];
    static B: [i32; 6] = [i32::MAX, i32::MIN, i32::MAX - 100_000, 0, -1, i32::MIN + 5];
    let x = [-128i8; 33];
    for rq in [
        Requant::new(i32::MAX, 30),
        Requant::new(1 << 30, 0),
        Requant::new(i32::MAX, -1),
        Requant::new(i32::MAX, -2),
        Requant::new(i32::MIN, 0),
        Requant::new(i32::MIN, -5),
        Requant::new(1 << 30, -31),
        Requant::new(1_500_000_000, -20),
    ] {
        for zp in [-128, 0, 127, i32::MAX, i32::MIN] {
            for (lo, hi) in [(-128, 127), (-128, -128), (127, 127), (-3, 7)] {
                let rqs = leak([rq; 6]);
                let layer = QDense::new(&W, &B, rqs, zp, lo, hi, None);
                check_case(&Case { layer, x }, &format!("{rq:?} zp {zp} [{lo}, {hi}]"));
            }
        }
    }
}

/// The requantization alone, on a layer without inputs (`acc = bias`), with the zero point
/// chosen so that the output shows the whole 32-bit result: `y = k` iff the kernel's
/// requantization equals `requantize` (when `k - requantize(acc)` fits an i32).
#[test]
fn requantization_exact() {
    let mut accs = vec![
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30) - 1,
        -(1 << 30),
        -65_536,
        -3,
        -2,
        -1,
        0,
        1,
        2,
        3,
        65_536,
        1 << 30,
        i32::MAX - 1,
        i32::MAX,
    ];
    let mut rng = XorShiftRng::seed_from_u64(11);
    for _ in 0..64 {
        accs.push(rng.next_u32() as i32);
        accs.push((rng.next_u32() as i32) >> (rng.next_u32() % 31));
    }
    let mut mults = vec![
        0,
        1,
        2,
        1 << 30,
        (1 << 30) + 1,
        i32::MAX,
        i32::MIN,
        -1,
        -(1 << 30),
    ];
    for _ in 0..16 {
        mults.push(range(&mut rng, 1 << 30, (1 << 31) - 1) as i32);
    }
    let shifts: Vec<i32> = (-40..=40)
        .chain([i32::MIN, i32::MAX, -1000, 1000])
        .collect();
    static W: [[i8; 0]; 1] = [[]; 1];
    let mut checked = 0u64;
    for &acc in &accs {
        let b = leak([acc]);
        for &m in &mults {
            for &shift in &shifts {
                let rq = Requant::new(m, shift);
                let r = requantize(acc, rq);
                for k in [-128i32, 0, 127] {
                    let Some(zp) = k.checked_sub(r) else { continue };
                    let layer = QDense::new(&W, b, leak([rq]), zp, -128, 127, None);
                    for kernel in KERNELS {
                        let mut y = [0i8; 1];
                        layer.forward_with(kernel, &[], &mut y);
                        assert_eq!(
                            i32::from(y[0]),
                            k,
                            "{kernel:?}: acc {acc}, {rq:?}: requantize = {r}, zero point {zp}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 300_000, "{checked}");
}

/// `QKernel::FAST` is what `Layer::forward` and `QDenseView::forward` run.
#[test]
fn fast_kernel_is_the_default() {
    let expect = if cfg!(tinyvae_dsp) {
        QKernel::Dsp
    } else {
        QKernel::Portable
    };
    assert_eq!(QKernel::FAST, expect);
}

/// Views wider than `VIEW_DSP_MAX_IN` run the portable kernel with `QKernel::Dsp`: same bits.
#[test]
fn wide_view_falls_back() {
    let mut rng = XorShiftRng::seed_from_u64(5);
    let n = tinyvae::VIEW_DSP_MAX_IN + 5;
    let w: Vec<i8> = (0..3 * n).map(|_| rng.next_u32() as i8).collect();
    let x: Vec<i8> = (0..n).map(|_| rng.next_u32() as i8).collect();
    let b = [1, -2, 3];
    let rq = [Requant::new(1 << 30, -12); 3];
    let view = QDenseView::new(n, 3, &w, &b, &rq, -5, -128, 127, None).unwrap();
    let mut want = [0i8; 3];
    view.forward_with(QKernel::Reference, &x, &mut want)
        .unwrap();
    for kernel in KERNELS {
        let mut y = [0i8; 3];
        view.forward_with(kernel, &x, &mut y).unwrap();
        assert_eq!(y, want, "{kernel:?}");
    }
    assert!(view
        .forward_with(QKernel::Dsp, &x[1..], &mut [0; 3])
        .is_err());
}
