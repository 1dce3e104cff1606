//! The chip check: the exported int8 model run on a Cortex-M core in QEMU and compared window by
//! window with this host's detector ([`chip_vs_host`]; [`poe_chip_vs_host`] for a multi-sensor
//! model); [`firmware_check`] is the demo's JSON summary of it on the Cortex-M4.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::checkpoint::CheckpointConfig;
use crate::data;
use crate::firmware::{self, Core, CoreParity};
use crate::model::{HostModel, PoeHost};
use crate::pipeline::poe_stream::{run_poe_with, PoeStream};
use crate::poe_checkpoint::PoeConfig;
use crate::stream;

/// Runs the exported model `model_rs` on `cores` in QEMU (the firmware's `score` program, which
/// streams the first rows of the bundled test set through the library's detector) and compares
/// every window (score and alarm level as bits, alarm, alarm event) with this host tool's own
/// detector over the same rows (`int8` model, the checkpoint's standardization and stride, the
/// exported score kind and threshold): what `tinyvae score` computes.
///
/// # Errors
/// A failed build or run.
pub fn chip_vs_host(
    cores: &[Core],
    model_rs: &Path,
    int8: &HostModel,
    cfg: &CheckpointConfig,
    threshold: f32,
) -> Result<Vec<CoreParity>> {
    firmware::parity_with_host_scores(cores, Some(model_rs), |pass| {
        // The chip streams the columns in file order.
        let series = data::load_csv_with(&pass.csv, data::NonFinite::Keep)?
            .select_channels_with(&cfg.channels, crate::columns::Matching::ByPosition)?;
        let kind = pass.kind.unwrap_or(tinyvae::ScoreKind::Elbo);
        let mut sc = stream::StreamConfig::new(kind, cfg.stride, 0, threshold);
        sc.limits = pass.limits;
        stream::run(int8, cfg, &series, &sc)
    })
}

/// [`chip_vs_host`] for a multi-sensor (product-of-experts) model: the exported int8 PoE model
/// `model_rs` on `cores`, every window of the four passes (clean, IWAE-K, fault-injected and
/// dead-sensor) compared with this host's detector over the PoE model `int8` (what `tinyvae
/// score` runs for a `--group` checkpoint): score and alarm level bits, alarm, event, fault
/// masks and the groups each window was scored with. `threshold` is the full-set threshold.
///
/// # Errors
/// A failed build or run.
pub fn poe_chip_vs_host(
    cores: &[Core],
    model_rs: &Path,
    int8: &PoeHost,
    cfg: &PoeConfig,
    threshold: f32,
) -> Result<Vec<CoreParity>> {
    firmware::parity_with_host_scores(cores, Some(model_rs), |pass| {
        let series = data::load_csv_with(&pass.csv, data::NonFinite::Keep)?
            .select_channels_with(&cfg.channels, crate::columns::Matching::ByPosition)?;
        let opts = PoeStream {
            kind: pass.kind.unwrap_or(tinyvae::ScoreKind::Elbo),
            stride: cfg.stride,
            seed: 0,
            alarm: tinyvae::AlarmConfig::threshold(threshold),
            limits: pass.limits,
            alarm_on_flagged: false,
            attribution: false,
        };
        run_poe_with(int8, cfg, &series, &opts)
    })
}

/// [`chip_vs_host`] on the Cortex-M4, as JSON for the demo. QEMU and the M4 target are set up
/// first as `cargo xtask test` does ([`crate::setup::for_demo`]); `{"skipped": why}` when QEMU
/// is missing and cannot be installed here.
///
/// # Errors
/// A failed build or run.
pub fn firmware_check(
    model_rs: &Path,
    int8: &HostModel,
    cfg: &CheckpointConfig,
    threshold: f32,
) -> Result<Value> {
    if crate::setup::for_demo(&firmware::firmware_dir()).is_err() {
        return Ok(serde_json::json!({"skipped": "qemu-system-arm is not installed"}));
    }
    let t0 = std::time::Instant::now();
    let r = chip_vs_host(&[Core::M4], model_rs, int8, cfg, threshold)?;
    let p = r.first().context("no parity result")?;
    Ok(serde_json::json!({
        "core": p.core,
        "machine": p.machine,
        "windows": p.windows,
        "all_equal": p.mismatch.is_none(),
        "first_mismatch": p.mismatch,
        "seconds": t0.elapsed().as_secs_f64(),
    }))
}
