//! The packed int8 kernel for Armv7-M (Cortex-M3) and Armv8-M Mainline without the DSP
//! extension: two MACs per `SMLAL`, on the row-major signed weights as they are stored, two
//! rows per pass, the whole layer in one `asm!` block. The arithmetic, the prepared input and
//! its bounds are in `packed.rs`.
//!
//! # Where the instructions go (QEMU counts instructions)
//!
//! Per group of four inputs: one `LDM` loads `V1`, `V2` and the key `K` (shared by the two
//! rows), then per row `LDR` of the four weights (row 1 at `[p, N]`, row 0 with
//! post-increment), `EOR` with `K`, `AND` with the mask, `SMLAL`, `AND` with the mask of the
//! word rotated by 16, `SMLAL`: 13 instructions per 8 MACs (1.625), four groups per loop
//! iteration (loop test: 3 instructions per 32 MACs), the groups left one by one. Per row and
//! chunk of at most 256 inputs: the start value (`LDRD`), 4 instructions to extract the chunk's
//! sum and add it to the bias (or the running sum); then the output stage of
//! [`finish`](super::finish) in 14 instructions (`SMLAL`, `SSAT`).
//!
//! Registers: `p = r0`, `N = r1`, `xp = r2`, mask `r3`, `V1, V2, K = r4, r5, r6`, weights `r7`,
//! lane `r8`, accumulators `r9:r10` (row 0) and `r11:r12` (row 1), the chunk's end in `lr`
//! (`r6`, `r7` saved and restored by the block: `asm!` may not name them); the layer's state in
//! [`Ctx`], the block's on the stack.

use super::packed::{Packed, CHUNK};
use crate::Requant;
use core::arch::asm;
use core::mem::{offset_of, size_of, MaybeUninit};

/// The prepared input of a layer (`packed.rs`).
pub(crate) type Input<'a> = Packed<'a>;

/// Packs `x` into `scratch` (`packed.rs`); `None` (use another kernel) for fewer than 8 inputs
/// or a `scratch` shorter than `x`.
pub(crate) fn prepare<'a>(x: &[i8], scratch: &'a mut [MaybeUninit<i32>]) -> Option<Input<'a>> {
    super::packed::prepare(x, scratch)
}

/// The state of the layer in memory; the `asm!` reads it through `r0` and advances `w`, `bias`,
/// `rq` and `y` block by block.
#[repr(C)]
struct Ctx {
    w: *const i8,
    n: usize,
    v: *const u32,
    init: *const u32,
    gbytes: usize,
    bias: *const i32,
    rq: *const Requant,
    y: *mut i8,
    zp2: i32,
    blocks: usize,
    done_blocks: usize,
    done: usize,
    acc: [i32; 2],
}

/// The rows of a layer (row-major `weights`, `n` apart) against the prepared input:
/// `acc = bias[o] + Σ_i w[o][i] x[i]` (mod 2^32), then, with `l.zp2` and `n % 4 == 0`, the
/// output stage of [`finish`](super::finish) in the `asm!` block, and `slow(acc, requant[o])`
/// for the rows it does not take (every row otherwise; the last `n % 4` inputs are added here).
/// Returns the number of rows written: all rows that `weights`, `bias`, `requant` and `y` hold.
pub(crate) fn layer(
    inp: &Input<'_>,
    l: super::Layer<'_, '_>,
    slow: impl Fn(i32, Requant) -> i8,
) -> usize {
    let n = inp.n;
    let rows = (l.weights.len().checked_div(n).unwrap_or(0))
        .min(l.bias.len())
        .min(l.requant.len())
        .min(l.y.len());
    let g4 = n - inp.tail.len();
    let fused = l.zp2.is_some() && inp.tail.is_empty();
    macro_rules! group {
        () => {
            concat!(
                "ldm r2!, {{r4, r5, r6}}\n",
                ".if {r} > 1\n",
                "ldr r7, [r0, r1]\n",
                "eor r7, r7, r6\n",
                "and r8, r7, r3\n",
                "smlal r11, r12, r8, r4\n",
                "and r7, r3, r7, ror #16\n",
                "smlal r11, r12, r7, r5\n",
                ".endif\n",
                "ldr r7, [r0], #4\n",
                "eor r7, r7, r6\n",
                "and r8, r7, r3\n",
                "smlal r9, r10, r8, r4\n",
                "and r7, r3, r7, ror #16\n",
                "smlal r9, r10, r7, r5\n",
            )
        };
    }
    macro_rules! layer_asm {
        ($r:literal, $cp:ident) => {
            // SAFETY: for each of `c.blocks` blocks of `r` rows (rows `i..i + r b` of the layer,
            // inside it: the caller sets `blocks <= (rows - i) / r`), reads the words of row 0 of
            // the block from `w` to `w + 4g` (`p` steps by 4 and stops at the chunk's end, which
            // is at most the row's end `w + gbytes`) and of row 1 at `p + n` (inside the weights:
            // `(i + r b) n <= weights.len()`); unaligned `LDR` is allowed on Armv7-M. Reads the
            // packed input from `v` (3 words per group, `gbytes / 4` groups, `LDM` of aligned
            // words) and one (low, high) pair per chunk from `init`: `prepare` wrote
            // `3 g + 2 ceil(g / CHUNK)` words there. Reads `r` biases at `bias`, and when `y` is
            // not null `r` `Requant`s at `rq` and writes `r` bytes at `y`, per block (the same
            // rows); writes `c` through `cp` (a live local): `w`, `bias`, `rq`, `y` (advanced),
            // `done_blocks`, `done`, `acc`. Nothing else but its own 40 bytes of stack (r6/r7,
            // not nameable, pushed and popped; sp restored). Every instruction is Armv7-M
            // without DSP.
            unsafe {
                asm!(
                    "push {{r6, r7}}",
                    "sub sp, #32",
                    "str r0, [sp, #0]",
                    "ldr r1, [r0, #{o_blocks}]",
                    "str r1, [sp, #28]",
                    // Block: sums start at the biases, the input at its start.
                    "20:",
                    "ldr r0, [sp, #0]",
                    "ldr r1, [r0, #{o_bias}]",
                    "str r1, [sp, #16]",
                    "ldr r1, [r0, #{o_init}]",
                    "str r1, [sp, #12]",
                    "ldr r2, [r0, #{o_v}]",
                    "ldr r1, [r0, #{o_gbytes}]",
                    "ldr r0, [r0, #{o_w}]",
                    "add r1, r0, r1",
                    "str r1, [sp, #8]",
                    "mov r3, #0xFF",
                    "orr r3, r3, #0xFF000000",
                    // Chunk: its end in lr, the end of its whole iterations on the stack.
                    "21:",
                    "ldr r7, [sp, #8]",
                    "add lr, r0, #{chunk_bytes}",
                    "cmp lr, r7",
                    "it hi",
                    "movhi lr, r7",
                    "sub r7, lr, r0",
                    "bic r7, r7, #15",
                    "add r7, r0, r7",
                    "str r7, [sp, #4]",
                    "ldr r7, [sp, #12]",
                    "ldrd r9, r10, [r7], #8",
                    "str r7, [sp, #12]",
                    ".if {r} > 1",
                    "mov r11, r9",
                    "mov r12, r10",
                    ".endif",
                    "ldr r1, [sp, #0]",
                    "ldr r1, [r1, #{o_n}]",
                    "ldr r7, [sp, #4]",
                    "cmp r0, r7",
                    "beq 23f",
                    "22:",
                    group!(),
                    group!(),
                    group!(),
                    group!(),
                    "ldr r7, [sp, #4]",
                    "cmp r0, r7",
                    "bne 22b",
                    "23:",
                    "cmp r0, lr",
                    "beq 25f",
                    "24:",
                    group!(),
                    "cmp r0, lr",
                    "bne 24b",
                    // The chunk's sums: bits 16..48 of the accumulator, >> 8.
                    "25:",
                    "ldr r6, [sp, #16]",
                    "lsl r7, r10, #16",
                    "orr r7, r7, r9, lsr #16",
                    "ldr r8, [r6, #0]",
                    "add r9, r8, r7, asr #8",
                    ".if {r} > 1",
                    "lsl r7, r12, #16",
                    "orr r7, r7, r11, lsr #16",
                    "ldr r8, [r6, #4]",
                    "add r11, r8, r7, asr #8",
                    ".endif",
                    "ldr r7, [sp, #8]",
                    "cmp r0, r7",
                    "beq 26f",
                    "str r9, [sp, #20]",
                    ".if {r} > 1",
                    "str r11, [sp, #24]",
                    ".endif",
                    "add r6, sp, #20",
                    "str r6, [sp, #16]",
                    "b 21b",
                    // The output stage (if `y` is set): `finish` (super) for each row.
                    "26:",
                    "ldr r0, [sp, #0]",
                    "ldr r1, [r0, #{o_y}]",
                    "movs r4, #0",
                    "cmp r1, #0",
                    "beq 29f",
                    "ldr r2, [r0, #{o_rq}]",
                    "ldr r3, [r0, #{o_zp2}]",
                    "ldrd r4, r5, [r2, #0]",
                    "add r5, r5, #31",
                    "cmp r5, #29",
                    "bls 27f",
                    "movs r4, #0",
                    "b 29f",
                    "27:",
                    "rsb r5, r5, #29",
                    "mov r6, #0x40000000",
                    "mov r7, #0",
                    "smlal r6, r7, r9, r4",
                    "bic r6, r7, r6",
                    "sub r7, r7, r6, lsr #31",
                    "asr r7, r7, r5",
                    "add r7, r7, r3",
                    "ssat r7, #8, r7, asr #1",
                    "strb r7, [r1, #0]",
                    ".if {r} > 1",
                    "ldrd r4, r5, [r2, #8]",
                    "add r5, r5, #31",
                    "cmp r5, #29",
                    "bls 28f",
                    "movs r4, #1",
                    "b 29f",
                    "28:",
                    "rsb r5, r5, #29",
                    "mov r6, #0x40000000",
                    "mov r7, #0",
                    "smlal r6, r7, r11, r4",
                    "bic r6, r7, r6",
                    "sub r7, r7, r6, lsr #31",
                    "asr r7, r7, r5",
                    "add r7, r7, r3",
                    "ssat r7, #8, r7, asr #1",
                    "strb r7, [r1, #1]",
                    ".endif",
                    // The next block.
                    "ldr r4, [r0, #{o_done_blocks}]",
                    "add r4, r4, #1",
                    "str r4, [r0, #{o_done_blocks}]",
                    "ldr r4, [r0, #{o_n}]",
                    "ldr r5, [r0, #{o_w}]",
                    "add r5, r5, r4, lsl #({r} - 1)",
                    "str r5, [r0, #{o_w}]",
                    "add r1, r1, #{r}",
                    "str r1, [r0, #{o_y}]",
                    "add r2, r2, #(8 * {r})",
                    "str r2, [r0, #{o_rq}]",
                    "ldr r4, [r0, #{o_bias}]",
                    "add r4, r4, #(4 * {r})",
                    "str r4, [r0, #{o_bias}]",
                    "ldr r4, [sp, #28]",
                    "subs r4, r4, #1",
                    "str r4, [sp, #28]",
                    "bne 20b",
                    "b 30f",
                    // Stopped (not fused, or a row outside the stage): `done` rows, the sums.
                    "29:",
                    "ldr r0, [sp, #0]",
                    "str r4, [r0, #{o_done}]",
                    "str r9, [r0, #{o_acc}]",
                    "str r11, [r0, #{o_acc} + 4]",
                    "30:",
                    "add sp, #32",
                    "pop {{r6, r7}}",
                    r = const $r,
                    chunk_bytes = const 4 * CHUNK,
                    o_w = const offset_of!(Ctx, w),
                    o_n = const offset_of!(Ctx, n),
                    o_v = const offset_of!(Ctx, v),
                    o_init = const offset_of!(Ctx, init),
                    o_gbytes = const offset_of!(Ctx, gbytes),
                    o_bias = const offset_of!(Ctx, bias),
                    o_rq = const offset_of!(Ctx, rq),
                    o_y = const offset_of!(Ctx, y),
                    o_zp2 = const offset_of!(Ctx, zp2),
                    o_blocks = const offset_of!(Ctx, blocks),
                    o_done_blocks = const offset_of!(Ctx, done_blocks),
                    o_done = const offset_of!(Ctx, done),
                    o_acc = const offset_of!(Ctx, acc),
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
    let mut c = Ctx {
        w: l.weights.as_ptr(),
        n,
        v: inp.v.as_ptr(),
        init: inp.init.as_ptr(),
        gbytes: g4,
        bias: l.bias.as_ptr(),
        rq: l.requant.as_ptr(),
        y: core::ptr::null_mut(),
        zp2: l.zp2.unwrap_or(0),
        blocks: 0,
        done_blocks: 0,
        done: 0,
        acc: [0; 2],
    };
    let mut i = 0;
    while i < rows {
        let r = if rows - i >= 2 { 2 } else { 1 };
        c.blocks = if fused { (rows - i) / r } else { 1 };
        c.w = l.weights.as_ptr().wrapping_add(i * n);
        c.bias = l.bias.as_ptr().wrapping_add(i);
        c.rq = l.requant.as_ptr().wrapping_add(i);
        c.y = if fused {
            l.y.as_mut_ptr().wrapping_add(i)
        } else {
            core::ptr::null_mut()
        };
        c.done_blocks = 0;
        c.done = 0;
        let cp: *mut Ctx = &mut c;
        if r == 2 {
            layer_asm!(2, cp);
        } else {
            layer_asm!(1, cp);
        }
        i += r * c.done_blocks;
        if c.done_blocks < c.blocks {
            // The block at `i` stopped after `done` rows: the others here.
            for (k, &a) in c.acc.iter().enumerate().take(r).skip(c.done) {
                let row = l.weights.get((i + k) * n + g4..(i + k + 1) * n);
                let t = row.unwrap_or_default().iter().zip(inp.tail);
                let acc = t.fold(a, |s, (&w, &x)| s.wrapping_add(i32::from(w) * x));
                if let (Some(o), Some(&rq)) = (l.y.get_mut(i + k), l.requant.get(i + k)) {
                    *o = slow(acc, rq);
                }
            }
            i += r;
        }
    }
    rows
}

const _: () = {
    assert!(offset_of!(Requant, multiplier) == 0);
    assert!(offset_of!(Requant, shift) == 4);
    assert!(size_of::<Requant>() == 8);
};
