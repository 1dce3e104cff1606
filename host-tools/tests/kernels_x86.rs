//! The host's int8 kernels (`tinyvae_host_tools::kernel`) against the library's, bit for bit:
//! every kernel this CPU runs (portable, AVX2, AVX-512 VNNI) on random layers (proptest) with
//! odd sizes (1 to 400 inputs, 1 to 200 outputs: partial blocks, partial input groups, one and
//! several chunks), every zero point, clamp and table, accumulators that wrap, and
//! requantization shifts inside and outside the vector output stage's range (`-31..=-2`),
//! against `QDenseView::forward_with` with `QKernel::Portable` and `QKernel::Reference`.
//!
//! On a CPU without AVX2 or AVX-512 VNNI those kernels are skipped (and said so on stderr);
//! CI runs on a machine that has both.

use proptest::prelude::*;
use tinyvae::{QDenseView, QKernel, Requant};
use tinyvae_host_tools::kernel::{Int8Kernel, KernelScratch, PackedLayer};

/// A random valid layer: `(in, out, weights, bias, requant, zp, act_min, act_max, lut)`.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    m: usize,
    w: Vec<i8>,
    bias: Vec<i32>,
    rq: Vec<Requant>,
    zp: i32,
    act: (i8, i8),
    lut: Option<[i8; 256]>,
    x: Vec<i8>,
}

fn requant(wide: bool) -> impl Strategy<Value = Requant> {
    let m = prop_oneof![
        1 => Just(0i32),
        1 => Just(1i32 << 30),
        1 => Just(i32::MAX),
        6 => (1i32 << 30)..=i32::MAX,
    ];
    let shift = if wide { -31i32..=30 } else { -31i32..=-2 };
    (m, shift).prop_map(|(m, s)| Requant::new(m, s))
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=400, 1usize..=200, any::<bool>(), any::<bool>()).prop_flat_map(|(n, m, wide, big)| {
        let bias = if big {
            proptest::collection::vec(any::<i32>(), m).boxed()
        } else {
            proptest::collection::vec(-100_000i32..=100_000, m).boxed()
        };
        (
            proptest::collection::vec(any::<i8>(), n * m),
            bias,
            proptest::collection::vec(requant(wide), m),
            -128i32..=127,
            any::<(i8, i8)>(),
            proptest::option::weighted(0.2, proptest::array::uniform32(any::<i8>())),
            proptest::collection::vec(any::<i8>(), n),
        )
            .prop_map(move |(w, bias, rq, zp, (a, b), lut, x)| Case {
                n,
                m,
                w,
                bias,
                rq,
                zp,
                act: (a.min(b), a.max(b)),
                // A 256-entry table from 32 random values (enough to see it applied).
                lut: lut.map(|t| std::array::from_fn(|i| t[i % 32] ^ (i as i8))),
                x,
            })
    })
}

fn view(c: &Case) -> QDenseView<'_> {
    QDenseView::new(
        c.n,
        c.m,
        &c.w,
        &c.bias,
        &c.rq,
        c.zp,
        c.act.0,
        c.act.1,
        c.lut.as_ref(),
    )
    .unwrap()
}

fn supported() -> Vec<Int8Kernel> {
    let k: Vec<_> = Int8Kernel::ALL
        .into_iter()
        .filter(|k| k.supported())
        .collect();
    for missing in Int8Kernel::ALL.into_iter().filter(|k| !k.supported()) {
        eprintln!("note: this CPU cannot run the {missing} kernel: not tested here");
    }
    k
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn packed_kernels_equal_the_library(c in case()) {
        let v = view(&c);
        let mut want = vec![0i8; c.m];
        v.forward_with(QKernel::Portable, &c.x, &mut want).unwrap();
        let mut reference = vec![0i8; c.m];
        v.forward_with(QKernel::Reference, &c.x, &mut reference).unwrap();
        prop_assert_eq!(&want, &reference);
        let mut s = KernelScratch::default();
        for k in supported() {
            let p = PackedLayer::new(&v, k).unwrap();
            let mut got = vec![0x55i8; c.m];
            p.forward(&c.x, &mut got, &mut s).unwrap();
            prop_assert_eq!(&got, &want, "kernel {}", k);
        }
    }
}

/// Accumulators at the extremes: all weights and inputs -128 or 127 on 400 inputs, biases near
/// `i32::MIN`/`MAX` (the sums wrap), every shift of the vector stage and beyond.
#[test]
fn extreme_sums_and_every_shift() {
    let (n, m) = (400, 70);
    for (wv, xv) in [(-128i8, -128i8), (127, -128), (-128, 127), (127, 127)] {
        for shift in -31..=30 {
            let w = vec![wv; n * m];
            let bias: Vec<i32> = (0..m)
                .map(|o| match o % 3 {
                    0 => i32::MAX - o as i32,
                    1 => i32::MIN + o as i32,
                    _ => o as i32 * 1000 - 35_000,
                })
                .collect();
            let rq: Vec<Requant> = (0..m)
                .map(|o| Requant::new((1 << 30) + (o as i32) * 15_000_000, shift))
                .collect();
            let x = vec![xv; n];
            let v = QDenseView::new(n, m, &w, &bias, &rq, 3, -128, 127, None).unwrap();
            let mut want = vec![0i8; m];
            v.forward_with(QKernel::Reference, &x, &mut want).unwrap();
            let mut s = KernelScratch::default();
            for k in supported() {
                let mut got = vec![0i8; m];
                PackedLayer::new(&v, k)
                    .unwrap()
                    .forward(&x, &mut got, &mut s)
                    .unwrap();
                assert_eq!(got, want, "kernel {k}, w {wv}, x {xv}, shift {shift}");
            }
        }
    }
}

/// `TINYVAE_KERNEL` values: names, `auto`, and clear errors for unknown ones.
#[test]
fn kernel_names_parse() {
    assert_eq!(Int8Kernel::parse(None).unwrap(), Int8Kernel::detect());
    assert_eq!(
        Int8Kernel::parse(Some("auto")).unwrap(),
        Int8Kernel::detect()
    );
    assert_eq!(
        Int8Kernel::parse(Some("portable")).unwrap(),
        Int8Kernel::Portable
    );
    let e = Int8Kernel::parse(Some("sse9")).unwrap_err().to_string();
    assert!(
        e.contains("TINYVAE_KERNEL") && e.contains("avx512vnni"),
        "{e}"
    );
    for k in Int8Kernel::ALL {
        assert_eq!(Int8Kernel::parse(Some(k.name())).is_ok(), k.supported());
    }
}

fn check_quantize(x: &[f32], qp: tinyvae::QParams) {
    let mut want = vec![0i8; x.len()];
    tinyvae::quantize_slice(x, qp, &mut want).unwrap();
    for k in supported() {
        let mut got = vec![0x55i8; x.len()];
        tinyvae_host_tools::kernel::quantize_slice(k, x, qp, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g,
                w,
                "kernel {k}, x {:e} ({:#x}), {qp:?}",
                x[i],
                x[i].to_bits()
            );
        }
    }
}

/// The vectorized `quantize` against the library's on the values where rounding and
/// saturation can go wrong: every tie `k + 1/2` and its neighbours, NaN, infinities, signed
/// zeros, subnormals, values beyond `i32`, for several scales and every edge zero point.
#[test]
fn quantize_edges() {
    let mut x = vec![
        0.0,
        -0.0,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        f32::MAX,
        f32::MIN,
        3e9,
        -3e9,
        8_388_607.5,
        8_388_608.0,
        -8_388_607.5,
        16_777_217.0,
        0.49999997,
        -0.49999997,
    ];
    for k in -300..=300 {
        let t = k as f32 + 0.5;
        x.extend([
            t,
            -t,
            f32::from_bits(t.to_bits() + 1),
            f32::from_bits(t.to_bits() - 1),
        ]);
    }
    for zp in [-128, -1, 0, 1, 127] {
        for scale in [1.0, 0.5, 0.1, 3.0e-3, 7.0] {
            check_quantize(&x, tinyvae::QParams::new(scale, zp));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random values (any bit pattern, and values near the int8 range) and parameters.
    #[test]
    fn quantize_random(
        bits in proptest::collection::vec(any::<u32>(), 0..100),
        near in proptest::collection::vec(-200.0f32..200.0, 0..100),
        scale in 1e-4f32..10.0,
        zp in -128i32..=127,
    ) {
        let mut x: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        x.extend(near);
        check_quantize(&x, tinyvae::QParams::new(scale, zp));
    }
}
