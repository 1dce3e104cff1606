//! Compiles in the model and (feature `stream`) the test stream.
//!
//! Model: the Rust source written by `tinyvae export` (it defines `pub static MODEL` and the
//! constants `WINDOW`, `CHANNELS`, `STRIDE`, `NORM_MEAN`, `NORM_STD`, `THRESHOLD`). Its path is
//! `$TINYVAE_MODEL` (absolute, or relative to `firmware/`), default
//! `firmware/model/default_model.rs`. Changing the file or the variable rebuilds the firmware.
//!
//! Stream: the first [`STREAM_ROWS`] rows of `$TINYVAE_STREAM` (default the bundled
//! `data/watch_shoulder_pen/test.csv`), as `f32` bit patterns (so the firmware holds exactly the
//! values Rust's `str::parse::<f32>` gives on the host).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Rows of the test stream compiled in: 2,048 rows x 6 channels x 4 bytes = 48 KiB of flash, so
/// the stream, the model and the code fit the micro:bit's 256 KiB. Of the bundled test set these
/// are 1,441 normal samples (pendulum, subject 8 right arm) then 607 anomalous ones (abduction),
/// i.e. 63 windows of 64 with stride 32.
const STREAM_ROWS: usize = 2048;

fn resolve(firmware: &Path, var: &str, default: &str) -> PathBuf {
    println!("cargo::rerun-if-env-changed={var}");
    match env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => firmware.join(p), // `join` keeps an absolute path as is
        None => firmware.join(default),
    }
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let firmware = manifest
        .parent()
        .expect("pipeline/ is inside firmware/")
        .to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let model = resolve(&firmware, "TINYVAE_MODEL", "model/default_model.rs");
    if !model.is_file() {
        panic!(
            "model source {} not found: export one with `tinyvae export --out <file.rs>` and set \
             TINYVAE_MODEL to its path (absolute, or relative to firmware/)",
            model.display()
        );
    }
    let model = model.canonicalize().expect("canonical model path");
    println!("cargo::rerun-if-changed={}", model.display());
    println!("cargo::rustc-env=TINYVAE_MODEL_RS={}", model.display());

    if env::var_os("CARGO_FEATURE_STREAM").is_some() {
        let csv = resolve(
            &firmware,
            "TINYVAE_STREAM",
            "../data/watch_shoulder_pen/test.csv",
        );
        println!("cargo::rerun-if-changed={}", csv.display());
        let text = fs::read_to_string(&csv)
            .unwrap_or_else(|e| panic!("reading the test stream {}: {e}", csv.display()));
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .next()
            .expect("CSV header")
            .split(',')
            .map(str::trim)
            .collect();
        let channels: Vec<usize> = (0..header.len())
            .filter(|&i| !header[i].eq_ignore_ascii_case("label"))
            .collect();
        let mut src = String::new();
        let mut rows = 0;
        for (n, line) in lines.take(STREAM_ROWS).enumerate() {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(
                fields.len(),
                header.len(),
                "{}:{}: ragged row",
                csv.display(),
                n + 2
            );
            src.push_str("    [");
            for &c in &channels {
                let v: f32 = fields[c]
                    .parse()
                    .unwrap_or_else(|_| panic!("{}:{}: not a number", csv.display(), n + 2));
                let _ = write!(src, "0x{:08x}, ", v.to_bits());
            }
            src.push_str("],\n");
            rows += 1;
        }
        let file = format!(
            "/// Rows of the compiled-in test stream (the first rows of `{name}`).\n\
             pub const ROWS: usize = {rows};\n\
             /// Channels per row.\n\
             pub const COLUMNS: usize = {cols};\n\
             /// The samples as `f32` bit patterns, row by row.\n\
             pub static BITS: [[u32; COLUMNS]; ROWS] = [\n{src}];\n",
            name = csv
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cols = channels.len(),
        );
        fs::write(out.join("stream.rs"), file).expect("write stream.rs");
    }
}
