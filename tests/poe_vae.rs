//! The multi-sensor product-of-experts VAE (`src/poe_vae.rs`, `src/groups.rs`): the fusion
//! against `product_of_experts`, the subset ELBO against an f64 reference, and the detector's
//! per-window choice of groups, subset thresholds and skips.

#![allow(clippy::needless_range_loop)]

mod common;
use common::{leak, SplitMix as TestRng};
use tinyvae::{
    decoder_noise, dequantize, expert_precision, fuse_experts, fuse_precisions, precision_table,
    product_of_experts, window_rng, Activation, AlarmConfig, Chain, ChannelMask, Dense, Dequantize,
    Detector, DetectorConfig, DiagGaussian, Error, GroupSet, Layer, Normalizer, PoeScratch, PoeVae,
    Precision, PrecisionLut, QParams, ScoreKind, SensorGroups, TypedDecoder, TypedExpert, VaeModel,
    Workspace,
};

// C = 4 channels, W = 4 steps: groups {0, 2} and {1, 3}, each sub-window 8 values.
const C: usize = 4;
const W: usize = 4;
const X: usize = W * C;
const XG: usize = 8;
const H: usize = 5;
const Z: usize = 3;
const HD: usize = 6;

type Expert = TypedExpert<Dense<XG, H>, Dense<H, Z>, Chain<Dense<H, Z>, Precision<Z>, Z>, XG, H, Z>;
type Dec = TypedDecoder<Chain<Dense<Z, HD>, Dense<HD, X>, HD>, Z, X>;
type Model = PoeVae<'static, Expert, Dec, [f32; 16]>;
type Scratch = <Model as VaeModel>::Scratch;

fn dense<const I: usize, const O: usize>(rng: &mut TestRng, act: Activation) -> Dense<I, O> {
    common::normal_dense(rng, 1.0, 0.0, act)
}

fn model(seed: u64, shifts: [f32; 16]) -> Model {
    let mut rng = TestRng(seed);
    let experts: Vec<Expert> = (0..2)
        .map(|_| TypedExpert {
            body: dense(&mut rng, Activation::Relu),
            mu_head: dense(&mut rng, Activation::Identity),
            logvar_head: Chain::new(dense(&mut rng, Activation::Identity), Precision),
        })
        .collect();
    let decoder = TypedDecoder(Chain::new(
        dense(&mut rng, Activation::Relu),
        dense(&mut rng, Activation::Identity),
    ));
    let logvar_x: Vec<f32> = (0..X).map(|_| (0.3 * rng.normal()) as f32).collect();
    let mut inv_var = vec![0.0f32; X];
    decoder_noise(&logvar_x, &mut inv_var).unwrap();
    let groups = groups();
    let mut group_log_norm = Vec::new();
    for g in 0..2 {
        let lv: Vec<f32> = (0..X)
            .filter(|i| groups.channels(g).contains(i % C))
            .map(|i| logvar_x[i])
            .collect();
        let mut iv = vec![0.0f32; lv.len()];
        group_log_norm.push(decoder_noise(&lv, &mut iv).unwrap());
    }
    PoeVae::new(
        Box::leak(experts.into_boxed_slice()),
        leak([decoder]),
        groups,
        C,
        Box::leak(inv_var.into_boxed_slice()),
        Box::leak(group_log_norm.into_boxed_slice()),
        leak(shifts),
    )
}

fn groups() -> SensorGroups {
    SensorGroups::new(&[ChannelMask(0b0101), ChannelMask(0b1010)]).unwrap()
}

fn scratch() -> Scratch {
    PoeScratch {
        experts: Expert::SCRATCH,
        decoder: <Chain<Dense<Z, HD>, Dense<HD, X>, HD> as tinyvae::Layer<Z, X>>::SCRATCH,
        gather: [0.0; 16],
        means: [0.0; 16],
        precisions: [0.0; 16],
    }
}

fn window(rng: &mut TestRng) -> [f32; X] {
    core::array::from_fn(|_| rng.normal() as f32)
}

#[test]
fn sensor_groups_are_validated() {
    assert_eq!(SensorGroups::new(&[]), Err(Error::InvalidParameter));
    assert_eq!(
        SensorGroups::new(&[ChannelMask(1), ChannelMask(3)]),
        Err(Error::InvalidParameter)
    );
    assert_eq!(
        SensorGroups::new(&[ChannelMask(1), ChannelMask(0)]),
        Err(Error::InvalidParameter)
    );
    assert_eq!(
        SensorGroups::new(&[1, 2, 4, 8, 16].map(ChannelMask)),
        Err(Error::InvalidParameter)
    );
    let g = SensorGroups::new(&[1, 2, 4, 8].map(ChannelMask)).unwrap();
    assert_eq!(g.all(), GroupSet(15));
    assert_eq!(SensorGroups::SINGLE.all(), GroupSet(1));
    let f = tinyvae::Faults {
        non_finite: ChannelMask(0b0100),
        stuck: ChannelMask(0b0010),
        ..Default::default()
    };
    assert_eq!(groups().healthy(&f, false), GroupSet(0b10));
    assert_eq!(groups().healthy(&f, true), GroupSet::EMPTY);
    assert_eq!(SensorGroups::SINGLE.healthy(&f, false), GroupSet::EMPTY);
    let gap = tinyvae::Faults {
        gap: true,
        ..Default::default()
    };
    assert_eq!(groups().healthy(&gap, false), GroupSet::EMPTY);
}

#[test]
fn fusion_is_bit_identical_to_product_of_experts() {
    let mut rng = TestRng(7);
    for _ in 0..200 {
        let experts: [DiagGaussian<Z>; 4] = core::array::from_fn(|_| DiagGaussian {
            mean: core::array::from_fn(|_| (3.0 * rng.normal()) as f32),
            // Within the clamp of the model's log-variances (the unscaled case of the product).
            logvar: core::array::from_fn(|_| ((4.0 * rng.normal()) as f32).clamp(-16.0, 16.0)),
        });
        let means: Vec<f32> = experts.iter().flat_map(|e| e.mean).collect();
        let logvars: Vec<f32> = experts.iter().flat_map(|e| e.logvar).collect();
        for bits in 0..16u8 {
            let set = GroupSet(bits);
            let mask: Vec<bool> = (0..4).map(|g| set.contains(g)).collect();
            let mut want = DiagGaussian::<Z> {
                mean: [0.0; Z],
                logvar: [0.0; Z],
            };
            product_of_experts(&experts, Some(&mask), true, &mut want).unwrap();
            let (mut mu, mut lv) = ([0.0f32; Z], [0.0f32; Z]);
            fuse_experts(&means, &logvars, set, &mut mu, &mut lv).unwrap();
            assert_eq!(mu.map(f32::to_bits), want.mean.map(f32::to_bits), "{bits}");
            assert_eq!(
                lv.map(f32::to_bits),
                want.logvar.map(f32::to_bits),
                "{bits}"
            );
        }
    }
}

/// The int8 experts' precision table gives, for every code, the bits of the f32 path (the code
/// dequantized, then [`expert_precision`]), clamp included; and the fusion of precisions is the
/// fusion of the log-variances they come from.
#[test]
fn precision_table_matches_dequantize_then_exp() {
    for (scale, zp) in [(0.040125478f32, 127), (0.2, -11), (0.0625, 0), (1e-3, -128)] {
        let qp = QParams::new(scale, zp);
        let table = precision_table(qp);
        let codes: [i8; 256] = core::array::from_fn(|i| (i as i32 - 128) as i8);
        let mut lut = [0.0f32; 256];
        PrecisionLut::<256>::new(&table).forward(&codes, &mut lut, &mut ());
        let mut lv = [0.0f32; 256];
        Dequantize::<256>::new(qp).forward(&codes, &mut lv, &mut ());
        let mut f32_path = [0.0f32; 256];
        Precision::<256>.forward(&lv, &mut f32_path, &mut ());
        for (i, &q) in codes.iter().enumerate() {
            let want = expert_precision(dequantize(q, qp));
            assert_eq!(lut[i].to_bits(), want.to_bits(), "code {q}, scale {scale}");
            assert_eq!(
                f32_path[i].to_bits(),
                want.to_bits(),
                "code {q}, scale {scale}"
            );
        }
    }
    // Clamped to -16..=16, NaN as 16.
    assert_eq!(expert_precision(-40.0), tinyvae::math::exp(16.0));
    assert_eq!(expert_precision(40.0), tinyvae::math::exp(-16.0));
    assert_eq!(expert_precision(f32::NAN), tinyvae::math::exp(-16.0));
    let mut rng = TestRng(11);
    for _ in 0..100 {
        let means: Vec<f32> = (0..4 * Z).map(|_| (3.0 * rng.normal()) as f32).collect();
        let logvars: Vec<f32> = (0..4 * Z).map(|_| (8.0 * rng.normal()) as f32).collect();
        let prec: Vec<f32> = logvars.iter().map(|&l| expert_precision(l)).collect();
        for bits in 0..16u8 {
            let (mut a, mut la) = ([0.0f32; Z], [0.0f32; Z]);
            let (mut b, mut lb) = ([0.0f32; Z], [0.0f32; Z]);
            fuse_experts(&means, &logvars, GroupSet(bits), &mut a, &mut la).unwrap();
            fuse_precisions(&means, &prec, GroupSet(bits), &mut b, &mut lb).unwrap();
            assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
            assert_eq!(la.map(f32::to_bits), lb.map(f32::to_bits));
        }
    }
}

// ---- f64 reference ----

fn dense_f64<const I: usize, const O: usize>(d: &Dense<I, O>, x: &[f64]) -> Vec<f64> {
    (0..O)
        .map(|o| {
            let s: f64 = (0..I)
                .map(|i| f64::from(d.weights[o][i]) * x[i])
                .sum::<f64>()
                + f64::from(d.bias[o]);
            if d.activation == Activation::Relu {
                s.max(0.0)
            } else {
                s
            }
        })
        .collect()
}

/// `-ELBO_S` in f64: experts, product with the prior, decode at the mean, likelihood over the
/// present groups' features (with the model's autoregressive noise, if any), KL.
fn elbo_f64(m: &Model, x: &[f32; X], set: GroupSet) -> f64 {
    let mut prec = [1.0f64; Z];
    let mut num = [0.0f64; Z];
    for g in set.iter() {
        let xg: Vec<f64> = (0..X)
            .filter(|i| m.groups.channels(g).contains(i % C))
            .map(|i| f64::from(x[i]))
            .collect();
        let e = &m.experts[g];
        let h = dense_f64(&e.body, &xg);
        let mu = dense_f64(&e.mu_head, &h);
        let lv = dense_f64(&e.logvar_head.first, &h);
        for k in 0..Z {
            let t = (-lv[k].clamp(-16.0, 16.0)).exp();
            prec[k] += t;
            num[k] += t * mu[k];
        }
    }
    let mu: Vec<f64> = (0..Z).map(|k| num[k] / prec[k]).collect();
    let lv: Vec<f64> = prec.iter().map(|p| -p.ln()).collect();
    let h = dense_f64(&m.decoders[0].0.first, &mu);
    let mean = dense_f64(&m.decoders[0].0.second, &h);
    let used = m.groups.channels_of(set);
    let d: Vec<f64> = (0..X).map(|i| f64::from(x[i]) - mean[i]).collect();
    let p = m.ar_order;
    let mut ll = 0.0;
    for i in 0..X {
        let (t, ch) = (i / C, i % C);
        if used.contains(ch) {
            let mut nu = d[i];
            if p > 0 && t >= p {
                for k in 1..=p {
                    nu -= f64::from(m.ar[ch * p + k - 1]) * d[(t - k) * C + ch];
                }
            }
            let iv = f64::from(m.inv_var[i]);
            ll += -0.5 * (1.837_877_066_409_345_5 - iv.ln() + nu * nu * iv);
        }
    }
    let kl: f64 = (0..Z)
        .map(|k| 0.5 * (mu[k] * mu[k] + lv[k].exp() - 1.0 - lv[k]))
        .sum();
    kl - ll
}

/// Over 50 random windows and every subset: the worst relative error of the library's
/// `-ELBO_S` of `m` against [`elbo_f64`], and the largest `|elbo_f64(m) - elbo_f64(other)|`.
fn worst_against_f64(m: &Model, other: &Model) -> (f64, f64) {
    let mut ws = Workspace::<Scratch, X, Z>::new(scratch());
    let mut rng = TestRng(3);
    let (mut worst, mut moved) = (0.0f64, 0.0f64);
    for _ in 0..50 {
        let x = window(&mut rng);
        for bits in 1..4u8 {
            let set = GroupSet(bits);
            let s = ws
                .score_groups(m, &x, set, ScoreKind::Elbo, &mut window_rng(0, 0))
                .unwrap();
            let want = elbo_f64(m, &x, set);
            worst = worst.max((f64::from(s.score) - want).abs() / want.abs().max(1.0));
            moved = moved.max((want - elbo_f64(other, &x, set)).abs());
        }
    }
    (worst, moved)
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "checks libm accuracy against f64; fast-math trades it for speed"
)]
#[test]
fn subset_elbo_matches_the_f64_reference() {
    let m = model(11, [0.0; 16]);
    let (worst, _) = worst_against_f64(&m, &m);
    println!("worst relative error of -ELBO_S vs f64: {worst:.2e}");
    assert!(worst < 2e-5, "{worst}");
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "checks libm accuracy against f64; fast-math trades it for speed"
)]
#[test]
fn subset_elbo_with_autoregressive_noise_matches_the_f64_reference() {
    // W = 4 steps: order 1 and 2 (order 3 leaves one predicted step).
    for (p, coef) in [
        (1usize, &[0.8f32, -0.4, 0.5, 0.2][..]),
        (2, &[0.6f32, 0.2, -0.3, 0.1, 0.9, -0.5, 0.0, 0.4][..]),
    ] {
        let plain = model(11, [0.0; 16]);
        let m = plain.with_ar(p, leak(coef.to_vec()));
        let (worst, moved) = worst_against_f64(&m, &plain);
        println!("order {p}: worst relative error of -ELBO_S vs f64 {worst:.2e}");
        assert!(worst < 2e-5, "{worst}");
        // The noise model is used: the scores differ from the diagonal model's.
        assert!(moved > 0.1, "{moved}");
    }
}

#[test]
fn full_set_score_is_the_plain_score_and_empty_set_is_refused() {
    let m = model(5, [0.0; 16]);
    let mut ws = Workspace::<Scratch, X, Z>::new(scratch());
    let mut rng = TestRng(9);
    let x = window(&mut rng);
    for kind in [ScoreKind::Elbo, ScoreKind::Iwae { samples: 4 }] {
        let a = ws.score(&m, &x, kind, &mut window_rng(1, 2)).unwrap();
        let b = ws
            .score_groups(&m, &x, GroupSet(3), kind, &mut window_rng(1, 2))
            .unwrap();
        assert_eq!(a, b);
    }
    assert_eq!(
        ws.score_groups(
            &m,
            &x,
            GroupSet::EMPTY,
            ScoreKind::Elbo,
            &mut window_rng(0, 0)
        ),
        Err(Error::Empty)
    );
    // The absent group's values do not matter.
    let mut y = x;
    for i in (1..X).step_by(2) {
        y[i] = 100.0;
    }
    let a = ws
        .score_groups(&m, &x, GroupSet(1), ScoreKind::Elbo, &mut window_rng(0, 0))
        .unwrap();
    let b = ws
        .score_groups(&m, &y, GroupSet(1), ScoreKind::Elbo, &mut window_rng(0, 0))
        .unwrap();
    assert_eq!(a, b);
}

type Det = Detector<Model, Workspace<Scratch, X, Z>, C, W, X>;

#[test]
fn detector_scores_the_healthy_groups_and_skips_when_none_is_left() {
    let m: &'static Model = leak(model(21, {
        let mut s = [0.0f32; 16];
        s[1] = 1000.0;
        s[2] = -5.0;
        s
    }));
    let cfg = DetectorConfig::new(
        ScoreKind::Elbo,
        2,
        Normalizer::identity(),
        AlarmConfig::threshold(500.0),
    );
    let mut det: Det = Detector::new(cfg, Workspace::new(scratch()));
    let mut ws = Workspace::<Scratch, X, Z>::new(scratch());
    let mut rng = TestRng(4);
    let mut seen = [0usize; 4];
    for i in 0..80u64 {
        let mut s: [f32; C] = core::array::from_fn(|_| rng.normal() as f32);
        if (20..24).contains(&i) {
            s[1] = f32::NAN; // group 1 dies
        }
        if (40..42).contains(&i) {
            s[2] = f32::INFINITY; // group 0 dies
        }
        if i == 60 {
            s = [f32::NAN; C]; // both die
        }
        let r = match det.push(m, &s).unwrap() {
            Some(r) => r,
            None => continue,
        };
        seen[r.groups.index()] += 1;
        let start = r.start;
        let expect = match start {
            _ if (start..r.end).contains(&60) => GroupSet::EMPTY,
            _ if (start..r.end).any(|j| (20..24).contains(&j)) => GroupSet(1),
            _ if (start..r.end).any(|j| (40..42).contains(&j)) => GroupSet(2),
            _ => GroupSet(3),
        };
        assert_eq!(r.groups, expect, "window {}", r.window);
        if expect.is_empty() {
            assert!(r.score.is_none());
            continue;
        }
        let x: [f32; X] = det.last_input().to_owned();
        let want = ws
            .score_groups(m, &x, expect, ScoreKind::Elbo, &mut window_rng(0, r.window))
            .unwrap();
        assert_eq!(r.score, Some(want));
        let level = r.level.unwrap();
        assert_eq!(level, want.score + m.threshold_shift(expect));
        assert_eq!(r.alarm, level > 500.0);
    }
    assert!(
        seen[1] > 0 && seen[2] > 0 && seen[3] > 0 && seen[0] > 0,
        "{seen:?}"
    );
}

/// The top channel among a subset's channels: the first maximum, NaN never wins, `None` for a
/// mask without any of the window's channels; and on a window scored without group 1 it names
/// a channel of group 0 even where a dead channel's placeholder contributes most.
#[test]
fn attribution_among_the_present_groups() {
    let a = tinyvae::ChannelAttribution::<4> {
        window: 0,
        channels: [5.0, f32::NAN, 1.0, 9.0],
        top_channel: 3,
        top_step: 0,
    };
    assert_eq!(a.top_channel_among(ChannelMask(0b1111)), Some(3));
    assert_eq!(a.top_channel_among(ChannelMask(0b0101)), Some(0));
    assert_eq!(a.top_channel_among(ChannelMask(0b0110)), Some(2));
    assert_eq!(a.top_channel_among(ChannelMask(0b0010)), Some(1));
    assert_eq!(a.top_channel_among(ChannelMask(0b1_0000)), None);

    let m = model(5, [0.0; 16]);
    let cfg = DetectorConfig::new(
        ScoreKind::Elbo,
        W as u32,
        Normalizer::identity(),
        AlarmConfig::threshold(1e9),
    );
    let mut det: Detector<Model, Workspace<Scratch, X, Z>, C, W, X> =
        Detector::new(cfg, Workspace::new(scratch()));
    let mut rng = TestRng(9);
    let mut checked = 0;
    for i in 0..4 * W {
        // Group 1 (channels 1, 3) dead in the second window, with a huge placeholder before.
        let mut x: [f32; C] = core::array::from_fn(|_| rng.normal() as f32);
        if i == W - 1 {
            x[3] = 1e3;
        }
        if (W..2 * W).contains(&i) {
            x[1] = f32::NAN;
            x[3] = f32::NAN;
        }
        if let Some(r) = det.push(&m, &x).unwrap() {
            if r.groups == GroupSet(1) {
                let a = det.attribute(&m).unwrap();
                let top = a.top_channel_among(groups().channels_of(r.groups)).unwrap();
                assert!(groups().channels(0).contains(top), "{a:?}");
                // Over all channels the dead one's placeholder wins: the filter matters.
                assert_eq!(a.top_channel, 3, "{a:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

/// An expert that passes its sub-window through as `mu` with precision 1: with one group
/// present the fused mean is exactly half the gathered sub-window.
struct Probe;

impl tinyvae::ExpertEncoder for Probe {
    type Scratch = ();
    fn input_dim(&self) -> usize {
        12
    }
    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        precision: &mut [f32],
        _: &mut (),
    ) -> Result<(), Error> {
        mu.copy_from_slice(x);
        precision.fill(1.0);
        Ok(())
    }
}

/// The gather of a group's sub-window (`x_g[t |M_g| + j] = x[t C + M_g[j]]`), on the path for
/// three adjacent channels (a 3-axis sensor, at offset 0 and 1) and on the general one.
#[test]
fn group_sub_windows_are_gathered_by_channel() {
    const C6: usize = 6;
    const X6: usize = 4 * C6;
    type ProbeModel = PoeVae<'static, Probe, TypedDecoder<Dense<12, X6>, 12, X6>, [f32; 24]>;
    let mut rng = TestRng(5);
    let decoder = TypedDecoder(dense::<12, X6>(&mut rng, Activation::Identity));
    for masks in [
        [0b000_111, 0b111_000],
        [0b001_110, 0b110_001],
        [0b010_101, 0b101_010],
    ] {
        let groups = SensorGroups::new(&masks.map(ChannelMask)).unwrap();
        let m: ProbeModel = PoeVae::new(
            leak([Probe, Probe]),
            leak([decoder]),
            groups,
            C6,
            leak([1.0f32; X6]),
            leak([0.0f32; 2]),
            leak([0.0f32; 16]),
        );
        let mut scratch = PoeScratch {
            experts: (),
            decoder: <Dense<12, X6> as Layer<12, X6>>::SCRATCH,
            gather: [0.0f32; 24],
            means: [0.0f32; 24],
            precisions: [0.0f32; 24],
        };
        let x: [f32; X6] = core::array::from_fn(|_| rng.normal() as f32);
        for g in 0..2 {
            let chans: Vec<usize> = (0..C6)
                .filter(|&c| groups.channels(g).contains(c))
                .collect();
            let want: Vec<f32> = x
                .chunks_exact(C6)
                .flat_map(|s| chans.iter().map(move |&c| s[c]))
                .collect();
            let (mut mu, mut lv) = ([0.0f32; 12], [0.0f32; 12]);
            m.encode_groups(&x, GroupSet(1 << g), &mut mu, &mut lv, &mut scratch)
                .unwrap();
            let got: Vec<f32> = mu.iter().map(|v| 2.0 * v).collect();
            assert_eq!(got, want, "groups {masks:?}, group {g}");
        }
    }
}

/// One decoder per group: group `g`'s decoder writes its sub-window's features into place,
/// `mean[t C + M_g[j]] = D_g(z)[t |M_g| + j]` (3-axis path at offsets 0 and 1, general path),
/// and a decoder count that is neither 1 nor the group count is refused.
#[test]
fn group_decoders_write_their_channels() {
    const C6: usize = 6;
    const X6: usize = 4 * C6;
    const XG6: usize = 4 * 3;
    type GroupDec = TypedDecoder<Dense<Z, XG6>, Z, XG6>;
    type SplitModel = PoeVae<'static, Probe, GroupDec, [f32; 24]>;
    let mut rng = TestRng(9);
    let decoders: &'static [GroupDec; 2] = leak([
        TypedDecoder(dense::<Z, XG6>(&mut rng, Activation::Identity)),
        TypedDecoder(dense::<Z, XG6>(&mut rng, Activation::Identity)),
    ]);
    let z: [f32; Z] = core::array::from_fn(|_| rng.normal() as f32);
    let outs: Vec<[f32; XG6]> = decoders
        .iter()
        .map(|d| {
            let mut o = [0.0f32; XG6];
            d.0.forward(&z, &mut o, &mut ()); // a dense layer has no scratch
            o
        })
        .collect();
    for masks in [
        [0b000_111, 0b111_000],
        [0b001_110, 0b110_001],
        [0b010_101, 0b101_010],
    ] {
        let groups = SensorGroups::new(&masks.map(ChannelMask)).unwrap();
        let mut scratch = PoeScratch {
            experts: (),
            decoder: <Dense<Z, XG6> as Layer<Z, XG6>>::SCRATCH,
            gather: [0.0f32; 24],
            means: [0.0f32; 24],
            precisions: [0.0f32; 24],
        };
        let mut want = [f32::NAN; X6];
        for g in 0..2 {
            let chans: Vec<usize> = (0..C6)
                .filter(|&c| groups.channels(g).contains(c))
                .collect();
            for t in 0..4 {
                for (j, &c) in chans.iter().enumerate() {
                    want[t * C6 + c] = outs[g][t * 3 + j];
                }
            }
        }
        let m: SplitModel = PoeVae::new(
            leak([Probe, Probe]),
            decoders,
            groups,
            C6,
            leak([1.0f32; X6]),
            leak([0.0f32; 2]),
            leak([0.0f32; 16]),
        );
        let mut mean = [0.0f32; X6];
        m.decode(&z, &mut mean, &mut scratch).unwrap();
        assert_eq!(mean, want, "groups {masks:?}");
        // A degraded window decodes its present groups only; the others' features are 0.
        for g in 0..2 {
            let mut part = [f32::NAN; X6];
            m.decode_groups(&z, GroupSet(1 << g), &mut part, &mut scratch)
                .unwrap();
            for c in 0..C6 {
                for t in 0..4 {
                    let i = t * C6 + c;
                    let expect = if groups.channels(g).contains(c) {
                        want[i]
                    } else {
                        0.0
                    };
                    assert_eq!(
                        part[i], expect,
                        "groups {masks:?}, present {g}, feature {i}"
                    );
                }
            }
        }
        let three: SplitModel = PoeVae::new(
            leak([Probe, Probe]),
            leak([decoders[0], decoders[1], decoders[0]]),
            groups,
            C6,
            leak([1.0f32; X6]),
            leak([0.0f32; 2]),
            leak([0.0f32; 16]),
        );
        assert_eq!(
            three.decode(&z, &mut mean, &mut scratch),
            Err(Error::InvalidParameter)
        );
    }
}
