//! Negative control for the QEMU runs: a panic on the chip must fail the run. It indexes out of
//! bounds (hidden from the compiler); the panic handler of `tinyvae-fw` logs the location and
//! exits through semihosting with status 1, which `tinyvae firmware parity` expects.
#![no_std]
#![no_main]

use tinyvae_fw as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    defmt::info!("negative control: provoking a panic");
    let a = core::hint::black_box([1u32, 2, 3]);
    let i = core::hint::black_box(7usize);
    defmt::info!("value {=u32}", a[i]);
    tinyvae_fw::exit::success()
}
