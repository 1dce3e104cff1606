//! Per-group decoders of the product-of-experts model (`DecoderLayout::PerGroup`): trained as
//! the block-diagonal part of a shared-layout decoder, cut out into one decoder per group, and
//! run through the library's `PoeVae` (each group's decoder written into its channels). The
//! cut-out decoders must compute the trained network's function, and checkpoints must keep them.

use tinyvae::{GroupSet, ScoreKind};
use tinyvae_host_tools::data::WindowView;
use tinyvae_host_tools::model::{PoeHost, PoeRanges};
use tinyvae_host_tools::train::poe::{train_poe, DecoderLayout, PoeArch, PoeLayout};
use tinyvae_host_tools::train::{NoiseKind, TrainConfig};

const W: usize = 4;
const C: usize = 6;

/// Groups that take the gather's 3-axis path (`[0, 1, 2]`, `[3, 4, 5]`) or its general one.
fn arch(groups: Vec<Vec<usize>>, decoder: DecoderLayout) -> PoeArch {
    PoeArch {
        window: W,
        channels: C,
        groups,
        encoder_hidden: vec![5],
        latent: 3,
        decoder_hidden: vec![4, 6],
        noise: NoiseKind::PerFeature,
        decoder,
    }
}

/// Smooth random windows (a splitmix64 stream through sin, so every feature varies).
fn windows(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n * W * C)
        .map(|i| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let u = (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            (i as f32 * 0.37).sin() + u
        })
        .collect()
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: 8,
        quiet: true,
        ..TrainConfig::default()
    }
}

#[test]
fn per_group_decoders_compute_the_trained_block_diagonal_network() {
    for groups in [
        vec![vec![0, 1, 2], vec![3, 4, 5]],
        vec![vec![0, 2, 4], vec![1, 3, 5]],
        vec![vec![0, 5], vec![1, 2], vec![3, 4]],
    ] {
        let a = arch(groups.clone(), DecoderLayout::PerGroup);
        let g = groups.len();
        // The weights outside the blocks start at 0 and stay there through training.
        let layout = PoeLayout::new(&a).unwrap();
        let off = layout.off_block();
        // Layer 2 (6g x 4g): all but g blocks of 6 x 4; output (X x 6g): all but 6 per feature.
        assert_eq!(off.len(), 6 * 4 * g * (g - 1) + W * C * 6 * (g - 1));
        let train = windows(64, 1);
        let val = windows(16, 2);
        let (p, _) = train_poe(
            &a,
            &config(3),
            WindowView::contiguous(&train, W * C).unwrap(),
            WindowView::contiguous(&val, W * C).unwrap(),
        )
        .unwrap();
        // Trained: the second layer's and the output's weights outside the blocks are 0.
        let l2 = &p.decoder[1];
        for o in 0..6 * g {
            for i in 0..4 * g {
                if o / 6 != i / 4 {
                    assert_eq!(l2.weight[o * 4 * g + i], 0.0, "layer 2 ({o}, {i})");
                }
            }
        }
        let out = &p.decoder_out;
        for j in 0..W * C {
            let gj = groups.iter().position(|m| m.contains(&(j % C))).unwrap();
            for i in 0..6 * g {
                if i / 6 != gj {
                    assert_eq!(out.weight[j * 6 * g + i], 0.0, "output ({j}, {i})");
                }
            }
        }
        // The cut-out decoders: right shapes, and putting them back gives the same layers.
        let ds = p.decoders();
        assert_eq!(ds.len(), g);
        for (d, m) in ds.iter().zip(&groups) {
            assert_eq!(d.hidden[0].out_features, 4);
            assert_eq!(d.hidden[1].out_features, 6);
            assert_eq!(d.out.out_features, W * m.len());
        }
        let mut q = p.clone();
        q.set_decoders(&ds).unwrap();
        assert_eq!(q, p);
        // The same trained network read as one shared decoder (widths 4g, 6g, zeros outside
        // the blocks): equal scores for every subset.
        let mut shared = p.clone();
        shared.arch.decoder = DecoderLayout::Shared;
        shared.arch.decoder_hidden = vec![4 * g, 6 * g];
        let split = PoeHost::float(&p).unwrap();
        let whole = PoeHost::float(&shared).unwrap();
        assert_eq!(split.decoders.len(), g);
        assert_eq!(whole.decoders.len(), 1);
        let test = windows(20, 3);
        for bits in 1..(1u8 << g) {
            let s = GroupSet(bits);
            let a = split
                .scores(test.chunks_exact(W * C), s, ScoreKind::Elbo, 0)
                .unwrap();
            let b = whole
                .scores(test.chunks_exact(W * C), s, ScoreKind::Elbo, 0)
                .unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "groups {groups:?}, subset {bits}: {x} vs {y}"
                );
            }
        }
        // int8: one range set per decoder, and the quantized model runs.
        let r = split.calibrate(train.chunks_exact(W * C)).unwrap();
        assert_eq!(r.decoders.len(), g);
        let q8 = PoeHost::int8(&p, &r).unwrap();
        let s8 = q8
            .scores(
                test.chunks_exact(W * C),
                GroupSet::first(g),
                ScoreKind::Elbo,
                0,
            )
            .unwrap();
        assert!(s8.iter().all(|v| v.is_finite()));
    }
}

/// Ranges written before per-group decoders (`decoder`, `output` of the one shared decoder)
/// still load, as that decoder's.
#[test]
fn shared_decoder_ranges_of_older_checkpoints_load() {
    let old =
        r#"{"experts": [], "z": [-1.0, 1.0], "decoder": [[0.0, 2.0]], "output": [-3.0, 3.0]}"#;
    let r: PoeRanges = serde_json::from_str(old).unwrap();
    assert_eq!(r.decoders.len(), 1);
    assert_eq!(r.decoders[0].hidden, vec![(0.0, 2.0)]);
    assert_eq!(r.decoders[0].output, (-3.0, 3.0));
    let again: PoeRanges = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(again, r);
}
