//! The multi-row int8 kernel for Armv6-M (Cortex-M0/M0+/M1) and Armv8-M Baseline (M23): up to
//! five rows of `acc[k] + Σ_i w[k][i] x[i]` per call, in one `asm!` block, on the row-major
//! signed weights as they are stored.
//!
//! # Arithmetic
//!
//! Wrapping i32 sums of exact products, as the portable kernel: `MULS` keeps the low 32 bits of
//! the product (exact: `|w x| <= 2^14`) and `ADD` wraps. Only the order of the additions differs,
//! which wrapping addition does not see.
//!
//! # Where the instructions go (QEMU counts instructions)
//!
//! Armv6-M has no post-increment and no multiply-accumulate, and `LDRSB` only takes a register
//! offset; its eight low registers are all an `LDRSB` or `MULS` can name. The input is widened
//! once per layer to 32-bit words in *pass order* (`x[0], x[4], x[8], .., x[1], x[5], .., x[2],
//! .., x[3], ..`), so that one `LDM J!, {x}` both loads an input and advances the index `J` by 4;
//! the weights of row `k` for that input are then at `J + D[k]` (a fixed per-row offset, wrapping
//! address arithmetic), and each row costs `LDRSB`, `MULS`, `ADD acc_hi` (accumulators in
//! `r8`..`r12`): 16 instructions per input for five rows, 3.2 per MAC. Four passes (inputs
//! `i ≡ q mod 4`) cover a row; between passes every `D[k]` moves by `1 - 4 Q_q` (`Q_q` inputs
//! in pass `q`). The body is unrolled 32 times (16 for three rows or fewer) and entered by a
//! computed `ADD PC` for the inputs left over, so the loop test costs 3 instructions per 32
//! inputs. Five-row blocks of layers whose passes all fit one run of the body (`n <= 128`)
//! use a variant with a copy of the body per pass and no loop test (26 instructions of pass
//! control per block instead of about 70; 4.7 KB of code).
//!
//! The output stage (`finish`, per row) forms the 64-bit product from four 16 x 16 `MULS`:
//! `mid = al mh + (al ml >> 16) + 2^14` fits an i32, and the high word is
//! `ah mh + (mid >> 16) + (ah ml >> 16)` plus the carry of `(mid << 16) + (ah ml << 16)` (the
//! low half of `al ml` cannot carry, and only bit 31 of the low word is used): 38
//! instructions per row, with `2^14` in `lr` and `2 zp + 1` in `r8` once the first row has
//! read its accumulator (`qdense` tests this arithmetic against i64).
//!
//! Registers: `J = r0`, `x = r1`, `t = r2`, `D[0..5] = r3..r7` (`r6`, `r7` saved and restored
//! by the block: `asm!` may not name them), accumulators `r8..r12`, the pass end in `lr`.
//!
//! It is kept as one file because it is one concept: the Armv6-M multi-row int8 kernel.

use crate::Requant;
use core::arch::asm;
use core::mem::{offset_of, size_of, MaybeUninit};

/// Rows per block (one accumulator per high register `r8`..`r12`).
pub(crate) const MAX_ROWS: usize = 5;

/// One pass of the block: the computed-jump offset into the unrolled body, the address where
/// the pass's widened input ends, and the adjustment of every `D[k]` after it (`1 - 4 Q_q`;
/// 0 marks the last pass).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Pass {
    entry: u32,
    end: usize,
    adj: u32,
}

/// The prepared input of a layer: the widened input in pass order and the number of inputs of
/// each pass (small, so that returning it copies no table).
pub(crate) struct Input<'a> {
    xw: &'a [i32],
    n: usize,
    quads: [u32; 4],
}

/// The pass table of an `r`-row block for passes of `quads` inputs.
fn table(xw: &[i32], quads: &[u32; 4], r: usize) -> [Pass; 4] {
    let (u, bb) = (unroll(r), body_bytes(r));
    let mut table = [Pass::default(); 4];
    let mut end = xw.as_ptr() as usize;
    for (p, &qn) in table.iter_mut().zip(quads) {
        // `u` is a power of two.
        let rem = qn & (u - 1);
        p.entry = if rem == 0 { 0 } else { (u - rem) * bb };
        let len = qn.wrapping_mul(4);
        end = end.wrapping_add(len as usize);
        p.end = end;
        p.adj = 1u32.wrapping_sub(len);
    }
    if let Some(last) = table.last_mut() {
        last.adj = 0;
    }
    table
}

/// Unrolled copies of the body for `r` rows, a power of two (the loop fits `B`'s `±2 KB`).
const fn unroll(r: usize) -> u32 {
    if r >= 4 {
        32
    } else {
        16
    }
}

/// Bytes of the body for `r` rows: `LDM` plus three 16-bit instructions per row.
const fn body_bytes(r: usize) -> u32 {
    2 * (1 + 3 * r as u32)
}

/// Widens `x` into `scratch` in pass order. `None` (use another kernel) unless `n >= 4`
/// (every pass has an input) and `scratch` holds `n` words (uninitialized: every one is
/// written here, saving the clearing). `_fused` (whether the output stage is `finish`'s) does
/// not change the kernel here.
pub(crate) fn prepare<'a>(
    x: &[i8],
    scratch: &'a mut [MaybeUninit<i32>],
    _fused: impl FnOnce() -> bool,
) -> Option<Input<'a>> {
    let n = x.len();
    if n < 4 || u32::try_from(n).is_err() {
        return None;
    }
    let xw = scratch.get_mut(..n)?;
    let (groups, tail) = x.as_chunks::<4>();
    let g = groups.len();
    // Pass q holds x[q], x[q + 4], ..: one input per group, and the tail's q-th if any.
    let quads: [u32; 4] = core::array::from_fn(|q| (g + usize::from(q < tail.len())) as u32);
    let [l0, l1, l2, _] = quads.map(|c| c as usize);
    let (s0, rest) = xw.split_at_mut_checked(l0)?;
    let (s1, rest) = rest.split_at_mut_checked(l1)?;
    let (s2, s3) = rest.split_at_mut_checked(l2)?;
    // Always true (`n >= 4`, section 3 holds `g` or `g + 1` words); checked for `widen_groups`.
    if g == 0 || s3.len() < g {
        return None;
    }
    widen_groups(
        groups,
        [
            s0.as_mut_ptr(),
            s1.as_mut_ptr(),
            s2.as_mut_ptr(),
            s3.as_mut_ptr(),
        ],
    );
    for (s, &v) in [s0, s1, s2, s3].into_iter().zip(tail) {
        if let Some(o) = s.get_mut(g) {
            o.write(i32::from(v));
        }
    }
    // SAFETY: every element of `xw` is written above: section q (length `g` plus one if
    // `q < tail.len()`) gets `g` values from the groups and, if it is one longer, the tail's
    // q-th; the sections tile `xw` (their lengths add up to `4 g + tail.len() = n`).
    // `MaybeUninit<i32>` has the layout of `i32`.
    let xw: &'a [i32] = unsafe { &*(core::ptr::from_mut(xw) as *const [i32]) };
    Some(Input { xw, n, quads })
}

/// Writes `groups[j][q]` (sign-extended) to `s[q] + j` for every group `j` and lane `q`: the
/// widening of [`prepare`] in one `asm!` loop (`LDRB`, `SXTB`, `STM s!` per input and three
/// instructions of loop control per group: 3.75 per input).
///
/// Its one caller, [`prepare`], checks that `groups` is not empty and that each `s[q]` points
/// to at least `groups.len()` writable words of its `xw`.
fn widen_groups(groups: &[[i8; 4]], s: [*mut MaybeUninit<i32>; 4]) {
    let x = groups.as_ptr().cast::<i8>();
    let end = x.wrapping_add(4 * groups.len());
    let [s0, s1, s2, s3] = s;
    // SAFETY: reads the `4 g` bytes of `groups` (`g = groups.len() >= 1`, `x` steps by 4 from
    // its start and stops exactly at `end`), and writes `g` words at each `s[q]` (one `STM`
    // per group per lane), which `prepare` checked are inside `xw` (section q holds at least
    // `g` words; `xw` comes from a `&mut [MaybeUninit<i32>]`, 4-aligned as `STM` needs). No
    // other memory, no stack; `end` goes to `r8` (declared clobbered; Thumb-1 `asm!` cannot
    // take a high register as input) and the flags are clobbered (no `preserves_flags`).
    unsafe {
        asm!(
            "mov r8, {t}",
            "2:",
            "ldrb {t}, [{x}, #0]",
            "sxtb {t}, {t}",
            "stm {s0}!, {{{t}}}",
            "ldrb {t}, [{x}, #1]",
            "sxtb {t}, {t}",
            "stm {s1}!, {{{t}}}",
            "ldrb {t}, [{x}, #2]",
            "sxtb {t}, {t}",
            "stm {s2}!, {{{t}}}",
            "ldrb {t}, [{x}, #3]",
            "sxtb {t}, {t}",
            "stm {s3}!, {{{t}}}",
            "adds {x}, #4",
            "cmp {x}, r8",
            "bne 2b",
            x = inout(reg) x => _,
            s0 = inout(reg) s0 => _,
            s1 = inout(reg) s1 => _,
            s2 = inout(reg) s2 => _,
            s3 = inout(reg) s3 => _,
            t = inout(reg) end => _,
            out("r8") _,
            options(nostack),
        );
    }
}

/// The state of one block in memory; the `asm!` reads it through `r0`.
#[repr(C)]
struct Ctx {
    /// The five-row passes without loop: the entries of the four passes, then the first
    /// three adjustments (copied to the `asm!`'s frame once per call; first, for
    /// `LDM r0!`).
    flat: [u32; 7],
    d0: usize,
    n: usize,
    xw: *const i32,
    bias: *const i32,
    table: *const Pass,
    acc: [i32; MAX_ROWS],
    rq: *const Requant,
    y: *mut i8,
    zp2: i32,
    done: usize,
    left: usize,
}

/// One `asm!` block for `$r` rows (module doc); `$cp` is the `*mut Ctx` it reads and writes.
macro_rules! block_asm {
    ($r:expr, $lp:expr, $cp:ident) => {
        // SAFETY: for each of the `left` blocks of `r` rows (rows `i..i + left r`, all
        // `<= rows`, so inside `weights`, `bias`, `requant` and `y`; the pointers advance by
        // `r` rows per block: `d0` by `5 n` bytes, which only the five-row variant
        // loops over), it reads `r` biases, the `n` words of the widened input (`xw`: pass
        // q reads its `Q_q` words, the passes tile `xw`; `LDM` needs the 4-aligned words it
        // gets), and the weights `row_k + i` for `k < r`, `i < n` (in pass q at step m,
        // `J + D[k]` is `row_k + q + 4m`, module doc); when `y` is not null, `r`
        // `Requant`s at `rq` and `r` output bytes at `y` (layout asserted below). It writes
        // those bytes and the fields of `c` through `cp` (a live local), nothing else. The
        // computed jump lands on a body start: `entry` is a multiple of the body size below
        // `u` bodies, and `ADD PC` reads PC as its own address + 4, where the first body
        // starts (after one 16-bit NOP). The loop ends when J reaches the pass end exactly
        // (J steps by 4, the pass is `4 Q_q` bytes); without the loop (`lp` 0, five rows),
        // `layer` checked that every `Q_q` is in `1..=u`, so the run from the entry to the
        // end of the bodies reads exactly `Q_q` inputs. r6/r7 (base and frame pointer, not
        // nameable) are pushed and popped, and 52 bytes of frame (the per-call state, written
        // before it is read) allocated and freed; sp is restored on every exit. `lr` is
        // clobbered (declared), the `BL` back to the block start included. No instruction
        // needs more than Armv6-M.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "sub sp, #52",
                "str r0, [sp, #4]",
                // Per call on the stack: [sp] table, [sp, #4] ctx, [sp, #8] y (null: not fused),
                // [sp, #12] zp2, [sp, #16] the `Requant` cursor, [sp, #20] 2^14.
                "ldr r1, [r0, #{o_table}]",
                "str r1, [sp, #0]",
                "ldr r1, [r0, #{o_y}]",
                "str r1, [sp, #8]",
                "ldr r1, [r0, #{o_zp2}]",
                "str r1, [sp, #12]",
                "ldr r1, [r0, #{o_rq}]",
                "str r1, [sp, #16]",
                "movs r1, #1",
                "lsls r1, r1, #14",
                "str r1, [sp, #20]",
                // Five rows without loop: [sp, #24 + 4 q] the entry of pass q, [sp, #40 + 4 q]
                // its adjustment (`flat`, the first field; r0 is reloaded after the `LDM`).
                ".if {r} == 5",
                ".if {lp} == 0",
                "ldm r0!, {{r1, r2, r3, r4, r5, r6, r7}}",
                "add r0, sp, #24",
                "stm r0!, {{r1, r2, r3, r4, r5, r6, r7}}",
                "ldr r0, [sp, #4]",
                ".endif",
                ".endif",
                // Block start (r0 = ctx). Five rows: the biases by one `LDM`, `bias`
                // advanced for the next block (only five-row calls have more than one).
                "12:",
                "ldr r1, [r0, #{o_bias}]",
                ".if {r} == 5",
                "ldm r1!, {{r2, r3, r4, r5, r6}}",
                "str r1, [r0, #{o_bias}]",
                "mov r8, r2",
                "mov r9, r3",
                "mov r10, r4",
                "mov r11, r5",
                "mov r12, r6",
                ".else",
                "ldr r2, [r1, #0]",
                "mov r8, r2",
                ".if {r} > 1",
                "ldr r2, [r1, #4]",
                "mov r9, r2",
                ".endif",
                ".if {r} > 2",
                "ldr r2, [r1, #8]",
                "mov r10, r2",
                ".endif",
                ".if {r} > 3",
                "ldr r2, [r1, #12]",
                "mov r11, r2",
                ".endif",
                ".endif",
                // The loop over passes advances its table pointer at [sp]: reset it.
                ".if {lp}",
                "ldr r2, [r0, #{o_table}]",
                "str r2, [sp, #0]",
                ".endif",
                "ldr r3, [r0, #{o_d0}]",
                "ldr r1, [r0, #{o_n}]",
                ".if {r} > 1",
                "adds r4, r3, r1",
                ".endif",
                ".if {r} > 2",
                "adds r5, r4, r1",
                ".endif",
                ".if {r} > 3",
                "adds r6, r5, r1",
                ".endif",
                ".if {r} > 4",
                "adds r7, r6, r1",
                // The next block's D[0] = D[4] + n (only five-row calls have more than one).
                "adds r1, r7, r1",
                "str r1, [r0, #{o_d0}]",
                ".endif",
                "ldr r0, [r0, #{o_xw}]",
                // Five rows with every pass at most `u` inputs (`lp` 0): the four passes one
                // after the other, each with its own copy of the body, run once from its entry
                // (no loop, no pass end); entries and adjustments on the frame. 42 instructions
                // less per block than the loop over passes below, for 3.6 KB of code.
                ".if {r} + 5 * {lp} == 5",
                ".set tvq, 0",
                ".rept 4",
                "ldr r1, [sp, #(24 + 4 * tvq)]",
                "add pc, r1",
                "nop",
                "3:",
                ".rept {u}",
                "ldm r0!, {{r1}}",
                "ldrsb r2, [r0, r3]",
                "muls r2, r1, r2",
                "add r8, r2",
                ".if {r} > 1",
                "ldrsb r2, [r0, r4]",
                "muls r2, r1, r2",
                "add r9, r2",
                ".endif",
                ".if {r} > 2",
                "ldrsb r2, [r0, r5]",
                "muls r2, r1, r2",
                "add r10, r2",
                ".endif",
                ".if {r} > 3",
                "ldrsb r2, [r0, r6]",
                "muls r2, r1, r2",
                "add r11, r2",
                ".endif",
                ".if {r} > 4",
                "ldrsb r2, [r0, r7]",
                "muls r2, r1, r2",
                "add r12, r2",
                ".endif",
                ".endr",
                ".if tvq < 3",
                "ldr r1, [sp, #(40 + 4 * tvq)]",
                "adds r3, r3, r1",
                "adds r4, r4, r1",
                "adds r5, r5, r1",
                "adds r6, r6, r1",
                "adds r7, r7, r1",
                ".endif",
                ".set tvq, tvq + 1",
                ".endr",
                ".else",
                // Otherwise one copy of the body and a loop over the passes (r2 = the
                // pass's table entry): END = J + len, jump to the body that leaves `len % u`
                // inputs, loop until J reaches END.
                "2:",
                "ldr r1, [r2, #4]",
                "mov lr, r1",
                "ldr r1, [r2, #0]",
                "add pc, r1",
                "nop",
                "3:",
                ".rept {u}",
                "ldm r0!, {{r1}}",
                "ldrsb r2, [r0, r3]",
                "muls r2, r1, r2",
                "add r8, r2",
                ".if {r} > 1",
                "ldrsb r2, [r0, r4]",
                "muls r2, r1, r2",
                "add r9, r2",
                ".endif",
                ".if {r} > 2",
                "ldrsb r2, [r0, r5]",
                "muls r2, r1, r2",
                "add r10, r2",
                ".endif",
                ".if {r} > 3",
                "ldrsb r2, [r0, r6]",
                "muls r2, r1, r2",
                "add r11, r2",
                ".endif",
                ".if {r} > 4",
                "ldrsb r2, [r0, r7]",
                "muls r2, r1, r2",
                "add r12, r2",
                ".endif",
                ".endr",
                "cmp r0, lr",
                "beq 4f",
                "b 3b",
                // Pass end: move every D[k], next pass unless that was the fourth.
                "4:",
                "ldr r2, [sp, #0]",
                "ldr r1, [r2, #8]",
                "cmp r1, #0",
                "beq 5f",
                "adds r2, #12",
                "str r2, [sp, #0]",
                "adds r3, r3, r1",
                ".if {r} > 1",
                "adds r4, r4, r1",
                ".endif",
                ".if {r} > 2",
                "adds r5, r5, r1",
                ".endif",
                ".if {r} > 3",
                "adds r6, r6, r1",
                ".endif",
                ".if {r} > 4",
                "adds r7, r7, r1",
                ".endif",
                "b 2b",
                ".endif",
                "5:",
                // The output stage (if `y` is set): for each row, `finish` (super) with the
                // 64-bit product from 16-bit halves, as `qkernel::mul_add_2_30_halves`. The
                // sums are stored only for the rows it leaves to the caller.
                "ldr r2, [sp, #8]",
                "cmp r2, #0",
                "bne 8f",
                "movs r1, #0",
                "b 9f",
                // r0 = the `Requant` cursor; y and zp2 on the stack.
                "8:",
                "ldr r0, [sp, #16]",
                // 2^14 (the + 2^30 of every row) in lr, free after the passes.
                "ldr r1, [sp, #20]",
                "mov lr, r1",
                ".set tvkk, 0",
                ".irp acc, r8, r9, r10, r11, r12",
                ".if tvkk < {r}",
                "ldm r0!, {{r2, r3}}",
                "rsbs r3, r3, #0",
                "subs r3, #2",
                "cmp r3, #29",
                "bls 6f",
                "movs r1, #tvkk",
                "b 9f",
                "6:",
                "mov r1, \\acc",
                "uxth r4, r1",
                "asrs r1, r1, #16",
                "uxth r5, r2",
                "asrs r2, r2, #16",
                "mov r6, r4",
                "muls r6, r5, r6",
                "mov r7, r1",
                "muls r7, r2, r7",
                "muls r4, r2, r4",
                "muls r1, r5, r1",
                // mid = lh + (ll >> 16) + 2^14 (the + 2^30) fits i32: |lh| <= (2^16 - 1)
                // 2^15, so -2^31 < mid < 2^31 - 2^14. The low half of `ll` cannot carry
                // into bit 16 and only bits >= 31 are used: drop it. Then
                // lo = (mid << 16) + (hl << 16), hi = hh + (mid >> 16) + (hl >> 16) + C.
                "lsrs r6, r6, #16",
                "adds r4, r4, r6",
                "add r4, lr",
                "lsls r6, r4, #16",
                "asrs r4, r4, #16",
                "adds r7, r7, r4",
                "lsls r2, r1, #16",
                "asrs r1, r1, #16",
                "adds r6, r6, r2",
                "adcs r7, r1",
                "mov r1, r7",
                "bics r1, r6",
                "lsrs r1, r1, #31",
                "subs r7, r7, r1",
                "asrs r7, r3",
                // + zp2: from the stack for row 0, which then leaves it in r8 (its accumulator
                // is read) for the other rows.
                ".if tvkk == 0",
                "ldr r1, [sp, #12]",
                "adds r7, r7, r1",
                "mov r8, r1",
                ".else",
                "add r7, r8",
                ".endif",
                "asrs r7, r7, #1",
                "sxtb r1, r7",
                "cmp r1, r7",
                "beq 7f",
                "asrs r1, r7, #31",
                "movs r2, #127",
                "eors r1, r2",
                "7:",
                "ldr r2, [sp, #8]",
                "strb r1, [r2, #tvkk]",
                // The last row advances y for the next block.
                ".if tvkk == {r} - 1",
                "adds r2, #{r}",
                "str r2, [sp, #8]",
                ".endif",
                ".endif",
                ".set tvkk, tvkk + 1",
                ".endr",
                // Block done: the next one, unless it was the last (`left` of them); the
                // rows' `LDM`s have advanced the `Requant` cursor.
                "str r0, [sp, #16]",
                "ldr r0, [sp, #4]",
                "ldr r1, [r0, #{o_left}]",
                "subs r1, #1",
                "str r1, [r0, #{o_left}]",
                "beq 11f",
                // `BL`: the block start is beyond `B`'s 2 KB; lr is free here.
                "bl 12b",
                "11:",
                "movs r1, #{r}",
                "str r1, [r0, #{o_done}]",
                "b 10f",
                // Not fused, or a row the stage does not take: `done` rows, and the sums.
                "9:",
                "ldr r0, [sp, #4]",
                "str r1, [r0, #{o_done}]",
                "mov r2, r8",
                "str r2, [r0, #{o_acc}]",
                ".if {r} > 1",
                "mov r2, r9",
                "str r2, [r0, #{o_acc} + 4]",
                ".endif",
                ".if {r} > 2",
                "mov r2, r10",
                "str r2, [r0, #{o_acc} + 8]",
                ".endif",
                ".if {r} > 3",
                "mov r2, r11",
                "str r2, [r0, #{o_acc} + 12]",
                ".endif",
                ".if {r} > 4",
                "mov r2, r12",
                "str r2, [r0, #{o_acc} + 16]",
                ".endif",
                "10:",
                "add sp, #52",
                "pop {{r6, r7}}",
                r = const $r,
                lp = const $lp,
                u = const unroll($r),
                o_d0 = const offset_of!(Ctx, d0),
                o_n = const offset_of!(Ctx, n),
                o_xw = const offset_of!(Ctx, xw),
                o_bias = const offset_of!(Ctx, bias),
                o_table = const offset_of!(Ctx, table),
                o_acc = const offset_of!(Ctx, acc),
                o_rq = const offset_of!(Ctx, rq),
                o_y = const offset_of!(Ctx, y),
                o_zp2 = const offset_of!(Ctx, zp2),
                o_done = const offset_of!(Ctx, done),
                o_left = const offset_of!(Ctx, left),
                inout("r0") $cp => _,
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
            )
        }
    };
}

/// One block's `asm!` out of line, for `R` rows: the four body copies of the five-row block
/// (4 KB) lie beyond the reach of the branches the compiler would place around an inline
/// `asm!` (it cannot see its size), and a call keeps the driver's registers out of the
/// `asm!`'s clobbers.
///
/// # Safety
/// `cp` points to a live `Ctx` whose fields satisfy what the `SAFETY` comment of `block_asm!`
/// states for `r = R` (as `layer` sets them up); `1 <= R <= 5`.
#[inline(never)]
unsafe fn block<const R: usize, const LP: usize>(cp: *mut Ctx) {
    block_asm!(R, LP, cp)
}

/// The rows of a layer (row-major `weights`, `n` apart) against the prepared input, in blocks
/// of up to [`MAX_ROWS`] rows: `acc = bias[o] + Σ_i w[o][i] x[i]` (mod 2^32), then, with
/// `l.zp2`, the output stage of [`finish`](super::finish) in the `asm!` block, and `slow(acc,
/// requant[o])` for the rows it does not take (every row without `l.zp2`). Returns the number
/// of rows written: all rows that `weights`, `bias`, `requant` and `y` hold.
pub(crate) fn layer(
    inp: &Input<'_>,
    l: super::Layer<'_, '_>,
    slow: impl Fn(i32, Requant) -> i8,
) -> usize {
    let n = inp.n;
    let rows = rows_of(
        l.weights.len(),
        n,
        l.bias.len().min(l.requant.len()).min(l.y.len()),
    );
    let fused = l.zp2.is_some();
    let xw = inp.xw.as_ptr();
    let full = table(inp.xw, &inp.quads, MAX_ROWS);
    // Every pass within one run of the five-row body (`n <= 128`): the variant without loop
    // (`prepare` made every pass at least one input long).
    let short = inp.quads.iter().all(|&q| q <= unroll(MAX_ROWS));
    // D[0] = row 0 - xw - 4: `LDM` has advanced J by 4 when the row is read.
    let d_base = (l.weights.as_ptr() as usize)
        .wrapping_sub(xw as usize)
        .wrapping_sub(4);
    let mut short_table;
    let mut c = Ctx {
        d0: d_base,
        n,
        xw,
        bias: l.bias.as_ptr(),
        table: full.as_ptr(),
        acc: [0; MAX_ROWS],
        rq: l.requant.as_ptr(),
        y: core::ptr::null_mut(),
        zp2: l.zp2.unwrap_or(0),
        done: 0,
        left: 1,
        flat: [
            full[0].entry,
            full[1].entry,
            full[2].entry,
            full[3].entry,
            full[0].adj,
            full[1].adj,
            full[2].adj,
        ],
    };
    let mut i = 0;
    while i < rows {
        let r = (rows - i).min(MAX_ROWS);
        // With the output stage in the `asm!`, all whole blocks in one go (it stops early at
        // a row it does not take); else one block per call.
        let blocks = if fused && r == MAX_ROWS {
            div5(rows - i)
        } else {
            1
        };
        c.left = blocks;
        c.d0 = d_base.wrapping_add(i * n);
        if r < MAX_ROWS {
            short_table = table(inp.xw, &inp.quads, r);
            c.table = short_table.as_ptr();
        }
        c.bias = l.bias.as_ptr().wrapping_add(i);
        c.rq = l.requant.as_ptr().wrapping_add(i);
        c.y = if fused {
            l.y.as_mut_ptr().wrapping_add(i)
        } else {
            core::ptr::null_mut()
        };
        let cp: *mut Ctx = &mut c;
        // SAFETY: `c` is set up for `r` rows as `block_asm!` requires (its SAFETY comment);
        // `cp` points to it and it outlives the call.
        unsafe {
            match r {
                1 => block::<1, 1>(cp),
                2 => block::<2, 1>(cp),
                3 => block::<3, 1>(cp),
                4 => block::<4, 1>(cp),
                _ if short => block::<5, 0>(cp),
                _ => block::<5, 1>(cp),
            }
        }
        // `left` is 0 when every block was done, else the stop was in block `blocks - left`
        // after its first `done` rows.
        let stop = blocks - c.left;
        i += stop * r;
        if c.left > 0 {
            for (k, &a) in c.acc.iter().enumerate().take(r).skip(c.done) {
                if let (Some(o), Some(&rq)) = (l.y.get_mut(i + k), l.requant.get(i + k)) {
                    *o = slow(a, rq);
                }
            }
            i += r;
        }
    }
    rows
}

/// `min(weights / n, most)` (`n >= 1`) without a division when `most` rows fit (Armv6-M has no
/// divide instruction: a library division costs about 85 instructions, and a checked multiply
/// a 64-bit one).
fn rows_of(weights: usize, n: usize, most: usize) -> usize {
    // Both below 2^16: the product fits 32 bits.
    if (most | n) >> 16 == 0 && most * n <= weights {
        most
    } else {
        weights / n.max(1)
    }
}

/// `v / 5`, by a multiply for `v < 2^14` (`(v * 52429) >> 18` is exact below 43,690).
fn div5(v: usize) -> usize {
    if v < 1 << 14 {
        (v * 52429) >> 18
    } else {
        v / MAX_ROWS
    }
}

const _: () = {
    assert!(core::mem::size_of::<Pass>() == 12);
    // `LDR rt, [rn, #imm]` reaches 124 bytes.
    assert!(offset_of!(Ctx, done) <= 124);
    // `LDM r0!` reads `flat` from the start of `Ctx`.
    assert!(offset_of!(Ctx, flat) == 0);
    assert!(offset_of!(Requant, multiplier) == 0);
    assert!(offset_of!(Requant, shift) == 4);
    assert!(size_of::<Requant>() == 8);
};
