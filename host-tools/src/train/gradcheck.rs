//! Finite-difference gradient checking (f64, central differences), used by
//! `tests/gradcheck.rs` to verify the hand-written backward pass of [`super::model`].
//!
//! numeric_i = (f(θ + h e_i) - f(θ - h e_i)) / (2h), error O(h² f''') + O(ε_f64 |f| / h); with
//! h = 1e-5 and |f| ≈ 10-30 both are ≲ 1e-9 absolute (measured worst relative error over all
//! test models: 1.8e-7 with the floor 1e-3; with h = 1e-6 the rounding term reaches 1.5e-9
//! absolute). A component passes when
//! `|analytic - numeric| / max(|analytic|, |numeric|, floor) <= tol`; the floor keeps
//! near-zero components from failing on absolute noise.

use super::arch::Arch;
use super::model::Model;
use super::params::Params;
use super::rng;
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;

/// Central-difference gradient of `f` at `theta` with step `h`, every component.
///
/// # Errors
/// Whatever `f` returns.
pub fn numeric_gradient(
    theta: &[f64],
    h: f64,
    mut f: impl FnMut(&[f64]) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<f64>> {
    let mut t = theta.to_vec();
    let mut g = vec![0.0; theta.len()];
    for i in 0..theta.len() {
        let x0 = t[i];
        t[i] = x0 + h;
        let fp = f(&t)?;
        t[i] = x0 - h;
        let fm = f(&t)?;
        t[i] = x0;
        g[i] = (fp - fm) / (2.0 * h);
    }
    Ok(g)
}

/// The worst component of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Index in the flat parameter vector.
    pub index: usize,
    /// Tensor name and index inside it.
    pub tensor: String,
    /// Hand-written gradient.
    pub analytic: f64,
    /// Finite-difference gradient.
    pub numeric: f64,
    /// `|a - n| / max(|a|, |n|, floor)`.
    pub rel_err: f64,
}

/// Result of [`check_model`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// Number of parameters compared (all of them).
    pub checked: usize,
    /// The component with the largest relative error.
    pub worst: Mismatch,
    /// Largest |gradient| seen (to show the check is not comparing zeros).
    pub max_abs_grad: f64,
    /// The gradient under test, every component.
    pub analytic: Vec<f64>,
    /// The central-difference gradient, every component.
    pub numeric: Vec<f64>,
}

/// Relative error of one component.
pub fn rel_err(a: f64, n: f64, floor: f64) -> f64 {
    (a - n).abs() / a.abs().max(n.abs()).max(floor)
}

/// The analytic gradient function of [`check_model`]: given the model, θ, the batch, the noise
/// and β, write the gradient into the last argument.
pub type GradFn<'a> =
    dyn FnMut(&mut Model<f64>, &[f64], &[f64], &[f64], f64, &mut [f64]) -> anyhow::Result<()> + 'a;

/// Compares `grad_fn` against central differences of [`Model::loss`] on every parameter of
/// `arch`, at the weights `Params::init(arch, seed)` with `edit` applied to the flat vector
/// (e.g. to push a log-variance into its clamp), on a batch of `batch` standard-normal windows
/// and noise drawn from `seed + 1`.
///
/// # Errors
/// An invalid architecture, or an error of `grad_fn` / the model.
#[allow(clippy::too_many_arguments)]
pub fn check_model(
    arch: &Arch,
    batch: usize,
    seed: u64,
    beta: f64,
    h: f64,
    floor: f64,
    edit: impl FnOnce(&mut Model<f64>, &mut [f64]),
    grad_fn: &mut GradFn<'_>,
) -> anyhow::Result<GradCheckReport> {
    let mut model = Model::<f64>::new(arch, batch)?;
    let mut theta: Vec<f64> = model.layout().flatten(&Params::init(arch, seed)?)?;
    edit(&mut model, &mut theta);
    let mut rng = XorShiftRng::seed_from_u64(seed.wrapping_add(1));
    let mut x32 = vec![0.0f32; batch * arch.input];
    let mut e32 = vec![0.0f32; batch * arch.latent];
    rng::fill_normal(&mut rng, &mut x32);
    rng::fill_normal(&mut rng, &mut e32);
    let x: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
    let eps: Vec<f64> = e32.iter().map(|&v| f64::from(v)).collect();
    let mut analytic = vec![0.0; theta.len()];
    grad_fn(&mut model, &theta, &x, &eps, beta, &mut analytic)?;
    let numeric = numeric_gradient(&theta, h, |t| Ok(model.loss(t, &x, &eps, beta)?.loss))?;
    let names = model.layout().tensor_ranges();
    let mut worst = Mismatch {
        index: 0,
        tensor: String::new(),
        analytic: 0.0,
        numeric: 0.0,
        rel_err: -1.0,
    };
    for (i, (&a, &n)) in analytic.iter().zip(&numeric).enumerate() {
        let r = rel_err(a, n, floor);
        if r > worst.rel_err || r.is_nan() {
            let tensor = names
                .iter()
                .find(|(_, range)| range.contains(&i))
                .map_or_else(
                    || "?".to_string(),
                    |(name, range)| format!("{name}[{}]", i - range.start),
                );
            worst = Mismatch {
                index: i,
                tensor,
                analytic: a,
                numeric: n,
                rel_err: if r.is_nan() { f64::INFINITY } else { r },
            };
        }
    }
    Ok(GradCheckReport {
        checked: theta.len(),
        worst,
        max_abs_grad: numeric.iter().fold(0.0, |m, v| m.max(v.abs())),
        analytic,
        numeric,
    })
}

/// The real gradient: [`Model::loss_grad`].
pub fn real_grad(
    model: &mut Model<f64>,
    theta: &[f64],
    x: &[f64],
    eps: &[f64],
    beta: f64,
    grad: &mut [f64],
) -> anyhow::Result<()> {
    model.loss_grad(theta, x, eps, beta, grad).map(|_| ())
}

/// Result of [`check_poe`]: the worst relative error over every parameter of a
/// product-of-experts model, and the largest |gradient|.
#[derive(Clone, Debug, PartialEq)]
pub struct PoeCheck {
    /// Parameters compared (all of them).
    pub checked: usize,
    /// Worst `rel_err` and its index.
    pub worst: (f64, usize),
    /// Largest |numeric gradient|.
    pub max_abs_grad: f64,
    /// The analytic gradient.
    pub analytic: Vec<f64>,
    /// The central-difference gradient.
    pub numeric: Vec<f64>,
}

/// Compares [`PoeModel::loss_grad`](super::poe::PoeModel::loss_grad) with central differences
/// of its loss on every parameter, at fresh weights from `seed` (with `edit` applied), on a
/// batch of `batch` standard-normal windows and noise from `seed + 1`.
///
/// # Errors
/// An invalid architecture.
pub fn check_poe(
    arch: &super::poe::PoeArch,
    batch: usize,
    seed: u64,
    beta: f64,
    h: f64,
    floor: f64,
    edit: impl FnOnce(&super::poe::PoeLayout, &mut [f64]),
) -> anyhow::Result<PoeCheck> {
    check_poe_weighted(arch, 1.0, batch, seed, beta, h, floor, edit)
}

/// [`check_poe`] with the weight `single_weight` on the single-group terms
/// ([`super::poe::PoeModel::with_single_weight`]).
///
/// # Errors
/// An invalid architecture or weight.
#[allow(clippy::too_many_arguments)]
pub fn check_poe_weighted(
    arch: &super::poe::PoeArch,
    single_weight: f64,
    batch: usize,
    seed: u64,
    beta: f64,
    h: f64,
    floor: f64,
    edit: impl FnOnce(&super::poe::PoeLayout, &mut [f64]),
) -> anyhow::Result<PoeCheck> {
    let model = super::poe::PoeModel::with_single_weight(arch, single_weight)?;
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let mut theta: Vec<f64> = model
        .layout
        .init(&mut rng)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    edit(&model.layout, &mut theta);
    let mut rng = XorShiftRng::seed_from_u64(seed.wrapping_add(1));
    let mut x32 = vec![0.0f32; batch * arch.input()];
    let mut e32 = vec![0.0f32; model.eps_len(batch)];
    rng::fill_normal(&mut rng, &mut x32);
    rng::fill_normal(&mut rng, &mut e32);
    let x: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
    let eps: Vec<f64> = e32.iter().map(|&v| f64::from(v)).collect();
    let mut analytic = vec![0.0; theta.len()];
    model.loss_grad(&theta, &x, &eps, beta, &mut analytic)?;
    let numeric = numeric_gradient(&theta, h, |t| Ok(model.loss(t, &x, &eps, beta)?.loss))?;
    let mut worst = (-1.0f64, 0usize);
    for (i, (&a, &n)) in analytic.iter().zip(&numeric).enumerate() {
        let r = rel_err(a, n, floor);
        let r = if r.is_nan() { f64::INFINITY } else { r };
        if r > worst.0 {
            worst = (r, i);
        }
    }
    Ok(PoeCheck {
        checked: theta.len(),
        worst,
        max_abs_grad: numeric.iter().fold(0.0, |m, v| m.max(v.abs())),
        analytic,
        numeric,
    })
}
