//! The multi-row int8 kernel for Armv7-M (Cortex-M3) and Armv8-M Mainline without the DSP
//! extension: up to seven rows of `acc[k] + Σ_i w[k][i] x[i]` per call, in one `asm!` block, on
//! the row-major signed weights as they are stored.
//!
//! # Arithmetic
//!
//! `MLA` keeps the low 32 bits of `acc + w x`: wrapping i32 addition of exact products, as the
//! portable kernel, in another order (which wrapping addition does not see).
//!
//! # Where the instructions go (QEMU counts instructions)
//!
//! One pointer `p` walks row 0; row `k` of the same input is at `p + k n`, reached by `LDRSB`
//! with a scaled register offset from three registers `N = n`, `N3 = 3n`, `N5 = 5n`:
//! `[p, N]`, `[p, N, LSL #1]`, `[p, N3]`, `[p, N, LSL #2]`, `[p, N5]`, `[p, N3, LSL #1]`; row 0
//! is read last with post-increment (`LDRSB w, [p], #1`), which advances `p` for the next input.
//! The input is read the same way (`LDRSB x, [xp], #1`), once for all rows. Each row then costs
//! `LDRSB` and `MLA`: 15 instructions per input for seven rows, 2.14 per MAC. The body is
//! unrolled 8 times (loop test: 3 instructions per 8 inputs), the last `n % 8` inputs one by one.
//!
//! Registers: `p = r0`, `N = r1`, `N3 = r2`, `N5 = r3`, `x = r4`, `w = r5`, `xp = r6`,
//! accumulators `r7`, `r8`..`r12`, `lr` (`r6`, `r7` saved and restored by the block: `asm!`
//! may not name them); loop ends and the state pointer on the stack.

use crate::Requant;
use core::arch::asm;
use core::mem::{offset_of, size_of};

/// Rows per block (accumulators `r7`..`r12`, `lr`).
pub(crate) const MAX_ROWS: usize = 7;

/// 32-bit words of scratch per input: none (the input is read as it is).
pub(crate) const SCRATCH_PER_INPUT: usize = 0;

/// The input of a layer, read as it is.
pub(crate) struct Input<'a> {
    x: &'a [i8],
}

/// The input as the kernel reads it. `None` (use another kernel) for a layer without inputs.
pub(crate) fn prepare<'a>(
    x: &'a [i8],
    _scratch: &'a mut [core::mem::MaybeUninit<i32>],
) -> Option<Input<'a>> {
    (!x.is_empty()).then_some(Input { x })
}

/// The state of one block in memory; the `asm!` reads it through `r0`.
#[repr(C)]
struct Ctx {
    w: *const i8,
    n: usize,
    x: *const i8,
    bias: *const i32,
    end8: *const i8,
    end: *const i8,
    acc: [i32; MAX_ROWS],
    rq: *const Requant,
    y: *mut i8,
    zp2: i32,
    done: usize,
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
    let n = inp.x.len();
    let rows = (l.weights.len() / n)
        .min(l.bias.len())
        .min(l.requant.len())
        .min(l.y.len());
    let fused = l.zp2.is_some();
    macro_rules! block_asm {
        ($r:literal, $cp:ident) => {
            // SAFETY: reads `r` biases (checked above), the `n` input bytes at `x` (`xp` walks
            // them once, by post-increment), and the weights `p + k n` for `k < r` while `p`
            // walks row 0 from `block` to `block + n`: all inside `block` (`r n` bytes, checked
            // above; the offsets `N`, `2N`, `3N`, `4N`, `5N`, `6N` are `k n` for k = 1..6). Both
            // loops stop when `p` reaches their end exactly (`p` steps by 8, then by 1). It
            // writes `r` words of `c.acc` and `c.done` through `cp` (a live local) and, when `y`
            // is not null, reads `r` `Requant`s at `rq` and writes `r` bytes at `y` (both checked
            // above to hold `r`; layout asserted below), nothing else. r6/r7
            // (base and frame pointer, not nameable) are pushed and popped with the three
            // stack words; sp is restored. Every instruction is Armv7-M (no DSP).
            unsafe {
                asm!(
                    "push {{r6, r7}}",
                    "sub sp, #12",
                    "str r0, [sp, #8]",
                    "ldr r1, [r0, #{o_end8}]",
                    "str r1, [sp, #0]",
                    "ldr r1, [r0, #{o_end}]",
                    "str r1, [sp, #4]",
                    "ldr r5, [r0, #{o_bias}]",
                    "ldr r7, [r5, #0]",
                    ".if {r} > 1",
                    "ldr r8, [r5, #4]",
                    ".endif",
                    ".if {r} > 2",
                    "ldr r9, [r5, #8]",
                    ".endif",
                    ".if {r} > 3",
                    "ldr r10, [r5, #12]",
                    ".endif",
                    ".if {r} > 4",
                    "ldr r11, [r5, #16]",
                    ".endif",
                    ".if {r} > 5",
                    "ldr r12, [r5, #20]",
                    ".endif",
                    ".if {r} > 6",
                    "ldr lr, [r5, #24]",
                    ".endif",
                    "ldr r1, [r0, #{o_n}]",
                    "ldr r6, [r0, #{o_x}]",
                    "ldr r0, [r0, #{o_w}]",
                    "add r2, r1, r1, lsl #1",
                    "add r3, r1, r1, lsl #2",
                    "ldr r5, [sp, #0]",
                    "cmp r0, r5",
                    "beq 3f",
                    "2:",
                    ".rept 8",
                    "ldrsb r4, [r6], #1",
                    ".if {r} > 1",
                    "ldrsb r5, [r0, r1]",
                    "mla r8, r5, r4, r8",
                    ".endif",
                    ".if {r} > 2",
                    "ldrsb r5, [r0, r1, lsl #1]",
                    "mla r9, r5, r4, r9",
                    ".endif",
                    ".if {r} > 3",
                    "ldrsb r5, [r0, r2]",
                    "mla r10, r5, r4, r10",
                    ".endif",
                    ".if {r} > 4",
                    "ldrsb r5, [r0, r1, lsl #2]",
                    "mla r11, r5, r4, r11",
                    ".endif",
                    ".if {r} > 5",
                    "ldrsb r5, [r0, r3]",
                    "mla r12, r5, r4, r12",
                    ".endif",
                    ".if {r} > 6",
                    "ldrsb r5, [r0, r2, lsl #1]",
                    "mla lr, r5, r4, lr",
                    ".endif",
                    "ldrsb r5, [r0], #1",
                    "mla r7, r5, r4, r7",
                    ".endr",
                    "ldr r5, [sp, #0]",
                    "cmp r0, r5",
                    "bne 2b",
                    "3:",
                    "ldr r5, [sp, #4]",
                    "cmp r0, r5",
                    "beq 5f",
                    "4:",
                    "ldrsb r4, [r6], #1",
                    ".if {r} > 1",
                    "ldrsb r5, [r0, r1]",
                    "mla r8, r5, r4, r8",
                    ".endif",
                    ".if {r} > 2",
                    "ldrsb r5, [r0, r1, lsl #1]",
                    "mla r9, r5, r4, r9",
                    ".endif",
                    ".if {r} > 3",
                    "ldrsb r5, [r0, r2]",
                    "mla r10, r5, r4, r10",
                    ".endif",
                    ".if {r} > 4",
                    "ldrsb r5, [r0, r1, lsl #2]",
                    "mla r11, r5, r4, r11",
                    ".endif",
                    ".if {r} > 5",
                    "ldrsb r5, [r0, r3]",
                    "mla r12, r5, r4, r12",
                    ".endif",
                    ".if {r} > 6",
                    "ldrsb r5, [r0, r2, lsl #1]",
                    "mla lr, r5, r4, lr",
                    ".endif",
                    "ldrsb r5, [r0], #1",
                    "mla r7, r5, r4, r7",
                    "ldr r5, [sp, #4]",
                    "cmp r0, r5",
                    "bne 4b",
                    "5:",
                    "ldr r0, [sp, #8]",
                    // The output stage (if `y` is set): `finish` (super) for each row, as the
                    // DSP kernel's (`SMLAL`, `SSAT` are Armv7-M).
                    "ldr r1, [r0, #{o_y}]",
                    "movs r4, #0",
                    "cmp r1, #0",
                    "beq 9f",
                    "ldr r2, [r0, #{o_rq}]",
                    "ldr r3, [r0, #{o_zp2}]",
                    ".set tvkk, 0",
                    ".irp acc, r7, r8, r9, r10, r11, r12, lr",
                    ".if tvkk < {r}",
                    "ldrd r4, r5, [r2, #(8 * tvkk)]",
                    "add r5, r5, #31",
                    "cmp r5, #29",
                    "bls 6f",
                    "movs r4, #tvkk",
                    "b 9f",
                    "6:",
                    "rsb r5, r5, #29",
                    "mov r6, #0x40000000",
                    "mov r0, #0",
                    "smlal r6, r0, \\acc, r4",
                    "bic r6, r0, r6",
                    "sub r0, r0, r6, lsr #31",
                    "asr r0, r0, r5",
                    "add r0, r0, r3",
                    "ssat r0, #8, r0, asr #1",
                    "strb r0, [r1, #tvkk]",
                    ".endif",
                    ".set tvkk, tvkk + 1",
                    ".endr",
                    "movs r4, #{r}",
                    "ldr r0, [sp, #8]",
                    "str r4, [r0, #{o_done}]",
                    "b 10f",
                    // Not fused, or a row the stage does not take: `done` rows, and the sums.
                    "9:",
                    "ldr r0, [sp, #8]",
                    "str r4, [r0, #{o_done}]",
                    "str r7, [r0, #{o_acc}]",
                    ".if {r} > 1",
                    "str r8, [r0, #{o_acc} + 4]",
                    ".endif",
                    ".if {r} > 2",
                    "str r9, [r0, #{o_acc} + 8]",
                    ".endif",
                    ".if {r} > 3",
                    "str r10, [r0, #{o_acc} + 12]",
                    ".endif",
                    ".if {r} > 4",
                    "str r11, [r0, #{o_acc} + 16]",
                    ".endif",
                    ".if {r} > 5",
                    "str r12, [r0, #{o_acc} + 20]",
                    ".endif",
                    ".if {r} > 6",
                    "str lr, [r0, #{o_acc} + 24]",
                    ".endif",
                    "10:",
                    "add sp, #12",
                    "pop {{r6, r7}}",
                    r = const $r,
                    o_w = const offset_of!(Ctx, w),
                    o_n = const offset_of!(Ctx, n),
                    o_x = const offset_of!(Ctx, x),
                    o_bias = const offset_of!(Ctx, bias),
                    o_end8 = const offset_of!(Ctx, end8),
                    o_end = const offset_of!(Ctx, end),
                    o_acc = const offset_of!(Ctx, acc),
                    o_rq = const offset_of!(Ctx, rq),
                    o_y = const offset_of!(Ctx, y),
                    o_zp2 = const offset_of!(Ctx, zp2),
                    o_done = const offset_of!(Ctx, done),
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
        x: inp.x.as_ptr(),
        bias: l.bias.as_ptr(),
        end8: core::ptr::null(),
        end: core::ptr::null(),
        acc: [0; MAX_ROWS],
        rq: l.requant.as_ptr(),
        y: core::ptr::null_mut(),
        zp2: l.zp2.unwrap_or(0),
        done: 0,
    };
    let mut i = 0;
    while i < rows {
        let r = (rows - i).min(MAX_ROWS);
        c.w = l.weights.as_ptr().wrapping_add(i * n);
        c.end8 = c.w.wrapping_add(n & !7);
        c.end = c.w.wrapping_add(n);
        c.bias = l.bias.as_ptr().wrapping_add(i);
        c.rq = l.requant.as_ptr().wrapping_add(i);
        c.y = if fused {
            l.y.as_mut_ptr().wrapping_add(i)
        } else {
            core::ptr::null_mut()
        };
        let cp: *mut Ctx = &mut c;
        match r {
            1 => block_asm!(1, cp),
            2 => block_asm!(2, cp),
            3 => block_asm!(3, cp),
            4 => block_asm!(4, cp),
            5 => block_asm!(5, cp),
            6 => block_asm!(6, cp),
            _ => block_asm!(7, cp),
        }
        for (k, &a) in c.acc.iter().enumerate().take(r).skip(c.done) {
            if let (Some(o), Some(&rq)) = (l.y.get_mut(i + k), l.requant.get(i + k)) {
                *o = slow(a, rq);
            }
        }
        i += r;
    }
    rows
}

const _: () = {
    assert!(offset_of!(Requant, multiplier) == 0);
    assert!(offset_of!(Requant, shift) == 4);
    assert!(size_of::<Requant>() == 8);
};
