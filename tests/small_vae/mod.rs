//! Shared by the long-run and fuzz-regression tests (`counters.rs`, `soak.rs`,
//! `fuzz_regressions.rs`): a small typed VAE with fixed random weights (C = 3 channels,
//! W = 8 steps, X = 24, H = 6, Z = 2) and a deterministic generator.
#![allow(dead_code)]

use tinyvae::{decoder_noise, Activation, Chain, Dense, Vae, VaeDetector};

pub const C: usize = 3;
pub const W: usize = 8;
pub const X: usize = W * C;
pub const H: usize = 6;
pub const Z: usize = 2;

pub type Dec = Chain<Dense<Z, H>, Dense<H, X>, H>;
pub type Model = Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Dec, X, H, Z>;
pub type Det = VaeDetector<Model, C, W, X, Z>;

#[path = "../common/mod.rs"]
mod common;
pub use common::{leak, SplitMix as TestRng};

/// A dense layer with weights `N(0, 1) / sqrt(I)` and biases `bias + 0.1 N(0, 1)`.
pub fn dense<const I: usize, const O: usize>(
    rng: &mut TestRng,
    bias: f32,
    act: Activation,
) -> Dense<I, O> {
    common::normal_dense(rng, 1.0, bias, act)
}

pub fn model() -> Model {
    let mut rng = TestRng(11);
    let enc = dense::<X, H>(&mut rng, 0.0, Activation::Relu);
    let mu = dense::<H, Z>(&mut rng, 0.0, Activation::Identity);
    let lv = dense::<H, Z>(&mut rng, -1.0, Activation::Identity);
    let dec: Dec = Chain::new(
        dense::<Z, H>(&mut rng, 0.0, Activation::Relu),
        dense::<H, X>(&mut rng, 0.0, Activation::Identity),
    );
    let logvar_x: [f32; X] = std::array::from_fn(|_| (0.2 * rng.normal()) as f32);
    let mut inv_var = [0.0f32; X];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    Vae::new(enc, mu, lv, dec, leak(inv_var), log_norm)
}
