//! Stack high-water mark by stack painting.
//!
//! `cortex-m-rt`'s `paint-stack` feature fills the whole stack region, from `_stack_end` (just
//! above `.bss`/`.uninit`) to `_stack_start` (the top of RAM), with
//! [`cortex_m_rt::STACK_PAINT_VALUE`] (`0xCCCC_CCCC`) in the reset handler, before any Rust code
//! runs. The stack grows down from `_stack_start`; [`high_water`] scans upward from `_stack_end`
//! for the first word that no longer holds the paint: everything above it has been written at
//! some point, so `_stack_start - that address` is the peak stack use (in bytes, rounded to
//! words). It can only under-report if the program stored the paint value itself at the deepest
//! point, which a single word makes unlikely.

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// Size of the stack region in bytes (`_stack_start - _stack_end`).
pub fn size() -> u32 {
    // Only the addresses of the linker symbols are taken, never their contents.
    let top = core::ptr::addr_of!(_stack_start) as u32;
    let bottom = core::ptr::addr_of!(_stack_end) as u32;
    top - bottom
}

/// Peak stack use so far, in bytes.
pub fn high_water() -> u32 {
    // SAFETY: the region `_stack_end.._stack_start` is RAM reserved for the stack by the linker
    // script; reading it (volatile, word-aligned: both symbols are asserted 4-aligned) has no
    // side effects. The words being read below the current stack pointer are not in use.
    unsafe {
        let top = core::ptr::addr_of!(_stack_start);
        let mut p = core::ptr::addr_of!(_stack_end);
        while p < top && core::ptr::read_volatile(p) == cortex_m_rt::STACK_PAINT_VALUE {
            p = p.add(1);
        }
        top as u32 - p as u32
    }
}
