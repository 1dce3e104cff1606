//! Autoregressive decoder noise of the product-of-experts model (`train::poe::noise`): the fit
//! recovers the process that generated the residuals and picks its order on validation windows,
//! the diagonal noise stays when the residuals are white, and the fitted model scores with it.

use tinyvae::{GroupSet, ScoreKind};
use tinyvae_host_tools::data::WindowView;
use tinyvae_host_tools::model::PoeHost;
use tinyvae_host_tools::train::poe::{
    fit_ar_noise, DecoderLayout, NoiseOrder, PoeArch, PoeLayout, PoeParams,
};
use tinyvae_host_tools::train::NoiseKind;

const W: usize = 64;
const C: usize = 4;

/// A model whose decoders output 0 (all weights 0), so the residual is the window itself.
fn zero_model() -> PoeParams {
    let arch = PoeArch {
        window: W,
        channels: C,
        groups: vec![vec![0, 1], vec![2, 3]],
        encoder_hidden: vec![4],
        latent: 2,
        decoder_hidden: vec![4],
        noise: NoiseKind::PerFeature,
        decoder: DecoderLayout::PerGroup,
    };
    let layout = PoeLayout::new(&arch).unwrap();
    layout.unflatten(&vec![0.0; layout.total])
}

/// `n` windows of independent AR(2) processes, one per channel (`coef[c] = (a1, a2)`,
/// innovation standard deviation `sd[c]`), started from their stationary state by a burn-in;
/// splitmix64 + Box-Muller normals.
fn ar_windows(n: usize, coef: &[(f64, f64); C], sd: &[f64; C], seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut normal = || {
        let mut u = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 0.5 / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    let mut out = Vec::with_capacity(n * W * C);
    for _ in 0..n {
        let mut win = vec![[0.0f64; C]; W + 50];
        for t in 2..W + 50 {
            for c in 0..C {
                win[t][c] =
                    coef[c].0 * win[t - 1][c] + coef[c].1 * win[t - 2][c] + sd[c] * normal();
            }
        }
        for row in &win[50..] {
            out.extend(row.iter().map(|&v| v as f32));
        }
    }
    out
}

#[test]
fn fit_recovers_the_process_and_its_order() {
    let coef = [(0.9, -0.3), (0.5, 0.2), (1.2, -0.5), (0.0, 0.0)];
    let sd = [0.5, 1.0, 0.3, 0.8];
    let p = zero_model();
    let train = ar_windows(300, &coef, &sd, 1);
    let val = ar_windows(100, &coef, &sd, 2);
    let tv = WindowView::contiguous(&train, W * C).unwrap();
    let vv = WindowView::contiguous(&val, W * C).unwrap();
    let fit = fit_ar_noise(&p, tv, vv, NoiseOrder::Auto).unwrap();
    let n = fit.chosen.clone().expect("autoregressive noise chosen");
    assert_eq!(n.order, 2, "validation: {:?}", fit.validation);
    for c in 0..C {
        let (a1, a2) = (n.coef[2 * c], n.coef[2 * c + 1]);
        assert!(
            (f64::from(a1) - coef[c].0).abs() < 0.03 && (f64::from(a2) - coef[c].1).abs() < 0.03,
            "channel {c}: {a1} {a2} vs {:?}",
            coef[c]
        );
        // Innovation variance of the predicted steps (t >= 2).
        for t in [2, 30, 63] {
            let lv = f64::from(n.logvar[t * C + c]);
            assert!(
                (lv - 2.0 * sd[c].ln()).abs() < 0.25,
                "channel {c} step {t}: {lv}"
            );
        }
    }
    // Every candidate was measured, the trained noise ("0") first, and order 2 is the best.
    let orders: Vec<usize> = fit.validation.iter().map(|v| v.0).collect();
    assert_eq!(orders, vec![0, 1, 2, 3]);
    let best = fit
        .validation
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(best.0, 2);

    // The model scores with it: the score of the fitted model differs from the plain one and
    // rewards the process (its windows score lower than the same values shuffled in time).
    let mut q = p.clone();
    q.noise = fit.chosen;
    let with = PoeHost::float(&q).unwrap();
    let plain = PoeHost::float(&p).unwrap();
    let x = &val[..W * C];
    let mut shuffled = x.to_vec();
    for t in 0..W {
        let u = (t * 37) % W;
        shuffled[t * C..(t + 1) * C].copy_from_slice(&x[u * C..(u + 1) * C]);
    }
    let score = |m: &PoeHost, w: &[f32]| {
        m.scores(std::iter::once(w), GroupSet(3), ScoreKind::Elbo, 0)
            .unwrap()[0]
    };
    assert_ne!(score(&with, x), score(&plain, x));
    assert_eq!(score(&plain, x), score(&plain, &shuffled));
    assert!(score(&with, x) + 10.0 < score(&with, &shuffled));
}

#[test]
fn white_residuals_keep_the_trained_noise_and_off_fits_nothing() {
    let coef = [(0.0, 0.0); C];
    let sd = [1.0; C];
    let p = zero_model();
    let train = ar_windows(200, &coef, &sd, 3);
    let val = ar_windows(100, &coef, &sd, 4);
    let tv = WindowView::contiguous(&train, W * C).unwrap();
    let vv = WindowView::contiguous(&val, W * C).unwrap();
    // The zero model's trained noise is N(0, 1) per feature: the truth here.
    let fit = fit_ar_noise(&p, tv, vv, NoiseOrder::Auto).unwrap();
    assert!(fit.chosen.is_none(), "{:?}", fit.validation);
    let off = fit_ar_noise(&p, tv, vv, NoiseOrder::Off).unwrap();
    assert!(off.chosen.is_none() && off.validation.is_empty());
    let fixed = fit_ar_noise(&p, tv, vv, NoiseOrder::Fixed(3)).unwrap();
    assert_eq!(fixed.chosen.map(|n| n.order), Some(3));
    assert!(fit_ar_noise(&p, tv, vv, NoiseOrder::Fixed(4)).is_err());
    assert_eq!("auto".parse::<NoiseOrder>(), Ok(NoiseOrder::Auto));
    assert_eq!("0".parse::<NoiseOrder>(), Ok(NoiseOrder::Off));
    assert_eq!("3".parse::<NoiseOrder>(), Ok(NoiseOrder::Fixed(3)));
    assert!("4".parse::<NoiseOrder>().is_err());
}
