//! `tinyvae export`: write a checkpoint's model (int8 by default) as Rust source for the
//! firmware.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use tinyvae_host_tools::export;
use tinyvae_host_tools::output::{self, Input};
use tinyvae_host_tools::pipeline::load_model;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint directory (written by `train`, `quantize` or `demo`'s `model/`).
    #[arg(long)]
    model: PathBuf,
    /// Rust source file to write.
    #[arg(long)]
    out: PathBuf,
    /// Export the f32 model instead of the int8 one.
    #[arg(long)]
    f32: bool,
    /// Alarm threshold to export instead of the checkpoint's calibrated one (e.g. a device's
    /// from `tinyvae fleet calibrate`); any number but NaN.
    #[arg(long, allow_hyphen_values = true, value_parser = tinyvae_host_tools::options::parse_f32)]
    threshold: Option<f32>,
}

/// Runs `tinyvae export`.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: ExportArgs) -> Result<()> {
    output::check_file(&a.out, &[Input::Dir(&a.model)])?;
    if tinyvae_host_tools::poe_checkpoint::is_poe(&a.model) {
        return export_poe(&a);
    }
    let mut m = load_model(&a.model)?;
    if let Some(t) = a.threshold {
        if t.is_nan() {
            anyhow::bail!("--threshold NaN is outside its valid range: any number but NaN");
        }
        m.th.f32 = t;
        m.th.int8 = t;
    }
    let src = if a.f32 {
        export::export_f32(&m.ck, &m.f32, m.th.f32)?
    } else {
        export::export_int8(&m.ck, &m.int8, m.th.int8)?
    };
    output::write_file(&a.out, src.as_bytes())?;
    eprintln!(
        "wrote {} ({} model, {} bytes of parameters, threshold {})",
        a.out.display(),
        if a.f32 { "f32" } else { "int8" },
        {
            let hm = if a.f32 { &m.f32 } else { &m.int8 };
            // A mixture stores every expert and the gate.
            hm.moe
                .as_ref()
                .map_or_else(|| hm.param_bytes(), |x| x.param_bytes())
        },
        if a.f32 { m.th.f32 } else { m.th.int8 }
    );
    Ok(())
}

/// `tinyvae export` of a multi-sensor (`--group`) checkpoint: its int8 model.
fn export_poe(a: &ExportArgs) -> Result<()> {
    if a.f32 {
        anyhow::bail!(
            "--f32: a multi-sensor (--group) checkpoint exports its int8 model only (drop --f32)"
        );
    }
    if a.threshold.is_some() {
        anyhow::bail!(
            "--threshold: a multi-sensor (--group) checkpoint has one threshold per sensor subset; \
             --threshold overrides a single-sensor model's only (drop --threshold)"
        );
    }
    let m = tinyvae_host_tools::pipeline::poe::load_poe(&a.model)?;
    let cal = m.ck.config.calibration.as_ref();
    let table = tinyvae_host_tools::pipeline::poe::threshold_table(
        &m.ck.config,
        &cal.map(|c| c.thresholds_int8.clone()).unwrap_or_default(),
    );
    let src = export::export_poe_int8(&m.ck, &m.int8, &table)?;
    output::write_file(&a.out, src.as_bytes())?;
    eprintln!(
        "wrote {} (int8 product-of-experts model, {} groups, {} bytes of parameters, threshold {})",
        a.out.display(),
        m.ck.config.groups.len(),
        m.int8.param_bytes(true),
        table[m.int8.groups.all().index()]
    );
    Ok(())
}
