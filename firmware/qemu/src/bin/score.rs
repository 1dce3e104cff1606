#![no_std]
#![no_main]
use tinyvae_fw as _;
#[cortex_m_rt::entry]
fn main() -> ! {
    defmt::info!("hello");
    tinyvae_fw::exit::success()
}
