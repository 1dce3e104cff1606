//! Layers with shapes in types, and their composition.
//!
//! A [`Layer<IN, OUT>`] maps `[Self::In; IN]` to `[Self::Out; OUT]` into a caller-owned output
//! buffer. [`Chain<A, B, MID>`] runs `A: Layer<IN, MID>` then `B: Layer<MID, OUT>`; it is a
//! `Layer<IN, OUT>` only if `A`'s output width and element type equal `B`'s input, so a width
//! mismatch between consecutive layers is a compile error, not a runtime check:
//!
//! ```compile_fail
//! use tinyvae::{Activation, Chain, Dense, Layer};
//! static W1: [[f32; 4]; 3] = [[0.0; 4]; 3];
//! static B1: [f32; 3] = [0.0; 3];
//! static W2: [[f32; 5]; 2] = [[0.0; 5]; 2]; // expects 5 inputs, gets 3
//! static B2: [f32; 2] = [0.0; 2];
//! let net: Chain<_, _, 3> = Chain::new(
//!     Dense::new(&W1, &B1, Activation::Relu),
//!     Dense::new(&W2, &B2, Activation::Identity),
//! );
//! let mut s = <Chain<Dense<4, 3>, Dense<5, 2>, 3> as Layer<4, 2>>::SCRATCH;
//! net.forward(&[0.0; 4], &mut [0.0; 2], &mut s);
//! ```
//!
//! The intermediate activations of a chain live in its [`Layer::Scratch`], a plain `Copy` value
//! whose initial value [`Layer::SCRATCH`] is a constant, so scratch can be put in a `static`.
//! Its size is the sum of the chain's intermediate widths times the element size; the kernels
//! themselves use no stack arrays.

/// Element types that flow between layers (`f32` activations, `i8` quantized activations).
pub trait Scalar: Copy + 'static {
    /// The zero value used to initialise scratch buffers.
    const ZERO: Self;
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
}

impl Scalar for i8 {
    const ZERO: Self = 0;
}

/// A map from `IN` values of type [`Layer::In`] to `OUT` values of type [`Layer::Out`].
///
/// `forward` cannot fail: shapes are checked by the compiler and the arithmetic saturates or
/// propagates IEEE values, never panics.
pub trait Layer<const IN: usize, const OUT: usize> {
    /// Input element type.
    type In: Scalar;
    /// Output element type.
    type Out: Scalar;
    /// Intermediate buffers the layer needs (for a chain: the activations between its parts).
    type Scratch: Copy;
    /// Initial (zeroed) scratch, usable in a `static`.
    const SCRATCH: Self::Scratch;
    /// Multiply-accumulate operations per call.
    const MACS: usize;

    /// Computes `y = f(x)`.
    fn forward(&self, x: &[Self::In; IN], y: &mut [Self::Out; OUT], scratch: &mut Self::Scratch);
}

/// `B ∘ A`: runs `A` into a `MID`-wide buffer, then `B` from it.
#[derive(Clone, Copy, Debug)]
pub struct Chain<A, B, const MID: usize> {
    /// The first layer.
    pub first: A,
    /// The second layer.
    pub second: B,
}

impl<A, B, const MID: usize> Chain<A, B, MID> {
    /// Composes two layers; usable in `static` initialisers.
    pub const fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A, B, const IN: usize, const MID: usize, const OUT: usize> Layer<IN, OUT> for Chain<A, B, MID>
where
    A: Layer<IN, MID>,
    B: Layer<MID, OUT, In = A::Out>,
{
    type In = A::In;
    type Out = B::Out;
    type Scratch = ([A::Out; MID], A::Scratch, B::Scratch);
    const SCRATCH: Self::Scratch = ([<A::Out as Scalar>::ZERO; MID], A::SCRATCH, B::SCRATCH);
    const MACS: usize = A::MACS + B::MACS;

    #[inline]
    fn forward(&self, x: &[Self::In; IN], y: &mut [Self::Out; OUT], scratch: &mut Self::Scratch) {
        let (mid, sa, sb) = scratch;
        self.first.forward(x, mid, sa);
        self.second.forward(mid, y, sb);
    }
}
