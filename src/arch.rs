//! Cortex-M DSP instructions (Armv7E-M / Armv8-M Mainline DSP extension) for the int8 kernels,
//! with portable emulations that compute the same bits everywhere else.
//!
//! This is the only module with `unsafe` code: each instruction is one `core::arch::asm!` block
//! on registers only (`pure, nomem, nostack`), with a `// SAFETY:` comment.
//!
//! # Instructions
//!
//! Lanes are the two 16-bit halves of a 32-bit word, low lane first.
//!
//! ```text
//! SXTB16 d, x           d = (sext8(x[7:0]), sext8(x[23:16]))            // bytes 0 and 2
//! SXTB16 d, x, ROR #8   d = (sext8(x[15:8]), sext8(x[31:24]))           // bytes 1 and 3
//! SMLAD  d, a, b, c     d = c + a.lo * b.lo + a.hi * b.hi               // mod 2^32
//! ```
//!
//! SMLAD computes the sum exactly and keeps its low 32 bits (it only sets the sticky Q flag on
//! signed overflow, which nothing reads), so it is i32 wrapping addition of two exact products:
//! the accumulation the portable kernel does, in another order, hence the same bits.
//!
//! # Selection
//!
//! `cfg(target_feature = "dsp")` is the precise test, but ARM target features are unstable and
//! stable rustc (1.95) never sets it, even with `-C target-cpu=cortex-m4`. The instructions are
//! therefore used when `target_arch = "arm"` and either `target_feature = "dsp"` (nightly, or a
//! future stable) or `target_abi = "eabihf"`: every hard-float Arm target (`thumbv7em-none-eabihf`
//! for the M4/M7, `thumbv8m.main-none-eabihf` for the M33/M35P/M55/M85, `armv7r`/`armv7a`
//! hard-float) implements SXTB16 and SMLAD. The one exception is an Armv8-M Mainline core built
//! without its optional DSP extension but with an FPU, where these instructions are UNDEFINED
//! (it would HardFault at the first dense layer). Soft-float `thumbv7em-none-eabi` builds and
//! `thumbv6m`/`thumbv7m` use the portable code. [`DSP`] tells which was compiled.

/// Whether the DSP instructions are compiled in (see the module doc); `false` means the
/// functions below are the portable emulations.
pub(crate) const DSP: bool = cfg!(all(
    target_arch = "arm",
    any(target_feature = "dsp", target_abi = "eabihf")
));

#[cfg(all(
    target_arch = "arm",
    any(target_feature = "dsp", target_abi = "eabihf")
))]
mod imp {
    use core::arch::asm;

    /// `SXTB16 d, x`: bytes 0 and 2 of `x`, sign-extended into the two 16-bit lanes.
    #[inline(always)]
    pub(crate) fn sxtb16(x: u32) -> u32 {
        let d: u32;
        // SAFETY: a register-to-register ALU instruction of the DSP extension, which this cfg
        // guarantees (module doc); it reads and writes no memory and leaves the flags alone.
        unsafe {
            asm!("sxtb16 {d}, {x}", d = lateout(reg) d, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        d
    }

    /// `SXTB16 d, x, ROR #8`: bytes 1 and 3 of `x`, sign-extended into the two 16-bit lanes.
    #[inline(always)]
    pub(crate) fn sxtb16_ror8(x: u32) -> u32 {
        let d: u32;
        // SAFETY: as in `sxtb16` (the rotation is part of the instruction).
        unsafe {
            asm!("sxtb16 {d}, {x}, ror #8", d = lateout(reg) d, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        d
    }

    /// `SMLAD d, a, b, acc`: `acc + a.lo * b.lo + a.hi * b.hi` (16-bit signed lanes), mod 2^32.
    #[inline(always)]
    pub(crate) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let d: i32;
        // SAFETY: a register-only multiply-accumulate of the DSP extension (guaranteed by the
        // cfg); it reads no memory and writes only `d` and the sticky Q flag (hence no
        // `preserves_flags`: Q counts as a flag for `asm!`).
        unsafe {
            asm!("smlad {d}, {a}, {b}, {c}", d = lateout(reg) d, a = in(reg) a, b = in(reg) b,
                 c = in(reg) acc, options(pure, nomem, nostack));
        }
        d
    }
    /// Four rows of int8 dot products against the widened input: for `k in 0..4`,
    /// `acc[k] + Σ_{j < 4g} block[k * n + j] * x[j]` (mod 2^32), where `xe` (`4g` values,
    /// `[x0, x2, x1, x3]` per group of four inputs) is the widened `x`.
    ///
    /// Needs `g >= 1`, `block.len() >= 3n + 4g` and `xe` 4-byte aligned; otherwise it runs the
    /// portable loop (same result).
    #[inline(always)]
    pub(crate) fn dot4(acc: [i32; 4], block: &[i8], n: usize, xe: &[i16]) -> [i32; 4] {
        let g = xe.len() / 4;
        let fits = n
            .checked_mul(3)
            .and_then(|r| r.checked_add(4 * g))
            .is_some_and(|need| need <= block.len());
        if g == 0 || !fits || !(xe.as_ptr() as usize).is_multiple_of(4) {
            return super::dot4_portable(acc, block, n, xe);
        }
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        let p = block.as_ptr();
        let xp = xe.as_ptr();
        // One past the last group: 8 bytes per group.
        let end = xp.wrapping_add(4 * g);
        // SAFETY: reads only. Row k's words are at `p + k*n + 4i` for i < g: the highest byte
        // read, `p + 3n + 4g - 1`, is inside `block` (checked above). `xe` words are read at
        // `xp + 8i`, i < g, inside `xe` (length 4g), with LDRD on a 4-aligned address (checked
        // above; LDRD faults when unaligned). Weight words may be unaligned: LDR allows that on
        // Armv7-M/Armv8-M Mainline (unless CCR.UNALIGN_TRP is set, which nothing here does).
        // The loop runs g >= 1 times: it is entered at the second copy of the body when g is
        // odd, and the end test compares the x pointer with `end`, which it hits exactly.
        // `end` is pushed and popped around the loop (4 bytes of stack, sp restored), so its
        // register serves as a temporary. SXTB16/SMLAD need the DSP extension (module doc).
        unsafe {
            asm!(
                "push {{{t}}}",
                "add {q}, {p}, {n}, lsl #1",
                "sub {u}, {t}, {xp}",
                "tst {u}, #8",
                "bne 3f",
                "2:",
                "ldrd {xa}, {xb}, [{xp}], #8",
                "ldr {t}, [{p}, {n}]",
                "sxtb16 {u}, {t}",
                "smlad {a1}, {u}, {xa}, {a1}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a1}, {t}, {xb}, {a1}",
                "ldr {t}, [{q}, {n}]",
                "sxtb16 {u}, {t}",
                "smlad {a3}, {u}, {xa}, {a3}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a3}, {t}, {xb}, {a3}",
                "ldr {t}, [{q}], #4",
                "sxtb16 {u}, {t}",
                "smlad {a2}, {u}, {xa}, {a2}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a2}, {t}, {xb}, {a2}",
                "ldr {t}, [{p}], #4",
                "sxtb16 {u}, {t}",
                "smlad {a0}, {u}, {xa}, {a0}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a0}, {t}, {xb}, {a0}",
                "3:",
                "ldrd {xa}, {xb}, [{xp}], #8",
                "ldr {t}, [{p}, {n}]",
                "sxtb16 {u}, {t}",
                "smlad {a1}, {u}, {xa}, {a1}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a1}, {t}, {xb}, {a1}",
                "ldr {t}, [{q}, {n}]",
                "sxtb16 {u}, {t}",
                "smlad {a3}, {u}, {xa}, {a3}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a3}, {t}, {xb}, {a3}",
                "ldr {t}, [{q}], #4",
                "sxtb16 {u}, {t}",
                "smlad {a2}, {u}, {xa}, {a2}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a2}, {t}, {xb}, {a2}",
                "ldr {t}, [{p}], #4",
                "sxtb16 {u}, {t}",
                "smlad {a0}, {u}, {xa}, {a0}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a0}, {t}, {xb}, {a0}",
                "ldr {u}, [sp]",
                "cmp {xp}, {u}",
                "bne 2b",
                "add sp, #4",
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                p = inout(reg) p => _,
                n = in(reg) n,
                q = out(reg) _,
                xp = inout(reg) xp => _,
                t = inout(reg) end => _,
                xa = out(reg) _,
                xb = out(reg) _,
                u = out(reg) _,
                options(pure, readonly),
            );
        }
        [a0, a1, a2, a3]
    }
}

#[cfg(not(all(
    target_arch = "arm",
    any(target_feature = "dsp", target_abi = "eabihf")
)))]
mod imp {
    /// Portable `SXTB16 d, x`: bytes 0 and 2 of `x`, sign-extended into the two 16-bit lanes.
    #[inline(always)]
    pub(crate) fn sxtb16(x: u32) -> u32 {
        let lo = u32::from(x as u8 as i8 as i16 as u16);
        let hi = u32::from((x >> 16) as u8 as i8 as i16 as u16);
        lo | (hi << 16)
    }

    /// Portable `SXTB16 d, x, ROR #8`: bytes 1 and 3 of `x`, sign-extended into the lanes.
    #[inline(always)]
    pub(crate) fn sxtb16_ror8(x: u32) -> u32 {
        sxtb16(x.rotate_right(8))
    }

    /// Portable `SMLAD`: `acc + a.lo * b.lo + a.hi * b.hi` (16-bit signed lanes), mod 2^32.
    #[inline(always)]
    pub(crate) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let lo = i32::from(a as i16) * i32::from(b as i16);
        let hi = i32::from((a >> 16) as i16) * i32::from((b >> 16) as i16);
        acc.wrapping_add(lo).wrapping_add(hi)
    }

    /// Portable [`dot4`](super::dot4_portable): the same sums.
    #[inline(always)]
    pub(crate) fn dot4(acc: [i32; 4], block: &[i8], n: usize, xe: &[i16]) -> [i32; 4] {
        super::dot4_portable(acc, block, n, xe)
    }
}

pub(crate) use imp::{dot4, smlad, sxtb16, sxtb16_ror8};

/// [`dot4`] with the (possibly emulated) instructions one at a time, for any arguments: rows
/// `k * n ..` of `block` (as far as they go) against the widened input `xe`.
#[inline(never)]
pub(crate) fn dot4_portable(acc: [i32; 4], block: &[i8], n: usize, xe: &[i16]) -> [i32; 4] {
    let mut out = acc;
    for (k, a) in out.iter_mut().enumerate() {
        let row = k
            .checked_mul(n)
            .and_then(|s| block.get(s..))
            .unwrap_or_default();
        *a = dot1(*a, row, xe);
    }
    out
}

/// One row: `acc + Σ_{j < 4g} row[j] * x[j]` (mod 2^32) against the widened input `xe` (`4g`
/// values); stops early if `row` is shorter.
#[inline(always)]
pub(crate) fn dot1(acc: i32, row: &[i8], xe: &[i16]) -> i32 {
    let (w4, _) = row.as_chunks::<4>();
    let (x4, _) = xe.as_chunks::<4>();
    w4.iter().zip(x4).fold(acc, |acc, (w, x)| {
        let w = u32::from_le_bytes(w.map(|v| v as u8));
        let xa = u32::from(x[0] as u16) | (u32::from(x[1] as u16) << 16);
        let xb = u32::from(x[2] as u16) | (u32::from(x[3] as u16) << 16);
        smlad(sxtb16_ror8(w), xb, smlad(sxtb16(w), xa, acc))
    })
}
