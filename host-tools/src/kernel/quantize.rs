//! [`quantize_slice`]: the library's f32 -> int8 boundary (`tinyvae::quantize_slice`), bit for
//! bit, vectorized for the SIMD kernels (`x86.rs` states why the vector arithmetic is the
//! scalar one: IEEE division, an exact round-half-away-from-zero, the same saturation).
//! `tests/kernels_x86.rs` checks it against the library on random and edge values (every
//! rounding tie, NaN, infinities, values far out of range, subnormals).

use tinyvae::{Error, QParams};

use super::Int8Kernel;

/// `q[i] = tinyvae::quantize(x[i], qp)`, with `kernel`'s vector unit where it has one and the
/// zero point is in `-128..=127` (else, and for the last values, the library's own).
///
/// # Errors
/// [`Error::ShapeMismatch`] if the lengths differ (nothing is written then).
pub fn quantize_slice(
    kernel: Int8Kernel,
    x: &[f32],
    qp: QParams,
    q: &mut [i8],
) -> Result<(), Error> {
    if x.len() != q.len() {
        return Err(Error::ShapeMismatch {
            expected: x.len(),
            found: q.len(),
        });
    }
    let zp_ok = (-128..=127).contains(&qp.zero_point);
    let done = match kernel {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx512Vnni if zp_ok && kernel.supported() => super::x86::quantize16(x, qp, q),
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 if zp_ok && kernel.supported() => super::x86::quantize8(x, qp, q),
        _ => 0,
    };
    tinyvae::quantize_slice(&x[done..], qp, &mut q[done..])
}
