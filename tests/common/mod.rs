//! Helpers shared by the tests: uniform draws, random SPD matrices and a dense f64 solver (the
//! f64-reference tests `gaussian.rs`, `kl.rs`, `poe_moe.rs`), and the splitmix64 test data and
//! random layers of the model tests.
//!
//! Each test file is its own crate and uses only some of these, hence `allow(dead_code)`.
#![allow(dead_code, clippy::needless_range_loop)]

use tinyvae::uniform_open01;

/// The tests' generator (what `tinyvae::default_rng` returns).
pub type Rng = rand_xorshift::XorShiftRng;

/// ln(2π) in f64.
pub const LN_2PI_F64: f64 = 1.837_877_066_409_345_5;
/// Unit roundoff of f32.
pub const U: f64 = 5.960_464_477_539_063e-8;

/// A uniform draw in `(lo, hi)`.
pub fn unif(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * uniform_open01(rng)
}

/// `n` uniform draws in `(lo, hi)`.
pub fn vec_unif(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| unif(rng, lo, hi)).collect()
}

/// A raw 32-bit draw.
pub fn rng_u32(rng: &mut Rng) -> u32 {
    use rand_core::Rng as _;
    rng.next_u32()
}

/// A random SPD matrix `B B^T + 0.5 I`, formed in f64 and rounded (exactly symmetric).
pub fn random_spd<const D: usize>(rng: &mut Rng) -> [[f32; D]; D] {
    let b: Vec<Vec<f64>> = (0..D)
        .map(|_| (0..D).map(|_| f64::from(unif(rng, -1.0, 1.0))).collect())
        .collect();
    let mut a = [[0.0f32; D]; D];
    for i in 0..D {
        for j in 0..D {
            let mut s: f64 = (0..D).map(|k| b[i][k] * b[j][k]).sum();
            if i == j {
                s += 0.5;
            }
            a[i][j] = s as f32;
        }
    }
    a
}

/// The matrix in f64, row by row.
pub fn to_f64<const D: usize>(a: &[[f32; D]; D]) -> Vec<Vec<f64>> {
    a.iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

/// Solves `A x = b` by Gaussian elimination with partial pivoting in f64; returns
/// `(x, ln |det A|)`.
pub fn solve_f64(a: &[Vec<f64>], b: &[f64]) -> (Vec<f64>, f64) {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(r, &v)| {
            let mut r = r.clone();
            r.push(v);
            r
        })
        .collect();
    let mut ld = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| m[i][c].abs().partial_cmp(&m[j][c].abs()).unwrap())
            .unwrap();
        m.swap(c, p);
        ld += m[c][c].abs().ln();
        for r in c + 1..n {
            let f = m[r][c] / m[c][c];
            for k in c..=n {
                m[r][k] -= f * m[c][k];
            }
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| m[i][k] * x[k]).sum();
        x[i] = (m[i][n] - s) / m[i][i];
    }
    (x, ld)
}

/// ln |det A| (by [`solve_f64`]'s elimination).
pub fn log_det_lu(a: &[Vec<f64>]) -> f64 {
    solve_f64(a, &vec![0.0; a.len()]).1
}

/// splitmix64 with a Box–Muller normal in f64: deterministic test data, independent of the
/// library's generator.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64-bit draw.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A value for the life of the test (layers borrow `'static` weights).
pub fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// A dense layer with weights `scale N(0, 1) / sqrt(I)` then biases `bias + 0.1 N(0, 1)`,
/// drawn in that order.
pub fn normal_dense<const I: usize, const O: usize>(
    rng: &mut SplitMix,
    scale: f64,
    bias: f32,
    act: tinyvae::Activation,
) -> tinyvae::Dense<I, O> {
    let mut w = [[0.0f32; I]; O];
    for row in w.iter_mut() {
        for v in row.iter_mut() {
            *v = (scale * rng.normal() / (I as f64).sqrt()) as f32;
        }
    }
    let mut b = [0.0f32; O];
    for v in b.iter_mut() {
        *v = bias + (0.1 * rng.normal()) as f32;
    }
    tinyvae::Dense::new(leak(w), leak(b), act)
}
