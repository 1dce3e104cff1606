//! `tinyvae-host-tools` as a library: the modules the `tinyvae` and `xtask` binaries share.

pub mod checkpoint;
pub mod train;
pub mod tflite;
pub mod firmware;
