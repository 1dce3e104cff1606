//! Negative control for the QEMU runs: a HardFault on the chip must fail the run. It executes a
//! permanently undefined instruction (`udf`), a HardFault on every core here (the M0 has no
//! UsageFault; on the others it is disabled at reset and escalates); the HardFault handler of
//! `tinyvae-fw` logs the faulting PC and exits through semihosting with status 1, which
//! `tinyvae firmware parity` expects.
#![no_std]
#![no_main]

use tinyvae_fw as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    defmt::info!("negative control: provoking a HardFault");
    if core::hint::black_box(true) {
        cortex_m::asm::udf();
    }
    tinyvae_fw::exit::success()
}
