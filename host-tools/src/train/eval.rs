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
        let view = crate::data::WindowView::contiguous(windows, arch.input).ok_or_else(|| {
            anyhow::anyhow!("windows: window size {} is not positive", arch.input)
        })?;
        eval_sum(&mut model, &theta, view, &eps, &mut Vec::new())
    }
}

/// Mean loss terms (beta = 1) of `windows` with the given noise, in chunks of the model's
/// capacity (each chunk copied into `batch`).
pub(crate) fn eval_sum(
    model: &mut Model<f32>,
    theta: &[f32],
    windows: crate::data::WindowView<'_>,
    eps: &[f32],
    batch: &mut Vec<f32>,
) -> anyhow::Result<LossParts> {
    let (x, z) = (model.layout().arch.input, model.layout().arch.latent);
    let cap = model.capacity().max(1);
    let n = windows.len();
    let mut acc = LossParts::default();
    let mut first = 0;
    for es in eps.chunks(cap * z).take(n.div_ceil(cap)) {
        let k = cap.min(n - first);
        batch.clear();
        for i in first..first + k {
            batch.extend_from_slice(windows.get(i));
        }
        first += k;
        let p = model.loss(theta, &batch[..k * x], es, 1.0)?;
        acc.add(&p, k);
    }
    Ok(acc.mean(n))
}
