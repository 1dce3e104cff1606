//! Loading a checkpoint directory: [`load_checkpoint`] (clear messages for a path that is not
//! one) and [`load_model`], the calibrated checkpoint with its f32 and int8 runtime models.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::calibrate::{calibration_of, Calibration, Thresholds};
use crate::checkpoint::{self, Checkpoint};
use crate::model::HostModel;

/// A loaded, calibrated checkpoint with its two runtime models.
pub struct Loaded {
    /// The checkpoint as stored.
    pub ck: Checkpoint,
    /// Its thresholds.
    pub th: Thresholds,
    /// Its calibration (int8 ranges, training data, f32/int8 difference).
    pub cal: Calibration,
    /// The f32 runtime model.
    pub f32: HostModel,
    /// The int8 runtime model.
    pub int8: HostModel,
}

/// [`checkpoint::load`], with a clear message for a path that is not a checkpoint.
pub fn load_checkpoint(dir: &Path) -> Result<Checkpoint> {
    if !dir.exists() {
        bail!("{}: no such checkpoint directory", dir.display());
    }
    if dir.is_dir() && !dir.join(checkpoint::CONFIG_FILE).exists() {
        bail!(
            "{}: not a checkpoint directory (no {})",
            dir.display(),
            checkpoint::CONFIG_FILE
        );
    }
    if crate::poe_checkpoint::is_poe(dir) {
        bail!(
            "{}: a multi-sensor (--group) checkpoint; `train`, `eval` and `score` handle it, \
             this command does not support it yet",
            dir.display()
        );
    }
    checkpoint::load(dir)
}

/// Loads the calibrated checkpoint in `dir` and builds its two runtime models.
///
/// # Errors
/// Not a checkpoint, an uncalibrated one (naming `tinyvae quantize`), or invalid parameters.
pub fn load_model(dir: &Path) -> Result<Loaded> {
    let ck = load_checkpoint(dir)?;
    let (th, cal) = calibration_of(&ck.config).with_context(|| {
        format!(
            "{}: the checkpoint is not calibrated; run `tinyvae quantize --model {}`",
            dir.display(),
            dir.display()
        )
    })?;
    let (f32, int8) = match super::moe::load_mixtures(dir, &ck)? {
        Some(m) => m,
        None => (
            HostModel::float(&ck.params)?,
            HostModel::int8(&ck.params, &cal.ranges)?,
        ),
    };
    Ok(Loaded {
        ck,
        th,
        cal,
        f32,
        int8,
    })
}

/// The files a checkpoint directory holds (what `train` and `quantize` write).
pub const CHECKPOINT_FILES: [&str; 2] = [checkpoint::WEIGHTS_FILE, checkpoint::CONFIG_FILE];
