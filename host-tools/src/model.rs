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
//! - Activations: asymmetric int8, [`QParams::from_range`] of the min/max that the f32 model
//!   produces on the calibration (training) windows ([`Ranges`]) at each layer boundary: the
//!   standardized input, each hidden layer's ReLU output, the `mu` and `logvar` heads, the
//!   decoder input `z` (range of `mu ± 3 sigma`, so sampled scores stay in range), each decoder
//!   hidden output and the decoder output.
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

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tinyvae::{
    Activation, DecoderNoise, DenseView, Error, QDenseView, QParams, Requant, Score, ScoreKind,
    VaeModel,
};

use crate::train::{Linear, Params};

/// An f32 dense layer (owned data for a [`DenseView`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatLayer {
    /// Row-major `[out][in]`.
    pub weights: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
    /// Inputs.
    pub in_dim: usize,
    /// Outputs.
    pub out_dim: usize,
    /// After the bias.
    pub activation: Activation,
}

impl FloatLayer {
    fn from_linear(l: &Linear, activation: Activation) -> Self {
        Self {
            weights: l.weight.clone(),
            bias: l.bias.clone(),
            in_dim: l.in_features,
            out_dim: l.out_features,
            activation,
        }
    }

    fn view(&self) -> Result<DenseView<'_>, Error> {
        DenseView::new(
            self.in_dim,
            self.out_dim,
            &self.weights,
            &self.bias,
            self.activation,
        )
    }
}

/// An int8 dense layer (owned data for a [`QDenseView`]) with the parameters it was built from.
#[derive(Clone, Debug, PartialEq)]
pub struct QLayer {
    /// Row-major int8 weights `[out][in]`.
    pub weights: Vec<i8>,
    /// i32 biases with the input zero point folded in.
    pub bias: Vec<i32>,
    /// Per-output requantization.
    pub requant: Vec<Requant>,
    /// Per-output weight scales `s_w[o]`.
    pub weight_scales: Vec<f32>,
    /// Input quantization.
    pub input_q: QParams,
    /// Output quantization.
    pub output_q: QParams,
    /// Fused activation clamp.
    pub act_min: i8,
    /// Fused activation clamp.
    pub act_max: i8,
    /// Inputs.
    pub in_dim: usize,
    /// Outputs.
    pub out_dim: usize,
    /// The fused activation (ReLU or identity).
    pub activation: Activation,
}

impl QLayer {
    /// Quantizes `l` for inputs quantized with `input_q` and outputs with `output_q`.
    ///
    /// # Errors
    /// A requantization multiplier out of range, or an unsupported activation.
    pub fn quantize(
        l: &Linear,
        input_q: QParams,
        output_q: QParams,
        activation: Activation,
    ) -> Result<Self> {
        let (n_in, n_out) = (l.in_features, l.out_features);
        let mut weights = Vec::with_capacity(n_in * n_out);
        let mut bias = Vec::with_capacity(n_out);
        let mut requant = Vec::with_capacity(n_out);
        let mut weight_scales = Vec::with_capacity(n_out);
        for (o, (row, &b)) in l.weight.chunks_exact(n_in).zip(&l.bias).enumerate() {
            let maxabs = row.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
            let s_w = if maxabs > 0.0 { maxabs / 127.0 } else { 1.0 };
            let start = weights.len();
            for &w in row {
                let q = (f64::from(w) / f64::from(s_w)).round().clamp(-127.0, 127.0);
                weights.push(q as i8);
            }
            let bq = (f64::from(b) / (f64::from(input_q.scale) * f64::from(s_w)))
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            bias.push(tinyvae::fold_bias(
                bq,
                &weights[start..],
                input_q.zero_point,
            ));
            let m = tinyvae::per_channel_multiplier(input_q.scale, s_w, output_q.scale);
            requant.push(tinyvae::quantize_multiplier(m).map_err(|e| {
                anyhow::anyhow!(
                    "output {o}: requantization multiplier s_in * s_w / s_out = {} * {s_w} / {} \
                     = {m} is outside the valid range [0, 2^30) ({e}; the activation range \
                     calibrated for this layer's output is too narrow for its weights)",
                    input_q.scale,
                    output_q.scale
                )
            })?);
            weight_scales.push(s_w);
        }
        let (act_min, act_max) = tinyvae::quantized_activation_range(activation, output_q)
            .map_err(|e| anyhow::anyhow!("activation range: {e}"))?;
        Ok(Self {
            weights,
            bias,
            requant,
            weight_scales,
            input_q,
            output_q,
            act_min,
            act_max,
            in_dim: n_in,
            out_dim: n_out,
            activation,
        })
    }

    fn view(&self) -> Result<QDenseView<'_>, Error> {
        QDenseView::new(
            self.in_dim,
            self.out_dim,
            &self.weights,
            &self.bias,
            &self.requant,
            self.output_q.zero_point,
            self.act_min,
            self.act_max,
            None,
        )
    }
}

/// Observed value ranges `(min, max)` at each layer boundary of the f32 model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    /// Standardized input.
    pub input: (f32, f32),
    /// Each encoder hidden layer (after ReLU).
    pub encoder: Vec<(f32, f32)>,
    /// The `mu` head.
    pub mu: (f32, f32),
    /// The `logvar` head.
    pub logvar: (f32, f32),
    /// Decoder input `z`: `mu ± 3 exp(logvar / 2)`.
    pub z: (f32, f32),
    /// Each decoder hidden layer (after ReLU).
    pub decoder: Vec<(f32, f32)>,
    /// Decoder output (the mean).
    pub output: (f32, f32),
}

/// `(in, out)` widths: encoder hidden layers, the two heads, decoder layers (with the output).
pub type Dims = (
    Vec<(usize, usize)>,
    [(usize, usize); 2],
    Vec<(usize, usize)>,
);

/// f32 or int8 layers of a [`HostModel`].
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per model, built once
pub enum Layers {
    /// f32 throughout.
    Float {
        /// Encoder hidden layers (ReLU).
        encoder: Vec<FloatLayer>,
        /// Mean head.
        mu: FloatLayer,
        /// Log-variance head.
        logvar: FloatLayer,
        /// Decoder hidden layers (ReLU).
        decoder: Vec<FloatLayer>,
        /// Decoder output layer.
        output: FloatLayer,
    },
    /// int8 layers between quantize/dequantize boundaries.
    Int8 {
        /// Quantization of the standardized input.
        input_q: QParams,
        /// Encoder hidden layers (fused ReLU).
        encoder: Vec<QLayer>,
        /// Mean head (identity), dequantized with its output parameters.
        mu: QLayer,
        /// Log-variance head (identity), dequantized with its output parameters.
        logvar: QLayer,
        /// Quantization of the decoder input `z`.
        z_q: QParams,
        /// Decoder hidden layers (fused ReLU).
        decoder: Vec<QLayer>,
        /// Decoder output layer (identity), dequantized with its output parameters.
        output: QLayer,
    },
}

/// A runtime-shaped VAE that implements [`VaeModel`] through the library's kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct HostModel {
    /// X.
    pub input: usize,
    /// Z.
    pub latent: usize,
    /// The layers.
    pub layers: Layers,
    /// Decoder log-variances (X) the noise constants were computed from.
    pub decoder_logvar: Vec<f32>,
    /// `exp(-logvar_x)` per feature.
    pub inv_var: Vec<f32>,
    /// `-1/2 sum (ln 2 pi + logvar_x)`.
    pub log_norm: f32,
}

/// Intermediate buffers of a [`HostModel`] (see [`HostModel::scratch`]).
#[derive(Clone, Debug)]
pub struct HostScratch {
    fa: Vec<f32>,
    fb: Vec<f32>,
    qa: Vec<i8>,
    qb: Vec<i8>,
}

/// What [`HostModel::check`] and [`HostModel::dims`] need of an f32 or int8 layer.
trait HostLayer {
    fn dims(&self) -> (usize, usize);
    /// Builds the library view, which validates every length and constant.
    fn check(&self) -> Result<(), Error>;
}

impl HostLayer for FloatLayer {
    fn dims(&self) -> (usize, usize) {
        (self.in_dim, self.out_dim)
    }
    fn check(&self) -> Result<(), Error> {
        self.view().map(|_| ())
    }
}

impl HostLayer for QLayer {
    fn dims(&self) -> (usize, usize) {
        (self.in_dim, self.out_dim)
    }
    fn check(&self) -> Result<(), Error> {
        self.view().map(|_| ())
    }
}

/// Every layer in order: encoder, the two heads, decoder hidden layers, decoder output.
fn all_layers<'a, L>(
    encoder: &'a [L],
    mu: &'a L,
    logvar: &'a L,
    decoder: &'a [L],
    output: &'a L,
) -> impl Iterator<Item = &'a L> {
    encoder
        .iter()
        .chain([mu, logvar])
        .chain(decoder)
        .chain([output])
}

fn dims_of<L: HostLayer>(encoder: &[L], mu: &L, logvar: &L, decoder: &[L], output: &L) -> Dims {
    (
        encoder.iter().map(HostLayer::dims).collect(),
        [mu.dims(), logvar.dims()],
        decoder
            .iter()
            .chain([output])
            .map(HostLayer::dims)
            .collect(),
    )
}

fn lib(e: Error) -> anyhow::Error {
    anyhow::anyhow!("tinyvae: {e}")
}

/// Runs f32 layers: `x` → ... → the last layer's output in `out`.
fn run_float(
    layers: &[&FloatLayer],
    x: &[f32],
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
) -> Result<(), Error> {
    let n = layers.len();
    let mut cur_in_a = false; // where the current input lives: x (first), then a/b
    for (i, l) in layers.iter().enumerate() {
        let v = l.view()?;
        let last = i + 1 == n;
        let od = v.out_dim();
        match (i == 0, last) {
            (true, true) => v.forward(x, out)?,
            (true, false) => {
                v.forward(x, &mut a[..od])?;
                cur_in_a = true;
            }
            (false, _) => {
                let (src, dst): (&[f32], &mut [f32]) = if cur_in_a {
                    (
                        &a[..v.in_dim()],
                        if last { &mut *out } else { &mut b[..od] },
                    )
                } else {
                    (
                        &b[..v.in_dim()],
                        if last { &mut *out } else { &mut a[..od] },
                    )
                };
                v.forward(src, dst)?;
                cur_in_a = !cur_in_a;
            }
        }
    }
    Ok(())
}

/// Runs int8 layers from `q_in` (already quantized, in `a[..in]`) to the last layer's output,
/// returned as a slice of `a` or `b`.
fn run_int8<'s>(layers: &[&QLayer], a: &'s mut [i8], b: &'s mut [i8]) -> Result<&'s [i8], Error> {
    let mut in_a = true;
    let mut last_out = 0;
    for l in layers {
        let v = l.view()?;
        let (i, o) = (v.in_dim(), v.out_dim());
        if in_a {
            v.forward(&a[..i], &mut b[..o])?;
        } else {
            v.forward(&b[..i], &mut a[..o])?;
        }
        in_a = !in_a;
        last_out = o;
    }
    Ok(if in_a { &a[..last_out] } else { &b[..last_out] })
}

impl HostModel {
    /// The f32 model of trained weights.
    ///
    /// # Errors
    /// Inconsistent shapes or a non-finite decoder log-variance.
    pub fn float(p: &Params) -> Result<Self> {
        let layers = Layers::Float {
            encoder: p
                .encoder
                .iter()
                .map(|l| FloatLayer::from_linear(l, Activation::Relu))
                .collect(),
            mu: FloatLayer::from_linear(&p.mu, Activation::Identity),
            logvar: FloatLayer::from_linear(&p.logvar, Activation::Identity),
            decoder: p
                .decoder
                .iter()
                .map(|l| FloatLayer::from_linear(l, Activation::Relu))
                .collect(),
            output: FloatLayer::from_linear(&p.decoder_out, Activation::Identity),
        };
        Self::assemble(p, layers)
    }

    /// The int8 model of trained weights, with activation parameters from `ranges`.
    ///
    /// # Errors
    /// A degenerate range (see [`QParams::from_range`]) or shapes that do not chain.
    pub fn int8(p: &Params, ranges: &Ranges) -> Result<Self> {
        let qp = |what: &str, (lo, hi): (f32, f32)| {
            QParams::from_range(lo, hi)
                .map_err(|e| anyhow::anyhow!("quantization range of {what} [{lo}, {hi}]: {e}"))
        };
        // Quantizes one layer; an error names it (`layer encoder.0: output 3: ...`).
        let layer = |name: &str, l: &Linear, i: QParams, o: QParams, act: Activation| {
            QLayer::quantize(l, i, o, act).with_context(|| format!("layer {name}"))
        };
        if ranges.encoder.len() != p.encoder.len() || ranges.decoder.len() != p.decoder.len() {
            bail!("calibration ranges do not match the model's layers");
        }
        let input_q = qp("the input", ranges.input)?;
        let mut prev = input_q;
        let mut encoder = Vec::new();
        for (i, (l, &r)) in p.encoder.iter().zip(&ranges.encoder).enumerate() {
            let out_q = qp(&format!("encoder.{i}"), r)?;
            encoder.push(layer(
                &format!("encoder.{i}"),
                l,
                prev,
                out_q,
                Activation::Relu,
            )?);
            prev = out_q;
        }
        let mu = layer(
            "mu",
            &p.mu,
            prev,
            qp("mu", ranges.mu)?,
            Activation::Identity,
        )?;
        let logvar = layer(
            "logvar",
            &p.logvar,
            prev,
            qp("logvar", ranges.logvar)?,
            Activation::Identity,
        )?;
        let z_q = qp("z", ranges.z)?;
        let mut prev = z_q;
        let mut decoder = Vec::new();
        for (i, (l, &r)) in p.decoder.iter().zip(&ranges.decoder).enumerate() {
            let out_q = qp(&format!("decoder.{i}"), r)?;
            decoder.push(layer(
                &format!("decoder.{i}"),
                l,
                prev,
                out_q,
                Activation::Relu,
            )?);
            prev = out_q;
        }
        let output = layer(
            "decoder.out",
            &p.decoder_out,
            prev,
            qp("decoder.out", ranges.output)?,
            Activation::Identity,
        )?;
        let layers = Layers::Int8 {
            input_q,
            encoder,
            mu,
            logvar,
            z_q,
            decoder,
            output,
        };
        Self::assemble(p, layers)
    }

    fn assemble(p: &Params, layers: Layers) -> Result<Self> {
        let input = p.decoder_out.out_features;
        let latent = p.mu.out_features;
        if p.decoder_logvar.len() != input {
            bail!(
                "decoder.logvar has {} values, the model has {input} outputs",
                p.decoder_logvar.len()
            );
        }
        let mut inv_var = vec![0.0f32; input];
        let log_norm = tinyvae::decoder_noise(&p.decoder_logvar, &mut inv_var)
            .map_err(|e| anyhow::anyhow!("decoder.logvar: {e}"))?;
        let m = Self {
            input,
            latent,
            layers,
            decoder_logvar: p.decoder_logvar.clone(),
            inv_var,
            log_norm,
        };
        m.check().context("model shapes")?;
        Ok(m)
    }

    /// Checks that consecutive layers chain (widths match) and the views build.
    fn check(&self) -> Result<()> {
        let chain = |dims: &[(usize, usize)], first: usize, what: &str| -> Result<()> {
            let mut prev = first;
            for (i, &(a, b)) in dims.iter().enumerate() {
                if a != prev {
                    bail!("{what} layer {i} takes {a} inputs, gets {prev}");
                }
                prev = b;
            }
            Ok(())
        };
        let (enc, heads, dec) = self.dims();
        chain(&enc, self.input, "encoder")?;
        let h = enc.last().map_or(self.input, |d| d.1);
        for (a, b) in heads {
            if a != h || b != self.latent {
                bail!(
                    "head {a}->{b} does not fit hidden width {h} and latent {}",
                    self.latent
                );
            }
        }
        chain(&dec, self.latent, "decoder")?;
        if dec.last().map(|d| d.1) != Some(self.input) {
            bail!("decoder output is not {} wide", self.input);
        }
        match &self.layers {
            Layers::Float {
                encoder,
                mu,
                logvar,
                decoder,
                output,
            } => all_layers(encoder, mu, logvar, decoder, output).try_for_each(HostLayer::check),
            Layers::Int8 {
                encoder,
                mu,
                logvar,
                decoder,
                output,
                ..
            } => all_layers(encoder, mu, logvar, decoder, output).try_for_each(HostLayer::check),
        }
        .map_err(lib)?;
        Ok(())
    }

    /// `(in, out)` of the encoder hidden layers, the two heads, and the decoder layers
    /// (hidden and output).
    pub fn dims(&self) -> Dims {
        match &self.layers {
            Layers::Float {
                encoder,
                mu,
                logvar,
                decoder,
                output,
            } => dims_of(encoder, mu, logvar, decoder, output),
            Layers::Int8 {
                encoder,
                mu,
                logvar,
                decoder,
                output,
                ..
            } => dims_of(encoder, mu, logvar, decoder, output),
        }
    }

    /// Whether the layers are int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.layers, Layers::Int8 { .. })
    }

    /// Multiply-accumulates of one encode and one decode.
    pub fn macs(&self) -> usize {
        let (e, h, d) = self.dims();
        e.iter().chain(&h).chain(&d).map(|(a, b)| a * b).sum()
    }

    /// Multiply-accumulates of one encode plus `decodes` decodes.
    pub fn macs_for(&self, decodes: usize) -> usize {
        let (e, h, d) = self.dims();
        let enc: usize = e.iter().chain(&h).map(|(a, b)| a * b).sum();
        let dec: usize = d.iter().map(|(a, b)| a * b).sum();
        enc + decodes * dec
    }

    /// Bytes of parameters as the exported model stores them: weights (4 bytes f32 or 1 byte
    /// int8), biases (4 bytes), requantization constants (8 bytes per int8 output), and the
    /// decoder noise constants (`4 X + 4`).
    pub fn param_bytes(&self) -> usize {
        let (e, h, d) = self.dims();
        let all = e.iter().chain(&h).chain(&d);
        let noise = 4 * self.input + 4;
        if self.is_int8() {
            all.map(|(a, b)| a * b + 4 * b + 8 * b).sum::<usize>() + noise
        } else {
            all.map(|(a, b)| 4 * a * b + 4 * b).sum::<usize>() + noise
        }
    }

    /// Zeroed scratch for this model.
    pub fn scratch(&self) -> HostScratch {
        let (e, h, d) = self.dims();
        let w = e
            .iter()
            .chain(&h)
            .chain(&d)
            .flat_map(|&(a, b)| [a, b])
            .max()
            .unwrap_or(0)
            .max(self.input);
        HostScratch {
            fa: vec![0.0; w],
            fb: vec![0.0; w],
            qa: vec![0; w],
            qb: vec![0; w],
        }
    }

    /// Runs the f32 model over `windows` (each `input` values) and records the value range at
    /// every layer boundary (the int8 calibration).
    ///
    /// # Errors
    /// If `self` is not the f32 model, or a window has the wrong length.
    pub fn calibrate<'a>(&self, windows: impl Iterator<Item = &'a [f32]>) -> Result<Ranges> {
        let Layers::Float {
            encoder,
            mu,
            logvar,
            decoder,
            output,
        } = &self.layers
        else {
            bail!("calibration needs the f32 model");
        };
        let mut r = Ranges {
            input: (f32::INFINITY, f32::NEG_INFINITY),
            encoder: vec![(f32::INFINITY, f32::NEG_INFINITY); encoder.len()],
            mu: (f32::INFINITY, f32::NEG_INFINITY),
            logvar: (f32::INFINITY, f32::NEG_INFINITY),
            z: (f32::INFINITY, f32::NEG_INFINITY),
            decoder: vec![(f32::INFINITY, f32::NEG_INFINITY); decoder.len()],
            output: (f32::INFINITY, f32::NEG_INFINITY),
        };
        fn upd(r: &mut (f32, f32), v: &[f32]) {
            for &x in v {
                r.0 = r.0.min(x);
                r.1 = r.1.max(x);
            }
        }
        let mut n = 0usize;
        for x in windows {
            if x.len() != self.input {
                bail!(
                    "window of {} values, the model takes {}",
                    x.len(),
                    self.input
                );
            }
            n += 1;
            upd(&mut r.input, x);
            let mut cur = x.to_vec();
            for (l, rr) in encoder.iter().zip(r.encoder.iter_mut()) {
                let mut y = vec![0.0; l.out_dim];
                l.view().map_err(lib)?.forward(&cur, &mut y).map_err(lib)?;
                upd(rr, &y);
                cur = y;
            }
            let mut m = vec![0.0; self.latent];
            let mut lv = vec![0.0; self.latent];
            mu.view().map_err(lib)?.forward(&cur, &mut m).map_err(lib)?;
            logvar
                .view()
                .map_err(lib)?
                .forward(&cur, &mut lv)
                .map_err(lib)?;
            upd(&mut r.mu, &m);
            upd(&mut r.logvar, &lv);
            for (&mj, &lj) in m.iter().zip(&lv) {
                let s = 3.0
                    * tinyvae::math::exp(0.5 * lj.clamp(tinyvae::LOGVAR_MIN, tinyvae::LOGVAR_MAX));
                upd(&mut r.z, &[mj - s, mj + s]);
            }
            let mut cur = m;
            for (l, rr) in decoder.iter().zip(r.decoder.iter_mut()) {
                let mut y = vec![0.0; l.out_dim];
                l.view().map_err(lib)?.forward(&cur, &mut y).map_err(lib)?;
                upd(rr, &y);
                cur = y;
            }
            let mut y = vec![0.0; output.out_dim];
            output
                .view()
                .map_err(lib)?
                .forward(&cur, &mut y)
                .map_err(lib)?;
            upd(&mut r.output, &y);
        }
        if n == 0 {
            bail!("no calibration windows");
        }
        Ok(r)
    }
}

impl VaeModel for HostModel {
    type Scratch = HostScratch;

    fn input_dim(&self) -> usize {
        self.input
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        s: &mut HostScratch,
    ) -> Result<(), Error> {
        match &self.layers {
            Layers::Float {
                encoder,
                mu: mh,
                logvar: lh,
                ..
            } => {
                let refs: Vec<&FloatLayer> = encoder.iter().collect();
                let h = encoder.last().map_or(self.input, |l| l.out_dim);
                let mut hidden = vec![0.0f32; h];
                run_float(&refs, x, &mut hidden, &mut s.fa, &mut s.fb)?;
                mh.view()?.forward(&hidden, mu)?;
                lh.view()?.forward(&hidden, logvar)
            }
            Layers::Int8 {
                input_q,
                encoder,
                mu: mh,
                logvar: lh,
                ..
            } => {
                tinyvae::quantize_slice(
                    x,
                    *input_q,
                    s.qa.get_mut(..x.len()).ok_or(Error::ShapeMismatch {
                        expected: self.input,
                        found: x.len(),
                    })?,
                )?;
                let refs: Vec<&QLayer> = encoder.iter().collect();
                let hidden = run_int8(&refs, &mut s.qa, &mut s.qb)?.to_vec();
                let mut q = vec![0i8; self.latent];
                mh.view()?.forward(&hidden, &mut q)?;
                tinyvae::dequantize_slice(&q, mh.output_q, mu)?;
                lh.view()?.forward(&hidden, &mut q)?;
                tinyvae::dequantize_slice(&q, lh.output_q, logvar)
            }
        }
    }

    fn decode(&self, z: &[f32], mean: &mut [f32], s: &mut HostScratch) -> Result<(), Error> {
        match &self.layers {
            Layers::Float {
                decoder, output, ..
            } => {
                let refs: Vec<&FloatLayer> = decoder.iter().chain([output]).collect();
                run_float(&refs, z, mean, &mut s.fa, &mut s.fb)
            }
            Layers::Int8 {
                z_q,
                decoder,
                output,
                ..
            } => {
                tinyvae::quantize_slice(
                    z,
                    *z_q,
                    s.qa.get_mut(..z.len()).ok_or(Error::ShapeMismatch {
                        expected: self.latent,
                        found: z.len(),
                    })?,
                )?;
                let refs: Vec<&QLayer> = decoder.iter().chain([output]).collect();
                let out = run_int8(&refs, &mut s.qa, &mut s.qb)?;
                tinyvae::dequantize_slice(out, output.output_q, mean)
            }
        }
    }

    fn noise(&self) -> DecoderNoise<'_> {
        DecoderNoise {
            inv_var: &self.inv_var,
            log_norm: self.log_norm,
        }
    }
}

/// Parses a score name: `elbo`, `elbo-sampled`, `iwae`, `recon-prob` (with `samples` draws for
/// the sampled ones).
///
/// # Errors
/// An unknown name or zero samples.
pub fn parse_score_kind(name: &str, samples: u16) -> Result<ScoreKind> {
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    Ok(match name {
        "elbo" => ScoreKind::Elbo,
        "elbo-sampled" => ScoreKind::ElboSampled { samples },
        "iwae" => ScoreKind::Iwae { samples },
        "recon-prob" => ScoreKind::ReconProb { samples },
        _ => bail!("unknown score {name:?} (elbo, elbo-sampled, iwae, recon-prob)"),
    })
}

/// The display name of a score kind, e.g. `elbo` or `iwae-16`.
pub fn score_name(kind: ScoreKind) -> String {
    match kind {
        ScoreKind::Elbo => "elbo".to_string(),
        ScoreKind::ElboSampled { samples } => format!("elbo-sampled-{samples}"),
        ScoreKind::Iwae { samples } => format!("iwae-{samples}"),
        ScoreKind::ReconProb { samples } => format!("recon-prob-{samples}"),
    }
}

/// Scores every window in order with [`tinyvae::score`]. Sampled scores of window `k` draw
/// from [`tinyvae::window_rng`]`(seed, k)`, the generator the library's streaming detector (and
/// so the firmware) uses for its `k`-th window, so the scores match the chip's.
///
/// # Errors
/// A library error, with the window index.
pub fn score_windows<'a>(
    model: &HostModel,
    windows: impl Iterator<Item = &'a [f32]>,
    kind: ScoreKind,
    seed: u64,
) -> Result<Vec<Score>> {
    let z = model.latent;
    let (mut mu, mut lv, mut zb, mut eps) =
        (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
    let mut mean = vec![0.0; model.input];
    let mut scratch = model.scratch();
    let mut sampler = tinyvae::NormalSampler::new();
    let mut out = Vec::new();
    for (i, x) in windows.enumerate() {
        let mut rng = tinyvae::window_rng(seed, i as u64);
        let buf = tinyvae::Buffers {
            mu: &mut mu,
            logvar: &mut lv,
            z: &mut zb,
            eps: &mut eps,
            mean: &mut mean,
        };
        let s = tinyvae::score(model, x, kind, buf, &mut scratch, &mut sampler, &mut rng)
            .map_err(|e| anyhow::anyhow!("window {i}: {e}"))?;
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{Arch, NoiseKind};

    fn small() -> (Arch, Params) {
        let arch = Arch {
            input: 12,
            encoder_hidden: vec![10, 7],
            latent: 3,
            decoder_hidden: vec![9],
            noise: NoiseKind::PerFeature,
            channels: 3,
        };
        let mut p = Params::init(&arch, 7).unwrap();
        for (i, v) in p.decoder_logvar.iter_mut().enumerate() {
            *v = -0.5 + 0.1 * i as f32;
        }
        (arch, p)
    }

    fn windows(n: usize, d: usize) -> Vec<f32> {
        let mut x = 1u32;
        (0..n * d)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2000) as f32 / 500.0 - 2.0
            })
            .collect()
    }

    /// f64 reference forward pass, written independently of the library.
    fn ref_forward(l: &Linear, x: &[f64], relu: bool) -> Vec<f64> {
        l.weight
            .chunks_exact(l.in_features)
            .zip(&l.bias)
            .map(|(row, &b)| {
                let s: f64 = row
                    .iter()
                    .zip(x)
                    .map(|(&w, &v)| f64::from(w) * v)
                    .sum::<f64>()
                    + f64::from(b);
                if relu {
                    s.max(0.0)
                } else {
                    s
                }
            })
            .collect()
    }

    #[test]
    fn float_model_matches_f64_reference_elbo() {
        let (_, p) = small();
        let m = HostModel::float(&p).unwrap();
        let data = windows(20, 12);
        let scores = score_windows(&m, data.chunks_exact(12), ScoreKind::Elbo, 0).unwrap();
        for (x, s) in data.chunks_exact(12).zip(&scores) {
            let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            for l in &p.encoder {
                h = ref_forward(l, &h, true);
            }
            let mu = ref_forward(&p.mu, &h, false);
            let lv = ref_forward(&p.logvar, &h, false);
            let kl: f64 = mu
                .iter()
                .zip(&lv)
                .map(|(m, l)| 0.5 * (m * m + l.exp() - 1.0 - l))
                .sum();
            let mut d = mu.clone();
            for l in &p.decoder {
                d = ref_forward(l, &d, true);
            }
            let mean = ref_forward(&p.decoder_out, &d, false);
            let ll: f64 = x
                .iter()
                .zip(&mean)
                .zip(&p.decoder_logvar)
                .map(|((&xi, mi), &lvx)| {
                    let lvx = f64::from(lvx);
                    -0.5 * ((2.0 * std::f64::consts::PI).ln()
                        + lvx
                        + (f64::from(xi) - mi).powi(2) / lvx.exp())
                })
                .sum();
            let want = -(ll - kl);
            let got = f64::from(s.score);
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "x {x:?}: score {got} vs f64 reference {want}"
            );
        }
    }

    #[test]
    fn int8_model_tracks_float_model() {
        let (_, p) = small();
        let f = HostModel::float(&p).unwrap();
        let data = windows(200, 12);
        let ranges = f.calibrate(data.chunks_exact(12)).unwrap();
        let q = HostModel::int8(&p, &ranges).unwrap();
        assert!(q.is_int8());
        let sf = score_windows(&f, data.chunks_exact(12), ScoreKind::Elbo, 0).unwrap();
        let sq = score_windows(&q, data.chunks_exact(12), ScoreKind::Elbo, 0).unwrap();
        // mean absolute difference relative to the spread of the scores
        let mean: f64 = sf.iter().map(|s| f64::from(s.score)).sum::<f64>() / sf.len() as f64;
        let spread: f64 = (sf
            .iter()
            .map(|s| (f64::from(s.score) - mean).powi(2))
            .sum::<f64>()
            / sf.len() as f64)
            .sqrt();
        let mad: f64 = sf
            .iter()
            .zip(&sq)
            .map(|(a, b)| f64::from((a.score - b.score).abs()))
            .sum::<f64>()
            / sf.len() as f64;
        assert!(
            mad < 0.05 * spread,
            "mean |f32 - int8| {mad} vs score std {spread}"
        );
        // sampled scores run too and are reproducible
        let k = ScoreKind::Iwae { samples: 4 };
        let a = score_windows(&q, data.chunks_exact(12), k, 3).unwrap();
        let b = score_windows(&q, data.chunks_exact(12), k, 3).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn weight_quantization_is_per_row_symmetric() {
        let l = Linear {
            weight: vec![1.0, -0.5, 0.25, 0.0, 0.0, 0.0],
            bias: vec![0.1, 0.0],
            in_features: 3,
            out_features: 2,
        };
        let q = QLayer::quantize(
            &l,
            QParams::new(0.1, 3),
            QParams::new(0.05, -10),
            Activation::Relu,
        )
        .unwrap();
        assert_eq!(q.weights, [127, -64, 32, 0, 0, 0]); // -63.5 rounds away from zero
        assert_eq!(q.weight_scales, [1.0 / 127.0, 1.0]);
        // bias: round(0.1 / (0.1 / 127)) = 127, minus zp 3 * (127 - 64 + 32)
        assert_eq!(q.bias, [127 - 3 * 95, 0]);
        assert_eq!(q.act_min, -10);
    }
}
