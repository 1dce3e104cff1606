//! Setting up what the firmware runs need on a fresh machine: the thumb targets (through
//! `rustup`) and `qemu-system-arm` (through `apt-get`, when it is missing and the user is root).
//! `cargo xtask test` / `bench` and `tinyvae demo` both go through here, so they decide alike:
//!
//! - `qemu-system-arm` installed: nothing to do.
//! - missing, the user is root and `apt-get` exists: `apt-get update` and
//!   `apt-get install qemu-system-arm`, with a one-line notice.
//! - missing otherwise: nothing is installed; the caller prints the install command
//!   ([`INSTALL_HINT`]).
//!
//! The decision ([`qemu_plan`]) is a pure function of a [`Probe`], so it is tested without
//! uninstalling anything; [`Probe::of_this_machine`] runs the actual checks.

use std::path::Path;
use std::process::{Command, Stdio};

/// The command that installs QEMU for the user, printed where it cannot be installed here.
pub const INSTALL_HINT: &str = if cfg!(target_os = "macos") {
    "brew install qemu"
} else {
    "sudo apt-get install qemu-system-arm"
};

/// The thumb target of the Cortex-M4 (`thumbv7em-none-eabihf`), the one the demo runs on.
pub const M4_TARGET: &str = "thumbv7em-none-eabihf";

/// What the machine has, as far as the set-up is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// `qemu-system-arm --version` succeeds.
    pub have_qemu: bool,
    /// The user is root (`id -u` is 0).
    pub is_root: bool,
    /// `apt-get --version` succeeds.
    pub have_apt_get: bool,
}

impl Probe {
    /// Probes this machine.
    pub fn of_this_machine() -> Self {
        Probe {
            have_qemu: have("qemu-system-arm"),
            is_root: is_root(),
            have_apt_get: have("apt-get"),
        }
    }
}

/// What to do about QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuPlan {
    /// It is installed.
    Ready,
    /// Install it with `apt-get` ([`apt_steps`]).
    AptInstall,
    /// It cannot be installed here: tell the user [`INSTALL_HINT`].
    Missing,
}

/// The decision of the table in the module doc.
pub fn qemu_plan(p: Probe) -> QemuPlan {
    if p.have_qemu {
        QemuPlan::Ready
    } else if p.is_root && p.have_apt_get {
        QemuPlan::AptInstall
    } else {
        QemuPlan::Missing
    }
}

/// Whether `program --version` runs and succeeds.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the user is root (`id -u` prints 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The two named `apt-get` steps that install QEMU: `update`, then a quiet, non-interactive
/// `install --no-install-recommends qemu-system-arm`.
pub fn apt_steps() -> [(&'static str, Command); 2] {
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    let mut install = Command::new("apt-get");
    install
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "qemu-system-arm",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
    [
        ("apt-get update", update),
        ("apt-get install qemu-system-arm", install),
    ]
}

/// `rustup target add <targets>`, run in `dir` (so that its `rust-toolchain.toml` applies).
pub fn rustup_target_add(dir: &Path, targets: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(dir).args(["target", "add"]).args(targets);
    c
}

/// Whether `rustup target list --installed` (in `dir`) lists `target`; `None` without rustup.
pub fn target_installed(dir: &Path, target: &str) -> Option<bool> {
    let o = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == target),
    )
}

/// Makes QEMU available as [`qemu_plan`] decides for `probe`: runs the [`apt_steps`] through
/// `step` (name, command; returns success) when it may, then checks again.
///
/// # Errors
/// QEMU is still missing: the message says why and gives [`INSTALL_HINT`].
pub fn ensure_qemu(
    probe: Probe,
    mut step: impl FnMut(&str, &mut Command) -> bool,
) -> Result<(), String> {
    match qemu_plan(probe) {
        QemuPlan::Ready => return Ok(()),
        QemuPlan::AptInstall => {
            for (name, mut cmd) in apt_steps() {
                if !step(name, &mut cmd) {
                    break;
                }
            }
            if have("qemu-system-arm") {
                return Ok(());
            }
        }
        QemuPlan::Missing => {}
    }
    Err(format!(
        "qemu-system-arm is not installed and could not be installed here ({}); install it with `{INSTALL_HINT}`",
        why_not(probe)
    ))
}

/// What the demo's chip check needs, set up as `cargo xtask test` would: the Cortex-M4 target
/// (`rustup target add`, when rustup is there and lacks it) and QEMU ([`ensure_qemu`]), each
/// with a one-line notice on stderr; the installers' output goes to stderr too, so that stdout
/// keeps only the demo's summary.
///
/// # Errors
/// QEMU is missing and cannot be installed here: the message gives [`INSTALL_HINT`].
pub fn for_demo(firmware_dir: &Path) -> Result<(), String> {
    if target_installed(firmware_dir, M4_TARGET) == Some(false) {
        eprintln!(
            "installing the Cortex-M4 target for the chip check: rustup target add {M4_TARGET}"
        );
        let mut c = rustup_target_add(firmware_dir, &[M4_TARGET]);
        run_to_stderr(&mut c);
    }
    let probe = Probe::of_this_machine();
    if qemu_plan(probe) == QemuPlan::AptInstall {
        eprintln!(
            "qemu-system-arm is missing: installing it with apt-get (running as root) for the chip check"
        );
    }
    ensure_qemu(probe, |_, c| run_to_stderr(c))
}

/// Runs `c` with its stdout sent to stderr; whether it succeeded.
fn run_to_stderr(c: &mut Command) -> bool {
    c.stdout(Stdio::from(std::io::stderr()))
        .status()
        .is_ok_and(|s| s.success())
}

/// Why [`qemu_plan`] did not install QEMU, or why installing it did not help.
fn why_not(p: Probe) -> &'static str {
    match (p.is_root, p.have_apt_get) {
        (false, _) => "not root",
        (true, false) => "no apt-get",
        (true, true) => "apt-get failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(have_qemu: bool, is_root: bool, have_apt_get: bool) -> Probe {
        Probe {
            have_qemu,
            is_root,
            have_apt_get,
        }
    }

    #[test]
    fn installed_qemu_is_used_as_it_is() {
        for root in [false, true] {
            for apt in [false, true] {
                assert_eq!(qemu_plan(probe(true, root, apt)), QemuPlan::Ready);
            }
        }
    }

    #[test]
    fn missing_qemu_is_installed_only_as_root_with_apt_get() {
        assert_eq!(qemu_plan(probe(false, true, true)), QemuPlan::AptInstall);
        assert_eq!(qemu_plan(probe(false, false, true)), QemuPlan::Missing);
        assert_eq!(qemu_plan(probe(false, true, false)), QemuPlan::Missing);
        assert_eq!(qemu_plan(probe(false, false, false)), QemuPlan::Missing);
    }

    #[test]
    fn without_qemu_nothing_runs_and_the_message_names_the_command() {
        let mut ran = Vec::new();
        let e = ensure_qemu(probe(false, false, true), |name, _| {
            ran.push(name.to_string());
            true
        })
        .unwrap_err();
        assert!(ran.is_empty(), "{ran:?}");
        assert!(e.contains("not root") && e.contains(INSTALL_HINT), "{e}");
        let e = ensure_qemu(probe(false, true, false), |_, _| true).unwrap_err();
        assert!(e.contains("no apt-get") && e.contains(INSTALL_HINT), "{e}");
    }

    #[test]
    fn as_root_with_apt_get_both_steps_run() {
        let mut ran = Vec::new();
        // The steps are recorded, not run: whether QEMU is there afterwards is this machine's.
        let _ = ensure_qemu(probe(false, true, true), |name, cmd| {
            ran.push(format!("{name}: {cmd:?}"));
            true
        });
        assert_eq!(ran.len(), 2, "{ran:?}");
        assert!(ran[0].starts_with("apt-get update"), "{ran:?}");
        assert!(
            ran[1].contains("install") && ran[1].contains("qemu-system-arm"),
            "{ran:?}"
        );
    }

    #[test]
    fn ready_runs_nothing() {
        let mut n = 0;
        assert_eq!(
            ensure_qemu(probe(true, false, false), |_, _| {
                n += 1;
                true
            }),
            Ok(())
        );
        assert_eq!(n, 0);
    }
}
