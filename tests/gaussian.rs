//! Diagonal Gaussian log-densities, Cholesky factorization and the full-covariance Gaussian,
//! against f64 references. Figures: `cargo test --test gaussian -- --nocapture`.

#![allow(clippy::needless_range_loop)]

use tinyvae::{
    cholesky, cholesky_log_det, default_rng, log_normal_diag, log_std_normal, solve_lower,
    solve_lower_transpose, DiagGaussian, Error, FullGaussian, SYMMETRY_RTOL,
};

mod common;

use common::{
    log_det_lu, random_spd, rng_u32, solve_f64, to_f64, unif, vec_unif, Rng, LN_2PI_F64, U,
};

/// The bracketed terms of the diagonal log-density in f64.
fn terms_f64(x: &[f32], m: &[f32], lv: &[f32]) -> Vec<f64> {
    x.iter()
        .zip(m)
        .zip(lv)
        .map(|((&x, &m), &lv)| {
            let d = f64::from(x) - f64::from(m);
            LN_2PI_F64 + f64::from(lv) + d * d * (-f64::from(lv)).exp()
        })
        .collect()
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn log_normal_diag_matches_f64() {
    let mut rng = default_rng(11);
    let (mut worst_rel, mut worst_abs_scaled, mut sum_rel) = (0.0f64, 0.0f64, 0.0f64);
    let n = 20_000;
    for _ in 0..n {
        let d = 1 + (rng_u32(&mut rng) % 64) as usize;
        let x = vec_unif(&mut rng, d, -10.0, 10.0);
        let m = vec_unif(&mut rng, d, -10.0, 10.0);
        let lv = vec_unif(&mut rng, d, -8.0, 8.0);
        let got = f64::from(log_normal_diag(&x, &m, &lv).unwrap());
        let t = terms_f64(&x, &m, &lv);
        let want = -0.5 * t.iter().sum::<f64>();
        let scale = 0.5 * t.iter().map(|v| v.abs()).sum::<f64>();
        let err = (got - want).abs();
        // Rounding bound: summation of D terms plus a few ulp per term, relative to sum |t_i|.
        assert!(
            err <= 2.0 * (d as f64 + 4.0) * U * scale,
            "x={x:?} m={m:?} lv={lv:?}: actual {got}, expected {want}, err {err:e}"
        );
        let rel = err / want.abs().max(1e-30);
        worst_rel = worst_rel.max(rel);
        sum_rel += rel;
        worst_abs_scaled = worst_abs_scaled.max(err / scale / U);
    }
    println!(
        "log_normal_diag: max relative error {worst_rel:.2e}, mean {:.2e}, max error / (u sum|t|) = {worst_abs_scaled:.2}",
        sum_rel / f64::from(n)
    );
}

#[test]
fn log_std_normal_matches_f64_and_diag_form() {
    let mut rng = default_rng(12);
    let mut worst = 0.0f64;
    for _ in 0..20_000 {
        let d = 1 + (rng_u32(&mut rng) % 64) as usize;
        let x = vec_unif(&mut rng, d, -10.0, 10.0);
        let got = f64::from(log_std_normal(&x));
        let want = -0.5
            * x.iter()
                .map(|&v| LN_2PI_F64 + f64::from(v) * f64::from(v))
                .sum::<f64>();
        let rel = (got - want).abs() / want.abs();
        assert!(
            rel <= (d as f64 + 4.0) * U,
            "x={x:?}: actual {got}, expected {want}"
        );
        worst = worst.max(rel);
        // log_normal_diag with m = 0, lv = 0 is the same computation, bit for bit.
        let zeros = vec![0.0f32; d];
        let diag = log_normal_diag(&x, &zeros, &zeros).unwrap();
        assert_eq!(
            diag.to_bits(),
            log_std_normal(&x).to_bits(),
            "x={x:?}: diag form {diag} vs std form {}",
            log_std_normal(&x)
        );
    }
    println!("log_std_normal: max relative error {worst:.2e}");
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn log_normal_closed_values() {
    // ln N(0; 0, 1) = -ln(2 pi)/2.
    let v = log_std_normal(&[0.0]);
    assert!((f64::from(v) + 0.5 * LN_2PI_F64).abs() < 1e-7, "actual {v}");
    // ln N(3; 1, e^2) = -1/2 (ln 2pi + 2 + 4 e^-2).
    let v = log_normal_diag(&[3.0], &[1.0], &[2.0]).unwrap();
    let want = -0.5 * (LN_2PI_F64 + 2.0 + 4.0 * (-2.0f64).exp());
    assert!(
        (f64::from(v) - want).abs() < 1e-6,
        "actual {v}, expected {want}"
    );
    // Empty input: log of the empty product, 0.
    assert_eq!(log_normal_diag(&[], &[], &[]).unwrap(), 0.0);
    assert_eq!(log_std_normal(&[]), 0.0);
    // Extreme log-variances stay finite thanks to exp(-lv/2).
    // (exp(-lv) = e^120 would overflow f32; exp(-lv/2) does not.)
    let v = log_normal_diag(&[1e-20], &[0.0], &[-120.0]).unwrap();
    let want = -0.5 * (LN_2PI_F64 - 120.0 + f64::from(1e-20f32).powi(2) * 120.0f64.exp());
    assert!(
        ((f64::from(v) - want) / want).abs() < 1e-5,
        "actual {v}, expected {want}"
    );
}

#[test]
fn log_normal_diag_shape_errors() {
    assert_eq!(
        log_normal_diag(&[0.0; 3], &[0.0; 2], &[0.0; 3]),
        Err(Error::ShapeMismatch {
            expected: 3,
            found: 2
        })
    );
    assert_eq!(
        log_normal_diag(&[0.0; 3], &[0.0; 3], &[0.0; 4]),
        Err(Error::ShapeMismatch {
            expected: 3,
            found: 4
        })
    );
}

#[test]
fn diag_gaussian_struct() {
    let mut rng = default_rng(13);
    for _ in 0..1000 {
        let m: [f32; 5] = core::array::from_fn(|_| unif(&mut rng, -3.0, 3.0));
        let lv: [f32; 5] = core::array::from_fn(|_| unif(&mut rng, -3.0, 3.0));
        let x: [f32; 5] = core::array::from_fn(|_| unif(&mut rng, -3.0, 3.0));
        let g = DiagGaussian::new(m, lv);
        let a = g.log_density(&x);
        let b = log_normal_diag(&x, &m, &lv).unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "x={x:?} g={g:?}: {a} vs {b}");
        let s = DiagGaussian::<5>::standard();
        assert_eq!(s.log_density(&x), log_std_normal(&x), "x={x:?}");
    }
    static PRIOR: DiagGaussian<4> = DiagGaussian::standard();
    assert_eq!(PRIOR, DiagGaussian::new([0.0; 4], [0.0; 4]));
    assert_eq!(PRIOR, DiagGaussian::default());
}

// ---------------------------------------------------------------- Cholesky

#[derive(Default)]
struct CholStats {
    recon: f64,
    logdet: f64,
    solve: f64,
}

fn check_cholesky<const D: usize>(rng: &mut Rng, st: &mut CholStats) {
    for _ in 0..40 {
        let a = random_spd::<D>(rng);
        let mut l = [[f32::NAN; D]; D];
        cholesky(&a, &mut l).unwrap();
        for i in 0..D {
            assert!(l[i][i] > 0.0, "D={D} diag {i} = {}", l[i][i]);
            for j in i + 1..D {
                assert_eq!(l[i][j], 0.0, "D={D} upper ({i},{j}) not zero");
            }
        }
        // L L^T reconstructs A, within the backward-error bound of Cholesky, per entry scaled
        // by sqrt(a_ii a_jj).
        for i in 0..D {
            for j in 0..D {
                let s: f64 = (0..D)
                    .map(|k| f64::from(l[i][k]) * f64::from(l[j][k]))
                    .sum();
                let scale = (f64::from(a[i][i]) * f64::from(a[j][j])).sqrt();
                let r = (s - f64::from(a[i][j])).abs() / scale;
                assert!(
                    r <= 2.0 * (D as f64 + 1.0) * U,
                    "D={D} a={a:?}: (L L^T)[{i}][{j}] = {s}, expected {}",
                    a[i][j]
                );
                st.recon = st.recon.max(r);
            }
        }
        // ln det against f64 LU of the same (f32) matrix.
        let got = f64::from(cholesky_log_det(&l));
        let want = log_det_lu(&to_f64(&a));
        let err = (got - want).abs();
        assert!(
            err <= 1e-5 * D as f64,
            "D={D} a={a:?}: ln det actual {got}, expected {want}"
        );
        st.logdet = st.logdet.max(err);
        // Solves, against the f64 solution with the same factor.
        let b: [f32; D] = core::array::from_fn(|_| unif(rng, -1.0, 1.0));
        let mut x = [0.0f32; D];
        solve_lower(&l, &b, &mut x);
        let lf = to_f64(&l);
        let mut xf = vec![0.0f64; D];
        for i in 0..D {
            let s: f64 = (0..i).map(|k| lf[i][k] * xf[k]).sum();
            xf[i] = (f64::from(b[i]) - s) / lf[i][i];
        }
        let norm = xf.iter().map(|v| v * v).sum::<f64>().sqrt();
        for i in 0..D {
            let e = (f64::from(x[i]) - xf[i]).abs() / norm;
            assert!(
                e < 2e-6,
                "D={D} L x = b: x[{i}] = {}, expected {}",
                x[i],
                xf[i]
            );
            st.solve = st.solve.max(e);
        }
        let mut xt = [0.0f32; D];
        solve_lower_transpose(&l, &b, &mut xt);
        let mut xtf = vec![0.0f64; D];
        for i in (0..D).rev() {
            let s: f64 = (i + 1..D).map(|k| lf[k][i] * xtf[k]).sum();
            xtf[i] = (f64::from(b[i]) - s) / lf[i][i];
        }
        let norm = xtf.iter().map(|v| v * v).sum::<f64>().sqrt();
        for i in 0..D {
            let e = (f64::from(xt[i]) - xtf[i]).abs() / norm;
            assert!(
                e < 2e-6,
                "D={D} L^T x = b: x[{i}] = {}, expected {}",
                xt[i],
                xtf[i]
            );
            st.solve = st.solve.max(e);
        }
    }
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn cholesky_reconstructs_and_log_det() {
    let mut rng = default_rng(21);
    let mut st = CholStats::default();
    macro_rules! dims {
        ($($d:literal)*) => { $( check_cholesky::<$d>(&mut rng, &mut st); )* };
    }
    dims!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
    println!(
        "cholesky D=1..16 (B B^T + 0.5 I): max |L L^T - A|/sqrt(a_ii a_jj) = {:.2e}, max |ln det err| = {:.2e}, max solve err / |x| = {:.2e}",
        st.recon, st.logdet, st.solve
    );
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn cholesky_errors() {
    let mut l = [[0.0f32; 2]; 2];
    assert_eq!(
        cholesky(&[[1.0, 2.0], [2.0, 1.0]], &mut l),
        Err(Error::NotPositiveDefinite)
    );
    assert_eq!(
        cholesky(&[[0.0, 0.0], [0.0, 0.0]], &mut l),
        Err(Error::NotPositiveDefinite)
    );
    assert_eq!(
        cholesky(&[[-1.0, 0.0], [0.0, 1.0]], &mut l),
        Err(Error::NotPositiveDefinite)
    );
    // Positive semi-definite (singular) is refused too, whatever rounding does.
    let mut l3 = [[0.0f32; 3]; 3];
    assert_eq!(
        cholesky(
            &[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            &mut l3
        ),
        Err(Error::NotPositiveDefinite)
    );
    assert_eq!(
        cholesky(&[[1.0, 0.5], [0.4, 1.0]], &mut l),
        Err(Error::NotSymmetric)
    );
    // Within the documented tolerance: accepted, lower triangle used.
    let eps = 0.5 * SYMMETRY_RTOL;
    cholesky(&[[1.0, 0.5 + eps], [0.5, 1.0]], &mut l).unwrap();
    assert_eq!(l[1][0], 0.5, "factor uses the lower triangle");
    assert_eq!(
        cholesky(&[[1.0, 0.0], [f32::NAN, 1.0]], &mut l),
        Err(Error::NonFinite { index: 2 })
    );
    assert_eq!(
        cholesky(&[[f32::INFINITY, 0.0], [0.0, 1.0]], &mut l),
        Err(Error::NonFinite { index: 0 })
    );
    // 1x1 and a known 2x2: [[4, 2], [2, 5]] = [[2, 0], [1, 2]] [[2, 1], [0, 2]].
    let mut l1 = [[0.0f32; 1]; 1];
    cholesky(&[[9.0]], &mut l1).unwrap();
    assert_eq!(l1, [[3.0]]);
    cholesky(&[[4.0, 2.0], [2.0, 5.0]], &mut l).unwrap();
    assert_eq!(l, [[2.0, 0.0], [1.0, 2.0]]);
    assert!((cholesky_log_det(&l) - 16.0f32.ln()).abs() < 1e-6);
}

// ---------------------------------------------------------------- FullGaussian

fn check_full<const D: usize>(rng: &mut Rng, worst: &mut f64) {
    for _ in 0..50 {
        let cov = random_spd::<D>(rng);
        let mean: [f32; D] = core::array::from_fn(|_| unif(rng, -2.0, 2.0));
        let x: [f32; D] = core::array::from_fn(|_| unif(rng, -4.0, 4.0));
        let g = FullGaussian::from_covariance(&mean, &cov).unwrap();
        let af = to_f64(&cov);
        let d: Vec<f64> = x
            .iter()
            .zip(&mean)
            .map(|(&x, &m)| f64::from(x) - f64::from(m))
            .collect();
        let sol = solve_f64(&af, &d).0;
        let maha: f64 = d.iter().zip(&sol).map(|(a, b)| a * b).sum();
        let want = -0.5 * (D as f64 * LN_2PI_F64 + log_det_lu(&af) + maha);
        let got = f64::from(g.log_density(&x));
        let err = (got - want).abs() / want.abs().max(1.0);
        assert!(
            err < 2e-5,
            "D={D} cov={cov:?} mean={mean:?} x={x:?}: log density {got}, expected {want}"
        );
        let gm = f64::from(g.mahalanobis_sq(&x));
        assert!(
            (gm - maha).abs() <= 2e-5 * maha.max(1.0),
            "D={D}: mahalanobis^2 {gm}, expected {maha}"
        );
        assert_eq!(g.mean(), &mean);
        *worst = worst.max(err);
    }
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn full_gaussian_matches_f64() {
    let mut rng = default_rng(31);
    let mut worst = 0.0;
    check_full::<1>(&mut rng, &mut worst);
    check_full::<2>(&mut rng, &mut worst);
    check_full::<4>(&mut rng, &mut worst);
    check_full::<8>(&mut rng, &mut worst);
    check_full::<16>(&mut rng, &mut worst);
    println!("FullGaussian log_density D in {{1,2,4,8,16}}: max relative error {worst:.2e}");
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn full_gaussian_diagonal_and_standard() {
    let mut rng = default_rng(32);
    for _ in 0..500 {
        let m: [f32; 6] = core::array::from_fn(|_| unif(&mut rng, -2.0, 2.0));
        let lv: [f32; 6] = core::array::from_fn(|_| unif(&mut rng, -2.0, 2.0));
        let x: [f32; 6] = core::array::from_fn(|_| unif(&mut rng, -4.0, 4.0));
        let mut cov = [[0.0f32; 6]; 6];
        for i in 0..6 {
            cov[i][i] = tinyvae::math::exp(lv[i]);
        }
        let full = FullGaussian::from_covariance(&m, &cov).unwrap();
        let diag = DiagGaussian::new(m, lv).log_density(&x);
        let f = full.log_density(&x);
        assert!(
            (f - diag).abs() <= 1e-5 * diag.abs().max(1.0),
            "m={m:?} lv={lv:?} x={x:?}: full {f}, diag {diag}"
        );
    }
    let s = FullGaussian::<3>::standard();
    let x = [0.3, -1.2, 2.0];
    assert_eq!(s.log_density(&x), log_std_normal(&x));
    assert_eq!(s.log_det_cov(), 0.0);
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn full_gaussian_errors_reset() {
    let mut g = FullGaussian::from_covariance(&[1.0, 2.0], &[[2.0, 0.5], [0.5, 1.0]]).unwrap();
    assert!((g.log_det_cov() - 1.75f32.ln()).abs() < 1e-6);
    assert_eq!(
        g.set_covariance(&[0.0, 0.0], &[[1.0, 2.0], [2.0, 1.0]]),
        Err(Error::NotPositiveDefinite)
    );
    assert_eq!(g, FullGaussian::standard(), "reset to N(0, I) on error");
    assert_eq!(
        FullGaussian::from_covariance(&[f32::NAN, 0.0], &[[1.0, 0.0], [0.0, 1.0]]),
        Err(Error::NonFinite { index: 0 })
    );
    assert_eq!(
        FullGaussian::from_covariance(&[0.0, 0.0], &[[1.0, 0.3], [0.0, 1.0]]),
        Err(Error::NotSymmetric)
    );
}

/// The host tool's baseline size: D = 384 on the heap, in a thread with a large stack.
#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn full_gaussian_d384() {
    const D: usize = 384;
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut rng = default_rng(41);
            // Tridiagonal SPD: 2 on the diagonal, -1 + small noise off it (diagonally dominant
            // after adding 0.1), with a known f64 log-determinant from LU.
            let mut cov: Box<[[f32; D]; D]> =
                vec![[0.0f32; D]; D].into_boxed_slice().try_into().unwrap();
            for i in 0..D {
                cov[i][i] = 2.1;
                if i + 1 < D {
                    let v = -1.0 + 0.01 * unif(&mut rng, -1.0, 1.0);
                    cov[i][i + 1] = v;
                    cov[i + 1][i] = v;
                }
            }
            let mean = [0.5f32; D];
            let g = Box::new(FullGaussian::from_covariance(&mean, &cov).unwrap());
            let want = log_det_lu(&to_f64(&cov));
            let got = f64::from(g.log_det_cov());
            assert!(
                (got - want).abs() < 1e-3,
                "D=384 ln det actual {got}, expected {want}"
            );
            let x = [0.5f32; D];
            let ld = g.log_density(&x);
            let want_ld = -0.5 * (D as f64 * LN_2PI_F64 + want);
            assert!(
                (f64::from(ld) - want_ld).abs() < 1e-3,
                "D=384 log density at the mean {ld}, expected {want_ld}"
            );
            println!(
                "FullGaussian<384>: ln det {got:.4} (f64 LU {want:.4}), factor {} bytes",
                core::mem::size_of::<FullGaussian<D>>()
            );
        })
        .unwrap()
        .join()
        .unwrap();
}
