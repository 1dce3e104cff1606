//! A mixture of expert VAEs behind a [`SummaryGate`]: top-1 routing on the chip, dense
//! log-sum-exp mixing as the host's reference.
//!
//! With `K` expert VAEs `p_k(x)` and the gate's weights `pi_k(x)` (a softmax, see
//! [`gate`](crate::SummaryGate)), the mixture is `p(x) = sum_k pi_k p_k(x)`. For any single
//! expert `k`, since every term of the sum is non-negative,
//!
//! ```text
//! ln p(x) >= ln pi_k + ln p_k(x) >= ln pi_k + ELBO_k(x)            (top-1, k = the gate's argmax)
//! ln p(x) >= LSE_k( ln pi_k + ELBO_k(x) )                          (dense: every expert)
//! ```
//!
//! so both anomaly scores, `-(ln pi_k + ELBO_k(x))` (top-1) and `-LSE_k(..)` (dense), are upper
//! bounds on `-ln p(x)` in nats, with `dense <= top-1` (equal when one term dominates the sum;
//! when the gate routes away from the expert that explains the window best, the gap is what the
//! gate's error costs). Any bound of the library (ELBO, sampled ELBO, IWAE-K, reconstruction
//! probability) can stand for `ELBO_k`.
//!
//! [`Moe`] implements [`VaeModel`]: `encode` routes the window through the gate (recorded in
//! [`MoeScratch`]) and runs the chosen expert; `decode` and the decoder noise are that expert's;
//! [`score`](crate::score()) adds the route's `ln pi_k`. So the same [`Workspace`](crate::Workspace),
//! [`Detector`](crate::Detector) and attribution run a mixture, at the cost of the gate (`2 X +
//! 2 C K` multiply-adds) plus one expert. [`dense_score`] evaluates every expert (host only).

use rand_core::Rng;

use crate::math::LogSumExp;
use crate::{
    Buffers, DecoderNoise, Error, Layer, NormalSampler, Route, Score, ScoreKind, ScratchOf,
    SummaryGate, Vae, VaeModel, MAX_EXPERTS,
};

/// `K` expert VAEs of one type behind a gate (`K = gate.experts() = experts.len()`).
#[derive(Clone, Copy, Debug)]
pub struct Moe<'a, V> {
    /// The gate.
    pub gate: SummaryGate<'a>,
    /// The experts, in the gate's order.
    pub experts: &'a [V],
}

/// Scratch of a [`Moe`]: the experts' shared scratch and the last window's route.
#[derive(Clone, Copy, Debug)]
pub struct MoeScratch<S> {
    /// The experts' scratch (every expert has the same shapes).
    pub inner: S,
    /// The route of the last encoded window.
    pub route: Route,
}

impl<S> MoeScratch<S> {
    /// Wraps the experts' scratch; usable in a `static`.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            route: Route {
                expert: 0,
                log_weight: 0.0,
            },
        }
    }
}

impl<'a, V: VaeModel> Moe<'a, V> {
    /// A mixture from its gate and experts; usable in `static` initialisers.
    pub const fn new(gate: SummaryGate<'a>, experts: &'a [V]) -> Self {
        Self { gate, experts }
    }

    /// Checks the gate, that it has one logit per expert, and that every expert has the first
    /// one's shapes and the gate's channel count divides the input.
    ///
    /// # Errors
    /// As [`SummaryGate::validate`]; [`Error::ShapeMismatch`] for an expert count or shape that
    /// differs.
    pub fn validate(&self) -> Result<(), Error> {
        self.gate.validate()?;
        same(self.gate.experts(), self.experts.len())?;
        let first = self.experts.first().ok_or(Error::Empty)?;
        for e in self.experts {
            same(first.input_dim(), e.input_dim())?;
            same(first.latent_dim(), e.latent_dim())?;
        }
        if !first.input_dim().is_multiple_of(self.gate.channels) {
            return Err(Error::InvalidModel);
        }
        Ok(())
    }

    fn expert(&self, route: Route) -> Result<&V, Error> {
        self.experts
            .get(usize::from(route.expert))
            .ok_or(Error::InvalidModel)
    }
}

/// The typed form the firmware compiles in: experts that are typed [`Vae`]s.
impl<'a, E, M, L, D, const X: usize, const H: usize, const Z: usize>
    Moe<'a, Vae<E, M, L, D, X, H, Z>>
where
    E: Layer<X, H, In = f32>,
    M: Layer<H, Z, In = E::Out, Out = f32>,
    L: Layer<H, Z, In = E::Out, Out = f32>,
    D: Layer<Z, X, In = f32, Out = f32>,
{
    /// Zeroed scratch for this mixture, usable in a `static`.
    pub const SCRATCH: MoeScratch<ScratchOf<E, M, L, D, X, H, Z>> =
        MoeScratch::new(Vae::<E, M, L, D, X, H, Z>::SCRATCH);

    /// Multiply-accumulates of one expert's encode plus decode (the gate adds `2 X + 2 C K`).
    pub const MACS: usize = Vae::<E, M, L, D, X, H, Z>::MACS;

    /// Routes `x` and encodes it with the chosen expert (the route is left in `scratch`). A
    /// gate that cannot route (non-finite logits) leaves the outputs untouched; the scores
    /// ([`VaeModel::encode`]) report that as an error instead.
    pub fn encode_array(
        &self,
        x: &[f32; X],
        mu: &mut [f32; Z],
        logvar: &mut [f32; Z],
        scratch: &mut MoeScratch<ScratchOf<E, M, L, D, X, H, Z>>,
    ) {
        if let Ok(route) = self.gate.route(x) {
            scratch.route = route;
            if let Ok(e) = self.expert(route) {
                e.encode_array(x, mu, logvar, &mut scratch.inner);
            }
        }
    }

    /// Decodes `z` with the expert of the last route.
    pub fn decode_array(
        &self,
        z: &[f32; Z],
        mean: &mut [f32; X],
        scratch: &mut MoeScratch<ScratchOf<E, M, L, D, X, H, Z>>,
    ) {
        if let Ok(e) = self.expert(scratch.route) {
            e.decode_array(z, mean, &mut scratch.inner);
        }
    }
}

fn same(expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { expected, found })
    }
}

impl<V: VaeModel> VaeModel for Moe<'_, V> {
    type Scratch = MoeScratch<V::Scratch>;

    fn input_dim(&self) -> usize {
        self.experts.first().map_or(0, VaeModel::input_dim)
    }

    fn latent_dim(&self) -> usize {
        self.experts.first().map_or(0, VaeModel::latent_dim)
    }

    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let route = self.gate.route(x)?;
        scratch.route = route;
        self.expert(route)?
            .encode(x, mu, logvar, &mut scratch.inner)
    }

    fn decode(
        &self,
        z: &[f32],
        mean: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        self.expert(scratch.route)?
            .decode(z, mean, &mut scratch.inner)
    }

    /// Expert 0's noise (the scores use [`routed_noise`](VaeModel::routed_noise)).
    fn noise(&self) -> DecoderNoise<'_> {
        self.experts.first().map_or(
            DecoderNoise {
                inv_var: &[],
                log_norm: 0.0,
            },
            VaeModel::noise,
        )
    }

    fn route(&self, scratch: &Self::Scratch) -> Option<Route> {
        Some(scratch.route)
    }

    fn routed_noise(&self, scratch: &Self::Scratch) -> DecoderNoise<'_> {
        self.expert(scratch.route)
            .map_or_else(|_| self.noise(), VaeModel::noise)
    }
}

/// The dense mixture score `-LSE_k(ln pi_k(x) - s_k(x))` of window `x`, where `s_k` is expert
/// `k`'s `kind` score (see the module doc); every expert is evaluated, each drawing its samples
/// from a clone of `rng` (so the experts see the same draws). Returns the score and the
/// expert whose term is largest (first on ties). An expert whose score overflowed contributes
/// nothing; if all did, the score is `f32::MAX`.
///
/// # Errors
/// As [`score()`](crate::score()) and [`SummaryGate::route`]; [`Error::ShapeMismatch`] if the
/// gate's expert count differs from `experts.len()`.
#[allow(clippy::too_many_arguments)] // the score's own arguments plus the gate
pub fn dense_score<V: VaeModel, R: Rng + Clone>(
    gate: &SummaryGate<'_>,
    experts: &[V],
    x: &[f32],
    kind: ScoreKind,
    buf: Buffers<'_>,
    scratch: &mut V::Scratch,
    sampler: &mut NormalSampler,
    rng: &R,
) -> Result<(f32, u8), Error> {
    let mut lw = [0.0f32; MAX_EXPERTS];
    let k = gate.log_weights(x, &mut lw)?;
    same(k, experts.len())?;
    let mut acc = LogSumExp::new();
    let mut best = (f32::NEG_INFINITY, 0u8);
    for ((i, e), &w) in experts.iter().enumerate().zip(lw.iter()) {
        let mut r = rng.clone();
        let b = Buffers {
            mu: &mut *buf.mu,
            logvar: &mut *buf.logvar,
            z: &mut *buf.z,
            eps: &mut *buf.eps,
            mean: &mut *buf.mean,
        };
        let s: Score = crate::score(e, x, kind, b, scratch, sampler, &mut r)?;
        if s.overflow {
            continue;
        }
        let t = w - s.score;
        if t > best.0 {
            best = (t, u8::try_from(i).map_err(|_| Error::InvalidModel)?);
        }
        acc.push(t);
    }
    let v = -acc.value();
    Ok((if v.is_finite() { v } else { f32::MAX }, best.1))
}
