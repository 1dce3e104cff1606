//! `cargo xtask`: the project's one orchestration entry point.
//!
//! - `cargo xtask test`: everything CI runs (toolchain targets, qemu install when root, rustfmt,
//!   clippy `-D warnings`, host tests + doc tests, cross builds of the library for the four
//!   thumb targets with every feature combination, the firmware builds and the QEMU parity runs
//!   on all five cores).
//! - `cargo xtask test --host-only`: the same without the firmware and QEMU steps.
//! - `cargo xtask bench`: the printed benchmarks (firmware instructions/flash/RAM, training speed).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Thumb targets of the library (M0, M3, M4/M7, M33).
const TARGETS: [&str; 4] = [
    "thumbv6m-none-eabi",
    "thumbv7m-none-eabi",
    "thumbv7em-none-eabihf",
    "thumbv8m.main-none-eabihf",
];

/// Feature sets the library is cross-built with.
const FEATURE_SETS: [&str; 4] = ["", "defmt", "fast-math", "defmt,fast-math"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

struct Runner {
    failures: Vec<String>,
    started: Instant,
}

impl Runner {
    fn step(&mut self, name: &str, cmd: &mut Command) -> bool {
        let t = Instant::now();
        eprintln!("\n==> {name}");
        eprintln!("    $ {}", render(cmd));
        let ok = match cmd.status() {
            Ok(s) => s.success(),
            Err(e) => {
                eprintln!("    cannot start: {e}");
                false
            }
        };
        eprintln!(
            "    {} in {:.1}s (total {:.0}s)",
            if ok { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        if !ok {
            self.failures.push(name.to_string());
        }
        ok
    }
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// `cargo run --release` of the host tool `tinyvae` with `args`.
fn tinyvae(args: &[&str]) -> Command {
    let mut c = cargo();
    c.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "tinyvae-host-tools",
        "--bin",
        "tinyvae",
        "--",
    ])
    .args(args);
    c
}

/// Installs what the suite needs on a fresh machine: the thumb targets (rustup) and
/// qemu-system-arm (apt-get, when running as root). Returns whether QEMU is available.
fn setup(r: &mut Runner, need_qemu: bool) -> bool {
    use tinyvae_host_tools::setup;
    if setup::have("rustup") {
        let mut c = setup::rustup_target_add(&root(), &TARGETS);
        r.step("install thumb targets (rust-toolchain.toml)", &mut c);
    } else {
        eprintln!("note: rustup not found; the thumb targets must already be installed");
    }
    if !need_qemu {
        return false;
    }
    match setup::ensure_qemu(setup::Probe::of_this_machine(), |name, c| r.step(name, c)) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: {e}, then run `cargo xtask test` again.");
            r.failures.push("qemu-system-arm missing".into());
            false
        }
    }
}

/// The committed default model (`firmware/model/default_model.rs`) must be exactly what
/// `tinyvae export` makes of the committed checkpoint (`firmware/model/default/`).
fn check_default_model(r: &mut Runner) {
    let dir = root().join("target").join("xtask");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        r.failures.push("default model check".into());
        return;
    }
    let regenerated = dir.join("default_model.rs");
    let committed = root()
        .join("firmware")
        .join("model")
        .join("default_model.rs");
    let mut c = tinyvae(&["export", "--model", "firmware/model/default", "--out"]);
    c.arg(&regenerated);
    if !r.step("regenerate the default model from its checkpoint", &mut c) {
        return;
    }
    let same = matches!(
        (std::fs::read(&regenerated), std::fs::read(&committed)),
        (Ok(a), Ok(b)) if a == b
    );
    if same {
        eprintln!("    firmware/model/default_model.rs is up to date");
    } else {
        eprintln!(
            "    FAILED: firmware/model/default_model.rs differs from `tinyvae export --model \
             firmware/model/default`; regenerate it with that command and commit it"
        );
        r.failures.push("default model is stale".into());
    }
}

fn test(host_only: bool) -> ExitCode {
    let mut r = Runner {
        failures: Vec::new(),
        started: Instant::now(),
    };
    let qemu = setup(&mut r, !host_only);

    r.step("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]));
    r.step(
        "clippy (workspace, all targets, -D warnings)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    );
    r.step(
        "host tests and doc tests",
        cargo().args(["test", "--workspace", "--release"]),
    );
    r.step(
        "library tests with fast-math",
        cargo().args([
            "test",
            "-p",
            "tinyvae",
            "--release",
            "--features",
            "fast-math",
        ]),
    );
    for target in TARGETS {
        for features in FEATURE_SETS {
            let mut c = cargo();
            c.args(["build", "-p", "tinyvae", "--release", "--target", target]);
            if !features.is_empty() {
                c.args(["--features", features]);
            }
            let label = if features.is_empty() {
                "no features"
            } else {
                features
            };
            r.step(&format!("cross build {target} ({label})"), &mut c);
        }
    }
    check_default_model(&mut r);
    if !host_only {
        let fw = root().join("firmware");
        let mut c = cargo();
        c.current_dir(fw.join("boards").join("nrf52840-dk"))
            .args(["build", "--release", "--target", "thumbv7em-none-eabihf"])
            .env("CARGO_TARGET_DIR", fw.join("target").join("board"));
        r.step(
            "build the nRF52840-DK board example (probe-rs, defmt-rtt)",
            &mut c,
        );
        if fw.join("Cargo.toml").exists() {
            if qemu {
                let mut c = tinyvae(&["firmware", "parity", "--core", "all"]);
                r.step("firmware parity in QEMU (m0 m3 m4 m7 m33)", &mut c);
                let mut c = tinyvae(&["firmware", "bench", "--core", "all"]);
                r.step(
                    "firmware bench in QEMU (instructions, sizes; MLPerf AD01 outputs vs TFLite's \
                     reference on the chip)",
                    &mut c,
                );
            }
        } else {
            eprintln!("note: no firmware/ workspace yet; skipping QEMU runs");
        }
    }

    eprintln!(
        "\n{} steps failed, total {:.0}s",
        r.failures.len(),
        r.started.elapsed().as_secs_f64()
    );
    if r.failures.is_empty() {
        eprintln!("xtask test: all steps passed");
        ExitCode::SUCCESS
    } else {
        for f in &r.failures {
            eprintln!("  failed: {f}");
        }
        ExitCode::FAILURE
    }
}

fn bench() -> ExitCode {
    let mut r = Runner {
        failures: Vec::new(),
        started: Instant::now(),
    };
    setup(&mut r, true);
    r.step(
        "firmware benchmarks (QEMU -icount)",
        &mut tinyvae(&["firmware", "bench", "--core", "all"]),
    );
    r.step(
        "training benchmark",
        cargo().args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "tinyvae-host-tools",
            "--bin",
            "train_bench",
        ]),
    );
    if r.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: cargo xtask <test [--host-only] | bench>");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(args.iter().any(|a| a == "--host-only")),
        Some("bench") => bench(),
        _ => usage(),
    }
}
