//! The scalar type of the training code: `f32` for training, `f64` for the gradient check.
//!
//! The forward and backward passes in [`super::model`] are generic over [`Real`], so the
//! finite-difference check in `tests/gradcheck.rs` runs the very code that trains, only in f64.
//!
//! Transcendentals: `f32` goes through `tinyvae::math` (the `libm` crate: the same bits on every
//! host, unlike the system libm behind `f32::exp`), `f64` through std (used only by the check).
//! `sqrt` is correctly rounded by IEEE 754 everywhere, so std's is used for both.
//!
//! Matrix products go through [`gemm`], a bounds-checked wrapper around `matrixmultiply::sgemm`
//! / `dgemm` (single thread; the crate picks its AVX/FMA kernels at run time, deterministically
//! for a given machine).

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point scalar the model can be computed in (`f32` or `f64`).
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Send
    + Sync
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts (rounding to nearest) from f64.
    fn from_f64(v: f64) -> Self;
    /// Converts exactly to f64.
    fn to_f64(self) -> f64;
    /// Converts from f32 (exact for both implementors).
    fn from_f32(v: f32) -> Self;
    /// Converts (rounding to nearest) to f32.
    fn to_f32(self) -> f32;
    /// e^x.
    fn exp(self) -> Self;
    /// Square root (correctly rounded).
    fn sqrt(self) -> Self;
    /// `true` unless NaN or infinite.
    fn is_finite(self) -> bool;
    /// C ← α A B + β C through `matrixmultiply`.
    ///
    /// # Safety
    /// The pointers with their strides must address valid, non-aliasing (for C) memory for the
    /// given dimensions. Use the checked [`gemm`] instead.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn exp(self) -> Self {
        tinyvae::math::exp(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract, see the trait method.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract, see the trait method.
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

/// A strided view of a matrix for [`gemm`]: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    /// The backing slice.
    pub data: &'a [T],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// A row-major `rows x cols` matrix view (stride `cols`, 1).
#[inline]
pub fn rm<T>(data: &[T], cols: usize) -> Mat<'_, T> {
    Mat {
        data,
        rs: cols,
        cs: 1,
    }
}

/// The transpose of a row-major `rows x cols` matrix (a `cols x rows` view).
#[inline]
pub fn rm_t<T>(data: &[T], cols: usize) -> Mat<'_, T> {
    Mat {
        data,
        rs: 1,
        cs: cols,
    }
}

/// Largest linear index a `rows x cols` strided view touches, plus one.
#[inline]
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs + 1
}

/// C (m x n, row-major with row stride `ldc`) ← α A (m x k) B (k x n) + β C.
///
/// With β = 0, C is not read (it may hold anything, even NaN). Panics if a view is too short
/// for its dimensions (a programming error, never a data error: shapes are validated before).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= ldc, "gemm: n {n} > ldc {ldc}");
    assert!(extent(m, n, ldc, 1) <= c.len(), "gemm: C too short");
    if k == 0 {
        // C ← β C (matrixmultiply handles it too, but keep the contract explicit).
        for row in c.chunks_mut(ldc).take(m) {
            for v in row.iter_mut().take(n) {
                *v = if beta == T::ZERO { T::ZERO } else { *v * beta };
            }
        }
        return;
    }
    assert!(
        extent(m, k, a.rs, a.cs) <= a.data.len(),
        "gemm: A too short"
    );
    assert!(
        extent(k, n, b.rs, b.cs) <= b.data.len(),
        "gemm: B too short"
    );
    // SAFETY: the asserts above show that every element the product addresses lies inside the
    // slices; C is a unique borrow with distinct (ldc >= n, stride 1) element addresses, and the
    // shared borrows A, B cannot alias it.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_naive_with_transposes() {
        // A 3x2, B 2x4, with A given transposed.
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // row-major 3x2
        let at = [1.0f64, 3.0, 5.0, 2.0, 4.0, 6.0]; // row-major 2x3 = A^T
        let b = [1.0f64, -1.0, 0.5, 2.0, 0.0, 1.0, -2.0, 3.0]; // 2x4
        let mut want = [0.0f64; 12];
        for i in 0..3 {
            for j in 0..4 {
                want[i * 4 + j] = (0..2).map(|p| a[i * 2 + p] * b[p * 4 + j]).sum::<f64>() + 1.0;
            }
        }
        let mut c1 = [1.0f64; 12];
        gemm(3, 2, 4, 1.0, rm(&a, 2), rm(&b, 4), 1.0, &mut c1, 4);
        let mut c2 = [1.0f64; 12];
        gemm(3, 2, 4, 1.0, rm_t(&at, 3), rm(&b, 4), 1.0, &mut c2, 4);
        assert_eq!(c1, want, "plain");
        assert_eq!(c2, want, "A transposed");
        let mut c3 = [f64::NAN; 12];
        gemm(3, 2, 4, 1.0, rm(&a, 2), rm(&b, 4), 0.0, &mut c3, 4);
        for (x, w) in c3.iter().zip(want) {
            assert_eq!(*x, w - 1.0, "beta = 0 must ignore NaN in C");
        }
    }
}
