//! Seeded randomness of training: initialization, shuffling and the reparameterization noise.
//!
//! All draws come from `rand_xorshift::XorShiftRng` (seeded with `seed_from_u64`), so a seed
//! fixes every bit of a run.
//! - uniform(-a, a): `a * (2u - 1)` with `u = (next_u32 >> 8) * 2^-24` in [0, 1) (24 bits, exact
//!   in f32).
//! - standard normal: Box–Muller, `sqrt(-2 ln u1) * (cos, sin)(2 pi u2)` with `u1` in (0, 1] so
//!   the logarithm is finite; both outputs are used. Computed in f32 through `tinyvae::math`
//!   (`libm`), identical on every host. |eps| <= sqrt(-2 ln 2^-24) ≈ 5.77.
//! - shuffling: Fisher–Yates with the index `(next_u64 * (i + 1)) >> 64` (Lemire's multiply;
//!   the bias is below 2^-40 for the sizes used here).

use rand_core::Rng;
use rand_xorshift::XorShiftRng;

const TWO_POW_M24: f32 = 1.0 / 16_777_216.0;

/// uniform in [0, 1) with 24 random bits.
#[inline]
pub fn unit(rng: &mut XorShiftRng) -> f32 {
    (rng.next_u32() >> 8) as f32 * TWO_POW_M24
}

/// uniform in [-a, a).
#[inline]
pub fn uniform_sym(rng: &mut XorShiftRng, a: f32) -> f32 {
    a * (2.0 * unit(rng) - 1.0)
}

/// Fills `out` with standard normal draws.
pub fn fill_normal(rng: &mut XorShiftRng, out: &mut [f32]) {
    let mut pairs = out.chunks_exact_mut(2);
    for p in &mut pairs {
        let (a, b) = normal_pair(rng);
        p[0] = a;
        p[1] = b;
    }
    for v in pairs.into_remainder() {
        *v = normal_pair(rng).0;
    }
}

#[inline]
fn normal_pair(rng: &mut XorShiftRng) -> (f32, f32) {
    use tinyvae::math::{cos, ln, sin, sqrt};
    let u1 = ((rng.next_u32() >> 8) + 1) as f32 * TWO_POW_M24; // (0, 1]
    let u2 = unit(rng);
    let r = sqrt(-2.0 * ln(u1));
    let t = core::f32::consts::TAU * u2;
    (r * cos(t), r * sin(t))
}

/// Shuffles `v` in place (Fisher–Yates).
pub fn shuffle<T>(rng: &mut XorShiftRng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn normal_moments_within_5_standard_errors() {
        let mut rng = XorShiftRng::seed_from_u64(7);
        let n = 200_000;
        let mut v = vec![0.0f32; n];
        fill_normal(&mut rng, &mut v);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let se_mean = (1.0 / n as f64).sqrt();
        let se_var = (2.0 / n as f64).sqrt();
        assert!(
            mean.abs() < 5.0 * se_mean,
            "mean {mean}, expected 0 ± {}",
            5.0 * se_mean
        );
        assert!(
            (var - 1.0).abs() < 5.0 * se_var,
            "var {var}, expected 1 ± {}",
            5.0 * se_var
        );
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 5.8));
    }

    #[test]
    fn shuffle_is_a_permutation_and_seeded() {
        let mut a: Vec<u32> = (0..1000).collect();
        let mut b = a.clone();
        shuffle(&mut XorShiftRng::seed_from_u64(1), &mut a);
        shuffle(&mut XorShiftRng::seed_from_u64(1), &mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (0..1000).collect::<Vec<_>>());
    }
}
