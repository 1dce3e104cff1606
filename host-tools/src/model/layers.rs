//! The dense layers of a [`HostModel`](super::HostModel): [`FloatLayer`] (f32) and [`QLayer`]
//! (int8, quantized per output channel as the module doc of `model` says), owning the data the
//! library's [`DenseView`] and [`QDenseView`] borrow.

use anyhow::Result;
use tinyvae::{Activation, DenseView, Error, QDenseView, QParams, Requant};

use super::Dims;
use crate::train::Linear;

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
    pub(super) fn from_linear(l: &Linear, activation: Activation) -> Self {
        Self {
            weights: l.weight.clone(),
            bias: l.bias.clone(),
            in_dim: l.in_features,
            out_dim: l.out_features,
            activation,
        }
    }

    pub(super) fn view(&self) -> Result<DenseView<'_>, Error> {
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

    pub(super) fn view(&self) -> Result<QDenseView<'_>, Error> {
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

/// What [`HostModel::check`] and [`HostModel::dims`] need of an f32 or int8 layer.
pub(super) trait HostLayer {
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
pub(super) fn all_layers<'a, L>(
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

pub(super) fn dims_of<L: HostLayer>(
    encoder: &[L],
    mu: &L,
    logvar: &L,
    decoder: &[L],
    output: &L,
) -> Dims {
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
