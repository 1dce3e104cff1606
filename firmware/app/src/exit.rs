//! Ending a run: success / failure exit, the panic handler and the HardFault handler.
//!
//! Under QEMU (`qemu` feature) the run ends with a semihosting `SYS_EXIT`: status 0 on success,
//! 1 on failure (panic, HardFault, or a failed check), so the host (and CI) sees the outcome.
//! On a board (`hardware` feature) a failure executes `udf`, which a debug probe reports as a
//! fault; success executes `bkpt`, which ends a `probe-rs run` session.

use core::panic::PanicInfo;

/// Ends the run successfully.
pub fn success() -> ! {
    #[cfg(feature = "qemu")]
    {
        cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_SUCCESS);
    }
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Ends the run with a failure status.
pub fn failure() -> ! {
    #[cfg(feature = "qemu")]
    {
        cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    }
    cortex_m::asm::udf()
}

/// Logs the location only: formatting the message would pull `core::fmt` (a few KB of flash)
/// into every program, for panics that the firmware's code paths never take on data.
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    match info.location() {
        Some(l) => defmt::error!("panic at {=str}:{=u32}", l.file(), l.line()),
        None => defmt::error!("panic"),
    }
    failure()
}

#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!(
        "HardFault at pc={=u32:08x} lr={=u32:08x}",
        frame.pc(),
        frame.lr()
    );
    failure()
}
