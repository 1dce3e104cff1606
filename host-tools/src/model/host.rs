//! [`HostModel`]: the runtime-shaped VAE, f32 or int8, whose encode and decode run through the
//! library's kernels layer by layer, and its [`VaeModel`] implementation.

use anyhow::{bail, Context, Result};
use tinyvae::{Activation, DecoderNoise, Error, QParams, Route, VaeModel};

use super::{all_layers, dims_of, FloatLayer, HostLayer, HostMoe, QLayer, Ranges};
use crate::train::{Linear, Params};

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
    /// The int8 layers packed for the active SIMD kernel (`crate::kernel`), which encode and
    /// decode then run; `None` for f32 models and with the portable kernel.
    pub packed: Option<crate::kernel::PackedModel>,
    /// A mixture of experts (`--experts K`): the gate and the K experts this model routes to
    /// (its own layers are expert 0's, for the shapes); `None` for a single VAE.
    pub moe: Option<Box<HostMoe>>,
}

/// Intermediate buffers of a [`HostModel`] (see [`HostModel::scratch`]).
#[derive(Clone, Debug)]
pub struct HostScratch {
    fa: Vec<f32>,
    fb: Vec<f32>,
    qa: Vec<i8>,
    qb: Vec<i8>,
    packed: crate::kernel::PackedScratch,
    pub(super) route: Route,
}

pub(super) fn lib(e: Error) -> anyhow::Error {
    anyhow::anyhow!("tinyvae: {e}")
}

/// Runs f32 layers: `x` → ... → the last layer's output in `out`.
pub(super) fn run_float(
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
pub(super) fn run_int8<'s>(
    layers: &[&QLayer],
    a: &'s mut [i8],
    b: &'s mut [i8],
) -> Result<&'s [i8], Error> {
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
        if ranges.encoder.len() != p.encoder.len() || ranges.decoder.len() != p.decoder.len() {
            bail!("calibration ranges do not match the model's layers");
        }
        let input_q = range_q("the input", ranges.input)?;
        let (encoder, prev) = quantize_relu_stack("encoder", &p.encoder, &ranges.encoder, input_q)?;
        let mu = quantize_layer(
            "mu",
            &p.mu,
            prev,
            range_q("mu", ranges.mu)?,
            Activation::Identity,
        )?;
        let logvar = quantize_layer(
            "logvar",
            &p.logvar,
            prev,
            range_q("logvar", ranges.logvar)?,
            Activation::Identity,
        )?;
        let z_q = range_q("z", ranges.z)?;
        let (decoder, prev) = quantize_relu_stack("decoder", &p.decoder, &ranges.decoder, z_q)?;
        let output = quantize_layer(
            "decoder.out",
            &p.decoder_out,
            prev,
            range_q("decoder.out", ranges.output)?,
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
        let packed = crate::kernel::pack_layers(&layers)?;
        let m = Self {
            input,
            latent,
            layers,
            decoder_logvar: p.decoder_logvar.clone(),
            inv_var,
            log_norm,
            packed,
            moe: None,
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
            packed: crate::kernel::PackedScratch::default(),
            route: Route {
                expert: 0,
                log_weight: 0.0,
            },
        }
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
        if let Some(m) = &self.moe {
            return m.encode(x, mu, logvar, s);
        }
        if let Some(p) = &self.packed {
            return p.encode(x, mu, logvar, &mut s.packed);
        }
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
        if let Some(m) = &self.moe {
            return m.decode(z, mean, s);
        }
        if let Some(p) = &self.packed {
            return p.decode(z, mean, &mut s.packed);
        }
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

    fn route(&self, s: &HostScratch) -> Option<Route> {
        self.moe.as_ref().map(|_| s.route)
    }

    fn routed_noise(&self, s: &HostScratch) -> DecoderNoise<'_> {
        match &self.moe {
            Some(m) => m.noise(s.route).unwrap_or_else(|| self.noise()),
            None => self.noise(),
        }
    }
}

/// The int8 quantization of a calibrated range `(lo, hi)`; an error names `what`.
pub(crate) fn range_q(what: &str, (lo, hi): (f32, f32)) -> Result<QParams> {
    QParams::from_range(lo, hi)
        .map_err(|e| anyhow::anyhow!("quantization range of {what} [{lo}, {hi}]: {e}"))
}

/// Quantizes one layer; an error names it (`layer encoder.0: output 3: ...`).
pub(crate) fn quantize_layer(
    name: &str,
    l: &Linear,
    input_q: QParams,
    output_q: QParams,
    act: Activation,
) -> Result<QLayer> {
    QLayer::quantize(l, input_q, output_q, act).with_context(|| format!("layer {name}"))
}

/// Quantizes a stack of ReLU layers named `{prefix}.{i}` whose outputs were calibrated to
/// `ranges`, from the input quantization `input_q`; returns the layers and the quantization of
/// the last output (`input_q` for an empty stack).
pub(crate) fn quantize_relu_stack(
    prefix: &str,
    layers: &[Linear],
    ranges: &[(f32, f32)],
    input_q: QParams,
) -> Result<(Vec<QLayer>, QParams)> {
    let mut prev = input_q;
    let mut out = Vec::with_capacity(layers.len());
    for (i, (l, &r)) in layers.iter().zip(ranges).enumerate() {
        let name = format!("{prefix}.{i}");
        let out_q = range_q(&name, r)?;
        out.push(quantize_layer(&name, l, prev, out_q, Activation::Relu)?);
        prev = out_q;
    }
    Ok((out, prev))
}
