//! The variational autoencoder: encoder, Gaussian heads, decoder and decoder noise.
//!
//! For an input window `x` (length `X`, already standardized), the model is
//!
//! ```text
//! h          = E(x)                         encoder body (1–3 dense layers, f32 or int8)
//! mu, logvar = M(h), L(h)                   Gaussian heads: q(z|x) = N(mu, diag(exp(logvar)))
//! mean       = D(z)                         decoder (1–3 hidden layers + linear output)
//! p(x|z)     = N(x; mean, diag(sigma_x^2))  per-feature decoder variance, learned, constant
//! p(z)       = N(0, I)
//! ```
//!
//! The decoder variance is exported as two constants so the chip never evaluates `exp` per
//! feature: the precisions `inv_var[i] = exp(-logvar_x[i])` and the log-normaliser
//! `log_norm = -1/2 sum_i (ln 2 pi + logvar_x[i])`, both computed by [`decoder_noise`] through the
//! library's math layer (so the host-computed constants are what the chip would compute). Then
//!
//! ```text
//! log p(x|z) = log_norm - 1/2 sum_i (x_i - mean_i)^2 inv_var_i     (summed in index order)
//! ```
//!
//! Two forms run the same kernels: [`Vae`], with every width in its type (layers composed with
//! [`Chain`](crate::Chain), so a width mismatch does not compile, weights in `&'static` arrays
//! that stay in flash), and any runtime-shaped model implementing [`VaeModel`] (the host tool's
//! model loaded from a checkpoint). The scores in [`score`](crate::score()) are written against
//! [`VaeModel`], so host and chip run the same arithmetic in the same order.
//!
//! The encoder log-variance is clamped to [`LOGVAR_MIN`]..=[`LOGVAR_MAX`] by the scores (and
//! flagged in [`Score::clamped`](crate::Score)): outside that range `exp(logvar)` under- or
//! overflows f32 in the KL term.

use crate::{math, Error, GroupSet, Layer, Route, SensorGroups};

/// Smallest encoder log-variance the scores use (sigma ≈ 3.4e-4).
pub const LOGVAR_MIN: f32 = -16.0;
/// Largest encoder log-variance the scores use (sigma ≈ 3.0e3).
pub const LOGVAR_MAX: f32 = 16.0;

/// The decoder's Gaussian noise model: per-feature precision and the log-normaliser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecoderNoise<'a> {
    /// `exp(-logvar_x[i])` per feature.
    pub inv_var: &'a [f32],
    /// `-1/2 sum_i (ln 2 pi + logvar_x[i])`.
    pub log_norm: f32,
}

impl DecoderNoise<'_> {
    /// `log N(x; mean, diag(1/inv_var))`, summed in index order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x`, `mean` and `inv_var` differ in length.
    pub fn log_likelihood(&self, x: &[f32], mean: &[f32]) -> Result<f32, Error> {
        same_len(self.inv_var.len(), x.len())?;
        same_len(self.inv_var.len(), mean.len())?;
        let mut q = 0.0f32;
        for ((&xi, &mi), &p) in x.iter().zip(mean).zip(self.inv_var) {
            let d = xi - mi;
            q += d * d * p;
        }
        Ok(self.log_norm - 0.5 * q)
    }

    /// Per-feature contributions `1/2 (x_i - mean_i)^2 inv_var_i` to the negative
    /// log-likelihood (without the constant), for attribution.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the lengths differ.
    pub fn contributions(&self, x: &[f32], mean: &[f32], out: &mut [f32]) -> Result<(), Error> {
        same_len(self.inv_var.len(), x.len())?;
        same_len(self.inv_var.len(), mean.len())?;
        same_len(self.inv_var.len(), out.len())?;
        for (((o, &xi), &mi), &p) in out.iter_mut().zip(x).zip(mean).zip(self.inv_var) {
            let d = xi - mi;
            *o = 0.5 * d * d * p;
        }
        Ok(())
    }
}

/// Computes the decoder noise constants from per-feature log-variances: writes
/// `inv_var[i] = exp(-logvar[i])` and returns `log_norm = -1/2 sum (ln 2 pi + logvar[i])`.
///
/// # Errors
/// [`Error::ShapeMismatch`] on different lengths, [`Error::NonFinite`] for a non-finite
/// log-variance.
pub fn decoder_noise(logvar: &[f32], inv_var: &mut [f32]) -> Result<f32, Error> {
    same_len(logvar.len(), inv_var.len())?;
    crate::check_finite(logvar)?;
    let mut s = 0.0f32;
    for (p, &lv) in inv_var.iter_mut().zip(logvar) {
        *p = math::exp(-lv);
        s += math::LN_2PI + lv;
    }
    Ok(-0.5 * s)
}

pub(crate) fn same_len(expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { expected, found })
    }
}

/// A VAE as the scores see it: slices in, slices out, shapes known at run time.
///
/// Implemented by the typed [`Vae`] and by runtime-shaped models (the host tool's).
pub trait VaeModel {
    /// Intermediate buffers of the encoder and decoder.
    type Scratch;
    /// Length of an input window (`X`).
    fn input_dim(&self) -> usize;
    /// Latent size (`Z`).
    fn latent_dim(&self) -> usize;
    /// Encodes a standardized window into the posterior's `mu` and `logvar` (unclamped).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if a slice has the wrong length.
    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error>;
    /// Decodes a latent into the mean of p(x|z).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if a slice has the wrong length.
    fn decode(&self, z: &[f32], mean: &mut [f32], scratch: &mut Self::Scratch)
        -> Result<(), Error>;
    /// The decoder's noise model.
    fn noise(&self) -> DecoderNoise<'_>;

    /// The model's sensor groups (default: one group holding every channel).
    fn groups(&self) -> SensorGroups {
        SensorGroups::SINGLE
    }

    /// Encodes a window with only the groups in `present` (the posterior of a product of
    /// experts over them, see [`PoeVae`](crate::PoeVae)). The default, for a single-group
    /// model, is [`encode`](Self::encode).
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    fn encode_groups(
        &self,
        x: &[f32],
        present: GroupSet,
        mu: &mut [f32],
        logvar: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let _ = present;
        self.encode(x, mu, logvar, scratch)
    }

    /// Decodes a latent for a score with only the groups in `present`: the features of those
    /// groups get the mean of p(x|z); a model with one decoder per group (see
    /// [`PoeVae`](crate::PoeVae)) runs only theirs and sets the others to 0. The default, for a
    /// single-group model, is [`decode`](Self::decode).
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    fn decode_groups(
        &self,
        z: &[f32],
        present: GroupSet,
        mean: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let _ = present;
        self.decode(z, mean, scratch)
    }

    /// `log p(x_S | mean)` over the features of the groups in `present` only. The default, for
    /// a single-group model, is the [`noise`](Self::noise) model's
    /// [`log_likelihood`](DecoderNoise::log_likelihood).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x` or `mean` has the wrong length.
    fn log_likelihood_groups(
        &self,
        x: &[f32],
        mean: &[f32],
        present: GroupSet,
    ) -> Result<f32, Error> {
        let _ = present;
        self.noise().log_likelihood(x, mean)
    }

    /// What the detector adds to a score computed with the groups `present` before the alarm
    /// sees it: `threshold(all groups) - threshold(present)`, so that the one alarm threshold
    /// is each subset's own calibrated threshold. Default (and for the full set): 0.
    fn threshold_shift(&self, present: GroupSet) -> f32 {
        let _ = present;
        0.0
    }

    /// The route the last `encode` into `scratch` took, for a mixture of experts
    /// ([`Moe`](crate::Moe)): the scores add its `log pi_k` to the bound. `None` (the default)
    /// for a single VAE.
    fn route(&self, scratch: &Self::Scratch) -> Option<Route> {
        let _ = scratch;
        None
    }
    /// The decoder noise of the expert the last `encode` into `scratch` routed to
    /// ([`noise`](Self::noise) by default).
    fn routed_noise(&self, scratch: &Self::Scratch) -> DecoderNoise<'_> {
        let _ = scratch;
        self.noise()
    }
}

/// A VAE with every width in its type.
///
/// `E: Layer<X, H>` is the encoder body (f32 input; its output may be `i8` when the heads are
/// int8), `M`, `L: Layer<H, Z>` the mean and log-variance heads (f32 output), `D: Layer<Z, X>` the
/// decoder (f32 in and out; an int8 decoder quantizes `z` first and dequantizes its output).
#[derive(Clone, Copy, Debug)]
pub struct Vae<E, M, L, D, const X: usize, const H: usize, const Z: usize> {
    /// Encoder body.
    pub encoder: E,
    /// Head giving the posterior mean.
    pub mu_head: M,
    /// Head giving the posterior log-variance.
    pub logvar_head: L,
    /// Decoder to the likelihood mean.
    pub decoder: D,
    /// Decoder precisions, `exp(-logvar_x)` (see [`decoder_noise`]).
    pub inv_var: &'static [f32; X],
    /// Decoder log-normaliser (see [`decoder_noise`]).
    pub log_norm: f32,
}

/// Scratch of a typed [`Vae`]: the encoder's hidden output and every layer's own scratch.
#[derive(Clone, Copy, Debug)]
pub struct VaeScratch<T, const H: usize, ES, MS, LS, DS> {
    hidden: [T; H],
    encoder: ES,
    mu_head: MS,
    logvar_head: LS,
    decoder: DS,
}

/// The scratch type of a typed [`Vae`].
pub type ScratchOf<E, M, L, D, const X: usize, const H: usize, const Z: usize> = VaeScratch<
    <E as Layer<X, H>>::Out,
    H,
    <E as Layer<X, H>>::Scratch,
    <M as Layer<H, Z>>::Scratch,
    <L as Layer<H, Z>>::Scratch,
    <D as Layer<Z, X>>::Scratch,
>;

impl<E, M, L, D, const X: usize, const H: usize, const Z: usize> Vae<E, M, L, D, X, H, Z>
where
    E: Layer<X, H, In = f32>,
    M: Layer<H, Z, In = E::Out, Out = f32>,
    L: Layer<H, Z, In = E::Out, Out = f32>,
    D: Layer<Z, X, In = f32, Out = f32>,
{
    /// Builds a model from its parts; usable in `static` initialisers.
    pub const fn new(
        encoder: E,
        mu_head: M,
        logvar_head: L,
        decoder: D,
        inv_var: &'static [f32; X],
        log_norm: f32,
    ) -> Self {
        Self {
            encoder,
            mu_head,
            logvar_head,
            decoder,
            inv_var,
            log_norm,
        }
    }

    /// Zeroed scratch for this model, usable in a `static`.
    pub const SCRATCH: ScratchOf<E, M, L, D, X, H, Z> = VaeScratch {
        hidden: [<E::Out as crate::Scalar>::ZERO; H],
        encoder: E::SCRATCH,
        mu_head: M::SCRATCH,
        logvar_head: L::SCRATCH,
        decoder: D::SCRATCH,
    };

    /// Multiply-accumulates of one encode plus one decode.
    pub const MACS: usize = E::MACS + M::MACS + L::MACS + D::MACS;

    /// Encodes with fixed-size arrays (cannot fail).
    pub fn encode_array(
        &self,
        x: &[f32; X],
        mu: &mut [f32; Z],
        logvar: &mut [f32; Z],
        scratch: &mut ScratchOf<E, M, L, D, X, H, Z>,
    ) {
        self.encoder
            .forward(x, &mut scratch.hidden, &mut scratch.encoder);
        self.mu_head
            .forward(&scratch.hidden, mu, &mut scratch.mu_head);
        self.logvar_head
            .forward(&scratch.hidden, logvar, &mut scratch.logvar_head);
    }

    /// Decodes with fixed-size arrays (cannot fail).
    pub fn decode_array(
        &self,
        z: &[f32; Z],
        mean: &mut [f32; X],
        scratch: &mut ScratchOf<E, M, L, D, X, H, Z>,
    ) {
        self.decoder.forward(z, mean, &mut scratch.decoder);
    }
}

fn as_array<const N: usize>(s: &[f32]) -> Result<&[f32; N], Error> {
    s.try_into().map_err(|_| Error::ShapeMismatch {
        expected: N,
        found: s.len(),
    })
}

fn as_array_mut<const N: usize>(s: &mut [f32]) -> Result<&mut [f32; N], Error> {
    let found = s.len();
    s.try_into()
        .map_err(|_| Error::ShapeMismatch { expected: N, found })
}

impl<E, M, L, D, const X: usize, const H: usize, const Z: usize> VaeModel
    for Vae<E, M, L, D, X, H, Z>
where
    E: Layer<X, H, In = f32>,
    M: Layer<H, Z, In = E::Out, Out = f32>,
    L: Layer<H, Z, In = E::Out, Out = f32>,
    D: Layer<Z, X, In = f32, Out = f32>,
{
    type Scratch = ScratchOf<E, M, L, D, X, H, Z>;

    fn input_dim(&self) -> usize {
        X
    }

    fn latent_dim(&self) -> usize {
        Z
    }

    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let x = as_array::<X>(x)?;
        let mu = as_array_mut::<Z>(mu)?;
        let logvar = as_array_mut::<Z>(logvar)?;
        self.encode_array(x, mu, logvar, scratch);
        Ok(())
    }

    fn decode(
        &self,
        z: &[f32],
        mean: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let z = as_array::<Z>(z)?;
        let mean = as_array_mut::<X>(mean)?;
        self.decode_array(z, mean, scratch);
        Ok(())
    }

    fn noise(&self) -> DecoderNoise<'_> {
        DecoderNoise {
            inv_var: self.inv_var,
            log_norm: self.log_norm,
        }
    }
}
