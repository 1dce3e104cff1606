//! The multi-sensor VAE: one encoder per sensor group, fused by a product of Gaussian experts
//! with the prior expert (MVAE, Wu & Goodman 2018), and one shared decoder or one decoder per
//! group.
//!
//! For a standardized window `x` (time-major, `x[t C + c]`) and sensor groups `g` with channels
//! `M_g` ([`SensorGroups`]), group `g`'s sub-window is its channels in ascending order at every
//! step, `x_g[t |M_g| + j] = x[t C + M_g[j]]`, and its encoder is an expert
//! `q_g(z | x_g) = N(mu_g, diag exp(lv_g))` ([`ExpertEncoder`]; `lv_g` clamped to
//! [`LOGVAR_MIN`]..=[`LOGVAR_MAX`], NaN to the maximum). An expert gives its precisions
//! `T_g = exp(-lv_g)` ([`expert_precision`](crate::expert_precision); an int8 expert looks them
//! up in a table of its 256 log-variance codes, [`PrecisionLut`](crate::PrecisionLut)), so the
//! fusion forms no precision at run time. With the present groups `S`:
//!
//! ```text
//! q_S(z | x)     = N(0, I) * prod_{g in S} q_g(z | x_g)      (normalized):
//! precision      = 1 + sum_{g in S} T_g,  lv_S = -ln(precision)
//! mean           = (sum_{g in S} T_g mu_g) / precision
//! mean_x         = D(z)                                     shared decoder, all X features
//!   or  mean_x[t C + M_g[j]] = D_g(z)[t |M_g| + j]          one decoder per group
//! log p(x_S | z) = sum_{g in S} log_norm_g - 1/2 sum_{i: channel(i) in M_S} (x_i - mean_i)^2 inv_var_i
//! ELBO_S         = log p(x_S | z = mu_S) - KL(q_S || N(0, I))
//! ```
//!
//! (`log_norm_g = -1/2 sum_{i in group g} (ln 2 pi + logvar_x[i])`, the sum over features in
//! index order.) With autoregressive noise ([`PoeVae::with_ar`], order `p > 0`) the sum of
//! squares is [`ar_quadratic`] over the channels of `M_S`: each channel's residual is predicted
//! from its own `p` previous residuals and `inv_var` holds the innovations' precisions, so
//! `log p(x_S | z)` is still a normalized Gaussian density of the present channels, one factor
//! per group. (A one-group model takes the single VAE's score path, which has no such term.) The fusion ([`fuse_precisions`]) is evaluated exactly as
//! [`product_of_experts`](crate::product_of_experts) with the prior (the prior's precision 1
//! first, then the present experts in group order; the unscaled case of its evaluation), so
//! results are bit-identical to it (`tests/poe_vae.rs`). With no group present the
//! posterior would be the prior; the scores refuse that ([`Error::Empty`]) and the detector
//! skips such a window.
//!
//! The scores in [`score_groups`](crate::score_groups) and the detector run this model through
//! [`VaeModel`]'s group hooks, so everything else (sampled scores, IWAE, alarms) is shared with
//! the single-group [`Vae`](crate::Vae). The threshold depends on `S` (fewer features, a wider
//! posterior), so the model carries a per-subset shift `threshold(all) - threshold(S)` that the
//! detector adds to a degraded window's score before the alarm.
//!
//! Cost of the full-set score: every expert's encoder (`sum_g` its MACs), `Z` `ln` and `Z`
//! divisions for the fusion (an f32 expert adds `G Z` `exp` for its precisions, an int8 one table
//! look-ups), one decode (the shared decoder, or every group's decoder and a copy of its
//! `W |M_g|` outputs into place), and `X` multiply-adds for the likelihood. With per-group
//! decoders a degraded window (groups `S`) runs only the present groups' decoders
//! ([`VaeModel::decode_groups`]; an absent group's features are set to 0, which its likelihood
//! does not count).

use core::marker::PhantomData;

use crate::math::ln;
use crate::vae::same_len;
use crate::{
    ar_quadratic, expert_precision, DecoderNoise, Error, GroupSet, Layer, SensorGroups, VaeModel,
    MAX_GROUPS,
};

/// One sensor group's encoder: its sub-window to the expert's `mu` and precisions
/// ([`expert_precision`](crate::expert_precision) of its log-variance).
pub trait ExpertEncoder {
    /// Intermediate buffers.
    type Scratch;
    /// Length of the group's sub-window (`W |M_g|`).
    fn input_dim(&self) -> usize;
    /// Encodes the sub-window into `mu` and the precisions `exp(-clamp(logvar))`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if a slice has the wrong length.
    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        precision: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error>;
}

/// A decoder: a latent to the likelihood mean of every feature (the shared decoder) or of one
/// group's sub-window (a group's decoder).
pub trait LatentDecoder {
    /// Intermediate buffers.
    type Scratch;
    /// Latent size `Z`.
    fn latent_dim(&self) -> usize;
    /// Decodes `z` into the likelihood mean (`X` values, or `W |M_g|` for a group's decoder).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if a slice has the wrong length.
    fn decode(&self, z: &[f32], mean: &mut [f32], scratch: &mut Self::Scratch)
        -> Result<(), Error>;
}

/// A product-of-experts VAE (see the module doc). All parts are borrowed, so it can be a
/// `static` with the weights in flash. `F` is the scratch's buffer type (see [`PoeScratch`]).
#[derive(Clone, Copy, Debug)]
pub struct PoeVae<'a, E, D, F> {
    /// One encoder per group, in group order.
    pub experts: &'a [E],
    /// The decoders: one (shared, all `X` features) or one per group, in group order (group
    /// `g`'s decodes its sub-window, `W |M_g|` values in the order of `x_g`).
    pub decoders: &'a [D],
    /// The channels of each group.
    pub groups: SensorGroups,
    /// Channels per sample `C`.
    pub channels: usize,
    /// Decoder precisions `exp(-logvar_x)`, `X` values.
    pub inv_var: &'a [f32],
    /// Per-group decoder log-normalizers `log_norm_g`.
    pub group_log_norm: &'a [f32],
    /// `threshold(all) - threshold(S)` per subset, indexed by [`GroupSet::index`].
    pub shifts: &'a [f32; 16],
    /// Autoregressive noise coefficients, `ar_order` per channel (`C ar_order` values; see
    /// [`ar_quadratic`]); empty with `ar_order` 0 (the diagonal noise model).
    pub ar: &'a [f32],
    /// The order `p` of the autoregressive noise (0: diagonal).
    pub ar_order: usize,
    buffers: PhantomData<fn() -> F>,
}

/// Scratch of a [`PoeVae`]: the experts' and the decoders' scratch, a buffer for a group's
/// sub-window (at least the largest `W |M_g|`; it also holds a group decoder's output), and
/// the experts' means and precisions (at least `G Z` each). `F` is an array for the typed
/// firmware or a `Vec<f32>` on the host.
#[derive(Clone, Copy, Debug)]
pub struct PoeScratch<ES, DS, F> {
    /// Scratch of the expert encoders (shared: they run one after the other).
    pub experts: ES,
    /// Scratch of the decoders (shared: they run one after the other).
    pub decoder: DS,
    /// A group's gathered sub-window.
    pub gather: F,
    /// The experts' means, `G Z`.
    pub means: F,
    /// The experts' precisions `exp(-clamp(logvar))`, `G Z`.
    pub precisions: F,
}

/// The product of the experts in `present` and of `N(0, I)`: `means` and `precisions` hold
/// `Z` values per group (group `g` at `g Z`; precisions as [`expert_precision`] gives them);
/// writes the posterior to `mu` and `logvar` (`Z` each): per dimension
/// `P = 1 + sum_g T_g` (in group order), `mu = (sum_g T_g mu_g) / P`, `logvar = -ln P`. This is
/// [`product_of_experts`](crate::product_of_experts) with `prior = true` (same operations in
/// the same order, so bit-identical for log-variances in `-16..=16`).
///
/// # Errors
/// [`Error::ShapeMismatch`] if `means` or `precisions` is shorter than
/// `(last present group + 1) Z` or `mu` and `logvar` differ in length.
pub fn fuse_precisions(
    means: &[f32],
    precisions: &[f32],
    present: GroupSet,
    mu: &mut [f32],
    logvar: &mut [f32],
) -> Result<(), Error> {
    fuse_with(means, precisions, present, mu, logvar, |t| t)
}

/// [`fuse_precisions`] of experts given by their log-variances (`logvars`, `Z` per group; each
/// turned into its precision by [`expert_precision`], so clamped to `-16..=16` first).
///
/// # Errors
/// As [`fuse_precisions`].
pub fn fuse_experts(
    means: &[f32],
    logvars: &[f32],
    present: GroupSet,
    mu: &mut [f32],
    logvar: &mut [f32],
) -> Result<(), Error> {
    fuse_with(means, logvars, present, mu, logvar, expert_precision)
}

/// The fusion, with `precision` mapping a value of `values` to its expert's precision.
#[inline(always)]
fn fuse_with(
    means: &[f32],
    values: &[f32],
    present: GroupSet,
    mu: &mut [f32],
    logvar: &mut [f32],
    precision: impl Fn(f32) -> f32,
) -> Result<(), Error> {
    let z = mu.len();
    same_len(z, logvar.len())?;
    let need = present.iter().last().map_or(0, |g| (g + 1) * z);
    if means.len() < need || values.len() < need {
        return Err(Error::ShapeMismatch {
            expected: need,
            found: means.len().min(values.len()),
        });
    }
    for (k, (m_out, lv_out)) in mu.iter_mut().zip(logvar.iter_mut()).enumerate() {
        let mut p = 1.0f32;
        let mut acc = 0.0f32;
        for g in present.iter() {
            let t = precision(values.get(g * z + k).copied().unwrap_or(0.0));
            p += t;
            acc += t * means.get(g * z + k).copied().unwrap_or(0.0);
        }
        *m_out = acc / p;
        *lv_out = 0.0 - ln(p);
    }
    Ok(())
}

/// The channels of group `g` below `c`, ascending, and their count `k` (the first `k` slots).
#[inline(always)]
fn group_channels(groups: SensorGroups, g: usize, c: usize) -> ([usize; 32], usize) {
    let mask = groups.channels(g);
    let mut chans = [0usize; 32];
    let mut k = 0usize;
    for (ch, slot) in (0..c.min(32))
        .filter(|&ch| mask.contains(ch))
        .zip(chans.iter_mut())
    {
        *slot = ch;
        k += 1;
    }
    (chans, k)
}

/// Copies the channels `chans` (ascending) of every step of `x` (`c` per step) to `out`, the
/// group's sub-window `out[t k + j] = x[t c + chans[j]]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `chans` is empty (a group with no channel below `c`, a malformed
/// model: nothing to gather; the explicit test also lets the compiler drop
/// `chunks_exact_mut`'s zero-size panic).
#[inline(always)]
fn gather(x: &[f32], chans: &[usize], c: usize, out: &mut [f32]) -> Result<(), Error> {
    let k = chans.len();
    let (Some(&first), Some(&last)) = (chans.first(), chans.last()) else {
        return Err(Error::ShapeMismatch {
            expected: out.len(),
            found: 0,
        });
    };
    if c == 0 {
        return Err(Error::ShapeMismatch {
            expected: 1,
            found: 0,
        });
    }
    if k == 3 && last == first + 2 {
        // Three adjacent channels (a 3-axis sensor): one 3-value copy per step.
        let (dst3, _) = out.as_chunks_mut::<3>();
        for (d, step) in dst3.iter_mut().zip(x.chunks_exact(c)) {
            if let Some(&[a, b, v]) = step.get(first..first + 3) {
                *d = [a, b, v];
            }
        }
    } else if last + 1 == first + k {
        // Adjacent channels: one slice per step.
        for (dst, step) in out.chunks_exact_mut(k).zip(x.chunks_exact(c)) {
            let src = step.get(first..).unwrap_or(&[]);
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v;
            }
        }
    } else {
        for (dst, step) in out.chunks_exact_mut(k).zip(x.chunks_exact(c)) {
            for (d, &ch) in dst.iter_mut().zip(chans) {
                *d = step.get(ch).copied().unwrap_or(0.0);
            }
        }
    }
    Ok(())
}

/// The inverse of [`gather`]: writes a group's sub-window `src` (`k = chans.len()` values per
/// step) into its channels of `x` (`c` per step), `x[t c + chans[j]] = src[t k + j]`; the other
/// channels are left as they are.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `chans` is empty or `src` does not hold `k` values for every
/// step of `x`.
#[inline(always)]
fn scatter(src: &[f32], chans: &[usize], c: usize, x: &mut [f32]) -> Result<(), Error> {
    let k = chans.len();
    let (Some(&first), Some(&last)) = (chans.first(), chans.last()) else {
        return Err(Error::ShapeMismatch {
            expected: src.len(),
            found: 0,
        });
    };
    if c == 0 || src.len() != k * (x.len() / c) {
        return Err(Error::ShapeMismatch {
            expected: k * (x.len() / c.max(1)),
            found: src.len(),
        });
    }
    if k == 3 && last == first + 2 {
        let (src3, _) = src.as_chunks::<3>();
        for (&[a, b, v], step) in src3.iter().zip(x.chunks_exact_mut(c)) {
            if let Some([da, db, dv]) = step.get_mut(first..first + 3) {
                *da = a;
                *db = b;
                *dv = v;
            }
        }
    } else {
        for (s, step) in src.chunks_exact(k).zip(x.chunks_exact_mut(c)) {
            for (&v, &ch) in s.iter().zip(chans) {
                if let Some(d) = step.get_mut(ch) {
                    *d = v;
                }
            }
        }
    }
    Ok(())
}

/// The first `n` values of a scratch buffer.
///
/// # Errors
/// [`Error::ShapeMismatch`] if it is shorter.
#[inline(always)]
fn head(buf: &mut [f32], n: usize) -> Result<&mut [f32], Error> {
    let have = buf.len();
    buf.get_mut(..n).ok_or(Error::ShapeMismatch {
        expected: n,
        found: have,
    })
}

/// Sets the channels `chans` of every step of `x` (`c` per step) to 0.
#[inline(always)]
fn fill_channels(chans: &[usize], c: usize, x: &mut [f32]) {
    if c == 0 {
        return;
    }
    for step in x.chunks_exact_mut(c) {
        for &ch in chans {
            if let Some(d) = step.get_mut(ch) {
                *d = 0.0;
            }
        }
    }
}

impl<'a, E, D, F> PoeVae<'a, E, D, F> {
    /// Assembles a model (usable in `static` initialisers); see the fields.
    pub const fn new(
        experts: &'a [E],
        decoders: &'a [D],
        groups: SensorGroups,
        channels: usize,
        inv_var: &'a [f32],
        group_log_norm: &'a [f32],
        shifts: &'a [f32; 16],
    ) -> Self {
        Self {
            experts,
            decoders,
            groups,
            channels,
            inv_var,
            group_log_norm,
            shifts,
            ar: &[],
            ar_order: 0,
            buffers: PhantomData,
        }
    }

    /// The model with autoregressive decoder noise of order `order` and coefficients `ar`
    /// (`C order` values, channel-major; see [`ar_quadratic`]). `inv_var` and
    /// `group_log_norm` are then the innovations' precisions and log-normalizers.
    pub const fn with_ar(mut self, order: usize, ar: &'a [f32]) -> Self {
        self.ar = ar;
        self.ar_order = order;
        self
    }

    fn group_count(&self) -> usize {
        self.groups.count().min(self.experts.len()).min(MAX_GROUPS)
    }
}

impl<E, D, F> VaeModel for PoeVae<'_, E, D, F>
where
    E: ExpertEncoder,
    D: LatentDecoder,
    F: AsRef<[f32]> + AsMut<[f32]>,
{
    type Scratch = PoeScratch<E::Scratch, D::Scratch, F>;

    fn input_dim(&self) -> usize {
        self.inv_var.len()
    }

    fn latent_dim(&self) -> usize {
        self.decoders.first().map_or(0, LatentDecoder::latent_dim)
    }

    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        self.encode_groups(x, self.groups.all(), mu, logvar, scratch)
    }

    fn decode(
        &self,
        z: &[f32],
        mean: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        self.decode_groups(z, self.groups.all(), mean, scratch)
    }

    fn noise(&self) -> DecoderNoise<'_> {
        let mut log_norm = 0.0f32;
        for &l in self.group_log_norm.iter().take(self.group_count()) {
            log_norm += l;
        }
        DecoderNoise {
            inv_var: self.inv_var,
            log_norm,
        }
    }

    fn groups(&self) -> SensorGroups {
        self.groups
    }

    fn decode_groups(
        &self,
        z: &[f32],
        present: GroupSet,
        mean: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        if let [shared] = self.decoders {
            return shared.decode(z, mean, &mut scratch.decoder);
        }
        same_len(self.inv_var.len(), mean.len())?;
        if self.decoders.len() != self.group_count() {
            return Err(Error::InvalidParameter);
        }
        let c = self.channels;
        for (g, decoder) in self.decoders.iter().enumerate() {
            let (chans, k) = group_channels(self.groups, g, c);
            let chans = chans.get(..k).unwrap_or(&[]);
            if !present.contains(g) {
                // Not decoded: the group's features are left at 0 (its training mean).
                fill_channels(chans, c, mean);
                continue;
            }
            let n = k * (mean.len() / c.max(1));
            let out = head(scratch.gather.as_mut(), n)?;
            decoder.decode(z, out, &mut scratch.decoder)?;
            let out = scratch.gather.as_ref().get(..n).unwrap_or(&[]);
            scatter(out, chans, c, mean)?;
        }
        Ok(())
    }

    fn encode_groups(
        &self,
        x: &[f32],
        present: GroupSet,
        mu: &mut [f32],
        logvar: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let present = GroupSet(present.0 & self.groups.all().0);
        same_len(self.inv_var.len(), x.len())?;
        let c = self.channels;
        if c == 0 || !x.len().is_multiple_of(c) {
            return Err(Error::ShapeMismatch {
                expected: c,
                found: x.len(),
            });
        }
        let z = mu.len();
        for g in present.iter() {
            let expert = self.experts.get(g).ok_or(Error::InvalidParameter)?;
            let n = expert.input_dim();
            let gather_buf = head(scratch.gather.as_mut(), n)?;
            let (chans, k) = group_channels(self.groups, g, c);
            same_len(n, k * (x.len() / c))?;
            gather(x, chans.get(..k).unwrap_or(&[]), c, gather_buf)?;
            let range = g * z..(g + 1) * z;
            let m = scratch
                .means
                .as_mut()
                .get_mut(range.clone())
                .ok_or(Error::ShapeMismatch {
                    expected: (g + 1) * z,
                    found: 0,
                })?;
            let t = scratch
                .precisions
                .as_mut()
                .get_mut(range)
                .ok_or(Error::ShapeMismatch {
                    expected: (g + 1) * z,
                    found: 0,
                })?;
            let gather = scratch.gather.as_ref().get(..n).unwrap_or(&[]);
            expert.encode(gather, m, t, &mut scratch.experts)?;
            // A non-finite mean (encoder overflow) is kept out of the product's arithmetic: it
            // makes the fused mean non-finite, which the score reports as an overflow.
        }
        fuse_precisions(
            scratch.means.as_ref(),
            scratch.precisions.as_ref(),
            present,
            mu,
            logvar,
        )
    }

    fn log_likelihood_groups(
        &self,
        x: &[f32],
        mean: &[f32],
        present: GroupSet,
    ) -> Result<f32, Error> {
        same_len(self.inv_var.len(), x.len())?;
        same_len(self.inv_var.len(), mean.len())?;
        let present = GroupSet(present.0 & self.groups.all().0);
        if self.ar_order > 0 {
            let mut log_norm = 0.0f32;
            for g in present.iter() {
                log_norm += self.group_log_norm.get(g).copied().unwrap_or(0.0);
            }
            let used = self.groups.channels_of(present);
            let q = ar_quadratic(
                x,
                mean,
                self.inv_var,
                self.ar,
                self.ar_order,
                self.channels,
                used,
            )?;
            return Ok(log_norm - 0.5 * q);
        }
        if present == self.groups.all() {
            // Every feature counts: the noise model's sum, the same operations in the same order.
            return self.noise().log_likelihood(x, mean);
        }
        let used = self.groups.channels_of(present);
        let c = self.channels.max(1);
        let mut log_norm = 0.0f32;
        for g in present.iter() {
            log_norm += self.group_log_norm.get(g).copied().unwrap_or(0.0);
        }
        let mut q = 0.0f32;
        for step in x
            .chunks_exact(c)
            .zip(mean.chunks_exact(c))
            .zip(self.inv_var.chunks_exact(c))
        {
            let ((xs, ms), ps) = step;
            for (ch, ((&xi, &mi), &p)) in xs.iter().zip(ms).zip(ps).enumerate() {
                if used.contains(ch) {
                    let d = xi - mi;
                    q += d * d * p;
                }
            }
        }
        Ok(log_norm - 0.5 * q)
    }

    fn threshold_shift(&self, present: GroupSet) -> f32 {
        self.shifts.get(present.index()).copied().unwrap_or(0.0)
    }
}

/// A typed expert: encoder body `B: Layer<XG, H>`, mean head `M: Layer<H, Z>` as in
/// [`Vae`](crate::Vae), and a head `L: Layer<H, Z>` that gives the precisions: the log-variance
/// head followed by [`PrecisionLut`](crate::PrecisionLut) (int8) or
/// [`Precision`](crate::Precision) (f32).
#[derive(Clone, Copy, Debug)]
pub struct TypedExpert<B, M, L, const XG: usize, const H: usize, const Z: usize> {
    /// Encoder body.
    pub body: B,
    /// Mean head.
    pub mu_head: M,
    /// Precision head (the log-variance head, then its precisions).
    pub logvar_head: L,
}

/// Scratch of a [`TypedExpert`].
#[derive(Clone, Copy, Debug)]
pub struct TypedExpertScratch<T, const H: usize, BS, MS, LS> {
    hidden: [T; H],
    body: BS,
    mu_head: MS,
    logvar_head: LS,
}

impl<B, M, L, const XG: usize, const H: usize, const Z: usize> TypedExpert<B, M, L, XG, H, Z>
where
    B: Layer<XG, H, In = f32>,
    M: Layer<H, Z, In = B::Out, Out = f32>,
    L: Layer<H, Z, In = B::Out, Out = f32>,
{
    /// Zeroed scratch, usable in a `static`.
    pub const SCRATCH: TypedExpertScratch<B::Out, H, B::Scratch, M::Scratch, L::Scratch> =
        TypedExpertScratch {
            hidden: [<B::Out as crate::Scalar>::ZERO; H],
            body: B::SCRATCH,
            mu_head: M::SCRATCH,
            logvar_head: L::SCRATCH,
        };

    /// Multiply-accumulates of one expert: body and both heads.
    pub const MACS: usize = B::MACS + M::MACS + L::MACS;
}

impl<B, M, L, const XG: usize, const H: usize, const Z: usize> ExpertEncoder
    for TypedExpert<B, M, L, XG, H, Z>
where
    B: Layer<XG, H, In = f32>,
    M: Layer<H, Z, In = B::Out, Out = f32>,
    L: Layer<H, Z, In = B::Out, Out = f32>,
{
    type Scratch = TypedExpertScratch<B::Out, H, B::Scratch, M::Scratch, L::Scratch>;

    fn input_dim(&self) -> usize {
        XG
    }

    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        precision: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let x: &[f32; XG] = x.try_into().map_err(|_| Error::ShapeMismatch {
            expected: XG,
            found: x.len(),
        })?;
        let found = mu.len();
        let mu: &mut [f32; Z] = mu
            .try_into()
            .map_err(|_| Error::ShapeMismatch { expected: Z, found })?;
        let found = precision.len();
        let precision: &mut [f32; Z] = precision
            .try_into()
            .map_err(|_| Error::ShapeMismatch { expected: Z, found })?;
        self.body.forward(x, &mut scratch.hidden, &mut scratch.body);
        self.mu_head
            .forward(&scratch.hidden, mu, &mut scratch.mu_head);
        self.logvar_head
            .forward(&scratch.hidden, precision, &mut scratch.logvar_head);
        Ok(())
    }
}

/// A typed decoder `D: Layer<Z, X>` (f32 in and out) as a [`LatentDecoder`].
#[derive(Clone, Copy, Debug)]
pub struct TypedDecoder<D, const Z: usize, const X: usize>(pub D);

impl<D: Layer<Z, X>, const Z: usize, const X: usize> TypedDecoder<D, Z, X> {
    /// Multiply-accumulates of one decode.
    pub const MACS: usize = D::MACS;
}

impl<D, const Z: usize, const X: usize> LatentDecoder for TypedDecoder<D, Z, X>
where
    D: Layer<Z, X, In = f32, Out = f32>,
{
    type Scratch = D::Scratch;

    fn latent_dim(&self) -> usize {
        Z
    }

    fn decode(
        &self,
        z: &[f32],
        mean: &mut [f32],
        scratch: &mut Self::Scratch,
    ) -> Result<(), Error> {
        let z: &[f32; Z] = z.try_into().map_err(|_| Error::ShapeMismatch {
            expected: Z,
            found: z.len(),
        })?;
        let found = mean.len();
        let mean: &mut [f32; X] = mean
            .try_into()
            .map_err(|_| Error::ShapeMismatch { expected: X, found })?;
        self.0.forward(z, mean, scratch);
        Ok(())
    }
}

impl<
        'a,
        B,
        M,
        L,
        D,
        const XG: usize,
        const H: usize,
        const Z: usize,
        const X: usize,
        const N: usize,
    > PoeVae<'a, TypedExpert<B, M, L, XG, H, Z>, TypedDecoder<D, Z, X>, [f32; N]>
where
    B: Layer<XG, H, In = f32>,
    M: Layer<H, Z, In = B::Out, Out = f32>,
    L: Layer<H, Z, In = B::Out, Out = f32>,
    D: Layer<Z, X, In = f32, Out = f32>,
{
    /// Zeroed scratch of a typed (firmware) model, usable in a `static`: `N` must be at least
    /// the largest group's sub-window `XG` and `G Z` (the experts' means and precisions).
    #[allow(clippy::type_complexity)] // the scratch type of the typed parts, spelled out
    pub const SCRATCH: PoeScratch<
        TypedExpertScratch<B::Out, H, B::Scratch, M::Scratch, L::Scratch>,
        D::Scratch,
        [f32; N],
    > = PoeScratch {
        experts: TypedExpert::<B, M, L, XG, H, Z>::SCRATCH,
        decoder: D::SCRATCH,
        gather: [0.0; N],
        means: [0.0; N],
        precisions: [0.0; N],
    };
}
