//! The checkpoint loader (`config.json` + `model.safetensors`, what `tinyvae_host_tools::
//! checkpoint::load` reads from a directory), in memory, then the f32 model built from it and
//! one window scored.
//!
//! Input: byte 0 even: raw, `[len: u16 LE][config.json: len bytes][model.safetensors: rest]`.
//! Byte 0 odd: structured, a valid checkpoint whose shape comes from bytes 1..8, then mutated
//! by `(position: u16 LE, xor: u8)` triples (position's top bit picks the weights file), so the
//! fuzzer starts deep inside both formats.
//!
//! Checked: no panic; a loaded checkpoint validates, builds a model and scores a window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyvae::ScoreKind;
use tinyvae_host_tools::checkpoint::{weights_from_bytes, weights_to_bytes, CheckpointConfig};
use tinyvae_host_tools::model::{score_windows, HostModel};
use tinyvae_host_tools::train::{Arch, NoiseKind, Params, TrainConfig};

fn structured(spec: &[u8], edits: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let b = |i: usize| usize::from(spec.get(i).copied().unwrap_or(1));
    let channels = 1 + b(0) % 4;
    let window = 1 + b(1) % 6;
    let hidden = |i: usize| (0..1 + b(i) % 3).map(|k| 1 + (b(i + 1) + k) % 7).collect();
    let arch = Arch {
        input: channels * window,
        encoder_hidden: hidden(2),
        latent: 1 + b(4) % 4,
        decoder_hidden: hidden(5),
        noise: match b(7) % 3 {
            0 => NoiseKind::PerFeature,
            1 => NoiseKind::PerChannel,
            _ => NoiseKind::Unit,
        },
        channels,
    };
    let params = Params::init(&arch, b(0) as u64).ok()?;
    let config = CheckpointConfig::new(
        (0..channels).map(|c| format!("ch{c}")).collect(),
        window,
        1,
        vec![0.5; channels],
        vec![2.0; channels],
        arch,
        TrainConfig::default(),
    );
    let mut json = serde_json::to_vec(&config).ok()?;
    let mut weights = weights_to_bytes(&params).ok()?;
    for e in edits.chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([e[0], e[1]]));
        let target = if pos & 0x8000 == 0 {
            &mut json
        } else {
            &mut weights
        };
        let len = target.len();
        if len > 0 {
            target[(pos & 0x7FFF) % len] ^= e[2];
        }
    }
    Some((json, weights))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (json, weights) = if mode & 1 == 0 {
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (j, w) = rest.split_at(len);
        (j.to_vec(), w.to_vec())
    } else {
        let (spec, edits) = rest.split_at(rest.len().min(8));
        let Some(files) = structured(spec, edits) else {
            return;
        };
        files
    };
    // The steps of `checkpoint::load`, in memory.
    let Ok(config) = serde_json::from_slice::<CheckpointConfig>(&json) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let Ok(params) = weights_from_bytes(&weights, &config.arch, "model.safetensors") else {
        return;
    };
    // A loaded checkpoint is usable: the model builds and scores a window.
    if config.arch.input > 4096 {
        return;
    }
    let model = HostModel::float(&params).expect("a loaded checkpoint builds its f32 model");
    let x = vec![0.25f32; config.arch.input];
    let scores = score_windows(&model, std::iter::once(&x[..]), ScoreKind::Elbo, 0)
        .expect("a loaded checkpoint scores a finite window");
    assert_eq!(scores.len(), 1);
});
