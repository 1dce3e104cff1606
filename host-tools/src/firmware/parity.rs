//! Host/chip parity: the chip's per-window lines compared bit for bit with the host's, either
//! with `firmware/host-ref` (the firmware's pipeline compiled for the host, [`parity_report`])
//! or with the host tool's own detector ([`parity_with_host_scores`]), plus the negative
//! controls that prove a failure on the chip fails the run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::cargo_build::{build_core, Built};
use super::cores::Core;
use super::faults::{write_fault_stream, write_stream_slice};
use super::qemu::{ensure_success, status_meaning};
use super::records::{records, Record};
use super::reference;
use crate::stream::WindowRow;

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
/// same model (see [`model_source`](super::model_source)) and stream; returns one result per core.
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

/// One pass of the firmware's `score` program, for the host to rerun with its own detector.
#[derive(Clone, Debug, PartialEq)]
pub struct HostPass {
    /// The pass's tag in the log: `window`, `sampled`, `faulty` or (a multi-sensor model) `dead`.
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
/// for a stuck channel, and the `saturation` limit; for a multi-sensor model's dead-sensor pass
/// its `dead_pass` and `dead_inject` lines the same way); calls `host_windows` on each
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
    let mut passes = vec![
        HostPass {
            tag: "window",
            csv: slice.clone(),
            kind: None,
            limits: None,
        },
        HostPass {
            tag: "sampled",
            csv: slice.clone(),
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
    // A multi-sensor model's dead-sensor pass: its rows and dead stretches as logged.
    if let Some(d) = first.iter().find(|r| r.tag == "dead_pass") {
        let dead = tmp.path().join("dead.csv");
        let kills: Vec<&Record> = first.iter().filter(|r| r.tag == "dead_inject").collect();
        write_fault_stream(&slice, &kills, usize::try_from(d.num("rows")?)?, &dead)?;
        passes.push(HostPass {
            tag: "dead",
            csv: dead,
            kind: None,
            limits: None,
        });
    }
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
        ("groups", field("groups"), h.groups.0.to_string()),
        (
            "expert",
            field("expert"),
            h.expert.map_or_else(String::new, |e| e.to_string()),
        ),
    ];
    pairs
        .iter()
        .find(|(_, chip, host)| chip != host)
        .map(|(k, chip, host)| format!("chip {k}={chip} vs host {k}={host}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::records::recs;

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
            "INFO window 7 start=224 score=43b02666 recon=0 kl=0 flags=0 level=43b02666 alarm=1 event=1 nf=0 sat=0 stuck=0 gap=0 groups=1",
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
            groups: tinyvae::GroupSet(1),
            phase: tinyvae::Phase::Running,
            expert: None,
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
            tinyvae::WindowReport {
                groups: tinyvae::GroupSet(3),
                ..host
            },
        ];
        for (i, h) in changed.iter().enumerate() {
            assert!(window_diff(&chip, h).is_some(), "change {i} not seen");
        }
    }
}
