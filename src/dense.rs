//! f32 fully connected layer: `y = act(W x + b)`.
//!
//! For each output `o`, in this exact order (the same for [`Dense`] and [`DenseView`], which
//! share one kernel, on the host and on the chip):
//! ```text
//! s = 0.0
//! for i in 0..IN: s = s + W[o][i] * x[i]     // index order, separate multiply and add
//! y[o] = act(s + b[o])                        // bias added last
//! ```
//! This is the order of TFLite's reference float `FullyConnected` (sum from 0, bias last). No
//! `mul_add` (fused multiply-add) is used: Cortex-M0/M3 have no FMA, so only the unfused form
//! gives the same bits everywhere.
//!
//! Error against exact arithmetic (standard summation bound, `u = 2^-24`):
//! `|s + b - (Σ W x + b)| <= (IN + 1) * u * (Σ |W[o][i] x[i]| + |b[o]|)` to first order, then the
//! activation adds its own error (see [`Activation`]). Measured on random 32 -> 8 layers:
//! at most `2.2 u (Σ |W x| + |b|)` (`cargo test --test dense dense_against -- --nocapture`).
//!
//! Weights are row-major, one row per output (`weights[o][i]`), as TFLite stores them.
//!
//! ```
//! use tinyvae::{Activation, Chain, Dense, Layer};
//! static W1: [[f32; 4]; 3] = [[0.5; 4], [-0.5; 4], [1.0, 0.0, 0.0, 0.0]];
//! static B1: [f32; 3] = [0.0, 1.0, -0.5];
//! static W2: [[f32; 3]; 2] = [[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]];
//! static B2: [f32; 2] = [0.0; 2];
//! static NET: Chain<Dense<4, 3>, Dense<3, 2>, 3> = Chain::new(
//!     Dense::new(&W1, &B1, Activation::Relu),
//!     Dense::new(&W2, &B2, Activation::Identity),
//! );
//! let mut scratch = <Chain<Dense<4, 3>, Dense<3, 2>, 3> as Layer<4, 2>>::SCRATCH;
//! let mut y = [0.0; 2];
//! NET.forward(&[1.0, 2.0, 3.0, 4.0], &mut y, &mut scratch);
//! // hidden = relu([5.0, -4.0, 0.5]) = [5.0, 0.0, 0.5]
//! assert_eq!(y, [5.5, 1.0]);
//! ```

use crate::{Activation, Error, Layer};

/// A fully connected f32 layer with `IN` inputs and `OUT` outputs; weights and bias stay in flash.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Dense<const IN: usize, const OUT: usize> {
    /// Row-major weights, `weights[o][i]`.
    pub weights: &'static [[f32; IN]; OUT],
    /// One bias per output.
    pub bias: &'static [f32; OUT],
    /// Applied to each output after the bias.
    pub activation: Activation,
}

impl<const IN: usize, const OUT: usize> Dense<IN, OUT> {
    /// A layer from static weights and bias; usable in `static` initialisers.
    pub const fn new(
        weights: &'static [[f32; IN]; OUT],
        bias: &'static [f32; OUT],
        activation: Activation,
    ) -> Self {
        Self {
            weights,
            bias,
            activation,
        }
    }

    /// The same layer as a runtime-shaped [`DenseView`] (same kernel, same results).
    pub fn view(&self) -> DenseView<'static> {
        DenseView {
            in_dim: IN,
            out_dim: OUT,
            weights: self.weights.as_flattened(),
            bias: self.bias,
            activation: self.activation,
        }
    }
}

impl<const IN: usize, const OUT: usize> Layer<IN, OUT> for Dense<IN, OUT> {
    type In = f32;
    type Out = f32;
    type Scratch = ();
    const SCRATCH: Self::Scratch = ();
    const MACS: usize = IN * OUT;

    #[inline]
    fn forward(&self, x: &[f32; IN], y: &mut [f32; OUT], _scratch: &mut ()) {
        dense_kernel(
            IN,
            self.weights.as_flattened(),
            self.bias,
            self.activation,
            x,
            y,
        );
    }
}

/// A fully connected f32 layer whose sizes are known only at run time (for the host tool).
///
/// Holds the same data as [`Dense`] as slices whose lengths were checked once by
/// [`DenseView::new`]; [`DenseView::forward`] runs the same kernel.
#[derive(Clone, Copy, Debug)]
pub struct DenseView<'a> {
    in_dim: usize,
    out_dim: usize,
    weights: &'a [f32],
    bias: &'a [f32],
    activation: Activation,
}

impl<'a> DenseView<'a> {
    /// A view over row-major `weights` (`out_dim` rows of `in_dim`) and `bias` (`out_dim`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `weights.len() != in_dim * out_dim` or
    /// `bias.len() != out_dim`; [`Error::InvalidModel`] if `in_dim * out_dim` overflows.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        weights: &'a [f32],
        bias: &'a [f32],
        activation: Activation,
    ) -> Result<Self, Error> {
        let n = in_dim.checked_mul(out_dim).ok_or(Error::InvalidModel)?;
        check_len(n, weights.len())?;
        check_len(out_dim, bias.len())?;
        Ok(Self {
            in_dim,
            out_dim,
            weights,
            bias,
            activation,
        })
    }

    /// Computes `y = act(W x + b)` exactly as [`Dense`] does.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x.len() != in_dim` or `y.len() != out_dim` (nothing is
    /// written then).
    pub fn forward(&self, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
        check_len(self.in_dim, x.len())?;
        check_len(self.out_dim, y.len())?;
        dense_kernel(self.in_dim, self.weights, self.bias, self.activation, x, y);
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
    pub fn weights(&self) -> &'a [f32] {
        self.weights
    }

    /// Biases, one per output.
    pub fn bias(&self) -> &'a [f32] {
        self.bias
    }

    /// The activation applied after the bias.
    pub fn activation(&self) -> Activation {
        self.activation
    }
}

fn check_len(expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { expected, found })
    }
}

/// The one f32 dense kernel. Callers guarantee `weights.len() == in_dim * y.len()`,
/// `bias.len() == y.len()`, `x.len() == in_dim`; it never panics even if they do not (outputs
/// without a full row are left untouched).
#[inline]
fn dense_kernel(
    in_dim: usize,
    weights: &[f32],
    bias: &[f32],
    activation: Activation,
    x: &[f32],
    y: &mut [f32],
) {
    if in_dim == 0 {
        // No rows to chunk: the output is act(0 + b).
        for (yo, &b) in y.iter_mut().zip(bias) {
            *yo = activation.apply(0.0 + b);
        }
        return;
    }
    for ((yo, row), &b) in y.iter_mut().zip(weights.chunks_exact(in_dim)).zip(bias) {
        let s = row.iter().zip(x).fold(0.0f32, |s, (&w, &xi)| s + w * xi);
        *yo = activation.apply(s + b);
    }
}
