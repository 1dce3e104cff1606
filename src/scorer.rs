//! How a [`StreamDetector`](crate::StreamDetector) scores a window: the [`WindowScorer`] trait,
//! implemented for the typed [`Workspace`] and for [`BorrowedWorkspace`] (caller-owned
//! buffers), and [`window_rng`], the generator each window's sampled score draws from.

use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;

use crate::{
    Buffers, DecoderNoise, Error, GroupSet, NormalSampler, Route, Score, ScoreKind, VaeModel,
    Workspace,
};

/// The buffers a [`Detector`](crate::Detector) scores windows with: the typed [`Workspace`], a
/// [`BorrowedWorkspace`] over caller-owned slices (runtime-shaped models), or any other.
pub trait WindowScorer<V: VaeModel + ?Sized> {
    /// Scores one standardized window; sampled scores must draw from `rng` alone (no state
    /// carried over from earlier calls).
    ///
    /// # Errors
    /// As [`score()`](crate::score()).
    fn score_window(
        &mut self,
        model: &V,
        x: &[f32],
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error>;

    /// Scores one standardized window with only the sensor groups in `present` (see
    /// [`score_groups`](crate::score_groups)). The default serves single-group models: it is
    /// [`score_window`](Self::score_window).
    ///
    /// # Errors
    /// As [`score_groups`](crate::score_groups).
    fn score_window_groups(
        &mut self,
        model: &V,
        x: &[f32],
        present: GroupSet,
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        let _ = present;
        self.score_window(model, x, kind, rng)
    }

    /// The decoder mean at the posterior mean, `D(mu)`, of the last scored window (`kind` is
    /// the kind it was scored with; for [`ScoreKind::Elbo`] no decode is needed).
    ///
    /// # Errors
    /// As the model's `decode`.
    fn reconstruction(&mut self, model: &V, kind: ScoreKind) -> Result<&[f32], Error>;

    /// The route of the last scored window (a mixture of experts, see
    /// [`VaeModel::route`]); `None` by default.
    fn route(&self, model: &V) -> Option<Route> {
        let _ = model;
        None
    }

    /// The decoder noise the last scored window was scored with (see
    /// [`VaeModel::routed_noise`]); the model's [`noise`](VaeModel::noise) by default.
    fn noise<'m>(&self, model: &'m V) -> DecoderNoise<'m> {
        model.noise()
    }
}

impl<V, S, const X: usize, const Z: usize> WindowScorer<V> for Workspace<S, X, Z>
where
    V: VaeModel<Scratch = S>,
{
    fn score_window(
        &mut self,
        model: &V,
        x: &[f32],
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        let x: &[f32; X] = x.try_into().map_err(|_| Error::ShapeMismatch {
            expected: X,
            found: x.len(),
        })?;
        self.reset_sampler();
        self.score(model, x, kind, rng)
    }

    fn score_window_groups(
        &mut self,
        model: &V,
        x: &[f32],
        present: GroupSet,
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        let x: &[f32; X] = x.try_into().map_err(|_| Error::ShapeMismatch {
            expected: X,
            found: x.len(),
        })?;
        self.reset_sampler();
        self.score_groups(model, x, present, kind, rng)
    }

    fn reconstruction(&mut self, model: &V, kind: ScoreKind) -> Result<&[f32], Error> {
        if kind.is_sampled() {
            Ok(self.decode_mu(model)?)
        } else {
            Ok(self.mean())
        }
    }

    fn route(&self, model: &V) -> Option<Route> {
        model.route(self.scratch())
    }

    fn noise<'m>(&self, model: &'m V) -> DecoderNoise<'m> {
        model.routed_noise(self.scratch())
    }
}

/// Score buffers borrowed from the caller, for models whose shapes are known only at run time
/// (the host tool): lengths `Z` for the latent buffers, `X` for the decoder mean.
#[derive(Debug)]
pub struct BorrowedWorkspace<'a, S> {
    buf: Buffers<'a>,
    scratch: &'a mut S,
    sampler: NormalSampler,
}

impl<'a, S> BorrowedWorkspace<'a, S> {
    /// Wraps the buffers and the model scratch (lengths are checked when scoring).
    pub fn new(buf: Buffers<'a>, scratch: &'a mut S) -> Self {
        Self {
            buf,
            scratch,
            sampler: NormalSampler::new(),
        }
    }
}

impl<V, S> WindowScorer<V> for BorrowedWorkspace<'_, S>
where
    V: VaeModel<Scratch = S>,
{
    fn score_window(
        &mut self,
        model: &V,
        x: &[f32],
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        self.sampler = NormalSampler::new();
        let buf = Buffers {
            mu: &mut *self.buf.mu,
            logvar: &mut *self.buf.logvar,
            z: &mut *self.buf.z,
            eps: &mut *self.buf.eps,
            mean: &mut *self.buf.mean,
        };
        crate::score(model, x, kind, buf, self.scratch, &mut self.sampler, rng)
    }

    fn score_window_groups(
        &mut self,
        model: &V,
        x: &[f32],
        present: GroupSet,
        kind: ScoreKind,
        rng: &mut XorShiftRng,
    ) -> Result<Score, Error> {
        self.sampler = NormalSampler::new();
        let buf = Buffers {
            mu: &mut *self.buf.mu,
            logvar: &mut *self.buf.logvar,
            z: &mut *self.buf.z,
            eps: &mut *self.buf.eps,
            mean: &mut *self.buf.mean,
        };
        crate::score_groups(
            model,
            x,
            present,
            kind,
            buf,
            self.scratch,
            &mut self.sampler,
            rng,
        )
    }

    fn reconstruction(&mut self, model: &V, kind: ScoreKind) -> Result<&[f32], Error> {
        if kind.is_sampled() {
            model.decode(self.buf.mu, self.buf.mean, self.scratch)?;
        }
        Ok(self.buf.mean)
    }

    fn route(&self, model: &V) -> Option<Route> {
        model.route(self.scratch)
    }

    fn noise<'m>(&self, model: &'m V) -> DecoderNoise<'m> {
        model.routed_noise(self.scratch)
    }
}

/// The generator window `window` draws from: `XorShiftRng::seed_from_u64(seed ^ window *
/// 0x9E37_79B9_7F4A_7C15)` (wrapping).
pub fn window_rng(seed: u64, window: u64) -> XorShiftRng {
    XorShiftRng::seed_from_u64(seed ^ window.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}
