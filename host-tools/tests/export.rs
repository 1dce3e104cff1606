//! Export golden files: `tinyvae export`'s Rust source for a fixed small model is compared byte
//! for byte with `tests/golden/model_int8.rs` and `model_f32.rs` (determinism and format
//! stability; regenerate with `TINYVAE_OVERWRITE=1 cargo test -p tinyvae-host-tools --test
//! export`), the golden files are compiled into this test (so the exported code compiles against
//! the library), and the typed models they define score every window with the same bits as the
//! host's runtime model.

use tinyvae::{ScoreKind, VaeModel, Workspace};
use tinyvae_host_tools::checkpoint::{Checkpoint, CheckpointConfig};
use tinyvae_host_tools::export;
use tinyvae_host_tools::model::{self, HostModel};
use tinyvae_host_tools::train::{Arch, NoiseKind, Params, TrainConfig};

#[allow(dead_code, clippy::all, clippy::unreadable_literal)]
mod golden_int8 {
    include!("golden/model_int8.rs");
}

#[allow(dead_code, clippy::all, clippy::unreadable_literal)]
mod golden_f32 {
    include!("golden/model_f32.rs");
}

const WINDOW: usize = 4;
const CHANNELS: usize = 3;

fn checkpoint() -> Checkpoint {
    let arch = Arch {
        input: WINDOW * CHANNELS,
        encoder_hidden: vec![10, 6],
        latent: 3,
        decoder_hidden: vec![7],
        noise: NoiseKind::PerFeature,
        channels: CHANNELS,
    };
    let mut params = Params::init(&arch, 11).unwrap();
    for (i, v) in params.decoder_logvar.iter_mut().enumerate() {
        *v = -1.0 + 0.17 * i as f32;
    }
    let config = CheckpointConfig::new(
        vec!["ax".into(), "ay".into(), "az".into()],
        WINDOW,
        2,
        vec![0.25, -1.5, 9.81],
        vec![0.5, 2.0, 0.125],
        arch,
        TrainConfig::default(),
    );
    Checkpoint { config, params }
}

/// Deterministic pseudo-random standardized windows.
fn windows(n: usize) -> Vec<f32> {
    let mut x = 0x1234_5678u32;
    (0..n * WINDOW * CHANNELS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 4001) as f32 / 1000.0 - 2.0
        })
        .collect()
}

fn models() -> (Checkpoint, HostModel, HostModel) {
    let ck = checkpoint();
    let f = HostModel::float(&ck.params).unwrap();
    let ranges = f.calibrate(windows(64).chunks_exact(12)).unwrap();
    let q = HostModel::int8(&ck.params, &ranges).unwrap();
    (ck, f, q)
}

fn check_golden(name: &str, src: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("TINYVAE_OVERWRITE").is_some() {
        std::fs::write(&path, src).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != src {
        let line = want
            .lines()
            .zip(src.lines())
            .position(|(a, b)| a != b)
            .map_or(want.lines().count().min(src.lines().count()) + 1, |i| i + 1);
        panic!(
            "{} differs from the export at line {line} (regenerate with TINYVAE_OVERWRITE=1 if the \
             change is intended)",
            path.display()
        );
    }
}

#[test]
fn export_matches_golden_files_and_is_deterministic() {
    let (ck, f, q) = models();
    let a = export::export_int8(&ck, &q, 12.5).unwrap();
    let (ck2, _, q2) = models();
    let b = export::export_int8(&ck2, &q2, 12.5).unwrap();
    assert_eq!(a, b, "two exports of the same model differ");
    export::verify(&a).unwrap();
    check_golden("model_int8.rs", &a);
    let s = export::export_f32(&ck, &f, 11.25).unwrap();
    export::verify(&s).unwrap();
    check_golden("model_f32.rs", &s);
    // an edited body is detected
    let edited = a.replacen(
        "pub const WINDOW: usize = 4;",
        "pub const WINDOW: usize = 5;",
        1,
    );
    assert!(export::verify(&edited).is_err());
}

#[test]
fn golden_files_are_rustfmt_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let out = std::process::Command::new("rustfmt")
        .args(["--edition", "2021", "--check"])
        .arg(dir.join("model_int8.rs"))
        .arg(dir.join("model_f32.rs"))
        .output();
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "rustfmt --check:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("rustfmt not available ({e}); skipping the format check"),
    }
}

#[test]
fn exported_typed_models_score_like_the_host_model() {
    let (_, f, q) = models();
    assert_eq!(golden_int8::THRESHOLD, 12.5);
    assert_eq!(golden_int8::INPUT, 12);
    assert_eq!(golden_int8::LATENT, 3);
    assert_eq!(golden_int8::NORM_MEAN, [0.25, -1.5, 9.81]);
    assert_eq!(golden_int8::SCORE, ScoreKind::Elbo);
    let data = windows(50);
    for kind in [ScoreKind::Elbo, ScoreKind::Iwae { samples: 5 }] {
        let want_q = model::score_windows(&q, data.chunks_exact(12), kind, 9).unwrap();
        let want_f = model::score_windows(&f, data.chunks_exact(12), kind, 9).unwrap();
        let mut wq: Workspace<_, 12, 3> = Workspace::new(golden_int8::Model::SCRATCH);
        let mut wf: Workspace<_, 12, 3> = Workspace::new(golden_f32::Model::SCRATCH);
        for (k, x) in data.chunks_exact(12).enumerate() {
            let x: &[f32; 12] = x.try_into().unwrap();
            let mut rng = tinyvae::window_rng(9, k as u64);
            let got = wq.score(&golden_int8::MODEL, x, kind, &mut rng).unwrap();
            assert_eq!(
                got.score.to_bits(),
                want_q[k].score.to_bits(),
                "int8 window {k} {kind:?}: typed {} vs host {}",
                got.score,
                want_q[k].score
            );
            let mut rng = tinyvae::window_rng(9, k as u64);
            let got = wf.score(&golden_f32::MODEL, x, kind, &mut rng).unwrap();
            assert_eq!(
                got.score.to_bits(),
                want_f[k].score.to_bits(),
                "f32 window {k} {kind:?}: typed {} vs host {}",
                got.score,
                want_f[k].score
            );
        }
    }
    assert_eq!(golden_int8::MODEL.input_dim(), q.input);
}
