//! Exact instruction counts under QEMU `-icount`.
//!
//! With `-icount shift=10,align=off,sleep=off` QEMU's virtual clock advances exactly 1024 ns per
//! executed guest instruction, so a hardware timer read before and after a piece of code counts
//! its instructions, deterministically (method of `shared/BENCHMARKS.md`):
//!
//! ```text
//! instructions = round(ticks * tick_ns / 1024)
//! ```
//!
//! - MPS2 boards (M3 `mps2-an385`, M4 `mps2-an386`, M7 `mps2-an500`, M33 `mps2-an505`, and the
//!   M0 build when it runs on `mps2-an385` because it does not fit the micro:bit): the CMSDK
//!   TIMER0 (25 MHz, 40 ns per tick, 32-bit down-counter; at 0x4000_0000, on the AN505 at its
//!   Secure alias 0x5000_0000 since the image runs Secure, and clocked at 20 MHz there: 50 ns). 2^32 ticks hold 167 M instructions.
//! - micro:bit (M0, nRF51): TIMER0 at 0x4000_8000 in 32-bit mode, prescaler 0 (16 MHz, 62.5 ns per
//!   tick), read by triggering CAPTURE[0] and reading CC[0]. 2^32 ticks hold 262 M instructions.
//!
//! The read itself costs a few instructions; [`Counter::overhead`] measures an empty interval once
//! and [`Counter::instructions`] subtracts it, so a figure is the instructions of the timed code
//! alone (including the call into it and its return). Time only `#[inline(never)]` functions so
//! the compiler cannot specialise the code per call site.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

#[cfg(not(fw_nrf51))]
mod hw {
    /// CMSDK TIMER0 base (the AN505 image runs Secure: use the Secure peripheral alias).
    #[cfg(fw_core = "m33")]
    const BASE: usize = 0x5000_0000;
    #[cfg(not(fw_core = "m33"))]
    const BASE: usize = 0x4000_0000;
    const CTRL: *mut u32 = BASE as *mut u32;
    const VALUE: *mut u32 = (BASE + 0x4) as *mut u32;
    const RELOAD: *mut u32 = (BASE + 0x8) as *mut u32;

    /// Nanoseconds per tick, as a fraction: the MPS2 boards clock the timer at 25 MHz; QEMU's
    /// AN505 (an MPS2+ FPGA image) at 20 MHz (measured: 20.48 ticks per instruction at
    /// `shift=10`, against 25.6 on the AN386).
    #[cfg(fw_core = "m33")]
    pub const TICK_NS: (u64, u64) = (50, 1);
    /// Nanoseconds per tick, as a fraction (25 MHz CMSDK timer clock).
    #[cfg(not(fw_core = "m33"))]
    pub const TICK_NS: (u64, u64) = (40, 1);

    pub fn start() {
        // SAFETY: fixed MMIO registers of the CMSDK timer on the MPS2 machines.
        unsafe {
            super::write_volatile(CTRL, 0);
            super::write_volatile(RELOAD, u32::MAX);
            super::write_volatile(VALUE, u32::MAX);
            super::write_volatile(CTRL, 1);
        }
    }

    /// Ticks since `start`, counting up.
    #[inline(always)]
    pub fn now() -> u32 {
        // SAFETY: reading the VALUE register has no side effects.
        !unsafe { super::read_volatile(VALUE) }
    }
}

#[cfg(fw_nrf51)]
mod hw {
    const BASE: usize = 0x4000_8000;
    const TASKS_START: *mut u32 = BASE as *mut u32;
    const TASKS_STOP: *mut u32 = (BASE + 0x004) as *mut u32;
    const TASKS_CLEAR: *mut u32 = (BASE + 0x00C) as *mut u32;
    const TASKS_CAPTURE0: *mut u32 = (BASE + 0x040) as *mut u32;
    const MODE: *mut u32 = (BASE + 0x504) as *mut u32;
    const BITMODE: *mut u32 = (BASE + 0x508) as *mut u32;
    const PRESCALER: *mut u32 = (BASE + 0x510) as *mut u32;
    const CC0: *mut u32 = (BASE + 0x540) as *mut u32;

    /// Nanoseconds per tick, as a fraction (16 MHz).
    pub const TICK_NS: (u64, u64) = (125, 2);

    pub fn start() {
        // SAFETY: fixed MMIO registers of the nRF51 TIMER0.
        unsafe {
            super::write_volatile(TASKS_STOP, 1);
            super::write_volatile(MODE, 0); // timer
            super::write_volatile(BITMODE, 3); // 32 bit
            super::write_volatile(PRESCALER, 0); // 16 MHz
            super::write_volatile(TASKS_CLEAR, 1);
            super::write_volatile(TASKS_START, 1);
        }
    }

    /// Ticks since `start`, counting up.
    #[inline(always)]
    pub fn now() -> u32 {
        // SAFETY: CAPTURE[0] copies the counter into CC[0]; nothing else uses them.
        unsafe {
            super::write_volatile(TASKS_CAPTURE0, 1);
            super::read_volatile(CC0)
        }
    }
}

/// The instruction counter.
pub struct Counter {
    overhead: u32,
}

impl Counter {
    /// Starts the timer and measures the cost of an empty interval.
    pub fn start() -> Self {
        hw::start();
        let mut c = Counter { overhead: 0 };
        c.overhead = c.raw_instructions(|| ());
        c
    }

    /// Instructions of an empty interval (subtracted from every measurement).
    pub fn overhead(&self) -> u32 {
        self.overhead
    }

    /// Converts timer ticks to instructions, rounded to nearest.
    pub fn ticks_to_instructions(ticks: u32) -> u32 {
        let (num, den) = hw::TICK_NS;
        let den = den * 1024;
        ((u64::from(ticks) * num + den / 2) / den) as u32
    }

    /// Timer ticks spent in `f`.
    #[inline(always)]
    pub fn ticks<R>(&self, f: impl FnOnce() -> R) -> (u32, R) {
        let t0 = hw::now();
        compiler_fence(Ordering::SeqCst);
        let r = f();
        compiler_fence(Ordering::SeqCst);
        let t1 = hw::now();
        (t1.wrapping_sub(t0), r)
    }

    #[inline(always)]
    fn raw_instructions<R>(&self, f: impl FnOnce() -> R) -> u32 {
        Self::ticks_to_instructions(self.ticks(f).0)
    }

    /// Instructions executed by `f`, net of the timer reads.
    #[inline(always)]
    pub fn instructions<R>(&self, f: impl FnOnce() -> R) -> (u32, R) {
        let (t, r) = self.ticks(f);
        (
            Self::ticks_to_instructions(t).saturating_sub(self.overhead),
            r,
        )
    }
}
