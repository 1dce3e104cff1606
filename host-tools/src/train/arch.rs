//! The architecture of a tinyvae model and the names and shapes of its tensors.
//!
//! ```text
//! x (X = W*C, time-major: x[t*C + c])
//!   -> encoder.0 .. encoder.{E-1}: dense + ReLU        (1..=3 layers)
//!   -> mu: dense (Z), logvar: dense (Z), clamped to [ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX]
//! z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)
//!   -> decoder.0 .. decoder.{D-1}: dense + ReLU        (1..=3 layers)
//!   -> decoder.out: dense (X) = the mean of p(x | z)
//! decoder.logvar (X): per-feature log-variance of p(x | z), clamped to
//!   [DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX]; tied across time steps for
//!   NoiseKind::PerChannel, all zeros (unit variance) for NoiseKind::Unit.
//! ```
//!
//! Dense weights are stored PyTorch-style, `[out, in]` row-major, so `y = W x + b`.

use serde::{Deserialize, Serialize};

/// Lower clamp of the encoder's log-variance (σ² ≥ e^-10 ≈ 4.5e-5).
pub const ENCODER_LOGVAR_MIN: f32 = -10.0;
/// Upper clamp of the encoder's log-variance (σ² ≤ e^10).
pub const ENCODER_LOGVAR_MAX: f32 = 10.0;
/// Lower clamp of the decoder's log-variance (σ ≥ e^-3.5 ≈ 0.03 standard deviations).
pub const DECODER_LOGVAR_MIN: f32 = -7.0;
/// Upper clamp of the decoder's log-variance.
pub const DECODER_LOGVAR_MAX: f32 = 7.0;
/// Largest number of hidden layers on either side.
pub const MAX_HIDDEN_LAYERS: usize = 3;

/// How the decoder's output variance is parameterized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// One learned log-variance per input feature (X values).
    #[default]
    PerFeature,
    /// One learned log-variance per channel, shared by all time steps (C values, stored
    /// expanded to X in checkpoints).
    PerChannel,
    /// Fixed unit variance: `decoder.logvar` is all zeros and not trained.
    Unit,
}

/// The shape of a model. `input = window * channels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    /// X: values per window (window length times channels).
    pub input: usize,
    /// Widths of the encoder's hidden ReLU layers (1 to 3 entries).
    pub encoder_hidden: Vec<usize>,
    /// Z: latent dimension.
    pub latent: usize,
    /// Widths of the decoder's hidden ReLU layers (1 to 3 entries).
    pub decoder_hidden: Vec<usize>,
    /// The decoder's variance model.
    pub noise: NoiseKind,
    /// C: channels per time step (`input` must be a multiple).
    pub channels: usize,
}

/// A tensor's name and shape in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// PyTorch state-dict style name, e.g. `encoder.0.weight`.
    pub name: String,
    /// Shape: `[out, in]` for weights, `[out]` for biases, `[X]` for `decoder.logvar`.
    pub shape: Vec<usize>,
}

impl Arch {
    /// The demo model: `window*channels`-64-8 / 8-64-`window*channels`, per-feature variance.
    pub fn demo(window: usize, channels: usize) -> Self {
        Self {
            input: window * channels,
            encoder_hidden: vec![64],
            latent: 8,
            decoder_hidden: vec![64],
            noise: NoiseKind::PerFeature,
            channels,
        }
    }

    /// Checks the sizes; the error names the offending field.
    ///
    /// # Errors
    /// A zero size, 0 or more than 3 hidden layers on a side, or `input` not a multiple of
    /// `channels`.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.input > 0, "arch.input must be > 0");
        anyhow::ensure!(self.latent > 0, "arch.latent must be > 0");
        anyhow::ensure!(self.channels > 0, "arch.channels must be > 0");
        anyhow::ensure!(
            self.input.is_multiple_of(self.channels),
            "arch.input ({}) must be a multiple of arch.channels ({})",
            self.input,
            self.channels
        );
        for (side, h) in [
            ("encoder_hidden", &self.encoder_hidden),
            ("decoder_hidden", &self.decoder_hidden),
        ] {
            anyhow::ensure!(
                (1..=MAX_HIDDEN_LAYERS).contains(&h.len()),
                "arch.{side} must have 1 to {MAX_HIDDEN_LAYERS} layers, found {}",
                h.len()
            );
            if let Some(i) = h.iter().position(|&w| w == 0) {
                anyhow::bail!("arch.{side}[{i}] must be > 0");
            }
        }
        Ok(())
    }

    /// W: samples per window.
    pub fn window(&self) -> usize {
        self.input / self.channels.max(1)
    }

    /// Number of trained decoder log-variance values: X, C or 0.
    pub fn noise_params(&self) -> usize {
        match self.noise {
            NoiseKind::PerFeature => self.input,
            NoiseKind::PerChannel => self.channels,
            NoiseKind::Unit => 0,
        }
    }

    /// `(in, out)` of every dense layer, in checkpoint order: encoder hidden layers, mu,
    /// logvar, decoder hidden layers, decoder.out, each with its name prefix.
    pub fn dense_layers(&self) -> Vec<(String, usize, usize)> {
        let mut v = Vec::new();
        let mut prev = self.input;
        for (i, &w) in self.encoder_hidden.iter().enumerate() {
            v.push((format!("encoder.{i}"), prev, w));
            prev = w;
        }
        v.push(("mu".to_string(), prev, self.latent));
        v.push(("logvar".to_string(), prev, self.latent));
        prev = self.latent;
        for (i, &w) in self.decoder_hidden.iter().enumerate() {
            v.push((format!("decoder.{i}"), prev, w));
            prev = w;
        }
        v.push(("decoder.out".to_string(), prev, self.input));
        v
    }

    /// Every tensor of a checkpoint with its shape, in a fixed order: for each dense layer
    /// `{name}.weight` `[out, in]` then `{name}.bias` `[out]`, and last `decoder.logvar` `[X]`.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        let mut v = Vec::new();
        for (name, inp, out) in self.dense_layers() {
            v.push(TensorSpec {
                name: format!("{name}.weight"),
                shape: vec![out, inp],
            });
            v.push(TensorSpec {
                name: format!("{name}.bias"),
                shape: vec![out],
            });
        }
        v.push(TensorSpec {
            name: "decoder.logvar".to_string(),
            shape: vec![self.input],
        });
        v
    }

    /// Number of f32 values in a checkpoint (every tensor of [`Self::tensor_specs`]).
    pub fn num_weights(&self) -> usize {
        self.tensor_specs()
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_of_demo() {
        let a = Arch::demo(64, 6);
        a.validate().unwrap();
        let names: Vec<String> = a.tensor_specs().into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "encoder.0.weight",
                "encoder.0.bias",
                "mu.weight",
                "mu.bias",
                "logvar.weight",
                "logvar.bias",
                "decoder.0.weight",
                "decoder.0.bias",
                "decoder.out.weight",
                "decoder.out.bias",
                "decoder.logvar"
            ]
        );
        assert_eq!(
            a.num_weights(),
            384 * 64 + 64 + 2 * (64 * 8 + 8) + 8 * 64 + 64 + 64 * 384 + 384 + 384
        );
    }

    #[test]
    fn validate_rejects() {
        let mut a = Arch::demo(4, 3);
        a.channels = 5;
        assert!(a.validate().is_err());
        let mut a = Arch::demo(4, 3);
        a.encoder_hidden = vec![4, 4, 4, 4];
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("encoder_hidden"));
        let mut a = Arch::demo(4, 3);
        a.decoder_hidden = vec![4, 0];
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("decoder_hidden[1]"));
    }
}
