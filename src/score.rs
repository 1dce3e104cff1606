//! Anomaly scores: the ELBO, the importance-weighted bound and the reconstruction probability.
//!
//! For a standardized window `x`, with `q(z|x) = N(mu, diag(exp(logvar)))` from the encoder,
//! `p(x|z)` the decoder's Gaussian (see [`vae`](crate::VaeModel)) and `p(z) = N(0, I)`:
//!
//! ```text
//! ELBO (deterministic) = log p(x | z = mu) - KL(q(z|x) || p(z))
//! ELBO (L samples)     = 1/L sum_l log p(x | z_l) - KL(q(z|x) || p(z)),    z_l ~ q(z|x)
//! IWAE-K               = ln(1/K sum_k w_k),  ln w_k = ln p(x|z_k) + ln p(z_k) - ln q(z_k|x)
//! recon. probability   = ln(1/L sum_l p(x | z_l))                  (An & Cho, 2015)
//! KL(q || N(0, I))     = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)
//! ```
//!
//! The anomaly score is the negative of the chosen bound, in nats: high means unlikely under the
//! model. IWAE-K is a lower bound of `ln p(x)` that is never looser than the ELBO in expectation
//! and tightens as K grows (Burda et al., 2016). Samples use `z = mu + exp(logvar/2) * eps` with
//! `eps` from [`NormalSampler`] (Box–Muller through the library's math layer), and
//! `ln q(z|x) = -1/2 sum_j (ln 2 pi + logvar_j + eps_j^2)` is computed from `eps` directly.
//! Log-sum-exps are streamed ([`LogSumExp`]), so no per-sample buffer is needed.
//!
//! Input with a NaN or infinity is refused with [`Error::NonFinite`]. The encoder log-variance is
//! clamped to [`LOGVAR_MIN`]..=[`LOGVAR_MAX`] and the result flagged [`Score::clamped`]; a score
//! that overflows f32 (input far outside anything seen in training) is returned as `f32::MAX`
//! with [`Score::overflow`] set, so it still raises an alarm and never poisons later arithmetic.
//!
//! Stack: a [`Workspace`] holds every buffer (`4 (4 Z + X)` bytes plus the model's scratch); the
//! score functions themselves use a few dozen bytes of locals.

use rand_core::Rng;

use crate::math::{self, LogSumExp, LN_2PI};
use crate::vae::same_len;
use crate::{Error, GroupSet, NormalSampler, VaeModel, LOGVAR_MAX, LOGVAR_MIN};

/// Which bound the anomaly score is the negative of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ScoreKind {
    /// ELBO with `z = mu`: deterministic, no random numbers, one decode.
    Elbo,
    /// ELBO with `samples` reparameterized draws (`samples` decodes).
    ElboSampled {
        /// Number of draws L (at least 1).
        samples: u16,
    },
    /// Importance-weighted bound with `samples` draws (`samples` decodes).
    Iwae {
        /// Number of importance samples K (at least 1).
        samples: u16,
    },
    /// Reconstruction probability of An & Cho (2015) with `samples` draws.
    ReconProb {
        /// Number of draws L (at least 1).
        samples: u16,
    },
}

impl ScoreKind {
    /// Number of decoder passes the score needs.
    pub const fn decodes(self) -> u16 {
        match self {
            ScoreKind::Elbo => 1,
            ScoreKind::ElboSampled { samples }
            | ScoreKind::Iwae { samples }
            | ScoreKind::ReconProb { samples } => samples,
        }
    }

    /// Whether the score draws random numbers.
    pub const fn is_sampled(self) -> bool {
        !matches!(self, ScoreKind::Elbo)
    }
}

/// One window's score and its parts.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Score {
    /// The anomaly score: minus the chosen bound, in nats.
    pub score: f32,
    /// Reconstruction term: `ln p(x | mu)` for [`ScoreKind::Elbo`], otherwise the mean of
    /// `ln p(x | z_l)` over the draws.
    pub recon: f32,
    /// `KL(q(z|x) || N(0, I))`, analytic.
    pub kl: f32,
    /// The encoder log-variance was clamped to [`LOGVAR_MIN`]..=[`LOGVAR_MAX`].
    pub clamped: bool,
    /// The bound overflowed f32; `score` is `f32::MAX`.
    pub overflow: bool,
}

/// Caller-owned buffers for a runtime-shaped score (lengths `Z` for the latent buffers, `X` for
/// `mean`).
#[derive(Debug)]
pub struct Buffers<'a> {
    /// Posterior mean (Z).
    pub mu: &'a mut [f32],
    /// Posterior log-variance (Z).
    pub logvar: &'a mut [f32],
    /// Latent draw (Z).
    pub z: &'a mut [f32],
    /// Standard-normal noise of the draw (Z).
    pub eps: &'a mut [f32],
    /// Decoder mean (X).
    pub mean: &'a mut [f32],
}

/// Scores one standardized window `x` with any [`VaeModel`].
///
/// Deterministic for [`ScoreKind::Elbo`]; otherwise the draws come from `sampler` and `rng`, so
/// the same seed gives the same score on the host and on the chip. The sampler is reset at the
/// start of every call (a Box–Muller value cached by an earlier call is dropped), so a score is a
/// function of the window, the model and the generator's state only.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN/infinite input value, [`Error::ShapeMismatch`] for buffers of
/// the wrong length, [`Error::InvalidParameter`] for zero samples.
pub fn score<V: VaeModel, R: Rng + ?Sized>(
    model: &V,
    x: &[f32],
    kind: ScoreKind,
    buf: Buffers<'_>,
    scratch: &mut V::Scratch,
    sampler: &mut NormalSampler,
    rng: &mut R,
) -> Result<Score, Error> {
    let groups = model.groups();
    let present = (groups.count() > 1).then(|| groups.all());
    score_impl(model, x, present, kind, buf, scratch, sampler, rng)
}

/// Scores one standardized window with only the sensor groups in `present` (see
/// [`PoeVae`](crate::PoeVae)): minus `ELBO_S` (or IWAE over `S`), where the posterior is the
/// product of the present groups' experts and the likelihood counts their features only.
/// [`score()`] is this with every group of the model; for a single-group model `present` is
/// ignored. Values of absent groups' features may be anything finite (the detector leaves the
/// placeholder samples there).
///
/// # Errors
/// As [`score()`]; [`Error::Empty`] if `present` holds none of the model's groups.
#[allow(clippy::too_many_arguments)]
pub fn score_groups<V: VaeModel, R: Rng + ?Sized>(
    model: &V,
    x: &[f32],
    present: GroupSet,
    kind: ScoreKind,
    buf: Buffers<'_>,
    scratch: &mut V::Scratch,
    sampler: &mut NormalSampler,
    rng: &mut R,
) -> Result<Score, Error> {
    let groups = model.groups();
    if groups.count() <= 1 {
        return score_impl(model, x, None, kind, buf, scratch, sampler, rng);
    }
    if (present.0 & groups.all().0) == 0 {
        return Err(Error::Empty);
    }
    score_impl(model, x, Some(present), kind, buf, scratch, sampler, rng)
}

/// The score; `present: None` is the single-group path (the model's own `encode` and noise
/// model, exactly the arithmetic and code of the single VAE), `Some(S)` the group hooks.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn score_impl<V: VaeModel, R: Rng + ?Sized>(
    model: &V,
    x: &[f32],
    present: Option<GroupSet>,
    kind: ScoreKind,
    buf: Buffers<'_>,
    scratch: &mut V::Scratch,
    sampler: &mut NormalSampler,
    rng: &mut R,
) -> Result<Score, Error> {
    let zd = model.latent_dim();
    same_len(model.input_dim(), x.len())?;
    same_len(model.input_dim(), buf.mean.len())?;
    for b in [&*buf.mu, &*buf.logvar, &*buf.z, &*buf.eps] {
        same_len(zd, b.len())?;
    }
    if kind.decodes() == 0 {
        return Err(Error::InvalidParameter);
    }
    crate::check_finite(x)?;

    sampler.reset();
    match present {
        None => model.encode(x, buf.mu, buf.logvar, scratch)?,
        Some(p) => model.encode_groups(x, p, buf.mu, buf.logvar, scratch)?,
    }
    let mut clamped = false;
    for lv in buf.logvar.iter_mut() {
        let c = lv.clamp(LOGVAR_MIN, LOGVAR_MAX);
        // A NaN log-variance (impossible for finite input and finite weights) is clamped too.
        let c = if c.is_nan() { LOGVAR_MAX } else { c };
        if c.to_bits() != lv.to_bits() {
            clamped = true;
        }
        *lv = c;
    }
    // An infinite or NaN mean (the encoder overflowed on finite input) makes the KL infinite, so
    // the score is flagged `overflow` below instead of failing as if the input were non-finite.
    let kl = if buf.mu.iter().all(|m| m.is_finite()) {
        crate::kl_std_normal(buf.mu, buf.logvar)?
    } else {
        f32::INFINITY
    };
    let noise = model.routed_noise(scratch);
    let log_likelihood = |x: &[f32], mean: &[f32]| match present {
        None => noise.log_likelihood(x, mean),
        Some(p) => model.log_likelihood_groups(x, mean, p),
    };
    let decode = |z: &[f32], mean: &mut [f32], scratch: &mut V::Scratch| match present {
        None => model.decode(z, mean, scratch),
        Some(p) => model.decode_groups(z, p, mean, scratch),
    };

    let (bound, recon) = match kind {
        ScoreKind::Elbo => {
            decode(buf.mu, buf.mean, scratch)?;
            let recon = log_likelihood(x, buf.mean)?;
            (recon - kl, recon)
        }
        ScoreKind::ElboSampled { samples }
        | ScoreKind::Iwae { samples }
        | ScoreKind::ReconProb { samples } => {
            let mut recon_sum = 0.0f32;
            let mut lse = LogSumExp::new();
            for _ in 0..samples {
                sampler.fill(rng, buf.eps);
                crate::reparameterize(buf.mu, buf.logvar, buf.eps, buf.z)?;
                decode(buf.z, buf.mean, scratch)?;
                let ll = log_likelihood(x, buf.mean)?;
                recon_sum += ll;
                let term = match kind {
                    ScoreKind::Iwae { .. } => {
                        let mut log_pz = 0.0f32;
                        let mut log_qz = 0.0f32;
                        for ((&z, &e), &lv) in
                            buf.z.iter().zip(buf.eps.iter()).zip(buf.logvar.iter())
                        {
                            log_pz += LN_2PI + z * z;
                            log_qz += LN_2PI + lv + e * e;
                        }
                        ll - 0.5 * log_pz + 0.5 * log_qz
                    }
                    _ => ll,
                };
                lse.push(term);
            }
            let l = f32::from(samples);
            let recon = recon_sum / l;
            let bound = match kind {
                ScoreKind::ElboSampled { .. } => recon - kl,
                _ => lse.value() - math::ln(l),
            };
            (bound, recon)
        }
    };

    // A mixture of experts adds the gate's log-weight of the routed expert (module `moe_vae`).
    let bound = match model.route(scratch) {
        Some(r) => bound + r.log_weight,
        None => bound,
    };
    let s = -bound;
    let overflow = !s.is_finite();
    Ok(Score {
        score: if overflow { f32::MAX } else { s },
        recon,
        kl,
        clamped,
        overflow,
    })
}

/// Every buffer a typed model's score needs, in one fixed-size value that can live in a
/// `static`: `X`-wide decoder mean, four `Z`-wide latent buffers, the model's scratch `S` and
/// the normal sampler's state.
#[derive(Clone, Copy, Debug)]
pub struct Workspace<S, const X: usize, const Z: usize> {
    mu: [f32; Z],
    logvar: [f32; Z],
    z: [f32; Z],
    eps: [f32; Z],
    mean: [f32; X],
    scratch: S,
    sampler: NormalSampler,
}

impl<S, const X: usize, const Z: usize> Workspace<S, X, Z> {
    /// A zeroed workspace around the model's scratch (e.g. `Workspace::new(MyVae::SCRATCH)`).
    pub const fn new(scratch: S) -> Self {
        Self {
            mu: [0.0; Z],
            logvar: [0.0; Z],
            z: [0.0; Z],
            eps: [0.0; Z],
            mean: [0.0; X],
            scratch,
            sampler: NormalSampler::new(),
        }
    }

    /// Scores one standardized window (see [`score()`]).
    ///
    /// # Errors
    /// As [`score()`]; shapes are fixed by the types, so only non-finite input and zero
    /// samples can fail.
    pub fn score<V, R>(
        &mut self,
        model: &V,
        x: &[f32; X],
        kind: ScoreKind,
        rng: &mut R,
    ) -> Result<Score, Error>
    where
        V: VaeModel<Scratch = S>,
        R: Rng + ?Sized,
    {
        let buf = Buffers {
            mu: &mut self.mu,
            logvar: &mut self.logvar,
            z: &mut self.z,
            eps: &mut self.eps,
            mean: &mut self.mean,
        };
        score(
            model,
            x,
            kind,
            buf,
            &mut self.scratch,
            &mut self.sampler,
            rng,
        )
    }

    /// Scores one standardized window with only the sensor groups in `present` (see
    /// [`score_groups`]).
    ///
    /// # Errors
    /// As [`score_groups`].
    pub fn score_groups<V, R>(
        &mut self,
        model: &V,
        x: &[f32; X],
        present: GroupSet,
        kind: ScoreKind,
        rng: &mut R,
    ) -> Result<Score, Error>
    where
        V: VaeModel<Scratch = S>,
        R: Rng + ?Sized,
    {
        let buf = Buffers {
            mu: &mut self.mu,
            logvar: &mut self.logvar,
            z: &mut self.z,
            eps: &mut self.eps,
            mean: &mut self.mean,
        };
        score_groups(
            model,
            x,
            present,
            kind,
            buf,
            &mut self.scratch,
            &mut self.sampler,
            rng,
        )
    }

    /// Posterior mean of the last scored window.
    pub fn mu(&self) -> &[f32; Z] {
        &self.mu
    }

    /// Posterior log-variance (clamped) of the last scored window.
    pub fn logvar(&self) -> &[f32; Z] {
        &self.logvar
    }

    /// Decoder mean of the last decode (for [`ScoreKind::Elbo`]: the reconstruction at `z = mu`).
    pub fn mean(&self) -> &[f32; X] {
        &self.mean
    }

    /// The model scratch (e.g. the route of the last window of a mixture of experts).
    pub fn scratch(&self) -> &S {
        &self.scratch
    }

    /// The model scratch (e.g. to run `encode`/`decode` directly).
    pub fn scratch_mut(&mut self) -> &mut S {
        &mut self.scratch
    }

    /// Forgets the normal sampler's state (a cached Box–Muller value), so the next sampled
    /// score draws from its `rng` alone. The streaming detector calls it before every window
    /// so a window's score depends only on the window and its own seed.
    pub fn reset_sampler(&mut self) {
        self.sampler = NormalSampler::new();
    }

    /// Decodes the posterior mean of the last scored window, `mean = D(mu)`, into
    /// [`mean`](Self::mean) and returns it (for [`ScoreKind::Elbo`] this is what the score left
    /// there already). Used for attribution.
    ///
    /// # Errors
    /// As the model's `decode`.
    pub fn decode_mu<V>(&mut self, model: &V) -> Result<&[f32; X], Error>
    where
        V: VaeModel<Scratch = S>,
    {
        model.decode(&self.mu, &mut self.mean, &mut self.scratch)?;
        Ok(&self.mean)
    }
}
