//! int8 fully connected layer with TFLite's int8 arithmetic (reference `FullyConnected`, per-channel
//! variant, default double rounding; CMSIS-NN `arm_fully_connected_s8` computes the same bits unless
//! built with `CMSIS_NN_USE_SINGLE_ROUNDING`), plus the [`Quantize`] and [`Dequantize`] boundary
//! layers.
//!
//! # Conventions
//!
//! - Weights: symmetric int8 per output channel, zero point 0, scale `s_w[o]` (per-tensor weights
//!   are the same scale, hence the same [`Requant`], repeated). Row-major: `weights[o][i]`.
//! - Activations: asymmetric int8 with [`QParams`] `(s_in, zp_in)` in, `(s_out, zp_out)` out.
//! - `bias[o]` is an i32 with scale `s_in * s_w[o]` **and the input zero point folded in**
//!   ([`fold_bias`]): `bias[o] = round(b[o] / (s_in * s_w[o])) - zp_in * Σ_i w[o][i]`.
//! - `requant[o]` = [`quantize_multiplier`]`(s_in * s_w[o] / s_out)` (see
//!   [`per_channel_multiplier`], [`per_tensor_multiplier`] for the exact f64 expression TFLite uses).
//!
//! # Kernel (one arithmetic, shared by [`QDense`] and [`QDenseView`], on the host and the chip)
//!
//! ```text
//! acc    = bias[o] + Σ_i w[o][i] * x[i]                      // i32, wrapping
//! v      = requantize(acc, requant[o]) + zp_out              // saturating add
//! v      = min(max(v, act_min), act_max)                     // fused ReLU / ReLU6 / none
//! y[o]   = lut.map_or(v, |t| t[v + 128])                     // optional smooth activation
//! ```
//! `Σ w[o][i] (x[i] - zp_in) + round(b / (s_in s_w))`, TFLite's accumulator, equals
//! `acc` exactly: the folding is an identity over the integers, and wrapping i32 arithmetic is
//! exact modulo 2^32, so `acc` is exact whenever TFLite's accumulator fits in i32 (which TFLite
//! assumes too), whatever intermediate sums do. The output is therefore bit-identical to TFLite's
//! reference kernel. (`+ zp_out` saturates where C++ would overflow, for `|requantize| ≈ 2^31`:
//! unreachable with real scales.)
//!
//! `act_min`/`act_max` come from [`quantized_activation_range`] (TFLite's
//! `CalculateActivationRangeQuantized`: ReLU is `[quantize(0), 127]`, ReLU6
//! `[quantize(0), quantize(6)]`, none `[-128, 127]`).
//!
//! The LUT is indexed by `v + 128` (`(v as u8 ^ 0x80) as usize`) and built on the host by
//! [`build_lut`]: `lut[q + 128] = quantize(f(dequantize(q, in_q)), out_q)`. (TFLite's own LUT
//! kernels index by `v as u8` and multiply by `1 / s_out` instead of dividing; this table is this
//! library's own extension, not a TFLite op.)
//!
//! The implementations of this arithmetic ([`QKernel`]) and their measured costs are in
//! `qkernel.rs`; the per-core `asm!` lives in `arch`.
//!
//! # Error bound against the f32 layer
//!
//! Let `y[o] = Σ ŵ[o][i] x̂[i] + b[o]` be the real pre-activation on the dequantized weights
//! `ŵ = s_w w` and inputs `x̂ = s_in (x - zp_in)` with the unquantized bias `b`, and
//! `right = max(-shift[o], 0)`. With exact real arithmetic in the reference,
//! ```text
//! |dequantize(y_q[o]) - clamp(y[o])| <= s_out * (1/2 + 2^-(right+1) + 2^-31 |y[o]| / s_out)
//!                                       + s_in * s_w[o] / 2
//! ```
//! where `clamp` is to the dequantized activation range `[s_out (act_min - zp_out),
//! s_out (act_max - zp_out)]` (clamping is 1-Lipschitz, so it adds nothing). The terms: the final
//! rounding (1/2 step), the first rounding of the double-rounding requantization (`2^-(right+1)`
//! steps, 0 when `right = 0`), the Q31 multiplier (`2^-31` relative), and the rounding of the bias
//! to the accumulator grid. Against `min(max(y, 0), 6)` a fused ReLU6 adds up to `s_out / 2`, since
//! `act_max` sits within half a step of 6. Through a LUT for `f` with Lipschitz constant `L`
//! (1 for tanh, 1/4 for sigmoid) the error is `L * (bound above, with the LUT's input grid) +
//! s_lut / 2 + |f error|`. `tests/dense.rs` checks these bounds on random layers, adding the f32
//! rounding of its reference, and prints the measured maxima (`cargo test --test dense --
//! --nocapture`): 0.501 output steps without activation (24 -> 10, 20 000 outputs, up to 0.9998
//! of the bound: it is tight), 0.501 with ReLU, 0.507 with ReLU6 (vs the clamp to the quantized
//! range), 0.500 on 640 -> 128 layers. Through a tanh LUT with output step 1/128 after a
//! pre-activation grid calibrated on the layer's range (steps of 0.01..0.03), the error against
//! `tanh` of the f32 layer reached 2.4 output steps: the pre-activation rounding dominates, as
//! the bound says; each LUT entry alone is within half a step of `tanh` of its input.

use crate::arch;
use crate::qkernel::{multirow_forward, Kern, RowScratch, Widened};
use crate::quant::{dequantize_into, quantize_into};
use crate::QKernel;
use crate::{dequantize, quantize, Activation, Error, Layer, QParams, Requant};

/// An int8 fully connected layer with `IN` inputs and `OUT` outputs; constants stay in flash.
///
/// See the module doc for the arithmetic and conventions.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QDense<const IN: usize, const OUT: usize> {
    /// Symmetric per-channel int8 weights, `weights[o][i]`.
    pub weights: &'static [[i8; IN]; OUT],
    /// i32 biases with the input zero point folded in ([`fold_bias`]).
    pub bias: &'static [i32; OUT],
    /// Per-output requantization multipliers `s_in * s_w[o] / s_out`.
    pub requant: &'static [Requant; OUT],
    /// Output zero point, in `-128..=127`.
    pub output_zero_point: i32,
    /// Lower clamp of the output (fused activation); `act_min <= act_max`.
    pub act_min: i8,
    /// Upper clamp of the output (fused activation).
    pub act_max: i8,
    /// Optional 256-entry table applied last, indexed by `output + 128`.
    pub lut: Option<&'static [i8; 256]>,
}

impl<const IN: usize, const OUT: usize> QDense<IN, OUT> {
    /// A layer from its constants; usable in `static` initialisers. Not validated: see
    /// [`QDense::validate`] (the kernel never panics on invalid values, it just computes garbage).
    pub const fn new(
        weights: &'static [[i8; IN]; OUT],
        bias: &'static [i32; OUT],
        requant: &'static [Requant; OUT],
        output_zero_point: i32,
        act_min: i8,
        act_max: i8,
        lut: Option<&'static [i8; 256]>,
    ) -> Self {
        Self {
            weights,
            bias,
            requant,
            output_zero_point,
            act_min,
            act_max,
            lut,
        }
    }

    /// Checks the values [`QDenseView::new`] checks (shapes are already right by type).
    ///
    /// # Errors
    /// [`Error::InvalidModel`] if a [`Requant`] is out of range, the output zero point is not in
    /// `-128..=127`, or `act_min > act_max`.
    pub fn validate(&self) -> Result<(), Error> {
        validate_values(
            self.requant,
            self.output_zero_point,
            self.act_min,
            self.act_max,
        )
    }

    /// Computes the layer with the chosen implementation (all give the bits of
    /// [`Layer::forward`], which uses [`QKernel::FAST`]); for tests and benchmarks.
    /// [`QKernel::Dsp`] uses `2 * IN` bytes of stack.
    pub fn forward_with(&self, kernel: QKernel, x: &[i8; IN], y: &mut [i8; OUT]) {
        match kernel {
            QKernel::Dsp => {
                let mut xe = Widened::<IN>::ZERO;
                self.kern().run(kernel, x, &mut xe.0, &mut [], y);
            }
            QKernel::Multirow => {
                let mut xw = RowScratch::<IN>::ZERO;
                self.kern().run(kernel, x, &mut [], &mut xw.0, y);
            }
            _ => self.kern().run(kernel, x, &mut [], &mut [], y),
        }
    }

    fn kern(&self) -> Kern<'static> {
        Kern {
            in_dim: IN,
            weights: self.weights.as_flattened(),
            bias: self.bias,
            requant: self.requant,
            zp: self.output_zero_point,
            lo: i32::from(self.act_min),
            hi: i32::from(self.act_max),
            lut: self.lut,
        }
    }

    /// The same layer as a runtime-shaped [`QDenseView`] (same kernel, same bits). Values are not
    /// validated here; call [`QDense::validate`] for that.
    pub fn view(&self) -> QDenseView<'static> {
        QDenseView {
            in_dim: IN,
            out_dim: OUT,
            weights: self.weights.as_flattened(),
            bias: self.bias,
            requant: self.requant,
            output_zero_point: self.output_zero_point,
            act_min: self.act_min,
            act_max: self.act_max,
            lut: self.lut,
        }
    }
}

impl<const IN: usize, const OUT: usize> Layer<IN, OUT> for QDense<IN, OUT> {
    type In = i8;
    type Out = i8;
    type Scratch = ();
    const SCRATCH: Self::Scratch = ();
    const MACS: usize = IN * OUT;

    #[inline]
    fn forward(&self, x: &[i8; IN], y: &mut [i8; OUT], _scratch: &mut ()) {
        if arch::DSP {
            // The widened input: 2 * IN bytes of stack while the layer runs.
            let mut xe = Widened::<IN>::ZERO;
            self.kern().run(QKernel::Dsp, x, &mut xe.0, &mut [], y);
        } else if arch::MULTIROW {
            multirow_forward(&self.kern(), x, y);
        } else {
            self.kern().run(QKernel::Portable, x, &mut [], &mut [], y);
        }
    }
}

/// The most inputs [`QDenseView`] runs with [`QKernel::Dsp`] (its widened input lives in a
/// stack buffer of this many 16-bit values) and, where it widens its input (Armv6-M, the host),
/// with [`QKernel::Multirow`] (this many 32-bit words); wider views run [`QKernel::Portable`].
pub const VIEW_DSP_MAX_IN: usize = 256;

/// An int8 fully connected layer whose sizes are known only at run time (for the host tool).
///
/// Same data as [`QDense`], as slices whose lengths and values [`QDenseView::new`] checked;
/// [`QDenseView::forward`] runs the same kernel.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QDenseView<'a> {
    in_dim: usize,
    out_dim: usize,
    weights: &'a [i8],
    bias: &'a [i32],
    requant: &'a [Requant],
    output_zero_point: i32,
    act_min: i8,
    act_max: i8,
    lut: Option<&'a [i8; 256]>,
}

impl<'a> QDenseView<'a> {
    /// A view over row-major `weights` (`out_dim` rows of `in_dim`), `bias` and `requant`
    /// (`out_dim` each).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `weights.len() != in_dim * out_dim`, `bias.len() != out_dim` or
    /// `requant.len() != out_dim`; [`Error::InvalidModel`] if `in_dim * out_dim` overflows, a
    /// [`Requant`] fails [`Requant::validate`], the output zero point is not in `-128..=127`, or
    /// `act_min > act_max`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        weights: &'a [i8],
        bias: &'a [i32],
        requant: &'a [Requant],
        output_zero_point: i32,
        act_min: i8,
        act_max: i8,
        lut: Option<&'a [i8; 256]>,
    ) -> Result<Self, Error> {
        let n = in_dim.checked_mul(out_dim).ok_or(Error::InvalidModel)?;
        check_len(n, weights.len())?;
        check_len(out_dim, bias.len())?;
        check_len(out_dim, requant.len())?;
        validate_values(requant, output_zero_point, act_min, act_max)?;
        Ok(Self {
            in_dim,
            out_dim,
            weights,
            bias,
            requant,
            output_zero_point,
            act_min,
            act_max,
            lut,
        })
    }

    /// Computes the layer exactly as [`QDense`] does.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x.len() != in_dim` or `y.len() != out_dim` (nothing is
    /// written then).
    pub fn forward(&self, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
        self.forward_with(QKernel::FAST, x, y)
    }

    /// [`QDenseView::forward`] with the chosen implementation (same bits). [`QKernel::Dsp`]
    /// widens the input into a stack buffer of [`VIEW_DSP_MAX_IN`] 16-bit values, and
    /// [`QKernel::Multirow`] (where it widens) into one of as many 32-bit words; with more
    /// inputs they run [`QKernel::Portable`] instead.
    ///
    /// # Errors
    /// As [`QDenseView::forward`].
    pub fn forward_with(&self, kernel: QKernel, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
        check_len(self.in_dim, x.len())?;
        check_len(self.out_dim, y.len())?;
        let k = Kern {
            in_dim: self.in_dim,
            weights: self.weights,
            bias: self.bias,
            requant: self.requant,
            zp: self.output_zero_point,
            lo: i32::from(self.act_min),
            hi: i32::from(self.act_max),
            lut: self.lut,
        };
        match kernel {
            QKernel::Dsp if self.in_dim <= VIEW_DSP_MAX_IN => {
                let mut xe = Widened::<VIEW_DSP_MAX_IN>::ZERO;
                k.run(kernel, x, &mut xe.0, &mut [], y);
            }
            QKernel::Multirow if self.in_dim <= VIEW_DSP_MAX_IN => {
                let mut xw = RowScratch::<VIEW_DSP_MAX_IN>::ZERO;
                k.run(kernel, x, &mut [], &mut xw.0, y);
            }
            QKernel::Dsp | QKernel::Multirow => k.run(QKernel::Portable, x, &mut [], &mut [], y),
            _ => k.run(kernel, x, &mut [], &mut [], y),
        }
        Ok(())
    }

    /// Number of inputs.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Number of outputs.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Row-major weights (`out_dim` rows of `in_dim`).
    pub fn weights(&self) -> &'a [i8] {
        self.weights
    }

    /// Biases with the input zero point folded in.
    pub fn bias(&self) -> &'a [i32] {
        self.bias
    }

    /// Per-output requantization multipliers.
    pub fn requant(&self) -> &'a [Requant] {
        self.requant
    }

    /// Output zero point.
    pub fn output_zero_point(&self) -> i32 {
        self.output_zero_point
    }

    /// Output clamp `(act_min, act_max)`.
    pub fn act_range(&self) -> (i8, i8) {
        (self.act_min, self.act_max)
    }

    /// The output table, if any.
    pub fn lut(&self) -> Option<&'a [i8; 256]> {
        self.lut
    }
}

fn check_len(expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { expected, found })
    }
}

fn validate_values(
    requant: &[Requant],
    output_zero_point: i32,
    act_min: i8,
    act_max: i8,
) -> Result<(), Error> {
    let ok = requant.iter().all(|rq| rq.validate().is_ok())
        && (-128..=127).contains(&output_zero_point)
        && act_min <= act_max;
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidModel)
    }
}

/// Folds the input zero point into a quantized bias: `bias_q - input_zero_point * Σ weights_row`
/// (wrapping i32 arithmetic, exact modulo 2^32; see the module doc for why that suffices).
///
/// `bias_q = round(b / (s_in * s_w[o]))` is the bias on the accumulator grid as TFLite stores it.
///
/// ```
/// use tinyvae::fold_bias;
/// assert_eq!(fold_bias(100, &[1, -2, 3], -5), 100 + 5 * 2);
/// ```
pub fn fold_bias(bias_q: i32, weights_row: &[i8], input_zero_point: i32) -> i32 {
    let sum = weights_row
        .iter()
        .fold(0i32, |s, &w| s.wrapping_add(i32::from(w)));
    bias_q.wrapping_sub(input_zero_point.wrapping_mul(sum))
}

/// Fills `out` with `out[q + 128] = quantize(f(dequantize(q, in_q)), out_q)` for `q in -128..=127`:
/// the table [`QDense::lut`] applies to the layer's output (whose parameters are `in_q`).
///
/// Each entry is within half an output step of `f` on the input grid (plus `f`'s own error),
/// unless it saturates.
///
/// ```
/// use tinyvae::{build_lut, math, QParams};
/// let (in_q, out_q) = (QParams::new(0.05, 0), QParams::new(1.0 / 128.0, 0));
/// let mut lut = [0i8; 256];
/// build_lut(math::tanh, in_q, out_q, &mut lut);
/// assert_eq!(lut[128], 0); // tanh(0) = 0
/// assert_eq!(lut[0], -128); // tanh(-6.4) * 128 = -127.9993 rounds to -128
/// assert_eq!(lut[255], 127); // tanh(6.35) * 128 = 127.9992 rounds to 128, saturates
/// ```
pub fn build_lut(f: impl Fn(f32) -> f32, in_q: QParams, out_q: QParams, out: &mut [i8; 256]) {
    for (k, o) in (0u8..=255).zip(out.iter_mut()) {
        let q = (k ^ 0x80) as i8;
        *o = quantize(f(dequantize(q, in_q)), out_q);
    }
}

/// TFLite's `CalculateActivationRangeQuantized` for int8: the `(act_min, act_max)` clamp of a
/// fused activation with output parameters `out_q`: `Identity` `(-128, 127)`, `Relu`
/// `(quantize(0), 127)`, `Relu6` `(quantize(0), quantize(6))`.
///
/// # Errors
/// [`Error::InvalidParameter`] for activations that cannot be fused as a clamp (`Tanh`,
/// `Sigmoid`, `Softplus`: use a LUT).
pub fn quantized_activation_range(
    activation: Activation,
    out_q: QParams,
) -> Result<(i8, i8), Error> {
    match activation {
        Activation::Identity => Ok((-128, 127)),
        Activation::Relu => Ok((quantize(0.0, out_q), 127)),
        Activation::Relu6 => Ok((quantize(0.0, out_q), quantize(6.0, out_q))),
        _ => Err(Error::InvalidParameter),
    }
}

/// The f32 -> int8 boundary layer: `y[i] = quantize(x[i], params)`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Quantize<const N: usize> {
    /// Quantization parameters of the output.
    pub params: QParams,
}

impl<const N: usize> Quantize<N> {
    /// A quantizing layer; usable in `static` initialisers.
    pub const fn new(params: QParams) -> Self {
        Self { params }
    }
}

impl<const N: usize> Layer<N, N> for Quantize<N> {
    type In = f32;
    type Out = i8;
    type Scratch = ();
    const SCRATCH: Self::Scratch = ();
    const MACS: usize = 0;

    #[inline]
    fn forward(&self, x: &[f32; N], y: &mut [i8; N], _scratch: &mut ()) {
        quantize_into(x, self.params, y);
    }
}

/// The int8 -> f32 boundary layer: `y[i] = dequantize(x[i], params)`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Dequantize<const N: usize> {
    /// Quantization parameters of the input.
    pub params: QParams,
}

impl<const N: usize> Dequantize<N> {
    /// A dequantizing layer; usable in `static` initialisers.
    pub const fn new(params: QParams) -> Self {
        Self { params }
    }
}

impl<const N: usize> Layer<N, N> for Dequantize<N> {
    type In = i8;
    type Out = f32;
    type Scratch = ();
    const SCRATCH: Self::Scratch = ();
    const MACS: usize = 0;

    #[inline]
    fn forward(&self, x: &[i8; N], y: &mut [f32; N], _scratch: &mut ()) {
        dequantize_into(x, self.params, y);
    }
}
