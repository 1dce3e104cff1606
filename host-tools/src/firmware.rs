//! `tinyvae firmware run|parity|bench`: build the firmware for a Cortex-M core, run it in
//! `qemu-system-arm`, decode its defmt output, and check or report what it printed.
//!
//! - [`run`] builds `firmware/qemu`'s `score` program for each core, runs it and prints its log.
//! - [`parity`] also computes every window's score on the host with the same library, model and
//!   data, and compares them bit for bit (score, reconstruction and KL terms, alarm, flagged
//!   faults); it returns `Ok(false)` and prints the first mismatch when one differs.
//! - [`bench`] runs the `bench` program (instructions per inference under `-icount`, see
//!   `firmware/qemu/src/counter.rs`) and measures flash and RAM from the `score` ELF plus the
//!   stack high-water mark the firmware measures by stack painting; prints a table or, with
//!   `json`, one object keyed by core name.
//!
//! Each core builds in its own target directory (`firmware/target/qemu-<core>/`): the M4 and M7
//! share a target triple but not a `target-cpu`, and the defmt decoder needs the exact ELF that
//! ran. Cargo always runs inside `firmware/`, so its `.cargo/config.toml` applies.
//!
//! QEMU exit status: 0 success, 1 failure reported by the firmware (panic, HardFault, failed
//! check), 134 a crash or lockup (wrong memory map, no semihosting): anything but 0 is an error.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::stream::WindowRow;

mod reference;

/// Longest a QEMU run may take before it is killed (a hung firmware is a failure).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// A Cortex-M core and the QEMU machine that emulates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Core {
    /// Cortex-M0 (ARMv6-M, no FPU, no DSP) on the BBC micro:bit (nRF51, 256K flash, 16K RAM).
    M0,
    /// Cortex-M3 (ARMv7-M, no FPU) on the MPS2 AN385.
    M3,
    /// Cortex-M4F (ARMv7E-M, DSP, single-precision FPU) on the MPS2 AN386.
    M4,
    /// Cortex-M7 (ARMv7E-M, DSP, FPU) on the MPS2 AN500.
    M7,
    /// Cortex-M33 (ARMv8-M Mainline, DSP, FPU) on the MPS2 AN505, running Secure.
    M33,
}

impl Core {
    /// Every core, in the order tables list them.
    pub const ALL: [Core; 5] = [Core::M0, Core::M3, Core::M4, Core::M7, Core::M33];

    /// Short name (`m0`, `m3`, `m4`, `m7`, `m33`): CLI value and JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Core::M0 => "m0",
            Core::M3 => "m3",
            Core::M4 => "m4",
            Core::M7 => "m7",
            Core::M33 => "m33",
        }
    }

    /// Rust target triple.
    pub fn target(self) -> &'static str {
        match self {
            Core::M0 => "thumbv6m-none-eabi",
            Core::M3 => "thumbv7m-none-eabi",
            Core::M4 | Core::M7 => "thumbv7em-none-eabihf",
            Core::M33 => "thumbv8m.main-none-eabihf",
        }
    }

    /// `-C target-cpu` the firmware is built with.
    pub fn target_cpu(self) -> &'static str {
        match self {
            Core::M0 => "cortex-m0",
            Core::M3 => "cortex-m3",
            Core::M4 => "cortex-m4",
            Core::M7 => "cortex-m7",
            Core::M33 => "cortex-m33",
        }
    }

    /// QEMU machine.
    pub fn machine(self) -> &'static str {
        match self {
            Core::M0 => "microbit",
            Core::M3 => "mps2-an385",
            Core::M4 => "mps2-an386",
            Core::M7 => "mps2-an500",
            Core::M33 => "mps2-an505",
        }
    }

    /// (flash origin, flash size, RAM origin, RAM size) of the default machine, as linked.
    pub fn memory(self) -> (u64, u64, u64, u64) {
        memory_of(self.machine())
    }

    /// Parses `m0|m3|m4|m7|m33`, a comma-separated list of them, or `all`.
    ///
    /// # Errors
    /// An unknown core name.
    pub fn parse_list(s: &str) -> Result<Vec<Core>> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Core::ALL.to_vec());
        }
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let c: Core = part.parse()?;
            if !v.contains(&c) {
                v.push(c);
            }
        }
        if v.is_empty() {
            bail!("no core given (expected m0, m3, m4, m7, m33 or all)");
        }
        Ok(v)
    }
}

impl fmt::Display for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Core {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Core::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| anyhow!("unknown core `{s}` (expected m0, m3, m4, m7, m33 or all)"))
    }
}

/// (flash origin, flash size, RAM origin, RAM size) of a QEMU machine, as the firmware links it.
pub fn memory_of(machine: &str) -> (u64, u64, u64, u64) {
    const K: u64 = 1024;
    match machine {
        "microbit" => (0, 256 * K, 0x2000_0000, 16 * K),
        "mps2-an505" => (0x1000_0000, 4096 * K, 0x3800_0000, 4096 * K),
        _ => (0, 4096 * K, 0x2000_0000, 4096 * K),
    }
}

/// The firmware workspace: `$TINYVAE_FIRMWARE_DIR`, else `firmware/` next to `host-tools/`.
pub fn firmware_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TINYVAE_FIRMWARE_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("firmware")
}

fn check_tools(core: Core) -> Result<()> {
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(qemu, Ok(s) if s.success()) {
        bail!(
            "qemu-system-arm is not installed (or not on PATH). Install it, e.g. \
             `sudo apt-get install qemu-system-arm` (Debian/Ubuntu) or `brew install qemu` (macOS); \
             `cargo xtask test` installs it when run as root"
        );
    }
    let dir = firmware_dir();
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "no firmware workspace at {} (set TINYVAE_FIRMWARE_DIR to its path)",
            dir.display()
        );
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(&dir)
        .output()
        .context("running `rustc --print sysroot`")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib").join(core.target()).is_dir() {
        bail!(
            "the Rust target {} (for {core}) is not installed: run `rustup target add {}` \
             (rust-toolchain.toml lists it, so rustup installs it on a fresh machine)",
            core.target(),
            core.target()
        );
    }
    Ok(())
}

/// The model source compiled into the firmware: `model` if given, else `$TINYVAE_MODEL`, else
/// the firmware's default (`firmware/model/default_model.rs`, chosen by its `build.rs`). Relative
/// paths are taken from the current directory.
///
/// # Errors
/// The file (or, with none given, the default model) does not exist.
pub fn model_source(model: Option<&Path>) -> Result<Option<PathBuf>> {
    let given = match model {
        Some(m) => Some(m.to_path_buf()),
        None => std::env::var_os("TINYVAE_MODEL")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    match given {
        None => {
            let default = firmware_dir().join("model").join("default_model.rs");
            if !default.is_file() {
                bail!(
                    "no model to compile in: {} does not exist; pass --model FILE.rs (written by \
                     `tinyvae export` or `tinyvae demo`) or set TINYVAE_MODEL",
                    default.display()
                );
            }
            Ok(None)
        }
        Some(p) => p.canonicalize().map(Some).with_context(|| {
            format!(
                "model source {} (export one with `tinyvae export`)",
                p.display()
            )
        }),
    }
}

fn cargo_in_firmware(model: Option<&Path>) -> Result<Command> {
    let dir = firmware_dir();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null());
    match model_source(model)? {
        Some(m) => cmd.env("TINYVAE_MODEL", m),
        None => cmd.env_remove("TINYVAE_MODEL"),
    };
    match tflite_source() {
        Some(p) => cmd.env("TINYVAE_MLPERF_RS", p),
        None => cmd.env_remove("TINYVAE_MLPERF_RS"),
    };
    Ok(cmd)
}

/// Rust source of the real MLPerf Tiny AD model for the `tflite` program: `$TINYVAE_MLPERF_RS`
/// if set, else generated from `models/mlperf_tiny_ad01/ad01_int8.tflite` by the TFLite importer
/// ([`crate::tflite::to_rust_source`]) into `firmware/target/tflite/ad01_int8.rs` (rewritten only
/// when its content changes, so the firmware is not rebuilt needlessly). `None` (with a note) if
/// neither is available; the same answer for the whole process.
pub fn tflite_source() -> Option<PathBuf> {
    static SOURCE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SOURCE
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("TINYVAE_MLPERF_RS").filter(|v| !v.is_empty()) {
                return PathBuf::from(p).canonicalize().ok();
            }
            let dir = firmware_dir();
            let tfl = dir.join("../models/mlperf_tiny_ad01/ad01_int8.tflite");
            let generate = || -> Result<PathBuf> {
                let bytes =
                    std::fs::read(&tfl).with_context(|| format!("reading {}", tfl.display()))?;
                let m = crate::tflite::import_tflite(&bytes).map_err(|e| anyhow!("{e}"))?;
                let src = crate::tflite::to_rust_source(&m, "ad01_int8");
                let out_dir = dir.join("target").join("tflite");
                std::fs::create_dir_all(&out_dir)?;
                let out = out_dir.join("ad01_int8.rs");
                if std::fs::read_to_string(&out).ok().as_deref() != Some(src.as_str()) {
                    std::fs::write(&out, src)?;
                }
                Ok(out)
            };
            if !tfl.is_file() {
                return None;
            }
            match generate() {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!(
                        "note: MLPerf Tiny AD model not imported ({e:#}); its benchmark is skipped"
                    );
                    None
                }
            }
        })
        .clone()
}

/// A firmware build for one core: where its ELFs are and which QEMU machine runs them.
#[derive(Clone, Debug)]
pub struct Built {
    /// The core.
    pub core: Core,
    /// The QEMU machine: [`Core::machine`], or for the M0 `mps2-an385` when the program does not
    /// fit the micro:bit (see [`build`]).
    pub machine: &'static str,
    /// Directory of the ELFs.
    pub dir: PathBuf,
}

impl Built {
    /// Path of program `prog`'s ELF.
    pub fn elf(&self, prog: &str) -> PathBuf {
        self.dir.join(prog)
    }

    /// Runs program `prog` (see [`run_on`]).
    ///
    /// # Errors
    /// As [`run_on`].
    pub fn run(&self, prog: &str) -> Result<RunOutput> {
        run_on(self.machine, &self.elf(prog))
    }

    /// `m0 (microbit)`-style label.
    pub fn label(&self) -> String {
        format!("{} ({})", self.core, self.machine)
    }
}

/// Builds the named programs of `firmware/qemu` for `core` (release) with the model `model`
/// (see [`model_source`]); returns the directory of the ELFs (see [`build_core`], which also
/// says which machine runs them; [`run_elf`] finds it from the path).
///
/// # Errors
/// As [`build_core`].
pub fn build(core: Core, bins: &[&str], model: Option<&Path>) -> Result<PathBuf> {
    build_core(core, bins, model).map(|b| b.dir)
}

/// Builds the named programs of `firmware/qemu` for `core` (release) with the model `model`
/// (see [`model_source`]).
///
/// The M0 is built for the micro:bit (256 KB flash, 16 KB RAM). If the programs do not fit its
/// flash (a large f32 model, say), the same ARMv6-M code is linked with the MPS2 memory map and
/// run on `mps2-an385` instead (QEMU's Cortex-M3 machine executes it unchanged: same
/// instructions, same soft-float arithmetic), with a note; [`Built::machine`] says which.
///
/// # Errors
/// Missing target or model, or a failed build (cargo's output is shown).
pub fn build_core(core: Core, bins: &[&str], model: Option<&Path>) -> Result<Built> {
    check_tools(core)?;
    match build_for(core, core.machine(), bins, model)? {
        Some(b) => Ok(b),
        None => {
            eprintln!(
                "note: the {core} programs do not fit the micro:bit's 256 KB of flash; running \
                 the same ARMv6-M build on mps2-an385 (4 MB) instead"
            );
            build_for(core, "mps2-an385", bins, model)?
                .ok_or_else(|| anyhow!("the {core} programs do not fit mps2-an385 either"))
        }
    }
}

/// One build; `Ok(None)` if the link failed for lack of flash on the micro:bit.
fn build_for(
    core: Core,
    machine: &'static str,
    bins: &[&str],
    model: Option<&Path>,
) -> Result<Option<Built>> {
    let dir = firmware_dir();
    let suffix = if machine == core.machine() {
        String::new()
    } else {
        format!("-{machine}")
    };
    let target_dir = dir
        .join("target")
        .join(format!("qemu-{}{suffix}", core.name()));
    let mut cmd = cargo_in_firmware(model)?;
    cmd.args(["build", "--release", "--quiet", "-p", "tinyvae-qemu"])
        .args(["--target", core.target()])
        .env("TINYVAE_CORE", core.name())
        .env("TINYVAE_MACHINE", machine)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("-Ctarget-cpu={}", core.target_cpu()),
        );
    for b in bins {
        cmd.args(["--bin", b]);
    }
    let may_overflow = machine == "microbit";
    if may_overflow {
        cmd.stderr(Stdio::piped());
    }
    let out = cmd
        .output()
        .with_context(|| format!("running cargo in {}", dir.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if may_overflow && err.contains("will not fit in region 'FLASH'") {
            return Ok(None);
        }
        eprint!("{err}");
        bail!("firmware build for {core} ({}) failed", core.target());
    }
    Ok(Some(Built {
        core,
        machine,
        dir: target_dir.join(core.target()).join("release"),
    }))
}

/// Builds the real-board example (`firmware/boards/nrf52840-dk`, binary `imu-score`, an
/// MPU-6050 over I2C scored live with defmt-rtt) with the model `model`; returns the ELF path.
/// It cannot run here: flash it with `cargo run --release` in that directory (probe-rs).
///
/// # Errors
/// Missing target or model, or a failed build.
pub fn build_board(model: Option<&Path>) -> Result<PathBuf> {
    let dir = firmware_dir();
    let board = dir.join("boards").join("nrf52840-dk");
    if !board.join("Cargo.toml").is_file() {
        bail!("no board crate at {}", board.display());
    }
    let target = "thumbv7em-none-eabihf";
    let target_dir = dir.join("target").join("board");
    let mut cmd = cargo_in_firmware(model)?;
    cmd.current_dir(&board)
        .args(["build", "--release", "--quiet", "--target", target])
        .env("CARGO_TARGET_DIR", &target_dir);
    let status = cmd.status().context("running cargo for the board")?;
    if !status.success() {
        bail!("the nRF52840-DK example failed to build");
    }
    Ok(target_dir.join(target).join("release").join("imu-score"))
}

/// What one QEMU run printed.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// Decoded defmt messages, one per frame, prefixed by their level (`INFO`, `ERROR`, ...).
    pub lines: Vec<String>,
    /// QEMU's exit status.
    pub status: i32,
    /// QEMU's own stderr (diagnostics).
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Runs an ELF built by [`build`] for `core` on its QEMU machine (`mps2-an385` for an M0 build
/// that did not fit the micro:bit, recognised by its build directory) with `-icount`, and
/// decodes its defmt output (see [`run_on`]).
///
/// # Errors
/// As [`run_on`].
pub fn run_elf(core: Core, elf: &Path) -> Result<RunOutput> {
    run_on(machine_for(core, elf), elf)
}

/// The machine an ELF built by [`build`] for `core` runs on, from its build directory.
fn machine_for(core: Core, elf: &Path) -> &'static str {
    let fallback = format!("qemu-{}-mps2-an385", core.name());
    if elf.components().any(|c| c.as_os_str() == fallback.as_str()) {
        "mps2-an385"
    } else {
        core.machine()
    }
}

/// Runs an ELF on QEMU machine `machine` with `-icount` and decodes its defmt output.
///
/// # Errors
/// QEMU missing or not startable, a timeout, an ELF without a defmt table, or malformed frames.
/// A non-zero exit status is *not* an error here (see [`RunOutput::status`]).
pub fn run_on(machine: &str, elf: &Path) -> Result<RunOutput> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let table = defmt_decoder::Table::parse(&bytes)
        .with_context(|| format!("reading the defmt table of {}", elf.display()))?
        .ok_or_else(|| anyhow!("{} has no .defmt section", elf.display()))?;

    let started = Instant::now();
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", machine, "-nographic", "-monitor", "none"])
        .args([
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
        ])
        .args(["-icount", "shift=10,align=off,sleep=off", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-arm")?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no qemu stdout"))?;
    let mut err = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no qemu stderr"))?;
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} on {} did not finish within {} s (hung firmware?)",
                elf.display(),
                machine,
                RUN_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let raw = out_reader
        .join()
        .map_err(|_| anyhow!("qemu stdout reader panicked"))??;
    let stderr = err_reader
        .join()
        .map_err(|_| anyhow!("qemu stderr reader panicked"))??;
    let elapsed = started.elapsed();

    let mut decoder = table.new_stream_decoder();
    decoder.received(&raw);
    let mut lines = Vec::new();
    loop {
        match decoder.decode() {
            Ok(frame) => {
                let level = frame
                    .level()
                    .map(|l| l.as_str().to_uppercase())
                    .unwrap_or_else(|| "PRINT".into());
                lines.push(format!("{level} {}", frame.display_message()));
            }
            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
            Err(defmt_decoder::DecodeError::Malformed) => {
                bail!(
                    "malformed defmt frame after {} frames from {} (does the ELF match the run?)",
                    lines.len(),
                    elf.display()
                )
            }
        }
    }
    Ok(RunOutput {
        lines,
        status: exit_code(status),
        stderr,
        elapsed,
    })
}

/// The exit status as a shell reports it: the code, or 128 + the signal (QEMU aborts with
/// SIGABRT, 134, on a CPU lockup).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(-1)
}

fn status_meaning(status: i32) -> &'static str {
    match status {
        0 => "success",
        1 => "the firmware reported a failure (panic, HardFault or failed check)",
        134 => "crash or CPU lockup (stack overflow, wrong memory map, missing semihosting?)",
        _ => "unexpected exit status",
    }
}

fn ensure_success(b: &Built, what: &str, out: &RunOutput) -> Result<()> {
    let core = b.core;
    if out.status == 0 {
        return Ok(());
    }
    for l in out.lines.iter().rev().take(10).rev() {
        eprintln!("  {core} | {l}");
    }
    if !out.stderr.trim().is_empty() {
        eprintln!("  qemu stderr: {}", out.stderr.trim());
    }
    bail!(
        "{what} on {core} ({}) exited with status {}: {}",
        b.machine,
        out.status,
        status_meaning(out.status)
    )
}

/// The words of a firmware log line after its level: a tag, positional words and `key=value`
/// pairs.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// First word (`window`, `fault`, `bench`, `size`, `stack`, `done`, ...).
    pub tag: String,
    /// Words without `=`, after the tag.
    pub words: Vec<String>,
    /// `key=value` pairs.
    pub fields: BTreeMap<String, String>,
}

impl Record {
    /// Splits a decoded line (`LEVEL tag word key=value ...`).
    pub fn parse(line: &str) -> Record {
        let mut it = line.split_whitespace();
        let _level = it.next();
        let mut r = Record {
            tag: it.next().unwrap_or_default().to_string(),
            ..Record::default()
        };
        for w in it {
            match w.split_once('=') {
                Some((k, v)) => {
                    r.fields.insert(k.to_string(), v.to_string());
                }
                None => r.words.push(w.to_string()),
            }
        }
        r
    }

    /// A decimal field.
    ///
    /// # Errors
    /// Missing or not a number.
    pub fn num(&self, key: &str) -> Result<u64> {
        let v = self
            .fields
            .get(key)
            .ok_or_else(|| anyhow!("`{}` line without `{key}=`", self.tag))?;
        v.parse()
            .with_context(|| format!("`{}` line: `{key}={v}` is not a number", self.tag))
    }

    /// A hexadecimal `u32` field (f32 bits).
    ///
    /// # Errors
    /// Missing or not hexadecimal.
    pub fn hex(&self, key: &str) -> Result<u32> {
        let v = self
            .fields
            .get(key)
            .ok_or_else(|| anyhow!("`{}` line without `{key}=`", self.tag))?;
        u32::from_str_radix(v.trim_start_matches("0x"), 16)
            .with_context(|| format!("`{}` line: `{key}={v}` is not hexadecimal", self.tag))
    }
}

fn records(out: &RunOutput) -> Vec<Record> {
    out.lines.iter().map(|l| Record::parse(l)).collect()
}

/// Builds and runs the scoring program on each core with the model `model` (see
/// [`model_source`]), printing its decoded log.
///
/// # Errors
/// Build or run failure, or a non-zero exit status.
pub fn run(cores: &[Core], model: Option<&Path>) -> Result<()> {
    for &core in cores {
        let b = build_core(core, &["score"], model)?;
        let out = b.run("score")?;
        for l in &out.lines {
            if cores.len() > 1 {
                println!("{core} | {l}");
            } else {
                println!("{l}");
            }
        }
        ensure_success(&b, "score", &out)?;
        eprintln!(
            "{core}: `score` on {} exited 0 ({} lines, {:.2} s)",
            b.machine,
            out.lines.len(),
            out.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Tags of the per-window lines of the `score` program (one per pass, see
/// `firmware/pipeline/src/run.rs`).
pub const WINDOW_TAGS: [&str; 3] = ["window", "sampled", "faulty"];

impl Record {
    /// Whether this is a per-window line.
    pub fn is_window(&self) -> bool {
        WINDOW_TAGS.contains(&self.tag.as_str())
    }

    /// The line as printed, without the level (for messages).
    pub fn render(&self) -> String {
        let mut s = self.tag.clone();
        if let Some(w) = self.words.first() {
            s.push(' ');
            s.push_str(w);
        }
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }

    /// Describes the values that differ between two window lines (scores decoded).
    fn diff(&self, other: &Record) -> String {
        let mut parts = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            self.fields.keys().chain(other.fields.keys()).collect();
        for k in keys {
            let (a, b) = (self.fields.get(k), other.fields.get(k));
            if a != b {
                let show = |v: Option<&String>| match v {
                    None => "(missing)".to_string(),
                    Some(v) => match (k.as_str(), u32::from_str_radix(v, 16)) {
                        ("score" | "recon" | "kl" | "level", Ok(bits)) => {
                            format!("{v} ({:e})", f32::from_bits(bits))
                        }
                        _ => v.clone(),
                    },
                };
                parts.push(format!("{k}: chip {} vs host {}", show(a), show(b)));
            }
        }
        parts.join(", ")
    }
}

/// One core's parity result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoreParity {
    /// Core name.
    pub core: String,
    /// QEMU machine.
    pub machine: String,
    /// Window lines compared (all passes).
    pub windows: usize,
    /// Windows skipped for sensor faults (in the fault pass).
    pub skipped: usize,
    /// The first difference, if any.
    pub mismatch: Option<String>,
}

/// Compares the chip's window lines with the host's, in order.
fn compare(chip: &[Record], host: &[Record]) -> Option<String> {
    let chip: Vec<&Record> = chip.iter().filter(|r| r.is_window()).collect();
    let host: Vec<&Record> = host.iter().filter(|r| r.is_window()).collect();
    for (i, h) in host.iter().enumerate() {
        match chip.get(i) {
            None => {
                return Some(format!(
                    "the chip printed {} window lines, the host {}; first missing: {}",
                    chip.len(),
                    host.len(),
                    h.render()
                ))
            }
            Some(c) if c.tag != h.tag || c.words != h.words || c.fields != h.fields => {
                return Some(format!(
                    "{} {} (first sample {}): {}\n    chip: {}\n    host: {}",
                    h.tag,
                    h.words.first().map_or("?", String::as_str),
                    h.fields.get("start").map_or("?", String::as_str),
                    c.diff(h),
                    c.render(),
                    h.render()
                ))
            }
            Some(_) => {}
        }
    }
    (chip.len() != host.len()).then(|| {
        format!(
            "the chip printed {} window lines, the host {}",
            chip.len(),
            host.len()
        )
    })
}

/// Runs the scoring program on each core and compares every window line with the host's for the
/// same model (see [`model_source`]) and stream; returns one result per core.
///
/// The host's lines come from `firmware/host-ref`: the firmware's own pipeline crate (the model,
/// the library's streaming detector, the same seeds) compiled for the host, so any difference is
/// a difference of arithmetic between the host and the core. Every value is compared as bits:
/// scores, reconstruction and KL terms, alarm levels, alarms, alarm events, fault masks.
/// Before that, the negative controls (`panic`, `hardfault` programs) must fail with status 1.
///
/// # Errors
/// Build or run failures, a non-zero exit status, or no window printed by the host.
pub fn parity_report(cores: &[Core], model: Option<&Path>) -> Result<Vec<CoreParity>> {
    let host = reference::run(model)?;
    let host_windows = host.iter().filter(|r| r.is_window()).count();
    if host_windows == 0 {
        bail!("the host reference printed no windows");
    }
    let skipped = host
        .iter()
        .filter(|r| r.is_window() && r.fields.get("score").is_some_and(|s| s == "none"))
        .count();
    let mut out = Vec::new();
    for &core in cores {
        let b = build_core(core, &["score", "panic", "hardfault"], model)?;
        negative_controls(&b)?;
        let run = b.run("score")?;
        ensure_success(&b, "score", &run)?;
        out.push(CoreParity {
            core: core.name().to_string(),
            machine: b.machine.to_string(),
            windows: host_windows,
            skipped,
            mismatch: compare(&records(&run), &host),
        });
    }
    Ok(out)
}

/// Runs the `panic` and `hardfault` programs: each must log its failure and exit with status 1,
/// proving that a panic or a fault on the chip fails the run (and CI) instead of passing or
/// hanging.
fn negative_controls(b: &Built) -> Result<()> {
    let core = b.core;
    for (prog, expect) in [
        ("panic", "ERROR panic at"),
        ("hardfault", "ERROR HardFault at"),
    ] {
        let out = b.run(prog)?;
        let logged = out.lines.iter().any(|l| l.starts_with(expect));
        if out.status != 1 || !logged {
            bail!(
                "negative control `{prog}` on {core} exited with status {} ({}){}: a failure on \
                 the chip would not fail the run",
                out.status,
                status_meaning(out.status),
                if logged { "" } else { " without logging it" }
            );
        }
    }
    Ok(())
}

/// [`parity_report`], printed: one line per core, the first mismatch in full. Returns whether
/// every core matched the host bit for bit.
///
/// # Errors
/// As [`parity_report`].
pub fn parity(cores: &[Core], model: Option<&Path>) -> Result<bool> {
    let mut ok = true;
    for p in parity_report(cores, model)? {
        match &p.mismatch {
            None => println!(
                "{} ({}): {} windows bit-identical to the host ({} skipped for injected sensor \
                 faults); panic and HardFault controls exit 1",
                p.core, p.machine, p.windows, p.skipped
            ),
            Some(m) => {
                ok = false;
                println!("{} ({}): MISMATCH at {m}", p.core, p.machine);
            }
        }
    }
    Ok(ok)
}

/// The test stream compiled into the firmware: `$TINYVAE_STREAM` (absolute or relative to
/// `firmware/`), else the bundled `data/watch_shoulder_pen/test.csv`.
pub fn stream_source() -> PathBuf {
    let dir = firmware_dir();
    match std::env::var_os("TINYVAE_STREAM").filter(|v| !v.is_empty()) {
        Some(p) => dir.join(p),
        None => dir.join("../data/watch_shoulder_pen/test.csv"),
    }
}

/// Writes the part of the stream the firmware compiled in (the header and the first `rows` data
/// rows of [`stream_source`]) to `out`, for scoring it on the host.
///
/// # Errors
/// I/O errors.
pub fn write_stream_slice(rows: usize, out: &Path) -> Result<()> {
    let src = stream_source();
    let text =
        std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut s = String::new();
    for l in lines.by_ref().take(rows + 1) {
        s.push_str(l);
        s.push('\n');
    }
    std::fs::write(out, s).with_context(|| format!("writing {}", out.display()))
}

/// One pass of the firmware's `score` program, for the host to rerun with its own detector.
#[derive(Clone, Debug, PartialEq)]
pub struct HostPass {
    /// The pass's tag in the log: `window`, `sampled` or `faulty`.
    pub tag: &'static str,
    /// The rows the pass streams (CSV in the bundled format; gaps as rows of empty fields).
    pub csv: PathBuf,
    /// The score: `None` for the exported score, else the pass's own (IWAE-K).
    pub kind: Option<tinyvae::ScoreKind>,
    /// Saturation limits `(lo, hi)` of the pass.
    pub limits: Option<(f32, f32)>,
}

/// Parity with the host tool's own detector (what `tinyvae score` runs: the library's
/// [`tinyvae::SliceDetector`] over the checkpoint's runtime-shaped model) rather than the
/// firmware's pipeline compiled for the host. Runs the `score` program on each core with the
/// exported model `model_rs`; rebuilds the input of each of its three passes on the host from
/// the log (the compiled-in stream slice, [`write_stream_slice`]; for the fault pass the
/// `inject` lines, written as `nan`/`inf` fields, rows of empty fields for gaps, copied values
/// for a stuck channel, and the `saturation` limit); calls `host_windows` on each
/// ([`HostPass`]); and compares every window with the chip's: index and start, score bits, alarm
/// level bits, alarm state, alarm event and the fault masks. Returns one result per core.
///
/// # Errors
/// Build or run failures, `host_windows` failing, unparsable output.
pub fn parity_with_host_scores(
    cores: &[Core],
    model_rs: Option<&Path>,
    host_windows: impl Fn(&HostPass) -> Result<Vec<WindowRow>>,
) -> Result<Vec<CoreParity>> {
    let mut runs = Vec::new();
    for &core in cores {
        let b = build_core(core, &["score"], model_rs)?;
        let run = b.run("score")?;
        ensure_success(&b, "score", &run)?;
        runs.push((b, records(&run)));
    }
    let first = &runs.first().ok_or_else(|| anyhow!("no core to run"))?.1;
    let find = |tag: &str| {
        first
            .iter()
            .find(|r| r.tag == tag)
            .ok_or_else(|| anyhow!("no `{tag}` line from the firmware"))
    };
    let rows = usize::try_from(find("model")?.num("stream_rows")?)?;
    let setup = find("passes")?;
    let tmp = tempfile::tempdir()?;
    let slice = tmp.path().join("stream.csv");
    write_stream_slice(rows, &slice)?;
    let faulty = tmp.path().join("faulty.csv");
    let injections: Vec<&Record> = first.iter().filter(|r| r.tag == "inject").collect();
    let fault_rows = usize::try_from(setup.num("fault_rows")?)?;
    write_fault_stream(&slice, &injections, fault_rows, &faulty)?;
    let limit = f32::from_bits(setup.hex("saturation")?);
    let samples = u16::try_from(setup.num("sampled_iwae")?)?;
    let passes = [
        HostPass {
            tag: "window",
            csv: slice.clone(),
            kind: None,
            limits: None,
        },
        HostPass {
            tag: "sampled",
            csv: slice,
            kind: Some(tinyvae::ScoreKind::Iwae { samples }),
            limits: None,
        },
        HostPass {
            tag: "faulty",
            csv: faulty,
            kind: None,
            limits: Some((-limit, limit)),
        },
    ];
    let host: Vec<(&str, Vec<WindowRow>)> = passes
        .iter()
        .map(|p| Ok((p.tag, host_windows(p)?)))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (b, recs) in runs {
        let mut mismatch = None;
        let mut windows = 0;
        let mut skipped = 0;
        for (tag, rows) in &host {
            let chip: Vec<&Record> = recs.iter().filter(|r| r.tag == *tag).collect();
            windows += rows.len();
            skipped += rows
                .iter()
                .filter(|r| r.report.faults.skips_window())
                .count();
            if mismatch.is_some() {
                continue;
            }
            mismatch = rows.iter().zip(&chip).find_map(|(h, c)| {
                window_diff(c, &h.report).map(|d| format!("{tag} {}: {d}", h.report.window))
            });
            if mismatch.is_none() && chip.len() != rows.len() {
                mismatch = Some(format!(
                    "{tag}: the chip printed {} windows, the host {}",
                    chip.len(),
                    rows.len()
                ));
            }
        }
        out.push(CoreParity {
            core: b.core.name().to_string(),
            machine: b.machine.to_string(),
            windows,
            skipped,
            mismatch,
        });
    }
    Ok(out)
}

/// Writes the first `rows` rows of `slice` (a CSV with a header) to `out` with the firmware's
/// injected faults (`inject` records) applied in order, as its fault pass applies them.
fn write_fault_stream(slice: &Path, inject: &[&Record], rows: usize, out: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(slice).with_context(|| format!("reading {}", slice.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("empty stream slice")?;
    let channel_cols: Vec<usize> = header
        .split(',')
        .enumerate()
        .filter(|(_, n)| !n.trim().eq_ignore_ascii_case("label"))
        .map(|(i, _)| i)
        .collect();
    let clean: Vec<Vec<String>> = lines
        .take(rows)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let col = |r: &Record| -> Result<usize> {
        let c = usize::try_from(r.num("channel")?)?;
        channel_cols
            .get(c)
            .copied()
            .ok_or_else(|| anyhow!("inject: channel {c} is not in the stream"))
    };
    let mut s = format!("{header}\n");
    for (i, row) in clean.iter().enumerate() {
        let mut f = row.clone();
        for r in inject {
            let (from, to) = (r.num("from")?, r.num("to")?);
            if !(from..to).contains(&(i as u64)) {
                continue;
            }
            match r.fields.get("kind").map(String::as_str) {
                Some("value") => {
                    let v = f32::from_bits(r.hex("value")?);
                    let text = if v.is_nan() {
                        "nan".to_string()
                    } else {
                        format!("{v:e}")
                    };
                    if let Some(slot) = f.get_mut(col(r)?) {
                        *slot = text;
                    }
                }
                Some("gap") => {
                    for &c in &channel_cols {
                        if let Some(slot) = f.get_mut(c) {
                            slot.clear();
                        }
                    }
                }
                Some("stuck") => {
                    let c = col(r)?;
                    let from_row = usize::try_from(r.num("row")?)?;
                    let v = clean
                        .get(from_row)
                        .and_then(|row| row.get(c))
                        .ok_or_else(|| anyhow!("inject: row {from_row} is not in the stream"))?;
                    if let Some(slot) = f.get_mut(c) {
                        slot.clone_from(v);
                    }
                }
                k => bail!("inject: unknown kind {k:?}"),
            }
        }
        s.push_str(&f.join(","));
        s.push('\n');
    }
    std::fs::write(out, s).with_context(|| format!("writing {}", out.display()))
}

/// An alarm event as the firmware logs it: 0 none, 1 raised, 2 cleared.
pub fn event_code(event: Option<tinyvae::AlarmEvent>) -> u8 {
    match event {
        None => 0,
        Some(tinyvae::AlarmEvent::AlarmRaised { .. }) => 1,
        Some(tinyvae::AlarmEvent::AlarmCleared { .. }) => 2,
    }
}

/// The first difference between a chip `window` record and the host's window, if any.
fn window_diff(c: &Record, h: &tinyvae::WindowReport) -> Option<String> {
    let hex =
        |v: Option<f32>| v.map_or_else(|| "none".to_string(), |v| format!("{:08x}", v.to_bits()));
    let field = |key: &str| c.fields.get(key).cloned().unwrap_or_default();
    let pairs = [
        (
            "window",
            c.words.first().cloned().unwrap_or_default(),
            h.window.to_string(),
        ),
        ("start", field("start"), h.start.to_string()),
        ("score", field("score"), hex(h.score.map(|s| s.score))),
        ("level", field("level"), hex(h.level)),
        ("alarm", field("alarm"), u8::from(h.alarm).to_string()),
        ("event", field("event"), event_code(h.event).to_string()),
        ("nf", field("nf"), h.faults.non_finite.0.to_string()),
        ("sat", field("sat"), h.faults.saturated.0.to_string()),
        ("stuck", field("stuck"), h.faults.stuck.0.to_string()),
        ("gap", field("gap"), u8::from(h.faults.gap).to_string()),
    ];
    pairs
        .iter()
        .find(|(_, chip, host)| chip != host)
        .map(|(k, chip, host)| format!("chip {k}={chip} vs host {k}={host}"))
}

/// Flash and RAM of an ELF, by section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElfSizes {
    /// Loaded sections in flash (`.vector_table`, `.text`, `.rodata`, ...) plus the flash copy of
    /// `.data`.
    pub flash: u64,
    /// `.text` (and the vector table, and veneers): code.
    pub text: u64,
    /// Read-only data.
    pub rodata: u64,
    /// Initialised statics (in RAM, and their initial values in flash).
    pub data: u64,
    /// Zeroed and uninitialised statics.
    pub bss: u64,
    /// Flash bytes of the compiled-in model's statics (weights, biases, requantization
    /// constants, tables, normalization, the model value): symbols of `tinyvae_pipeline::model`.
    pub model: u64,
    /// Flash bytes of the compiled-in test stream (`tinyvae_pipeline::stream::BITS`).
    pub stream: u64,
}

impl ElfSizes {
    /// Statics in RAM (`.data + .bss + .uninit`).
    pub fn ram_static(&self) -> u64 {
        self.data + self.bss
    }
}

/// Reads the section sizes of a firmware ELF, classified by the machine's memory map, and the sizes
/// of the model's and the test stream's symbols (legacy-mangled names of the statics of
/// `tinyvae_pipeline::model` and `tinyvae_pipeline::stream`).
///
/// # Errors
/// Unreadable or malformed ELF.
pub fn elf_sizes(machine: &str, elf: &Path) -> Result<ElfSizes> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let file =
        object::File::parse(&*bytes).with_context(|| format!("parsing {}", elf.display()))?;
    let (fo, fl, ro, rl) = memory_of(machine);
    let mut s = ElfSizes::default();
    for sec in file.sections() {
        let alloc = match sec.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
            _ => false,
        };
        if !alloc || sec.size() == 0 {
            continue;
        }
        let a = sec.address();
        let size = sec.size();
        let name = sec.name().unwrap_or("");
        if (fo..fo + fl).contains(&a) {
            s.flash += size;
            if sec.kind() == SectionKind::Text || name == ".vector_table" {
                s.text += size;
            } else {
                s.rodata += size;
            }
        } else if (ro..ro + rl).contains(&a) {
            if sec.kind() == SectionKind::UninitializedData || name == ".bss" || name == ".uninit" {
                s.bss += size;
            } else {
                s.data += size;
                s.flash += size;
            }
        }
    }
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Data || !(fo..fo + fl).contains(&sym.address()) {
            continue;
        }
        let name = sym.name().unwrap_or("");
        if name.contains("16tinyvae_pipeline5model") {
            s.model += sym.size();
        } else if name.contains("16tinyvae_pipeline6stream") {
            s.stream += sym.size();
        }
    }
    Ok(s)
}

/// One core's benchmark figures (`None`: does not fit, or not measured).
#[derive(Clone, Debug, Default)]
pub struct BenchFigures {
    /// The QEMU machine the figures come from.
    pub machine: String,
    /// Instructions by workload name as the firmware printed them.
    pub instructions: BTreeMap<String, Option<u64>>,
    /// Multiply-accumulates by workload.
    pub macs: BTreeMap<String, u64>,
    /// Output checksums by workload (equal on every core when the kernels agree bit for bit).
    pub checksums: BTreeMap<String, String>,
    /// Sizes of the `score` program.
    pub score_elf: ElfSizes,
    /// Model parameter bytes in flash (weights, biases, requantization constants, tables).
    pub weights_bytes: u64,
    /// Bytes of the compiled-in test stream.
    pub stream_bytes: u64,
    /// Stack high-water mark of the `score` run.
    pub stack_bytes: u64,
    /// Stack high-water mark of the `bench` run.
    pub bench_stack_bytes: u64,
}

impl BenchFigures {
    fn instr(&self, key: &str) -> Option<u64> {
        self.instructions.get(key).copied().flatten()
    }

    /// Flash without the model parameters and the test stream: code, constants, vector table.
    pub fn flash_code(&self) -> u64 {
        self.score_elf
            .flash
            .saturating_sub(self.weights_bytes + self.stream_bytes)
    }

    /// Flash of the deployable program: code plus the model (not the test stream).
    pub fn flash_with_weights(&self) -> u64 {
        self.flash_code() + self.weights_bytes
    }

    /// RAM: statics plus the measured stack peak.
    pub fn ram(&self) -> u64 {
        self.score_elf.ram_static() + self.stack_bytes
    }

    /// The JSON object of this core (scripts rely on the first five keys).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<u64>| {
            m.insert(k.to_string(), v.map_or(serde_json::Value::Null, Into::into));
        };
        put("small_vae_instructions", self.instr("small_vae"));
        put("mlperf_ad_instructions", self.instr("mlperf_ad"));
        put("score_instructions", self.instr("score"));
        put("flash_code_bytes", Some(self.flash_code()));
        put("ram_bytes", Some(self.ram()));
        for (k, v) in &self.instructions {
            if !matches!(k.as_str(), "small_vae" | "mlperf_ad" | "score") {
                put(&format!("{k}_instructions"), *v);
            }
        }
        put("flash_weights_bytes", Some(self.weights_bytes));
        put("flash_with_weights_bytes", Some(self.flash_with_weights()));
        put("flash_text_bytes", Some(self.score_elf.text));
        put("flash_rodata_bytes", Some(self.score_elf.rodata));
        put("ram_static_bytes", Some(self.score_elf.ram_static()));
        put("stack_bytes", Some(self.stack_bytes));
        m.insert("machine".to_string(), self.machine.clone().into());
        serde_json::Value::Object(m)
    }
}

/// Builds and runs the benchmarks on one core with the model `model` (see [`model_source`]).
///
/// # Errors
/// Build or run failure, non-zero exit, unparsable output.
pub fn bench_core(core: Core, model: Option<&Path>) -> Result<BenchFigures> {
    let b = build_core(core, &["bench", "tflite", "score"], model)?;
    let mut bench_lines = Vec::new();
    for prog in ["bench", "tflite"] {
        let out = b.run(prog)?;
        ensure_success(&b, prog, &out)?;
        bench_lines.extend(records(&out).into_iter().filter(|r| r.tag == "bench"));
        if prog == "bench" {
            bench_lines.extend(records(&out).into_iter().filter(|r| r.tag == "stack"));
        }
    }
    let score_elf = elf_sizes(b.machine, &b.elf("score"))?;
    let mut f = BenchFigures {
        machine: b.machine.to_string(),
        score_elf,
        weights_bytes: score_elf.model,
        stream_bytes: score_elf.stream,
        ..BenchFigures::default()
    };
    for r in bench_lines {
        match r.tag.as_str() {
            "bench" => {
                let name = r
                    .words
                    .first()
                    .ok_or_else(|| anyhow!("`bench` line without a workload name"))?
                    .clone();
                if r.words.iter().any(|w| w == "does-not-fit") {
                    f.instructions.insert(name, None);
                } else {
                    f.instructions
                        .insert(name.clone(), Some(r.num("instructions")?));
                    if let Some(c) = r.fields.get("checksum") {
                        f.checksums.insert(name.clone(), c.clone());
                    }
                    if let Ok(m) = r.num("macs") {
                        f.macs.insert(name, m);
                    }
                }
            }
            "stack" => f.bench_stack_bytes = r.num("high_water")?,
            _ => {}
        }
    }
    let out = b.run("score")?;
    ensure_success(&b, "score", &out)?;
    for r in records(&out) {
        if r.tag == "stack" {
            f.stack_bytes = r.num("high_water")?;
            if f.stack_bytes >= r.num("size")? {
                bail!(
                    "`score` on {} used its whole stack ({} bytes): overflow",
                    b.label(),
                    f.stack_bytes
                );
            }
        }
    }
    Ok(f)
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "does not fit".to_string(), group)
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs the benchmarks on each core (with the model `model`, see [`model_source`]) and prints a table (or, with `json`, one JSON object keyed
/// by core name on stdout).
///
/// # Errors
/// Any core's build or run failure.
pub fn bench(cores: &[Core], json: bool, model: Option<&Path>) -> Result<()> {
    let mut all = Vec::new();
    for &core in cores {
        let t = Instant::now();
        let f = bench_core(core, model)?;
        eprintln!("{core}: measured in {:.1} s", t.elapsed().as_secs_f64());
        all.push((core, f));
    }
    // The same inputs through the same kernels must give the same outputs on every core.
    for (core, f) in &all {
        for (k, c) in &f.checksums {
            if let Some((c0, f0)) = all.iter().find(|(_, g)| g.checksums.contains_key(k)) {
                if f0.checksums.get(k) != Some(c) {
                    bail!(
                        "workload {k}: output checksum {c} on {core} differs from {} on {c0}",
                        f0.checksums[k]
                    );
                }
            }
        }
    }
    if json {
        let mut m = serde_json::Map::new();
        for (core, f) in &all {
            m.insert(core.name().to_string(), f.to_json());
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(m))?
        );
        return Ok(());
    }
    let mut keys: Vec<String> = Vec::new();
    for (_, f) in &all {
        for k in f.instructions.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let order = ["small_vae", "mlperf_ad", "encode", "decode", "kl", "score"];
    keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
    println!("Instructions per inference (QEMU -icount, exact; not cycles)");
    print!("| {:<28}", "workload");
    for (core, f) in &all {
        print!(" | {:>14}", format!("{core} {}", f.machine));
    }
    println!(" |");
    print!("|{:-<30}", "");
    for _ in &all {
        print!("|{:-<16}", "");
    }
    println!("|");
    for k in &keys {
        let macs = all.iter().find_map(|(_, f)| f.macs.get(k).copied());
        let label = match macs {
            Some(m) => format!("{k} ({} MACs)", group(m)),
            None => k.clone(),
        };
        print!("| {label:<28}");
        for (_, f) in &all {
            print!(
                " | {:>14}",
                fmt_opt(f.instructions.get(k).copied().flatten())
            );
        }
        println!(" |");
    }
    println!(
        "Reference, Cortex-M4, same method (shared/BENCHMARKS.md): CMSIS-NN \
         arm_fully_connected_s8 -O3 small_vae 38,492, mlperf_ad 579,584; plain C int8 -O3 \
         92,342 / 1,649,350."
    );
    println!();
    println!("Memory of the `score` program (bytes; flash from the ELF, stack by painting)");
    type Row = (&'static str, fn(&BenchFigures) -> u64);
    let rows: [Row; 7] = [
        ("flash: code + constants", BenchFigures::flash_code),
        ("flash: model parameters", |f| f.weights_bytes),
        (
            "flash: program with model",
            BenchFigures::flash_with_weights,
        ),
        ("RAM: .data + .bss", |f| f.score_elf.ram_static()),
        ("RAM: stack peak", |f| f.stack_bytes),
        ("RAM: total", BenchFigures::ram),
        ("(test stream in flash)", |f| f.stream_bytes),
    ];
    for (label, get) in rows {
        print!("| {label:<28}");
        for (_, f) in &all {
            print!(" | {:>14}", group(get(f)));
        }
        println!(" |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(lines: &[&str]) -> Vec<Record> {
        lines.iter().map(|l| Record::parse(l)).collect()
    }

    #[test]
    fn cores_parse() {
        assert_eq!(Core::parse_list("all").unwrap(), Core::ALL.to_vec());
        assert_eq!(
            Core::parse_list("m33, M0,m33").unwrap(),
            vec![Core::M33, Core::M0]
        );
        assert!(Core::parse_list("m5").is_err());
        assert!(Core::parse_list(" , ").is_err());
        for c in Core::ALL {
            assert_eq!(c.name().parse::<Core>().unwrap(), c);
        }
    }

    #[test]
    fn record_fields() {
        let r = Record::parse("INFO window 7 start=224 score=43b02666 level=none alarm=1");
        assert_eq!(r.tag, "window");
        assert_eq!(r.words, vec!["7".to_string()]);
        assert_eq!(r.num("start").unwrap(), 224);
        assert_eq!(r.hex("score").unwrap(), 0x43b0_2666);
        assert!(r.num("level").is_err(), "`none` is not a number");
        assert!(r.num("missing").is_err());
        assert!(r.is_window());
        assert!(!Record::parse("INFO done pass=window").is_window());
    }

    #[test]
    fn compare_finds_the_first_difference() {
        let host = recs(&[
            "INFO model window=64",
            "INFO window 0 start=0 score=43b02666 alarm=0",
            "INFO window 1 start=32 score=43ab9fe9 alarm=0",
            "WARN faulty 2 start=64 score=none alarm=0 nf=2",
        ]);
        assert_eq!(compare(&host, &host), None);
        // Non-window lines (here the model line) do not take part.
        assert_eq!(compare(&host[1..], &host), None);

        let mut chip = host.clone();
        chip[2] = Record::parse("INFO window 1 start=32 score=43ab9fea alarm=0");
        let m = compare(&chip, &host).expect("one bit differs");
        assert!(m.contains("score: chip 43ab9fea"), "{m}");
        assert!(m.contains("host 43ab9fe9"), "{m}");

        let short = &host[..3];
        let m = compare(short, &host).expect("a window is missing");
        assert!(
            m.contains("3 window lines") || m.contains("2 window lines"),
            "{m}"
        );
        let m = compare(&host, short).expect("an extra window");
        assert!(m.contains("window lines"), "{m}");
    }

    #[test]
    fn window_diff_checks_every_field() {
        let chip = Record::parse(
            "INFO window 7 start=224 score=43b02666 recon=0 kl=0 flags=0 level=43b02666 alarm=1 event=1 nf=0 sat=0 stuck=0 gap=0",
        );
        let score = tinyvae::Score {
            score: f32::from_bits(0x43b0_2666),
            recon: 0.0,
            kl: 0.0,
            clamped: false,
            overflow: false,
        };
        let host = tinyvae::WindowReport {
            window: 7,
            start: 224,
            end: 288,
            score: Some(score),
            level: Some(score.score),
            alarm: true,
            event: Some(tinyvae::AlarmEvent::AlarmRaised { window: 7 }),
            faults: tinyvae::Faults::default(),
            phase: tinyvae::Phase::Running,
        };
        assert_eq!(window_diff(&chip, &host), None);
        let changed = [
            tinyvae::WindowReport { window: 8, ..host },
            tinyvae::WindowReport { start: 225, ..host },
            tinyvae::WindowReport {
                score: Some(tinyvae::Score {
                    score: f32::from_bits(0x43b0_2667),
                    ..score
                }),
                ..host
            },
            tinyvae::WindowReport {
                score: None,
                ..host
            },
            tinyvae::WindowReport {
                level: None,
                ..host
            },
            tinyvae::WindowReport {
                alarm: false,
                ..host
            },
            tinyvae::WindowReport {
                event: None,
                ..host
            },
            tinyvae::WindowReport {
                faults: tinyvae::Faults {
                    gap: true,
                    ..tinyvae::Faults::default()
                },
                ..host
            },
            tinyvae::WindowReport {
                faults: tinyvae::Faults {
                    stuck: tinyvae::ChannelMask(4),
                    ..tinyvae::Faults::default()
                },
                ..host
            },
        ];
        for (i, h) in changed.iter().enumerate() {
            assert!(window_diff(&chip, h).is_some(), "change {i} not seen");
        }
    }

    #[test]
    fn fault_stream_applies_the_injections_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let slice = tmp.path().join("s.csv");
        std::fs::write(&slice, "a,b,label\n1,2,0\n3,4,0\n5,6,1\n7,8,1\n9,10,0\n").unwrap();
        let recs = recs(&[
            "INFO inject from=1 to=2 kind=value channel=1 value=7fc00000",
            "INFO inject from=2 to=3 kind=gap",
            "INFO inject from=3 to=5 kind=stuck channel=0 row=0",
            "INFO inject from=4 to=5 kind=value channel=1 value=ff800000",
        ]);
        let refs: Vec<&Record> = recs.iter().collect();
        let out = tmp.path().join("f.csv");
        write_fault_stream(&slice, &refs, 4, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "a,b,label\n1,2,0\n3,nan,0\n,,1\n1,8,1\n"
        );
        write_fault_stream(&slice, &refs, 5, &out).unwrap();
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .ends_with("1,-inf,0\n"));
        let bad = Record::parse("INFO inject from=0 to=1 kind=value channel=2 value=0");
        assert!(write_fault_stream(&slice, &[&bad], 5, &out).is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(38_492), "38,492");
        assert_eq!(group(1_233_680), "1,233,680");
    }

    #[test]
    fn json_has_the_keys_scripts_rely_on() {
        let mut f = BenchFigures::default();
        f.instructions.insert("small_vae".into(), Some(51_234));
        f.instructions.insert("mlperf_ad".into(), None);
        f.instructions.insert("score".into(), Some(201_882));
        f.score_elf.flash = 150_000;
        f.weights_bytes = 58_728;
        f.stream_bytes = 49_152;
        f.stack_bytes = 7_344;
        f.score_elf.bss = 16;
        let j = f.to_json();
        assert_eq!(j["small_vae_instructions"], 51_234);
        assert!(j["mlperf_ad_instructions"].is_null());
        assert_eq!(j["score_instructions"], 201_882);
        assert_eq!(j["flash_code_bytes"], 150_000 - 58_728 - 49_152);
        assert_eq!(j["ram_bytes"], 7_344 + 16);
    }

    #[test]
    fn fallback_machine_from_the_build_directory() {
        let t = Path::new("/x/firmware/target");
        let fallback = t.join("qemu-m0-mps2-an385/thumbv6m-none-eabi/release/score");
        let normal = t.join("qemu-m0/thumbv6m-none-eabi/release/score");
        assert_eq!(machine_for(Core::M0, &fallback), "mps2-an385");
        assert_eq!(machine_for(Core::M0, &normal), "microbit");
        let m33 = t.join("qemu-m33/thumbv8m.main-none-eabihf/release/score");
        assert_eq!(machine_for(Core::M33, &m33), "mps2-an505");
        assert_eq!(memory_of("microbit").1, 256 * 1024);
        assert_eq!(memory_of("mps2-an505").0, 0x1000_0000);
    }
}
