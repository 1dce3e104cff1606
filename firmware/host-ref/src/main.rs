//! Runs the firmware's scoring pipeline (`tinyvae-pipeline`: same model, same stream, same
//! detector code) on the host and prints every window in the format of the `score` firmware's
//! defmt lines (see `qemu/src/bin/score.rs`), so `tinyvae firmware parity` can compare them bit
//! for bit. Build it for the host triple from inside `firmware/` (the workspace's default target
//! is a thumb target): `cargo run --release -p tinyvae-host-ref --target x86_64-unknown-linux-gnu`.
//! With `--soak N` it runs the long run of `tinyvae_pipeline::soak` instead and prints the
//! `soak` firmware's summary line with the checksum of every report.

use std::process::ExitCode;

use tinyvae::{AlarmEvent, WindowReport};
use tinyvae_pipeline::run::{run_stream, Pass};

fn log(pass: Pass, r: &WindowReport) {
    let event = match r.event {
        None => 0u8,
        Some(AlarmEvent::AlarmRaised { .. }) => 1,
        Some(AlarmEvent::AlarmCleared { .. }) => 2,
    };
    let f = &r.faults;
    let faults = format!(
        "nf={} sat={} stuck={} gap={} groups={}",
        f.non_finite.0,
        f.saturated.0,
        f.stuck.0,
        u8::from(f.gap),
        r.groups.0
    );
    let level = r
        .level
        .map_or_else(|| "none".to_string(), |l| format!("{:08x}", l.to_bits()));
    let head = format!("{} {} start={}", pass.tag(), r.window, r.start);
    let expert = r
        .expert
        .map_or_else(String::new, |e| format!(" expert={e}"));
    let tail = format!(
        "level={level} alarm={} event={event} {faults}{expert}",
        u8::from(r.alarm)
    );
    match r.score {
        Some(s) => println!(
            "INFO {head} score={:08x} recon={:08x} kl={:08x} flags={} {tail}",
            s.score.to_bits(),
            s.recon.to_bits(),
            s.kl.to_bits(),
            u8::from(s.clamped) | u8::from(s.overflow) << 1
        ),
        None => println!("WARN {head} score=none {tail} (sensor fault: window skipped)"),
    }
}

fn main() -> ExitCode {
    // `--soak N`: the long run of `tinyvae_pipeline::soak` (the `soak` firmware's line).
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, n] = args.as_slice() {
        if flag == "--soak" {
            let Ok(n) = n.parse::<u32>() else {
                eprintln!("--soak {n}: expected a number of windows");
                return ExitCode::FAILURE;
            };
            return match tinyvae_pipeline::soak::soak(n) {
                Ok(s) => {
                    println!(
                        "INFO soak windows={} samples={} alarms={} skipped={} flagged={} checksum={:08x}",
                        s.windows.windows,
                        s.samples,
                        s.windows.alarms,
                        s.windows.skipped,
                        s.windows.flagged,
                        s.checksum
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("ERROR failed error={e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    let mut emit = log;
    match run_stream(log).and_then(|p| Ok((p, tinyvae_pipeline::dead::run_dead(&mut emit)?))) {
        Ok((passes, dead)) => {
            for (p, s) in [Pass::Stream, Pass::Sampled, Pass::Faults]
                .iter()
                .zip(passes)
            {
                println!(
                    "INFO done pass={} windows={} alarms={} skipped={} flagged={}",
                    p.tag(),
                    s.windows,
                    s.alarms,
                    s.skipped,
                    s.flagged
                );
            }
            if let Some(s) = dead {
                println!(
                    "INFO done pass={} windows={} alarms={} skipped={} flagged={}",
                    Pass::Dead.tag(),
                    s.windows,
                    s.alarms,
                    s.skipped,
                    s.flagged
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("ERROR failed error={e}");
            ExitCode::FAILURE
        }
    }
}
