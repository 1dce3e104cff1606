//! The VAE's bounds against a linear-Gaussian model whose `ln p(x)` is known in closed form, and
//! an int8 model against its f32 original. Figures: `cargo test --release --test vae --
//! --nocapture`.
//!
//! # Linear-Gaussian model (probabilistic PCA)
//!
//! `p(z) = N(0, I)`, `p(x|z) = N(W z + b, Psi)` with `Psi = diag(exp(logvar_x))`, so
//! `p(x) = N(b, W W^T + Psi)` and the exact posterior is `N(M^-1 W^T Psi^-1 (x - b), M^-1)` with
//! `M = W^T Psi^-1 W + I`. The columns of `W` are chosen orthogonal under `Psi^-1`, so
//! `G = W^T Psi^-1 W` and `M` are diagonal and the exact posterior is representable by the
//! model's diagonal encoder (an identity body, an affine mean head, a constant log-variance
//! head). For any diagonal `q = N(m, diag s^2)` (closed forms, checked here):
//!
//! ```text
//! E_q[ELBO_L]   = ln p(x) - KL(q || p(z|x))                      (every L)
//! ELBO(z = mu)  = E_q[ELBO_L] + 1/2 sum_j G_jj s_j^2             (exact: ln p(x|z) is quadratic)
//! E_q[IWAE_1]   = E_q[ELBO_1]
//! IWAE_K        = ln p(x) for every K and every draw when q = p(z|x) (constant weights)
//! ln p(x) - E[IWAE_K] ~ chi2(p(z|x) || q) / (2 K)                 (large K, delta method)
//! 1 + chi2      = prod_j s_j^2 / (sp_j sqrt(2 s_j^2 - sp_j^2)) exp((m_j - mp_j)^2 / (2 s_j^2 - sp_j^2))
//! ```
//!
//! Note the deterministic ELBO (`z = mu`) is *not* a lower bound of `ln p(x)`: with the exact
//! posterior it exceeds `ln p(x)` by `1/2 tr(G M^-1) > 0`. The sampled ELBO and IWAE are lower
//! bounds in expectation.
//!
//! Monte Carlo checks use independent seeds per call and allow `SE_BOUND` standard errors (the
//! standard error estimated from the per-call values).
//!
//! Measured (libm backend): at the exact posterior `|IWAE_K - ln p(x)| <= 2.2e-7 (1 + |ln p(x)|)`
//! for K = 1..512; with a mis-specified encoder (mean +0.8 sd, log-variance +0.4, 1500 seeds per K)
//! the gap `ln p(x) - E[IWAE_K]` is 0.67, 0.33, 0.080, 0.011, 0.0023 (+- 0.0012) for
//! K = 1, 2, 8, 64, 512, against `KL(q || p(z|x)) = 0.73` and the delta method's 0.0011 at K = 512.
//!
//! # int8 model
//!
//! A random f32 MLP VAE and its TFLite-style int8 version (per-channel symmetric weights,
//! calibrated asymmetric activations, folded bias, Q31 requantization). The deterministic ELBO
//! score and its KL term of the int8 model must stay within `INT8_REL_TOL` and `INT8_KL_REL_TOL`
//! of the f32 model's on inputs inside the calibrated ranges; each QDense layer with its
//! requantization multiplier doubled or halved must violate one of them. Measured: score within
//! 4.8% (mean 0.6%), KL within 4.0% (mean 0.9%); a requantization multiplier off by 2 moves the
//! score by 17% or more (KL by 70% or more for the log-variance head).

#![allow(clippy::needless_range_loop)]

mod common;
use common::{leak, SplitMix as TestRng};
use tinyvae::{
    decoder_noise, default_rng, fold_bias, kl_std_normal, per_channel_multiplier,
    quantize_multiplier, quantized_activation_range, Activation, Chain, Dense, Dequantize,
    FullGaussian, Layer, QDense, QParams, Quantize, Requant, Score, ScoreKind, Vae, VaeModel,
    Workspace,
};

/// Monte Carlo tolerance, in standard errors.
const SE_BOUND: f64 = 4.0;

/// Sample mean and its standard error.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

// ---------------------------------------------------------------- f64 references

/// Lower Cholesky factor of a symmetric positive definite matrix, in f64.
fn cholesky64(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                assert!(s > 0.0, "reference covariance not positive definite");
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    l
}

/// `ln N(x; m, S)` in f64.
fn log_normal64(x: &[f64], m: &[f64], s: &[Vec<f64>]) -> f64 {
    let n = x.len();
    let l = cholesky64(s);
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut v = x[i] - m[i];
        for k in 0..i {
            v -= l[i][k] * y[k];
        }
        y[i] = v / l[i][i];
    }
    let maha: f64 = y.iter().map(|v| v * v).sum();
    let log_det: f64 = (0..n).map(|i| 2.0 * l[i][i].ln()).sum();
    -0.5 * (n as f64 * (2.0 * std::f64::consts::PI).ln() + log_det + maha)
}

/// `KL(N(mq, diag vq) || N(mp, diag vp))` in f64.
fn kl_diag64(mq: &[f64], vq: &[f64], mp: &[f64], vp: &[f64]) -> f64 {
    let mut s = 0.0;
    for j in 0..mq.len() {
        let d = mq[j] - mp[j];
        s += (vp[j] / vq[j]).ln() + (vq[j] + d * d) / vp[j] - 1.0;
    }
    0.5 * s
}

/// `chi2(p || q) = E_q[(p/q)^2] - 1` for diagonal Gaussians `p = N(mp, vp)`, `q = N(mq, vq)`
/// (finite only when `2 vq > vp`).
fn chi2_diag64(mq: &[f64], vq: &[f64], mp: &[f64], vp: &[f64]) -> f64 {
    let mut log1p = 0.0;
    for j in 0..mq.len() {
        let den = 2.0 * vq[j] - vp[j];
        assert!(den > 0.0, "chi2 infinite");
        let d = mq[j] - mp[j];
        log1p += (vq[j] / (vp[j].sqrt() * den.sqrt())).ln() + d * d / den;
    }
    log1p.exp_m1()
}

// ---------------------------------------------------------------- linear-Gaussian VAE

type LinVae<const X: usize, const Z: usize> =
    Vae<Dense<X, X>, Dense<X, Z>, Dense<X, Z>, Dense<Z, X>, X, X, Z>;
type LinWs<const X: usize, const Z: usize> = Workspace<<LinVae<X, Z> as VaeModel>::Scratch, X, Z>;

/// A linear-Gaussian model: `W[i][j]` (X rows, Z columns), `b`, per-feature `logvar_x`.
struct LinGauss<const X: usize, const Z: usize> {
    w: [[f64; Z]; X],
    b: [f64; X],
    logvar_x: [f32; X],
}

impl<const X: usize, const Z: usize> LinGauss<X, Z> {
    /// Per-feature noise variances, the inverse of the model's f32 precisions.
    fn psi(&self) -> [f64; X] {
        let mut inv_var = [0.0f32; X];
        decoder_noise(&self.logvar_x, &mut inv_var).unwrap();
        inv_var.map(|p| 1.0 / f64::from(p))
    }

    /// Diagonal of `G = W^T Psi^-1 W` (asserting its off-diagonal is zero).
    fn g_diag(&self) -> [f64; Z] {
        let psi = self.psi();
        let mut g = [0.0; Z];
        for j in 0..Z {
            for k in 0..Z {
                let v: f64 = (0..X).map(|i| self.w[i][j] * self.w[i][k] / psi[i]).sum();
                if j == k {
                    g[j] = v;
                } else {
                    assert!(
                        v.abs() < 1e-12,
                        "W^T Psi^-1 W not diagonal: G[{j}][{k}] = {v}"
                    );
                }
            }
        }
        g
    }

    /// Exact posterior variances `diag(M^-1)`.
    fn post_var(&self) -> [f64; Z] {
        self.g_diag().map(|g| 1.0 / (1.0 + g))
    }

    /// Exact posterior mean `M^-1 W^T Psi^-1 (x - b)`.
    fn post_mean(&self, x: &[f32; X]) -> [f64; Z] {
        let (psi, pv) = (self.psi(), self.post_var());
        let mut m = [0.0; Z];
        for j in 0..Z {
            m[j] = pv[j]
                * (0..X)
                    .map(|i| self.w[i][j] * (f64::from(x[i]) - self.b[i]) / psi[i])
                    .sum::<f64>();
        }
        m
    }

    /// `ln p(x) = ln N(x; b, W W^T + Psi)` in f64.
    fn log_px(&self, x: &[f32; X]) -> f64 {
        let psi = self.psi();
        let mut s = vec![vec![0.0; X]; X];
        for i in 0..X {
            for k in 0..X {
                s[i][k] = (0..Z).map(|j| self.w[i][j] * self.w[k][j]).sum::<f64>();
            }
            s[i][i] += psi[i];
        }
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        log_normal64(&x64, &self.b, &s)
    }

    /// The same `ln p(x)` through `tinyvae::FullGaussian` in f32 (cross-check).
    fn log_px_f32(&self, x: &[f32; X]) -> f32 {
        let psi = self.psi();
        let mut s = [[0.0f32; X]; X];
        for i in 0..X {
            for k in 0..X {
                let mut v: f64 = (0..Z).map(|j| self.w[i][j] * self.w[k][j]).sum();
                if i == k {
                    v += psi[i];
                }
                s[i][k] = v as f32;
            }
        }
        let b = self.b.map(|v| v as f32);
        FullGaussian::from_covariance(&b, &s)
            .unwrap()
            .log_density(x)
    }

    /// The typed VAE whose encoder gives the exact posterior shifted by `dmu` in mean and `dlv`
    /// in log-variance (both zero: the exact posterior).
    fn vae(&self, dmu: [f64; Z], dlv: [f64; Z]) -> LinVae<X, Z> {
        let (psi, pv) = (self.psi(), self.post_var());
        let mut eye = [[0.0f32; X]; X];
        for i in 0..X {
            eye[i][i] = 1.0;
        }
        // mu = A x + c with A = M^-1 W^T Psi^-1, c = -A b + dmu.
        let mut a = [[0.0f32; X]; Z];
        let mut c = [0.0f32; Z];
        for j in 0..Z {
            let mut cj = dmu[j];
            for i in 0..X {
                let aji = pv[j] * self.w[i][j] / psi[i];
                a[j][i] = aji as f32;
                cj -= aji * self.b[i];
            }
            c[j] = cj as f32;
        }
        let mut lv_bias = [0.0f32; Z];
        for j in 0..Z {
            lv_bias[j] = (pv[j].ln() + dlv[j]) as f32;
        }
        let mut wd = [[0.0f32; Z]; X];
        for i in 0..X {
            for j in 0..Z {
                wd[i][j] = self.w[i][j] as f32;
            }
        }
        let mut inv_var = [0.0f32; X];
        let log_norm = decoder_noise(&self.logvar_x, &mut inv_var).unwrap();
        Vae::new(
            Dense::new(leak(eye), leak([0.0; X]), Activation::Identity),
            Dense::new(leak(a), leak(c), Activation::Identity),
            Dense::new(leak([[0.0; X]; Z]), leak(lv_bias), Activation::Identity),
            Dense::new(
                leak(wd),
                leak(self.b.map(|v| v as f32)),
                Activation::Identity,
            ),
            leak(inv_var),
            log_norm,
        )
    }

    /// Draws `x ~ p(x)` in f64 (rounded to f32), scaled away from the mean by `stretch`.
    fn draw(&self, rng: &mut TestRng, stretch: f64) -> [f32; X] {
        let psi = self.psi();
        let z: Vec<f64> = (0..Z).map(|_| rng.normal()).collect();
        let mut x = [0.0f32; X];
        for i in 0..X {
            let mean: f64 = (0..Z).map(|j| self.w[i][j] * z[j]).sum();
            x[i] = (self.b[i] + stretch * (mean + psi[i].sqrt() * rng.normal())) as f32;
        }
        x
    }
}

/// Isotropic noise, orthogonal columns with overlapping support.
fn model_a() -> LinGauss<4, 2> {
    LinGauss {
        w: [[0.8, 1.1], [0.8, -1.1], [0.8, 0.55], [0.8, -0.55]],
        b: [0.2, -0.1, 0.5, 0.0],
        logvar_x: [-1.0; 4],
    }
}

/// Per-feature noise, columns with disjoint support (feature 4 is pure noise).
fn model_b() -> LinGauss<5, 2> {
    LinGauss {
        w: [[1.5, 0.0], [-0.7, 0.0], [0.0, 0.9], [0.0, 1.2], [0.0, 0.0]],
        b: [0.1, 0.2, -0.3, 0.0, 0.4],
        logvar_x: [-1.0, -0.5, 0.0, -1.5, 0.3],
    }
}

/// Scores `x` with a fresh sampler state and `default_rng(seed)`.
fn score_seeded<const X: usize, const Z: usize>(
    m: &LinVae<X, Z>,
    ws: &mut LinWs<X, Z>,
    x: &[f32; X],
    kind: ScoreKind,
    seed: u64,
) -> Score {
    ws.reset_sampler();
    ws.score(m, x, kind, &mut default_rng(seed)).unwrap()
}

/// The encoder's posterior as f64 `(mean, variance)`.
fn posterior_of<const X: usize, const Z: usize>(
    m: &LinVae<X, Z>,
    x: &[f32; X],
) -> ([f64; Z], [f64; Z]) {
    let (mut mu, mut lv) = ([0.0f32; Z], [0.0f32; Z]);
    let mut s = LinVae::<X, Z>::SCRATCH;
    m.encode_array(x, &mut mu, &mut lv, &mut s);
    (
        mu.map(f64::from),
        lv.map(|v| f64::from(tinyvae::math::exp(v))),
    )
}

/// f32 rounding allowance for a log-density of magnitude `scale`.
fn f32_tol(scale: f64) -> f64 {
    4e-6 * (1.0 + scale)
}

/// Relative error of the library's `exp`: micromath's, within 2.4e-3, with `fast-math` (see
/// `src/math.rs`); with libm it is within the f32 allowances.
const EXP_REL: f64 = if cfg!(feature = "fast-math") {
    2.5e-3
} else {
    0.0
};

/// Allowance for the `exp` error in a deterministic ELBO: the precisions `exp(-logvar_x)` (relative
/// error `EXP_REL` on the quadratic term and on the normaliser's consistency, `X / 2` nats per
/// unit), and `exp(logvar)` in the KL: at most `EXP_REL (X + Z + |recon| + KL)`.
fn exp_tol(x: usize, z: usize, recon: f64, kl: f64) -> f64 {
    EXP_REL * ((x + z) as f64 + recon.abs() + kl)
}

/// Allowance for the `exp` error in `ln w` at the exact posterior: the draw's scale
/// `exp(logvar / 2)` is off by `EXP_REL`, which moves `ln q - ln p(z|x)` by `EXP_REL eps^2` per
/// latent (`|eps| <= 5.78` for the library's sampler), plus the decoder's `exp_tol`.
fn exp_tol_iwae(x: usize, z: usize, log_px: f64) -> f64 {
    EXP_REL * (x as f64 + 34.0 * z as f64 + log_px.abs())
}

/// Deterministic closed forms: the deterministic ELBO identity and IWAE-K = ln p(x) at the exact
/// posterior.
fn check_exact_posterior<const X: usize, const Z: usize>(name: &str, lg: &LinGauss<X, Z>) {
    let m = lg.vae([0.0; Z], [0.0; Z]);
    let g = lg.g_diag();
    let mut ws: LinWs<X, Z> = Workspace::new(LinVae::<X, Z>::SCRATCH);
    let mut rng = TestRng(17);
    let mut worst_iwae = 0.0f64;
    for t in 0..6 {
        let x = lg.draw(&mut rng, if t < 4 { 1.0 } else { 3.0 });
        let log_px = lg.log_px(&x);
        let log_px_f32 = lg.log_px_f32(&x);
        assert!(
            (f64::from(log_px_f32) - log_px).abs() <= f32_tol(log_px.abs()),
            "{name}: FullGaussian ln p(x) {log_px_f32} vs f64 {log_px} at x = {x:?}"
        );

        // The encoder is the exact posterior (up to f32 rounding of its constants).
        let (qm, qv) = posterior_of(&m, &x);
        let (pm, pv) = (lg.post_mean(&x), lg.post_var());
        for j in 0..Z {
            assert!(
                (qm[j] - pm[j]).abs() <= 1e-5 * (1.0 + pm[j].abs())
                    && (qv[j] / pv[j] - 1.0).abs() <= 1e-6 + 2.0 * EXP_REL,
                "{name}: encoder q = ({qm:?}, {qv:?}), exact posterior ({pm:?}, {pv:?})"
            );
        }

        // ELBO(z = mu) = ln p(x) + 1/2 tr(G M^-1) exactly (it is not a lower bound).
        let det = ws
            .score(&m, &x, ScoreKind::Elbo, &mut default_rng(0))
            .unwrap();
        let half_tr: f64 = 0.5 * (0..Z).map(|j| g[j] * qv[j]).sum::<f64>();
        let kl_post = kl_diag64(&qm, &qv, &pm, &pv);
        let expected = log_px - kl_post + half_tr;
        let (recon, kl) = (f64::from(det.recon), f64::from(det.kl));
        let tol = f32_tol(log_px.abs() + recon.abs() + kl) + exp_tol(X, Z, recon, kl);
        assert!(
            (f64::from(-det.score) - expected).abs() <= tol,
            "{name}: ELBO(mu) = {} vs ln p(x) + tr(G S)/2 = {expected} (ln p(x) = {log_px}) \
             at x = {x:?}, tol {tol:e}",
            -det.score
        );
        assert!(
            -f64::from(det.score) > log_px,
            "{name}: ELBO(mu) <= ln p(x)?"
        );

        // IWAE-K = ln p(x) for every K: the importance weights are constant.
        for (k, seed) in [(1u16, 1u64), (2, 2), (8, 3), (64, 4), (512, 5)] {
            let s = score_seeded(&m, &mut ws, &x, ScoreKind::Iwae { samples: k }, seed);
            let err = (f64::from(-s.score) - log_px).abs();
            worst_iwae = worst_iwae.max(err / (1.0 + log_px.abs()));
            assert!(
                err <= f32_tol(log_px.abs()) + exp_tol_iwae(X, Z, log_px),
                "{name}: IWAE-{k} = {} vs ln p(x) = {log_px} at x = {x:?} (err {err:e})",
                -s.score
            );
        }
    }
    println!(
        "{name}: exact posterior, |IWAE-K - ln p(x)| / (1 + |ln p(x)|) <= {worst_iwae:.2e} \
         (K = 1..512, 6 inputs)"
    );
}

#[test]
fn exact_posterior_closed_forms() {
    check_exact_posterior("A (isotropic)", &model_a());
    check_exact_posterior("B (per-feature)", &model_b());
}

/// At the exact posterior the sampled ELBO is unbiased for ln p(x).
fn check_sampled_elbo_exact<const X: usize, const Z: usize>(name: &str, lg: &LinGauss<X, Z>) {
    let m = lg.vae([0.0; Z], [0.0; Z]);
    let mut ws: LinWs<X, Z> = Workspace::new(LinVae::<X, Z>::SCRATCH);
    let mut rng = TestRng(99);
    for t in 0..2 {
        let x = lg.draw(&mut rng, 1.0 + t as f64);
        let log_px = lg.log_px(&x);
        let v: Vec<f64> = (0..400)
            .map(|s| {
                let r = score_seeded(&m, &mut ws, &x, ScoreKind::ElboSampled { samples: 64 }, s);
                -f64::from(r.score)
            })
            .collect();
        let (mean, se) = mean_se(&v);
        println!(
            "{name}: exact posterior, ELBO-64 mean over 400 seeds {mean:.5} +- {se:.5}, \
             ln p(x) = {log_px:.5} ({:+.2} SE)",
            (mean - log_px) / se
        );
        assert!(
            (mean - log_px).abs() <= SE_BOUND * se,
            "{name}: E[ELBO-64] = {mean} +- {se} vs ln p(x) = {log_px} at x = {x:?}"
        );
    }
}

#[test]
fn sampled_elbo_unbiased_at_exact_posterior() {
    check_sampled_elbo_exact("A", &model_a());
    check_sampled_elbo_exact("B", &model_b());
}

const KS: [u16; 5] = [1, 2, 8, 64, 512];
const SEEDS: u64 = 1500;

/// A mis-specified encoder: the IWAE bound's behaviour in K against the closed forms.
fn check_misspecified<const X: usize, const Z: usize>(
    name: &str,
    lg: &LinGauss<X, Z>,
    shift_sd: f64,
    dlv: f64,
) {
    let pv = lg.post_var();
    let m = lg.vae(pv.map(|v| shift_sd * v.sqrt()), [dlv; Z]);
    let mut ws: LinWs<X, Z> = Workspace::new(LinVae::<X, Z>::SCRATCH);
    let x = lg.draw(&mut TestRng(5), 1.0);
    let log_px = lg.log_px(&x);
    let (qm, qv) = posterior_of(&m, &x);
    let pm = lg.post_mean(&x);
    let kl_post = kl_diag64(&qm, &qv, &pm, &pv);
    let chi2 = chi2_diag64(&qm, &qv, &pm, &pv);
    let elbo_true = log_px - kl_post;
    println!(
        "{name} (mean +{shift_sd} sd, logvar {dlv:+}): ln p(x) = {log_px:.4}, \
         KL(q||post) = {kl_post:.4}, chi2(post||q) = {chi2:.4}"
    );

    // The deterministic ELBO against the closed form.
    let g = lg.g_diag();
    let det = ws
        .score(&m, &x, ScoreKind::Elbo, &mut default_rng(0))
        .unwrap();
    let (recon, kl) = (f64::from(det.recon), f64::from(det.kl));
    let det = -f64::from(det.score);
    let expected = elbo_true + 0.5 * (0..Z).map(|j| g[j] * qv[j]).sum::<f64>();
    assert!(
        (det - expected).abs() <= f32_tol(log_px.abs() + kl_post) + exp_tol(X, Z, recon, kl),
        "{name}: ELBO(mu) = {det} vs closed form {expected}"
    );

    // Sampled ELBO (L = 1) and IWAE-1 with the same seeds: equal in expectation, not per draw.
    let mut elbo1 = Vec::new();
    let mut diff = Vec::new();
    let mut recon_equal = true;
    for s in 0..SEEDS {
        let e = score_seeded(&m, &mut ws, &x, ScoreKind::ElboSampled { samples: 1 }, s);
        let i = score_seeded(&m, &mut ws, &x, ScoreKind::Iwae { samples: 1 }, s);
        recon_equal &= e.recon.to_bits() == i.recon.to_bits();
        elbo1.push(-f64::from(e.score));
        diff.push(f64::from(e.score) - f64::from(i.score));
    }
    assert!(
        recon_equal,
        "{name}: same seed, different draws for ELBO-1 and IWAE-1"
    );
    let (e_mean, e_se) = mean_se(&elbo1);
    let (d_mean, d_se) = mean_se(&diff);
    println!(
        "  ELBO-1 {e_mean:.4} +- {e_se:.4} vs closed form {elbo_true:.4} ({:+.2} SE); \
         IWAE-1 - ELBO-1 (paired) {d_mean:.5} +- {d_se:.5} ({:+.2} SE)",
        (e_mean - elbo_true) / e_se,
        d_mean / d_se
    );
    assert!(
        (e_mean - elbo_true).abs() <= SE_BOUND * e_se,
        "{name}: E[ELBO-1] = {e_mean} +- {e_se} vs ln p(x) - KL(q||post) = {elbo_true}"
    );
    assert!(
        d_mean.abs() <= SE_BOUND * d_se && d_se > 0.0,
        "{name}: E[IWAE-1 - ELBO-1] = {d_mean} +- {d_se}, expected 0"
    );

    // IWAE-K over independent seeds.
    let mut stats = Vec::new();
    for (ki, &k) in KS.iter().enumerate() {
        let v: Vec<f64> = (0..SEEDS)
            .map(|s| {
                let seed = 1_000_000 * (ki as u64 + 1) + s;
                -f64::from(
                    score_seeded(&m, &mut ws, &x, ScoreKind::Iwae { samples: k }, seed).score,
                )
            })
            .collect();
        let (mean, se) = mean_se(&v);
        println!(
            "  IWAE-{k:<3} {mean:.5} +- {se:.5}: gap {:.5} (delta method chi2/2K = {:.5})",
            log_px - mean,
            chi2 / (2.0 * f64::from(k))
        );
        // A lower bound of ln p(x) in expectation, never looser than the ELBO.
        assert!(
            mean <= log_px + SE_BOUND * se,
            "{name}: E[IWAE-{k}] = {mean} +- {se} above ln p(x) = {log_px}"
        );
        assert!(
            mean >= elbo_true - SE_BOUND * se,
            "{name}: E[IWAE-{k}] = {mean} +- {se} below E[ELBO] = {elbo_true}"
        );
        stats.push((k, mean, se));
    }
    // IWAE-1 is the ELBO in expectation.
    let (_, m1, se1) = stats[0];
    assert!(
        (m1 - elbo_true).abs() <= SE_BOUND * se1,
        "{name}: E[IWAE-1] = {m1} +- {se1} vs E[ELBO] = {elbo_true}"
    );
    // Non-decreasing in K.
    for w in stats.windows(2) {
        let ((k0, m0, s0), (k1, m1, s1)) = (w[0], w[1]);
        let se = (s0 * s0 + s1 * s1).sqrt();
        assert!(
            m1 - m0 >= -SE_BOUND * se,
            "{name}: E[IWAE-{k1}] = {m1} < E[IWAE-{k0}] = {m0} by more than {SE_BOUND} SE ({se})"
        );
    }
    // The bound approaches ln p(x): the gap at K = 512 is under a tenth of the gap at K = 1.
    let (_, m512, se512) = stats[4];
    let (gap1, gap512) = (log_px - m1, log_px - m512);
    assert!(
        gap512 + SE_BOUND * se512 < 0.1 * gap1,
        "{name}: gap at K = 512 {gap512} +- {se512} not below a tenth of the gap at K = 1 {gap1}"
    );
    // And follows the delta method at K = 512 (O(1/K^2) terms neglected: chi2^2 / K^2 << SE),
    // when q is wider than the posterior so that every moment of the weights is finite (for a
    // narrower q, E_q[w^n] diverges from n = 1 / (1 - s_q^2 / s_p^2) on, and the expansion with it).
    let pred = chi2 / 1024.0;
    assert!(
        dlv < 0.0 || (gap512 - pred).abs() <= SE_BOUND * se512 + chi2 * chi2 / (512.0 * 512.0),
        "{name}: gap at K = 512 {gap512} +- {se512}, delta method {pred}"
    );
}

#[test]
fn iwae_misspecified_encoder() {
    check_misspecified("A", &model_a(), 0.8, 0.4);
    check_misspecified("A", &model_a(), 0.5, -0.4);
    check_misspecified("B", &model_b(), -0.8, 0.4);
    check_misspecified("B", &model_b(), 0.3, 1.0);
}

// ---------------------------------------------------------------- int8 vs f32

const QX: usize = 8;
const QH: usize = 16;
const QZ: usize = 3;
const QHD: usize = 16;

type F32Dec = Chain<Dense<QZ, QHD>, Dense<QHD, QX>, QHD>;
type F32Vae = Vae<Dense<QX, QH>, Dense<QH, QZ>, Dense<QH, QZ>, F32Dec, QX, QH, QZ>;

type QEnc = Chain<Quantize<QX>, QDense<QX, QH>, QX>;
type QHead = Chain<QDense<QH, QZ>, Dequantize<QZ>, QZ>;
type QDec = Chain<
    Chain<Quantize<QZ>, QDense<QZ, QHD>, QZ>,
    Chain<QDense<QHD, QX>, Dequantize<QX>, QX>,
    QHD,
>;
type QVae = Vae<QEnc, QHead, QHead, QDec, QX, QH, QZ>;
type F32Ws = Workspace<<F32Vae as VaeModel>::Scratch, QX, QZ>;
type QWs = Workspace<<QVae as VaeModel>::Scratch, QX, QZ>;

/// Relative tolerance of the int8 model's deterministic ELBO score against the f32 model's, and
/// of its KL term, over inputs inside the calibrated ranges. Measured (`int8_score_close_to_f32`):
/// at most 0.048 (mean 0.006) for the score and 0.040 (mean 0.009) for the KL.
const INT8_REL_TOL: f64 = 0.08;
const INT8_KL_REL_TOL: f64 = 0.10;
/// Calibration inputs and test inputs (different draws from the same distribution).
const CALIBRATION: usize = 1024;
const TEST_INPUTS: usize = 400;

fn random_dense<const I: usize, const O: usize>(
    rng: &mut TestRng,
    gain: f64,
    bias: f64,
    act: Activation,
) -> Dense<I, O> {
    let mut w = [[0.0f32; I]; O];
    for row in w.iter_mut() {
        for v in row.iter_mut() {
            *v = (gain * rng.normal() / (I as f64).sqrt()) as f32;
        }
    }
    let b: [f32; O] = std::array::from_fn(|_| (bias + 0.1 * rng.normal()) as f32);
    Dense::new(leak(w), leak(b), act)
}

fn f32_model() -> F32Vae {
    let mut rng = TestRng(2024);
    let enc = random_dense(&mut rng, 1.4, 0.0, Activation::Relu);
    let mu = random_dense(&mut rng, 1.0, 0.0, Activation::Identity);
    let lv = random_dense(&mut rng, 0.5, -1.0, Activation::Identity);
    let dec = Chain::new(
        random_dense(&mut rng, 1.4, 0.0, Activation::Relu),
        random_dense(&mut rng, 1.0, 0.0, Activation::Identity),
    );
    let logvar_x: [f32; QX] = std::array::from_fn(|_| (-0.5 + 0.3 * rng.normal()) as f32);
    let mut inv_var = [0.0f32; QX];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    Vae::new(enc, mu, lv, dec, leak(inv_var), log_norm)
}

/// Inputs like the training data of a sensor model: correlated, roughly unit scale.
fn input(rng: &mut TestRng) -> [f32; QX] {
    let common = rng.normal();
    std::array::from_fn(|_| (0.6 * common + 0.8 * rng.normal()) as f32)
}

/// Running min/max of a tensor over calibration inputs.
#[derive(Clone, Copy)]
struct Range(f32, f32);

impl Range {
    const EMPTY: Range = Range(f32::INFINITY, f32::NEG_INFINITY);
    fn add(&mut self, v: &[f32]) {
        for &x in v {
            self.0 = self.0.min(x);
            self.1 = self.1.max(x);
        }
    }
    fn qparams(self) -> QParams {
        QParams::from_range(self.0, self.1).unwrap()
    }
    fn contains(self, v: &[f32]) -> bool {
        v.iter().all(|&x| self.0 <= x && x <= self.1)
    }
}

/// Quantizes a dense layer the TFLite way; `rq_factor` scales every requantization multiplier
/// (1.0 for the correct layer; other values to check that the test notices).
fn quantize_dense<const I: usize, const O: usize>(
    d: &Dense<I, O>,
    in_q: QParams,
    out_q: QParams,
    rq_factor: f64,
) -> QDense<I, O> {
    let mut wq = [[0i8; I]; O];
    let mut bias = [0i32; O];
    let mut requant = [Requant::ZERO; O];
    for o in 0..O {
        let max = d.weights[o].iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let s_w = max / 127.0;
        for i in 0..I {
            wq[o][i] = (d.weights[o][i] / s_w).round() as i8;
        }
        let bias_q = (f64::from(d.bias[o]) / (f64::from(in_q.scale) * f64::from(s_w))).round();
        bias[o] = fold_bias(bias_q as i32, &wq[o], in_q.zero_point);
        requant[o] =
            quantize_multiplier(rq_factor * per_channel_multiplier(in_q.scale, s_w, out_q.scale))
                .unwrap();
    }
    let (act_min, act_max) = quantized_activation_range(d.activation, out_q).unwrap();
    QDense::new(
        leak(wq),
        leak(bias),
        leak(requant),
        out_q.zero_point,
        act_min,
        act_max,
        None,
    )
}

/// The f32 model's tensors at `x`: input, encoder hidden, mu, logvar, decoder hidden (at
/// `z = mu`), decoder output.
fn tensors(f: &F32Vae, x: &[f32; QX]) -> [Vec<f32>; 6] {
    let (mut h, mut mu, mut lv, mut hd, mut out) = (
        [0.0f32; QH],
        [0.0f32; QZ],
        [0.0f32; QZ],
        [0.0f32; QHD],
        [0.0f32; QX],
    );
    f.encoder.forward(x, &mut h, &mut ());
    f.mu_head.forward(&h, &mut mu, &mut ());
    f.logvar_head.forward(&h, &mut lv, &mut ());
    f.decoder.first.forward(&mu, &mut hd, &mut ());
    f.decoder.second.forward(&hd, &mut out, &mut ());
    // The Vae composes the same layers.
    let mut out2 = [0.0f32; QX];
    let mut scratch = F32Vae::SCRATCH;
    f.decode_array(&mu, &mut out2, &mut scratch);
    assert_eq!(out, out2);
    [
        x.to_vec(),
        h.to_vec(),
        mu.to_vec(),
        lv.to_vec(),
        hd.to_vec(),
        out.to_vec(),
    ]
}

/// Per-tensor ranges over the calibration inputs.
fn calibrate(f: &F32Vae) -> [Range; 6] {
    let mut r = [Range::EMPTY; 6];
    let mut rng = TestRng(7);
    for _ in 0..CALIBRATION {
        let x = input(&mut rng);
        for (r, t) in r.iter_mut().zip(tensors(f, &x)) {
            r.add(&t);
        }
    }
    r
}

/// The int8 model; `rq_factors[k]` scales the requantization of QDense layer `k` (encoder, mu
/// head, logvar head, decoder hidden, decoder output).
fn int8_model(f: &F32Vae, ranges: &[Range; 6], rq_factors: [f64; 5]) -> QVae {
    let [qx, qh, qmu, qlv, qhd, qout] = ranges.map(Range::qparams);
    let enc = Chain::new(
        Quantize::new(qx),
        quantize_dense(&f.encoder, qx, qh, rq_factors[0]),
    );
    let mu = Chain::new(
        quantize_dense(&f.mu_head, qh, qmu, rq_factors[1]),
        Dequantize::new(qmu),
    );
    let lv = Chain::new(
        quantize_dense(&f.logvar_head, qh, qlv, rq_factors[2]),
        Dequantize::new(qlv),
    );
    // The decoder sees z = mu (deterministic ELBO): its input grid is mu's.
    let dec = Chain::new(
        Chain::new(
            Quantize::new(qmu),
            quantize_dense(&f.decoder.first, qmu, qhd, rq_factors[3]),
        ),
        Chain::new(
            quantize_dense(&f.decoder.second, qhd, qout, rq_factors[4]),
            Dequantize::new(qout),
        ),
    );
    enc.second.validate().unwrap();
    dec.first.second.validate().unwrap();
    dec.second.first.validate().unwrap();
    mu.first.validate().unwrap();
    lv.first.validate().unwrap();
    Vae::new(enc, mu, lv, dec, f.inv_var, f.log_norm)
}

/// Int8-vs-f32 comparison over the test inputs.
struct Deviation {
    /// Largest relative deviation of the deterministic ELBO score, and where.
    worst: f64,
    worst_case: ([f32; QX], f32, f32),
    /// Mean relative deviation.
    mean: f64,
    /// Inputs compared (those whose f32 tensors stay in the calibrated ranges).
    compared: usize,
    /// Largest and mean relative deviation of the KL term.
    worst_kl: f64,
    mean_kl: f64,
}

/// Relative deviation `|s_int8 - s_f32| / |s_f32|` of the deterministic ELBO score over `n` test
/// inputs drawn like (but not equal to) the calibration inputs. Inputs that drive some f32 tensor
/// outside its calibrated range (where the int8 model saturates by design) are skipped.
fn int8_deviation(f: &F32Vae, q: &QVae, ranges: &[Range; 6], n: usize) -> Deviation {
    let mut wf: F32Ws = Workspace::new(F32Vae::SCRATCH);
    let mut wq: QWs = Workspace::new(QVae::SCRATCH);
    let mut rng = TestRng(31337);
    let mut d = Deviation {
        worst: 0.0,
        worst_case: ([0.0; QX], 0.0, 0.0),
        mean: 0.0,
        compared: 0,
        worst_kl: 0.0,
        mean_kl: 0.0,
    };
    for _ in 0..n {
        let x = input(&mut rng);
        if !ranges
            .iter()
            .zip(tensors(f, &x))
            .all(|(r, t)| r.contains(&t))
        {
            continue;
        }
        let sf = wf
            .score(f, &x, ScoreKind::Elbo, &mut default_rng(0))
            .unwrap();
        let sq = wq
            .score(q, &x, ScoreKind::Elbo, &mut default_rng(0))
            .unwrap();
        assert!(sf.score.is_finite() && sq.score.is_finite());
        let rel = f64::from((sq.score - sf.score).abs()) / f64::from(sf.score.abs());
        d.mean += rel;
        d.compared += 1;
        let rel_kl = f64::from((sq.kl - sf.kl).abs()) / f64::from(sf.kl);
        d.mean_kl += rel_kl;
        d.worst_kl = d.worst_kl.max(rel_kl);
        if rel > d.worst {
            d.worst = rel;
            d.worst_case = (x, sq.score, sf.score);
        }
    }
    d.mean /= d.compared as f64;
    d.mean_kl /= d.compared as f64;
    d
}

impl Deviation {
    /// Whether the int8 model passes: score and KL within their relative tolerances.
    fn passes(&self) -> bool {
        self.worst <= INT8_REL_TOL && self.worst_kl <= INT8_KL_REL_TOL
    }
}

#[test]
fn int8_score_close_to_f32() {
    let f = f32_model();
    let ranges = calibrate(&f);
    let q = int8_model(&f, &ranges, [1.0; 5]);
    let d = int8_deviation(&f, &q, &ranges, TEST_INPUTS);
    println!(
        "int8 vs f32 deterministic ELBO, {} of {TEST_INPUTS} inputs inside the calibrated \
         ranges: relative deviation of the score max {:.4}, mean {:.4} (tolerance \
         {INT8_REL_TOL}); of the KL max {:.4}, mean {:.4} (tolerance {INT8_KL_REL_TOL})",
        d.compared, d.worst, d.mean, d.worst_kl, d.mean_kl
    );
    assert!(
        d.compared >= TEST_INPUTS * 3 / 4,
        "too few inputs compared: {}",
        d.compared
    );
    let (x, sq, sf) = d.worst_case;
    assert!(
        d.worst <= INT8_REL_TOL,
        "int8 score {sq} vs f32 {sf} at x = {x:?}: relative deviation {} > {INT8_REL_TOL}",
        d.worst
    );
    assert!(
        d.passes(),
        "int8 KL relative deviation {} > {INT8_KL_REL_TOL}",
        d.worst_kl
    );
    // The KL of the int8 model is the KL of its dequantized posterior.
    let mut wq: QWs = Workspace::new(QVae::SCRATCH);
    let x = input(&mut TestRng(1));
    let s = wq
        .score(&q, &x, ScoreKind::Elbo, &mut default_rng(0))
        .unwrap();
    assert_eq!(s.kl, kl_std_normal(wq.mu(), wq.logvar()).unwrap());

    // The check is sensitive: any one requantization multiplier off by a factor of 2 fails it.
    for layer in 0..5 {
        for factor in [2.0, 0.5] {
            let mut f5 = [1.0; 5];
            f5[layer] = factor;
            let bad = int8_model(&f, &ranges, f5);
            let d = int8_deviation(&f, &bad, &ranges, TEST_INPUTS);
            println!(
                "  requant of layer {layer} x{factor}: relative deviation of the score max {:.4}, \
                 mean {:.4}; of the KL max {:.4}, mean {:.4}",
                d.worst, d.mean, d.worst_kl, d.mean_kl
            );
            assert!(
                !d.passes(),
                "requant of layer {layer} scaled by {factor} went unnoticed: max relative \
                 deviation {} (score), {} (KL)",
                d.worst,
                d.worst_kl
            );
        }
    }
}
