//! Cortex-M DSP instructions (Armv7E-M / Armv8-M Mainline DSP extension) for the int8 kernels,
//! with portable emulations that compute the same bits everywhere else; and the multi-row
//! kernels of the cores without DSP (`arch/armv6m.rs`: Cortex-M0/M0+/M1/M23, `arch/armv7m.rs`:
//! Cortex-M3 and Armv8-M Mainline without DSP), selected by `cfg(tinyvae_armv6m)` /
//! `cfg(tinyvae_armv7m)` from `build.rs`, with a portable emulation of their interface
//! ([`layer`], [`prepare`]) elsewhere.
//!
//! This module and its children are the only ones with `unsafe` code: `core::arch::asm!`
//! blocks, each with a `// SAFETY:` comment.
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
//! `cfg(tinyvae_dsp)`, set by the crate's `build.rs` from the target name: `thumbv7em-*`
//! (Cortex-M4/M7, where DSP is part of the architecture) and `thumbv8m.main-*eabihf`
//! (Cortex-M33/M35P/M55/M85; DSP is optional in Armv8-M Mainline, so a core built without it
//! must not use such a build: its first dense layer would fault). `cfg(target_feature = "dsp")`
//! would be the precise test, but Arm target features are unstable and stable rustc (1.95)
//! never sets it, even with `-C target-cpu=cortex-m4`. Everything else (`thumbv6m`, `thumbv7m`,
//! Arm-state A/R targets, the host) runs the portable emulations of the DSP instructions
//! ([`DSP`] tells which); of those, `thumbv6m-*`/`thumbv8m.base-*` get `cfg(tinyvae_armv6m)` and
//! `thumbv7m-*`/`thumbv8m.main-*` without DSP `cfg(tinyvae_armv7m)`, which select the
//! multi-row `asm!` kernels ([`MULTIROW`] tells whether they are in).
//!
//! # Kernels
//!
//! Besides single instructions (`pure, nomem, nostack`), two `asm!` loops read memory: `dot4`
//! (four rows of one block against the widened input) and `rows4` (every 4-row block of a layer
//! with its output stage: requantization, zero point, `SSAT #8`, byte stores). Their wrappers
//! check every bound and alignment they rely on and state them in `// SAFETY:` comments; each
//! pushes at most two words (the loop needs all 12 allocatable registers) and restores `sp`.
//! Weight words are read with unaligned LDR, which Armv7-M and Armv8-M Mainline allow (unless
//! CCR.UNALIGN_TRP is set); the widened input, 4-aligned, with LDRD.
//!
//! The multi-row kernels (`layer`) run one `asm!` block per block of up to five rows (their
//! module docs say how); they read weight bytes only (`LDRSB`, no alignment), the input widened
//! to 4-aligned words (`LDM`), and push `r6`/`r7`, which `asm!` cannot name, with a few words of
//! state, restoring `sp` on every exit. On Armv7-M the packed kernels (`armv7m_packed.rs`,
//! `armv7m_narrow.rs`, chosen per layer by `armv7m_pick.rs`) read weight words instead
//! (unaligned `LDR`) against the input packed once per layer, and the narrow one enters its
//! unrolled groups with one `LDR pc` per pass (a Thumb address it computes with `ADR`).
//!
//! It is kept as one file (with its per-core children in `arch/`) because it is one concept:
//! the only `unsafe` of the library, the kernels' `asm!` and their portable twins.

use crate::Requant;

/// Whether the DSP instructions are compiled in (see the module doc); `false` means the
/// functions below are the portable emulations.
pub(crate) const DSP: bool = cfg!(tinyvae_dsp);

#[cfg(tinyvae_dsp)]
mod imp {
    use crate::Requant;
    use core::arch::asm;
    use core::mem::{offset_of, size_of};

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

    /// `rows4` with the instructions: the MAC loop of [`dot4`] and
    /// the output stage of [`finish`](super::finish) for every block, in one `asm!` block.
    /// Returns `(0, None)` without doing anything when its preconditions do not hold (no whole
    /// block, `n` not a positive multiple of 4, too little widened input, `xe` not 4-aligned).
    #[inline(always)]
    pub(crate) fn rows4(l: &super::Rows4<'_>, y: &mut [i8]) -> (usize, Option<[i32; 4]>) {
        let Some(blocks) = blocks(l, y.len()) else {
            return (0, None);
        };
        if !(l.xe.as_ptr() as usize).is_multiple_of(4) {
            return (0, None);
        }
        let n = l.n;
        let mut c = Ctx {
            xe: l.xe.as_ptr(),
            // One past the last group: `n / 4` groups of 8 bytes.
            xe_end: l.xe.as_ptr().wrapping_add(n),
            bias: l.bias.as_ptr(),
            rq: l.requant.as_ptr(),
            y: y.as_mut_ptr(),
            zp2: l.zp2,
            adv: 3 * n,
            left: blocks,
            p: l.weights.as_ptr(),
            n,
            acc: [0; 4],
        };
        let cp: *mut Ctx = &mut c;
        // SAFETY: `blocks >= 1` blocks of 4 rows, `n >= 4` a multiple of 4 (`Rows4::blocks`
        // checked both and that `weights`, `bias`, `requant` and `y` hold `blocks` blocks:
        // `4n`, 4, 4 and 4 entries each). Block b reads the weight words at
        // `p + (4b + k) n + 4i` (k < 4, i < n/4), all inside `weights`; the widened input at
        // `xe + 8i` with LDRD, inside `xe` (length >= n, checked) and 4-aligned (checked:
        // LDRD faults when unaligned; the weight words may be unaligned, which LDR allows on
        // Armv7-M/Armv8-M Mainline unless CCR.UNALIGN_TRP is set). It reads 4 biases and 4
        // `Requant`s per block (layout asserted below: `multiplier` at 0, `shift` at 4) and
        // writes 4 output bytes `y + 4b + k`, all inside their slices, and writes `c` through
        // `cp` (a live local). The MAC loop runs n/4 >= 1 times (entered at its second copy
        // when n/4 is odd; its end test compares the x pointer with `xe_end`, which it hits
        // exactly). The outer loop stops after `left` blocks, or early at a row whose shift is
        // outside `-31..=-2` (then `acc` holds the block's accumulators). It pushes two words
        // and pops them (sp restored on both exits). SXTB16/SMLAD/SSAT need the DSP extension
        // (module doc). No other memory is touched.
        unsafe {
            asm!(
                "push {{{t}}}",
                "4:",
                "ldr {u}, [sp]",
                "ldr {t}, [{u}, #{o_bias}]",
                "ldrd {a0}, {a1}, [{t}], #8",
                "ldrd {a2}, {a3}, [{t}], #8",
                "str {t}, [{u}, #{o_bias}]",
                "ldrd {xp}, {t}, [{u}, #{o_xe}]",
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
                // Epilogue: q = ctx, xp = requant, xa = y, xb = zp2, p = m, n = shift,
                // t and u the 64-bit product.
                "ldr {q}, [sp]",
                "ldr {t}, [{q}, #{o_adv}]",
                "add {p}, {p}, {t}",
                "str {p}, [{q}, #{o_p}]",
                "ldrd {xp}, {xa}, [{q}, #{o_rq}]",
                "ldr {xb}, [{q}, #{o_zp2}]",
                // row 0: m, shift
                "ldrd {p}, {n}, [{xp}], #8",
                "add {n}, {n}, #31",
                "cmp {n}, #29",
                "bhi 9f",
                "rsb {n}, {n}, #29",
                "mov {t}, #0x40000000",
                "mov {u}, #0",
                "smlal {t}, {u}, {a0}, {p}",
                "bic {t}, {u}, {t}",
                "sub {u}, {u}, {t}, lsr #31",
                "asr {u}, {u}, {n}",
                "add {u}, {u}, {xb}",
                "ssat {u}, #8, {u}, asr #1",
                "strb {u}, [{xa}, #0]",
                // row 1: m, shift
                "ldrd {p}, {n}, [{xp}], #8",
                "add {n}, {n}, #31",
                "cmp {n}, #29",
                "bhi 9f",
                "rsb {n}, {n}, #29",
                "mov {t}, #0x40000000",
                "mov {u}, #0",
                "smlal {t}, {u}, {a1}, {p}",
                "bic {t}, {u}, {t}",
                "sub {u}, {u}, {t}, lsr #31",
                "asr {u}, {u}, {n}",
                "add {u}, {u}, {xb}",
                "ssat {u}, #8, {u}, asr #1",
                "strb {u}, [{xa}, #1]",
                // row 2: m, shift
                "ldrd {p}, {n}, [{xp}], #8",
                "add {n}, {n}, #31",
                "cmp {n}, #29",
                "bhi 9f",
                "rsb {n}, {n}, #29",
                "mov {t}, #0x40000000",
                "mov {u}, #0",
                "smlal {t}, {u}, {a2}, {p}",
                "bic {t}, {u}, {t}",
                "sub {u}, {u}, {t}, lsr #31",
                "asr {u}, {u}, {n}",
                "add {u}, {u}, {xb}",
                "ssat {u}, #8, {u}, asr #1",
                "strb {u}, [{xa}, #2]",
                // row 3: m, shift
                "ldrd {p}, {n}, [{xp}], #8",
                "add {n}, {n}, #31",
                "cmp {n}, #29",
                "bhi 9f",
                "rsb {n}, {n}, #29",
                "mov {t}, #0x40000000",
                "mov {u}, #0",
                "smlal {t}, {u}, {a3}, {p}",
                "bic {t}, {u}, {t}",
                "sub {u}, {u}, {t}, lsr #31",
                "asr {u}, {u}, {n}",
                "add {u}, {u}, {xb}",
                "ssat {u}, #8, {u}, asr #1",
                "strb {u}, [{xa}, #3]",
                "add {xa}, {xa}, #4",
                "strd {xp}, {xa}, [{q}, #{o_rq}]",
                "ldr {t}, [{q}, #{o_left}]",
                "subs {t}, {t}, #1",
                "str {t}, [{q}, #{o_left}]",
                "ldrd {p}, {n}, [{q}, #{o_p}]",
                "bne 4b",
                "b 8f",
                "9:",
                "strd {a0}, {a1}, [{q}, #{o_acc}]",
                "strd {a2}, {a3}, [{q}, #{o_acc2}]",
                "8:",
                "add sp, #4",
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                p = inout(reg) c.p => _,
                n = inout(reg) n => _,
                q = out(reg) _,
                xp = out(reg) _,
                t = inout(reg) cp => _,
                xa = out(reg) _,
                xb = out(reg) _,
                u = out(reg) _,
                o_xe = const offset_of!(Ctx, xe),
                o_bias = const offset_of!(Ctx, bias),
                o_rq = const offset_of!(Ctx, rq),
                o_zp2 = const offset_of!(Ctx, zp2),
                o_adv = const offset_of!(Ctx, adv),
                o_left = const offset_of!(Ctx, left),
                o_p = const offset_of!(Ctx, p),
                o_acc = const offset_of!(Ctx, acc),
                o_acc2 = const offset_of!(Ctx, acc) + 8,
            );
        }
        let done = blocks - c.left;
        (done, (c.left > 0).then_some(c.acc))
    }

    /// Number of whole 4-row blocks, if there is at least one and `n` is a positive multiple of
    /// 4 with enough widened input (what the `asm!` loop needs).
    fn blocks(l: &super::Rows4<'_>, outputs: usize) -> Option<usize> {
        let n = l.n;
        if n == 0 || !n.is_multiple_of(4) || l.xe.len() < n {
            return None;
        }
        let b = (l.weights.len() / n / 4)
            .min(l.bias.len() / 4)
            .min(l.requant.len() / 4)
            .min(outputs / 4);
        (b > 0).then_some(b)
    }

    /// The state of [`rows4`] in memory (the loop needs all 12 allocatable registers).
    /// Field pairs read with LDRD/STRD must be adjacent: asserted below.
    #[repr(C)]
    struct Ctx {
        xe: *const i16,
        xe_end: *const i16,
        bias: *const i32,
        rq: *const Requant,
        y: *mut i8,
        zp2: i32,
        adv: usize,
        left: usize,
        p: *const i8,
        n: usize,
        acc: [i32; 4],
    }

    const _: () = {
        assert!(offset_of!(Ctx, xe_end) == offset_of!(Ctx, xe) + 4);
        assert!(offset_of!(Ctx, y) == offset_of!(Ctx, rq) + 4);
        assert!(offset_of!(Ctx, n) == offset_of!(Ctx, p) + 4);
        assert!(offset_of!(Requant, multiplier) == 0);
        assert!(offset_of!(Requant, shift) == 4);
        assert!(size_of::<Requant>() == 8);
    };
}

#[cfg(not(tinyvae_dsp))]
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
    /// Portable `rows4`: whole 4-row blocks, each [`dot4_portable`](super::dot4_portable)
    /// then [`finish`](super::finish) per row; stops at the first block with a row `finish`
    /// does not take and returns `(blocks done, Some(that block's accumulators))`, else
    /// `(blocks, None)`; `(0, None)` unless `n` is a positive multiple of 4 with `n` widened
    /// inputs (as the instructions' version).
    #[inline(never)]
    pub(crate) fn rows4(l: &super::Rows4<'_>, y: &mut [i8]) -> (usize, Option<[i32; 4]>) {
        let n = l.n;
        if n == 0 || !n.is_multiple_of(4) || l.xe.len() < n {
            return (0, None);
        }
        let (y4, _) = y.as_chunks_mut::<4>();
        let (b4, _) = l.bias.as_chunks::<4>();
        let (r4, _) = l.requant.as_chunks::<4>();
        let mut done = 0;
        for (((yb, bb), rb), wb) in y4
            .iter_mut()
            .zip(b4)
            .zip(r4)
            .zip(l.weights.chunks_exact(n.saturating_mul(4)))
        {
            let a = super::dot4_portable(*bb, wb, n, l.xe);
            for ((yo, &acc), &rq) in yb.iter_mut().zip(&a).zip(rb) {
                match super::finish(acc, rq, l.zp2) {
                    Some(v) => *yo = v,
                    None => return (done, Some(a)),
                }
            }
            done += 1;
        }
        (done, None)
    }
}

pub(crate) use imp::{dot4, rows4, smlad, sxtb16, sxtb16_ror8};

/// Whether [`layer`] is an `asm!` kernel (Armv6-M: `armv6m.rs`, Armv7-M without DSP:
/// `armv7m.rs`); `false` means the portable emulation below.
pub(crate) const MULTIROW: bool = cfg!(any(tinyvae_armv6m, tinyvae_armv7m));

#[cfg(tinyvae_armv6m)]
mod armv6m;
#[cfg(tinyvae_armv6m)]
use armv6m as multirow;

#[cfg(tinyvae_armv7m)]
mod armv7m;
#[cfg(tinyvae_armv7m)]
mod armv7m_narrow;
#[cfg(tinyvae_armv7m)]
mod armv7m_packed;
#[cfg(tinyvae_armv7m)]
mod armv7m_pick;
#[cfg(any(tinyvae_armv7m, test))]
mod packed;
#[cfg(tinyvae_armv7m)]
use armv7m_pick as multirow;

/// The multi-row kernel's interface on every other target (`arch/emulated.rs`).
#[cfg(not(any(tinyvae_armv6m, tinyvae_armv7m)))]
mod emulated;
#[cfg(not(any(tinyvae_armv6m, tinyvae_armv7m)))]
use emulated as multirow;

pub(crate) use multirow::{layer, prepare};

/// One layer for [`layer`]: row-major `weights` (`in_dim` apart), its biases, requantization
/// constants and outputs, and `zp2 = 2 zp + 1` when the output stage is [`finish`]'s (clamp
/// `[-128, 127]`, no table, `|zp| <= 2^20`), else `None`.
pub(crate) struct Layer<'a, 'y> {
    pub(crate) weights: &'a [i8],
    pub(crate) bias: &'a [i32],
    pub(crate) requant: &'a [Requant],
    pub(crate) y: &'y mut [i8],
    pub(crate) zp2: Option<i32>,
}

/// One layer for [`rows4`]: `n` inputs (a multiple of 4), row-major `weights`, the widened
/// input `xe` (at least `n` values), and the output stage's constants with `zp2 = 2 zp + 1`
/// (`|zp| <= 2^20`); the output clamp is `[-128, 127]` and there is no table.
pub(crate) struct Rows4<'a> {
    pub(crate) weights: &'a [i8],
    pub(crate) n: usize,
    pub(crate) xe: &'a [i16],
    pub(crate) bias: &'a [i32],
    pub(crate) requant: &'a [Requant],
    pub(crate) zp2: i32,
}

/// The output stage of [`rows4`] for a clamp of `[-128, 127]` without table, given
/// `zp2 = 2 zp + 1` with `|zp| <= 2^20`; `None` when the shift is outside `-31..=-2` (then the
/// caller runs the general stage). Equal to `saturate_i8(requantize(acc, rq) + zp)` (see
/// `qkernel::requantize_fast` for the derivation): with `H` the high word of
/// `acc m + 2^30 - [acc m + 2^30 < 0] 2^31` and `e = -shift`,
/// `requantize = floor((H + 2^(e-2)) / 2^(e-1)) = floor((floor(H / 2^(e-2)) + 1) / 2)`, so
/// `requantize + zp = floor((floor(H / 2^(e-2)) + zp2) / 2)`: one SSAT with `ASR #1`.
/// `|H| <= 2^30 + 1` and `|zp2| <= 2^21 + 1`, so nothing overflows and the sum equals the
/// saturating one of the reference.
// On the DSP targets the `asm!` of `rows4` is this function, on Armv6-M/Armv7-M that of `rows`.
#[cfg_attr(any(tinyvae_dsp, tinyvae_armv6m, tinyvae_armv7m), allow(dead_code))]
#[inline(always)]
pub(crate) fn finish(acc: i32, rq: Requant, zp2: i32) -> Option<i8> {
    // shift + 31 in 0..=29 <=> shift in -31..=-2; then e - 2 = 29 - t.
    let t = rq.shift.wrapping_add(31) as u32;
    if t > 29 {
        return None;
    }
    let a = i64::from(acc) * i64::from(rq.multiplier) + (1 << 30);
    let (hi, lo) = ((a >> 32) as i32, a as u32);
    // Borrow of subtracting 2^31 when the 64-bit value is negative (BIC, SUB LSR #31).
    let hi = hi.wrapping_sub(((hi as u32 & !lo) >> 31) as i32);
    let v = (hi >> (29 - t)).wrapping_add(zp2) >> 1;
    // In -128..=127 after the clamp: the cast is exact (SSAT #8).
    Some(v.clamp(-128, 127) as i8)
}

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
