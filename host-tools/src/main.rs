//! `tinyvae`: the host tool. Train a VAE on a sensor CSV stream, quantize it to int8, evaluate
//! and calibrate it, score streams, export it as Rust source for the firmware, and run the
//! firmware in QEMU. `tinyvae demo` does it all on the bundled data set.
//!
//! This file only parses the command line and dispatches: each command's arguments and body are
//! in `commands/<name>.rs`, and the work they share (configuration, training, calibration,
//! evaluation, the demo's report) is the library's [`tinyvae_host_tools::pipeline`].
//!
//! Every inference here (f32 and int8) runs through the `tinyvae` library's kernels and score
//! functions (see `tinyvae_host_tools::model`), so the figures are what the chip computes.
//!
//! Errors are one line on stderr (`error: file:line:column: message` for bad input), with exit
//! status 1; nothing is written on failure (outputs go to a temporary file, then a rename).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

use commands::{demo, eval, export, firmware, import, quantize, score, train};

#[derive(Parser, Debug)]
#[command(
    name = "tinyvae",
    version,
    about = "Train, quantize, evaluate and export variational autoencoders for anomaly \
             detection on microcontrollers",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Train a VAE on a CSV stream and write a checkpoint directory (calibrated for int8 and
    /// with alarm thresholds at the target false-positive rate).
    Train(train::TrainArgs),
    /// Recalibrate a checkpoint: int8 activation ranges and thresholds; reports the f32/int8
    /// score difference.
    Quantize(quantize::QuantizeArgs),
    /// Evaluate on a labeled stream: ROC AUC, PR AUC, precision/recall/F1, f32 and int8.
    Eval(eval::EvalArgs),
    /// Score an (unlabeled) stream: one CSV row per window with its score and alarm.
    Score(score::ScoreArgs),
    /// Export the model as Rust source for the firmware (int8 by default).
    Export(export::ExportArgs),
    /// Train, quantize, evaluate, export and plot on the bundled data set.
    Demo(demo::DemoArgs),
    /// Import a quantized TFLite model (dense layers) into a checkpoint directory.
    Import(import::ImportArgs),
    /// Build and run the firmware in QEMU.
    Firmware {
        #[command(subcommand)]
        cmd: firmware::FirmwareCmd,
    },
    /// Score and calibrate Parquet archives of many devices on DataFusion or Ballista
    /// (feature `fleet`).
    #[cfg(feature = "fleet")]
    Fleet {
        #[command(subcommand)]
        cmd: commands::fleet::FleetCmd,
    },
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report): {info}");
    }));
    let cli = Cli::parse();
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.cmd {
        Cmd::Train(a) => done(train::run(a)),
        Cmd::Quantize(a) => done(quantize::run(a)),
        Cmd::Eval(a) => done(eval::run(a)),
        Cmd::Score(a) => done(score::run(a)),
        Cmd::Export(a) => done(export::run(a)),
        Cmd::Demo(a) => done(demo::run(a)),
        Cmd::Import(a) => done(import::run(a)),
        Cmd::Firmware { cmd } => firmware::run(cmd),
        #[cfg(feature = "fleet")]
        Cmd::Fleet { cmd } => done(commands::fleet::run(cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
