//! The score API: each score against its formula recomputed from the same draws, determinism,
//! the typed model against a runtime-shaped one, errors and flags, and property tests on random
//! shapes. Figures: `cargo test --release --test score -- --nocapture`.
//!
//! Reproducing a sampled score: with `NormalSampler::new()` and `default_rng(seed)`, draw `l`
//! fills `eps` with Z normals, `z = reparameterize(mu, clamp(logvar), eps)`, `ll_l = ln p(x|z)`;
//! then `recon = (sum_l ll_l) / L` (f32, in order), `ELBO_L = recon - KL`,
//! `RP_L = ln(1/L sum_l exp(ll_l))`, `IWAE_L = ln(1/L sum_l w_l)` with
//! `ln w_l = ll_l - 1/2 sum_j (ln 2 pi + z_j^2) + 1/2 sum_j (ln 2 pi + logvar_j + eps_j^2)`.
//! The log-sum-exps are recomputed in f64; the f32 streaming ones must agree within
//! `lse_tol` (a few f32 roundings of the largest term).

use proptest::prelude::*;
use rand_core::Rng;
use tinyvae::{
    decoder_noise, default_rng, kl_std_normal, reparameterize, score, Activation, Buffers, Chain,
    Dense, DenseView, Error, NormalSampler, Score, ScoreKind, Vae, VaeModel, Workspace, LOGVAR_MAX,
    LOGVAR_MIN,
};

const X: usize = 6;
const H: usize = 8;
const Z: usize = 3;
const HD: usize = 8;

type Dec = Chain<Dense<Z, HD>, Dense<HD, X>, HD>;
type Model = Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Dec, X, H, Z>;
type Ws = Workspace<<Model as VaeModel>::Scratch, X, Z>;

/// Monte Carlo tolerance, in standard errors.
const SE_BOUND: f64 = 5.0;

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// Deterministic test data: splitmix64 (independent of the library's generator).
struct TestRng(u64);

impl TestRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / 16_777_216.0;
        lo + (hi - lo) * u
    }
}

fn dense<const I: usize, const O: usize>(
    rng: &mut TestRng,
    scale: f32,
    bias: f32,
    act: Activation,
) -> Dense<I, O> {
    let s = scale / (I as f32).sqrt();
    let w: [[f32; I]; O] = std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-s, s)));
    let b: [f32; O] = std::array::from_fn(|_| bias + rng.uniform(-0.1, 0.1));
    Dense::new(leak(w), leak(b), act)
}

/// A random typed VAE: tanh encoder, ReLU decoder.
fn model(seed: u64) -> Model {
    let mut rng = TestRng(seed);
    let enc = dense(&mut rng, 2.0, 0.0, Activation::Tanh);
    let mu = dense(&mut rng, 2.0, 0.0, Activation::Identity);
    let lv = dense(&mut rng, 1.0, -1.0, Activation::Identity);
    let dec = Chain::new(
        dense(&mut rng, 2.0, 0.0, Activation::Relu),
        dense(&mut rng, 2.0, 0.0, Activation::Identity),
    );
    let logvar_x: [f32; X] = std::array::from_fn(|_| rng.uniform(-1.0, 0.5));
    let mut inv_var = [0.0f32; X];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    Vae::new(enc, mu, lv, dec, leak(inv_var), log_norm)
}

fn input(rng: &mut TestRng) -> [f32; X] {
    std::array::from_fn(|_| rng.uniform(-2.0, 2.0))
}

fn scratch() -> <Model as VaeModel>::Scratch {
    Model::SCRATCH
}

fn ws() -> Ws {
    Workspace::new(Model::SCRATCH)
}

/// Scores with a fresh sampler state and `default_rng(seed)`.
fn seeded<V: VaeModel<Scratch = <Model as VaeModel>::Scratch>>(
    m: &V,
    x: &[f32; X],
    kind: ScoreKind,
    seed: u64,
) -> Result<Score, Error> {
    ws().score(m, x, kind, &mut default_rng(seed))
}

fn bits(s: &Score) -> (u32, u32, u32, bool, bool) {
    (
        s.score.to_bits(),
        s.recon.to_bits(),
        s.kl.to_bits(),
        s.clamped,
        s.overflow,
    )
}

const SAMPLED: [fn(u16) -> ScoreKind; 3] = [
    |samples| ScoreKind::ElboSampled { samples },
    |samples| ScoreKind::Iwae { samples },
    |samples| ScoreKind::ReconProb { samples },
];

fn all_kinds(samples: u16) -> [ScoreKind; 4] {
    [
        ScoreKind::Elbo,
        SAMPLED[0](samples),
        SAMPLED[1](samples),
        SAMPLED[2](samples),
    ]
}

/// `ln sum exp(v)` in f64.
fn lse64(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Relative error of the library's `exp`: micromath's, within 2.4e-3, with `fast-math` (see
/// `src/math.rs`); with libm it is within the f32 allowance below.
const EXP_REL: f64 = if cfg!(feature = "fast-math") {
    2.5e-3
} else {
    0.0
};

/// Allowance for an f32 log-sum-exp of `n` terms with largest magnitude `mag`, against f64:
/// rounding of the terms (a few ulp of `mag`), of the running sum (`n` u) and of `ln`, plus the
/// `exp` error, which moves `ln sum` by at most `EXP_REL` (for `n > 1`; one term needs no `exp`).
fn lse_tol(mag: f64, n: usize) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let exp = if n > 1 { 1.01 * EXP_REL } else { 0.0 };
    8.0 * u * (mag + 1.0) + 2.0 * n as f64 * u + exp
}

// ---------------------------------------------------------------- formulas from the same draws

/// One sampled score recomputed outside the library from the draws it must have made.
struct Replayed {
    recon: f32,
    recon_prob: f64,
    iwae: f64,
    mag: f64,
}

fn replay<V: VaeModel>(
    m: &V,
    scratch: &mut V::Scratch,
    x: &[f32],
    samples: u16,
    seed: u64,
) -> Replayed {
    let zd = m.latent_dim();
    let (mut mu, mut lv) = (vec![0.0f32; zd], vec![0.0f32; zd]);
    m.encode(x, &mut mu, &mut lv, scratch).unwrap();
    for v in lv.iter_mut() {
        *v = v.clamp(LOGVAR_MIN, LOGVAR_MAX);
    }
    let mut sampler = NormalSampler::new();
    let mut rng = default_rng(seed);
    let (mut eps, mut z, mut mean) = (vec![0.0f32; zd], vec![0.0f32; zd], vec![0.0; x.len()]);
    let (mut lls, mut lws) = (Vec::new(), Vec::new());
    let mut recon_sum = 0.0f32;
    let mut mag = 0.0f64;
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    for _ in 0..samples {
        sampler.fill(&mut rng, &mut eps);
        reparameterize(&mu, &lv, &eps, &mut z).unwrap();
        m.decode(&z, &mut mean, scratch).unwrap();
        let ll = m.noise().log_likelihood(x, &mean).unwrap();
        recon_sum += ll;
        let mut lw = f64::from(ll);
        // The library sums the log weight's terms in f32: its rounding error scales with the sum
        // of their magnitudes, not the largest one.
        let mut terms = f64::from(ll.abs());
        for j in 0..zd {
            let (zj, ej, lj) = (f64::from(z[j]), f64::from(eps[j]), f64::from(lv[j]));
            let lp = -0.5 * (ln_2pi + zj * zj);
            let lq = -0.5 * (ln_2pi + lj + ej * ej);
            lw += lp - lq;
            terms += lp.abs() + lq.abs();
        }
        mag = mag.max(terms);
        lls.push(f64::from(ll));
        lws.push(lw);
    }
    let ln_l = f64::from(samples).ln();
    Replayed {
        recon: recon_sum / f32::from(samples),
        recon_prob: lse64(&lls) - ln_l,
        iwae: lse64(&lws) - ln_l,
        mag: mag + ln_l,
    }
}

#[test]
fn sampled_scores_match_their_formulas_on_the_same_draws() {
    let m = model(1);
    let mut rng = TestRng(2);
    let mut worst = (0.0f64, 0.0f64);
    for case in 0..40u64 {
        let x = input(&mut rng);
        for samples in [1u16, 2, 7, 64] {
            let seed = 1000 + case;
            let r = replay(&m, &mut scratch(), &x, samples, seed);
            let mut w = ws();
            let rp = w.score(
                &m,
                &x,
                ScoreKind::ReconProb { samples },
                &mut default_rng(seed),
            );
            let rp = rp.unwrap();
            let kl = kl_std_normal(w.mu(), w.logvar()).unwrap();
            let iw = seeded(&m, &x, ScoreKind::Iwae { samples }, seed).unwrap();
            let el = seeded(&m, &x, ScoreKind::ElboSampled { samples }, seed).unwrap();
            let tol = lse_tol(r.mag, usize::from(samples));
            let e_rp = (-f64::from(rp.score) - r.recon_prob).abs();
            let e_iw = (-f64::from(iw.score) - r.iwae).abs();
            worst = (worst.0.max(e_rp / tol), worst.1.max(e_iw / tol));
            assert!(
                e_rp <= tol,
                "x = {x:?}, L = {samples}, seed {seed}: recon. prob. {} vs ln(1/L sum p(x|z_l)) \
                 = {} (tol {tol:e})",
                -rp.score,
                r.recon_prob
            );
            assert!(
                e_iw <= tol,
                "x = {x:?}, K = {samples}, seed {seed}: IWAE {} vs ln(1/K sum w_k) = {} \
                 (tol {tol:e})",
                -iw.score,
                r.iwae
            );
            // The mean log-likelihood is the same f32 sum for every sampled kind.
            for s in [&rp, &iw, &el] {
                assert_eq!(
                    s.recon.to_bits(),
                    r.recon.to_bits(),
                    "x = {x:?}, L = {samples}: recon {} vs replayed {}",
                    s.recon,
                    r.recon
                );
                assert_eq!(s.kl.to_bits(), kl.to_bits(), "kl {} vs {kl}", s.kl);
            }
            assert_eq!(
                el.score.to_bits(),
                (-(r.recon - kl)).to_bits(),
                "ELBO-{samples}: {} vs -(recon - kl) = {}",
                el.score,
                -(r.recon - kl)
            );
            // With one draw the reconstruction probability is that draw's log-likelihood.
            if samples == 1 {
                assert_eq!((-rp.score).to_bits(), r.recon.to_bits());
            }
            // A log-mean-exp is at least the mean: RP >= recon.
            assert!(-rp.score >= r.recon - 1e-5 * r.recon.abs());
        }
    }
    println!(
        "recon. prob. and IWAE vs f64 log-sum-exp of the replayed draws: worst error {:.2} and \
         {:.2} of the allowance",
        worst.0, worst.1
    );
}

#[test]
fn deterministic_elbo_is_recon_minus_kl() {
    let m = model(3);
    let mut rng = TestRng(4);
    for _ in 0..100 {
        let x = input(&mut rng);
        let mut w = ws();
        let s = w
            .score(&m, &x, ScoreKind::Elbo, &mut default_rng(0))
            .unwrap();
        let (mut mu, mut lv, mut mean) = ([0.0f32; Z], [0.0f32; Z], [0.0f32; X]);
        let mut sc = scratch();
        m.encode_array(&x, &mut mu, &mut lv, &mut sc);
        m.decode_array(&mu, &mut mean, &mut sc);
        let recon = m.noise().log_likelihood(&x, &mean).unwrap();
        let kl = kl_std_normal(&mu, &lv).unwrap();
        assert_eq!(
            bits(&s),
            bits(&Score {
                score: -(recon - kl),
                recon,
                kl,
                clamped: false,
                overflow: false
            }),
            "x = {x:?}: {s:?} vs recon {recon}, kl {kl}"
        );
        assert!(kl >= 0.0);
        assert_eq!((w.mu(), w.logvar(), w.mean()), (&mu, &lv, &mean));
        assert_eq!(w.decode_mu(&m).unwrap(), &mean);
        // The deterministic score draws no random numbers.
        let mut r = default_rng(9);
        w.score(&m, &x, ScoreKind::Elbo, &mut r).unwrap();
        assert_eq!(r.next_u32(), default_rng(9).next_u32());
    }
}

// ---------------------------------------------------------------- determinism and equivalence

/// The same model as a runtime-shaped [`VaeModel`] over [`DenseView`]s (the host tool's form).
#[derive(Clone, Debug)]
struct RtVae {
    dims: [usize; 4],                              // x, h, z, hd
    layers: [(Vec<f32>, Vec<f32>, Activation); 5], // encoder, mu, logvar, decoder 1, decoder 2
    inv_var: Vec<f32>,
    log_norm: f32,
}

impl RtVae {
    fn from_typed(m: &Model) -> Self {
        fn l<const I: usize, const O: usize>(d: &Dense<I, O>) -> (Vec<f32>, Vec<f32>, Activation) {
            (
                d.weights.as_flattened().to_vec(),
                d.bias.to_vec(),
                d.activation,
            )
        }
        RtVae {
            dims: [X, H, Z, HD],
            layers: [
                l(&m.encoder),
                l(&m.mu_head),
                l(&m.logvar_head),
                l(&m.decoder.first),
                l(&m.decoder.second),
            ],
            inv_var: m.inv_var.to_vec(),
            log_norm: m.log_norm,
        }
    }

    fn view(&self, k: usize, i: usize, o: usize) -> Result<DenseView<'_>, Error> {
        let (w, b, a) = &self.layers[k];
        DenseView::new(self.dims[i], self.dims[o], w, b, *a)
    }
}

impl VaeModel for RtVae {
    type Scratch = (Vec<f32>, Vec<f32>);
    fn input_dim(&self) -> usize {
        self.dims[0]
    }
    fn latent_dim(&self) -> usize {
        self.dims[2]
    }
    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        s: &mut Self::Scratch,
    ) -> Result<(), Error> {
        self.view(0, 0, 1)?.forward(x, &mut s.0)?;
        self.view(1, 1, 2)?.forward(&s.0, mu)?;
        self.view(2, 1, 2)?.forward(&s.0, logvar)
    }
    fn decode(&self, z: &[f32], mean: &mut [f32], s: &mut Self::Scratch) -> Result<(), Error> {
        self.view(3, 2, 3)?.forward(z, &mut s.1)?;
        self.view(4, 3, 0)?.forward(&s.1, mean)
    }
    fn noise(&self) -> tinyvae::DecoderNoise<'_> {
        tinyvae::DecoderNoise {
            inv_var: &self.inv_var,
            log_norm: self.log_norm,
        }
    }
}

fn rt_scratch(m: &RtVae) -> (Vec<f32>, Vec<f32>) {
    (vec![0.0; m.dims[1]], vec![0.0; m.dims[3]])
}

/// `score()` on heap buffers of the model's dimensions.
fn slice_score<V: VaeModel>(
    m: &V,
    scratch: &mut V::Scratch,
    x: &[f32],
    kind: ScoreKind,
    seed: u64,
) -> Result<Score, Error> {
    let zd = m.latent_dim();
    let (mut mu, mut lv, mut z, mut eps) =
        (vec![0.0; zd], vec![0.0; zd], vec![0.0; zd], vec![0.0; zd]);
    let mut mean = vec![0.0; m.input_dim()];
    let buf = Buffers {
        mu: &mut mu,
        logvar: &mut lv,
        z: &mut z,
        eps: &mut eps,
        mean: &mut mean,
    };
    score(
        m,
        x,
        kind,
        buf,
        scratch,
        &mut NormalSampler::new(),
        &mut default_rng(seed),
    )
}

#[test]
fn same_seed_same_bits_workspace_equals_slices_and_runtime_model() {
    let m = model(5);
    let rt = RtVae::from_typed(&m);
    let mut rng = TestRng(6);
    for case in 0..20u64 {
        let x = input(&mut rng);
        for kind in all_kinds(16) {
            let a = seeded(&m, &x, kind, case).unwrap();
            let b = seeded(&m, &x, kind, case).unwrap();
            assert_eq!(
                bits(&a),
                bits(&b),
                "{kind:?}, x = {x:?}: same seed, {a:?} vs {b:?}"
            );
            let c = slice_score(&m, &mut scratch(), &x, kind, case).unwrap();
            assert_eq!(
                bits(&a),
                bits(&c),
                "{kind:?}: Workspace {a:?} vs score() {c:?}"
            );
            let d = slice_score(&rt, &mut rt_scratch(&rt), &x, kind, case).unwrap();
            assert_eq!(
                bits(&a),
                bits(&d),
                "{kind:?}: typed {a:?} vs runtime-shaped {d:?}"
            );
            // Another seed gives another score (the deterministic ELBO ignores the seed).
            let e = seeded(&m, &x, kind, case + 1000).unwrap();
            if kind.is_sampled() {
                assert_ne!(
                    a.score,
                    e.score,
                    "{kind:?}, x = {x:?}: seeds {case} and {}",
                    case + 1000
                );
            } else {
                assert_eq!(bits(&a), bits(&e));
            }
        }
    }
    // Within one seed, the samples differ from each other: L = 2 differs from L = 1.
    let x = input(&mut rng);
    for k in SAMPLED {
        assert_ne!(
            seeded(&m, &x, k(1), 3).unwrap().score,
            seeded(&m, &x, k(2), 3).unwrap().score
        );
    }
}

#[test]
fn reused_workspace_needs_reset_sampler_for_reproducibility() {
    // Z = 3 normals per draw: Box–Muller leaves a cached value in the workspace's sampler after an
    // odd number of normals, which the next score would consume first. `reset_sampler` drops it.
    let m = model(7);
    let x = input(&mut TestRng(8));
    let kind = ScoreKind::Iwae { samples: 1 };
    let fresh = seeded(&m, &x, kind, 42).unwrap();
    let mut w = ws();
    let first = w.score(&m, &x, kind, &mut default_rng(42)).unwrap();
    w.reset_sampler();
    let again = w.score(&m, &x, kind, &mut default_rng(42)).unwrap();
    assert_eq!(bits(&first), bits(&fresh));
    assert_eq!(bits(&again), bits(&fresh));
    let stale = w.score(&m, &x, kind, &mut default_rng(42)).unwrap();
    println!(
        "reused workspace without reset_sampler, same seed: {} (fresh {}): {}",
        stale.score,
        fresh.score,
        if stale.score == fresh.score {
            "same"
        } else {
            "differs"
        }
    );
}

// ---------------------------------------------------------------- errors and flags

#[test]
fn non_finite_input_is_an_error_with_its_index() {
    let m = model(9);
    let x0 = input(&mut TestRng(10));
    for kind in all_kinds(4) {
        for i in 0..X {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut x = x0;
                x[i] = bad;
                assert_eq!(
                    seeded(&m, &x, kind, 0),
                    Err(Error::NonFinite { index: i }),
                    "{kind:?}, x = {x:?}"
                );
                assert_eq!(
                    slice_score(&m, &mut scratch(), &x, kind, 0),
                    Err(Error::NonFinite { index: i })
                );
                // The first offending index is reported.
                if i + 1 < X {
                    x[X - 1] = f32::NAN;
                    assert_eq!(seeded(&m, &x, kind, 0), Err(Error::NonFinite { index: i }));
                }
            }
        }
    }
}

#[test]
fn zero_samples_is_invalid() {
    let m = model(11);
    let x = input(&mut TestRng(12));
    for k in SAMPLED {
        assert_eq!(
            seeded(&m, &x, k(0), 0),
            Err(Error::InvalidParameter),
            "{:?}",
            k(0)
        );
        assert_eq!(k(0).decodes(), 0);
        assert_eq!(
            slice_score(&m, &mut scratch(), &x, k(0), 0),
            Err(Error::InvalidParameter)
        );
    }
}

#[test]
fn wrong_buffer_lengths_are_shape_mismatches() {
    let m = model(13);
    let x = input(&mut TestRng(14));
    for kind in all_kinds(2) {
        // x too short / too long.
        for n in [X - 1, X + 1] {
            let xv: Vec<f32> = (0..n).map(|i| x[i % X]).collect();
            assert_eq!(
                slice_score(&m, &mut scratch(), &xv, kind, 0),
                Err(Error::ShapeMismatch {
                    expected: X,
                    found: n
                }),
                "{kind:?}, x of length {n}"
            );
        }
        // Each buffer in turn one element short or long.
        for which in 0..5 {
            for delta in [-1i32, 1] {
                let mut len = [Z, Z, Z, Z, X];
                let expected = len[which];
                len[which] = (expected as i32 + delta) as usize;
                let mut v: Vec<Vec<f32>> = len.iter().map(|&n| vec![0.0; n]).collect();
                let [mu, lv, z, eps, mean] = &mut v[..] else {
                    unreachable!()
                };
                let buf = Buffers {
                    mu,
                    logvar: lv,
                    z,
                    eps,
                    mean,
                };
                let r = score(
                    &m,
                    &x,
                    kind,
                    buf,
                    &mut scratch(),
                    &mut NormalSampler::new(),
                    &mut default_rng(0),
                );
                assert_eq!(
                    r,
                    Err(Error::ShapeMismatch {
                        expected,
                        found: len[which]
                    }),
                    "{kind:?}, buffer {which} of length {}",
                    len[which]
                );
            }
        }
    }
}

/// A dense layer with every weight `w` and every bias `b`.
fn constant<const I: usize, const O: usize>(w: f32, b: f32, act: Activation) -> Dense<I, O> {
    Dense::new(leak([[w; I]; O]), leak([b; O]), act)
}

#[test]
fn out_of_range_logvar_is_clamped_and_flagged() {
    let x = input(&mut TestRng(15));
    // Normal model: no clamping.
    for kind in all_kinds(8) {
        assert!(!seeded(&model(16), &x, kind, 1).unwrap().clamped);
    }
    // Huge positive / negative log-variances.
    let mut big = model(16);
    big.logvar_head = Dense::new(
        leak([[0.0; H]; Z]),
        leak([1e4, 0.0, -1e4]),
        Activation::Identity,
    );
    // A NaN log-variance from finite weights and input: hidden = [2, 2, 0, ..], so the
    // accumulation is 0 + 3e38 * 2 (= inf) + (-3e38) * 2 (= -inf) = NaN.
    let mut nan = model(16);
    nan.encoder = Dense::new(
        leak([[0.0; X]; H]),
        leak([2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        Activation::Identity,
    );
    let mut w = [[0.0f32; H]; Z];
    w[1][0] = 3e38;
    w[1][1] = -3e38;
    nan.logvar_head = Dense::new(leak(w), leak([0.0; Z]), Activation::Identity);
    for (name, m, expect) in [
        ("+-1e4", big, [LOGVAR_MAX, 0.0, LOGVAR_MIN]),
        ("NaN", nan, [0.0, LOGVAR_MAX, 0.0]),
    ] {
        let (mut mu, mut lv) = ([0.0f32; Z], [0.0f32; Z]);
        m.encode_array(&x, &mut mu, &mut lv, &mut scratch());
        assert!(name != "NaN" || lv[1].is_nan(), "not a NaN: {lv:?}");
        for kind in all_kinds(8) {
            let mut wsp = ws();
            let s = wsp.score(&m, &x, kind, &mut default_rng(2)).unwrap();
            assert!(
                s.clamped,
                "{name}, {kind:?}: logvar {lv:?} not flagged: {s:?}"
            );
            assert!(
                s.score.is_finite() && !s.overflow,
                "{name}, {kind:?}: {s:?}"
            );
            assert_eq!(wsp.logvar(), &expect, "{name}, {kind:?}: raw logvar {lv:?}");
            assert_eq!(s.kl, kl_std_normal(wsp.mu(), &expect).unwrap());
        }
    }
}

#[test]
fn overflowing_score_is_flagged_max_not_nan() {
    let x = input(&mut TestRng(17));
    let ones = constant::<X, H>(0.0, 1.0, Activation::Identity); // hidden = [1; H]
    let mut models = Vec::new();
    // The decoder mean overflows the squared residual.
    let mut m = model(18);
    m.decoder.second = constant(0.0, 1e30, Activation::Identity);
    models.push(("decoder bias 1e30", m));
    let mut m = model(18);
    m.decoder.second = constant(3e38, 0.0, Activation::Identity);
    models.push(("decoder weights 3e38", m));
    // mu so large that mu^2 (KL) overflows, and mu itself infinite (3e38 * 1 + 3e38 * 1 = inf).
    let mut m = model(18);
    m.mu_head = constant(0.0, 1e25, Activation::Identity);
    models.push(("mu = 1e25", m));
    let mut m = model(18);
    m.encoder = ones;
    m.mu_head = constant(3e38, 0.0, Activation::Identity);
    models.push(("mu = inf", m));
    for (name, m) in &models {
        for kind in all_kinds(8) {
            let r = seeded(m, &x, kind, 3);
            let s = r.unwrap_or_else(|e| panic!("{name}, {kind:?}: error {e:?} instead of a flag"));
            assert!(
                s.overflow && s.score == f32::MAX,
                "{name}, {kind:?}: expected overflow flag and f32::MAX, got {s:?}"
            );
        }
    }
    // Finite but extreme input through an ordinary model overflows the same way.
    let m = model(18);
    let mut big = x;
    big[2] = 3e38;
    for kind in all_kinds(8) {
        let s = seeded(&m, &big, kind, 3).unwrap_or_else(|e| panic!("{kind:?}: error {e:?}"));
        assert!(
            s.overflow && s.score == f32::MAX,
            "{kind:?}, x = {big:?}: {s:?}"
        );
    }
    // And an ordinary input does not.
    for kind in all_kinds(8) {
        assert!(!seeded(&m, &x, kind, 3).unwrap().overflow);
    }
}

// ---------------------------------------------------------------- property tests

/// A random runtime-shaped VAE: dims, activations and weights from `seed`.
fn random_rt(seed: u64, dims: [usize; 4], acts: [Activation; 2], wscale: f32) -> RtVae {
    let mut rng = TestRng(seed);
    let shapes = [(0, 1), (1, 2), (1, 2), (2, 3), (3, 0)];
    let layers = std::array::from_fn(|k| {
        let (i, o) = shapes[k];
        let s = wscale / (dims[i] as f32).sqrt();
        let w = (0..dims[i] * dims[o]).map(|_| rng.uniform(-s, s)).collect();
        let b = (0..dims[o]).map(|_| rng.uniform(-0.5, 0.5)).collect();
        let a = match k {
            0 => acts[0],
            3 => acts[1],
            _ => Activation::Identity,
        };
        (w, b, a)
    });
    let logvar_x: Vec<f32> = (0..dims[0]).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let mut inv_var = vec![0.0; dims[0]];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    RtVae {
        dims,
        layers,
        inv_var,
        log_norm,
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        Just(Activation::Tanh),
        Just(Activation::Sigmoid),
        Just(Activation::Softplus),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_scores_finite_and_consistent(
        seed in any::<u64>(),
        dims in (1usize..=10, 1usize..=10, 1usize..=6, 1usize..=10),
        acts in (activation(), activation()),
        wscale in 0.1f32..3.0,
        xs in proptest::collection::vec(-5.0f32..5.0, 10),
        rng_seed in any::<u64>(),
    ) {
        scores_finite_and_consistent(seed, dims, acts, wscale, &xs, rng_seed)?;
    }
}

/// A case the property once failed on (an IWAE-1 tolerance that counted only the largest term
/// of the f32 log weight, not the sum of their magnitudes).
#[test]
fn iwae_tolerance_counts_every_term() {
    let xs = [
        4.047_563_6,
        -3.760_538_3,
        -2.584_446_4,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ];
    scores_finite_and_consistent(
        5_642_176_968_880_471_727,
        (3, 2, 6, 4),
        (Activation::Identity, Activation::Relu),
        2.570_042,
        &xs,
        16_133_236_924_951_295_247,
    )
    .unwrap();
}

/// The property of `prop_scores_finite_and_consistent` for one input.
fn scores_finite_and_consistent(
    seed: u64,
    dims: (usize, usize, usize, usize),
    acts: (Activation, Activation),
    wscale: f32,
    xs: &[f32],
    rng_seed: u64,
) -> Result<(), TestCaseError> {
    let dims = [dims.0, dims.1, dims.2, dims.3];
    let m = random_rt(seed, dims, [acts.0, acts.1], wscale);
    let x = &xs[..dims[0]];
    let mut s = rt_scratch(&m);
    let det = slice_score(&m, &mut s, x, ScoreKind::Elbo, 0).unwrap();
    prop_assert!(det.score.is_finite() && !det.overflow, "{det:?}");
    prop_assert!(det.kl >= 0.0 && det.kl.is_finite(), "{det:?}");
    prop_assert_eq!(det.score.to_bits(), (-(det.recon - det.kl)).to_bits());
    // The deterministic reconstruction term is at most the log-normaliser.
    prop_assert!(det.recon <= m.log_norm);

    let e1 = slice_score(
        &m,
        &mut s,
        x,
        ScoreKind::ElboSampled { samples: 1 },
        rng_seed,
    )
    .unwrap();
    let i1 = slice_score(&m, &mut s, x, ScoreKind::Iwae { samples: 1 }, rng_seed).unwrap();
    let r1 = slice_score(&m, &mut s, x, ScoreKind::ReconProb { samples: 1 }, rng_seed).unwrap();
    for v in [&e1, &i1, &r1] {
        prop_assert!(v.score.is_finite() && v.kl >= 0.0, "{v:?}");
        prop_assert_eq!(v.kl.to_bits(), det.kl.to_bits());
        // Same seed, same draw: the same log-likelihood in every sampled kind.
        prop_assert_eq!(v.recon.to_bits(), e1.recon.to_bits());
    }
    // One draw: ELBO-1 = ll - KL exactly, RP-1 = ll exactly.
    prop_assert_eq!(e1.score.to_bits(), (-(e1.recon - e1.kl)).to_bits());
    prop_assert_eq!((-r1.score).to_bits(), e1.recon.to_bits());
    // IWAE-1 = ll + ln p(z) - ln q(z|x): equal to ELBO-1 only in expectation (below).
    let r = replay(&m, &mut s, x, 1, rng_seed);
    let tol = lse_tol(r.mag, 1);
    prop_assert!(
        (-f64::from(i1.score) - r.iwae).abs() <= tol,
        "IWAE-1 {} vs replayed {}",
        -i1.score,
        r.iwae
    );

    // Larger K: finite, and RP-K (a log-mean-exp) >= the mean log-likelihood (Jensen).
    let rk = slice_score(&m, &mut s, x, ScoreKind::ReconProb { samples: 8 }, rng_seed).unwrap();
    prop_assert!(rk.score.is_finite(), "{rk:?}");
    prop_assert!(
        -rk.score >= rk.recon - 1e-5 * (1.0 + rk.recon.abs()),
        "{rk:?}"
    );
    Ok(())
}

/// IWAE-1 and ELBO-1 with the same seed differ by `ln p(z) - ln q(z|x) + KL`, whose expectation
/// is 0: checked on random models, paired over seeds, within `SE_BOUND` standard errors.
#[test]
fn iwae1_equals_elbo1_in_expectation() {
    let mut worst = 0.0f64;
    for case in 0..12u64 {
        let dims = [
            1 + (case as usize * 7) % 9,
            1 + (case as usize * 5) % 7,
            1 + (case as usize) % 5,
            1 + (case as usize * 3) % 8,
        ];
        let acts = [Activation::Tanh, Activation::Relu];
        let m = random_rt(100 + case, dims, acts, 1.5);
        let mut rng = TestRng(200 + case);
        let x: Vec<f32> = (0..dims[0]).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let mut s = rt_scratch(&m);
        let n = 4000;
        let d: Vec<f64> = (0..n)
            .map(|seed| {
                let e = slice_score(&m, &mut s, &x, ScoreKind::ElboSampled { samples: 1 }, seed);
                let i = slice_score(&m, &mut s, &x, ScoreKind::Iwae { samples: 1 }, seed);
                f64::from(e.unwrap().score) - f64::from(i.unwrap().score)
            })
            .collect();
        let mean = d.iter().sum::<f64>() / n as f64;
        let var = d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n as f64 - 1.0);
        let se = (var / n as f64).sqrt();
        worst = worst.max(mean.abs() / se);
        assert!(
            se > 0.0 && mean.abs() <= SE_BOUND * se,
            "dims {dims:?}: E[IWAE-1 - ELBO-1] = {mean} +- {se}, expected 0"
        );
    }
    println!("E[IWAE-1 - ELBO-1] over 12 random models, 4000 paired seeds each: worst |mean| {worst:.2} SE");
}
