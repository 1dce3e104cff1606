//! Helpers shared by the end-to-end tests of the `tinyvae` binary (`cli.rs`, `input_errors.rs`,
//! `output_safety.rs`, `memory_bounds.rs`): slices of the bundled data set, running the binary,
//! the small model's options, and training it.
//!
//! Each test file is its own crate and uses only some of these, hence `allow(dead_code)`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A file of the bundled data set.
pub fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/watch_shoulder_pen")
        .join(name)
}

/// The header and rows `from..to` of a bundled file, written to `dir/name`.
pub fn slice_rows(dir: &Path, src: &str, name: &str, from: usize, to: usize) -> PathBuf {
    let text = std::fs::read_to_string(data_file(src)).unwrap();
    let mut lines = text.lines();
    let mut out = String::from(lines.next().unwrap());
    out.push('\n');
    for l in lines.skip(from).take(to - from) {
        out.push_str(l);
        out.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// The header and the first `rows` rows of a bundled file, written to `dir/name`.
pub fn slice(dir: &Path, src: &str, name: &str, rows: usize) -> PathBuf {
    slice_rows(dir, src, name, 0, rows)
}

/// A path as `&str` (the tests' paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the `tinyvae` binary (without `TINYVAE_MODEL` from the environment).
pub fn tinyvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(args)
        .env_remove("TINYVAE_MODEL")
        .output()
        .unwrap()
}

/// Asserts that `o`, the output of `tinyvae args`, succeeded; returns it.
pub fn succeeded(args: &[&str], o: Output) -> Output {
    assert!(
        o.status.success(),
        "tinyvae {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    String::from_utf8(succeeded(args, tinyvae(args)).stdout).unwrap()
}

/// Runs a command that must succeed; returns its stderr (notes and warnings).
pub fn ok_stderr(args: &[&str]) -> String {
    String::from_utf8_lossy(&succeeded(args, tinyvae(args)).stderr).to_string()
}

/// Asserts that `err`, the stderr of `tinyvae args` with exit status `code`, is one failure
/// line (`error: ...`, status 1, no panic); returns it trimmed.
pub fn one_error_line(args: &[&str], code: Option<i32>, err: &str) -> String {
    assert_eq!(code, Some(1), "tinyvae {args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err.trim_end().to_string()
}

/// Runs a command that must fail; returns its one-line error message.
pub fn fails(args: &[&str]) -> String {
    let o = tinyvae(args);
    one_error_line(args, o.status.code(), &String::from_utf8_lossy(&o.stderr))
}

/// The small model of the tests (kept fast: windows of 16 samples, a 96-16-4 model, 2 samples
/// of the sampled scores), without `--epochs`.
pub const SMALL_MODEL: [&str; 12] = [
    "--window",
    "16",
    "--stride",
    "8",
    "--hidden",
    "16",
    "--latent",
    "4",
    "--samples",
    "2",
    "--quiet",
    "--seed=3",
];

/// [`SMALL_MODEL`] with `epochs` epochs.
pub fn small(epochs: &'static str) -> Vec<&'static str> {
    let mut v = SMALL_MODEL.to_vec();
    v.extend(["--epochs", epochs]);
    v
}

/// `train --data DATA --out OUT`, to extend with options.
pub fn train_args<'a>(data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec!["train", "--data", s(data), "--out", s(out)]
}

/// `demo --out OUT --train-data TRAIN --test-data TEST`, to extend with options.
pub fn demo_args<'a>(out: &'a Path, train: &'a Path, test: &'a Path) -> Vec<&'a str> {
    vec![
        "demo",
        "--out",
        s(out),
        "--train-data",
        s(train),
        "--test-data",
        s(test),
    ]
}

/// `score --model MODEL --data DATA --out OUT`, to extend with options.
pub fn score_args<'a>(model: &'a str, data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["score", "--model", model, "--data", data, "--out", out]
}

/// Trains the small model for `epochs` epochs on `data` into `out`; returns `out`.
pub fn train_small(data: &Path, out: &Path, epochs: &'static str) -> PathBuf {
    let mut args = train_args(data, out);
    args.extend(small(epochs));
    ok(&args);
    out.to_path_buf()
}
