//! `tinyvae demo` and what it shares with `eval`: the full-covariance Gaussian baseline, the
//! flash / instruction cost comparison, the plots, the report directory and the summary table.
//!
//! # Gaussian baseline (`eval --baseline gaussian`)
//! Fitted on the same training windows as the VAE (the training part of the stream, standardized
//! with the checkpoint's statistics): `m = mean`, `S = 1/n sum (x - m)(x - m)^T + r I` in f64,
//! rounded to f32 and factored by the library's [`tinyvae::FullGaussian`] (f32 Cholesky). `r`
//! starts at 1e-6 (scikit-learn's `reg_covar`) and grows ×10 while the f32 factorization fails.
//! Score `-ln N(x; m, S)`; threshold at the same false-positive rate on the validation windows.
//! [`tinyvae::FullGaussian`] is const-generic in `D = window × channels`, so the supported
//! window sizes are a fixed list ([`GAUSSIAN_DIMS`]).
//!
//! # Cost estimates
//! Flash is the bytes of parameters: the Gaussian stores `m` (D), the factor's lower triangle
//! (`D(D+1)/2`) and `ln det S` in f32; the VAE its exported constants
//! ([`HostModel::param_bytes`]). Instructions per window are multiply-accumulates times a
//! per-MAC cost measured on the Cortex-M4 in `../shared/BENCHMARKS.md` (MLPerf Tiny autoencoder
//! row): plain f32 C at -O3, 1,343,870 / 264,192 = 5.09 instructions per MAC; int8 at the cost
//! tinyvae's own int8 path measured on the M4 (`tinyvae firmware bench`, the default model's whole
//! ELBO score, KL and output stages included): 109,089 / 51,840 = 2.10. The Gaussian's forward
//! substitution costs `D(D+1)/2` MACs (plus D for the squares); the VAE one encode and one
//! decode. These are estimates: `tinyvae firmware bench` measures the real counts under QEMU.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use tinyvae::FullGaussian;

use tinyvae_host_tools::checkpoint::CheckpointConfig;
use tinyvae_host_tools::data::{self, Norm, Windows};
use tinyvae_host_tools::metrics::{self, Confusion};
use tinyvae_host_tools::model::HostModel;
use tinyvae_host_tools::plots::{self, EpochPoint, HistPanel, RocLine};
use tinyvae_host_tools::stream;
use tinyvae_host_tools::train::TrainReport;

use crate::{FirmwareCmd, KindMetrics, Loaded};

/// Instructions per f32 MAC on the Cortex-M4 (plain C -O3, BENCHMARKS.md).
pub const INSTR_PER_MAC_F32: f64 = 1_343_870.0 / 264_192.0;
/// Instructions per int8 MAC on the Cortex-M4: tinyvae's default model, whole ELBO score,
/// measured by `tinyvae firmware bench` (README results table).
pub const INSTR_PER_MAC_INT8: f64 = 109_089.0 / 51_840.0;

/// Window sizes `D = window × channels` the Gaussian baseline supports.
pub const GAUSSIAN_DIMS: [usize; 24] = [
    4, 6, 8, 12, 16, 18, 24, 32, 36, 48, 64, 72, 96, 128, 144, 192, 256, 288, 384, 432, 512, 576,
    640, 768,
];

/// The Gaussian baseline's figures.
#[derive(Serialize, Clone, Debug)]
pub struct BaselineResult {
    /// `gaussian`.
    pub name: String,
    /// D.
    pub dim: usize,
    /// Training windows it was fitted on.
    pub train_windows: usize,
    /// The diagonal regularization that made the f32 Cholesky succeed.
    pub reg: f64,
    /// ROC AUC on the test windows.
    pub roc_auc: Option<f64>,
    /// Average precision on the test windows.
    pub pr_auc: Option<f64>,
    /// Threshold at the target FPR on the validation windows.
    pub threshold: f32,
    /// At the threshold.
    pub at_threshold: Confusion,
    /// Bytes of parameters (f32 mean, lower triangle, log-determinant).
    pub flash_bytes: usize,
    /// Multiply-accumulates per window.
    pub macs: usize,
    /// Estimated Cortex-M4 instructions per window.
    pub est_instructions: f64,
    /// Test scores (for the ROC plot).
    #[serde(skip)]
    pub scores: Vec<f32>,
}

fn fit_score<const D: usize>(
    train: &Windows,
    val: &Windows,
    test: &Windows,
) -> Result<(Vec<f32>, Vec<f32>, f64)> {
    let n = train.len();
    if n < 2 {
        bail!("the Gaussian baseline needs at least 2 training windows, found {n}");
    }
    let mut mean = [0.0f64; D];
    for x in train.iter() {
        for (m, &v) in mean.iter_mut().zip(x) {
            *m += f64::from(v);
        }
    }
    for m in mean.iter_mut() {
        *m /= n as f64;
    }
    let mut cov = vec![0.0f64; D * D];
    let mut d = [0.0f64; D];
    for x in train.iter() {
        for ((di, &v), &m) in d.iter_mut().zip(x).zip(&mean) {
            *di = f64::from(v) - m;
        }
        for (i, &di) in d.iter().enumerate() {
            let row = &mut cov[i * D..(i + 1) * D];
            for (c, &dj) in row[..=i].iter_mut().zip(&d[..=i]) {
                *c += di * dj;
            }
        }
    }
    let mean32: [f32; D] = std::array::from_fn(|i| mean[i] as f32);
    let mut c32: Box<[[f32; D]; D]> = vec![[0.0f32; D]; D]
        .into_boxed_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("covariance allocation"))?;
    let mut g: Box<FullGaussian<D>> = Box::new(FullGaussian::standard());
    let mut reg = 1e-6f64;
    loop {
        for i in 0..D {
            for j in 0..=i {
                let v = (cov[i * D + j] / n as f64 + if i == j { reg } else { 0.0 }) as f32;
                c32[i][j] = v;
                c32[j][i] = v;
            }
        }
        match g.set_covariance(&mean32, &c32) {
            Ok(()) => break,
            Err(tinyvae::Error::NotPositiveDefinite) if reg < 1.0 => reg *= 10.0,
            Err(e) => bail!("fitting the Gaussian: {e}"),
        }
    }
    let score = |w: &Windows| -> Vec<f32> {
        w.iter()
            .map(|x| {
                let x: &[f32; D] = x.try_into().unwrap_or(&[0.0; D]);
                -g.log_density(x)
            })
            .collect()
    };
    Ok((score(val), score(test), reg))
}

macro_rules! dispatch_dims {
    ($d:expr, $tr:expr, $va:expr, $te:expr; $($n:literal)*) => {
        match $d {
            $( $n => fit_score::<$n>($tr, $va, $te), )*
            d => bail!(
                "the Gaussian baseline supports window x channels in {:?}, not {d}",
                GAUSSIAN_DIMS
            ),
        }
    };
}

/// Fits the full-covariance Gaussian on the training windows of `train_path` (cut as the
/// checkpoint was trained), calibrates its threshold on the validation windows at `fpr`, and
/// evaluates it on `test` (labeled windows standardized like the model's).
///
/// # Errors
/// Bad training data, an unsupported dimension, or a covariance that stays indefinite.
pub fn gaussian_baseline(
    train_path: &Path,
    cfg: &CheckpointConfig,
    val_fraction: f64,
    train_stride: usize,
    fpr: f64,
    test: &Windows,
) -> Result<BaselineResult> {
    let series = data::load_csv(train_path)?.select_channels(&cfg.channels)?;
    let norm = Norm {
        mean: cfg.norm_mean.clone(),
        std: cfg.norm_std.clone(),
    };
    let (tr, va) = data::split_tail(&series, val_fraction, cfg.window)?;
    let train = Windows::cut(&tr, cfg.window, train_stride, &norm)?;
    let val = Windows::cut(&va, cfg.window, train_stride, &norm)?;
    let train_windows = train.len();
    let dim = train.dim();
    let labels = test.labels.clone().context("test windows have no labels")?;
    let test = test.clone();
    // A FullGaussian<384> is 590 KB: run on a thread with a large stack.
    let (val_s, test_s, reg) = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || -> Result<(Vec<f32>, Vec<f32>, f64)> {
            dispatch_dims!(dim, &train, &val, &test;
                4 6 8 12 16 18 24 32 36 48 64 72 96 128 144 192 256 288 384 432 512 576 640 768)
        })
        .context("starting the baseline thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the Gaussian baseline failed"))??;
    let threshold = metrics::threshold_at_fpr(&val_s, fpr).context("no validation windows")?;
    let macs = dim * (dim + 1) / 2 + dim;
    Ok(BaselineResult {
        name: "gaussian".into(),
        dim,
        train_windows,
        reg,
        roc_auc: metrics::roc_auc(&test_s, &labels),
        pr_auc: metrics::average_precision(&test_s, &labels),
        threshold,
        at_threshold: metrics::confusion(&test_s, &labels, threshold),
        flash_bytes: 4 * (dim + dim * (dim + 1) / 2 + 1),
        macs,
        est_instructions: macs as f64 * INSTR_PER_MAC_F32,
        scores: test_s,
    })
}

fn kb(bytes: usize) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
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

/// Draws `training_curves.svg`, `score_histogram.svg` and `roc.svg` into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn plots(
    dir: &Path,
    report: &TrainReport,
    w: &Windows,
    f32s: &[f32],
    int8s: &[f32],
    score: &str,
    t_f32: f32,
    t_int8: f32,
    baseline: Option<&BaselineResult>,
) -> Result<()> {
    let hist: Vec<EpochPoint> = report
        .history
        .iter()
        .map(|h| EpochPoint {
            epoch: h.epoch,
            loss: h.loss,
            kl: h.kl,
            val_elbo: h.val_elbo.unwrap_or(f64::NAN),
        })
        .collect();
    plots::training_curves(&dir.join("training_curves.svg"), &hist)?;
    let labels = w.labels.as_deref().unwrap_or(&[]);
    let split = |s: &[f32]| -> (Vec<f32>, Vec<f32>) {
        let (mut n, mut a) = (Vec::new(), Vec::new());
        for (&v, &l) in s.iter().zip(labels) {
            if l {
                a.push(v);
            } else {
                n.push(v);
            }
        }
        (n, a)
    };
    let (nf, af) = split(f32s);
    let (nq, aq) = split(int8s);
    plots::score_histograms(
        &dir.join("score_histogram.svg"),
        &[
            HistPanel {
                title: format!("f32 model, -{score} on the test windows"),
                normal: &nf,
                anomalous: &af,
                threshold: t_f32,
            },
            HistPanel {
                title: format!("int8 model, -{score} on the test windows"),
                normal: &nq,
                anomalous: &aq,
                threshold: t_int8,
            },
        ],
    )?;
    let mut lines = vec![
        RocLine {
            name: "VAE f32".into(),
            points: metrics::roc_curve(f32s, labels),
            auc: metrics::roc_auc(f32s, labels).unwrap_or(f64::NAN),
        },
        RocLine {
            name: "VAE int8".into(),
            points: metrics::roc_curve(int8s, labels),
            auc: metrics::roc_auc(int8s, labels).unwrap_or(f64::NAN),
        },
    ];
    if let Some(b) = baseline {
        lines.push(RocLine {
            name: "full-cov. Gaussian".into(),
            points: metrics::roc_curve(&b.scores, labels),
            auc: b.roc_auc.unwrap_or(f64::NAN),
        });
    }
    plots::roc_curves(&dir.join("roc.svg"), &format!("ROC, -{score}"), &lines)?;
    Ok(())
}

/// Runs the exported model `model_rs` on `cores` in QEMU (the firmware's `score` program, which
/// streams the first rows of the bundled test set through the library's detector) and compares
/// every window (score and alarm level as bits, alarm, alarm event) with this host tool's own
/// detector over the same rows (`int8` model, the checkpoint's standardization and stride, the
/// exported score kind and threshold): what `tinyvae score` computes.
///
/// # Errors
/// A failed build or run.
pub fn chip_vs_host(
    cores: &[tinyvae_host_tools::firmware::Core],
    model_rs: &Path,
    int8: &HostModel,
    cfg: &CheckpointConfig,
    threshold: f32,
) -> Result<Vec<tinyvae_host_tools::firmware::CoreParity>> {
    tinyvae_host_tools::firmware::parity_with_host_scores(cores, Some(model_rs), |pass| {
        // The chip streams the columns in file order.
        let series = data::load_csv_with(&pass.csv, data::NonFinite::Keep)?.select_channels_with(
            &cfg.channels,
            tinyvae_host_tools::columns::Matching::ByPosition,
        )?;
        let kind = pass.kind.unwrap_or(tinyvae::ScoreKind::Elbo);
        let mut sc = stream::StreamConfig::new(kind, cfg.stride, 0, threshold);
        sc.limits = pass.limits;
        stream::run(int8, cfg, &series, &sc)
    })
}

/// [`chip_vs_host`] on the Cortex-M4, as JSON for the demo; `{"skipped": why}` without QEMU.
///
/// # Errors
/// A failed build or run.
pub fn firmware_check(
    model_rs: &Path,
    int8: &HostModel,
    cfg: &CheckpointConfig,
    threshold: f32,
) -> Result<Value> {
    use tinyvae_host_tools::firmware::Core;
    let qemu = std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(qemu, Ok(s) if s.success()) {
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

/// `tinyvae firmware run|parity|bench`.
///
/// # Errors
/// As the firmware module's functions.
pub fn firmware(cmd: FirmwareCmd) -> Result<ExitCode> {
    use tinyvae_host_tools::firmware::{self, Core};
    let (FirmwareCmd::Run(a) | FirmwareCmd::Parity(a) | FirmwareCmd::Bench(a)) = &cmd;
    let cores = Core::parse_list(&a.core)?;
    let model = a.model.as_deref();
    let code = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    match cmd {
        FirmwareCmd::Run(_) => firmware::run(&cores, model).map(|()| ExitCode::SUCCESS),
        FirmwareCmd::Parity(ref a) if a.checkpoint.is_some() => {
            let dir = a.checkpoint.as_deref().context("checkpoint")?;
            let m = crate::load_model(dir)?;
            let tmp = tempfile::tempdir()?;
            let model_rs = tmp.path().join("model.rs");
            let src = tinyvae_host_tools::export::export_int8(&m.ck, &m.int8, m.th.int8)?;
            data::write_atomic(&model_rs, src.as_bytes())?;
            let r = chip_vs_host(&cores, &model_rs, &m.int8, &m.ck.config, m.th.int8)?;
            let ok = r.iter().all(|p| p.mismatch.is_none());
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for p in &r {
                    match &p.mismatch {
                        None => println!(
                            "{} ({}): {} windows, scores, alarm levels, alarms, events and sensor-fault reports (clean, IWAE-8 and fault-injected passes) bit-identical to `tinyvae score`",
                            p.core, p.machine, p.windows
                        ),
                        Some(m) => println!("{} ({}): MISMATCH at {m}", p.core, p.machine),
                    }
                }
            }
            Ok(code(ok))
        }
        FirmwareCmd::Parity(ref a) if a.json => {
            let r = firmware::parity_report(&cores, model)?;
            let ok = r.iter().all(|p| p.mismatch.is_none());
            println!("{}", serde_json::to_string(&r)?);
            Ok(code(ok))
        }
        FirmwareCmd::Parity(_) => Ok(code(firmware::parity(&cores, model)?)),
        FirmwareCmd::Bench(ref a) => {
            firmware::bench(&cores, a.json, model).map(|()| ExitCode::SUCCESS)
        }
    }
}

/// Prints the demo's summary table.
#[allow(clippy::too_many_arguments)]
pub fn print_summary(
    out: &Path,
    m: &Loaded,
    eval: &Value,
    rows: &[KindMetrics],
    baseline: Option<&BaselineResult>,
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
        crate::arch_string(&cfg.arch),
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
            crate::fmt_opt(r.roc_auc, 4),
            crate::fmt_opt(r.pr_auc, 4),
            crate::fmt_opt(c.map(|c| c.precision), 3),
            crate::fmt_opt(c.map(|c| c.recall), 3),
            crate::fmt_opt(c.map(|c| c.f1), 3),
            kb(hm.param_bytes()),
            hm.macs() as f64 * per,
        );
    }
    for r in rows.iter().filter(|r| r.score != m.th.score) {
        println!(
            "{:<28} {:>8} {:>8}",
            format!("VAE {} -{}", r.precision, r.score),
            crate::fmt_opt(r.roc_auc, 4),
            crate::fmt_opt(r.pr_auc, 4),
        );
    }
    if let Some(b) = baseline {
        let c = b.at_threshold;
        println!(
            "{:<28} {:>8} {:>8} {:>9.3} {:>7.3} {:>7.3} {:>10} {:>12.0}",
            "Gaussian (full cov.)",
            crate::fmt_opt(b.roc_auc, 4),
            crate::fmt_opt(b.pr_auc, 4),
            c.precision,
            c.recall,
            c.f1,
            kb(b.flash_bytes),
            b.est_instructions,
        );
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
    if let Some(l) = crate::selection_line(cfg) {
        println!("{l}");
    }
    println!("training {train_seconds:.2} s, demo wall time {wall:.2} s");
    println!(
        "wrote {0}/model/ {0}/model.rs {0}/metrics.json {0}/training_curves.svg {0}/score_histogram.svg {0}/roc.svg",
        out.display()
    );
}
