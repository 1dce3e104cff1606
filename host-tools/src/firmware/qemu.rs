//! QEMU runs: start `qemu-system-arm` on an ELF with `-icount`, enforce a timeout, decode the
//! defmt frames it writes to semihosting stdout, and turn its exit status into a verdict.
//!
//! QEMU exit status: 0 success, 1 failure reported by the firmware (panic, HardFault, failed
//! check), 134 a crash or lockup (wrong memory map, no semihosting): anything but 0 is an error.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::cargo_build::Built;
use super::cores::Core;

/// Longest a QEMU run may take before it is killed (a hung firmware is a failure).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

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

impl Built {
    /// Runs program `prog` (see [`run_on`]).
    ///
    /// # Errors
    /// As [`run_on`].
    pub fn run(&self, prog: &str) -> Result<RunOutput> {
        run_on(self.machine, &self.elf(prog))
    }
}

/// Runs an ELF built by [`build`](super::build) for `core` on its QEMU machine (`mps2-an385` for an
/// M0 build that did not fit the micro:bit, recognised by its build directory) with `-icount`, and
/// decodes its defmt output (see [`run_on`]).
///
/// # Errors
/// As [`run_on`].
pub fn run_elf(core: Core, elf: &Path) -> Result<RunOutput> {
    run_on(machine_for(core, elf), elf)
}

/// The machine an ELF built by [`build`](super::build) for `core` runs on, from its build
/// directory.
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

pub(super) fn status_meaning(status: i32) -> &'static str {
    match status {
        0 => "success",
        1 => "the firmware reported a failure (panic, HardFault or failed check)",
        134 => "crash or CPU lockup (stack overflow, wrong memory map, missing semihosting?)",
        _ => "unexpected exit status",
    }
}

pub(super) fn ensure_success(b: &Built, what: &str, out: &RunOutput) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::cores::memory_of;

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
