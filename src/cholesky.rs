//! Cholesky factorization, triangular solves, and the full-covariance Gaussian built on them.
//!
//! A symmetric positive definite `A` factors uniquely as `A = L L^T` with `L` lower triangular
//! and `l_ii > 0` (Cholesky–Banachiewicz, row by row):
//!
//! ```text
//! l_ij = (a_ij - sum_{k<j} l_ik l_jk) / l_jj        for j < i
//! l_ii = sqrt(a_ii - sum_{k<i} l_ik^2)
//! ln det A = 2 sum_i ln l_ii
//! ```
//!
//! Only the lower triangle of `A` (`a_ij`, `j <= i`) enters the factor; the upper triangle is
//! checked against it (see [`SYMMETRY_RTOL`]). Accumulation is in f32 in a fixed order: each
//! `s = a_ij` then `s -= l_ik * l_jk` for `k = 0, 1, .., j-1` (separate multiply and subtract,
//! never a fused multiply-add), so results are the same bits on every target. Cost `D^3/6`
//! multiply-adds and `D` square roots; no scratch beyond the output.
//!
//! The solves are forward substitution for `L x = b`
//! (`x_i = (b_i - sum_{k<i} l_ik x_k) / l_ii`, `k` ascending) and, for `L^T x = b`, column-oriented
//! back substitution that reads `L` by rows (`x = b`; for `i = D-1 .. 0`: `x_i /= l_ii`, then
//! `x_k -= l_ik x_i` for `k < i`). Each costs `D^2/2` multiply-adds and no stack arrays: they
//! write only into the caller's `x`.
//!
//! [`FullGaussian`] keeps a mean and the Cholesky factor of the covariance `S = L L^T`:
//!
//! ```text
//! y = L^{-1} (x - m)           (forward substitution, no inverse is formed)
//! (x - m)^T S^{-1} (x - m) = |y|^2
//! ln N(x; m, S) = -1/2 [ D ln 2pi + ln det S + |y|^2 ]
//! ```
//!
//! Its methods need two `[f32; D]` of stack (`8 D` bytes), so `D = 384` (a 590 KB factor, host
//! only) works.
//!
//! Measured error (`cargo test --test gaussian -- --nocapture`, random `B B^T + 0.5 I` with
//! `B` entries uniform in -1..1, `D` = 1..=16, against f64): `max |L L^T - A|_ij / sqrt(a_ii a_jj)`
//! at most 2.4e-7 (the test enforces `2 (D + 1) u`, `u = 2^-24`), `ln det` within 3.7e-6 absolute
//! of an f64 LU factorization, solves within 1.7e-7 of the f64 solution relative to its norm, and
//! [`FullGaussian::log_density`] within 2.9e-7 relative (`D` up to 16).

use crate::math::{ln, sqrt, LN_2PI};
use crate::{check_finite, Error};

/// Relative tolerance of the symmetry check: `A` is accepted as symmetric when
/// `|a_ij - a_ji| <= SYMMETRY_RTOL * sqrt(|a_ii a_jj|)` for every `i != j` (the scale of a
/// covariance entry; for a positive definite matrix `|a_ij| < sqrt(a_ii a_jj)`). This admits the
/// rounding differences of covariances accumulated in f32 and refuses real asymmetry.
pub const SYMMETRY_RTOL: f32 = 1e-4;

/// `Err(NotSymmetric)` unless `a` is symmetric within [`SYMMETRY_RTOL`]; finite input assumed.
fn check_symmetric<const D: usize>(a: &[[f32; D]; D]) -> Result<(), Error> {
    for (i, row) in a.iter().enumerate() {
        let a_ii = row.get(i).copied().unwrap_or(0.0);
        for (j, (&a_ij, col_row)) in row.iter().zip(a.iter()).enumerate().take(i) {
            let a_ji = col_row.get(i).copied().unwrap_or(0.0);
            let a_jj = col_row.get(j).copied().unwrap_or(0.0);
            let scale = sqrt((a_ii * a_jj).abs());
            if (a_ij - a_ji).abs() > SYMMETRY_RTOL * scale {
                return Err(Error::NotSymmetric);
            }
        }
    }
    Ok(())
}

/// Factors the symmetric positive definite `a` as `a = l l^T`, `l` lower triangular.
///
/// Writes every entry of `l` (zeros above the diagonal). On error `l` holds a partial result.
/// See the module documentation in `src/cholesky.rs` for the accumulation order and error bounds.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite entry (`index` is row-major, `i * D + j`),
/// [`Error::NotSymmetric`] beyond [`SYMMETRY_RTOL`], [`Error::NotPositiveDefinite`] when a pivot
/// `a_ii - sum_{k<i} l_ik^2` is not positive (or overflows).
pub fn cholesky<const D: usize>(a: &[[f32; D]; D], l: &mut [[f32; D]; D]) -> Result<(), Error> {
    check_finite(a.as_flattened())?;
    check_symmetric(a)?;
    for (i, a_row) in a.iter().enumerate() {
        let (done, rest) = l.split_at_mut(i);
        let Some(l_row) = rest.first_mut() else {
            break;
        };
        *l_row = [0.0; D];
        // Off-diagonal entries j < i.
        for (j, (&a_ij, l_jrow)) in a_row.iter().zip(done.iter()).enumerate() {
            let (left, right) = l_row.split_at_mut(j);
            let mut s = a_ij;
            for (&x, &y) in left.iter().zip(l_jrow.iter()) {
                s -= x * y;
            }
            let l_jj = l_jrow.get(j).copied().unwrap_or(1.0);
            if let Some(t) = right.first_mut() {
                *t = s / l_jj;
            }
        }
        // Diagonal.
        let (left, right) = l_row.split_at_mut(i);
        let mut s = a_row.get(i).copied().unwrap_or(0.0);
        for &x in left.iter() {
            s -= x * x;
        }
        if !(s > 0.0 && s < f32::INFINITY) {
            return Err(Error::NotPositiveDefinite);
        }
        if let Some(t) = right.first_mut() {
            *t = sqrt(s);
        }
    }
    Ok(())
}

/// `ln det(L L^T) = 2 sum_i ln l_ii` for a Cholesky factor `l` (diagonal summed in index order).
///
/// For a factor from [`cholesky`] this is the log-determinant of the factored matrix.
pub fn cholesky_log_det<const D: usize>(l: &[[f32; D]; D]) -> f32 {
    let mut s = 0.0f32;
    for (i, row) in l.iter().enumerate() {
        s += ln(row.get(i).copied().unwrap_or(1.0));
    }
    2.0 * s
}

/// Solves `L x = b` by forward substitution (`L` lower triangular, only its lower triangle read).
///
/// Needs a nonzero diagonal (as every factor from [`cholesky`] has); otherwise the result holds
/// infinities or NaN. Cannot fail.
pub fn solve_lower<const D: usize>(l: &[[f32; D]; D], b: &[f32; D], x: &mut [f32; D]) {
    for (i, (row, &b_i)) in l.iter().zip(b.iter()).enumerate() {
        let (left, right) = x.split_at_mut(i);
        let mut s = b_i;
        for (&l_ik, &x_k) in row.iter().zip(left.iter()) {
            s -= l_ik * x_k;
        }
        if let Some(t) = right.first_mut() {
            *t = s / row.get(i).copied().unwrap_or(1.0);
        }
    }
}

/// Solves `L^T x = b` by back substitution (`L` lower triangular, only its lower triangle read).
///
/// Reads `L` by rows (column-oriented elimination on `x`), so `x` may be computed in place of a
/// copy of `b`. Needs a nonzero diagonal. Cannot fail.
pub fn solve_lower_transpose<const D: usize>(l: &[[f32; D]; D], b: &[f32; D], x: &mut [f32; D]) {
    *x = *b;
    for (i, row) in l.iter().enumerate().rev() {
        let (left, right) = x.split_at_mut(i);
        let Some(t) = right.first_mut() else {
            continue;
        };
        *t /= row.get(i).copied().unwrap_or(1.0);
        let x_i = *t;
        for (x_k, &l_ik) in left.iter_mut().zip(row.iter()) {
            *x_k -= l_ik * x_i;
        }
    }
}

/// A Gaussian `N(m, S)` with full covariance, stored as its mean and the Cholesky factor of `S`.
///
/// Construction validates `S` (finite, symmetric, positive definite), so the density methods
/// cannot fail. Not `Copy` on purpose: a `FullGaussian<384>` is 590 KB.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FullGaussian<const D: usize> {
    mean: [f32; D],
    chol: [[f32; D]; D],
    log_det: f32,
}

impl<const D: usize> FullGaussian<D> {
    /// The standard normal `N(0, I)` (identity factor).
    pub fn standard() -> Self {
        let mut chol = [[0.0; D]; D];
        for (i, row) in chol.iter_mut().enumerate() {
            if let Some(v) = row.get_mut(i) {
                *v = 1.0;
            }
        }
        Self {
            mean: [0.0; D],
            chol,
            log_det: 0.0,
        }
    }

    /// `N(mean, cov)`, factoring `cov` with [`cholesky`].
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`index` into `mean`, else row-major into `cov`), and the errors of
    /// [`cholesky`].
    pub fn from_covariance(mean: &[f32; D], cov: &[[f32; D]; D]) -> Result<Self, Error> {
        let mut g = Self::standard();
        g.set_covariance(mean, cov)?;
        Ok(g)
    }

    /// Refits `self` in place to `N(mean, cov)` (no second copy of the factor on the stack,
    /// useful for large `D`). On error `self` is reset to [`FullGaussian::standard`].
    ///
    /// # Errors
    /// As [`FullGaussian::from_covariance`].
    pub fn set_covariance(&mut self, mean: &[f32; D], cov: &[[f32; D]; D]) -> Result<(), Error> {
        let r = check_finite(mean).and_then(|()| cholesky(cov, &mut self.chol));
        match r {
            Ok(()) => {
                self.mean = *mean;
                self.log_det = cholesky_log_det(&self.chol);
                Ok(())
            }
            Err(e) => {
                *self = Self::standard();
                Err(e)
            }
        }
    }

    /// The mean `m`.
    pub fn mean(&self) -> &[f32; D] {
        &self.mean
    }

    /// The lower Cholesky factor `L` of the covariance, `S = L L^T`.
    pub fn cholesky_factor(&self) -> &[[f32; D]; D] {
        &self.chol
    }

    /// `ln det S`, from the factor's diagonal (cached at construction).
    pub fn log_det_cov(&self) -> f32 {
        self.log_det
    }

    /// Squared Mahalanobis distance `(x - m)^T S^{-1} (x - m) = |L^{-1} (x - m)|^2`.
    pub fn mahalanobis_sq(&self, x: &[f32; D]) -> f32 {
        let mut d = [0.0f32; D];
        for ((d, &x), &m) in d.iter_mut().zip(x.iter()).zip(self.mean.iter()) {
            *d = x - m;
        }
        let mut y = [0.0f32; D];
        solve_lower(&self.chol, &d, &mut y);
        let mut s = 0.0f32;
        for &v in y.iter() {
            s += v * v;
        }
        s
    }

    /// `ln N(x; m, S) = -1/2 [D ln 2pi + ln det S + (x - m)^T S^{-1} (x - m)]`.
    pub fn log_density(&self, x: &[f32; D]) -> f32 {
        -0.5 * (D as f32 * LN_2PI + self.log_det + self.mahalanobis_sq(x))
    }
}
