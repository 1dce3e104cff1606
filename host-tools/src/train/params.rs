//! Trained weights as named f32 tensors (PyTorch layout): initialization, checkpoint names and
//! shapes. Their evaluation (the ELBO of windows) is in [`super::eval`].

use super::arch::{Arch, TensorSpec};
use super::rng;
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;

/// One dense layer `y = W x + b`, PyTorch `nn.Linear` layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// `[out_features, in_features]` row-major.
    pub weight: Vec<f32>,
    /// `[out_features]`.
    pub bias: Vec<f32>,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
}

impl Linear {
    /// A layer of zero weights and biases.
    pub fn zeros(in_features: usize, out_features: usize) -> Self {
        Self {
            weight: vec![0.0; in_features * out_features],
            bias: vec![0.0; out_features],
            in_features,
            out_features,
        }
    }
}

/// All weights of a model. Tensor names (see [`Params::tensors`]) are those of checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `encoder.{i}`: hidden layers (ReLU).
    pub encoder: Vec<Linear>,
    /// `mu`: latent mean head.
    pub mu: Linear,
    /// `logvar`: latent log-variance head (clamped to [-10, 10] when used).
    pub logvar: Linear,
    /// `decoder.{i}`: hidden layers (ReLU).
    pub decoder: Vec<Linear>,
    /// `decoder.out`: reconstruction mean.
    pub decoder_out: Linear,
    /// `decoder.logvar` (X values): effective log-variances of p(x|z), in [-7, 7]; zeros for
    /// unit variance, repeated across time steps for per-channel noise.
    pub decoder_logvar: Vec<f32>,
}

impl Params {
    /// Fresh weights like PyTorch's `nn.Linear`: weights and biases uniform in
    /// ±1/sqrt(fan_in), drawn layer by layer (weight row-major, then bias) in checkpoint order
    /// from `XorShiftRng::seed_from_u64(seed)`; `decoder.logvar` = 0.
    ///
    /// # Errors
    /// An invalid architecture.
    pub fn init(arch: &Arch, seed: u64) -> anyhow::Result<Self> {
        Self::init_with(arch, &mut XorShiftRng::seed_from_u64(seed))
    }

    pub(crate) fn init_with(arch: &Arch, rng: &mut XorShiftRng) -> anyhow::Result<Self> {
        arch.validate()?;
        let mut lin = |inp: usize, out: usize| {
            let a = 1.0 / (inp as f32).sqrt();
            let weight = (0..inp * out).map(|_| rng::uniform_sym(rng, a)).collect();
            let bias = (0..out).map(|_| rng::uniform_sym(rng, a)).collect();
            Linear {
                weight,
                bias,
                in_features: inp,
                out_features: out,
            }
        };
        let mut prev = arch.input;
        let mut encoder = Vec::new();
        for &w in &arch.encoder_hidden {
            encoder.push(lin(prev, w));
            prev = w;
        }
        let mu = lin(prev, arch.latent);
        let logvar = lin(prev, arch.latent);
        prev = arch.latent;
        let mut decoder = Vec::new();
        for &w in &arch.decoder_hidden {
            decoder.push(lin(prev, w));
            prev = w;
        }
        let decoder_out = lin(prev, arch.input);
        Ok(Self {
            encoder,
            mu,
            logvar,
            decoder,
            decoder_out,
            decoder_logvar: vec![0.0; arch.input],
        })
    }

    /// Every tensor as `(name, shape, values)`, in the order of [`Arch::tensor_specs`].
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        let mut layers: Vec<(String, &Linear)> = Vec::new();
        for (i, l) in self.encoder.iter().enumerate() {
            layers.push((format!("encoder.{i}"), l));
        }
        layers.push(("mu".into(), &self.mu));
        layers.push(("logvar".into(), &self.logvar));
        for (i, l) in self.decoder.iter().enumerate() {
            layers.push((format!("decoder.{i}"), l));
        }
        layers.push(("decoder.out".into(), &self.decoder_out));
        let mut v: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        for (name, l) in layers {
            v.push((
                format!("{name}.weight"),
                vec![l.out_features, l.in_features],
                &l.weight,
            ));
            v.push((format!("{name}.bias"), vec![l.out_features], &l.bias));
        }
        v.push((
            "decoder.logvar".into(),
            vec![self.decoder_logvar.len()],
            &self.decoder_logvar,
        ));
        v
    }

    /// Checks every tensor's shape (and value count) against `arch`.
    ///
    /// # Errors
    /// The first mismatch, naming the tensor, its shape and the expected one.
    pub fn check_shapes(&self, arch: &Arch) -> anyhow::Result<()> {
        arch.validate()?;
        let got = self.tensors();
        let want = arch.tensor_specs();
        anyhow::ensure!(
            got.len() == want.len(),
            "model has {} tensors, the architecture {} (hidden layer counts differ)",
            got.len(),
            want.len()
        );
        for (
            (name, shape, data),
            TensorSpec {
                name: wn,
                shape: ws,
            },
        ) in got.iter().zip(&want)
        {
            anyhow::ensure!(
                name == wn && shape == ws && data.len() == ws.iter().product::<usize>(),
                "tensor `{wn}`: expected shape {ws:?}, found `{name}` with shape {shape:?} and {} values",
                data.len()
            );
        }
        Ok(())
    }

    /// `true` if every weight is finite.
    pub fn all_finite(&self) -> bool {
        self.tensors()
            .iter()
            .all(|(_, _, d)| d.iter().all(|v| v.is_finite()))
    }
}
