//! `tinyvae firmware run|parity|bench`: build the firmware and run it in QEMU; `parity
//! --checkpoint` exports a checkpoint and compares the chip with this host's detector.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use tinyvae_host_tools::firmware::{self, Core};
use tinyvae_host_tools::pipeline::chip::{chip_vs_host, poe_chip_vs_host};
use tinyvae_host_tools::pipeline::load_model;
use tinyvae_host_tools::pipeline::poe::{load_poe, threshold_table};
use tinyvae_host_tools::{export, output};

#[derive(Subcommand, Debug)]
pub enum FirmwareCmd {
    /// Build the firmware for the core(s) and run it in QEMU, printing its log.
    Run(FirmwareArgs),
    /// Run in QEMU and check that the chip's scores equal the host's bit for bit.
    Parity(FirmwareArgs),
    /// Instructions per inference, flash and RAM on each core.
    Bench(FirmwareArgs),
}

#[derive(Args, Debug)]
pub struct FirmwareArgs {
    /// Core: m0, m3, m4, m7, m33, a comma-separated list, or all.
    #[arg(long, default_value = "m4")]
    core: String,
    /// `parity` and `bench`: print the results as JSON instead of text (`run` prints the
    /// firmware's log either way).
    #[arg(long)]
    json: bool,
    /// Exported model source to compile in [default: $TINYVAE_MODEL, else the firmware's
    /// default model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// `parity` only: export this checkpoint's int8 model, run it on the core(s) and compare
    /// every window's score and alarm with this tool's own scoring (`tinyvae score`); a
    /// multi-sensor (`--group`) checkpoint adds the dead-sensor pass and compares the groups.
    #[arg(long, conflicts_with = "model")]
    checkpoint: Option<PathBuf>,
}

/// `tinyvae firmware run|parity|bench`: exit status 1 when the chip and the host differ.
///
/// # Errors
/// As the firmware module's functions.
pub fn run(cmd: FirmwareCmd) -> Result<ExitCode> {
    let (FirmwareCmd::Run(a) | FirmwareCmd::Parity(a) | FirmwareCmd::Bench(a)) = &cmd;
    let cores = Core::parse_list(&a.core)?;
    let model = a.model.as_deref();
    let code = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    match cmd {
        FirmwareCmd::Run(_) => firmware::run(&cores, model).map(|()| ExitCode::SUCCESS),
        FirmwareCmd::Parity(ref a) if a.checkpoint.is_some() => {
            let dir = a.checkpoint.as_deref().context("checkpoint")?;
            if tinyvae_host_tools::poe_checkpoint::is_poe(dir) {
                return poe_parity(&cores, dir, a.json);
            }
            let m = load_model(dir)?;
            let tmp = tempfile::tempdir()?;
            let model_rs = tmp.path().join("model.rs");
            let src = export::export_int8(&m.ck, &m.int8, m.th.int8)?;
            output::write_file(&model_rs, src.as_bytes())?;
            let r = chip_vs_host(&cores, &model_rs, &m.int8, &m.ck.config, m.th.int8)?;
            let ok = r.iter().all(|p| p.mismatch.is_none());
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for p in &r {
                    match &p.mismatch {
                        None => println!(
                            "{} ({}): {} windows, scores, alarm levels, alarms, events and sensor-fault reports (clean, IWAE-8 and fault-injected passes) bit-identical to `tinyvae score`",
                            p.core, p.machine, p.windows
                        ),
                        Some(m) => println!("{} ({}): MISMATCH at {m}", p.core, p.machine),
                    }
                }
            }
            Ok(code(ok))
        }
        FirmwareCmd::Parity(ref a) if a.json => {
            let r = firmware::parity_report(&cores, model)?;
            let ok = r.iter().all(|p| p.mismatch.is_none());
            println!("{}", serde_json::to_string(&r)?);
            Ok(code(ok))
        }
        FirmwareCmd::Parity(_) => Ok(code(firmware::parity(&cores, model)?)),
        FirmwareCmd::Bench(ref a) => {
            firmware::bench(&cores, a.json, model).map(|()| ExitCode::SUCCESS)
        }
    }
}

/// `tinyvae firmware parity --checkpoint DIR` of a multi-sensor (`--group`) checkpoint: exports
/// its int8 PoE model, runs it on the cores and compares every window of the four passes (with
/// the groups each was scored with) with this tool's own detector.
fn poe_parity(cores: &[Core], dir: &std::path::Path, json: bool) -> Result<ExitCode> {
    let m = load_poe(dir)?;
    let cfg = &m.ck.config;
    let table = threshold_table(
        cfg,
        &cfg.calibration
            .as_ref()
            .map(|c| c.thresholds_int8.clone())
            .unwrap_or_default(),
    );
    let threshold = table[m.int8.groups.all().index()];
    let tmp = tempfile::tempdir()?;
    let model_rs = tmp.path().join("model.rs");
    let src = export::export_poe_int8(&m.ck, &m.int8, &table)?;
    output::write_file(&model_rs, src.as_bytes())?;
    let r = poe_chip_vs_host(cores, &model_rs, &m.int8, cfg, threshold)?;
    let ok = r.iter().all(|p| p.mismatch.is_none());
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        for p in &r {
            match &p.mismatch {
                None => println!(
                    "{} ({}): {} windows, scores, alarm levels, alarms, events, sensor-fault reports and sensor groups (clean, IWAE-8, fault-injected and dead-sensor passes) bit-identical to `tinyvae score`",
                    p.core, p.machine, p.windows
                ),
                Some(m) => println!("{} ({}): MISMATCH at {m}", p.core, p.machine),
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
