//! Firmware support shared by the QEMU programs and the board examples.
#![no_std]

#[cfg(not(any(feature = "qemu", feature = "hardware")))]
compile_error!("enable exactly one of the features `qemu` (semihosting) or `hardware` (RTT)");
#[cfg(all(feature = "qemu", feature = "hardware"))]
compile_error!("the features `qemu` and `hardware` are exclusive");

use cortex_m as _;
#[cfg(feature = "hardware")]
use defmt_rtt as _;
#[cfg(feature = "qemu")]
use defmt_semihosting as _;

pub mod exit;
pub mod stack;
