//! Training benchmark: prints seconds per epoch and the final loss for the shared workload of
//! issue 3, and optionally the time to train the demo model on the bundled data.
//!
//! ```text
//! cargo run --release -p tinyvae-host-tools --bin train_bench [-- OPTIONS]
//!   --epochs N       epochs of the shared workload (default 20)
//!   --dump FILE      also write the synthetic windows as raw little-endian f32 (20000 x 96),
//!                    the input of the optional bench/train_pytorch.py
//!   --demo           also train the demo model on data/watch_shoulder_pen/train.csv
//!   --data FILE      the CSV for --demo (default: the bundled train.csv)
//!   --skip-workload  only the demo
//! ```
//!
//! Shared workload: a 96-64-8 / 8-64-96 VAE (3 channels x 32 samples, latent 8, unit-variance
//! decoder, ReLU), 20,000 synthetic windows, batch 64 (313 steps per epoch, the last batch of
//! 32), Adam lr 1e-3, no KL warm-up, no validation, seed 0, one thread. PyTorch 2.x takes
//! 0.24-0.26 s per epoch for it on this machine kind (`../shared/BENCHMARKS.md`).
//!
//! Synthetic windows: per window and channel c, `a sin(f t + p) + 0.5 a' sin(2.3 f t + p')`
//! (time t = 0..31, frequencies shared by the window's channels with per-channel offsets),
//! plus uniform noise of ±0.1, then standardized per channel over the whole set.

use std::io::Write;
use std::time::Instant;
use tinyvae_host_tools::train::{self, Arch, NoiseKind, TrainConfig};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 40) as f32 / 16_777_216.0
    }
}

fn synthetic(n: usize, w: usize, c: usize) -> Vec<f32> {
    let mut r = Lcg(42);
    let mut v = Vec::with_capacity(n * w * c);
    for _ in 0..n {
        let f = 0.1 + 0.5 * r.next();
        let (a, a2) = (0.5 + r.next(), r.next());
        let (p, p2) = (
            std::f32::consts::TAU * r.next(),
            std::f32::consts::TAU * r.next(),
        );
        let offs: Vec<f32> = (0..c).map(|_| r.next()).collect();
        for t in 0..w {
            for off in &offs {
                let t = t as f32;
                v.push(
                    a * (f * t + p + off).sin()
                        + 0.5 * a2 * (2.3 * f * t + p2).sin()
                        + 0.2 * (r.next() - 0.5),
                );
            }
        }
    }
    standardize(&mut v, c);
    v
}

fn standardize(v: &mut [f32], c: usize) {
    let rows = v.len() / c;
    for ch in 0..c {
        let mean = v
            .iter()
            .skip(ch)
            .step_by(c)
            .map(|&x| f64::from(x))
            .sum::<f64>()
            / rows as f64;
        let var = v
            .iter()
            .skip(ch)
            .step_by(c)
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / rows as f64;
        let sd = var.sqrt().max(1e-12);
        for x in v.iter_mut().skip(ch).step_by(c) {
            *x = ((f64::from(*x) - mean) / sd) as f32;
        }
    }
}

/// CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`, nanoseconds), so
/// the figure does not depend on other processes sharing the cores.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn workload(epochs: usize, dump: Option<&str>) -> anyhow::Result<()> {
    let (n, w, c) = (20_000, 32, 3);
    let data = synthetic(n, w, c);
    if let Some(path) = dump {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for x in &data {
            f.write_all(&x.to_le_bytes())?;
        }
        f.flush()?;
        println!("wrote {n} x {} f32 (little-endian) to {path}", w * c);
    }
    let arch = Arch {
        input: w * c,
        encoder_hidden: vec![64],
        latent: 8,
        decoder_hidden: vec![64],
        noise: NoiseKind::Unit,
        channels: c,
    };
    let cfg = TrainConfig {
        epochs,
        batch: 64,
        lr: 1e-3,
        kl_warmup: 0,
        patience: 0,
        seed: 0,
        quiet: true,
        ..TrainConfig::default()
    };
    let cpu0 = thread_cpu_seconds();
    let (params, report) = train::train(&arch, &cfg, &data, &[])?;
    let cpu = thread_cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let secs: Vec<f64> = report.history.iter().map(|e| e.seconds).collect();
    let last = report.history.last().map_or(f64::NAN, |e| e.loss);
    let full = params.elbo(&arch, &data, 1)?;
    println!("shared workload: VAE 96-64-8 / 8-64-96, unit variance, {n} windows, batch 64, Adam 1e-3, {epochs} epochs, 1 thread");
    println!(
        "  seconds per epoch: median {:.4}, mean {:.4}, min {:.4}, max {:.4} (total {:.2} s)",
        median(secs.clone()),
        secs.iter().sum::<f64>() / secs.len() as f64,
        secs.iter().copied().fold(f64::INFINITY, f64::min),
        secs.iter().copied().fold(0.0, f64::max),
        report.seconds
    );
    if let Some(cpu) = cpu {
        println!(
            "  CPU seconds per epoch (this thread, immune to other load): {:.4}",
            cpu / epochs as f64
        );
    }
    println!(
        "  final epoch loss (mean -ELBO per window over the epoch's steps): {last:.4} \
         (recon {:.4}, KL {:.4})",
        report.history.last().map_or(f64::NAN, |e| e.recon),
        report.history.last().map_or(f64::NAN, |e| e.kl)
    );
    println!(
        "  -ELBO of the final weights on all windows (1 sample): {:.4} (recon {:.4}, KL {:.4})",
        full.loss, full.recon, full.kl
    );
    println!(
        "  loss per epoch: {:?}",
        report
            .history
            .iter()
            .map(|e| (e.loss * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    Ok(())
}

fn demo(path: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let mut lines = text.lines();
    let c = lines.next().map_or(0, |h| h.split(',').count());
    let mut rows: Vec<f32> = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        for f in line.split(',') {
            rows.push(f.trim().parse()?);
        }
    }
    standardize(&mut rows, c);
    let (window, stride) = (64, 32);
    let t = rows.len() / c;
    let mut windows = Vec::new();
    let mut s = 0;
    while s + window <= t {
        windows.extend_from_slice(&rows[s * c..(s + window) * c]);
        s += stride;
    }
    let x = window * c;
    let nw = windows.len() / x;
    let nv = nw / 10;
    let (tr, va) = windows.split_at((nw - nv) * x);
    let arch = Arch::demo(window, c);
    let cfg = TrainConfig {
        quiet: true,
        ..TrainConfig::default()
    };
    let t0 = Instant::now();
    let (p, r) = train::train(&arch, &cfg, tr, va)?;
    let secs = t0.elapsed().as_secs_f64();
    let v = p.elbo(&arch, va, 1)?;
    println!(
        "demo model: {}-64-8 / 8-64-{} per-feature variance on {path}: {} train + {} validation windows (window {window}, stride {stride})",
        x, x, nw - nv, nv
    );
    println!(
        "  {} epochs run (default config: max {}, KL warm-up {}, patience {}), best epoch {}, {:.3} s total, {:.4} s per epoch; validation -ELBO {:.2}",
        r.history.len(),
        cfg.epochs,
        cfg.kl_warmup,
        cfg.patience,
        r.best_epoch,
        secs,
        secs / r.history.len() as f64,
        v.loss
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut epochs = 20;
    let mut dump = None;
    let mut run_demo = false;
    let mut skip = false;
    let mut data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/watch_shoulder_pen/train.csv"
    )
    .to_string();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--epochs" => {
                i += 1;
                epochs = args
                    .get(i)
                    .ok_or_else(|| anyhow::anyhow!("--epochs N"))?
                    .parse()?;
            }
            "--dump" => {
                i += 1;
                dump = Some(
                    args.get(i)
                        .ok_or_else(|| anyhow::anyhow!("--dump FILE"))?
                        .clone(),
                );
            }
            "--demo" => run_demo = true,
            "--data" => {
                i += 1;
                data = args
                    .get(i)
                    .ok_or_else(|| anyhow::anyhow!("--data FILE"))?
                    .clone();
            }
            "--skip-workload" => skip = true,
            other => anyhow::bail!(
                "unknown argument {other:?} (see the doc at the top of train_bench.rs)"
            ),
        }
        i += 1;
    }
    if !skip {
        workload(epochs, dump.as_deref())?;
    }
    if run_demo {
        demo(&data)?;
    }
    Ok(())
}
