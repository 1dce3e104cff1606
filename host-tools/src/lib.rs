//! `tinyvae-host-tools` as a library: the modules the `tinyvae` and `xtask` binaries share.

pub mod checkpoint;
pub mod data;
pub mod export;
pub mod firmware;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plots;
pub mod stream;
pub mod tflite;
pub mod train;
