//! The host side of the parity check: `firmware/host-ref`, the firmware's pipeline crate
//! compiled for the host, run with the same model and stream.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use super::cargo_build::{cargo_in_firmware, firmware_dir};
use super::records::Record;

/// The host triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .current_dir(firmware_dir())
        .output()
        .context("running `rustc -vV`")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("`rustc -vV` printed no host triple")
}

/// Builds and runs the host reference; returns its lines as records.
pub(super) fn run(model: Option<&Path>) -> Result<Vec<Record>> {
    let triple = host_triple()?;
    let mut cmd = cargo_in_firmware(model)?;
    cmd.args(["run", "--release", "--quiet", "-p", "tinyvae-host-ref"])
        .args(["--target", &triple])
        .env(
            "CARGO_TARGET_DIR",
            firmware_dir().join("target").join("host"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().context("running the host reference")?;
    if !out.status.success() {
        bail!(
            "the host reference (firmware/host-ref) failed: {}",
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(Record::parse)
        .collect())
}
