//! `tinyvae demo`: train, calibrate, evaluate, export, plot and check on the chip in QEMU, on the
//! bundled data set, into one report directory; and its summary table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use tinyvae_host_tools::columns::Matching;
use tinyvae_host_tools::output::{self, Input};
use tinyvae_host_tools::pipeline::baseline::{
    gaussian_baseline_for, BaselineResult, INSTR_PER_MAC_F32, INSTR_PER_MAC_INT8,
};
use tinyvae_host_tools::pipeline::calibrate::samples_of;
use tinyvae_host_tools::pipeline::chip::firmware_check;
use tinyvae_host_tools::pipeline::evaluate::evaluate;
use tinyvae_host_tools::pipeline::report::plots;
use tinyvae_host_tools::pipeline::sensor_loss::{sensor_loss, SensorLoss};
use tinyvae_host_tools::pipeline::train::{arch_string, selection_line};
use tinyvae_host_tools::pipeline::{
    default_data, load_model, train_model, CalibOpts, KindMetrics, Loaded, ModelOpts,
};
use tinyvae_host_tools::{checkpoint, export, setup};

use super::{error_line, fmt_opt, kb};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Report directory (model/, model.rs, metrics.json, plots).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Training stream [default: the bundled train.csv].
    #[arg(long)]
    train_data: Option<PathBuf>,
    /// Labeled test stream [default: the bundled test.csv].
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Skip the chip check: no firmware build, no QEMU set-up, no run of the exported model on
    /// the Cortex-M4 in QEMU.
    #[arg(long)]
    no_firmware: bool,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    calib: CalibOpts,
}

/// Runs `tinyvae demo`: the whole pipeline into a staged report directory, then the summary.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let train_path = a
        .train_data
        .clone()
        .unwrap_or_else(|| default_data("train.csv"));
    let test_path = a
        .test_data
        .clone()
        .unwrap_or_else(|| default_data("test.csv"));
    let inputs = [Input::File(&train_path), Input::File(&test_path)];
    let staging = output::Staging::new(&a.out, "demo", &inputs)?;
    let dir = staging.path().to_path_buf();
    let t = train_model(&train_path, &a.model, &a.calib)?;
    let train_seconds = t.seconds;
    let model_dir = dir.join("model");
    checkpoint::save(&model_dir, &t.ck)?;
    let m = load_model(&model_dir)?;
    let samples = samples_of(&m.th);
    let mut r = evaluate(&m, &test_path, None, 0, samples, Matching::ByName)?;
    let src = export::export_int8(&m.ck, &m.int8, m.th.int8)?;
    output::write_file(&dir.join("model.rs"), src.as_bytes())?;
    let baseline = gaussian_baseline_for(&m, &train_path, &r.windows)
        .map_err(|e| eprintln!("warning: Gaussian baseline skipped: {}", error_line(&e)))
        .ok();
    let loss = sensor_loss(
        &m,
        &r.windows,
        &train_path,
        &test_path,
        &a.model,
        &a.calib,
        &dir.join("poe_model"),
    )
    .map_err(|e| eprintln!("warning: sensor-loss table skipped: {}", error_line(&e)))
    .ok()
    .flatten();
    plots(
        &dir,
        &t.report,
        &r.windows,
        &r.default_f32,
        &r.default_int8,
        &m.th.score,
        m.th.f32,
        m.th.int8,
        baseline.as_ref(),
    )?;
    if let Some(obj) = r.json.as_object_mut() {
        obj.insert("train_seconds".into(), json!(train_seconds));
        obj.insert("epochs".into(), json!(t.report.history.len()));
        obj.insert("best_epoch".into(), json!(t.report.best_epoch));
        obj.insert("arch".into(), json!(arch_string(&m.ck.config.arch)));
        obj.insert(
            "val_score_diff".into(),
            serde_json::to_value(m.cal.score_diff)?,
        );
        if let Some(b) = &baseline {
            obj.insert("baseline".into(), serde_json::to_value(b)?);
        }
        if let Some(l) = &loss {
            obj.insert("sensor_loss".into(), serde_json::to_value(l)?);
        }
    }
    let firmware = if a.no_firmware {
        None
    } else {
        eprintln!(
            "running the exported model on the Cortex-M4 in QEMU (first build takes a while)..."
        );
        Some(
            firmware_check(&dir.join("model.rs"), &m.int8, &m.ck.config, m.th.int8)
                .unwrap_or_else(|e| json!({"error": error_line(&e)})),
        )
    };
    if let (Some(fw), Some(obj)) = (&firmware, r.json.as_object_mut()) {
        obj.insert("firmware".into(), fw.clone());
    }
    let wall = t0.elapsed().as_secs_f64();
    if let Some(obj) = r.json.as_object_mut() {
        obj.insert("demo_seconds".into(), json!(wall));
    }
    let mut text = serde_json::to_string_pretty(&r.json)?;
    text.push('\n');
    output::write_file(&dir.join("metrics.json"), text.as_bytes())?;
    let out = staging.commit()?;
    let _ = t.split;
    let _ = (&t.f32, &t.int8);
    print_summary(
        &out,
        &m,
        &r.json,
        &r.rows,
        baseline.as_ref(),
        loss.as_ref(),
        train_seconds,
        wall,
    );
    Ok(())
}

/// Prints the demo's summary table.
#[allow(clippy::too_many_arguments)]
pub fn print_summary(
    out: &Path,
    m: &Loaded,
    eval: &Value,
    rows: &[KindMetrics],
    baseline: Option<&BaselineResult>,
    loss: Option<&SensorLoss>,
    train_seconds: f64,
    wall: f64,
) {
    let cfg = &m.ck.config;
    println!();
    println!(
        "tinyvae demo: window {} x {} channels, stride {}, model {}, {} test windows ({} anomalous)",
        cfg.window,
        cfg.channels.len(),
        cfg.stride,
        arch_string(&cfg.arch),
        eval.get("windows").and_then(Value::as_u64).unwrap_or(0),
        eval.get("anomalous_windows").and_then(Value::as_u64).unwrap_or(0),
    );
    println!();
    println!(
        "{:<28} {:>8} {:>8} {:>9} {:>7} {:>7} {:>10} {:>12}",
        "detector", "ROC AUC", "PR AUC", "precision", "recall", "F1", "flash", "est. instr."
    );
    for r in rows.iter().filter(|r| r.score == m.th.score) {
        let c = r.at_threshold;
        let (hm, per) = if r.precision == "f32" {
            (&m.f32, INSTR_PER_MAC_F32)
        } else {
            (&m.int8, INSTR_PER_MAC_INT8)
        };
        println!(
            "{:<28} {:>8} {:>8} {:>9} {:>7} {:>7} {:>10} {:>12.0}",
            format!("VAE {} -{}", r.precision, r.score),
            fmt_opt(r.roc_auc, 4),
            fmt_opt(r.pr_auc, 4),
            fmt_opt(c.map(|c| c.precision), 3),
            fmt_opt(c.map(|c| c.recall), 3),
            fmt_opt(c.map(|c| c.f1), 3),
            kb(hm.param_bytes()),
            hm.macs() as f64 * per,
        );
    }
    for r in rows.iter().filter(|r| r.score != m.th.score) {
        println!(
            "{:<28} {:>8} {:>8}",
            format!("VAE {} -{}", r.precision, r.score),
            fmt_opt(r.roc_auc, 4),
            fmt_opt(r.pr_auc, 4),
        );
    }
    if let Some(b) = baseline {
        let c = b.at_threshold;
        println!(
            "{:<28} {:>8} {:>8} {:>9.3} {:>7.3} {:>7.3} {:>10} {:>12.0}",
            "Gaussian (full cov.)",
            fmt_opt(b.roc_auc, 4),
            fmt_opt(b.pr_auc, 4),
            c.precision,
            c.recall,
            c.f1,
            kb(b.flash_bytes),
            b.est_instructions,
        );
    }
    if let Some(l) = loss {
        print_sensor_loss(l);
    }
    println!();
    if let Some(d) = eval.get("score_diff") {
        println!(
            "f32 vs int8 -{} on the test windows: mean |diff| {:.2} nats ({:.3} of the score's std), max {:.2}",
            m.th.score,
            d.get("mean_abs").and_then(Value::as_f64).unwrap_or(f64::NAN),
            d.get("mean_abs_over_std").and_then(Value::as_f64).unwrap_or(f64::NAN),
            d.get("max_abs").and_then(Value::as_f64).unwrap_or(f64::NAN)
        );
    }
    if let Some(fw) = eval.get("firmware") {
        match (
            fw.get("windows"),
            fw.get("all_equal").and_then(Value::as_bool),
        ) {
            (Some(n), Some(true)) => println!(
                "chip: the exported int8 model on the Cortex-M4 ({}, QEMU) scored {n} windows of \
                 the test stream (clean, IWAE-8, injected faults): scores, alarm levels, alarms, \
                 events and fault flags bit-identical to this host's detector",
                fw["machine"].as_str().unwrap_or("?"),
            ),
            (Some(_), Some(false)) => println!(
                "chip: MISMATCH between the Cortex-M4 and this host: {}",
                fw["first_mismatch"].as_str().unwrap_or("?")
            ),
            _ => println!("chip: {fw}"),
        }
    }
    if let Some(l) = selection_line(cfg) {
        println!("{l}");
    }
    println!("training {train_seconds:.2} s, demo wall time {wall:.2} s");
    println!(
        "wrote {0}/model/ {0}/model.rs {0}/metrics.json {0}/training_curves.svg {0}/score_histogram.svg {0}/roc.svg{1}",
        out.display(),
        if loss.is_some() {
            format!(" {}/poe_model/", out.display())
        } else {
            String::new()
        }
    );
    if eval
        .get("firmware")
        .is_some_and(|fw| fw.get("skipped").is_some())
    {
        println!(
            "the chip check needs QEMU, which is not installed and could not be installed here \
             (that needs root and apt-get): install it with `{}` and run the demo again",
            setup::INSTALL_HINT
        );
    }
}

/// Prints the sensor-loss table: ROC AUC with each sensor group dead, the single VAE with the
/// dead channels mean-filled next to the product of experts trained for the demo.
fn print_sensor_loss(l: &SensorLoss) {
    println!();
    println!(
        "sensor loss: test ROC AUC (int8, -ELBO) with a sensor group dead; product of experts \
         (--group acc=ax,ay,az --group gyro=wx,wy,wz, latent {}) trained {} epochs only (best \
         {}, {:.1} s) for this table",
        l.poe_latent, l.poe_epochs, l.poe_best_epoch, l.poe_train_seconds
    );
    println!(
        "{:<28} {:>22} {:>20}",
        "present sensors", "single VAE, mean-fill", "product of experts"
    );
    let all = l.rows.first().map(|r| r.groups.clone()).unwrap_or_default();
    for r in &l.rows {
        let label = if r.groups == all {
            r.groups.clone()
        } else {
            let dead: Vec<&str> = all.split('+').filter(|g| *g != r.groups).collect();
            format!("{} ({} dead)", r.groups, dead.join("+"))
        };
        println!(
            "{:<28} {:>22} {:>20}",
            label,
            fmt_opt(r.single_mean_filled, 4),
            fmt_opt(r.product_of_experts, 4)
        );
    }
}
