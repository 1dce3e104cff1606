//! The mixture of expert VAEs (`Moe`, `SummaryGate`, `dense_score`): top-1 score against an f64
//! closed form of `-(ln pi_k + ELBO_k)`, the dense score against an f64 log-sum-exp, the bound
//! order, and the streaming detector running a mixture (the `expert` of each report).
//! Figures: `cargo test --test moe_vae -- --nocapture`.

#![allow(clippy::needless_range_loop)]

mod common;
use common::{leak, SplitMix as TestRng};
use tinyvae::{
    decoder_noise, dense_score, window_rng, Activation, AlarmConfig, Buffers, Dense, Detector,
    DetectorConfig, Error, Moe, MoeScratch, NormalSampler, Normalizer, ScoreKind, SummaryGate, Vae,
    VaeModel, Workspace,
};

const C: usize = 2;
const W: usize = 3;
const X: usize = W * C;
const H: usize = 5;
const Z: usize = 2;
const K: usize = 3;

type Expert = Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Dense<Z, X>, X, H, Z>;

fn dense<const I: usize, const O: usize>(
    rng: &mut TestRng,
    bias: f32,
    act: Activation,
) -> Dense<I, O> {
    common::normal_dense(rng, 1.0, bias, act)
}

fn expert(seed: u64) -> Expert {
    let mut rng = TestRng(seed);
    let enc = dense::<X, H>(&mut rng, 0.0, Activation::Relu);
    let mu = dense::<H, Z>(&mut rng, 0.0, Activation::Identity);
    let lv = dense::<H, Z>(&mut rng, -1.0, Activation::Identity);
    let dec = dense::<Z, X>(&mut rng, 0.0, Activation::Identity);
    let mut logvar_x = [0.0f32; X];
    for v in logvar_x.iter_mut() {
        *v = (0.3 * rng.normal()) as f32;
    }
    let mut inv_var = [0.0f32; X];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    Vae::new(enc, mu, lv, dec, leak(inv_var), log_norm)
}

fn experts() -> &'static [Expert; K] {
    leak([expert(1), expert(2), expert(3)])
}

fn gate(seed: u64) -> SummaryGate<'static> {
    let mut rng = TestRng(seed);
    let w: Vec<f32> = (0..K * 2 * C)
        .map(|_| (2.0 * rng.normal()) as f32)
        .collect();
    let b: Vec<f32> = (0..K).map(|_| (0.5 * rng.normal()) as f32).collect();
    SummaryGate::new(leak(w), leak(b), C)
}

fn f64_layer<const I: usize, const O: usize>(d: &Dense<I, O>, x: &[f64]) -> Vec<f64> {
    (0..O)
        .map(|o| {
            let a = f64::from(d.bias[o])
                + (0..I)
                    .map(|i| f64::from(d.weights[o][i]) * x[i])
                    .sum::<f64>();
            if d.activation == Activation::Relu {
                a.max(0.0)
            } else {
                a
            }
        })
        .collect()
}

/// `ELBO_k(x)` (deterministic, `z = mu`) of a typed expert, in f64 from its weights.
fn elbo_f64(e: &Expert, x: &[f32]) -> f64 {
    let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let h = f64_layer(&e.encoder, &xd);
    let mu = f64_layer(&e.mu_head, &h);
    let lv = f64_layer(&e.logvar_head, &h);
    let mean = f64_layer(&e.decoder, &mu);
    let recon = f64::from(e.log_norm)
        - 0.5
            * (0..X)
                .map(|i| (xd[i] - mean[i]).powi(2) * f64::from(e.inv_var[i]))
                .sum::<f64>();
    let kl = 0.5
        * (0..Z)
            .map(|j| mu[j] * mu[j] + lv[j].exp() - 1.0 - lv[j])
            .sum::<f64>();
    recon - kl
}

/// The gate's log-softmax in f64.
fn log_pi_f64(g: &SummaryGate<'_>, x: &[f32]) -> Vec<f64> {
    let mut f = [0.0f64; 2 * C];
    for t in 0..W {
        for c in 0..C {
            let v = f64::from(x[t * C + c]);
            f[c] += v / W as f64;
            f[C + c] += v * v / W as f64;
        }
    }
    let a: Vec<f64> = (0..K)
        .map(|k| {
            f64::from(g.bias[k])
                + (0..2 * C)
                    .map(|j| f64::from(g.weight[k * 2 * C + j]) * f[j])
                    .sum::<f64>()
        })
        .collect();
    let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + a.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    a.iter().map(|v| v - lse).collect()
}

fn window(rng: &mut TestRng, scale: f64) -> [f32; X] {
    let mut x = [0.0f32; X];
    for v in x.iter_mut() {
        *v = (scale * rng.normal()) as f32;
    }
    x
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "checks libm accuracy against f64; fast-math trades it for speed"
)]
#[test]
fn top1_and_dense_scores_match_f64_references() {
    let ex = experts();
    let g = gate(11);
    let moe = Moe::new(g, ex);
    moe.validate().unwrap();
    let mut ws: Workspace<_, X, Z> = Workspace::new(MoeScratch::new(Expert::SCRATCH));
    let mut single: Workspace<_, X, Z> = Workspace::new(Expert::SCRATCH);
    let mut rng = TestRng(5);
    let (mut worst_top1, mut worst_dense) = (0.0f64, 0.0f64);
    let mut routed = [0usize; K];
    for case in 0..400 {
        let x = window(&mut rng, 0.5 + (case % 4) as f64);
        let mut r = window_rng(3, case);
        let s = ws.score(&moe, &x, ScoreKind::Elbo, &mut r).unwrap();
        let route = ws.scratch().route;
        let lp = log_pi_f64(&g, &x);
        let k = usize::from(route.expert);
        routed[k] += 1;
        // The gate picks the f64 argmax (ties have probability 0 here).
        let best = (0..K).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap();
        assert_eq!(k, best, "case {case}");
        assert!((f64::from(route.log_weight) - lp[k]).abs() < 1e-5);
        // Top-1 = -(ln pi_k + ELBO_k), and the expert alone scores -ELBO_k bit for bit.
        let t: Vec<f64> = (0..K).map(|j| lp[j] + elbo_f64(&ex[j], &x)).collect();
        let reference = -t[k];
        let rel = (f64::from(s.score) - reference).abs() / reference.abs().max(1.0);
        worst_top1 = worst_top1.max(rel);
        assert!(rel < 1e-5, "case {case}: {} vs {reference}", s.score);
        let alone = single
            .score(&ex[k], &x, ScoreKind::Elbo, &mut window_rng(3, case))
            .unwrap();
        assert_eq!(s.score, alone.score - route.log_weight);
        // Dense = -LSE_j(ln pi_j + ELBO_j), never above top-1.
        let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let dense_ref = -(m + t.iter().map(|v| (v - m).exp()).sum::<f64>().ln());
        let (d, arg) = dense_f32(&g, ex, &x, ScoreKind::Elbo, 3, case);
        let rel = (f64::from(d) - dense_ref).abs() / dense_ref.abs().max(1.0);
        worst_dense = worst_dense.max(rel);
        assert!(rel < 1e-5, "case {case}: dense {d} vs {dense_ref}");
        assert!(
            d <= s.score,
            "case {case}: dense {d} above top-1 {}",
            s.score
        );
        let best_term = (0..K).max_by(|&a, &b| t[a].total_cmp(&t[b])).unwrap();
        assert_eq!(usize::from(arg), best_term);
    }
    assert!(
        routed.iter().all(|&n| n > 0),
        "every expert routed to: {routed:?}"
    );
    println!("top-1 vs f64: max rel {worst_top1:.2e}; dense vs f64: max rel {worst_dense:.2e}; routed {routed:?}");
}

fn dense_f32(
    g: &SummaryGate<'_>,
    ex: &[Expert],
    x: &[f32],
    kind: ScoreKind,
    seed: u64,
    w: u64,
) -> (f32, u8) {
    let (mut mu, mut lv, mut z, mut eps, mut mean) =
        ([0.0; Z], [0.0; Z], [0.0; Z], [0.0; Z], [0.0; X]);
    let buf = Buffers {
        mu: &mut mu,
        logvar: &mut lv,
        z: &mut z,
        eps: &mut eps,
        mean: &mut mean,
    };
    let mut scratch = Expert::SCRATCH;
    dense_score(
        g,
        ex,
        x,
        kind,
        buf,
        &mut scratch,
        &mut NormalSampler::new(),
        &window_rng(seed, w),
    )
    .unwrap()
}

#[test]
fn sampled_kinds_add_the_log_weight_to_the_routed_experts_bound() {
    let ex = experts();
    let moe = Moe::new(gate(12), ex);
    let mut ws: Workspace<_, X, Z> = Workspace::new(MoeScratch::new(Expert::SCRATCH));
    let mut single: Workspace<_, X, Z> = Workspace::new(Expert::SCRATCH);
    let mut rng = TestRng(8);
    for case in 0..50 {
        let x = window(&mut rng, 1.0);
        for kind in [
            ScoreKind::Iwae { samples: 8 },
            ScoreKind::ElboSampled { samples: 4 },
        ] {
            ws.reset_sampler();
            single.reset_sampler();
            let s = ws.score(&moe, &x, kind, &mut window_rng(1, case)).unwrap();
            let r = ws.scratch().route;
            let e = &ex[usize::from(r.expert)];
            let a = single.score(e, &x, kind, &mut window_rng(1, case)).unwrap();
            assert_eq!(s.score, a.score - r.log_weight);
            assert_eq!((s.recon, s.kl), (a.recon, a.kl));
            // Dense with one draw sequence per expert is at most top-1 for the IWAE too.
            let (d, _) = dense_f32(&moe.gate, ex, &x, kind, 1, case);
            assert!(d <= s.score + 1e-4 * s.score.abs());
        }
    }
}

#[test]
fn one_expert_is_the_single_vae_and_bad_gates_are_refused() {
    let ex: &'static [Expert; 1] = leak([expert(4)]);
    let g = SummaryGate::new(leak([0.3f32; 2 * C]), leak([0.0f32]), C);
    let moe = Moe::new(g, ex);
    let mut ws: Workspace<_, X, Z> = Workspace::new(MoeScratch::new(Expert::SCRATCH));
    let mut single: Workspace<_, X, Z> = Workspace::new(Expert::SCRATCH);
    let mut rng = TestRng(9);
    for case in 0..20 {
        let x = window(&mut rng, 1.0);
        let a = ws
            .score(&moe, &x, ScoreKind::Elbo, &mut window_rng(0, case))
            .unwrap();
        let b = single
            .score(&ex[0], &x, ScoreKind::Elbo, &mut window_rng(0, case))
            .unwrap();
        // ln pi = 0 with one expert: the same bits.
        assert_eq!(a.score.to_bits(), b.score.to_bits());
    }
    // Expert count and gate rows disagree; channels that do not divide X; NaN weights.
    let two = Moe::new(gate(1), ex);
    assert!(matches!(two.validate(), Err(Error::ShapeMismatch { .. })));
    let odd = SummaryGate::new(leak([0.0f32; 2 * 4]), leak([0.0f32]), 4);
    assert_eq!(Moe::new(odd, ex).validate(), Err(Error::InvalidModel));
    let nan = SummaryGate::new(leak([f32::NAN; 2 * C]), leak([0.0f32]), C);
    assert!(matches!(nan.validate(), Err(Error::NonFinite { .. })));
    let none = SummaryGate::new(&[], &[], C);
    assert_eq!(none.validate(), Err(Error::InvalidParameter));
    let x = [0.0f32; X];
    assert!(matches!(nan.route(&x), Err(Error::NonFinite { .. })));
    assert!(matches!(g.route(&x[..5]), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn the_detector_runs_a_mixture_and_reports_the_expert() {
    let ex = experts();
    let moe = Moe::new(gate(13), ex);
    let norm = Normalizer::from_std([0.0; C], [1.0; C]).unwrap();
    let cfg =
        DetectorConfig::new(ScoreKind::Elbo, 1, norm, AlarmConfig::threshold(1e9)).with_seed(2);
    let mut det: Detector<Moe<'_, Expert>, Workspace<MoeScratch<_>, X, Z>, C, W, X> =
        Detector::new(cfg, Workspace::new(MoeScratch::new(Expert::SCRATCH)));
    let mut ws: Workspace<_, X, Z> = Workspace::new(MoeScratch::new(Expert::SCRATCH));
    let mut rng = TestRng(21);
    let samples: Vec<[f32; C]> = (0..200)
        .map(|t| {
            let s = if t < 100 { 0.3 } else { 2.5 };
            [(s * rng.normal()) as f32, (s * rng.normal() + 0.5) as f32]
        })
        .collect();
    let mut seen = [0usize; K];
    for (i, s) in samples.iter().enumerate() {
        let Some(r) = det.push(&moe, s).unwrap() else {
            continue;
        };
        let mut x = [0.0f32; X];
        for t in 0..W {
            x[t * C..(t + 1) * C].copy_from_slice(&samples[i + 1 - W + t]);
        }
        let direct = ws
            .score(&moe, &x, ScoreKind::Elbo, &mut window_rng(2, r.window))
            .unwrap();
        assert_eq!(r.score.unwrap().score, direct.score);
        assert_eq!(r.expert, Some(ws.scratch().route.expert));
        seen[usize::from(r.expert.unwrap())] += 1;
        // Attribution uses the routed expert's decoder noise: channel sums equal
        // log_norm_k - ln p_k(x | mu).
        let a = det.attribute(&moe).unwrap();
        let e = &ex[usize::from(r.expert.unwrap())];
        let total: f32 = a.channels.iter().sum();
        assert!((total - (e.log_norm - direct.recon)).abs() < 1e-3 * total.abs().max(1.0));
    }
    assert!(seen.iter().filter(|&&n| n > 0).count() >= 2, "{seen:?}");
}

#[test]
fn a_single_vae_reports_no_expert() {
    let e = expert(6);
    let norm = Normalizer::from_std([0.0; C], [1.0; C]).unwrap();
    let cfg = DetectorConfig::new(ScoreKind::Elbo, 1, norm, AlarmConfig::threshold(1e9));
    let mut det: Detector<Expert, Workspace<_, X, Z>, C, W, X> =
        Detector::new(cfg, Workspace::new(Expert::SCRATCH));
    let mut n = 0;
    for t in 0..10 {
        if let Some(r) = det.push(&e, &[t as f32 * 0.1, 0.0]).unwrap() {
            assert_eq!(r.expert, None);
            assert!(r.score.is_some());
            n += 1;
        }
    }
    assert_eq!(n, 10 - W + 1);
    assert_eq!(e.input_dim(), X);
}
