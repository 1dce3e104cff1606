//! The library's one error type.
//!
//! Every fallible operation of `tinyvae` returns [`Error`]: a small `Copy` enum with no payload
//! beyond indices, so it costs a register on a Cortex-M and can be logged with `defmt`.
//! Hot paths (the dense kernels) cannot fail; constructors, validation and the score entry points
//! (which check their input for non-finite values) can.

use core::fmt;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// An input value is NaN or infinite; `index` is its position in the input.
    NonFinite {
        /// Position of the first offending value.
        index: usize,
    },
    /// A matrix given as a covariance is not symmetric (beyond a relative tolerance).
    NotSymmetric,
    /// A matrix given as a covariance is not positive definite (Cholesky met a pivot <= 0).
    NotPositiveDefinite,
    /// A slice or buffer has the wrong length for the shape it is used with.
    ShapeMismatch {
        /// The length the shape requires.
        expected: usize,
        /// The length that was given.
        found: usize,
    },
    /// A parameter is outside its documented range (e.g. a zero or negative scale,
    /// a requantization shift outside `-31..=30`, a sample count of zero).
    InvalidParameter,
    /// Model data is malformed (inconsistent sizes, non-finite constants, bad header).
    InvalidModel,
    /// An empty set where at least one element is needed (e.g. no active expert).
    Empty,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NonFinite { index } => write!(f, "non-finite value at index {index}"),
            Error::NotSymmetric => f.write_str("matrix is not symmetric"),
            Error::NotPositiveDefinite => f.write_str("matrix is not positive definite"),
            Error::ShapeMismatch { expected, found } => {
                write!(
                    f,
                    "shape mismatch: expected length {expected}, found {found}"
                )
            }
            Error::InvalidParameter => f.write_str("parameter outside its valid range"),
            Error::InvalidModel => f.write_str("malformed model data"),
            Error::Empty => f.write_str("empty set where at least one element is needed"),
        }
    }
}

impl core::error::Error for Error {}

/// Returns `Err(Error::NonFinite { index })` for the first non-finite value of `x`.
///
/// # Errors
/// [`Error::NonFinite`] with the index of the first NaN or infinity.
pub fn check_finite(x: &[f32]) -> Result<(), Error> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { index }),
        None => Ok(()),
    }
}
