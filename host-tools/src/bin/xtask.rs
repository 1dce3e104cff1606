//! `cargo xtask`: the project's one orchestration entry point.
//!
//! - `cargo xtask test`: everything CI runs (toolchain targets, qemu install when root, rustfmt,
//!   clippy `-D warnings`, host tests + doc tests, cross builds of the library for the four
//!   thumb targets with every feature combination, the link-time no-panic check of the score path
//!   (`firmware/nopanic`, four thumb targets), the firmware builds and the QEMU parity runs on all
//!   five cores).
//!   Also a bounded run of each fuzz target of `fuzz/` (libFuzzer on the stable toolchain).
//!   The `fleet` feature (DataFusion, Ballista) is built and its tests run once, in one step.
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

/// The committed multi-sensor test model (`firmware/model/poe_model.rs`) must be exactly what
/// `tinyvae export` makes of its committed checkpoint (`firmware/model/poe/`).
fn check_poe_model(r: &mut Runner) {
    let regenerated = root().join("target").join("xtask").join("poe_model.rs");
    let committed = root().join("firmware").join("model").join("poe_model.rs");
    let mut c = tinyvae(&["export", "--model", "firmware/model/poe", "--out"]);
    c.arg(&regenerated);
    if !r.step("regenerate the PoE test model from its checkpoint", &mut c) {
        return;
    }
    if std::fs::read(&regenerated).ok() != std::fs::read(&committed).ok() {
        eprintln!(
            "    FAILED: firmware/model/poe_model.rs differs from `tinyvae export --model \
             firmware/model/poe`; regenerate it with that command and commit it"
        );
        r.failures.push("PoE test model is stale".into());
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

/// The committed mixture-of-experts test model (`firmware/model/moe_model.rs`, two tiny experts
/// behind a gate) must be exactly what `tinyvae export` makes of its checkpoint
/// (`firmware/model/moe/`); the parity step runs it on every core too.
fn check_moe_model(r: &mut Runner) {
    let regenerated = root().join("target").join("xtask").join("moe_model.rs");
    let committed = root().join("firmware").join("model").join("moe_model.rs");
    let mut c = tinyvae(&["export", "--model", "firmware/model/moe", "--out"]);
    c.arg(&regenerated);
    if !r.step("regenerate the mixture-of-experts test model", &mut c) {
        return;
    }
    let same = matches!(
        (std::fs::read(&regenerated), std::fs::read(&committed)),
        (Ok(a), Ok(b)) if a == b
    );
    if !same {
        eprintln!(
            "    FAILED: firmware/model/moe_model.rs differs from `tinyvae export --model \
             firmware/model/moe`; regenerate it with that command and commit it"
        );
        r.failures
            .push("mixture-of-experts test model is stale".into());
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
    // The `fleet` feature (DataFusion, Ballista) is built and tested once, here only.
    r.step(
        "fleet tests (DataFusion, Ballista; feature fleet)",
        cargo().args([
            "test",
            "--release",
            "-p",
            "tinyvae-host-tools",
            "--features",
            "fleet",
            "--test",
            "fleet",
        ]),
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
    check_moe_model(&mut r);
    check_poe_model(&mut r);
    fuzz(&mut r, FUZZ_SECONDS);
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
            no_panic_check(&mut r, &fw);
            if qemu {
                let mut c = tinyvae(&["firmware", "parity", "--core", "all"]);
                r.step("firmware parity in QEMU (m0 m3 m4 m7 m33)", &mut c);
                let mut c = tinyvae(&[
                    "firmware",
                    "parity",
                    "--core",
                    "all",
                    "--model",
                    "firmware/model/moe_model.rs",
                ]);
                r.step(
                    "firmware parity in QEMU, mixture-of-experts test model (m0 m3 m4 m7 m33)",
                    &mut c,
                );
                let mut c = tinyvae(&["firmware", "parity", "--core", "all", "--model"]);
                c.arg(fw.join("model").join("poe_model.rs"));
                r.step(
                    "firmware parity in QEMU, multi-sensor (PoE) test model with dead sensor groups",
                    &mut c,
                );
                qemu_soak(&mut r, &fw, QEMU_SOAK_WINDOWS);
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

/// The fuzz targets of `fuzz/` (see its README): the sensor CSV reader, the checkpoint loader,
/// the TFLite importer and the streaming detector.
const FUZZ_TARGETS: [&str; 4] = ["csv", "checkpoint", "tflite", "detector"];

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS: u32 = 15;

/// Builds the libFuzzer targets of `fuzz/` (stable toolchain, SanitizerCoverage flags from
/// `fuzz/.cargo/config.toml`) and runs each for `seconds`, starting from its committed seeds
/// (`fuzz/seeds/<target>`; new inputs go to `fuzz/target/corpus/<target>`, crashes to
/// `fuzz/artifacts/<target>/`). A crash, a timeout or an out-of-memory fails the step.
fn fuzz(r: &mut Runner, seconds: u32) {
    let dir = root().join("fuzz");
    let mut c = cargo();
    c.current_dir(&dir).args(["build", "--release"]);
    if !r.step(
        "build the fuzz targets (libFuzzer, SanitizerCoverage)",
        &mut c,
    ) {
        return;
    }
    for target in FUZZ_TARGETS {
        let corpus = dir.join("target").join("corpus").join(target);
        let artifacts = dir.join("artifacts").join(target);
        if let Err(e) =
            std::fs::create_dir_all(&corpus).and_then(|()| std::fs::create_dir_all(&artifacts))
        {
            eprintln!("cannot create {}: {e}", corpus.display());
            r.failures.push(format!("fuzz {target}"));
            continue;
        }
        let mut c = Command::new(
            dir.join("target")
                .join("x86_64-unknown-linux-gnu")
                .join("release")
                .join(target),
        );
        c.current_dir(&dir)
            .arg(&corpus)
            .arg(dir.join("seeds").join(target))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]);
        r.step(&format!("fuzz {target} for {seconds} s"), &mut c);
    }
}

/// Windows of the QEMU soak in `cargo xtask test` (the README's run: 100,000).
const QEMU_SOAK_WINDOWS: u32 = 10_000;

/// The soak on the QEMU M4: the host reference (`host-ref --soak N`) computes the checksum of
/// every report of `tinyvae_pipeline::soak`; the `soak` firmware, built with that checksum,
/// recomputes it on the chip and exits 0 only if they agree.
fn qemu_soak(r: &mut Runner, fw: &Path, windows: u32) {
    let name = format!("QEMU M4 soak: {windows} windows, checksum of every report vs the host");
    let n = windows.to_string();
    let host = cargo()
        .current_dir(fw)
        .args(["run", "--quiet", "--release", "-p", "tinyvae-host-ref"])
        .args(["--target", "x86_64-unknown-linux-gnu", "--", "--soak", &n])
        .output();
    let line = host
        .as_ref()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(checksum) = line
        .as_deref()
        .and_then(|l| l.split("checksum=").nth(1))
        .map(str::to_string)
    else {
        eprintln!("\n==> {name}\n    host reference failed: {host:?}");
        r.failures.push(name);
        return;
    };
    eprintln!("\n    host: {}", line.unwrap_or_default());
    let mut c = cargo();
    c.current_dir(fw)
        .args(["build", "--release", "-p", "tinyvae-qemu", "--bin", "soak"])
        .args(["--target", "thumbv7em-none-eabihf"])
        .env("TINYVAE_SOAK_WINDOWS", &n)
        .env("TINYVAE_SOAK_EXPECT", &checksum);
    if !r.step("build the soak firmware (M4)", &mut c) {
        return;
    }
    let elf = fw.join("target/thumbv7em-none-eabihf/release/soak");
    let mut c = Command::new("qemu-system-arm");
    c.args([
        "-machine",
        "mps2-an386",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
    ])
    .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
    .arg(&elf)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    r.step(&name, &mut c);
}

/// The link-time no-panic check (`firmware/nopanic`): a firmware calling every public scoring
/// and detector entry point whose panic handler references an undefined symbol, so it links only
/// if no panic is reachable. Built with the firmware's release profile for each core's target,
/// with the default model and with the committed product-of-experts model
/// (`firmware/model/poe_model.rs`, whose detector scores through the groups' experts).
fn no_panic_check(r: &mut Runner, fw: &Path) {
    for (model, what) in [
        (None, "default model"),
        (Some("model/poe_model.rs"), "PoE model"),
    ] {
        for target in TARGETS {
            let mut c = cargo();
            c.current_dir(fw).args([
                "build",
                "--release",
                "-p",
                "tinyvae-nopanic",
                "--target",
                target,
            ]);
            match model {
                Some(m) => c.env("TINYVAE_MODEL", m),
                None => c.env_remove("TINYVAE_MODEL"),
            };
            r.step(
                &format!(
                    "no-panic link check {target}, {what} (firmware/nopanic; locate.sh finds a failure)"
                ),
                &mut c,
            );
        }
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
