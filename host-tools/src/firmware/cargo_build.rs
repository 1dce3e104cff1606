//! Cargo builds of the firmware workspace: where it is, the model and MLPerf Tiny sources
//! compiled into it, one target directory per core (and per fallback machine), the real-board
//! example. Cargo always runs inside `firmware/`, so its `.cargo/config.toml` applies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use super::cores::Core;

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

pub(super) fn cargo_in_firmware(model: Option<&Path>) -> Result<Command> {
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

    /// `m0 (microbit)`-style label.
    pub fn label(&self) -> String {
        format!("{} ({})", self.core, self.machine)
    }
}

/// Builds the named programs of `firmware/qemu` for `core` (release) with the model `model` (see
/// [`model_source`]); returns the directory of the ELFs (see [`build_core`], which also says which
/// machine runs them; [`run_elf`](super::run_elf) finds it from the path).
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
