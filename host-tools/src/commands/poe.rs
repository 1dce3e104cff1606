//! The multi-sensor (product-of-experts) side of `tinyvae train --group` and `tinyvae eval`:
//! what they print for a model with sensor groups.

use std::path::Path;

use anyhow::Result;

use tinyvae_host_tools::columns::Matching;
use tinyvae_host_tools::options::{AlarmOptions, ThresholdSource};
use tinyvae_host_tools::pipeline::poe::{evaluate_poe, load_poe, train_poe_model};
use tinyvae_host_tools::pipeline::{CalibOpts, ModelOpts};
use tinyvae_host_tools::poe_checkpoint;
use tinyvae_host_tools::train::poe::{DecoderLayout, NoiseOrder};

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
    decoder: DecoderLayout,
    noise: NoiseOrder,
) -> Result<()> {
    let t = train_poe_model(data, o, c, groups, decoder, noise)?;
    poe_checkpoint::save(out, &t.ck)?;
    let cfg = &t.ck.config;
    let names: Vec<String> = cfg
        .groups
        .iter()
        .map(|g| format!("{}={}", g.name, g.channels.join(",")))
        .collect();
    println!(
        "trained the product-of-experts VAE ({}; experts {:?}, latent {}, {} {:?}) on {} windows ({} validation) in {:.2} s ({:.2} s in all), {} epochs (best {})",
        names.join(" "),
        cfg.arch.encoder_hidden,
        cfg.arch.latent,
        match cfg.arch.decoder {
            DecoderLayout::Shared => "shared decoder",
            DecoderLayout::PerGroup => "one decoder per group",
        },
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
    if !t.noise.validation.is_empty() {
        let parts: Vec<String> = t
            .noise
            .validation
            .iter()
            .map(|(k, v)| format!("{k}: {v:.1}"))
            .collect();
        println!(
            "decoder noise by the validation log-likelihood per window (AR order {}): {}",
            parts.join(", "),
            match &t.ck.params.noise {
                Some(n) => format!("autoregressive, order {}", n.order),
                None => "the trained per-feature noise".to_string(),
            }
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
    matching: Matching,
    as_json: bool,
) -> Result<()> {
    let m = load_poe(model)?;
    let j = evaluate_poe(&m, data, stride, drop, matching)?;
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

/// The `tinyvae score` options a PoE checkpoint takes (the others are refused before).
#[derive(Clone, Copy, Debug)]
pub struct PoeScoreArgs {
    /// `--stride`.
    pub stride: Option<usize>,
    /// `--f32`.
    pub f32: bool,
    /// `--threshold` (the full set's; each subset's is moved by the same amount).
    pub threshold: Option<f32>,
    /// `--ema`.
    pub ema: Option<f32>,
    /// `--clear-threshold`.
    pub clear_threshold: Option<f32>,
    /// `--debounce`.
    pub debounce: Option<(u8, u8, u8)>,
    /// `--limits`.
    pub limits: Option<(f32, f32)>,
    /// `--alarm-on-flagged`.
    pub alarm_on_flagged: bool,
    /// `--by-position`.
    pub by_position: bool,
}

/// `tinyvae score` of a PoE checkpoint: the library's detector over the stream (NaN values and
/// empty rows kept as sensor faults), with the alarm options, saturation limits and column
/// matching of the single model's `score`, one CSV row per window:
/// `window,start,end,score,alarm[,label],level,event,faults,groups,top_channel` (the channel
/// contributing most to the reconstruction term among the present groups' channels).
///
/// # Errors
/// Bad input or a failed write.
pub fn score(model: &Path, data: &Path, out: &Path, o: &PoeScoreArgs) -> Result<()> {
    let PoeScoreArgs {
        stride,
        f32,
        threshold,
        ..
    } = *o;
    use std::fmt::Write as _;
    let m = load_poe(model)?;
    let cfg = &m.ck.config;
    let cal = cfg
        .calibration
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{}: not calibrated", model.display()))?;
    let full = cfg.subset_name(tinyvae::GroupSet::first(cfg.groups.len()));
    let th = match threshold {
        Some(t) => t,
        None => {
            let table = if f32 {
                &cal.thresholds_f32
            } else {
                &cal.thresholds_int8
            };
            table
                .get(&full)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("no threshold for {full}"))?
        }
    };
    let series =
        tinyvae_host_tools::data::load_csv_with(data, tinyvae_host_tools::data::NonFinite::Keep)?
            .select_channels_with(&cfg.channels, Matching::from_flag(o.by_position))?;
    let alarm = AlarmOptions {
        threshold: th,
        source: if threshold.is_some() {
            ThresholdSource::Flag
        } else {
            ThresholdSource::Checkpoint
        },
        ema: o.ema,
        clear_threshold: o.clear_threshold,
        debounce: o.debounce,
    }
    .config()?;
    let host = if f32 { &m.f32 } else { &m.int8 };
    let opts = tinyvae_host_tools::pipeline::poe_stream::PoeStream {
        kind: tinyvae::ScoreKind::Elbo,
        stride: stride.unwrap_or(cfg.stride),
        seed: 0,
        alarm,
        limits: o.limits,
        alarm_on_flagged: o.alarm_on_flagged,
        attribution: true,
    };
    let rows = tinyvae_host_tools::pipeline::poe_stream::run_poe_with(host, cfg, &series, &opts)?;
    let labels = series.labels.as_deref();
    let mut text = String::from("window,start,end,score,alarm");
    if labels.is_some() {
        text.push_str(",label");
    }
    text.push_str(",level,event,faults,groups,top_channel\n");
    let (mut degraded, mut skipped) = (0usize, 0usize);
    for row in &rows {
        let r = &row.report;
        let score = r.score.map_or(String::new(), |s| format!("{:?}", s.score));
        write!(
            text,
            "{},{},{},{score},{}",
            r.window,
            r.start,
            r.end,
            u8::from(r.alarm)
        )?;
        if let Some(l) = labels {
            let any = l
                .get(r.start as usize..(r.end as usize).min(l.len()))
                .is_some_and(|s| s.iter().any(|&v| v != 0));
            write!(text, ",{}", u8::from(any))?;
        }
        let level = r.level.map_or(String::new(), |l| format!("{l:?}"));
        let event = match r.event {
            None => "",
            Some(tinyvae::AlarmEvent::AlarmRaised { .. }) => "raised",
            Some(tinyvae::AlarmEvent::AlarmCleared { .. }) => "cleared",
        };
        let groups = cfg.subset_name(r.groups);
        if r.groups.is_empty() {
            skipped += 1;
        } else if groups != full {
            degraded += 1;
        }
        let top = row
            .top_channel
            .and_then(|c| cfg.channels.get(c))
            .map_or("", String::as_str);
        writeln!(
            text,
            ",{level},{event},{},{groups},{top}",
            row.faults_text(&cfg.channels)
        )?;
    }
    tinyvae_host_tools::output::write_file(out, text.as_bytes())?;
    eprintln!(
        "{} windows, {} scored with fewer groups than {full}, {} skipped (no healthy group); {} elbo, full-set threshold {th:.4}; wrote {}",
        rows.len(),
        degraded,
        skipped,
        if f32 { "f32" } else { "int8" },
        out.display()
    );
    Ok(())
}
