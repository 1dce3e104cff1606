//! Support for the QEMU programs: the instruction counter and small helpers.
#![no_std]

pub mod counter;
pub mod kernels;

/// FNV-1a over int8 outputs (equal on every core when the kernels agree bit for bit).
pub fn checksum(y: &[i8]) -> u32 {
    y.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b as u8)).wrapping_mul(0x0100_0193)
    })
}

/// FNV-1a over f32 bit patterns.
pub fn checksum_f32(y: &[f32]) -> u32 {
    y.iter().fold(0x811C_9DC5u32, |h, &v| {
        v.to_bits()
            .to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
    })
}

/// Deterministic pseudo-random int8 input (xorshift32 from `seed`).
pub fn input<const N: usize>(seed: u32) -> [i8; N] {
    let mut s = seed;
    core::array::from_fn(|_| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 24) as i8
    })
}
