//! The multi-sensor (product-of-experts) side of `tinyvae train --group` and `tinyvae eval`:
//! what they print for a model with sensor groups.

use std::path::Path;

use anyhow::Result;

use tinyvae_host_tools::pipeline::poe::{evaluate_poe, load_poe, train_poe_model};
use tinyvae_host_tools::pipeline::{CalibOpts, ModelOpts};
use tinyvae_host_tools::poe_checkpoint;

use super::{fmt_opt, kb};

/// `tinyvae train --group ...`: trains, calibrates and writes a PoE checkpoint.
///
/// # Errors
/// Bad options, groups or data, or a failed write.
pub fn train(
    data: &Path,
    out: &Path,
    o: &ModelOpts,
    c: &CalibOpts,
    groups: &[String],
) -> Result<()> {
    let t = train_poe_model(data, o, c, groups)?;
    poe_checkpoint::save(out, &t.ck)?;
    let cfg = &t.ck.config;
    let names: Vec<String> = cfg
        .groups
        .iter()
        .map(|g| format!("{}={}", g.name, g.channels.join(",")))
        .collect();
    println!(
        "trained the product-of-experts VAE ({}; experts {:?}, latent {}, decoder {:?}) on {} windows ({} validation) in {:.2} s ({:.2} s in all), {} epochs (best {})",
        names.join(" "),
        cfg.arch.encoder_hidden,
        cfg.arch.latent,
        cfg.arch.decoder_hidden,
        t.report.n_train,
        t.report.n_val,
        t.report.seconds,
        t.seconds,
        t.report.history.len(),
        t.report.best_epoch
    );
    if t.selection.len() > 1 {
        let parts: Vec<String> = t
            .selection
            .iter()
            .map(|(z, v)| format!("{z}: {v:.1}"))
            .collect();
        println!(
            "latent size chosen by the validation objective ({}): {}",
            parts.join(", "),
            cfg.arch.latent
        );
    }
    if let Some(cal) = &cfg.calibration {
        println!(
            "thresholds (-ELBO over the present groups, FPR {} on {} validation windows):",
            cal.fpr, cal.validation_windows
        );
        for s in cfg.subsets() {
            let n = cfg.subset_name(s);
            println!(
                "  {:<24} f32 {:>10.3}  int8 {:>10.3}",
                n,
                cal.thresholds_f32.get(&n).copied().unwrap_or(f32::NAN),
                cal.thresholds_int8.get(&n).copied().unwrap_or(f32::NAN)
            );
        }
    }
    println!("wrote {}", out.display());
    Ok(())
}

/// `tinyvae eval` of a PoE checkpoint.
///
/// # Errors
/// Bad options or input.
pub fn eval(
    model: &Path,
    data: &Path,
    stride: Option<usize>,
    drop: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let m = load_poe(model)?;
    let j = evaluate_poe(&m, data, stride, drop)?;
    if as_json {
        println!("{j}");
        return Ok(());
    }
    println!(
        "{}: {} windows ({} anomalous); -ELBO over the present sensor groups",
        data.display(),
        j["windows"],
        j["anomalous"]
    );
    println!(
        "{:<24} {:>12} {:>12}",
        "present groups", "ROC AUC int8", "ROC AUC f32"
    );
    let cfg = &m.ck.config;
    for s in cfg.subsets() {
        let n = cfg.subset_name(s);
        println!(
            "{:<24} {:>12} {:>12}",
            n,
            fmt_opt(j["roc_auc_int8_by_groups"][&n].as_f64(), 4),
            fmt_opt(j["roc_auc_f32_by_groups"][&n].as_f64(), 4)
        );
    }
    if let Some(d) = drop {
        println!(
            "with {d} dead ({}): ROC AUC int8 {}, f32 {}",
            j["groups"].as_str().unwrap_or(""),
            fmt_opt(j["roc_auc_int8"].as_f64(), 4),
            fmt_opt(j["roc_auc_f32"].as_f64(), 4)
        );
    }
    println!(
        "int8 parameters {}, {} MACs per full-set score",
        kb(m.int8.param_bytes(true)),
        m.int8.macs()
    );
    Ok(())
}
