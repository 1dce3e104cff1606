//! Autoregressive decoder noise (`src/ar_noise.rs`): the quadratic form against the Gaussian
//! `N(m, (L^T diag(P) L)^-1)` built as an explicit f64 matrix, a Monte Carlo check that residuals
//! drawn from the AR process give `E[nu^2 P] = 1` per counted feature, order 0 against the
//! diagonal model, and the errors.

#![allow(clippy::needless_range_loop)]

mod common;
use common::SplitMix;
use tinyvae::{ar_quadratic, ChannelMask, DecoderNoise, Error, MAX_AR_ORDER};

/// `d^T L^T diag(P) L d` with `L` the explicit `X x X` matrix of the module doc.
fn reference(d: &[f64], prec: &[f64], coef: &[f64], p: usize, c: usize, used: u32) -> f64 {
    let x = d.len();
    let w = x / c;
    let mut l = vec![vec![0.0f64; x]; x];
    for t in 0..w {
        for ch in 0..c {
            let i = t * c + ch;
            l[i][i] = 1.0;
            if t >= p {
                for k in 1..=p {
                    l[i][(t - k) * c + ch] = -coef[ch * p + k - 1];
                }
            }
        }
    }
    let ld: Vec<f64> = (0..x)
        .map(|i| (0..x).map(|j| l[i][j] * d[j]).sum())
        .collect();
    (0..x)
        .filter(|&i| used & (1 << (i % c)) != 0)
        .map(|i| ld[i] * ld[i] * prec[i])
        .sum()
}

#[test]
fn quadratic_form_matches_the_explicit_gaussian() {
    let mut rng = SplitMix(7);
    for &(w, c) in &[(9usize, 1usize), (12, 3), (16, 6), (5, 2)] {
        for p in 0..=MAX_AR_ORDER {
            for used in [(1u32 << c) - 1, 0b101 & ((1 << c) - 1), 1] {
                let x: Vec<f32> = (0..w * c).map(|_| rng.normal() as f32).collect();
                let m: Vec<f32> = (0..w * c).map(|_| 0.5 * rng.normal() as f32).collect();
                let prec: Vec<f32> = (0..w * c).map(|_| 0.5 + rng.uniform() as f32).collect();
                let coef: Vec<f32> = (0..c * p).map(|_| 0.4 * rng.normal() as f32).collect();
                let got =
                    ar_quadratic(&x, &m, &prec, &coef, p, c, ChannelMask(used)).unwrap() as f64;
                let d: Vec<f64> = x.iter().zip(&m).map(|(&a, &b)| (a - b) as f64).collect();
                let pf: Vec<f64> = prec.iter().map(|&v| v as f64).collect();
                let cf: Vec<f64> = coef.iter().map(|&v| v as f64).collect();
                let want = reference(&d, &pf, &cf, p, c, used);
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "w {w} c {c} p {p} used {used:b}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn channels_use_their_own_coefficients() {
    // Swapping two channels' coefficients changes the value (the test above would catch a
    // channel-major/time-major mix-up only through it).
    let (w, c, p) = (10, 2, 2);
    let mut rng = SplitMix(3);
    let x: Vec<f32> = (0..w * c).map(|_| rng.normal() as f32).collect();
    let m = vec![0.0f32; w * c];
    let prec = vec![1.0f32; w * c];
    let coef = [0.9f32, -0.2, -0.5, 0.1];
    let swapped = [-0.5f32, 0.1, 0.9, -0.2];
    let all = ChannelMask(0b11);
    let a = ar_quadratic(&x, &m, &prec, &coef, p, c, all).unwrap();
    let b = ar_quadratic(&x, &m, &prec, &swapped, p, c, all).unwrap();
    assert!((a - b).abs() > 1e-3, "{a} {b}");
}

#[test]
fn residuals_of_the_process_are_white() {
    // Draw residuals from the AR process itself (d_t = sum a_k d_{t-k} + e_t / sqrt(P_t)):
    // every counted feature's nu^2 P is then chi-squared with one degree of freedom, so the
    // quadratic form averages the number of counted features.
    let (w, c, p) = (32usize, 3usize, 3usize);
    let coef = [0.6f32, 0.2, -0.1, 1.2, -0.5, 0.1, 0.0, 0.3, 0.3];
    let prec: Vec<f32> = (0..w * c).map(|i| 0.5 + (i % 7) as f32 * 0.2).collect();
    let mut rng = SplitMix(11);
    let n = 4000;
    let mut sum = 0.0f64;
    let mut d = vec![0.0f32; w * c];
    for _ in 0..n {
        for t in 0..w {
            for ch in 0..c {
                let mut v = rng.normal() as f32 / prec[t * c + ch].sqrt();
                if t >= p {
                    for k in 1..=p {
                        v += coef[ch * p + k - 1] * d[(t - k) * c + ch];
                    }
                }
                d[t * c + ch] = v;
            }
        }
        let zero = vec![0.0f32; w * c];
        sum += ar_quadratic(&d, &zero, &prec, &coef, p, c, ChannelMask(0b011)).unwrap() as f64;
    }
    let mean = sum / n as f64;
    let expected = (w * 2) as f64; // two counted channels
                                   // sd of the mean: sqrt(2 * 64 / 4000) = 0.18
    assert!((mean - expected).abs() < 0.8, "mean {mean} vs {expected}");
}

#[test]
fn order_zero_is_the_diagonal_model() {
    let mut rng = SplitMix(5);
    let (w, c) = (8, 3);
    let x: Vec<f32> = (0..w * c).map(|_| rng.normal() as f32).collect();
    let m: Vec<f32> = (0..w * c).map(|_| rng.normal() as f32).collect();
    let prec: Vec<f32> = (0..w * c).map(|_| 0.5 + rng.uniform() as f32).collect();
    let q = ar_quadratic(&x, &m, &prec, &[], 0, c, ChannelMask(0b111)).unwrap();
    let diag = DecoderNoise {
        inv_var: &prec,
        log_norm: 0.0,
    }
    .log_likelihood(&x, &m)
    .unwrap();
    assert!((-0.5 * q - diag).abs() <= 1e-5 * diag.abs(), "{q} {diag}");
}

#[test]
fn malformed_shapes_are_errors() {
    let v = vec![0.0f32; 12];
    let all = ChannelMask(0b111);
    assert!(matches!(
        ar_quadratic(&v, &v, &v, &[0.0; 5], 2, 3, all),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        ar_quadratic(&v, &v[..11], &v, &[0.0; 6], 2, 3, all),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        ar_quadratic(&v[..11], &v[..11], &v[..11], &[0.0; 6], 2, 3, all),
        Err(Error::ShapeMismatch { .. })
    ));
    assert_eq!(
        ar_quadratic(&v, &v, &v, &[0.0; 15], MAX_AR_ORDER + 1, 3, all),
        Err(Error::InvalidParameter)
    );
    assert_eq!(
        ar_quadratic(&v, &v, &v, &[], 0, 0, all),
        Err(Error::InvalidParameter)
    );
}
