//! Training engine: a hand-written VAE (forward, backward, Adam) on `matrixmultiply`.
//!
//! # Model ([`Arch`])
//! Input: a window of W samples × C channels, flattened time-major (`x[t*C + c]`), already
//! standardized per channel; X = W·C. Encoder: 1–3 dense ReLU layers, then linear heads `mu`
//! (Z) and `logvar` (Z, clamped to [-10, 10]). Decoder: 1–3 dense ReLU layers from z, then a
//! linear output (X) = the mean of p(x|z), with log-variance `decoder.logvar` (X; clamped to
//! [-7, 7]) learned per feature, per channel (shared across time steps) or fixed at 0
//! ([`NoiseKind`]). Formulas and gradients: [`model`].
//!
//! # Loss
//! Per window, with one reparameterized sample z = mu + exp(lv/2)·eps:
//! `loss = -log N(x; mean, diag(exp(logvar_x))) + beta · KL(N(mu, exp(lv)) || N(0, I))`,
//! i.e. the negative ELBO when beta = 1. beta ramps linearly 0 → 1 over `kl_warmup` epochs.
//!
//! # Training ([`train`])
//! Minibatch Adam (PyTorch's formulas, lr 1e-3, betas 0.9/0.999, eps 1e-8 by default), a
//! shuffle per epoch, early stopping on the validation ELBO with the best weights restored,
//! `nn.Linear`-style init (uniform ±1/sqrt(fan_in) for weights and biases). One thread; a
//! fixed seed gives bit-identical weights run to run on a machine. Details: [`trainer`].
//!
//! # Weights ([`Params`])
//! Named tensors in PyTorch layout (`[out, in]`), the names of checkpoints (see
//! `crate::checkpoint`): `encoder.{i}.weight/bias`, `mu.*`, `logvar.*`, `decoder.{i}.*`,
//! `decoder.out.*`, `decoder.logvar`.
//!
//! # Verification
//! The passes are generic over [`Real`] (f32 trains, f64 checks): `tests/gradcheck.rs` compares
//! the backward pass with central differences over every parameter of small models of each
//! variant and shows that a broken gradient fails the check ([`gradcheck`]).
//!
//! # Speed
//! `cargo run --release -p tinyvae-host-tools --bin train_bench` (AMD EPYC, 2 shared cores,
//! matrixmultiply's AVX-512 kernels, one thread): the shared workload of issue 3 (96-64-8 VAE,
//! 20,000 windows, batch 64, 20 epochs) takes 0.018 s of CPU per epoch (PyTorch: 0.24-0.26 s);
//! the demo model (384-64-8 / 8-64-384, ~500 windows) trains 50 epochs in about 0.1 s.
//! About half the time is in the `sgemm` micro-kernel, a sixth in its packing, a tenth in Adam.

pub mod adam;
pub mod arch;
pub mod eval;
pub mod gradcheck;
pub mod limits;
pub mod model;
pub mod moe;
pub mod params;
pub mod poe;
pub mod real;
pub mod rng;
pub mod trainer;

pub use adam::Adam;
pub use arch::{
    Arch, NoiseKind, TensorSpec, DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX,
    ENCODER_LOGVAR_MIN, MAX_HIDDEN_LAYERS,
};
pub use model::{Layout, LossParts, Model};
pub use params::{Linear, Params};
pub use real::Real;
pub use trainer::{train, train_views, EpochStats, TrainConfig, TrainReport};
