//! `tinyvae quantize`: recalibrate a checkpoint in place (int8 ranges and thresholds) and report
//! the f32/int8 score difference.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use tinyvae_host_tools::checkpoint;
use tinyvae_host_tools::columns::Matching;
use tinyvae_host_tools::data::{self, Norm};
use tinyvae_host_tools::output::{self, Input};
use tinyvae_host_tools::pipeline::calibrate::{calibrate, calibration_of, split_windows};
use tinyvae_host_tools::pipeline::moe;
use tinyvae_host_tools::pipeline::{
    default_data, load_checkpoint, CalibOpts, Calibration, CHECKPOINT_FILES,
};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Checkpoint directory (updated in place).
    #[arg(long)]
    model: PathBuf,
    /// Training stream the model was trained on [default: the one recorded in the checkpoint].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    calib: CalibOpts,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Use the stream's channel columns in file order instead of matching them to the model's
    /// channels by name (the default; extra columns are then ignored with a note).
    #[arg(long)]
    by_position: bool,
}

/// Runs `tinyvae quantize`.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: QuantizeArgs) -> Result<()> {
    let mut ck = load_checkpoint(&a.model)?;
    let recorded = ck
        .config
        .extra
        .get("calibration")
        .and_then(|c| serde_json::from_value::<Calibration>(c.clone()).ok());
    let data_path = a
        .data
        .or_else(|| recorded.as_ref().map(|c| PathBuf::from(&c.train_data)))
        .unwrap_or_else(|| default_data("train.csv"));
    output::check_dir(&a.model, &CHECKPOINT_FILES, &[Input::File(&data_path)])?;
    let val_fraction = recorded.as_ref().map_or(0.2, |c| c.val_fraction);
    let series = data::load_csv(&data_path)?
        .select_channels_with(&ck.config.channels, Matching::from_flag(a.by_position))?;
    let norm = Norm {
        mean: ck.config.norm_mean.clone(),
        std: ck.config.norm_std.clone(),
    };
    let train_stride = recorded
        .as_ref()
        .and_then(|c| c.train_stride)
        .unwrap_or(ck.config.stride);
    let split = split_windows(&series, ck.config.window, train_stride, val_fraction, &norm)?;
    let (_, q) = match moe::moe_config(&ck.config)? {
        // A mixture of experts: every expert's ranges and the mixture's thresholds.
        Some(mcfg) => {
            let experts = moe::load_experts(&a.model, &ck, mcfg.experts)?;
            let mut mc = moe::MoeCheckpoint { ck, experts };
            let models = moe::calibrate_moe(
                &mut mc,
                mcfg.gate,
                mcfg.training,
                &split,
                &data_path,
                val_fraction,
                &a.calib,
            )?;
            moe::save_moe(&a.model, &mc)?;
            ck = mc.ck;
            models
        }
        None => {
            let models = calibrate(&mut ck, &split, &data_path, val_fraction, &a.calib)?;
            checkpoint::save(&a.model, &ck)?;
            models
        }
    };
    let (th, cal) = calibration_of(&ck.config)?;
    // A mixture stores every expert and the gate.
    let bytes = q
        .moe
        .as_ref()
        .map_or_else(|| q.param_bytes(), |x| x.param_bytes());
    if a.json {
        println!(
            "{}",
            json!({
                "model": a.model.display().to_string(),
                "threshold": th,
                "calibration": cal,
                "flash_bytes_int8": bytes,
            })
        );
    } else {
        println!(
            "int8 model: {} bytes of parameters, {} MACs per window",
            bytes,
            q.macs()
        );
        println!(
            "f32 vs int8 score ({}) on {} validation windows: mean |diff| {:.4} nats ({:.4} of the score's std), max {:.4}",
            th.score,
            cal.val_windows,
            cal.score_diff.mean_abs,
            cal.score_diff.mean_abs_over_std,
            cal.score_diff.max_abs
        );
        for k in &th.kinds {
            println!(
                "threshold {:<16} f32 {:>12.4}  int8 {:>12.4}",
                k.score, k.f32, k.int8
            );
        }
        println!("updated {}", a.model.display());
    }
    Ok(())
}
