//! `tinyvae eval`: evaluate a checkpoint on a labeled stream (tables or JSON), optionally beside
//! the full-covariance Gaussian baseline.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::Value;

use tinyvae_host_tools::columns::Matching;
use tinyvae_host_tools::model::HostModel;
use tinyvae_host_tools::pipeline::baseline::{
    gaussian_baseline_for, BaselineResult, INSTR_PER_MAC_F32, INSTR_PER_MAC_INT8,
};
use tinyvae_host_tools::pipeline::calibrate::{samples_of, score_diff};
use tinyvae_host_tools::pipeline::evaluate::evaluate;
use tinyvae_host_tools::pipeline::{default_data, load_model, EvalResult};

use super::{fmt_opt, kb};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Full-covariance Gaussian (Mahalanobis) on the same training windows.
    Gaussian,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (written by `train`, `quantize` or `demo`'s `model/`).
    #[arg(long)]
    model: PathBuf,
    /// Labeled test stream (needs a `label` column) [default: the bundled test.csv].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Samples between the starts of the test windows [default: the checkpoint's].
    #[arg(long)]
    stride: Option<usize>,
    /// Print one JSON object to stdout instead of tables.
    #[arg(long)]
    json: bool,
    /// Also fit and evaluate a classical baseline on the same training windows.
    #[arg(long)]
    baseline: Option<Baseline>,
    /// Training stream for the baseline [default: the one recorded in the checkpoint].
    #[arg(long)]
    train_data: Option<PathBuf>,
    /// Seed of the random draws of the sampled scores (same seed, same scores).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the stream's channel columns in file order instead of matching them to the model's
    /// channels by name (the default; extra columns are then ignored with a note).
    #[arg(long)]
    by_position: bool,
    /// Score as if this sensor group were dead (multi-sensor models trained with `--group`).
    #[arg(long, value_name = "GROUP")]
    drop: Option<String>,
}

fn print_eval_table(r: &EvalResult) {
    println!(
        "{:<16} {:<5} {:>8} {:>8} {:>12} {:>9} {:>7} {:>7} {:>7}",
        "score", "model", "ROC AUC", "PR AUC", "threshold", "precision", "recall", "F1", "FPR"
    );
    for k in &r.rows {
        let c = k.at_threshold;
        println!(
            "{:<16} {:<5} {:>8} {:>8} {:>12} {:>9} {:>7} {:>7} {:>7}",
            k.score,
            k.precision,
            fmt_opt(k.roc_auc, 4),
            fmt_opt(k.pr_auc, 4),
            k.threshold.map_or("-".into(), |t| format!("{t:.3}")),
            fmt_opt(c.map(|c| c.precision), 3),
            fmt_opt(c.map(|c| c.recall), 3),
            fmt_opt(c.map(|c| c.f1), 3),
            fmt_opt(c.map(|c| c.fpr), 3),
        );
    }
}

/// Runs `tinyvae eval`.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: EvalArgs) -> Result<()> {
    if tinyvae_host_tools::poe_checkpoint::is_poe(&a.model) {
        if a.baseline.is_some() || a.train_data.is_some() {
            anyhow::bail!(
                "{}: --baseline is not supported for a multi-sensor (--group) checkpoint yet \
                 (`poe_bench` compares it with a single VAE and per-group VAEs)",
                a.model.display()
            );
        }
        let path = a.data.clone().unwrap_or_else(|| default_data("test.csv"));
        return super::poe::eval(
            &a.model,
            &path,
            a.stride,
            a.drop.as_deref(),
            Matching::from_flag(a.by_position),
            a.json,
        );
    }
    if let Some(g) = &a.drop {
        anyhow::bail!(
            "--drop {g:?}: {} is a single-sensor model (train with --group to drop a sensor group)",
            a.model.display()
        );
    }
    let m = load_model(&a.model)?;
    let path = a.data.clone().unwrap_or_else(|| default_data("test.csv"));
    let samples = samples_of(&m.th);
    let matching = Matching::from_flag(a.by_position);
    let mut r = evaluate(&m, &path, a.stride, a.seed, samples, matching)?;
    let baseline = match a.baseline {
        Some(Baseline::Gaussian) => {
            let train_path = a
                .train_data
                .clone()
                .unwrap_or_else(|| PathBuf::from(&m.cal.train_data));
            Some(gaussian_baseline_for(&m, &train_path, &r.windows)?)
        }
        None => None,
    };
    if let (Some(b), Some(obj)) = (&baseline, r.json.as_object_mut()) {
        obj.insert("baseline".into(), serde_json::to_value(b)?);
    }
    if a.json {
        println!("{}", r.json);
        return Ok(());
    }
    let labels = r.windows.labels.as_deref().unwrap_or(&[]);
    let n_anom = labels.iter().filter(|&&l| l).count();
    println!(
        "{}: {} windows of {} samples ({} anomalous, {} normal); thresholds at FPR {} on {} validation windows",
        path.display(),
        r.windows.len(),
        r.windows.window,
        n_anom,
        r.windows.len() - n_anom,
        m.th.fpr,
        m.th.windows
    );
    print_eval_table(&r);
    let d = score_diff(&r.default_f32, &r.default_int8);
    println!(
        "f32 vs int8 {} score: mean |diff| {:.4} nats ({:.4} of the score's std), max {:.4}",
        m.th.score, d.mean_abs, d.mean_abs_over_std, d.max_abs
    );
    if let Some(b) = &baseline {
        println!();
        print_cost_table(&m.int8, &m.f32, &r.json, b);
    }
    Ok(())
}

/// The VAE (f32, int8) beside the Gaussian: AUC, flash and estimated instructions.
pub fn print_cost_table(int8: &HostModel, f32m: &HostModel, eval: &Value, b: &BaselineResult) {
    let auc = |k: &str| eval.get(k).and_then(Value::as_f64);
    println!(
        "{:<28} {:>8} {:>8} {:>11} {:>14}",
        "detector", "ROC AUC", "PR AUC", "flash", "est. instr."
    );
    let rows = [
        (
            "VAE f32".to_string(),
            auc("roc_auc_f32"),
            auc("pr_auc_f32"),
            f32m.param_bytes(),
            f32m.macs() as f64 * INSTR_PER_MAC_F32,
        ),
        (
            "VAE int8".to_string(),
            auc("roc_auc_int8"),
            auc("pr_auc_int8"),
            int8.param_bytes(),
            int8.macs() as f64 * INSTR_PER_MAC_INT8,
        ),
        (
            format!("Gaussian (full cov., D={})", b.dim),
            b.roc_auc,
            b.pr_auc,
            b.flash_bytes,
            b.est_instructions,
        ),
    ];
    for (name, roc, pr, flash, instr) in rows {
        println!(
            "{:<28} {:>8} {:>8} {:>11} {:>14.0}",
            name,
            roc.map_or("-".into(), |v| format!("{v:.4}")),
            pr.map_or("-".into(), |v| format!("{v:.4}")),
            kb(flash),
            instr
        );
    }
    println!(
        "(instructions estimated as MACs x {INSTR_PER_MAC_F32:.2} (f32) or x {INSTR_PER_MAC_INT8:.2} \
         (int8): Cortex-M4 per-MAC costs of plain C f32 (BENCHMARKS.md) and of tinyvae's int8 \
         kernels (`tinyvae firmware bench`), which measures exact counts)"
    );
    if b.dim == 384 {
        println!(
            "(for reference, emlearn's C full-covariance Gaussian at D=384 measured 1,185,172 \
             instructions and 609 KB of flash on the Cortex-M4, BENCHMARKS.md)"
        );
    }
}
