//! `tinyvae train`: train a VAE on a CSV stream and write a calibrated checkpoint directory.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use tinyvae_host_tools::checkpoint;
use tinyvae_host_tools::output::{self, Input};
use tinyvae_host_tools::pipeline::calibrate::calibration_of;
use tinyvae_host_tools::pipeline::moe;
use tinyvae_host_tools::pipeline::train::{arch_string, selection_line};
use tinyvae_host_tools::pipeline::{
    default_data, train_model, CalibOpts, ModelOpts, CHECKPOINT_FILES,
};
use tinyvae_host_tools::train::poe::{DecoderLayout, NoiseOrder};

/// `--decoder` values (no doc comments: clap would list them and change `train --help`).
#[allow(missing_docs)]
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderArg {
    PerGroup,
    Shared,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training stream (CSV: header, one row per time step, one column per channel; an optional
    /// `label` column must hold 0 or 1 on every row and is not used for training)
    /// [default: the bundled data/watch_shoulder_pen/train.csv].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Checkpoint directory to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    calib: CalibOpts,
    /// A sensor group `NAME=CHANNEL,CHANNEL,...` (repeatable, at most 4; every channel in
    /// exactly one group): trains the multi-sensor product-of-experts model, one encoder per
    /// group, that keeps scoring when a sensor dies. Without it: the single VAE.
    #[arg(long = "group", value_name = "NAME=CH,CH,...")]
    groups: Vec<String>,
    /// With --group: one decoder per sensor group (each `--decoder-hidden` wide, default 44),
    /// or one shared decoder for all channels [default: per-group].
    #[arg(long, value_enum, requires = "groups")]
    decoder: Option<DecoderArg>,
    /// With --group: the decoder noise. Each channel's residual is modelled as an
    /// autoregressive process of this order (1 to 3), fitted to the training windows after
    /// training; `auto` picks the order, or the trained per-feature noise (`0`), with the best
    /// validation likelihood [default: auto].
    #[arg(long, value_name = "auto|0..3", requires = "groups")]
    noise_ar: Option<NoiseOrder>,
    /// Number of expert VAEs behind a gate (a mixture of experts; 1 = a single VAE). Each window
    /// is scored by the one expert the gate picks, so the chip's cost stays that of one expert
    /// plus the gate; K times the parameters. 1 to 8 [default: 1].
    #[arg(long, default_value_t = 1)]
    experts: usize,
}

/// Checks the combination of model options before anything is read or trained.
///
/// # Errors
/// `--experts` outside 1 to `tinyvae::MAX_EXPERTS`, or `--experts` above 1 with `--group` (the
/// mixture of experts and the multi-sensor product of experts do not compose yet).
fn validate_model_options(a: &TrainArgs) -> Result<()> {
    let max = tinyvae::MAX_EXPERTS;
    if !(1..=max).contains(&a.experts) {
        anyhow::bail!(
            "--experts {} is out of range: valid values are 1 to {max}",
            a.experts
        );
    }
    if a.experts > 1 && !a.groups.is_empty() {
        anyhow::bail!(
            "--experts {} and --group do not compose yet: a mixture of experts is trained on \
             every channel, a multi-sensor model (--group) is a single product of experts; \
             drop one of the two options",
            a.experts
        );
    }
    Ok(())
}

/// Runs `tinyvae train`.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: TrainArgs) -> Result<()> {
    validate_model_options(&a)?;
    let data_path = a.data.unwrap_or_else(|| default_data("train.csv"));
    if !a.groups.is_empty() {
        output::check_dir(&a.out, &CHECKPOINT_FILES, &[Input::File(&data_path)])?;
        let decoder = match a.decoder {
            Some(DecoderArg::Shared) => DecoderLayout::Shared,
            Some(DecoderArg::PerGroup) | None => DecoderLayout::PerGroup,
        };
        let noise = a.noise_ar.unwrap_or(NoiseOrder::Auto);
        return super::poe::train(
            &data_path, &a.out, &a.model, &a.calib, &a.groups, decoder, noise,
        );
    }
    if a.experts > 1 {
        let files = moe::moe_files(a.experts);
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        output::check_dir(&a.out, &names, &[Input::File(&data_path)])?;
    } else {
        output::check_dir(&a.out, &CHECKPOINT_FILES, &[Input::File(&data_path)])?;
    }
    let t = if a.experts > 1 {
        let (t, experts) = moe::train_moe_model(&data_path, &a.model, &a.calib, a.experts)?;
        let mc = moe::MoeCheckpoint {
            ck: t.ck.clone(),
            experts,
        };
        moe::save_moe(&a.out, &mc)?;
        t
    } else {
        let t = train_model(&data_path, &a.model, &a.calib)?;
        checkpoint::save(&a.out, &t.ck)?;
        t
    };
    let (th, cal) = calibration_of(&t.ck.config)?;
    let last = t
        .report
        .history
        .iter()
        .find(|h| h.epoch == t.report.best_epoch);
    println!(
        "trained {} on {} windows ({} validation) in {:.2} s ({:.2} s in all), {} epochs (best {}{})",
        arch_string(&t.ck.config.arch),
        t.report.n_train,
        t.report.n_val,
        t.report.seconds,
        t.seconds,
        t.report.history.len(),
        t.report.best_epoch,
        if t.report.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    if let Some(h) = last {
        if let Some(v) = h.val_elbo {
            println!("validation ELBO {v:.2} nats per window");
        }
    }
    if let Some(l) = selection_line(&t.ck.config) {
        println!("{l}");
    }
    if let Some(m) = moe::moe_config(&t.ck.config)? {
        println!("{}", moe::summary_line(&m));
    }
    println!(
        "threshold ({} at FPR {}): f32 {:.3}, int8 {:.3}; f32/int8 score difference: mean {:.4} nats, max {:.4}",
        th.score, th.fpr, th.f32, th.int8, cal.score_diff.mean_abs, cal.score_diff.max_abs
    );
    println!("wrote {}", a.out.display());
    Ok(())
}
