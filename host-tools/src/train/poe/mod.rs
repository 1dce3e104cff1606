//! Training the multi-sensor product-of-experts VAE (MVAE, Wu & Goodman 2018): the shape and
//! flat layout of the model ([`arch`]), its trained weights and per-group decoders ([`params`]),
//! the forward and backward passes through the product ([`model`], with the loss and its
//! gradients), and here the training loop ([`train_poe`], [`train_poe_recipe`]).

pub mod arch;
pub mod model;
pub mod noise;
pub mod params;

pub use arch::{DecoderLayout, ExpertSlots, PoeArch, PoeLayout};
pub use model::PoeModel;
pub use noise::{fit_ar_noise, ArNoiseParams, NoiseFit, NoiseOrder};
pub use params::{DecoderParams, ExpertParams, PoeParams};

use super::adam::Adam;
use super::model::LossParts;
use super::rng;
use super::trainer::{run_epochs, shuffled_pass, TrainConfig, TrainReport, VAL_SEED_MIX};
use crate::data::WindowView;
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;
use std::time::Instant;

/// Trains a product-of-experts model on `train` with early stopping on `val` (the objective
/// summed over the trained subsets, `beta = 1`, one fixed noise draw per validation window and
/// subset), as [`super::train_views`] does for the single VAE: same shuffles, Adam, KL warm-up
/// and patience.
///
/// # Errors
/// Invalid shapes or configuration, empty or non-finite data, divergence.
pub fn train_poe(
    arch: &PoeArch,
    cfg: &TrainConfig,
    train: WindowView<'_>,
    val: WindowView<'_>,
) -> anyhow::Result<(PoeParams, TrainReport)> {
    train_poe_recipe(arch, cfg, &PoeRecipe::default(), train, val)
}

/// Training variants measured by `poe_bench` (README, "Multi-sensor models"); the default is
/// what `tinyvae train --group` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoeRecipe {
    /// Weight of each single group's terms ([`PoeModel::with_single_weight`]).
    pub single_weight: f64,
    /// Weight of the full set's terms.
    pub full_weight: f64,
    /// The learning rate falls along a half cosine from `lr` to `lr * lr_final` over the
    /// epochs (1: constant).
    pub lr_final: f64,
}

impl Default for PoeRecipe {
    fn default() -> Self {
        Self {
            single_weight: 1.0,
            full_weight: 1.0,
            lr_final: 1.0,
        }
    }
}

/// [`train_poe`] with the variants of `recipe`; the subset weights count in training and in
/// the validation objective. `PoeRecipe::default()` is `train_poe`.
///
/// # Errors
/// As [`train_poe`], and a weight or `lr_final` that is not finite and positive.
pub fn train_poe_recipe(
    arch: &PoeArch,
    cfg: &TrainConfig,
    recipe: &PoeRecipe,
    train: WindowView<'_>,
    val: WindowView<'_>,
) -> anyhow::Result<(PoeParams, TrainReport)> {
    let start = Instant::now();
    cfg.validate()?;
    let mut model = PoeModel::with_single_weight(arch, recipe.single_weight)?;
    for (what, v) in [
        ("full-set weight", recipe.full_weight),
        ("lr_final", recipe.lr_final),
    ] {
        anyhow::ensure!(
            v.is_finite() && v > 0.0,
            "the {what} must be finite and > 0, found {v}"
        );
    }
    model.weights[0] = recipe.full_weight;
    let layout = &model.layout;
    let off_block = layout.off_block();
    let hold = |theta: &mut [f32]| {
        for &i in &off_block {
            theta[i] = 0.0;
        }
    };
    let xd = arch.input();
    anyhow::ensure!(train.dim() == xd && val.dim() == xd, "window width");
    let n = train.len();
    anyhow::ensure!(n > 0, "training data: no windows");
    let nv = val.len();
    for w in train.iter().chain(val.iter()) {
        anyhow::ensure!(w.iter().all(|v| v.is_finite()), "non-finite training data");
    }
    let b = cfg.batch.min(n);
    let mut rng = XorShiftRng::seed_from_u64(cfg.seed);
    let mut theta = layout.init(&mut rng);
    hold(&mut theta);
    let mut grad = vec![0.0f32; layout.total];
    let mut adam = Adam::new(layout.total, cfg.lr, cfg.beta1, cfg.beta2, cfg.adam_eps);
    let mut val_eps = vec![0.0f32; model.eps_len(nv.max(1))];
    rng::fill_normal(
        &mut XorShiftRng::seed_from_u64(cfg.seed ^ VAL_SEED_MIX),
        &mut val_eps,
    );
    let mut order: Vec<u32> = (0..u32::try_from(n)?).collect();
    let mut xb = vec![0.0f32; b * xd];
    let mut eps = vec![0.0f32; model.eps_len(b)];
    let fit = run_epochs(
        cfg,
        &mut theta,
        &mut (),
        |(), theta, e, beta| {
            if recipe.lr_final != 1.0 {
                let c = 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / cfg.epochs as f64).cos());
                adam.lr = cfg.lr * (recipe.lr_final + (1.0 - recipe.lr_final) * c);
            }
            shuffled_pass(&mut rng, &mut order, train, &mut xb, |xs, k, rng| {
                let es = &mut eps[..model.eps_len(k)];
                rng::fill_normal(rng, es);
                let p = model.loss_grad(theta, xs, es, beta as f32, &mut grad)?;
                adam.step(theta, &grad);
                hold(theta);
                Ok(p)
            })
        },
        |(), theta| {
            if nv == 0 {
                return Ok(None);
            }
            val_objective(&model, theta, val, &val_eps).map(Some)
        },
    )?;
    Ok((
        layout.unflatten(&fit.best),
        fit.report(n, nv, layout.total, start),
    ))
}

/// Mean validation objective (beta = 1) per window, in batches of 256 windows.
fn val_objective(
    model: &PoeModel,
    theta: &[f32],
    val: WindowView<'_>,
    val_eps: &[f32],
) -> anyhow::Result<LossParts> {
    let zd = model.layout.arch.latent;
    let ns = model.subsets.len();
    let nv = val.len();
    let mut acc = LossParts::default();
    let mut xb = Vec::new();
    let mut eb = Vec::new();
    let mut start = 0;
    while start < nv {
        let k = (nv - start).min(256);
        xb.clear();
        eb.clear();
        for i in start..start + k {
            xb.extend_from_slice(val.get(i));
        }
        // Noise: subset-major within the batch, drawn per (window, subset) from the fixed stream.
        for si in 0..ns {
            for i in start..start + k {
                let o = (i * ns + si) * zd;
                eb.extend_from_slice(&val_eps[o..o + zd]);
            }
        }
        let p = model.loss(theta, &xb, &eb, 1.0f32)?;
        acc.add(&p, k);
        start += k;
    }
    Ok(acc.mean(nv))
}
