//! The host-side runtime model: a VAE built from trained f32 weights, in f32 or post-training
//! int8, that runs every inference through the `tinyvae` library's kernels
//! ([`tinyvae::DenseView`], [`tinyvae::QDenseView`], [`tinyvae::quantize_slice`],
//! [`tinyvae::dequantize_slice`]) and is scored by [`tinyvae::score`], so the host computes what
//! the chip computes.
//!
//! # Architecture (see `crate::train::arch`)
//! Encoder: 1–3 dense ReLU layers, then linear heads `mu` and `logvar` (Z each). Decoder: 1–3
//! dense ReLU layers from `z`, then the linear output (X, the mean of `p(x|z)`); per-feature
//! decoder log-variances become [`tinyvae::DecoderNoise`] through [`tinyvae::decoder_noise`].
//!
//! # Post-training int8 quantization
//! - Weights: symmetric per output channel, `s_w[o] = max_i |W[o][i]| / 127` (1 for an all-zero
//!   row), `w_q = round(W / s_w)` (half away from zero), zero point 0.
//! - Activations: asymmetric int8, [`QParams::from_range`](tinyvae::QParams::from_range) of
//!   the min/max that the f32 model produces on the calibration (training) windows
//!   ([`Ranges`]) at each layer boundary: the standardized input, each hidden layer's ReLU
//!   output, the `mu` and `logvar` heads, the decoder input `z` (range of `mu ± 3 sigma`, so
//!   sampled scores stay in range), each decoder hidden output and the decoder output.
//! - Bias: `round(b[o] / (s_in s_w[o]))` as i32 with the input zero point folded in
//!   ([`tinyvae::fold_bias`]); requantization `quantize_multiplier(s_in s_w[o] / s_out)`
//!   ([`tinyvae::per_channel_multiplier`]); ReLU fused as the clamp of
//!   [`tinyvae::quantized_activation_range`].
//! - Encoder: `quantize(x)` → int8 hidden layers → int8 heads → `dequantize` (mu, logvar).
//!   Decoder: `quantize(z)` → int8 hidden layers → int8 output → `dequantize` (mean).
//!   The decoder noise constants stay f32.
//!
//! This is also the exact arithmetic of the exported typed model (`crate::export`): the same
//! layer constants, the same library kernels.
//!
//! One file per part, all re-exported here so every `model::X` path is the same: `layers` (the
//! f32 and int8 dense layers), `host` (the [`HostModel`] and its passes through the library's
//! kernels), `calibrate` (the activation [`Ranges`] of the f32 model), `mixture` (a mixture of experts,
//! [`HostMoe`]), `score` (score names and
//! [`score_windows`]).

mod calibrate;
mod host;
mod layers;
mod mixture;
mod poe;
mod score;

pub use self::calibrate::*;
pub use self::host::*;
pub use self::layers::*;
pub use self::mixture::*;
pub use self::poe::*;
pub use self::score::*;

#[cfg(test)]
mod tests;
