//! KL divergences against f64 closed forms, Monte Carlo, each other, and error cases.
//! Figures: `cargo test --test kl -- --nocapture`.
#![allow(clippy::needless_range_loop)]

use proptest::prelude::*;
use tinyvae::{
    cholesky, default_rng, kl_diag, kl_full, kl_std_normal, log_normal_diag, log_std_normal,
    reparameterize, Error, FullGaussian, NormalSampler,
};

mod common;

use common::{random_spd, solve_f64, to_f64, unif, vec_unif, Rng};

/// Monte Carlo draws per estimate; pass bound in standard errors.
const MC_N: usize = 200_000;
const MC_SE: f64 = 5.0;

fn kl_diag_f64(mq: &[f32], lvq: &[f32], mp: &[f32], lvp: &[f32]) -> f64 {
    let mut s = 0.0;
    for i in 0..mq.len() {
        let (mq, lvq, mp, lvp) = (
            f64::from(mq[i]),
            f64::from(lvq[i]),
            f64::from(mp[i]),
            f64::from(lvp[i]),
        );
        // e^lvq - 1 computed as exp_m1 to keep the f64 reference accurate near lvq = lvp.
        let r = lvq - lvp;
        s += r.exp_m1() - r + (mq - mp) * (mq - mp) * (-lvp).exp();
    }
    0.5 * s
}

/// Mean and standard error of a sample.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn kl_std_normal_and_kl_diag_match_f64() {
    let mut rng = default_rng(101);
    let (mut w_std, mut w_diag) = (0.0f64, 0.0f64);
    for case in 0..20_000 {
        let d = 1 + (case % 32);
        // A third of the cases have tiny log-variances, where e^lv - 1 - lv cancels.
        let lv_range = if case % 3 == 0 { 1e-3 } else { 4.0 };
        let mq = vec_unif(&mut rng, d, -3.0, 3.0);
        let lvq = vec_unif(&mut rng, d, -lv_range, lv_range);
        let mp = vec_unif(&mut rng, d, -3.0, 3.0);
        let lvp = vec_unif(&mut rng, d, -lv_range, lv_range);
        let zero = vec![0.0f32; d];

        let got = f64::from(kl_std_normal(&mq, &lvq).unwrap());
        let want = kl_diag_f64(&mq, &lvq, &zero, &zero);
        let rel = (got - want).abs() / want;
        assert!(
            rel < 2e-6,
            "m={mq:?} lv={lvq:?}: kl_std_normal {got}, expected {want}"
        );
        w_std = w_std.max(rel);

        let got = f64::from(kl_diag(&mq, &lvq, &mp, &lvp).unwrap());
        let want = kl_diag_f64(&mq, &lvq, &mp, &lvp);
        let rel = (got - want).abs() / want;
        assert!(
            rel < 2e-6,
            "q=({mq:?},{lvq:?}) p=({mp:?},{lvp:?}): kl_diag {got}, expected {want}"
        );
        w_diag = w_diag.max(rel);

        // Means equal: only the variance terms remain (tests phi near 0 in isolation).
        let got = f64::from(kl_diag(&mq, &lvq, &mq, &lvp).unwrap());
        let want = kl_diag_f64(&mq, &lvq, &mq, &lvp);
        let rel = (got - want).abs() / want.max(1e-300);
        assert!(
            rel < 2e-6,
            "equal means, lvq={lvq:?} lvp={lvp:?}: {got}, expected {want}"
        );
        w_diag = w_diag.max(rel);
    }
    println!("kl_std_normal: max relative error {w_std:.2e}; kl_diag: {w_diag:.2e}");
}

#[test]
fn kl_diag_with_standard_prior_is_kl_std_normal() {
    let mut rng = default_rng(102);
    for d in 0..40 {
        let m = vec_unif(&mut rng, d, -5.0, 5.0);
        let lv = vec_unif(&mut rng, d, -6.0, 6.0);
        let zero = vec![0.0f32; d];
        let a = kl_diag(&m, &lv, &zero, &zero).unwrap();
        let b = kl_std_normal(&m, &lv).unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "m={m:?} lv={lv:?}: {a} vs {b}");
    }
}

#[test]
fn kl_is_zero_for_equal_and_nonnegative() {
    let mut rng = default_rng(103);
    assert_eq!(kl_std_normal(&[0.0; 7], &[0.0; 7]).unwrap(), 0.0);
    for _ in 0..1000 {
        let m = vec_unif(&mut rng, 6, -50.0, 50.0);
        let lv = vec_unif(&mut rng, 6, -20.0, 20.0);
        assert_eq!(
            kl_diag(&m, &lv, &m, &lv).unwrap(),
            0.0,
            "q = p = ({m:?}, {lv:?})"
        );
        let mq: [f32; 4] = core::array::from_fn(|_| unif(&mut rng, -5.0, 5.0));
        let s = random_spd::<4>(&mut rng);
        let k = kl_full(&mq, &s, &mq, &s).unwrap();
        assert_eq!(k, 0.0, "kl_full(q, q) with q = ({mq:?}, {s:?}) is {k}");
        let mp: [f32; 4] = core::array::from_fn(|_| unif(&mut rng, -5.0, 5.0));
        let sp = random_spd::<4>(&mut rng);
        let k = kl_full(&mq, &s, &mp, &sp).unwrap();
        assert!(k >= 0.0, "kl_full = {k} < 0");
    }
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn kl_std_normal_and_kl_diag_monte_carlo() {
    let mq = [0.5f32, -1.0, 2.0];
    let lvq = [0.3f32, -0.7, 1.2];
    let mp = [0.2f32, 0.1, -0.5];
    let lvp = [0.5f32, 0.0, -0.4];
    let mut rng = default_rng(104);
    let mut sampler = NormalSampler::new();
    let (mut f_std, mut f_diag) = (Vec::with_capacity(MC_N), Vec::with_capacity(MC_N));
    let (mut eps, mut z) = ([0.0f32; 3], [0.0f32; 3]);
    for _ in 0..MC_N {
        sampler.fill(&mut rng, &mut eps);
        reparameterize(&mq, &lvq, &eps, &mut z).unwrap();
        let lq = f64::from(log_normal_diag(&z, &mq, &lvq).unwrap());
        f_std.push(lq - f64::from(log_std_normal(&z)));
        f_diag.push(lq - f64::from(log_normal_diag(&z, &mp, &lvp).unwrap()));
    }
    for (name, f, kl) in [
        ("kl_std_normal", &f_std, kl_std_normal(&mq, &lvq).unwrap()),
        ("kl_diag", &f_diag, kl_diag(&mq, &lvq, &mp, &lvp).unwrap()),
    ] {
        let (m, se) = mean_se(f);
        let zs = (m - f64::from(kl)) / se;
        println!(
            "{name}: closed form {kl:.5}, Monte Carlo ({MC_N} draws) {m:.5} ± {se:.5} ({zs:+.2} SE)"
        );
        assert!(
            zs.abs() <= MC_SE,
            "{name} q=({mq:?},{lvq:?}) p=({mp:?},{lvp:?}): closed form {kl}, MC {m} ± {se}"
        );
    }
}

// ---------------------------------------------------------------- full covariance

fn kl_full_f64<const D: usize>(
    mq: &[f32; D],
    sq: &[[f32; D]; D],
    mp: &[f32; D],
    sp: &[[f32; D]; D],
) -> f64 {
    let (sqf, spf) = (to_f64(sq), to_f64(sp));
    let d: Vec<f64> = (0..D)
        .map(|i| f64::from(mp[i]) - f64::from(mq[i]))
        .collect();
    let (y, ld_p) = solve_f64(&spf, &d);
    let (_, ld_q) = solve_f64(&sqf, &d);
    let mut tr = 0.0;
    for j in 0..D {
        let col: Vec<f64> = (0..D).map(|i| sqf[i][j]).collect();
        tr += solve_f64(&spf, &col).0[j];
    }
    let maha: f64 = d.iter().zip(&y).map(|(a, b)| a * b).sum();
    0.5 * (ld_p - ld_q - D as f64 + tr + maha)
}

fn check_full_vs_diag<const D: usize>(rng: &mut Rng, worst: &mut f64) {
    for _ in 0..200 {
        let mq: [f32; D] = core::array::from_fn(|_| unif(rng, -3.0, 3.0));
        let mp: [f32; D] = core::array::from_fn(|_| unif(rng, -3.0, 3.0));
        let lvq: [f32; D] = core::array::from_fn(|_| unif(rng, -3.0, 3.0));
        let lvp: [f32; D] = core::array::from_fn(|_| unif(rng, -3.0, 3.0));
        let (mut sq, mut sp) = ([[0.0f32; D]; D], [[0.0f32; D]; D]);
        for i in 0..D {
            sq[i][i] = tinyvae::math::exp(lvq[i]);
            sp[i][i] = tinyvae::math::exp(lvp[i]);
        }
        let full = kl_full(&mq, &sq, &mp, &sp).unwrap();
        let diag = kl_diag(&mq, &lvq, &mp, &lvp).unwrap();
        let rel = f64::from((full - diag).abs() / diag);
        assert!(
            rel <= 1e-5,
            "D={D} q=({mq:?},{lvq:?}) p=({mp:?},{lvp:?}): kl_full {full}, kl_diag {diag}"
        );
        *worst = worst.max(rel);
    }
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn kl_full_diagonal_equals_kl_diag() {
    let mut rng = default_rng(105);
    let mut worst = 0.0;
    check_full_vs_diag::<1>(&mut rng, &mut worst);
    check_full_vs_diag::<2>(&mut rng, &mut worst);
    check_full_vs_diag::<5>(&mut rng, &mut worst);
    check_full_vs_diag::<8>(&mut rng, &mut worst);
    println!("kl_full with diagonal covariances vs kl_diag: max relative difference {worst:.2e}");
}

fn check_full_vs_f64<const D: usize>(rng: &mut Rng, worst: &mut f64) {
    for _ in 0..200 {
        let mq: [f32; D] = core::array::from_fn(|_| unif(rng, -2.0, 2.0));
        let mp: [f32; D] = core::array::from_fn(|_| unif(rng, -2.0, 2.0));
        let sq = random_spd::<D>(rng);
        let sp = random_spd::<D>(rng);
        let got = f64::from(kl_full(&mq, &sq, &mp, &sp).unwrap());
        let want = kl_full_f64(&mq, &sq, &mp, &sp);
        let rel = (got - want).abs() / want;
        assert!(
            rel < 1e-4,
            "D={D} q=({mq:?},{sq:?}) p=({mp:?},{sp:?}): kl_full {got}, expected {want}"
        );
        *worst = worst.max(rel);
    }
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn kl_full_matches_f64() {
    let mut rng = default_rng(106);
    let mut worst = 0.0;
    check_full_vs_f64::<1>(&mut rng, &mut worst);
    check_full_vs_f64::<3>(&mut rng, &mut worst);
    check_full_vs_f64::<4>(&mut rng, &mut worst);
    check_full_vs_f64::<8>(&mut rng, &mut worst);
    check_full_vs_f64::<12>(&mut rng, &mut worst);
    println!("kl_full vs f64 (random SPD, D in 1,3,4,8,12): max relative error {worst:.2e}");
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn kl_full_monte_carlo_4x4() {
    let mut rng = default_rng(107);
    let mq: [f32; 4] = core::array::from_fn(|_| unif(&mut rng, -1.0, 1.0));
    let mp: [f32; 4] = core::array::from_fn(|_| unif(&mut rng, -1.0, 1.0));
    let sq = random_spd::<4>(&mut rng);
    let sp = random_spd::<4>(&mut rng);
    let q = FullGaussian::from_covariance(&mq, &sq).unwrap();
    let p = FullGaussian::from_covariance(&mp, &sp).unwrap();
    let mut lq = [[0.0f32; 4]; 4];
    cholesky(&sq, &mut lq).unwrap();
    let kl = kl_full(&mq, &sq, &mp, &sp).unwrap();

    let mut sampler = NormalSampler::new();
    let mut eps = [0.0f32; 4];
    let mut f = Vec::with_capacity(MC_N);
    for _ in 0..MC_N {
        sampler.fill(&mut rng, &mut eps);
        // z = mq + Lq eps ~ N(mq, Sq).
        let z: [f32; 4] = core::array::from_fn(|i| {
            let s: f64 = (0..=i)
                .map(|k| f64::from(lq[i][k]) * f64::from(eps[k]))
                .sum();
            (f64::from(mq[i]) + s) as f32
        });
        f.push(f64::from(q.log_density(&z)) - f64::from(p.log_density(&z)));
    }
    let (m, se) = mean_se(&f);
    let zs = (m - f64::from(kl)) / se;
    println!(
        "kl_full 4x4: closed form {kl:.5} (f64 {:.5}), Monte Carlo ({MC_N} draws through FullGaussian) {m:.5} ± {se:.5} ({zs:+.2} SE)",
        kl_full_f64(&mq, &sq, &mp, &sp)
    );
    assert!(
        zs.abs() <= MC_SE,
        "q=({mq:?},{sq:?}) p=({mp:?},{sp:?}): closed form {kl}, MC {m} ± {se}"
    );
}

#[test]
fn kl_errors() {
    let id = [[1.0f32, 0.0], [0.0, 1.0]];
    let m = [0.0f32; 2];
    assert_eq!(
        kl_full(&m, &[[1.0, 2.0], [2.0, 1.0]], &m, &id),
        Err(Error::NotPositiveDefinite)
    );
    assert_eq!(
        kl_full(&m, &id, &m, &[[1.0, 0.0], [0.0, -1.0]]),
        Err(Error::NotPositiveDefinite)
    );
    assert_eq!(
        kl_full(&m, &[[1.0, 0.2], [0.1, 1.0]], &m, &id),
        Err(Error::NotSymmetric)
    );
    assert_eq!(
        kl_full(&[0.0, f32::NAN], &id, &m, &id),
        Err(Error::NonFinite { index: 1 })
    );
    assert_eq!(
        kl_full(&m, &id, &m, &[[1.0, 0.0], [0.0, f32::INFINITY]]),
        Err(Error::NonFinite { index: 3 })
    );
    assert_eq!(
        kl_std_normal(&[0.0, f32::NAN], &[0.0, 0.0]),
        Err(Error::NonFinite { index: 1 })
    );
    assert_eq!(
        kl_std_normal(&[0.0, 0.0], &[f32::NEG_INFINITY, 0.0]),
        Err(Error::NonFinite { index: 0 })
    );
    assert_eq!(
        kl_diag(&[0.0], &[0.0], &[0.0], &[f32::NAN]),
        Err(Error::NonFinite { index: 0 })
    );
    assert_eq!(
        kl_std_normal(&[0.0; 3], &[0.0; 2]),
        Err(Error::ShapeMismatch {
            expected: 3,
            found: 2
        })
    );
    assert_eq!(
        kl_diag(&[0.0; 3], &[0.0; 3], &[0.0; 3], &[0.0; 4]),
        Err(Error::ShapeMismatch {
            expected: 3,
            found: 4
        })
    );
    assert_eq!(kl_std_normal(&[], &[]), Ok(0.0));
    // Overflow of e^lv is +inf, not NaN.
    assert_eq!(kl_std_normal(&[0.0], &[100.0]), Ok(f32::INFINITY));
}

fn diag_params() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (0usize..16).prop_flat_map(|n| {
        (
            prop::collection::vec(-100.0f32..100.0, n),
            prop::collection::vec(-20.0f32..20.0, n),
            prop::collection::vec(-100.0f32..100.0, n),
            prop::collection::vec(-20.0f32..20.0, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[cfg_attr(feature = "fast-math", ignore = "accuracy bounds are for the libm backend; micromath is coarser")]
    #[test]
    fn prop_kl_diag_nonnegative_and_consistent((mq, lvq, mp, lvp) in diag_params()) {
        let k = kl_diag(&mq, &lvq, &mp, &lvp).unwrap();
        prop_assert!(k >= 0.0, "kl_diag = {} < 0", k);
        let want = kl_diag_f64(&mq, &lvq, &mp, &lvp);
        // Relative bound: a few ulp per term, plus the rounding of lvq - lvp (at most
        // u |lvq - lvp|), which exp turns into a relative error of the same size.
        let t_max = lvq.iter().zip(&lvp).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
        prop_assert!(
            (f64::from(k) - want).abs() <= (2e-6 + 2.0 * 6e-8 * t_max) * want,
            "kl_diag {} vs f64 {}", k, want
        );
        prop_assert_eq!(kl_diag(&mq, &lvq, &mq, &lvq).unwrap(), 0.0);
        let zero = vec![0.0f32; mq.len()];
        prop_assert_eq!(
            kl_diag(&mq, &lvq, &zero, &zero).unwrap().to_bits(),
            kl_std_normal(&mq, &lvq).unwrap().to_bits()
        );
    }
}
