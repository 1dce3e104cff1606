//! The `tinyvae` commands, one file each (like cargo's `commands/<name>.rs`): its clap
//! arguments (`<Name>Args`) and its `run`. A command parses and checks its options, calls the
//! library's [`tinyvae_host_tools::pipeline`] and prints; the work itself lives in the library so
//! that `demo`, `eval`, the tests and the benches call the same functions.
//!
//! The commands live in the binary, not in the library: they are the command-line surface
//! (clap types, what is printed, exit codes) and nothing else links them; the library keeps
//! plain inputs and outputs.

pub mod demo;
pub mod eval;
pub mod export;
pub mod firmware;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod import;
pub mod poe;
pub mod quantize;
pub mod score;
pub mod train;

/// The error chain on one line (`outer: inner: ...`), newlines flattened.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// `v` with `prec` decimals, or `-` when there is none (table cells).
fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.prec$}"))
}

/// Bytes as `12.3 KB` (table cells).
fn kb(bytes: usize) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}
