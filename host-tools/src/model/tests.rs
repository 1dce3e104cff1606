//! Unit tests of the host model: the f32 model against an independent f64 reference, the int8
//! model against the f32 one, and the per-row symmetric weight quantization.

use tinyvae::{Activation, QParams, ScoreKind};

use super::*;
use crate::train::{Arch, Linear, NoiseKind, Params};

fn small() -> (Arch, Params) {
    let arch = Arch {
        input: 12,
        encoder_hidden: vec![10, 7],
        latent: 3,
        decoder_hidden: vec![9],
        noise: NoiseKind::PerFeature,
        channels: 3,
    };
    let mut p = Params::init(&arch, 7).unwrap();
    for (i, v) in p.decoder_logvar.iter_mut().enumerate() {
        *v = -0.5 + 0.1 * i as f32;
    }
    (arch, p)
}

fn windows(n: usize, d: usize) -> Vec<f32> {
    let mut x = 1u32;
    (0..n * d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 500.0 - 2.0
        })
        .collect()
}

/// f64 reference forward pass, written independently of the library.
fn ref_forward(l: &Linear, x: &[f64], relu: bool) -> Vec<f64> {
    l.weight
        .chunks_exact(l.in_features)
        .zip(&l.bias)
        .map(|(row, &b)| {
            let s: f64 = row
                .iter()
                .zip(x)
                .map(|(&w, &v)| f64::from(w) * v)
                .sum::<f64>()
                + f64::from(b);
            if relu {
                s.max(0.0)
            } else {
                s
            }
        })
        .collect()
}

#[test]
fn float_model_matches_f64_reference_elbo() {
    let (_, p) = small();
    let m = HostModel::float(&p).unwrap();
    let data = windows(20, 12);
    let scores = score_windows(&m, data.chunks_exact(12), ScoreKind::Elbo, 0).unwrap();
    for (x, s) in data.chunks_exact(12).zip(&scores) {
        let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for l in &p.encoder {
            h = ref_forward(l, &h, true);
        }
        let mu = ref_forward(&p.mu, &h, false);
        let lv = ref_forward(&p.logvar, &h, false);
        let kl: f64 = mu
            .iter()
            .zip(&lv)
            .map(|(m, l)| 0.5 * (m * m + l.exp() - 1.0 - l))
            .sum();
        let mut d = mu.clone();
        for l in &p.decoder {
            d = ref_forward(l, &d, true);
        }
        let mean = ref_forward(&p.decoder_out, &d, false);
        let ll: f64 = x
            .iter()
            .zip(&mean)
            .zip(&p.decoder_logvar)
            .map(|((&xi, mi), &lvx)| {
                let lvx = f64::from(lvx);
                -0.5 * ((2.0 * std::f64::consts::PI).ln()
                    + lvx
                    + (f64::from(xi) - mi).powi(2) / lvx.exp())
            })
            .sum();
        let want = -(ll - kl);
        let got = f64::from(s.score);
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "x {x:?}: score {got} vs f64 reference {want}"
        );
    }
}

#[test]
fn int8_model_tracks_float_model() {
    let (_, p) = small();
    let f = HostModel::float(&p).unwrap();
    let data = windows(200, 12);
    let ranges = f.calibrate(data.chunks_exact(12)).unwrap();
    let q = HostModel::int8(&p, &ranges).unwrap();
    assert!(q.is_int8());
    let sf = score_windows(&f, data.chunks_exact(12), ScoreKind::Elbo, 0).unwrap();
    let sq = score_windows(&q, data.chunks_exact(12), ScoreKind::Elbo, 0).unwrap();
    // mean absolute difference relative to the spread of the scores
    let mean: f64 = sf.iter().map(|s| f64::from(s.score)).sum::<f64>() / sf.len() as f64;
    let spread: f64 = (sf
        .iter()
        .map(|s| (f64::from(s.score) - mean).powi(2))
        .sum::<f64>()
        / sf.len() as f64)
        .sqrt();
    let mad: f64 = sf
        .iter()
        .zip(&sq)
        .map(|(a, b)| f64::from((a.score - b.score).abs()))
        .sum::<f64>()
        / sf.len() as f64;
    assert!(
        mad < 0.05 * spread,
        "mean |f32 - int8| {mad} vs score std {spread}"
    );
    // sampled scores run too and are reproducible
    let k = ScoreKind::Iwae { samples: 4 };
    let a = score_windows(&q, data.chunks_exact(12), k, 3).unwrap();
    let b = score_windows(&q, data.chunks_exact(12), k, 3).unwrap();
    assert_eq!(a, b);
}

#[test]
fn weight_quantization_is_per_row_symmetric() {
    let l = Linear {
        weight: vec![1.0, -0.5, 0.25, 0.0, 0.0, 0.0],
        bias: vec![0.1, 0.0],
        in_features: 3,
        out_features: 2,
    };
    let q = QLayer::quantize(
        &l,
        QParams::new(0.1, 3),
        QParams::new(0.05, -10),
        Activation::Relu,
    )
    .unwrap();
    assert_eq!(q.weights, [127, -64, 32, 0, 0, 0]); // -63.5 rounds away from zero
    assert_eq!(q.weight_scales, [1.0 / 127.0, 1.0]);
    // bias: round(0.1 / (0.1 / 127)) = 127, minus zp 3 * (127 - 64 + 32)
    assert_eq!(q.bias, [127 - 3 * 95, 0]);
    assert_eq!(q.act_min, -10);
}
