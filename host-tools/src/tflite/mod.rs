//! Import int8 TFLite models made of `FULLY_CONNECTED` layers, run them through tinyvae's own int8
//! dense kernel ([`tinyvae::QDenseView`]) and export them as Rust source for the firmware.
//!
//! # What is accepted
//!
//! A `.tflite` flatbuffer (file identifier `TFL3`, schema version 3) with one subgraph, one input
//! and one output, whose operators form a chain
//!
//! ```text
//! [QUANTIZE f32 -> i8]  FULLY_CONNECTED  ...  FULLY_CONNECTED  [DEQUANTIZE i8 -> f32]
//! ```
//!
//! where every `FULLY_CONNECTED` has int8 input and output (per-tensor scale and zero point),
//! int8 weights `[out, in]` with zero point 0 and one scale (per-tensor) or `out` scales
//! (per-channel, `quantized_dimension` 0), an optional int32 bias, batch 1, fused activation
//! `NONE`, `RELU`, `RELU_N1_TO_1` or `RELU6`, `weights_format` `DEFAULT` and `keep_num_dims`
//! false. The optional `QUANTIZE`/`DEQUANTIZE` at the edges (a model converted with float I/O) are
//! reproduced exactly by [`tinyvae::quantize`] / [`tinyvae::dequantize`] (TFLite's reference
//! `AffineQuantize` and `Dequantize`; they differ only for inputs whose `x / scale` is outside
//! the i32 range, where C++'s conversion is undefined and tinyvae saturates).
//!
//! Everything else is refused with an [`ImportError`] that names the operator (TFLite's builtin
//! name, e.g. `CONV_2D`, or the custom code) or the option (e.g. `keep_num_dims`, asymmetric
//! weights, a float or int16 tensor type, sparse weights, batch > 1). A truncated or corrupted
//! file is an error, never a panic: the flatbuffer is checked by the `flatbuffers` crate's verifier
//! before any field is read, and every tensor, buffer and operator-code index is bounds-checked.
//!
//! # Arithmetic (the same bits as TFLite's reference kernels)
//!
//! For each layer with input `(s_in, zp_in)`, weight scales `s_w[o]`, output `(s_out, zp_out)`:
//! - `requant[o] = quantize_multiplier(M[o])` with TFLite's real multiplier: for per-tensor
//!   weights `M = f64(s_in * s_w) / f64(s_out)`, the product of the f32 scales taken in f32 as
//!   `GetQuantizedConvolutionMultipler` in the TFLite 2.14 runtime does
//!   ([`tinyvae::per_tensor_multiplier`]); for per-channel weights
//!   `M[o] = f64(s_in) * f64(s_w[o]) / f64(s_out)` as `PopulateConvolutionQuantizationParams` does
//!   ([`tinyvae::per_channel_multiplier`]). The two differ in the last bit of the Q31 multiplier
//!   for 9 of the 10 layers of the MLPerf Tiny model, and using the f64 product there changes 1 of
//!   its 40,960 reference outputs: the formula matters.
//! - `bias[o] = fold_bias(b_q[o], w[o], zp_in) = b_q[o] - zp_in * Σ_i w[o][i]` (i32), so that the
//!   kernel's `bias[o] + Σ w x` equals TFLite's `Σ w (x - zp_in) + b_q[o]`.
//! - `(act_min, act_max)` from TFLite's `CalculateActivationRangeQuantized`:
//!   `NONE` `(-128, 127)`, `RELU` `(max(-128, zp_out), 127)`, `RELU6` adds
//!   `min(127, zp_out + round(6 / s_out))`, `RELU_N1_TO_1` uses `round(∓1 / s_out)` (f32 division,
//!   round half away from zero).
//! - TFLite refuses a layer whose bias scale is off: `|s_in s_w[0] - s_b| / s_out > 0.02`; so
//!   does this importer. Per-tensor weights use `s_w[0]` for every output.
//!
//! The imported network then runs only through [`tinyvae::QDenseView::forward`], the same kernel
//! as the firmware's [`tinyvae::QDense`]. On the MLPerf Tiny anomaly-detection model
//! (`models/mlperf_tiny_ad01/`), every one of the 64 × 640 = 40,960 outputs equals TFLite's
//! reference kernels, while TFLite's own optimized x86 kernels miss 82 of them
//! (`cargo test -p tinyvae-host-tools --test tflite_conformance -- --nocapture` prints the counts).
//!
//! # Anomaly score
//!
//! [`ImportedModel::mse_score`] is the MLPerf Tiny benchmark's score: the float input is quantized
//! with the input parameters, run through the network, dequantized with the output parameters,
//! and `mean((y_i - x_i)^2)` is accumulated in f64 and returned as f32.
//!
//! # For the CLI
//!
//! `tinyvae import --tflite model.tflite --out DIR` is [`import_to_dir`]: it writes
//! `DIR/model.rs` ([`to_rust_source`]) and `DIR/model.json` (an [`ImportSummary`]), each through a
//! temporary file renamed into place.

mod import;
mod rust_source;

use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tinyvae::{QDenseView, QParams, Requant};

pub use import::import_tflite;
pub use rust_source::to_rust_source;

/// Why a TFLite file could not be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportError {
    /// The file is not a well-formed TFLite flatbuffer (truncated, corrupted, an index out of
    /// range, a tensor whose data does not match its shape).
    Malformed(String),
    /// A valid TFLite model that uses an operator, type or option tinyvae does not run.
    Unsupported(String),
    /// A model that TFLite itself would refuse to run (e.g. a bias scale inconsistent with the
    /// input and weight scales, a scale that is not positive).
    Invalid(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Malformed(m) => write!(f, "malformed TFLite file: {m}"),
            ImportError::Unsupported(m) => write!(f, "unsupported TFLite model: {m}"),
            ImportError::Invalid(m) => write!(f, "invalid TFLite model: {m}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// A fused activation of a TFLite `FULLY_CONNECTED` operator (applied as the clamp
/// `[act_min, act_max]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FusedActivation {
    /// No activation: `(-128, 127)`.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, -1), 1)`.
    ReluN1To1,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

/// One imported `FULLY_CONNECTED` layer, in the form [`tinyvae::QDenseView`] takes.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedLayer {
    /// Name of the layer's output tensor in the TFLite file.
    pub name: String,
    /// Number of inputs.
    pub in_dim: usize,
    /// Number of outputs.
    pub out_dim: usize,
    /// Row-major weights, `out_dim` rows of `in_dim` (TFLite's `[out, in]` layout).
    pub weights: Vec<i8>,
    /// Bias with the input zero point folded in ([`tinyvae::fold_bias`]); `out_dim` values.
    pub bias: Vec<i32>,
    /// The bias as stored in the file (zeros if the layer has none).
    pub raw_bias: Vec<i32>,
    /// Whether the file has a bias tensor for this layer.
    pub has_bias: bool,
    /// Requantization multiplier per output (repeated for per-tensor weights).
    pub requant: Vec<Requant>,
    /// Input quantization.
    pub input: QParams,
    /// Output quantization.
    pub output: QParams,
    /// Weight scales: one (per-tensor) or `out_dim` (per-channel).
    pub weight_scales: Vec<f32>,
    /// The fused activation.
    pub activation: FusedActivation,
    /// Lower output clamp.
    pub act_min: i8,
    /// Upper output clamp.
    pub act_max: i8,
}

impl ImportedLayer {
    /// The layer as a library kernel view.
    ///
    /// # Errors
    /// The library's validation errors (never for a layer made by [`import_tflite`]).
    pub fn view(&self) -> Result<QDenseView<'_>, tinyvae::Error> {
        QDenseView::new(
            self.in_dim,
            self.out_dim,
            &self.weights,
            &self.bias,
            &self.requant,
            self.output.zero_point,
            self.act_min,
            self.act_max,
            None,
        )
    }

    /// Whether the weights have one scale per output channel.
    pub fn per_channel(&self) -> bool {
        self.weight_scales.len() > 1
    }
}

/// A chain of int8 fully connected layers imported from a TFLite file.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedModel {
    /// The layers, input to output (at least one).
    pub layers: Vec<ImportedLayer>,
    /// Quantization of the network's int8 input.
    pub input: QParams,
    /// Quantization of the network's int8 output.
    pub output: QParams,
    /// The TFLite graph takes f32 and starts with a `QUANTIZE` (reproduced by [`tinyvae::quantize`]).
    pub float_input: bool,
    /// The TFLite graph ends with a `DEQUANTIZE` to f32.
    pub float_output: bool,
    /// The model's `description` string.
    pub description: String,
}

impl ImportedModel {
    /// Width of the network's input.
    pub fn in_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    /// Width of the network's output.
    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Multiply-accumulates per inference.
    pub fn macs(&self) -> usize {
        self.layers.iter().map(|l| l.in_dim * l.out_dim).sum()
    }

    /// Runs the network on an int8 input through the library's [`QDenseView`] kernel; `scratch`
    /// is resized to twice the widest layer and reused between calls.
    ///
    /// # Errors
    /// [`tinyvae::Error::ShapeMismatch`] if `x.len() != in_dim()` or `y.len() != out_dim()`.
    pub fn forward(
        &self,
        x: &[i8],
        y: &mut [i8],
        scratch: &mut Vec<i8>,
    ) -> Result<(), tinyvae::Error> {
        let shape =
            |expected: usize, found: usize| tinyvae::Error::ShapeMismatch { expected, found };
        if x.len() != self.in_dim() {
            return Err(shape(self.in_dim(), x.len()));
        }
        if y.len() != self.out_dim() {
            return Err(shape(self.out_dim(), y.len()));
        }
        let width = self
            .layers
            .iter()
            .map(|l| l.in_dim.max(l.out_dim))
            .max()
            .unwrap_or(0);
        scratch.clear();
        scratch.resize(2 * width, 0);
        let (mut src, mut dst) = scratch.split_at_mut(width);
        src.get_mut(..x.len())
            .ok_or(shape(width, x.len()))?
            .copy_from_slice(x);
        let last = self.layers.len().saturating_sub(1);
        for (k, layer) in self.layers.iter().enumerate() {
            let view = layer.view()?;
            let input = src.get(..layer.in_dim).ok_or(shape(layer.in_dim, width))?;
            if k == last {
                view.forward(input, y)?;
            } else {
                let out = dst
                    .get_mut(..layer.out_dim)
                    .ok_or(shape(layer.out_dim, width))?;
                view.forward(input, out)?;
                std::mem::swap(&mut src, &mut dst);
            }
        }
        Ok(())
    }

    /// Quantizes `x` with the input parameters, runs [`ImportedModel::forward`] and dequantizes
    /// the result into `y` with the output parameters.
    ///
    /// # Errors
    /// [`tinyvae::Error::ShapeMismatch`] for wrong lengths.
    pub fn reconstruct(&self, x: &[f32], y: &mut [f32]) -> Result<(), tinyvae::Error> {
        let mut xq = vec![0i8; x.len()];
        tinyvae::quantize_slice(x, self.input, &mut xq)?;
        let mut yq = vec![0i8; y.len()];
        self.forward(&xq, &mut yq, &mut Vec::new())?;
        tinyvae::dequantize_slice(&yq, self.output, y)
    }

    /// The MLPerf Tiny anomaly score: mean squared error between the dequantized output and the
    /// float input `x` (see the module doc).
    ///
    /// # Errors
    /// [`tinyvae::Error::NonFinite`] if `x` has a NaN or infinity,
    /// [`tinyvae::Error::ShapeMismatch`] if `x.len() != in_dim()` or the network's output width
    /// differs from its input width.
    pub fn mse_score(&self, x: &[f32]) -> Result<f32, tinyvae::Error> {
        tinyvae::check_finite(x)?;
        if self.out_dim() != x.len() {
            return Err(tinyvae::Error::ShapeMismatch {
                expected: self.out_dim(),
                found: x.len(),
            });
        }
        let mut y = vec![0f32; x.len()];
        self.reconstruct(x, &mut y)?;
        let sum: f64 = x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| {
                let d = f64::from(b) - f64::from(a);
                d * d
            })
            .sum();
        Ok((sum / x.len().max(1) as f64) as f32)
    }

    /// A serializable description of the model (what `model.json` holds).
    pub fn summary(&self, name: &str) -> ImportSummary {
        ImportSummary {
            name: name.to_string(),
            source: String::new(),
            source_sha256: String::new(),
            description: self.description.clone(),
            input: QParamsSummary::from(self.input),
            output: QParamsSummary::from(self.output),
            float_input: self.float_input,
            float_output: self.float_output,
            macs: self.macs(),
            weight_bytes: self.layers.iter().map(|l| l.weights.len()).sum(),
            constant_bytes: self
                .layers
                .iter()
                .map(|l| l.weights.len() + 4 * l.bias.len() + 8 * l.requant.len())
                .sum(),
            scratch_bytes: self.layers.iter().skip(1).map(|l| l.in_dim).sum(),
            layers: self
                .layers
                .iter()
                .map(|l| LayerSummary {
                    name: l.name.clone(),
                    in_dim: l.in_dim,
                    out_dim: l.out_dim,
                    activation: l.activation,
                    act_min: l.act_min,
                    act_max: l.act_max,
                    has_bias: l.has_bias,
                    per_channel: l.per_channel(),
                    weight_scale_min: l
                        .weight_scales
                        .iter()
                        .copied()
                        .fold(f32::INFINITY, f32::min),
                    weight_scale_max: l.weight_scales.iter().copied().fold(0.0, f32::max),
                    output: QParamsSummary::from(l.output),
                })
                .collect(),
        }
    }
}

/// Quantization parameters in [`ImportSummary`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QParamsSummary {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

impl From<QParams> for QParamsSummary {
    fn from(q: QParams) -> Self {
        Self {
            scale: q.scale,
            zero_point: q.zero_point,
        }
    }
}

/// One layer in [`ImportSummary`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSummary {
    /// Output tensor name in the TFLite file.
    pub name: String,
    /// Inputs.
    pub in_dim: usize,
    /// Outputs.
    pub out_dim: usize,
    /// Fused activation.
    pub activation: FusedActivation,
    /// Lower output clamp.
    pub act_min: i8,
    /// Upper output clamp.
    pub act_max: i8,
    /// Whether the layer has a bias tensor.
    pub has_bias: bool,
    /// Whether the weights are quantized per output channel.
    pub per_channel: bool,
    /// Smallest weight scale.
    pub weight_scale_min: f32,
    /// Largest weight scale.
    pub weight_scale_max: f32,
    /// Output quantization.
    pub output: QParamsSummary,
}

/// The JSON summary [`import_to_dir`] writes next to the Rust source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImportSummary {
    /// Rust identifier stem used in the generated source.
    pub name: String,
    /// Path of the imported `.tflite` file as given.
    pub source: String,
    /// SHA-256 of the imported file, hex.
    pub source_sha256: String,
    /// The model's description string.
    pub description: String,
    /// Input quantization.
    pub input: QParamsSummary,
    /// Output quantization.
    pub output: QParamsSummary,
    /// The TFLite graph takes f32 (leading `QUANTIZE`).
    pub float_input: bool,
    /// The TFLite graph returns f32 (trailing `DEQUANTIZE`).
    pub float_output: bool,
    /// Multiply-accumulates per inference.
    pub macs: usize,
    /// Bytes of int8 weights.
    pub weight_bytes: usize,
    /// Bytes of all constants in the generated source (weights, i32 biases, 8-byte requants).
    pub constant_bytes: usize,
    /// Bytes of the chain's scratch (the intermediate activations).
    pub scratch_bytes: usize,
    /// The layers, input to output.
    pub layers: Vec<LayerSummary>,
}

/// What `tinyvae import --tflite FILE --out DIR` does: imports `tflite_path`, writes
/// `DIR/model.rs` ([`to_rust_source`], names derived from the file stem, e.g. `ad01_int8` gives
/// `AD01_INT8` and `Ad01Int8`) and `DIR/model.json` ([`ImportSummary`]); `DIR` is created if
/// needed and each file is written to a temporary file in `DIR`, then renamed over the target.
/// Returns the imported model (for printing a summary or scoring).
///
/// # Errors
/// I/O errors and [`ImportError`]s, with the path as context.
pub fn import_to_dir(tflite_path: &Path, out_dir: &Path) -> anyhow::Result<ImportedModel> {
    let bytes =
        std::fs::read(tflite_path).with_context(|| format!("reading {}", tflite_path.display()))?;
    let model =
        import_tflite(&bytes).with_context(|| format!("importing {}", tflite_path.display()))?;
    let stem = tflite_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    let name = rust_source::identifier_stem(&stem);
    let mut summary = model.summary(&name);
    summary.source = tflite_path.display().to_string();
    summary.source_sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    crate::output::write_file(
        &out_dir.join("model.rs"),
        to_rust_source(&model, &name).as_bytes(),
    )?;
    let mut json = serde_json::to_vec_pretty(&summary)?;
    json.push(b'\n');
    crate::output::write_file(&out_dir.join("model.json"), &json)?;
    Ok(model)
}
