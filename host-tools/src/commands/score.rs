//! `tinyvae score`: stream a CSV through the library's detector (what the chip runs) and write
//! one CSV row per window: score, alarm, level, event, sensor faults and the top channel.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use tinyvae_host_tools::columns::Matching;
use tinyvae_host_tools::data::{self, Norm};
use tinyvae_host_tools::model;
use tinyvae_host_tools::options::{self, parse_f32};
use tinyvae_host_tools::output::{self, Input};
use tinyvae_host_tools::pipeline::load_model;
use tinyvae_host_tools::stream;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Checkpoint directory (written by `train`, `quantize` or `demo`'s `model/`).
    #[arg(long)]
    model: PathBuf,
    /// Stream to score (CSV with the model's channels; a `label` column is copied through).
    #[arg(long)]
    data: PathBuf,
    /// Output CSV: window,start,end,score,alarm (end exclusive), then label (if the stream has
    /// one), level, event, faults, top_channel, and for a mixture of experts the expert that
    /// scored the window.
    #[arg(long)]
    out: PathBuf,
    /// Samples between window starts [default: the checkpoint's].
    #[arg(long)]
    stride: Option<usize>,
    /// Score with the f32 model instead of the int8 one.
    #[arg(long)]
    f32: bool,
    /// Score: elbo, elbo-sampled, iwae or recon-prob [default: the calibrated default].
    #[arg(long)]
    score: Option<String>,
    /// Samples K of a sampled score (elbo-sampled, iwae, recon-prob): more is tighter and
    /// slower.
    #[arg(long, default_value_t = 16)]
    samples: u16,
    /// Seed of the random draws of the sampled scores (same seed, same scores).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Alarm threshold, any number but NaN [default: the checkpoint's calibrated one for the
    /// score].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_f32)]
    threshold: Option<f32>,
    /// Exponential moving average of the scores, weight ALPHA of the newest (0 < ALPHA <= 1)
    /// [default: 1, no smoothing].
    #[arg(long, value_name = "ALPHA", value_parser = parse_f32)]
    ema: Option<f32>,
    /// Hysteresis: once raised, the alarm clears only when the level drops to this value or
    /// below (at most the threshold) [default: the threshold].
    #[arg(long, value_name = "LEVEL", allow_hyphen_values = true, value_parser = parse_f32)]
    clear_threshold: Option<f32>,
    /// k-of-n debounce `K,N[,CLEAR]`: raise when K of the last N levels exceed the threshold,
    /// clear when fewer than CLEAR (default 1) of them are above the clear threshold
    /// (1 <= CLEAR <= K <= N <= 32).
    #[arg(long, value_name = "K,N[,CLEAR]", value_parser = parse_debounce)]
    debounce: Option<(u8, u8, u8)>,
    /// Saturation limits `LO,HI` in physical units (every channel): a value at or beyond them
    /// flags its windows as saturated.
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true, value_parser = parse_limits)]
    limits: Option<(f32, f32)>,
    /// Flagged windows (saturated or stuck channel) update the alarm too.
    #[arg(long)]
    alarm_on_flagged: bool,
    /// On-device adaptation `STATS,THRESHOLD`: learn the standardization over the first STATS
    /// windows, then the threshold over THRESHOLD windows at --adapt-fpr (as the chip would).
    #[arg(long, value_name = "STATS,THRESHOLD", value_parser = parse_adapt)]
    adapt: Option<(u32, u32)>,
    /// Target false-positive rate of the adapted threshold, 0 < FPR < 1 [default: the
    /// checkpoint's].
    #[arg(long, value_name = "FPR", value_parser = parse_f32)]
    adapt_fpr: Option<f32>,
    /// Use the stream's channel columns in file order instead of matching them to the model's
    /// channels by name (the default; extra columns are then ignored with a note).
    #[arg(long)]
    by_position: bool,
}

/// `LO,HI` with `LO < HI`.
fn parse_limits(s: &str) -> Result<(f32, f32), String> {
    let parse = |t: &str| match parse_f32(t) {
        Ok(v) if v.is_nan() => Err(format!("{:?} is not a number", t.trim())),
        r => r,
    };
    match s.split_once(',') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo < hi {
                Ok((lo, hi))
            } else {
                Err(format!("LO {lo} must be below HI {hi}"))
            }
        }
        None => Err("expected LO,HI".into()),
    }
}

/// Comma-separated unsigned integers, `min..=max` of them.
fn parse_counts<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Result<Vec<T>, String> {
    let v = s
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<T>()
                .map_err(|_| format!("{t:?} is not a small non-negative integer"))
        })
        .collect::<Result<Vec<T>, String>>()?;
    if (min..=max).contains(&v.len()) {
        Ok(v)
    } else {
        Err(format!("expected {min} to {max} comma-separated values"))
    }
}

/// `K,N[,CLEAR]` (CLEAR defaults to 1; ranges are checked with the alarm configuration).
fn parse_debounce(s: &str) -> Result<(u8, u8, u8), String> {
    let v = parse_counts::<u8>(s, 2, 3)?;
    Ok((v[0], v[1], v.get(2).copied().unwrap_or(1)))
}

/// `STATS,THRESHOLD` window counts.
fn parse_adapt(s: &str) -> Result<(u32, u32), String> {
    let v = parse_counts::<u32>(s, 2, 2)?;
    Ok((v[0], v[1]))
}

/// Runs `tinyvae score`: streamed, one CSV row in, one window line out.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: ScoreArgs) -> Result<()> {
    output::check_file(&a.out, &[Input::Dir(&a.model), Input::File(&a.data)])?;
    if tinyvae_host_tools::poe_checkpoint::is_poe(&a.model) {
        // Its thresholds are calibrated per subset for -ELBO; no on-device adaptation yet.
        let unsupported = [
            (
                a.score.as_deref().is_some_and(|s| s != "elbo"),
                "--score other than elbo",
            ),
            (a.adapt.is_some() || a.adapt_fpr.is_some(), "--adapt"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(used, _)| *used) {
            bail!(
                "{}: {what} is not supported for a multi-sensor (--group) checkpoint (its \
                 per-subset thresholds are calibrated for -ELBO)",
                a.model.display()
            );
        }
        let o = super::poe::PoeScoreArgs {
            stride: a.stride,
            f32: a.f32,
            threshold: a.threshold,
            ema: a.ema,
            clear_threshold: a.clear_threshold,
            debounce: a.debounce,
            limits: a.limits,
            alarm_on_flagged: a.alarm_on_flagged,
            by_position: a.by_position,
        };
        return super::poe::score(&a.model, &a.data, &a.out, &o);
    }
    let m = load_model(&a.model)?;
    let kind = match &a.score {
        Some(name) => model::parse_score_kind(name, a.samples)?,
        None => model::parse_score_kind(m.th.score.split('-').next().unwrap_or("elbo"), a.samples)?,
    };
    let name = model::score_name(kind);
    let source = if a.threshold.is_some() {
        options::ThresholdSource::Flag
    } else {
        options::ThresholdSource::Checkpoint
    };
    let threshold = match a.threshold {
        Some(t) => t,
        None => m.th.for_score(&name, a.f32, &a.model, a.samples)?,
    };
    let alarm = options::AlarmOptions {
        threshold,
        source,
        ema: a.ema,
        clear_threshold: a.clear_threshold,
        debounce: a.debounce,
    }
    .config()?;
    let mut cfg = stream::StreamConfig::new(
        kind,
        a.stride.unwrap_or(m.ck.config.stride),
        a.seed,
        threshold,
    );
    cfg.alarm = alarm;
    cfg.limits = a.limits;
    cfg.alarm_on_flagged = a.alarm_on_flagged;
    cfg.adapt = a
        .adapt
        .map(|(stats, windows)| {
            let fpr = a.adapt_fpr.unwrap_or(m.th.fpr as f32);
            options::adapt_config(stats, windows, fpr, a.adapt_fpr.is_some())
        })
        .transpose()?;
    cfg.attribution = true;
    if cfg.stride == 0 {
        bail!("{}: --stride must be at least 1", a.data.display());
    }
    // Streamed: one CSV row in, each window's line out as the detector reports it.
    let csv = data::CsvRows::open(&a.data, data::NonFinite::Keep)?;
    let mut src = stream::CsvSource::new(
        csv,
        &m.ck.config.channels,
        m.ck.config.window,
        Matching::from_flag(a.by_position),
    )?
    .check_clamped(&Norm {
        mean: m.ck.config.norm_mean.clone(),
        std: m.ck.config.norm_std.clone(),
    });
    let hm = if a.f32 { &m.f32 } else { &m.int8 };
    let channels = &m.ck.config.channels;
    let has_labels = src.has_labels();
    let mut out = output::FileWriter::create(&a.out)?;
    let write_err = || format!("{}: cannot write", a.out.display());
    let mut line = String::from("window,start,end,score,alarm");
    if has_labels {
        line.push_str(",label");
    }
    line.push_str(",level,event,faults,top_channel");
    // A mixture of experts adds the expert the gate routed each window to.
    let mixture = hm.moe.is_some();
    if mixture {
        line.push_str(",expert");
    }
    line.push('\n');
    out.write_all(line.as_bytes()).with_context(write_err)?;
    let (mut windows, mut alarmed, mut events, mut skipped, mut flagged) = (0, 0, 0, 0, 0);
    stream::run_rows(hm, &m.ck.config, &mut src, &cfg, |src, row| {
        use std::fmt::Write as _;
        let r = &row.report;
        windows += 1;
        alarmed += usize::from(r.alarm);
        events += usize::from(matches!(
            r.event,
            Some(tinyvae::AlarmEvent::AlarmRaised { .. })
        ));
        skipped += usize::from(r.faults.skips_window());
        flagged += usize::from(r.faults.flags_window() && !r.faults.skips_window());
        let score = r.score.map_or(String::new(), |s| format!("{:?}", s.score));
        line.clear();
        write!(
            line,
            "{},{},{},{score},{}",
            r.window,
            r.start,
            r.end,
            u8::from(r.alarm)
        )?;
        if has_labels {
            write!(line, ",{}", u8::from(src.any_label(r.start, r.end)))?;
        }
        let level = r.level.map_or(String::new(), |l| format!("{l:?}"));
        let event = match r.event {
            None => "",
            Some(tinyvae::AlarmEvent::AlarmRaised { .. }) => "raised",
            Some(tinyvae::AlarmEvent::AlarmCleared { .. }) => "cleared",
        };
        let top = row
            .top_channel
            .and_then(|c| channels.get(c))
            .map_or("", String::as_str);
        write!(line, ",{level},{event},{},{top}", row.faults_text(channels))?;
        if mixture {
            let e = r.expert.map_or(String::new(), |e| e.to_string());
            write!(line, ",{e}")?;
        }
        line.push('\n');
        out.write_all(line.as_bytes()).with_context(write_err)
    })?;
    data::window_count(src.rows_read(), m.ck.config.window, cfg.stride)
        .map_err(|e| anyhow!("{}: {e}", a.data.display()))?;
    out.commit()?;
    for w in src.clamp_warnings(channels) {
        eprintln!("warning: {}: {w}", a.data.display());
    }
    eprintln!(
        "{} windows, {} with the alarm on, {} alarms raised ({} {}, threshold {:.4}); {} skipped (non-finite samples or gaps), {} flagged (saturated or stuck); wrote {}",
        windows,
        alarmed,
        events,
        if a.f32 { "f32" } else { "int8" },
        name,
        threshold,
        skipped,
        flagged,
        a.out.display()
    );
    Ok(())
}
