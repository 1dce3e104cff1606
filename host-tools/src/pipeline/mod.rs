//! The steps every command is made of, as library functions with plain inputs and outputs:
//! resolve the options ([`config`]), load a stream and train ([`train`]), calibrate the int8
//! ranges and thresholds ([`calibrate`]), load a calibrated checkpoint ([`load`]), evaluate on a
//! labeled stream ([`evaluate`]), the classical baseline ([`baseline`]), the demo's plots
//! ([`report`]), the chip check in QEMU ([`chip`]) and the mixture of experts ([`moe`]). The `tinyvae` commands, the tests and the
//! benches call these; none of them reaches into a binary.
//!
//! Order of the modules (no cycles): `config` → `calibrate` → `load` → `train`, `evaluate` →
//! `baseline`, `report`, `chip`.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub mod baseline;
pub mod calibrate;
pub mod chip;
pub mod config;
pub mod evaluate;
pub mod load;
pub mod moe;
pub mod poe;
pub mod poe_stream;
pub mod report;
pub mod sensor_loss;
pub mod train;

pub use calibrate::{CalibOpts, Calibration, KindThreshold, ScoreDiff, Thresholds};
pub use config::{LatentSpec, ModelOpts, Resolved};
pub use evaluate::{EvalResult, KindMetrics};
pub use load::{load_checkpoint, load_model, Loaded, CHECKPOINT_FILES};
pub use train::{train_model, Trained};

/// A file of the bundled data set (`train.csv`, `test.csv`): relative to the working directory
/// if it is there, else to this crate at compile time.
pub fn default_data(file: &str) -> PathBuf {
    let rel = Path::new("data/watch_shoulder_pen").join(file);
    if rel.exists() {
        return rel;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/watch_shoulder_pen")
        .join(file)
}
