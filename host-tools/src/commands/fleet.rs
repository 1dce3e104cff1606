//! `tinyvae fleet` (feature `fleet`): Parquet archives of many devices, scored and calibrated
//! on Apache DataFusion or a Ballista cluster (`tinyvae_host_tools::fleet`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use tinyvae_host_tools::fleet::archive;
use tinyvae_host_tools::fleet::cluster::{self, ExecutorOpts};
use tinyvae_host_tools::fleet::engine::Engine;
use tinyvae_host_tools::fleet::generate::{self, GenerateOpts};
use tinyvae_host_tools::fleet::job;
use tinyvae_host_tools::fleet::spec::ScoreSpec;
use tinyvae_host_tools::options::parse_f32;
use tinyvae_host_tools::output::{self, Input, Staging};

#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// Add a CSV stream to an archive as one device (`DIR/device=NAME/part-0.parquet`).
    Convert {
        /// The CSV stream (as `tinyvae score` reads it).
        #[arg(long)]
        data: PathBuf,
        /// The device's name (A-Z a-z 0-9 _ - .).
        #[arg(long)]
        device: String,
        /// The archive directory (created if missing).
        #[arg(long)]
        archive: PathBuf,
    },
    /// Generate a seeded fleet replaying the bundled recordings (gains, offsets, sensor faults,
    /// dropped samples), Hive-partitioned by device.
    Generate(GenerateArgs),
    /// Score every device of an archive: `OUT/windows/*.parquet` (the columns of `tinyvae
    /// score` after `device`) and `OUT/devices.parquet` (a per-device summary).
    Score(ScoreArgs),
    /// Per-device alarm thresholds at a target false-positive rate from the archive's normal
    /// windows, as a CSV table (`device,threshold,normal_windows,fpr`); use one with `tinyvae
    /// export --threshold`, or all with `fleet score --thresholds`.
    Calibrate(CalibrateArgs),
    /// Run a Ballista scheduler that knows the fleet's plans.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
    },
    /// Run a Ballista executor that can run the fleet's scoring.
    Executor(ExecutorArgs),
    /// Windows per second of `fleet score` on DataFusion with 1 and 2 tasks and on a local
    /// Ballista cluster (a scheduler and executors started from this binary), with the peak
    /// memory of each executor.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The archive directory to write (devices must not exist yet).
    #[arg(long)]
    archive: PathBuf,
    /// Devices.
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Samples per device (before dropped samples).
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Seed (same seed, same fleet).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The recordings to replay (`train.csv` and `test.csv`).
    #[arg(long, default_value = "data/watch_shoulder_pen")]
    recordings: PathBuf,
    /// Also write each device as `DIR/NAME.csv` (the stream `tinyvae score` reads).
    #[arg(long, value_name = "DIR")]
    csv: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// `local` (DataFusion in this process) or `ballista://HOST:PORT` (a `fleet scheduler`).
    #[arg(long, default_value = "local")]
    engine: String,
    /// Concurrent tasks [default: the cores of this machine].
    #[arg(long)]
    partitions: Option<usize>,
    /// Memory pool of a local run, MB (the sort by device and time spills to disk past it).
    #[arg(long, default_value_t = 512)]
    memory_limit: usize,
}

impl EngineArgs {
    fn engine(&self) -> Result<Engine> {
        let p = self.partitions.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        });
        Engine::parse(&self.engine, p, self.memory_limit)
    }
}

#[derive(Args, Debug, Clone)]
pub struct SpecArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Samples between window starts [default: the checkpoint's].
    #[arg(long)]
    stride: Option<usize>,
    /// Score with the f32 model instead of the int8 one.
    #[arg(long)]
    f32: bool,
    /// Score: elbo, elbo-sampled, iwae or recon-prob [default: the calibrated default].
    #[arg(long)]
    score: Option<String>,
    /// Samples K of a sampled score.
    #[arg(long, default_value_t = 16)]
    samples: u16,
    /// Seed of the sampled scores.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Saturation limits `LO,HI` in physical units (every channel).
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true, value_parser = parse_limits)]
    limits: Option<(f32, f32)>,
}

impl SpecArgs {
    fn spec(&self) -> ScoreSpec {
        ScoreSpec {
            model: self.model.clone(),
            f32: self.f32,
            score: self.score.clone(),
            samples: self.samples,
            seed: self.seed,
            stride: self.stride,
            limits: self.limits,
            ..ScoreSpec::default()
        }
    }
}

/// `LO,HI` with `LO < HI`.
fn parse_limits(s: &str) -> Result<(f32, f32), String> {
    let (lo, hi) = s.split_once(',').ok_or("expected LO,HI")?;
    let (lo, hi) = (parse_f32(lo)?, parse_f32(hi)?);
    if lo < hi {
        Ok((lo, hi))
    } else {
        Err(format!("LO {lo} must be below HI {hi}"))
    }
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The archive directory.
    #[arg(long)]
    archive: PathBuf,
    /// Output directory (`windows/`, `devices.parquet`).
    #[arg(long)]
    out: PathBuf,
    /// Alarm threshold of every device [default: the checkpoint's calibrated one].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_f32)]
    threshold: Option<f32>,
    /// Per-device thresholds (`fleet calibrate`'s table), overriding --threshold for the
    /// devices it names.
    #[arg(long, value_name = "FILE")]
    thresholds: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The archive directory.
    #[arg(long)]
    archive: PathBuf,
    /// Output CSV table.
    #[arg(long)]
    out: PathBuf,
    /// Target false-positive rate on each device's normal windows (0 < FPR < 1).
    #[arg(long, default_value_t = 0.01)]
    fpr: f64,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct ExecutorArgs {
    /// The scheduler, `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Flight (data) port.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// gRPC (control) port.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Concurrent tasks [default: the cores of this machine].
    #[arg(long)]
    cores: Option<usize>,
    /// Memory pool of the executor's tasks, MB.
    #[arg(long, default_value_t = 512)]
    memory_limit: u64,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The archive directory.
    #[arg(long)]
    archive: PathBuf,
    /// Ballista executors (1 core each); 0 skips the Ballista run.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// First of the local ports the Ballista run uses (scheduler, then two per executor).
    #[arg(long, default_value_t = 50150)]
    port: u16,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn host_port(s: &str, what: &str) -> Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .with_context(|| format!("{what} {s:?}: expected HOST:PORT"))?;
    let p = p
        .parse()
        .ok()
        .with_context(|| format!("{what} {s:?}: port {p:?} is not 0 to 65535"))?;
    Ok((h.to_string(), p))
}

/// Runs `tinyvae fleet ...`.
///
/// # Errors
/// Bad options or input, a failed job or write.
pub fn run(cmd: FleetCmd) -> Result<()> {
    match cmd {
        FleetCmd::Convert {
            data,
            device,
            archive,
        } => {
            let (rows, path) = archive::convert(&data, &device, &archive)?;
            eprintln!(
                "{rows} rows of {} as device {device}: wrote {}",
                data.display(),
                path.display()
            );
            Ok(())
        }
        FleetCmd::Generate(a) => {
            if let Some(dir) = &a.csv {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{}: cannot create", dir.display()))?;
            }
            let o = GenerateOpts {
                devices: a.devices,
                samples: a.samples,
                seed: a.seed,
                stuck_rows: 48,
            };
            let rows = generate::generate(&a.recordings, &a.archive, a.csv.as_deref(), &o)?;
            eprintln!(
                "{} devices, {rows} samples (seed {}): wrote {}",
                a.devices,
                a.seed,
                a.archive.display()
            );
            Ok(())
        }
        FleetCmd::Score(a) => score(a),
        FleetCmd::Calibrate(a) => {
            output::check_file(&a.out, &[Input::Dir(&a.spec.model), Input::Dir(&a.archive)])?;
            let engine = a.engine.engine()?;
            let spec = a.spec.spec();
            let c = runtime()?.block_on(job::calibrate(&engine, &spec, &a.archive, a.fpr))?;
            output::write_file(&a.out, job::thresholds_csv(&c.thresholds, a.fpr).as_bytes())?;
            eprintln!(
                "{} devices calibrated at FPR {} on their normal windows: wrote {} (export one with `tinyvae export --threshold T`)",
                c.thresholds.len(),
                a.fpr,
                a.out.display()
            );
            if !c.without_normal.is_empty() {
                eprintln!(
                    "{} device(s) without a normal window (every window skipped, flagged or \
                     labeled anomalous) are not in the table and keep the model's threshold: {}",
                    c.without_normal.len(),
                    c.without_normal.join(", ")
                );
            }
            Ok(())
        }
        FleetCmd::Scheduler { bind } => {
            let (h, p) = host_port(&bind, "--bind")?;
            runtime()?.block_on(cluster::scheduler(&h, p))
        }
        FleetCmd::Executor(a) => {
            let (sh, sp) = host_port(&a.scheduler, "--scheduler")?;
            let o = ExecutorOpts {
                scheduler_host: sh,
                scheduler_port: sp,
                bind_host: a.bind,
                port: a.port,
                grpc_port: a.grpc_port,
                cores: a.cores.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }),
                memory_limit: a.memory_limit << 20,
            };
            runtime()?.block_on(cluster::executor(&o))
        }
        FleetCmd::Bench(a) => bench(a),
    }
}

fn score(a: ScoreArgs) -> Result<()> {
    let engine = a.engine.engine()?;
    let mut spec = a.spec.spec();
    spec.threshold = a.threshold;
    if let Some(f) = &a.thresholds {
        spec.thresholds = job::read_thresholds(f)?;
    }
    let staging = Staging::new(
        &a.out,
        "fleet score",
        &[Input::Dir(&a.spec.model), Input::Dir(&a.archive)],
    )?;
    let s = runtime()?.block_on(job::score(&engine, &spec, &a.archive, staging.path()))?;
    let out = staging.commit()?;
    eprintln!(
        "{} windows of {} devices in {:.2} s ({:.0} windows/s, {} tasks): wrote {}",
        s.windows,
        s.devices,
        s.seconds,
        s.windows as f64 / s.seconds.max(1e-9),
        s.files,
        out.display()
    );
    Ok(())
}

/// Peak resident memory (VmHWM) of process `pid`, MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Children killed when dropped.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bench_run(engine: &Engine, spec: &ScoreSpec, archive: &Path, label: &str) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let s = runtime()?.block_on(job::score(engine, spec, archive, dir.path()))?;
    let rate = s.windows as f64 / s.seconds.max(1e-9);
    println!(
        "{label}: {} windows of {} devices in {:.2} s: {:.0} windows/s",
        s.windows, s.devices, s.seconds, rate
    );
    Ok(rate)
}

fn bench(a: BenchArgs) -> Result<()> {
    let spec = a.spec.spec();
    for p in [1, 2] {
        let e = Engine::parse("local", p, 512)?;
        bench_run(&e, &spec, &a.archive, &format!("datafusion, {p} task(s)"))?;
    }
    println!(
        "this process's peak RSS: {:.0} MB",
        peak_rss_mb(std::process::id()).unwrap_or(f64::NAN)
    );
    if a.executors == 0 {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let sched = format!("127.0.0.1:{}", a.port);
    let mut procs = Procs(Vec::new());
    let quiet = || std::process::Stdio::null();
    procs.0.push(
        std::process::Command::new(&exe)
            .args(["fleet", "scheduler", "--bind", &sched])
            .stdout(quiet())
            .stderr(quiet())
            .spawn()?,
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    for i in 0..a.executors {
        let port = a.port + 1 + 2 * i as u16;
        procs.0.push(
            std::process::Command::new(&exe)
                .args(["fleet", "executor", "--scheduler", &sched, "--cores", "1"])
                .args([
                    "--port",
                    &port.to_string(),
                    "--grpc-port",
                    &(port + 1).to_string(),
                ])
                .stdout(quiet())
                .stderr(quiet())
                .spawn()?,
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let e = Engine::parse(&format!("ballista://{sched}"), a.executors, 512)?;
    bench_run(
        &e,
        &spec,
        &a.archive,
        &format!("ballista, {} executors x 1 core", a.executors),
    )?;
    for (i, c) in procs.0.iter().enumerate().skip(1) {
        println!(
            "executor {i} peak RSS: {:.0} MB",
            peak_rss_mb(c.id()).unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
