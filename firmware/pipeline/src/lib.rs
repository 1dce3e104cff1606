//! The part of the firmware that computes: the compiled-in model, its streaming detector (the
//! library's [`tinyvae::Detector`]: windowing, standardization, scores, alarms, sensor faults)
//! and, with the `stream` feature, a bounded slice of the bundled test data. `no_std`, no heap,
//! no `unsafe`, no logging: the QEMU programs print its window reports with defmt, and the host
//! reference (`firmware/host-ref`) prints the same reports as text from the very same code
//! compiled for the host, so the parity check compares the chip against the host bit for bit.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The model exported by `tinyvae export` (see `build.rs` for how its path is chosen).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unreadable_literal
)]
pub mod model {
    include!(env!("TINYVAE_MODEL_RS"));
}

/// The compiled-in test stream (see `build.rs`).
#[cfg(feature = "stream")]
#[allow(clippy::unreadable_literal)]
pub mod stream {
    include!(concat!(env!("OUT_DIR"), "/stream.rs"));
}

pub mod run;

#[cfg(feature = "stream")]
pub mod soak;

#[cfg(feature = "stream")]
pub mod dead;
