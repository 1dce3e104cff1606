//! Element-wise activation functions of the f32 layers.
//!
//! | variant    | `apply(x)`                                                   |
//! |------------|--------------------------------------------------------------|
//! | `Identity` | `x`                                                          |
//! | `Relu`     | `if x < 0 { 0 } else { x }`                                  |
//! | `Relu6`    | `if x < 0 { 0 } else if x > 6 { 6 } else { x }`              |
//! | `Tanh`     | `tanh(x)` ([`crate::math::tanh`])                            |
//! | `Sigmoid`  | `1 / (1 + e^-x)` for `x >= 0`, `e^x / (1 + e^x)` for `x < 0` |
//! | `Softplus` | `max(x, 0) + ln_1p(e^-abs(x))`                               |
//!
//! Conventions:
//! - `Relu`/`Relu6` are written as comparisons so that they equal TFLite's
//!   `std::min(std::max(x, 0.f), 6.f)` bit for bit, including `NaN -> NaN` and `-0.0 -> -0.0`
//!   (`f32::max` would map NaN to 0).
//! - `Sigmoid` uses the form whose exponential cannot overflow, so it keeps full relative
//!   accuracy for large negative `x` (`sigmoid(-100) = 3.7e-44`, not 0).
//! - `Softplus` is the overflow-free form of `ln(1 + e^x)`: exact to within a few ULP for all
//!   finite `x`, `softplus(x) = x` for `x > 17` to f32 precision and `e^x` for `x < -17`.
//! - Every transcendental goes through [`crate::math`], so host and chip agree bit for bit.
//!   With the default `libm` backend each function is within 2 ULP of the exact value:
//!   measured against f64 on 200 001 points each (`cargo test --test dense smooth -- --nocapture`),
//!   tanh 1.99 ULP on [-12, 12], sigmoid 1.90 ULP on [-100, 30], softplus 1.35 ULP on
//!   [-100, 100]. With `fast-math` the errors are micromath's (around 1e-3..1e-4 relative).
//!
//! There is no derivative here: the library does inference only.

use crate::math;

/// An element-wise activation function applied after a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(x, 0)` (NaN propagates).
    Relu,
    /// `min(max(x, 0), 6)` (NaN propagates).
    Relu6,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic function `1 / (1 + e^-x)`.
    Sigmoid,
    /// `ln(1 + e^x)`, computed without overflow.
    Softplus,
}

impl Activation {
    /// Applies the activation to one value (see the module doc for the exact formulas).
    ///
    /// ```
    /// use tinyvae::Activation;
    /// assert_eq!(Activation::Relu.apply(-2.0), 0.0);
    /// assert_eq!(Activation::Relu6.apply(7.5), 6.0);
    /// // 1e-7 with libm; micromath's exp (feature `fast-math`) is within 2.4e-3.
    /// assert!((Activation::Softplus.apply(0.0) - core::f32::consts::LN_2).abs() < 3e-3);
    /// assert!(Activation::Sigmoid.apply(-10.0) > 0.0);
    /// ```
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => relu(x),
            Activation::Relu6 => {
                let r = relu(x);
                if r > 6.0 {
                    6.0
                } else {
                    r
                }
            }
            Activation::Tanh => math::tanh(x),
            Activation::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + math::exp(-x))
                } else {
                    // Also reached by NaN: exp(NaN) = NaN, so the result is NaN.
                    let e = math::exp(x);
                    e / (1.0 + e)
                }
            }
            Activation::Softplus => relu(x) + math::ln_1p(math::exp(-abs(x))),
        }
    }

    /// Applies the activation in place to every element of `x`.
    #[inline]
    pub fn apply_slice(self, x: &mut [f32]) {
        if self != Activation::Identity {
            x.iter_mut().for_each(|v| *v = self.apply(*v));
        }
    }
}

/// `max(x, 0)` as TFLite writes it: NaN and -0.0 pass through.
#[inline]
fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// `|x|` without std (clears the sign bit).
#[inline]
fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}
