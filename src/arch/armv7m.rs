//! The multi-row int8 kernel for Armv7-M (Cortex-M3) and Armv8-M Mainline without the DSP
//! extension: up to five rows of `acc[k] + Σ_i w[k][i] x[i]` per call, in one `asm!` block, on
//! the row-major signed weights as they are stored.
//!
//! # Arithmetic
//!
//! `MLA` keeps the low 32 bits of `acc + w x`: wrapping i32 addition of exact products, as the
//! portable kernel, in another order (which wrapping addition does not see).
//!
//! # Where the instructions go (QEMU counts instructions)
//!
//! The input is widened once per layer to 32-bit words, so that one `LDM` loads four inputs
//! into registers (`r5`..`r8`). One pointer `p` walks row 0; row `k` of the same input is at
//! `p + k n`, reached by `LDRSB` with a scaled register offset from two registers `N = n` and
//! `N3 = 3n`: `[p, N]`, `[p, N, LSL #1]`, `[p, N3]`, `[p, N, LSL #2]`; row 0 is read last with
//! post-increment (`LDRSB w, [p], #1`), which advances `p` for the next input. Each MAC is then
//! `LDRSB` and `MLA`: 41 instructions per group of four inputs and five rows, 2.05 per MAC; four
//! groups per loop iteration (loop test: 3 instructions per 80 MACs), the groups left one by
//! one, the last `n % 4` inputs one by one.
//!
//! Registers: `p = r0`, `N = r1`, `N3 = r2`, `xp = r3`, `w = r4`, inputs `r5`..`r8`,
//! accumulators `r9`..`r12`, `lr` (`r6`, `r7` saved and restored by the block: `asm!` may not
//! name them); loop ends and the state pointer on the stack.

use crate::Requant;
use core::arch::asm;
use core::mem::{offset_of, size_of, MaybeUninit};

/// Rows per block (accumulators `r9`..`r12`, `lr`).
pub(crate) const MAX_ROWS: usize = 5;

/// The input of a layer, widened to words.
pub(crate) struct Input<'a> {
    xw: &'a [i32],
}

/// Widens `x` into `scratch`. `None` (use another kernel) for a layer without inputs or a
/// `scratch` shorter than `x` (uninitialized: every word read is written here).
pub(crate) fn prepare<'a>(x: &[i8], scratch: &'a mut [MaybeUninit<i32>]) -> Option<Input<'a>> {
    if x.is_empty() {
        return None;
    }
    let xw = scratch.get_mut(..x.len())?;
    for (o, &v) in xw.iter_mut().zip(x) {
        o.write(i32::from(v));
    }
    // SAFETY: each of the `x.len()` elements of `xw` was written just above;
    // `MaybeUninit<i32>` has the layout of `i32`.
    let xw: &'a [i32] = unsafe { &*(core::ptr::from_mut(xw) as *const [i32]) };
    Some(Input { xw })
}

/// The state of one block in memory; the `asm!` reads it through `r0`.
#[repr(C)]
struct Ctx {
    w: *const i8,
    n: usize,
    x: *const i32,
    bias: *const i32,
    end16: *const i8,
    end4: *const i8,
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
    let n = inp.xw.len();
    let rows = (l.weights.len().checked_div(n).unwrap_or(0))
        .min(l.bias.len())
        .min(l.requant.len())
        .min(l.y.len());
    let fused = l.zp2.is_some();
    macro_rules! block_asm {
        ($r:literal, $cp:ident) => {
            // SAFETY: reads `r` biases at `bias` (block `i..i + r` of `bias`, inside it as
            // `i + r <= rows`), the `n` words of the widened input at `x` (`xp` walks them once:
            // `LDM` of four per group, then one `LDR` per input left; `LDM` needs the 4-aligned
            // words it gets), and the weights `p + k n` for `k < r` while `p` walks row 0 of the
            // block from `w` to `w + n` (the offsets `N`, `2N`, `3N`, `4N` are `k n` for k = 1..4;
            // rows `i..i + r` are inside `weights` as `(i + r) n <= weights.len()`). Each loop
            // stops when `p` reaches its end exactly (`p` steps by 16, 4, then 1; the ends are
            // `w + n` rounded down to multiples of 16 and 4). It writes `c.done` and (for the
            // rows left to the caller) `c.acc` through `cp` (a live local) and, when `y` is not
            // null, reads `r` `Requant`s at `rq` and writes `r` bytes at `y` (rows `i..i + r` of
            // `requant` and `y`; layout asserted below), nothing else. r6/r7 (base and frame
            // pointer, not nameable) are pushed and popped with the four stack words; sp is
            // restored. Every instruction is Armv7-M (no DSP).
            unsafe {
                asm!(
                    "push {{r6, r7}}",
                    "sub sp, #16",
                    "str r0, [sp, #12]",
                    "ldr r1, [r0, #{o_end16}]",
                    "str r1, [sp, #0]",
                    "ldr r1, [r0, #{o_end4}]",
                    "str r1, [sp, #4]",
                    "ldr r1, [r0, #{o_end}]",
                    "str r1, [sp, #8]",
                    "ldr r4, [r0, #{o_bias}]",
                    "ldr r9, [r4, #0]",
                    ".if {r} > 1",
                    "ldr r10, [r4, #4]",
                    ".endif",
                    ".if {r} > 2",
                    "ldr r11, [r4, #8]",
                    ".endif",
                    ".if {r} > 3",
                    "ldr r12, [r4, #12]",
                    ".endif",
                    ".if {r} > 4",
                    "ldr lr, [r4, #16]",
                    ".endif",
                    "ldr r1, [r0, #{o_n}]",
                    "ldr r3, [r0, #{o_x}]",
                    "ldr r0, [r0, #{o_w}]",
                    "add r2, r1, r1, lsl #1",
                    // Four groups of four inputs per iteration.
                    "ldr r4, [sp, #0]",
                    "cmp r0, r4",
                    "beq 3f",
                    "2:",
                    ".rept 4",
                    "ldm r3!, {{r5, r6, r7, r8}}",
                    ".irp xr, r5, r6, r7, r8",
                    ".if {r} > 1",
                    "ldrsb r4, [r0, r1]",
                    "mla r10, r4, \\xr, r10",
                    ".endif",
                    ".if {r} > 2",
                    "ldrsb r4, [r0, r1, lsl #1]",
                    "mla r11, r4, \\xr, r11",
                    ".endif",
                    ".if {r} > 3",
                    "ldrsb r4, [r0, r2]",
                    "mla r12, r4, \\xr, r12",
                    ".endif",
                    ".if {r} > 4",
                    "ldrsb r4, [r0, r1, lsl #2]",
                    "mla lr, r4, \\xr, lr",
                    ".endif",
                    "ldrsb r4, [r0], #1",
                    "mla r9, r4, \\xr, r9",
                    ".endr",
                    ".endr",
                    "ldr r4, [sp, #0]",
                    "cmp r0, r4",
                    "bne 2b",
                    // The groups left, one at a time.
                    "3:",
                    "ldr r4, [sp, #4]",
                    "cmp r0, r4",
                    "beq 5f",
                    "4:",
                    "ldm r3!, {{r5, r6, r7, r8}}",
                    ".irp xr, r5, r6, r7, r8",
                    ".if {r} > 1",
                    "ldrsb r4, [r0, r1]",
                    "mla r10, r4, \\xr, r10",
                    ".endif",
                    ".if {r} > 2",
                    "ldrsb r4, [r0, r1, lsl #1]",
                    "mla r11, r4, \\xr, r11",
                    ".endif",
                    ".if {r} > 3",
                    "ldrsb r4, [r0, r2]",
                    "mla r12, r4, \\xr, r12",
                    ".endif",
                    ".if {r} > 4",
                    "ldrsb r4, [r0, r1, lsl #2]",
                    "mla lr, r4, \\xr, lr",
                    ".endif",
                    "ldrsb r4, [r0], #1",
                    "mla r9, r4, \\xr, r9",
                    ".endr",
                    "ldr r4, [sp, #4]",
                    "cmp r0, r4",
                    "bne 4b",
                    // The last `n % 4` inputs.
                    "5:",
                    "ldr r4, [sp, #8]",
                    "cmp r0, r4",
                    "beq 7f",
                    "6:",
                    "ldr r5, [r3], #4",
                    ".if {r} > 1",
                    "ldrsb r4, [r0, r1]",
                    "mla r10, r4, r5, r10",
                    ".endif",
                    ".if {r} > 2",
                    "ldrsb r4, [r0, r1, lsl #1]",
                    "mla r11, r4, r5, r11",
                    ".endif",
                    ".if {r} > 3",
                    "ldrsb r4, [r0, r2]",
                    "mla r12, r4, r5, r12",
                    ".endif",
                    ".if {r} > 4",
                    "ldrsb r4, [r0, r1, lsl #2]",
                    "mla lr, r4, r5, lr",
                    ".endif",
                    "ldrsb r4, [r0], #1",
                    "mla r9, r4, r5, r9",
                    "ldr r4, [sp, #8]",
                    "cmp r0, r4",
                    "bne 6b",
                    "7:",
                    "ldr r0, [sp, #12]",
                    // The output stage (if `y` is set): `finish` (super) for each row, as the
                    // DSP kernel's (`SMLAL`, `SSAT` are Armv7-M). The sums are stored only for the rows it
                    // leaves to the caller.
                    "ldr r1, [r0, #{o_y}]",
                    "movs r4, #0",
                    "cmp r1, #0",
                    "beq 9f",
                    "ldr r2, [r0, #{o_rq}]",
                    "ldr r3, [r0, #{o_zp2}]",
                    ".set tvkk, 0",
                    ".irp acc, r9, r10, r11, r12, lr",
                    ".if tvkk < {r}",
                    "ldrd r4, r5, [r2, #(8 * tvkk)]",
                    "add r5, r5, #31",
                    "cmp r5, #29",
                    "bls 8f",
                    "movs r4, #tvkk",
                    "b 9f",
                    "8:",
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
                    "ldr r0, [sp, #12]",
                    "str r4, [r0, #{o_done}]",
                    "b 10f",
                    // Not fused, or a row the stage does not take: `done` rows, and the sums.
                    "9:",
                    "ldr r0, [sp, #12]",
                    "str r4, [r0, #{o_done}]",
                    "str r9, [r0, #{o_acc}]",
                    "str r10, [r0, #{o_acc} + 4]",
                    "str r11, [r0, #{o_acc} + 8]",
                    "str r12, [r0, #{o_acc} + 12]",
                    "str lr, [r0, #{o_acc} + 16]",
                    "10:",
                    "add sp, #16",
                    "pop {{r6, r7}}",
                    r = const $r,
                    o_w = const offset_of!(Ctx, w),
                    o_n = const offset_of!(Ctx, n),
                    o_x = const offset_of!(Ctx, x),
                    o_bias = const offset_of!(Ctx, bias),
                    o_end16 = const offset_of!(Ctx, end16),
                    o_end4 = const offset_of!(Ctx, end4),
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
        x: inp.xw.as_ptr(),
        bias: l.bias.as_ptr(),
        end16: core::ptr::null(),
        end4: core::ptr::null(),
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
        c.end16 = c.w.wrapping_add(n & !15);
        c.end4 = c.w.wrapping_add(n & !3);
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
            _ => block_asm!(5, cp),
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
