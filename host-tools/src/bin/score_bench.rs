//! Host scoring throughput per core (issue 16): windows per second of CPU time, for each int8
//! kernel this CPU runs, at three depths:
//!
//! - `model`: `tinyvae::score` (ELBO: encode, decode, log-likelihood, KL) on the standardized
//!   windows of the data, already in memory: the scoring alone.
//! - `detector`: the library's streaming detector over the samples in memory, as `tinyvae
//!   score` runs it (standardization, ring, faults, alarm, attribution), without CSV or output.
//! - `tinyvae score`: the command end to end (CSV parsing, detector, CSV output), on the data
//!   repeated `--repeat` times, as a child process (its CPU time from `getrusage`); the kernel
//!   is chosen with `TINYVAE_KERNEL`.
//!
//! ```text
//! cargo build --release -p tinyvae-host-tools --bins && target/release/score_bench [-- OPTIONS]
//!   --model DIR     checkpoint (default firmware/model/default: 384-60-32, int8)
//!   --data FILE     stream (default data/watch_shoulder_pen/test.csv)
//!   --seconds S     CPU seconds per measurement (default 1)
//!   --repeat N      copies of the data for the end-to-end run (default 20)
//! ```
//!
//! Every figure is the best of three runs of windows / CPU seconds of the measuring thread
//! (`/proc/thread-self/schedstat`, so other processes on the machine do not count); each kernel's
//! scores are checked equal, bit for bit, to the portable kernel's before they are timed.
//! PyTorch's figure for the same architecture in f32 on one core (issue 16: about 320,000
//! windows/s at batch 64, 12,800 at batch 1) is printed beside them for reference.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tinyvae::ScoreKind;
use tinyvae_host_tools::data::{self, Norm, Windows};
use tinyvae_host_tools::kernel::{pack_layers_for, Int8Kernel, KERNEL_ENV};
use tinyvae_host_tools::model::{score_windows, HostModel};
use tinyvae_host_tools::pipeline::load_model;
use tinyvae_host_tools::stream;

/// PyTorch 2.15, one core, f32, batch 64 (issue 16's measurement on this machine kind).
const PYTORCH_BATCH64: f64 = 320_000.0;
/// The same at batch 1.
const PYTORCH_BATCH1: f64 = 12_800.0;

struct Opts {
    model: PathBuf,
    data: PathBuf,
    seconds: f64,
    repeat: usize,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        model: "firmware/model/default".into(),
        data: "data/watch_shoulder_pen/test.csv".into(),
        seconds: 1.0,
        repeat: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => o.model = val()?.into(),
            "--data" => o.data = val()?.into(),
            "--seconds" => {
                let v = val()?;
                o.seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .with_context(|| format!("--seconds {v}: expected a positive number"))?;
            }
            "--repeat" => {
                let v = val()?;
                o.repeat = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .with_context(|| format!("--repeat {v}: expected an integer >= 1"))?;
            }
            _ => bail!("unknown option {a} (--model, --data, --seconds, --repeat)"),
        }
    }
    Ok(o)
}

/// CPU seconds of this thread (wall-clock seconds where the kernel does not say).
fn cpu_now(start: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| start.elapsed().as_secs_f64(), |ns| ns as f64 * 1e-9)
}

/// Best of three of `windows / CPU seconds`, each run repeating `f` (which scores `windows`
/// windows) for at least `seconds`.
fn rate(seconds: f64, windows: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = cpu_now(t0);
        let mut done = 0usize;
        loop {
            f()?;
            done += windows;
            let t = cpu_now(t0) - start;
            if t >= seconds / 3.0 {
                best = best.max(done as f64 / t);
                break;
            }
        }
    }
    Ok(best)
}

fn with_kernel(m: &HostModel, k: Int8Kernel) -> Result<HostModel> {
    let mut m = m.clone();
    m.packed = pack_layers_for(&m.layers, k)?;
    Ok(m)
}

/// `tinyvae score` on `data`, as a child process: `(windows, CPU seconds, wall seconds)`.
fn score_cli(bin: &Path, model: &Path, data: &Path, out: &Path, k: Int8Kernel) -> Result<f64> {
    let before = children_cpu();
    let status = Command::new(bin)
        .env(KERNEL_ENV, k.name())
        .args(["score", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("{} score failed: {status}", bin.display());
    }
    Ok(children_cpu() - before)
}

/// User + system CPU seconds of the finished children.
fn children_cpu() -> f64 {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed local it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

fn main() -> Result<()> {
    let o = parse()?;
    let m = load_model(&o.model)?;
    let cfg = &m.ck.config;
    let series = data::load_csv(&o.data)?.select_channels(&cfg.channels)?;
    let norm = Norm {
        mean: cfg.norm_mean.clone(),
        std: cfg.norm_std.clone(),
    };
    let w = Windows::cut(&series, cfg.window, cfg.stride, &norm)?;
    let kernels: Vec<Int8Kernel> = Int8Kernel::ALL
        .into_iter()
        .filter(|k| k.supported())
        .collect();
    let (enc, heads, _) = m.int8.dims();
    let dims: Vec<String> = enc
        .iter()
        .chain(&heads[..1])
        .map(|d| d.0.to_string())
        .chain([heads[0].1.to_string()])
        .collect();
    println!(
        "model {} ({} int8, {} MACs per ELBO score), data {} ({} rows, {} windows of {} x {}, stride {})",
        o.model.display(),
        dims.join("-"),
        m.int8.macs(),
        o.data.display(),
        series.rows(),
        w.len(),
        cfg.window,
        cfg.channels.len(),
        cfg.stride
    );
    println!(
        "kernels this CPU runs: {}",
        kernels
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let portable = with_kernel(&m.int8, Int8Kernel::Portable)?;
    let want = score_windows(&portable, w.iter(), ScoreKind::Elbo, 0)?;
    let scfg = {
        let mut c = stream::StreamConfig::new(ScoreKind::Elbo, cfg.stride, 0, 0.0);
        c.attribution = true;
        c
    };
    let want_rows = stream::run(&portable, cfg, &series, &scfg)?;

    let bin = std::env::current_exe()?.with_file_name("tinyvae");
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("data.csv");
    let text = std::fs::read_to_string(&o.data)
        .with_context(|| format!("reading {}", o.data.display()))?;
    let (header, body) = text.split_once('\n').context("empty data file")?;
    let mut rep = String::with_capacity(text.len() * o.repeat);
    rep.push_str(header);
    rep.push('\n');
    for _ in 0..o.repeat {
        rep.push_str(body);
        if !body.ends_with('\n') {
            rep.push('\n');
        }
    }
    std::fs::write(&big, rep)?;
    let big_windows = data::window_count(series.rows() * o.repeat, cfg.window, cfg.stride)
        .map_err(anyhow::Error::msg)?;
    let have_cli = bin.exists();

    println!();
    println!("| kernel | model score (windows/s) | detector, no CSV (windows/s) | `tinyvae score` end to end (windows/s) |");
    println!("|---|---|---|---|");
    for &k in &kernels {
        let mk = with_kernel(&m.int8, k)?;
        let got = score_windows(&mk, w.iter(), ScoreKind::Elbo, 0)?;
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.score.to_bits() == b.score.to_bits());
        let rows = stream::run(&mk, cfg, &series, &scfg)?;
        if !same || rows != want_rows {
            bail!("the {k} kernel's scores differ from the portable kernel's");
        }
        let model_rate = rate(o.seconds, w.len(), || {
            score_windows(&mk, w.iter(), ScoreKind::Elbo, 0).map(|_| ())
        })?;
        let det_rate = rate(o.seconds, w.len(), || {
            stream::run(&mk, cfg, &series, &scfg).map(|_| ())
        })?;
        let cli = if have_cli {
            let out = dir.path().join(format!("out-{k}.csv"));
            let mut best = 0.0f64;
            for _ in 0..3 {
                let cpu = score_cli(&bin, &o.model, &big, &out, k)?;
                best = best.max(big_windows as f64 / cpu);
            }
            format!("{best:.0}")
        } else {
            format!("(build {} first)", bin.display())
        };
        println!("| {k} | {model_rate:.0} | {det_rate:.0} | {cli} |");
    }
    println!(
        "| PyTorch 2.15, f32, 1 core (issue 16, not measured here) | {PYTORCH_BATCH64:.0} at batch 64, {PYTORCH_BATCH1:.0} at batch 1 | | |"
    );
    println!();
    println!(
        "(windows per CPU second of one thread, best of 3; end to end: {} windows, the data x {})",
        big_windows, o.repeat
    );
    Ok(())
}
