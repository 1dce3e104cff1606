//! `tinyvae-host-tools` as a library: the modules the `tinyvae` and `xtask` binaries share.

pub mod checkpoint;
pub mod columns;
pub mod data;
pub mod export;
pub mod firmware;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod plots;
pub mod poe_checkpoint;
pub mod scale;
pub mod setup;
pub mod stream;
pub mod tflite;
pub mod train;
