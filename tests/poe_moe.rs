//! Product and mixture of Gaussian experts, softmax and top-1 gating, against f64 references.
//! Figures: `cargo test --test poe_moe -- --nocapture`.
#![allow(clippy::needless_range_loop)]

use proptest::prelude::*;
use tinyvae::{
    default_rng, log_softmax, mixture_log_density, product_of_experts, softmax, top1, DiagGaussian,
    Error,
};

mod common;

use common::{rng_u32 as rand_u32, unif, Rng, LN_2PI_F64, U};

fn random_expert<const D: usize>(rng: &mut Rng, lv_lo: f32, lv_hi: f32) -> DiagGaussian<D> {
    DiagGaussian::new(
        core::array::from_fn(|_| unif(rng, -2.0, 2.0)),
        core::array::from_fn(|_| unif(rng, lv_lo, lv_hi)),
    )
}

fn ln_normal_f64(x: f64, m: f64, lv: f64) -> f64 {
    -0.5 * (LN_2PI_F64 + lv + (x - m) * (x - m) * (-lv).exp())
}

// ---------------------------------------------------------------- product of experts

/// Mean and variance of the normalized product of the selected 1-D densities, by quadrature
/// on a grid (a Riemann sum of a smooth, rapidly decaying function converges geometrically).
fn grid_product(experts: &[DiagGaussian<1>], mask: &[bool], prior: bool) -> (f64, f64) {
    let (lo, hi, n) = (-10.0f64, 10.0f64, 200_000);
    let h = (hi - lo) / n as f64;
    let logp: Vec<f64> = (0..=n)
        .map(|k| {
            let x = lo + h * k as f64;
            let mut s = if prior {
                ln_normal_f64(x, 0.0, 0.0)
            } else {
                0.0
            };
            for (e, &on) in experts.iter().zip(mask) {
                if on {
                    s += ln_normal_f64(x, f64::from(e.mean[0]), f64::from(e.logvar[0]));
                }
            }
            s
        })
        .collect();
    let mx = logp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (mut z, mut m1, mut m2) = (0.0, 0.0, 0.0);
    for (k, &l) in logp.iter().enumerate() {
        let x = lo + h * k as f64;
        let w = (l - mx).exp();
        z += w;
        m1 += w * x;
        m2 += w * x * x;
    }
    let mean = m1 / z;
    (mean, m2 / z - mean * mean)
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn poe_matches_numeric_product_on_grid() {
    let mut rng = default_rng(201);
    let (mut w_mean, mut w_var) = (0.0f64, 0.0f64);
    for case in 0..60 {
        let k = 1 + (rand_u32(&mut rng) % 4) as usize;
        let experts: Vec<DiagGaussian<1>> =
            (0..k).map(|_| random_expert(&mut rng, -1.5, 1.0)).collect();
        let mut mask: Vec<bool> = (0..k)
            .map(|_| !rand_u32(&mut rng).is_multiple_of(3))
            .collect();
        let prior = case % 2 == 0;
        if !prior && !mask.iter().any(|&b| b) {
            mask[0] = true;
        }
        let mut out = DiagGaussian::<1>::standard();
        product_of_experts(&experts, Some(&mask), prior, &mut out).unwrap();
        let (gm, gv) = grid_product(&experts, &mask, prior);
        let (m, v) = (
            f64::from(out.mean[0]),
            f64::from(tinyvae::math::exp(out.logvar[0])),
        );
        let em = (m - gm).abs() / gv.sqrt();
        let ev = (v - gv).abs() / gv;
        assert!(
            em < 1e-5 && ev < 1e-5,
            "experts={experts:?} mask={mask:?} prior={prior}: mean {m} var {v}, grid mean {gm} var {gv}"
        );
        w_mean = w_mean.max(em);
        w_var = w_var.max(ev);
    }
    println!(
        "PoE vs 1-D grid product: max |mean err|/sigma {w_mean:.2e}, max relative variance err {w_var:.2e}"
    );
}

/// Closed form in f64 for comparison in several dimensions.
fn poe_f64<const D: usize>(
    experts: &[DiagGaussian<D>],
    mask: &[bool],
    prior: bool,
) -> ([f64; D], [f64; D]) {
    let mut prec = [if prior { 1.0 } else { 0.0 }; D];
    let mut wm = [0.0; D];
    for (e, &on) in experts.iter().zip(mask) {
        if on {
            for d in 0..D {
                let t = (-f64::from(e.logvar[d])).exp();
                prec[d] += t;
                wm[d] += t * f64::from(e.mean[d]);
            }
        }
    }
    (
        core::array::from_fn(|d| wm[d] / prec[d]),
        core::array::from_fn(|d| -prec[d].ln()),
    )
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn poe_masks_prior_and_closed_form() {
    let mut rng = default_rng(202);
    for case in 0..2000 {
        let k = 1 + case % 6;
        let experts: Vec<DiagGaussian<4>> =
            (0..k).map(|_| random_expert(&mut rng, -4.0, 4.0)).collect();
        let mask: Vec<bool> = (0..k)
            .map(|_| rand_u32(&mut rng).is_multiple_of(2))
            .collect();
        let prior = case % 3 == 0;
        let mut out = DiagGaussian::<4>::standard();
        let r = product_of_experts(&experts, Some(&mask), prior, &mut out);
        if !prior && !mask.iter().any(|&b| b) {
            assert_eq!(r, Err(Error::Empty), "mask={mask:?}");
            continue;
        }
        r.unwrap();
        let (wm, wlv) = poe_f64(&experts, &mask, prior);
        for d in 0..4 {
            let (m, lv) = (f64::from(out.mean[d]), f64::from(out.logvar[d]));
            assert!(
                (m - wm[d]).abs() <= 1e-5 * (1.0 + wm[d].abs())
                    && (lv - wlv[d]).abs() <= 1e-5 * (1.0 + wlv[d].abs()),
                "experts={experts:?} mask={mask:?} prior={prior} dim {d}: ({m}, {lv}), expected ({}, {})",
                wm[d],
                wlv[d]
            );
        }
        // Masking is the same as passing the subset.
        let subset: Vec<DiagGaussian<4>> = experts
            .iter()
            .zip(&mask)
            .filter(|(_, &on)| on)
            .map(|(e, _)| *e)
            .collect();
        let mut out2 = DiagGaussian::<4>::standard();
        product_of_experts(&subset, None, prior, &mut out2).unwrap();
        assert_eq!(out, out2, "mask={mask:?}: masked vs subset");
        // The prior is an N(0, I) expert.
        let mut with_std = subset.clone();
        with_std.insert(0, DiagGaussian::standard());
        if prior {
            let mut out3 = DiagGaussian::<4>::standard();
            product_of_experts(&with_std, None, false, &mut out3).unwrap();
            for d in 0..4 {
                assert!(
                    (out.mean[d] - out3.mean[d]).abs() <= 1e-6 * (1.0 + out.mean[d].abs())
                        && (out.logvar[d] - out3.logvar[d]).abs() <= 1e-6,
                    "prior flag {out:?} vs explicit N(0, I) expert {out3:?}"
                );
            }
        }
    }
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn poe_edge_cases() {
    let mut rng = default_rng(203);
    let e: DiagGaussian<3> = random_expert(&mut rng, -3.0, 3.0);
    let mut out = DiagGaussian::<3>::standard();
    // One expert: itself, exactly.
    product_of_experts(&[e], None, false, &mut out).unwrap();
    assert_eq!(out, e);
    // Prior alone: N(0, I).
    let mut out = e;
    product_of_experts::<3>(&[], None, true, &mut out).unwrap();
    assert_eq!(out, DiagGaussian::standard());
    let mut out = e;
    product_of_experts(&[e, e], Some(&[false, false]), true, &mut out).unwrap();
    assert_eq!(out, DiagGaussian::standard());
    // Errors leave `out` untouched.
    let mut out = e;
    assert_eq!(
        product_of_experts::<3>(&[], None, false, &mut out),
        Err(Error::Empty)
    );
    assert_eq!(
        product_of_experts(&[e, e], Some(&[false, false]), false, &mut out),
        Err(Error::Empty)
    );
    assert_eq!(
        product_of_experts(&[e, e], Some(&[true]), false, &mut out),
        Err(Error::ShapeMismatch {
            expected: 2,
            found: 1
        })
    );
    let mut bad = e;
    bad.logvar[1] = f32::NAN;
    assert_eq!(
        product_of_experts(&[e, bad], None, false, &mut out),
        Err(Error::NonFinite { index: 1 })
    );
    // A masked-out bad expert is ignored.
    product_of_experts(&[e, bad], Some(&[true, false]), false, &mut out).unwrap();
    assert_eq!(out, e);
    // Two identical experts: same mean, variance halved.
    product_of_experts(&[e, e], None, false, &mut out).unwrap();
    for d in 0..3 {
        assert!((out.mean[d] - e.mean[d]).abs() <= 1e-6 * e.mean[d].abs());
        let want = e.logvar[d] - core::f32::consts::LN_2;
        assert!(
            (out.logvar[d] - want).abs() <= 1e-6,
            "{} vs {want}",
            out.logvar[d]
        );
    }
    // Precisions far outside f32 (e^100, e^-100): still finite, dominated by the sharp expert.
    let sharp = DiagGaussian::new([1.5], [-100.0]);
    let flat = DiagGaussian::new([-7.0], [100.0]);
    let mut out = DiagGaussian::<1>::standard();
    product_of_experts(&[flat, sharp], None, true, &mut out).unwrap();
    assert_eq!(out.mean, [1.5], "{out:?}");
    assert_eq!(out.logvar, [-100.0], "{out:?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Precisions add, the result is at least as precise as every expert, the mean is a convex
    /// combination of the experts' means.
    #[cfg_attr(feature = "fast-math", ignore = "accuracy bounds are for the libm backend; micromath is coarser")]
    #[test]
    fn prop_poe_precision(
        params in prop::collection::vec(((-50.0f32..50.0, -30.0f32..30.0), (-50.0f32..50.0, -30.0f32..30.0)), 1..8),
        prior in any::<bool>(),
    ) {
        let experts: Vec<DiagGaussian<2>> = params
            .iter()
            .map(|&((m0, l0), (m1, l1))| DiagGaussian::new([m0, m1], [l0, l1]))
            .collect();
        let mut out = DiagGaussian::<2>::standard();
        product_of_experts(&experts, None, prior, &mut out).unwrap();
        for d in 0..2 {
            let prec: f64 = experts.iter().map(|e| (-f64::from(e.logvar[d])).exp()).sum::<f64>()
                + if prior { 1.0 } else { 0.0 };
            let got = (-f64::from(out.logvar[d])).exp();
            prop_assert!((got - prec).abs() <= 1e-5 * prec, "precision {} vs sum {}", got, prec);
            for e in &experts {
                prop_assert!(out.logvar[d] <= e.logvar[d] + 1e-6 * e.logvar[d].abs());
            }
            let lo = experts.iter().map(|e| e.mean[d]).fold(if prior { 0.0 } else { f32::INFINITY }, f32::min);
            let hi = experts.iter().map(|e| e.mean[d]).fold(if prior { 0.0 } else { f32::NEG_INFINITY }, f32::max);
            let tol = 1e-5 * lo.abs().max(hi.abs());
            prop_assert!(out.mean[d] >= lo - tol && out.mean[d] <= hi + tol,
                "mean {} outside [{}, {}]", out.mean[d], lo, hi);
        }
    }
}

// ---------------------------------------------------------------- softmax, mixture, top-1

fn lse_f64(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn softmax_and_log_softmax_match_f64() {
    let mut rng = default_rng(204);
    let (mut w_sm, mut w_lsm) = (0.0f64, 0.0f64);
    for case in 0..5000 {
        let k = 1 + case % 10;
        let scale = [1.0f32, 30.0, 1000.0][case % 3];
        let a: Vec<f32> = (0..k).map(|_| unif(&mut rng, -scale, scale)).collect();
        let af: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
        let l = lse_f64(&af);
        let mut p = vec![0.0f32; k];
        let mut lp = vec![0.0f32; k];
        softmax(&a, &mut p).unwrap();
        log_softmax(&a, &mut lp).unwrap();
        let sum: f64 = p.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (sum - 1.0).abs() <= 2.0 * k as f64 * 6e-8,
            "logits={a:?}: sum {sum}"
        );
        let mx = af.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        for i in 0..k {
            let want = (af[i] - l).exp();
            let e = (f64::from(p[i]) - want).abs();
            // Relative: a few ulp per term of the sum, plus the rounding of a_i - max (which exp
            // turns into a relative error of u |a_i - max|); subnormal spacing for underflow.
            let tol = want * (4.0 * (k as f64 + 2.0) * U + 2.0 * U * (af[i] - mx).abs()) + 1e-44;
            assert!(
                e <= tol,
                "logits={a:?}: softmax[{i}] = {}, expected {want}",
                p[i]
            );
            w_sm = w_sm.max(e / want.max(1e-30));
            let want = af[i] - l;
            let e = (f64::from(lp[i]) - want).abs();
            assert!(
                e <= 1e-6 * (1.0 + want.abs()) + 2.0 * 6e-8 * f64::from(scale),
                "logits={a:?}: log_softmax[{i}] = {}, expected {want}",
                lp[i]
            );
            w_lsm = w_lsm.max(e / (1.0 + want.abs()));
        }
    }
    println!("softmax: max relative error {w_sm:.2e} (logits up to ±1000); log_softmax: max error/(1+|v|) {w_lsm:.2e}");
    // Extreme logits: no NaN, no overflow.
    let a = [1000.0f32, -1000.0, 999.0];
    let mut p = [0.0; 3];
    softmax(&a, &mut p).unwrap();
    let w = 1.0 / (1.0 + (-1.0f64).exp());
    assert!((f64::from(p[0]) - w).abs() < 1e-7, "{p:?}");
    assert_eq!(p[1], 0.0);
    let mut lp = [0.0; 3];
    log_softmax(&a, &mut lp).unwrap();
    assert!(
        (f64::from(lp[1]) - (-2000.0 + w.ln())).abs() < 1e-3,
        "{lp:?}"
    );
}

#[test]
fn softmax_errors() {
    let mut out = [0.0f32; 2];
    assert_eq!(softmax(&[], &mut []), Err(Error::Empty));
    assert_eq!(log_softmax(&[], &mut []), Err(Error::Empty));
    assert_eq!(
        softmax(&[1.0, 2.0, 3.0], &mut out),
        Err(Error::ShapeMismatch {
            expected: 3,
            found: 2
        })
    );
    assert_eq!(
        log_softmax(&[1.0, f32::NAN], &mut out),
        Err(Error::NonFinite { index: 1 })
    );
    assert_eq!(
        softmax(&[f32::INFINITY, 0.0], &mut out),
        Err(Error::NonFinite { index: 0 })
    );
    assert_eq!(top1(&[]), Err(Error::Empty));
    assert_eq!(top1(&[0.0, f32::NAN]), Err(Error::NonFinite { index: 1 }));
    assert_eq!(
        mixture_log_density::<0, 2>(&[], &[], &[0.0; 2]),
        Err(Error::Empty)
    );
    let c = [DiagGaussian::<2>::standard(); 2];
    assert_eq!(
        mixture_log_density(&[0.0, 0.0], &c, &[0.0, f32::NAN]),
        Err(Error::NonFinite { index: 1 })
    );
    let mut bad = c;
    bad[1].mean[0] = f32::INFINITY;
    assert_eq!(
        mixture_log_density(&[0.0, 0.0], &bad, &[0.0, 0.0]),
        Err(Error::NonFinite { index: 1 })
    );
}

#[test]
fn top1_index_and_weight() {
    let mut rng = default_rng(205);
    for case in 0..2000 {
        let k = 1 + case % 9;
        let a: Vec<f32> = (0..k).map(|_| unif(&mut rng, -5.0, 5.0)).collect();
        let (i, w) = top1(&a).unwrap();
        let mut p = vec![0.0f32; k];
        softmax(&a, &mut p).unwrap();
        let best = (0..k).fold(0, |b, j| if a[j] > a[b] { j } else { b });
        assert_eq!(i, best, "logits={a:?}");
        assert!(
            (w - p[i]).abs() <= 2e-7,
            "logits={a:?}: weight {w}, softmax {}",
            p[i]
        );
        assert!(w >= 1.0 / k as f32 - 1e-7 && w <= 1.0, "weight {w}");
    }
    // Ties: the first maximum.
    assert_eq!(top1(&[1.0, 3.0, 3.0]).unwrap().0, 1);
    assert_eq!(top1(&[2.0, 2.0]).unwrap(), (0, 0.5));
    assert_eq!(top1(&[7.0]).unwrap(), (0, 1.0));
}

fn mixture_f64<const K: usize, const D: usize>(
    logits: &[f32; K],
    comps: &[DiagGaussian<D>; K],
    x: &[f32; D],
) -> f64 {
    let af: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    let l = lse_f64(&af);
    let terms: Vec<f64> = (0..K)
        .map(|i| {
            (af[i] - l)
                + (0..D)
                    .map(|d| {
                        ln_normal_f64(
                            f64::from(x[d]),
                            f64::from(comps[i].mean[d]),
                            f64::from(comps[i].logvar[d]),
                        )
                    })
                    .sum::<f64>()
        })
        .collect();
    lse_f64(&terms)
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn mixture_matches_direct_sum_f64() {
    let mut rng = default_rng(206);
    let mut worst = 0.0f64;
    for _ in 0..5000 {
        let logits: [f32; 4] = core::array::from_fn(|_| unif(&mut rng, -3.0, 3.0));
        let comps: [DiagGaussian<3>; 4] =
            core::array::from_fn(|_| random_expert(&mut rng, -1.0, 1.0));
        let x: [f32; 3] = core::array::from_fn(|_| unif(&mut rng, -3.0, 3.0));
        let got = f64::from(mixture_log_density(&logits, &comps, &x).unwrap());
        // Direct sum of weighted densities in f64 (fine at these magnitudes).
        let af: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
        let z: f64 = af.iter().map(|a| a.exp()).sum();
        let p: f64 = (0..4)
            .map(|i| {
                af[i].exp() / z
                    * (0..3)
                        .map(|d| {
                            ln_normal_f64(
                                f64::from(x[d]),
                                f64::from(comps[i].mean[d]),
                                f64::from(comps[i].logvar[d]),
                            )
                            .exp()
                        })
                        .product::<f64>()
            })
            .sum();
        let want = p.ln();
        let rel = (got - want).abs() / want.abs().max(1.0);
        assert!(
            rel <= 1e-5,
            "logits={logits:?} comps={comps:?} x={x:?}: {got}, expected {want}"
        );
        worst = worst.max(rel);
    }
    println!("mixture_log_density vs f64 direct sum: max error/max(1,|v|) {worst:.2e}");
}

#[cfg_attr(
    feature = "fast-math",
    ignore = "accuracy bounds are for the libm backend; micromath is coarser"
)]
#[test]
fn mixture_extreme_logits_and_tails() {
    let mut rng = default_rng(207);
    let mut worst = 0.0f64;
    for case in 0..2000 {
        let logits: [f32; 3] = core::array::from_fn(|_| unif(&mut rng, -1000.0, 1000.0));
        let comps: [DiagGaussian<2>; 3] =
            core::array::from_fn(|_| random_expert(&mut rng, -2.0, 0.0));
        // x far in every component's tail: log-densities around -10^3 .. -10^4.
        let far = if case % 2 == 0 { 60.0 } else { 150.0 };
        let x: [f32; 2] = [far, -far];
        let got = mixture_log_density(&logits, &comps, &x).unwrap();
        let want = mixture_f64(&logits, &comps, &x);
        assert!(got.is_finite(), "logits={logits:?} x={x:?}: {got}");
        let err = (f64::from(got) - want).abs();
        // A few ulp of the largest magnitude involved.
        let tol = 8.0 * 6e-8 * want.abs().max(1000.0);
        assert!(
            err <= tol,
            "logits={logits:?} comps={comps:?} x={x:?}: {got}, expected {want}"
        );
        worst = worst.max(err / want.abs());
    }
    // A direct f32 sum would underflow to ln 0 = -inf here.
    let comps = [
        DiagGaussian::new([0.0], [0.0]),
        DiagGaussian::new([1.0], [0.0]),
    ];
    let v = mixture_log_density(&[1000.0, -1000.0], &comps, &[200.0]).unwrap();
    let want = mixture_f64(&[1000.0, -1000.0], &comps, &[200.0]);
    assert!((f64::from(v) - want).abs() < 1e-2, "{v} vs {want}");
    println!(
        "mixture_log_density with logits in ±1000 and log-densities to -2e4: max relative error {worst:.2e}"
    );
}
