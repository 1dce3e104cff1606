//! The math backend: every transcendental function the library uses goes through here.
//!
//! Default: the `libm` crate (a port of musl's libm, correctly rounded or within 1 ULP), the same
//! code on the host and on every Cortex-M core, so host and chip get bit-identical results.
//! Never call `f32::exp`/`ln`/`tanh` from std in code whose numbers must match the chip: std
//! calls the system libm, which differs from `libm` by 1-2 ULP on a few percent of inputs.
//!
//! With the `fast-math` feature, `exp`, `sin` and `cos` come from `micromath` (and `tanh` is built
//! from its `exp`); `ln` and `sqrt` always come from `libm`, because micromath's are too coarse
//! for log-densities (measured: `ln` off by up to 0.12 absolute, `sqrt` by up to 6% relative,
//! which makes Box–Muller normals have variance 1.12). micromath's `exp` is within 2.4e-3 relative
//! and several times faster on cores without an FPU. Host and chip still agree bit for bit when both enable the feature, since micromath
//! is plain f32 arithmetic.

/// e^x.
#[inline]
pub fn exp(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        micromath::F32Ext::exp(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::expf(x)
    }
}

/// Natural logarithm.
#[inline]
pub fn ln(x: f32) -> f32 {
    libm::logf(x)
}

/// ln(1 + x), accurate for small x (always `libm`: micromath has no log1p).
#[inline]
pub fn ln_1p(x: f32) -> f32 {
    libm::log1pf(x)
}

/// Square root.
#[inline]
pub fn sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}

/// Hyperbolic tangent.
#[inline]
pub fn tanh(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        // micromath has no tanh: 1 - 2 / (e^{2x} + 1), saturated beyond |x| = 9 where
        // tanh rounds to ±1 in f32.
        if x > 9.0 {
            1.0
        } else if x < -9.0 {
            -1.0
        } else {
            1.0 - 2.0 / (micromath::F32Ext::exp(2.0 * x) + 1.0)
        }
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::tanhf(x)
    }
}

/// Cosine.
#[inline]
pub fn cos(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        micromath::F32Ext::cos(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::cosf(x)
    }
}

/// Sine.
#[inline]
pub fn sin(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        micromath::F32Ext::sin(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::sinf(x)
    }
}

/// ln(2 pi).
pub const LN_2PI: f32 = 1.837_877_1;

/// Numerically stable `ln(sum_i exp(x_i))`; `-inf` for an empty slice.
///
/// Computed as `m + ln(sum exp(x_i - m))` with `m = max x_i`, in index order.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return m;
    }
    let s: f32 = x.iter().map(|&v| exp(v - m)).sum();
    m + ln(s)
}

/// Streaming log-sum-exp: push values one at a time, in fixed memory.
///
/// Keeps `(m, s)` with `ln(sum) = m + ln(s)`; when a larger value arrives, `s` is rescaled by
/// `exp(m_old - m_new)`. Gives the same result as [`log_sum_exp`] up to rounding, without a buffer.
#[derive(Clone, Copy, Debug)]
pub struct LogSumExp {
    max: f32,
    sum: f32,
}

impl Default for LogSumExp {
    fn default() -> Self {
        Self::new()
    }
}

impl LogSumExp {
    /// An empty accumulator (its value is `-inf`).
    pub const fn new() -> Self {
        Self {
            max: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }

    /// Adds `exp(v)` to the sum.
    pub fn push(&mut self, v: f32) {
        if v <= self.max {
            self.sum += exp(v - self.max);
        } else {
            self.sum = if self.max.is_finite() {
                self.sum * exp(self.max - v) + 1.0
            } else {
                1.0
            };
            self.max = v;
        }
    }

    /// `ln(sum of exp(v))` over the values pushed so far.
    pub fn value(&self) -> f32 {
        if self.max.is_finite() {
            self.max + ln(self.sum)
        } else {
            self.max
        }
    }
}
