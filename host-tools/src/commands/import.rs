//! `tinyvae import`: read a quantized TFLite model (dense layers) into a checkpoint directory.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use tinyvae_host_tools::output::{self, Input};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// TFLite flatbuffer with the VAE's dense layers.
    #[arg(long)]
    tflite: PathBuf,
    /// Checkpoint directory to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `tinyvae import`.
///
/// # Errors
/// Bad options or input (one line naming the file or the option), or a failed write.
pub fn run(a: ImportArgs) -> Result<()> {
    output::check_dir(
        &a.out,
        &["model.rs", "model.json"],
        &[Input::File(&a.tflite)],
    )?;
    let m = tinyvae_host_tools::tflite::import_to_dir(&a.tflite, &a.out)?;
    let layers: Vec<String> = m
        .layers
        .iter()
        .map(|l| format!("{}x{}", l.in_dim, l.out_dim))
        .collect();
    eprintln!(
        "imported {} dense layers ({}) from {}; wrote {}/model.rs and {}/model.json",
        m.layers.len(),
        layers.join(", "),
        a.tflite.display(),
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
