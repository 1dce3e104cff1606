//! The f32 evaluation of trained weights: the mean loss terms (negative ELBO, reconstruction,
//! KL) of a set of windows, for training-time monitoring (validation ELBO, early stopping).
//! Scoring goes through the `tinyvae` library.

use super::arch::Arch;
use super::model::{Layout, LossParts, Model};
use super::params::Params;
use super::rng;
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;

impl Params {
    /// Mean per-window loss terms (`beta` = 1: `loss` is the negative ELBO) over `windows`
    /// (`n x X` row-major), with one reparameterized sample per window drawn from
    /// `XorShiftRng::seed_from_u64(seed)`, in f32. For training-time monitoring only; scoring
    /// goes through the `tinyvae` library.
    ///
    /// # Errors
    /// Shapes that do not match `arch`, or an empty / ragged `windows`.
    pub fn elbo(&self, arch: &Arch, windows: &[f32], seed: u64) -> anyhow::Result<LossParts> {
        let layout = Layout::new(arch)?;
        let theta = layout.flatten::<f32>(self)?;
        anyhow::ensure!(
            !windows.is_empty() && windows.len().is_multiple_of(arch.input),
            "windows: length {} is not a positive multiple of {}",
            windows.len(),
            arch.input
        );
        let n = windows.len() / arch.input;
        let mut eps = vec![0.0f32; n * arch.latent];
        rng::fill_normal(&mut XorShiftRng::seed_from_u64(seed), &mut eps);
        let mut model = Model::<f32>::new(arch, 256.min(n))?;
        eval_sum(&mut model, &theta, windows, &eps)
    }
}

/// Mean loss terms (beta = 1) of `windows` with the given noise, in chunks of the model's
/// capacity.
pub(crate) fn eval_sum(
    model: &mut Model<f32>,
    theta: &[f32],
    windows: &[f32],
    eps: &[f32],
) -> anyhow::Result<LossParts> {
    let (x, z) = (model.layout().arch.input, model.layout().arch.latent);
    let cap = model.capacity();
    let n = windows.len() / x;
    let mut acc = LossParts::default();
    for (xs, es) in windows.chunks(cap * x).zip(eps.chunks(cap * z)) {
        let k = (xs.len() / x) as f64;
        let p = model.loss(theta, xs, es, 1.0)?;
        acc.loss += p.loss * k;
        acc.recon += p.recon * k;
        acc.kl += p.kl * k;
    }
    let nf = n as f64;
    Ok(LossParts {
        loss: acc.loss / nf,
        recon: acc.recon / nf,
        kl: acc.kl / nf,
    })
}
