//! Finite-difference check of the hand-written gradients, and training-level properties.
//!
//! The check: f64, central differences with h = 1e-5, over EVERY parameter of small models
//! (X = 6, encoder hidden 5, Z = 2, decoder hidden 4, batch 3, and deeper / per-channel / unit /
//! clamped variants), against `Model::<f64>::loss_grad` — the same generic code that trains in
//! f32. A component passes when |analytic - numeric| / max(|analytic|, |numeric|, 1e-3) <= 1e-6
//! (observed worst: 1.8e-7; printed with `--nocapture`). Deliberately broken gradients (one
//! component off by 0.1 %, a wrong KL weight, a sign error in the noise) fail it by > 100x.

use tinyvae_host_tools::train::gradcheck::{check_model, real_grad, GradCheckReport, GradFn};
use tinyvae_host_tools::train::{self, Arch, Model, NoiseKind, Params, TrainConfig};

const H: f64 = 1e-5;
const FLOOR: f64 = 1e-3;
const TOL: f64 = 1e-6;
const BATCH: usize = 3;

fn small(noise: NoiseKind) -> Arch {
    Arch {
        input: 6,
        encoder_hidden: vec![5],
        latent: 2,
        decoder_hidden: vec![4],
        noise,
        channels: 2,
    }
}

fn run(
    arch: &Arch,
    seed: u64,
    beta: f64,
    edit: impl FnOnce(&mut Model<f64>, &mut [f64]),
    g: &mut GradFn<'_>,
) -> GradCheckReport {
    check_model(arch, BATCH, seed, beta, H, FLOOR, edit, g).unwrap()
}

fn assert_passes(what: &str, arch: &Arch, r: &GradCheckReport) {
    println!(
        "{what}: {} params, worst rel err {:.2e} at {} (analytic {:.9e}, numeric {:.9e}), max |g| {:.3}",
        r.checked, r.worst.rel_err, r.worst.tensor, r.worst.analytic, r.worst.numeric, r.max_abs_grad
    );
    let n = Model::<f64>::new(arch, 1).unwrap().num_params();
    assert_eq!(r.checked, n, "{what}: every parameter is checked");
    assert!(
        r.max_abs_grad > 1e-2,
        "{what}: gradients are not trivially zero"
    );
    assert!(
        r.worst.rel_err <= TOL,
        "{what}: gradient check failed at {} (index {}): analytic {:e}, numeric {:e}, rel err {:e} > {TOL:e}",
        r.worst.tensor,
        r.worst.index,
        r.worst.analytic,
        r.worst.numeric,
        r.worst.rel_err
    );
}

#[test]
fn gradient_matches_finite_differences_for_every_parameter() {
    let cases: Vec<(&str, Arch, f64)> = vec![
        ("per-feature beta=1", small(NoiseKind::PerFeature), 1.0),
        ("per-feature beta=0.3", small(NoiseKind::PerFeature), 0.3),
        ("per-channel", small(NoiseKind::PerChannel), 1.0),
        ("unit", small(NoiseKind::Unit), 0.7),
        (
            "3+3 hidden layers",
            Arch {
                input: 6,
                encoder_hidden: vec![5, 4, 3],
                latent: 2,
                decoder_hidden: vec![3, 4, 5],
                noise: NoiseKind::PerFeature,
                channels: 3,
            },
            1.0,
        ),
        (
            "2+1 hidden layers, wider latent",
            Arch {
                input: 8,
                encoder_hidden: vec![7, 6],
                latent: 3,
                decoder_hidden: vec![5],
                noise: NoiseKind::PerChannel,
                channels: 4,
            },
            1.0,
        ),
    ];
    for (what, arch, beta) in cases {
        for seed in [1u64, 2] {
            // Spread the decoder log-variances so their gradient terms are not all alike.
            let r = run(
                &arch,
                seed,
                beta,
                |m, t| {
                    let r = m.layout().noise.clone();
                    for (k, i) in r.enumerate() {
                        t[i] = 0.4 * k as f64 - 0.5;
                    }
                },
                &mut real_grad,
            );
            assert_passes(&format!("{what} seed {seed}"), &arch, &r);
        }
    }
}

#[test]
fn gradient_is_zero_through_active_clamps() {
    // Push decoder.logvar[1] above 7 and the first logvar head output below -10 for all windows:
    // the loss is flat in those directions and the analytic gradient must be too.
    let arch = small(NoiseKind::PerFeature);
    let r = run(
        &arch,
        3,
        1.0,
        |m, t| {
            let l = m.layout().clone();
            t[l.noise.start + 1] = 7.5;
            // logvar.bias[0] is at heads.b + Z.
            t[l.heads.b + arch.latent] = -14.0;
        },
        &mut real_grad,
    );
    assert_passes("clamped", &arch, &r);
    let m = Model::<f64>::new(&arch, 1).unwrap();
    let l = m.layout();
    let h = l.heads.inp;
    let flat: Vec<usize> = (l.heads.w + arch.latent * h..l.heads.w + arch.latent * h + h)
        .chain([l.heads.b + arch.latent, l.noise.start + 1])
        .collect();
    for i in flat {
        assert_eq!(
            r.analytic[i], 0.0,
            "component {i} passes through an active clamp"
        );
        assert!(
            r.numeric[i].abs() < 1e-9,
            "component {i}: numeric {}",
            r.numeric[i]
        );
    }
}

#[test]
fn a_broken_gradient_fails_the_check() {
    let arch = small(NoiseKind::PerFeature);
    let model = Model::<f64>::new(&arch, 1).unwrap();
    let n = model.num_params();
    let ranges = model.layout().tensor_ranges();
    // Break one component of each tensor in turn (first, middle, last element): scale by 1.001
    // (0.1 %), or add 1e-4 where the gradient is near zero. Every break must be caught.
    for (name, range) in &ranges {
        for idx in [range.start, (range.start + range.end) / 2, range.end - 1] {
            let mut broken =
                |m: &mut Model<f64>, t: &[f64], x: &[f64], e: &[f64], b: f64, g: &mut [f64]| {
                    real_grad(m, t, x, e, b, g)?;
                    g[idx] = if g[idx].abs() > 0.1 {
                        g[idx] * 1.001
                    } else {
                        g[idx] + 1e-4
                    };
                    Ok(())
                };
            let r = run(&arch, 1, 1.0, |_, _| {}, &mut broken);
            assert!(
                r.worst.rel_err > TOL && r.worst.index == idx,
                "break of {name} at index {idx} of {n} not detected: worst {:?}",
                r.worst
            );
        }
    }
    // A "realistic" bug: the gradient computed with a different KL weight than the loss
    // (e.g. forgetting the warm-up factor) must fail too.
    let mut wrong_beta =
        |m: &mut Model<f64>, t: &[f64], x: &[f64], e: &[f64], _b: f64, g: &mut [f64]| {
            real_grad(m, t, x, e, 1.0, g)
        };
    let r = run(&arch, 1, 0.5, |_, _| {}, &mut wrong_beta);
    assert!(
        r.worst.rel_err > 1e-2,
        "beta bug not detected: {:?}",
        r.worst
    );
    // And the reparameterization noise swapped for its negative.
    let mut wrong_eps =
        |m: &mut Model<f64>, t: &[f64], x: &[f64], e: &[f64], b: f64, g: &mut [f64]| {
            let neg: Vec<f64> = e.iter().map(|v| -v).collect();
            real_grad(m, t, x, &neg, b, g)
        };
    let r = run(&arch, 1, 1.0, |_, _| {}, &mut wrong_eps);
    assert!(
        r.worst.rel_err > 1e-2,
        "eps bug not detected: {:?}",
        r.worst
    );
}

#[test]
fn f32_gradient_agrees_with_f64() {
    // The training instantiation (f32) of the same code: within f32 rounding of the f64 one.
    let arch = Arch {
        input: 12,
        encoder_hidden: vec![8],
        latent: 3,
        decoder_hidden: vec![8],
        noise: NoiseKind::PerFeature,
        channels: 3,
    };
    let p = Params::init(&arch, 5).unwrap();
    let mut m32 = Model::<f32>::new(&arch, 4).unwrap();
    let mut m64 = Model::<f64>::new(&arch, 4).unwrap();
    let t32: Vec<f32> = m32.layout().flatten(&p).unwrap();
    let t64: Vec<f64> = m64.layout().flatten(&p).unwrap();
    let x32: Vec<f32> = (0..48)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    let e32: Vec<f32> = (0..12).map(|i| ((i * 5 % 7) as f32 - 3.0) / 2.0).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
    let e64: Vec<f64> = e32.iter().map(|&v| f64::from(v)).collect();
    let mut g32 = vec![0.0f32; t32.len()];
    let mut g64 = vec![0.0f64; t64.len()];
    let l32 = m32.loss_grad(&t32, &x32, &e32, 0.8, &mut g32).unwrap();
    let l64 = m64.loss_grad(&t64, &x64, &e64, 0.8, &mut g64).unwrap();
    assert!(
        (l32.loss - l64.loss).abs() < 1e-5 * l64.loss.abs(),
        "{l32:?} vs {l64:?}"
    );
    let scale = g64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in g32.iter().zip(&g64).enumerate() {
        assert!(
            (f64::from(a) - b).abs() <= 1e-5 * scale,
            "component {i}: f32 {a:e}, f64 {b:e} (scale {scale:e})"
        );
    }
}

fn synthetic(n: usize, w: usize, c: usize, seed: u32) -> Vec<f32> {
    // Sines with per-window phase and amplitude, plus a little deterministic "noise".
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 8) as f32 / 16_777_216.0
    };
    let mut v = Vec::with_capacity(n * w * c);
    for _ in 0..n {
        let phase = next() * std::f32::consts::TAU;
        let amp = 0.5 + next();
        for t in 0..w {
            for ch in 0..c {
                let f = 0.3 + 0.2 * ch as f32;
                v.push(amp * (f * t as f32 + phase).sin() + 0.1 * (next() - 0.5));
            }
        }
    }
    v
}

fn cfg(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: 16,
        kl_warmup: 2,
        patience: 3,
        seed,
        quiet: true,
        ..TrainConfig::default()
    }
}

fn bits(p: &Params) -> Vec<u32> {
    p.tensors()
        .iter()
        .flat_map(|(_, _, d)| d.iter().map(|v| v.to_bits()))
        .collect()
}

#[test]
fn training_is_bit_reproducible_and_seed_dependent() {
    let arch = small(NoiseKind::PerChannel);
    let arch = Arch {
        input: 16,
        channels: 2,
        ..arch
    };
    let data = synthetic(100, 8, 2, 1);
    let (tr, va) = data.split_at(80 * 16);
    let (p1, r1) = train::train(&arch, &cfg(6, 9), tr, va).unwrap();
    let (p2, r2) = train::train(&arch, &cfg(6, 9), tr, va).unwrap();
    assert_eq!(bits(&p1), bits(&p2), "same seed, different weights");
    let strip = |r: &train::TrainReport| {
        r.history
            .iter()
            .map(|e| (e.loss.to_bits(), e.val_elbo.map(f64::to_bits)))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&r1), strip(&r2));
    let (p3, _) = train::train(&arch, &cfg(6, 10), tr, va).unwrap();
    assert_ne!(bits(&p1), bits(&p3), "the seed must matter");
}

#[test]
fn training_lowers_the_loss_and_restores_the_best_epoch() {
    let arch = Arch {
        input: 24,
        encoder_hidden: vec![16],
        latent: 3,
        decoder_hidden: vec![16],
        noise: NoiseKind::PerFeature,
        channels: 3,
    };
    let data = synthetic(600, 8, 3, 2);
    let (tr, va) = data.split_at(500 * 24);
    let c = TrainConfig {
        epochs: 40,
        batch: 32,
        kl_warmup: 5,
        patience: 5,
        quiet: true,
        ..TrainConfig::default()
    };
    let init = Params::init(&arch, c.seed).unwrap();
    let before = init.elbo(&arch, va, 1).unwrap();
    let (p, r) = train::train(&arch, &c, tr, va).unwrap();
    let after = p.elbo(&arch, va, 1).unwrap();
    let h = &r.history;
    println!(
        "val -ELBO {:.3} -> {:.3}; epochs {}, best {}, train loss {:.3} -> {:.3}",
        before.loss,
        after.loss,
        h.len(),
        r.best_epoch,
        h[0].loss,
        h[h.len() - 1].loss
    );
    // beta = 1 from epoch 6 on; compare the first and last epochs with beta = 1.
    let first_full = h.iter().find(|e| e.beta == 1.0).unwrap();
    assert!(h.last().unwrap().loss < first_full.loss - 1.0, "{h:#?}");
    assert!(
        after.loss < before.loss - 10.0,
        "val -ELBO {} -> {}",
        before.loss,
        after.loss
    );
    // The returned weights are those of the best validation epoch.
    let best = h
        .iter()
        .map(|e| e.val_elbo.unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(h[r.best_epoch - 1].val_elbo, Some(best));
    assert_eq!(h[0].beta, 0.0);
    assert!(p.decoder_logvar.iter().all(|v| (-7.0..=7.0).contains(v)));
}

#[test]
fn bad_training_input_is_an_error() {
    let arch = small(NoiseKind::PerFeature);
    let c = cfg(1, 0);
    assert!(train::train(&arch, &c, &[], &[]).is_err());
    assert!(train::train(&arch, &c, &[0.0; 7], &[]).is_err());
    let mut d = vec![0.5f32; 12];
    d[8] = f32::NAN;
    let e = train::train(&arch, &c, &d, &[]).unwrap_err().to_string();
    assert!(e.contains("window 1 value 2"), "{e}");
    let bad = TrainConfig {
        batch: 0,
        ..c.clone()
    };
    assert!(train::train(&arch, &bad, &[0.0; 12], &[]).is_err());
    let bad_arch = Arch {
        encoder_hidden: vec![],
        ..arch
    };
    assert!(train::train(&bad_arch, &c, &[0.0; 12], &[]).is_err());
}

// ---- product of experts (train/poe/) ----

use tinyvae_host_tools::train::gradcheck::{check_poe, check_poe_weighted, rel_err};
use tinyvae_host_tools::train::poe::{DecoderLayout, PoeArch};

fn poe_arch(groups: Vec<Vec<usize>>, noise: NoiseKind) -> PoeArch {
    PoeArch {
        window: 2,
        channels: 3,
        groups,
        encoder_hidden: vec![4],
        latent: 2,
        decoder_hidden: vec![4],
        noise,
        decoder: DecoderLayout::Shared,
    }
}

#[test]
fn poe_gradient_matches_finite_differences() {
    for (what, arch, beta) in [
        (
            "poe 2 groups, per-feature",
            poe_arch(vec![vec![0, 2], vec![1]], NoiseKind::PerFeature),
            1.0,
        ),
        (
            "poe 3 groups, per-channel, beta 0.3",
            poe_arch(vec![vec![0], vec![1], vec![2]], NoiseKind::PerChannel),
            0.3,
        ),
        (
            "poe 1 group",
            poe_arch(vec![vec![0, 1, 2]], NoiseKind::PerFeature),
            1.0,
        ),
    ] {
        let r = check_poe(&arch, BATCH, 5, beta, H, FLOOR, |_, _| {}).unwrap();
        println!(
            "{what}: {} params, worst rel err {:.2e} at {}, max |g| {:.3}",
            r.checked, r.worst.0, r.worst.1, r.max_abs_grad
        );
        assert!(r.max_abs_grad > 1e-2, "{what}");
        assert!(r.worst.0 <= TOL, "{what}: {:?}", r.worst);
    }
}

#[test]
fn poe_gradient_check_sees_clamped_logvars_and_catches_a_broken_component() {
    let arch = poe_arch(vec![vec![0, 2], vec![1]], NoiseKind::PerFeature);
    // Push expert 1's logvar bias far below the clamp: its s gradient must be 0.
    let r = check_poe(&arch, BATCH, 9, 1.0, H, FLOOR, |l, t| {
        let h = l.experts[1].heads;
        t[h.b + 2] = -40.0;
    })
    .unwrap();
    assert!(r.worst.0 <= TOL, "{:?}", r.worst);
    // A 0.1 % error in one component is caught.
    let i = r
        .analytic
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0;
    let broken = r.analytic[i] * 1.001;
    assert!(rel_err(broken, r.numeric[i], FLOOR) > 100.0 * TOL);
}

#[test]
fn poe_gradient_with_weighted_single_groups_matches_finite_differences() {
    for (what, arch, w) in [
        (
            "poe 2 groups, single weight 2.5",
            poe_arch(vec![vec![0, 2], vec![1]], NoiseKind::PerFeature),
            2.5,
        ),
        (
            "poe 3 groups, per-channel, single weight 0.4",
            poe_arch(vec![vec![0], vec![1], vec![2]], NoiseKind::PerChannel),
            0.4,
        ),
    ] {
        let r = check_poe_weighted(&arch, w, BATCH, 5, 0.7, H, FLOOR, |_, _| {}).unwrap();
        println!(
            "{what}: {} params, worst rel err {:.2e} at {}",
            r.checked, r.worst.0, r.worst.1
        );
        assert!(r.worst.0 <= TOL, "{what}: {:?}", r.worst);
        // The weight must reach the gradient: it differs from the unweighted one.
        let u = check_poe(&arch, BATCH, 5, 0.7, H, FLOOR, |_, _| {}).unwrap();
        let diff = r
            .analytic
            .iter()
            .zip(&u.analytic)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff > 1e-3, "{what}: weight has no effect");
    }
}
