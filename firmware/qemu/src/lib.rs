//! Support for the QEMU programs: the instruction counter.
#![no_std]

pub mod counter;
