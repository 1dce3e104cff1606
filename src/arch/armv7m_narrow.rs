//! The packed int8 kernel for narrow layers on Armv7-M (Cortex-M3) and Armv8-M Mainline without
//! the DSP extension: the arithmetic of `armv7m_packed.rs` (two MACs per `SMLAL`, on the stored
//! row-major signed weights; `packed.rs` has the prepared input and its bounds), for layers of
//! one chunk of at most [`MAX_GROUPS`] groups of four inputs (8..=128 inputs, a multiple of 4)
//! whose output stage is [`finish`](super::finish)'s, with the cost per row cut down:
//!
//! - the groups are unrolled once, [`MAX_GROUPS`] copies of 13 instructions (52 bytes each, all
//!   32-bit encodings), and each pass jumps into that run at the group count of the layer
//!   (`LDR pc`), so no loop test is counted and nothing is decided per pass;
//! - the state of a pass is on the stack in the order `LDM`/`STM` read and write it: one `LDM`
//!   starts a pass (input pointer, mask, both 64-bit start values), one loads the row constants'
//!   pointers and one `STM` stores them back; the output pointer stays in `lr`.
//!
//! Per pass of two rows (QEMU counts instructions): 13 per group of four inputs (1.625 per MAC),
//! 3 to start, 8 to extract both sums and add the biases, 14 per row for the output stage
//! (`SMLAL`, `SSAT`), 4 to store the pointers, step to the next two rows and test the end: 43,
//! about 21.5 per row. A layer with an odd row count, a row whose shift the output stage does not
//! take (`-31..=-2`), or a layer outside the limits above goes (from that row on) to the
//! general packed kernel (`armv7m_packed.rs`), which computes the same bits.
//!
//! Registers in the passes: `p = r0` (row 0 of the pass; row 1 at `[p, N]`), `N = r1`, `xp =
//! r2`, mask `r3`, `V1, V2, K = r4, r5, r6`, weights `r7`, lane `r8`, accumulators `r9:r10`
//! (row 0) and `r11:r12` (row 1), output pointer `lr` (`r6`, `r7` saved and restored by the
//! block: `asm!` may not name them).

use super::armv7m_packed;
use super::packed::Packed;
use crate::Requant;
use core::arch::asm;
use core::mem::{offset_of, size_of, MaybeUninit};

/// Most groups of four inputs the unrolled run holds (128 inputs; one chunk of `packed.rs`).
pub(crate) const MAX_GROUPS: usize = 32;

/// Bytes of one unrolled group: 13 instructions of 4 bytes.
const GROUP_BYTES: usize = 52;

/// Packs `x` into `scratch` as `packed::prepare` does for one chunk (the same words), in one
/// `asm!` loop of 21 instructions per group of four inputs; `None` (use another kernel) unless
/// `x` is 2..=[`MAX_GROUPS`] whole groups and `scratch` holds `3 g + 2` words.
///
/// Per group (`x0..x3`, one `LDR`): `V1 = x3 + x0 2^24` and `V2 = x1 + x2 2^24` (mod 2^32: for
/// the pairs `packed.rs` gives the key `0x7F`, low-lane input -128 and top-lane input negative,
/// this is the `b + 2^31` it writes, and exactly those pairs have `V + 128` overflow, which sets
/// their key byte), the key word, and the input terms: the low-lane inputs plus 128 are summed
/// in two 16-bit lanes (at most `2 * 32 * 255`, no carry between them) and the special pairs
/// counted, so that `C = 128 L - 32768 g + 32640 s` (the term is `128 a` for key `0x80`,
/// `-127 a = 16256` for `a = -128` with key `0x7F`).
pub(crate) fn prepare<'a>(x: &[i8], scratch: &'a mut [MaybeUninit<i32>]) -> Option<Packed<'a>> {
    let n = x.len();
    let g = n / 4;
    if !n.is_multiple_of(4) || !(2..=MAX_GROUPS).contains(&g) {
        return None;
    }
    let words = scratch.get_mut(..3 * g + 2)?;
    let out = words.as_mut_ptr();
    let lanes: u32;
    let special: u32;
    // SAFETY: reads the `4g` bytes of `x` (`LDR` of a word may be unaligned on Armv7-M; the
    // loop runs `g >= 1` times and stops when the pointer reaches `x + 4g` exactly) and writes
    // `3g` words at `out` (`STM` of 4-aligned `MaybeUninit<i32>`s, inside `words`, which holds
    // `3g + 2`). No stack; every instruction is Armv7-M without DSP.
    unsafe {
        asm!(
            "2:",
            "ldr r4, [{xp}], #4",
            "lsl r5, r4, #24",
            "add r5, r5, r4, asr #24",
            "and r8, r4, #0x00FF0000",
            "sxtb r10, r4, ror #8",
            "add r8, r10, r8, lsl #8",
            "eor r10, r4, #0x80808080",
            "and r10, r10, #0x00FF00FF",
            "add r3, r3, r10",
            "mov r9, #0x00800080",
            "cmn r5, #128",
            "itt vs",
            "eorvs r9, r9, #0xFF",
            "addvs r11, r11, #1",
            "cmn r8, #128",
            "itt vs",
            "eorvs r9, r9, #0xFF0000",
            "addvs r11, r11, #1",
            "stm {out}!, {{r5, r8, r9}}",
            "cmp {xp}, {end}",
            "bne 2b",
            xp = inout(reg) x.as_ptr() => _,
            end = in(reg) x.as_ptr().wrapping_add(4 * g),
            out = inout(reg) out => _,
            inout("r3") 0u32 => lanes,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            inout("r11") 0u32 => special,
            options(nostack),
        );
    }
    let l = i64::from((lanes & 0xFFFF) + (lanes >> 16));
    let c = 128 * l - 32768 * g as i64 + 32640 * i64::from(special);
    let t0 = (1i64 << 23) - (c << 24);
    let (v, init) = words.split_at_mut_checked(3 * g)?;
    if let [lo, hi] = init {
        lo.write(t0 as i32);
        hi.write((t0 >> 32) as i32);
    }
    // SAFETY: the asm wrote the `3g` words of `v`, and `init` (2 words) was written just above;
    // `MaybeUninit<i32>` has the layout of `u32`.
    let (v, init): (&'a [u32], &'a [u32]) = unsafe {
        (
            &*(core::ptr::from_mut(v) as *const [u32]),
            &*(core::ptr::from_mut(init) as *const [u32]),
        )
    };
    Some(Packed {
        v,
        init,
        tail: &[],
        n,
    })
}

/// The state of a layer: the first 11 words are copied to the stack in this order (the pass
/// reads them with `LDM`), the last three are read once into registers.
#[repr(C)]
struct Ctx {
    /// Bias of the next pass's row 0.
    bias: *const i32,
    /// `2 zp + 1`.
    zp2: i32,
    /// Requantization constants of the next pass's row 0.
    rq: *const Requant,
    /// One past the last output the passes write.
    y_end: *mut i8,
    /// The packed input (`3g` words).
    v: *const u32,
    /// The lane mask `0xFF0000FF`.
    mask: u32,
    /// The start value of both accumulators (low, high), twice.
    t0: [u32; 4],
    /// `g * GROUP_BYTES` on entry; the asm writes the jump address there.
    entry: usize,
    /// Row 0 of the first pass.
    w: *const i8,
    /// Inputs (the row stride in bytes).
    n: usize,
    /// The first output.
    y: *mut i8,
}

/// The rows of a layer (row-major `weights`, `n` apart) against the prepared input:
/// `acc = bias[o] + Σ_i w[o][i] x[i]` (mod 2^32), then the output stage of
/// [`finish`](super::finish) with `l.zp2`, two rows per pass in one `asm!` block; the rows it
/// does not take (see the module doc) by `armv7m_packed::layer`, which uses `slow` where
/// `finish` does not apply. Returns the number of rows written: all rows that `weights`,
/// `bias`, `requant` and `y` hold.
pub(crate) fn layer(
    inp: &Packed<'_>,
    l: super::Layer<'_, '_>,
    slow: impl Fn(i32, Requant) -> i8,
) -> usize {
    let n = inp.n;
    let g = n / 4;
    let rows = (l.weights.len().checked_div(n).unwrap_or(0))
        .min(l.bias.len())
        .min(l.requant.len())
        .min(l.y.len());
    let pairs = rows / 2;
    let start = match (l.zp2, inp.init) {
        (Some(zp2), &[lo, hi])
            if inp.tail.is_empty() && (1..=MAX_GROUPS).contains(&g) && inp.v.len() == 3 * g =>
        {
            Some((zp2, lo, hi))
        }
        _ => None,
    };
    let Some((zp2, lo, hi)) = start.filter(|_| pairs > 0) else {
        return armv7m_packed::layer(inp, l, slow);
    };
    let y0 = l.y.as_mut_ptr();
    let mut c = Ctx {
        bias: l.bias.as_ptr(),
        zp2,
        rq: l.requant.as_ptr(),
        y_end: y0.wrapping_add(2 * pairs),
        v: inp.v.as_ptr(),
        mask: 0xFF00_00FF,
        t0: [lo, hi, lo, hi],
        entry: g * GROUP_BYTES,
        w: l.weights.as_ptr(),
        n,
        y: y0,
    };
    let cp: *mut Ctx = &mut c;
    let y_stop: *mut i8;
    // SAFETY: `pairs >= 1` passes of two rows: pass k reads row `2k` of the weights from `w +
    // 2k n` to `w + 2k n + 4g` (`p` post-increments by 4 per group and then steps over row
    // `2k + 1`) and row `2k + 1` at `p + n`; the rows `< 2 pairs <= rows` are inside `weights`
    // (`rows n <= weights.len()`); unaligned `LDR` is allowed on Armv7-M. Each pass reads the
    // `3g` words of `v` (`inp.v`, checked above) with `LDM` on its 4-aligned words, two biases
    // and two `Requant`s (layout asserted below; `LDM`/`LDRD` on 4-aligned `i32`s) of rows
    // `2k`, `2k + 1` and writes their two output bytes through `lr`, all inside `bias`,
    // `requant` and `y` (`2 pairs <= rows`); it stops when `lr` reaches `y_end = y + 2 pairs`
    // exactly, or early at a row whose shift is outside `-31..=-2` (then `lr` is the first
    // output not written). The jump enters the unrolled run `g <= MAX_GROUPS` groups before its
    // end (every group is `GROUP_BYTES` long: 32-bit encodings only, checked by the assembler
    // below), with the Thumb bit set. It reads and writes `c` through `cp` (a live local) and
    // its own 52 bytes of stack (r6/r7, not nameable, pushed and popped; 11 words of pass
    // state; sp restored). Every instruction is Armv7-M without DSP.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "ldr r1, [r0, #{o_entry}]",
            "adr.w r2, 59f",
            "sub r2, r2, r1",
            "orr r2, r2, #1",
            "str r2, [r0, #{o_entry}]",
            "ldm r0, {{r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11}}",
            "push {{r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11}}",
            "ldr lr, [r0, #{o_y}]",
            "ldr r1, [r0, #{o_n}]",
            "ldr r0, [r0, #{o_w}]",
            // A pass: the input pointer, the mask and both start values, then the jump.
            "2:",
            "add r2, sp, #16",
            "ldm r2, {{r2, r3, r9, r10, r11, r12}}",
            "ldr pc, [sp, #40]",
            "58:",
            ".rept {max_groups}",
            "ldm.w r2!, {{r4, r5, r6}}",
            "ldr.w r7, [r0, r1]",
            "eor.w r7, r7, r6",
            "and.w r8, r7, r3",
            "smlal r11, r12, r8, r4",
            "and.w r7, r3, r7, ror #16",
            "smlal r11, r12, r7, r5",
            "ldr.w r7, [r0], #4",
            "eor.w r7, r7, r6",
            "and.w r8, r7, r3",
            "smlal r9, r10, r8, r4",
            "and.w r7, r3, r7, ror #16",
            "smlal r9, r10, r7, r5",
            ".endr",
            "59:",
            ".if (59b - 58b) != {max_groups} * {group_bytes}",
            ".error \"an unrolled group is not 52 bytes\"",
            ".endif",
            // The sums: bits 16..48 of each accumulator, >> 8, plus the biases.
            "lsl r7, r10, #16",
            "orr r7, r7, r9, lsr #16",
            "lsl r8, r12, #16",
            "orr r8, r8, r11, lsr #16",
            "ldm sp, {{r2, r3, r4, r5}}",
            "ldm r2!, {{r9, r11}}",
            "add r9, r9, r7, asr #8",
            "add r11, r11, r8, asr #8",
            // The output stage of `finish` (super), row 0 then row 1.
            "ldrd r6, r7, [r4], #8",
            "add r7, r7, #31",
            "cmp r7, #29",
            "bhi 8f",
            "rsb r7, r7, #29",
            "mov r8, #0x40000000",
            "mov r10, #0",
            "smlal r8, r10, r9, r6",
            "bic r8, r10, r8",
            "sub r10, r10, r8, lsr #31",
            "asr r10, r10, r7",
            "add r10, r10, r3",
            "ssat r10, #8, r10, asr #1",
            "strb r10, [lr], #1",
            "ldrd r6, r7, [r4], #8",
            "add r7, r7, #31",
            "cmp r7, #29",
            "bhi 8f",
            "rsb r7, r7, #29",
            "mov r8, #0x40000000",
            "mov r10, #0",
            "smlal r8, r10, r11, r6",
            "bic r8, r10, r8",
            "sub r10, r10, r8, lsr #31",
            "asr r10, r10, r7",
            "add r10, r10, r3",
            "ssat r10, #8, r10, asr #1",
            "strb r10, [lr], #1",
            // The next two rows.
            "stm sp, {{r2, r3, r4}}",
            "add r0, r0, r1",
            "cmp lr, r5",
            "bne 2b",
            "8:",
            "add sp, #44",
            "pop {{r6, r7}}",
            "mov r0, lr",
            max_groups = const MAX_GROUPS,
            group_bytes = const GROUP_BYTES,
            o_entry = const offset_of!(Ctx, entry),
            o_w = const offset_of!(Ctx, w),
            o_n = const offset_of!(Ctx, n),
            o_y = const offset_of!(Ctx, y),
            inout("r0") cp => y_stop,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
    // Whole passes done: the rows from there on (at least the odd last one, or the pass that
    // stopped) go to the general packed kernel.
    let done = ((y_stop as usize).wrapping_sub(y0 as usize) & !1).min(rows);
    if done == rows {
        return rows;
    }
    let rest = super::Layer {
        weights: l.weights.get(done * n..).unwrap_or_default(),
        bias: l.bias.get(done..).unwrap_or_default(),
        requant: l.requant.get(done..).unwrap_or_default(),
        y: l.y.get_mut(done..).unwrap_or_default(),
        zp2: l.zp2,
    };
    done + armv7m_packed::layer(inp, rest, slow)
}

const _: () = {
    assert!(offset_of!(Requant, multiplier) == 0);
    assert!(offset_of!(Requant, shift) == 4);
    assert!(size_of::<Requant>() == 8);
    // The first 11 words of `Ctx` are the pass state, in `push` order (module doc).
    assert!(offset_of!(Ctx, bias) == 0);
    assert!(offset_of!(Ctx, zp2) == 4);
    assert!(offset_of!(Ctx, rq) == 8);
    assert!(offset_of!(Ctx, y_end) == 12);
    assert!(offset_of!(Ctx, v) == 16);
    assert!(offset_of!(Ctx, mask) == 20);
    assert!(offset_of!(Ctx, t0) == 24);
    assert!(offset_of!(Ctx, entry) == 40);
};
