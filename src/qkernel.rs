//! The implementations of the int8 dense kernel behind [`QDense`] and [`QDenseView`]: the
//! [`QKernel`] selection, the shared output stage and requantization, and the portable,
//! multirow and DSP kernels (the per-core `asm!` they call lives in `arch`). The arithmetic
//! they all compute, bit for bit, is in the `qdense` module doc.
//!
//! # Implementations ([`QKernel`]): the same bits, different instruction counts
//!
//! Wrapping i32 addition is associative and commutative, so the order of the MACs does not
//! change `acc`; the requantization has one exact formula for all of them (below).
//! `tests/kernels.rs` compares the four bit for bit on random layers (every shift, saturation,
//! wrapping sums, unvalidated constants); on each core the firmware's benchmark first runs all
//! four on 400 random layers (`firmware/qemu/src/kernels.rs`: odd widths, 1..=24 rows, every
//! activation, tables) and fails on any difference, and its checksums and the parity run
//! compare the cores.
//!
//! - [`QKernel::Reference`]: the formula as written, one row at a time, with [`requantize`].
//! - [`QKernel::Portable`] (host; the reference of the `asm!` kernels): four rows per pass (one
//!   on Armv6-M, which has only eight low registers), each input loaded once per pass; inlined
//!   into each typed layer so the compiler specializes it for the constant `IN`.
//! - [`QKernel::Multirow`] (M0/M0+/M1/M23 and M3; see `arch/armv6m.rs`, `arch/armv7m*.rs`): one
//!   `asm!` block per block of up to five rows, on the stored weights, with the input widened
//!   once per layer to 32-bit words (`4 * IN` bytes of stack). Armv6-M: the words in pass order
//!   (inputs `i ≡ q mod 4` together), so that `LDM` loads an input and advances the index, and
//!   each row is `LDRSB` (register offset), `MULS`, `ADD` to a high-register accumulator: 16
//!   instructions per 5 MACs (3.2), plus about 20 per pass (four per block) and the block
//!   loop, which runs in the `asm!` too. Armv7-M, layers of fewer than 100 inputs: `LDM` of
//!   four inputs into registers, rows from one pointer with scaled register offsets (`[p, N,
//!   LSL #1]`, ...), `LDRSB` and `MLA` per MAC: 41 instructions per 20 MACs (2.05). Armv7-M,
//!   100 inputs and more (`arch/armv7m_packed.rs`, `arch/packed.rs`): two MACs per `SMLAL` on
//!   the same stored weights (a word of four weights, `EOR` with a per-group key, masked into
//!   two lanes 24 bits apart, against the input packed once per layer), two rows per pass: 13
//!   instructions per 8 MACs (1.625) plus about 34 per row (chunks of 256 inputs, two-row
//!   blocks), which is why narrower layers keep the other kernel, unless the narrow packed
//!   kernel takes them (`arch/armv7m_narrow.rs`: 8..=128 inputs in whole groups of four with
//!   `finish`'s output stage; the same arithmetic with the groups unrolled and entered by one
//!   jump per pass, about 21.5 per row including the output stage, and the input packed by an
//!   `asm!` loop, 21 per group of four). Where the output stage is
//!   `finish`'s (clamp
//!   `[-128, 127]`, no table, the exporters' layers except ReLU6 and tables), it runs in the
//!   same `asm!` block: 14 instructions per row on Armv7-M (`SMLAL`, `SSAT`), 41 on Armv6-M (the
//!   64-bit product from four 16 x 16 `MULS`). Code: 7.3 KB of flash on Armv6-M, 7.2 KB on
//!   Armv7-M for the `LDRSB`/`MLA` kernel (variants for 1..=5 rows with unrolled bodies) plus
//!   the packed kernels' (the narrow one about 2.5 KB, 1,664 B of it its unrolled groups).
//! - [`QKernel::Dsp`] (`thumbv7em`, `thumbv8m.main` hard-float: M4, M7, M33, ...; see
//!   `arch`): the input is widened once per layer to 16-bit pairs in the order SXTB16 extracts
//!   weight bytes (`[x0, x2, x1, x3]` per group of four, in a stack buffer of `2 * IN` bytes),
//!   so the row-major weights are read unchanged, one word per row and group: SXTB16,
//!   SXTB16 ROR 8, two SMLADs.
//!   Four rows per pass share each LDRD of the input: 45 instructions per 32 MACs. For
//!   `IN % 4 == 0`, output clamp `[-128, 127]`, no table (every layer the exporters emit
//!   except ReLU6 and tables), the output stage runs in the same `asm!` block, 14
//!   instructions per row: the requantization below, then `SSAT #8` of `(h + 2 zp + 1) >> 1`.
//!   Other layers take the output stage in Rust. Code: about 3.4 KB of flash for all layers
//!   (one shared copy; the typed layer adds the call and its stack buffer).
//!
//! Requantization with one rounding: for `shift = -e`, `2 <= e <= 31` (multipliers in
//! `[2^-32, 2^-2)`: all real layers), TFLite's two roundings are one floor; see
//! `requantize_fast`. Other shifts take [`requantize`] itself.
//!
//! Instructions per inference under QEMU `-icount` (`tinyvae firmware bench`, random int8
//! weights), before (the reference loop for every core) and after:
//!
//! | workload (MACs) | M0 | M3 | M4 | M7 | M33 | CMSIS-NN -O3, M4 |
//! |---|---|---|---|---|---|---|
//! | small VAE 96-64-16 + 8-64-96 (13,824) | 99,574 -> 91,953 -> 64,286 | 50,947 -> 39,140 -> 38,070 -> 29,828 | 51,234 -> 25,903 | 51,093 -> 25,898 | 51,234 -> 25,903 | 38,492 |
//! | MLPerf Tiny AD 640-128x4-8-128x4-640 (264,192) | 973,446 (AN385 map) | 940,623 -> 697,280 -> 612,113 -> 564,877 -> 498,268 | 942,277 -> 412,100 | 948,768 -> 412,088 | 942,276 -> 412,100 | 579,584 |
//!
//! (M0 and M3: portable loop, then [`QKernel::Portable`], then [`QKernel::Multirow`], on the
//! M3 then with the packed kernel for the wide layers, then with the narrow packed kernel for
//! the layers of 8..=128 inputs. The M0
//! runs the MLPerf model with its Armv6-M build linked for the AN385 map: the micro:bit cannot
//! hold it. CMSIS-NN's portable C on the same cores: 107,792 and 1,751,542 on the M0, 56,221
//! and 951,782 on the M3; `shared/BENCHMARKS.md`.)
//!
//! (M33: the benchmark's reading times 1.25: QEMU's AN505 timer runs at 20 MHz, not the
//! 25 MHz the counter assumes; the same code gives the M4's count.) On the M4 that is 0.67x
//! and 0.71x CMSIS-NN's instructions, 1.56 per MAC on the MLPerf model.

use crate::arch;
use crate::{requantize, Requant};
#[cfg(doc)]
use crate::{Layer, QDense, QDenseView};
use core::mem::MaybeUninit;

/// Which implementation of the int8 dense kernel runs. All compute the same bits (see the
/// module doc); [`QKernel::FAST`] is what [`QDense`] and [`QDenseView`] use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QKernel {
    /// The formula as written: one output at a time, inputs in index order, [`requantize`].
    Reference,
    /// Four output rows per pass over the inputs, byte loads (one row per pass on Armv6-M):
    /// the fast path of the host, and the reference the `asm!` kernels are checked against.
    Portable,
    /// Four output rows per pass with SXTB16/SMLAD on the input widened once per layer to
    /// 16-bit pairs. Where they are not compiled in (anything but `thumbv7em-*` and
    /// `thumbv8m.main-*eabihf`) the same code runs on portable emulations of the instructions
    /// (slow, for testing).
    Dsp,
    /// Several output rows per pass over the inputs in one `asm!` block, on the stored
    /// row-major weights: five rows on Armv6-M (Cortex-M0/M0+/M1, M23; the input widened once
    /// per layer to words in pass order, `LDM`/`LDRSB`/`MULS`/`ADD`, 3.2 instructions per MAC)
    /// and five on Armv7-M and Armv8-M Mainline without DSP (Cortex-M3; `LDRSB` with
    /// post-increment and scaled register offsets, `MLA`, 2.05 per MAC; from 100 inputs on, and
    /// for 8..=128 inputs in whole groups of four with the usual output stage, two rows with two
    /// MACs per `SMLAL`, 1.625 per MAC). Elsewhere the same
    /// blocking runs on a portable emulation of the sums (for testing). Layers it does not take
    /// (fewer than 4 inputs on Armv6-M, none on Armv7-M) run [`QKernel::Portable`].
    Multirow,
}

impl QKernel {
    /// The kernel of [`QDense::forward`] on this target: [`QKernel::Dsp`] where the DSP
    /// instructions are compiled in (Cortex-M4/M7/M33 targets), [`QKernel::Multirow`] on the
    /// other Cortex-M targets (M0/M0+/M1/M23, M3, Armv8-M Mainline without DSP), else
    /// [`QKernel::Portable`].
    pub const FAST: QKernel = if arch::DSP {
        QKernel::Dsp
    } else if arch::MULTIROW {
        QKernel::Multirow
    } else {
        QKernel::Portable
    };
}

/// [`requantize`] bit for bit, with one rounding instead of two where the shift allows.
///
/// For `shift = -e` with `2 <= e <= 31` (every multiplier in `[2^-32, 2^-2)`: all real layers),
/// TFLite's two roundings collapse into one. With `A = acc * m + 2^30` (i64, exact) the high
/// multiply is `r1 = floor(A / 2^31)` and the shift `floor((r1 + 2^(e-1) - [r1 < 0]) / 2^e)`
/// (round half away from zero; `[r1 < 0] = [A < 0]`). Nested floors of divisions by powers of two
/// compose, so the result is `floor((A - [A < 0] 2^31 + 2^(30+e)) / 2^(31+e))`, i.e. with
/// `H = floor((A - [A < 0] 2^31) / 2^32)` (the high word, borrow included):
/// `(H + 2^(e-2)) >> (e-1)`. (The high multiply's saturation, `acc = m = i32::MIN`, gives
/// `r1 = 2^31 - 1` instead of `2^31`; both round to `2^(31-e)`, so the formula holds there too.)
/// Other shifts take [`requantize`] itself.
#[inline(always)]
fn requantize_fast(acc: i32, rq: Requant) -> i32 {
    // e - 2, for e = -shift.
    let t = rq.shift.wrapping_neg().wrapping_sub(2) as u32;
    if t > 29 {
        return requantize(acc, rq);
    }
    let (hi, lo) = mul_add_2_30(acc, rq.multiplier);
    // Subtract 2^31 when A < 0: only the borrow into the high word matters.
    let sign = (hi as u32) & 0x8000_0000;
    let hi = hi.wrapping_sub(i32::from(lo < sign));
    hi.wrapping_add(1 << t) >> (t + 1)
}

/// `acc * m + 2^30` (exact, as i64) as its (high, low) words. On Armv6-M ([`FEW_REGISTERS`]),
/// which has no 32 x 32 -> 64 multiply, from four 16 x 16 products with explicit carries
/// instead of the 64 x 64 `__aeabi_lmul` call the i64 product compiles to.
#[inline(always)]
fn mul_add_2_30(acc: i32, m: i32) -> (i32, u32) {
    if FEW_REGISTERS {
        mul_add_2_30_halves(acc, m)
    } else {
        let a = i64::from(acc) * i64::from(m) + (1 << 30);
        ((a >> 32) as i32, a as u32)
    }
}

/// [`mul_add_2_30`] from 16-bit halves: with `a = ah 2^16 + al` (`al` unsigned, `ah` signed),
/// `a m = ah mh 2^32 + (al mh + ah ml) 2^16 + al ml`; each partial product fits its type, and
/// `p 2^16 = (p >> 16) 2^32 + (p << 16 mod 2^32)` splits the middle ones between the words.
#[inline(always)]
fn mul_add_2_30_halves(a: i32, m: i32) -> (i32, u32) {
    let (al, ah) = (a as u32 & 0xFFFF, a >> 16);
    let (ml, mh) = (m as u32 & 0xFFFF, m >> 16);
    let ll = al * ml; // < 2^32
    let lh = (al as i32) * mh; // |.| < 2^31
    let hl = ah * (ml as i32); // |.| < 2^31
    let hh = ah * mh; // |.| <= 2^30
    let (lo, c1) = ll.overflowing_add(1 << 30);
    let (lo, c2) = lo.overflowing_add((lh as u32) << 16);
    let (lo, c3) = lo.overflowing_add((hl as u32) << 16);
    let hi = hh
        .wrapping_add(lh >> 16)
        .wrapping_add(hl >> 16)
        .wrapping_add(i32::from(c1) + i32::from(c2) + i32::from(c3));
    (hi, lo)
}

/// The constants of one layer, as the kernels read them.
#[derive(Clone, Copy)]
pub(crate) struct Kern<'a> {
    pub(crate) in_dim: usize,
    pub(crate) weights: &'a [i8],
    pub(crate) bias: &'a [i32],
    pub(crate) requant: &'a [Requant],
    pub(crate) zp: i32,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
    pub(crate) lut: Option<&'a [i8; 256]>,
}

impl Kern<'_> {
    /// The output stage: requantize, add the zero point, clamp, table.
    #[inline(always)]
    fn out(&self, acc: i32, rq: Requant) -> i8 {
        let v = requantize_fast(acc, rq).saturating_add(self.zp);
        let v = v.max(self.lo).min(self.hi);
        // v <= hi <= 127 and v >= min(lo, hi) >= -128: the cast is exact.
        let v = v as i8;
        match self.lut {
            Some(t) => t.get(usize::from(v as u8 ^ 0x80)).copied().unwrap_or(v),
            None => v,
        }
    }

    /// [`Kern::out`] out of line: for the rows the DSP kernel's `asm!` output stage does not
    /// take (a few per layer at most), so that its code is not repeated at each of them.
    #[inline(never)]
    fn out_outlined(&self, acc: i32, rq: Requant) -> i8 {
        self.out(acc, rq)
    }

    /// The output stage of [`QKernel::Reference`], with [`requantize`] itself.
    #[inline(always)]
    fn out_reference(&self, acc: i32, rq: Requant) -> i8 {
        let v = requantize(acc, rq).saturating_add(self.zp);
        let v = v.max(self.lo).min(self.hi);
        let v = v as i8;
        match self.lut {
            Some(t) => t.get(usize::from(v as u8 ^ 0x80)).copied().unwrap_or(v),
            None => v,
        }
    }

    /// Runs `kernel`; `xe` is the scratch of [`QKernel::Dsp`], at least `in_dim` rounded down
    /// to a multiple of 4 long (else that kernel leaves `y` untouched); `xw` that of
    /// [`QKernel::Multirow`] (`in_dim` words, else it runs
    /// [`QKernel::Portable`]).
    #[inline(always)]
    pub(crate) fn run(
        &self,
        kernel: QKernel,
        x: &[i8],
        xe: &mut [i16],
        xw: &mut [MaybeUninit<i32>],
        y: &mut [i8],
    ) {
        match kernel {
            QKernel::Reference => reference_kernel(self, x, y),
            QKernel::Portable => portable_kernel(self, x, y),
            QKernel::Dsp => dsp_kernel(self, x, xe, y),
            QKernel::Multirow => multirow_kernel(self, x, xw, y),
        }
    }
}

/// [`QKernel::Reference`]: `acc = bias[o] + Σ_i w[o][i] x[i]` in index order, then the output
/// stage with [`requantize`]. Callers guarantee `weights.len() == in_dim * y.len()`,
/// `bias.len() == requant.len() == y.len()` and `x.len() == in_dim`; it never panics even if
/// they do not (outputs without a full row are left untouched). The same holds for the others.
#[inline(never)]
fn reference_kernel(k: &Kern<'_>, x: &[i8], y: &mut [i8]) {
    let outs = y.iter_mut().zip(k.bias).zip(k.requant);
    if k.in_dim == 0 {
        for ((yo, &b), &rq) in outs {
            *yo = k.out_reference(b, rq);
        }
        return;
    }
    for (((yo, &b), &rq), row) in outs.zip(k.weights.chunks_exact(k.in_dim)) {
        let acc = row.iter().zip(x).fold(b, |acc, (&w, &xi)| {
            acc.wrapping_add(i32::from(w) * i32::from(xi))
        });
        *yo = k.out_reference(acc, rq);
    }
}

/// A layer without inputs: `y[o]` is the output stage of `bias[o]`.
fn bias_only(k: &Kern<'_>, y: &mut [i8]) {
    for ((yo, &b), &rq) in y.iter_mut().zip(k.bias).zip(k.requant) {
        *yo = k.out(b, rq);
    }
}

/// Rows `4r..4r+4` of the weights as four slices (`in_dim` each), from a chunk of `4 * in_dim`.
#[inline(always)]
fn four_rows(block: &[i8], n: usize) -> Option<[&[i8]; 4]> {
    let (w0, rest) = block.split_at_checked(n)?;
    let (w1, rest) = rest.split_at_checked(n)?;
    let (w2, w3) = rest.split_at_checked(n)?;
    Some([w0, w1, w2, w3])
}

/// The rows left after the blocks of four: `(y, bias, requant, weights)` tails.
#[inline(always)]
fn tails<'a, 'y>(
    k: &Kern<'a>,
    y: &'y mut [i8],
    blocks: usize,
) -> (&'y mut [i8], &'a [i32], &'a [Requant], &'a [i8]) {
    let r = blocks * 4;
    (
        y.get_mut(r..).unwrap_or_default(),
        k.bias.get(r..).unwrap_or_default(),
        k.requant.get(r..).unwrap_or_default(),
        k.weights.get(r * k.in_dim..).unwrap_or_default(),
    )
}

/// [`QKernel::Portable`]: four rows per pass, each input loaded once per pass and multiplied
/// into four accumulators, the rows left over one at a time; one row at a time on Armv6-M
/// ([`FEW_REGISTERS`]). Inlined into each typed layer: with `in_dim` a constant the compiler
/// specializes the loops, which measured 25% (M3) to 45% (M0) fewer instructions than one
/// shared out-of-line copy.
#[inline(always)]
fn portable_kernel(k: &Kern<'_>, x: &[i8], y: &mut [i8]) {
    let n = k.in_dim;
    if n == 0 {
        return bias_only(k, y);
    }
    let mut blocks = 0;
    if !FEW_REGISTERS {
        let (y4, _) = y.as_chunks_mut::<4>();
        let (b4, _) = k.bias.as_chunks::<4>();
        let (r4, _) = k.requant.as_chunks::<4>();
        for (((yb, bb), rb), wb) in y4
            .iter_mut()
            .zip(b4)
            .zip(r4)
            .zip(k.weights.chunks_exact(n.saturating_mul(4)))
        {
            let a = dot4_bytes(*bb, wb, n, x);
            for ((yo, &acc), &rq) in yb.iter_mut().zip(&a).zip(rb) {
                *yo = k.out(acc, rq);
            }
            blocks += 1;
        }
    }
    let (y, bias, requant, weights) = tails(k, y, blocks);
    for (((yo, &b), &rq), row) in y
        .iter_mut()
        .zip(bias)
        .zip(requant)
        .zip(weights.chunks_exact(n))
    {
        *yo = k.out(dot1_bytes(b, row, x), rq);
    }
}

/// Armv6-M (Cortex-M0/M0+/M1: no 32-bit atomics, the only Arm profile without them): eight
/// low registers, too few for four accumulators and four row pointers, so
/// [`QKernel::Portable`] computes one row at a time there.
const FEW_REGISTERS: bool = cfg!(all(target_arch = "arm", not(target_has_atomic = "32")));

/// Four rows (`block`, `n` apart) against `x`: `acc[k] + Σ_i block[k n + i] x[i]` (mod 2^32),
/// each input loaded once.
#[inline(always)]
fn dot4_bytes(acc: [i32; 4], block: &[i8], n: usize, x: &[i8]) -> [i32; 4] {
    let Some([w0, w1, w2, w3]) = four_rows(block, n) else {
        return acc;
    };
    let mut a = acc;
    for ((((&xi, &p), &q), &r), &s) in x.iter().zip(w0).zip(w1).zip(w2).zip(w3) {
        let xi = i32::from(xi);
        a[0] = a[0].wrapping_add(i32::from(p) * xi);
        a[1] = a[1].wrapping_add(i32::from(q) * xi);
        a[2] = a[2].wrapping_add(i32::from(r) * xi);
        a[3] = a[3].wrapping_add(i32::from(s) * xi);
    }
    a
}

/// One row against `x`: `acc + Σ_i row[i] x[i]` (mod 2^32).
#[inline(always)]
fn dot1_bytes(acc: i32, row: &[i8], x: &[i8]) -> i32 {
    row.iter().zip(x).fold(acc, |acc, (&w, &xi)| {
        acc.wrapping_add(i32::from(w) * i32::from(xi))
    })
}

/// The scratch of [`QKernel::Multirow`]: the input widened to 32-bit words, left uninitialized
/// (the widening writes every word it reads).
pub(crate) struct RowScratch<const N: usize>(pub(crate) [MaybeUninit<i32>; N]);

impl<const N: usize> RowScratch<N> {
    pub(crate) const ZERO: Self = Self([MaybeUninit::uninit(); N]);
}

/// [`QKernel::Multirow`] with its scratch (the input widened to words, `4 * IN` bytes) in a
/// frame of its own, so that the scratch of a layer does not stay on the
/// stack of the caller (which may inline several layers) while the next layer runs.
#[inline(never)]
pub(crate) fn multirow_forward<const IN: usize>(k: &Kern<'_>, x: &[i8; IN], y: &mut [i8]) {
    let mut xw = RowScratch::<IN>::ZERO;
    multirow_kernel(k, x, &mut xw.0, y);
}

/// [`QKernel::Multirow`]: `arch::layer` (on Armv6-M/Armv7-M one `asm!` block per block of 5/7
/// rows, with the output stage when it is `finish`'s; [`Kern::out`] for the other rows). Layers the `asm!` does not take (see `arch::prepare`) run [`portable_kernel`].
/// Shared by every layer (out of line): the `asm!` gains nothing from a constant `in_dim`.
#[inline(never)]
fn multirow_kernel(k: &Kern<'_>, x: &[i8], xw: &mut [MaybeUninit<i32>], y: &mut [i8]) {
    let n = k.in_dim;
    // The output stage runs in the `asm!` too when it is `finish`'s (as for `arch::rows4`);
    // `prepare` may ask (Armv7-M), and then it is not tested again.
    let is_fused = |k: &Kern<'_>| {
        k.lo == -128 && k.hi == 127 && k.lut.is_none() && (-(1 << 20)..=1 << 20).contains(&k.zp)
    };
    let mut memo = None;
    let prepared = if x.len() == n {
        arch::prepare(x, xw, || *memo.insert(is_fused(k)))
    } else {
        None
    };
    let Some(inp) = prepared else {
        return portable_kernel(k, x, y);
    };
    let fused = memo.unwrap_or_else(|| is_fused(k));
    let l = arch::Layer {
        weights: k.weights,
        bias: k.bias,
        requant: k.requant,
        y: &mut *y,
        zp2: fused.then_some(2 * k.zp + 1),
    };
    let done = arch::layer(&inp, l, |acc, rq| k.out_outlined(acc, rq));
    // Rows without a whole weight row, bias or constant are left alone, as by the others.
    let _ = done;
}

/// The widened input of [`QKernel::Dsp`]: 16-bit values, 4-byte aligned (SMLAD reads them in
/// pairs with LDRD).
#[repr(C, align(4))]
pub(crate) struct Widened<const N: usize>(pub(crate) [i16; N]);

impl<const N: usize> Widened<N> {
    pub(crate) const ZERO: Self = Self([0; N]);
}

/// [`QKernel::Dsp`]: the input is widened once to 16-bit pairs in the order SXTB16 extracts
/// weights (`[x0, x2, x1, x3]` per group of four), then four rows per pass: one word load per
/// row and group, SXTB16 and SXTB16 ROR 8 to split it into `(w0, w2)` and `(w1, w3)`, two SMLADs
/// (`arch::dot4`). The last `in_dim % 4` inputs of each row are multiplied one by one.
#[inline(never)]
fn dsp_kernel(k: &Kern<'_>, x: &[i8], xe: &mut [i16], y: &mut [i8]) {
    let n = k.in_dim;
    let g = n / 4;
    let (xg, xt) = x.as_chunks::<4>();
    let Some(xe) = xe.get_mut(..4 * g) else {
        // Callers give at least `in_dim` values of scratch: not reached.
        return;
    };
    if n == 0 {
        return bias_only(k, y);
    }
    let (xe4, _) = xe.as_chunks_mut::<4>();
    for (e, xw) in xe4.iter_mut().zip(xg) {
        let w = u32::from_le_bytes(xw.map(|v| v as u8));
        let (a, b) = (arch::sxtb16(w), arch::sxtb16_ror8(w));
        *e = [a as i16, (a >> 16) as i16, b as i16, (b >> 16) as i16];
    }
    let xe: &[i16] = xe;
    let tail = |acc: i32, row: &[i8]| -> i32 {
        row.get(4 * g..)
            .unwrap_or_default()
            .iter()
            .zip(xt)
            .fold(acc, |acc, (&w, &xi)| {
                acc.wrapping_add(i32::from(w) * i32::from(xi))
            })
    };

    let fused = n.is_multiple_of(4)
        && k.lo == -128
        && k.hi == 127
        && k.lut.is_none()
        && (-(1 << 20)..=1 << 20).contains(&k.zp);
    let mut blocks = 0;
    if fused {
        blocks = dsp_blocks_fused(k, xe, y);
    }
    if blocks == 0 {
        // Not fused, or `arch::rows4` did not apply (or there is no whole block).
        blocks = dsp_blocks(k, xe, y, tail);
    }
    let (y, bias, requant, weights) = tails(k, y, blocks);
    for (((yo, &b), &rq), row) in y
        .iter_mut()
        .zip(bias)
        .zip(requant)
        .zip(weights.chunks_exact(n))
    {
        *yo = k.out_outlined(tail(arch::dot1(b, row, xe), row), rq);
    }
}

/// The whole 4-row blocks of [`dsp_kernel`] for `in_dim % 4 == 0`, a clamp of `[-128, 127]`,
/// no table and `|zp| <= 2^20`: MACs and output stage in `arch::rows4` (one `asm!` block for
/// all blocks); a block with a row outside that output stage's shift range gets the general
/// stage here, and `rows4` resumes after it. Returns the number of blocks done: all of them,
/// or 0 when `rows4` does not apply (then [`dsp_blocks`] does them all).
fn dsp_blocks_fused(k: &Kern<'_>, xe: &[i16], y: &mut [i8]) -> usize {
    let n = k.in_dim;
    let zp2 = 2 * k.zp + 1;
    let mut blocks = 0;
    loop {
        let r = 4 * blocks;
        let l = arch::Rows4 {
            weights: k.weights.get(r * n..).unwrap_or_default(),
            n,
            xe,
            bias: k.bias.get(r..).unwrap_or_default(),
            requant: k.requant.get(r..).unwrap_or_default(),
            zp2,
        };
        let (done, stopped) = arch::rows4(&l, y.get_mut(r..).unwrap_or_default());
        blocks += done;
        let Some(acc) = stopped else {
            return blocks;
        };
        let r = 4 * blocks;
        let ys = y.get_mut(r..r + 4).unwrap_or_default();
        let rqs = k.requant.get(r..r + 4).unwrap_or_default();
        for ((yo, &a), &rq) in ys.iter_mut().zip(&acc).zip(rqs) {
            *yo = k.out_outlined(a, rq);
        }
        blocks += 1;
    }
}

/// The whole 4-row blocks of [`dsp_kernel`] in general: `arch::dot4`, the `in_dim % 4` last
/// inputs by `tail`, the output stage in Rust. Returns the number of blocks done.
fn dsp_blocks(k: &Kern<'_>, xe: &[i16], y: &mut [i8], tail: impl Fn(i32, &[i8]) -> i32) -> usize {
    let n = k.in_dim;
    let (y4, _) = y.as_chunks_mut::<4>();
    let (b4, _) = k.bias.as_chunks::<4>();
    let (r4, _) = k.requant.as_chunks::<4>();
    let mut blocks = 0;
    for (((yb, bb), rb), wb) in y4
        .iter_mut()
        .zip(b4)
        .zip(r4)
        .zip(k.weights.chunks_exact(n.saturating_mul(4)))
    {
        let mut a = arch::dot4(*bb, wb, n, xe);
        if !n.is_multiple_of(4) {
            if let Some([w0, w1, w2, w3]) = four_rows(wb, n) {
                a = [
                    tail(a[0], w0),
                    tail(a[1], w1),
                    tail(a[2], w2),
                    tail(a[3], w3),
                ];
            }
        }
        for ((yo, &acc), &rq) in yb.iter_mut().zip(&a).zip(rb) {
            *yo = k.out_outlined(acc, rq);
        }
        blocks += 1;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::mul_add_2_30_halves;

    /// The 16-bit-halves product (used on Armv6-M) against i64, on extremes and a sweep.
    #[test]
    fn halves_product_is_exact() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -65_537,
            -65_536,
            -65_535,
            -1,
            0,
            1,
            65_535,
            65_536,
            1 << 30,
            i32::MAX - 1,
            i32::MAX,
        ];
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut vals: [i32; 64] = [0; 64];
        for (k, v) in vals.iter_mut().enumerate() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *v = match edges.get(k) {
                Some(&e) => e,
                None => (s >> 32) as i32 >> (s % 31),
            };
        }
        for &a in &vals {
            for &m in &vals {
                let want = i64::from(a) * i64::from(m) + (1 << 30);
                let want = ((want >> 32) as i32, want as u32);
                assert_eq!(mul_add_2_30_halves(a, m), want, "a {a}, m {m}");
                let (hi, lo) = mid_scheme(a, m);
                assert_eq!((hi, lo >> 31), (want.0, want.1 >> 31), "mid: a {a}, m {m}");
            }
        }
    }

    /// The Armv6-M output stage's product (`arch/armv6m.rs`), instruction by instruction: the
    /// high word and bit 31 of the low word of `a m + 2^30` (the only bits it uses), with
    /// `mid = lh + (ll >> 16) + 2^14` in one i32 and the low half of `ll` dropped.
    fn mid_scheme(a: i32, m: i32) -> (i32, u32) {
        let (al, ah) = (a as u32 & 0xFFFF, a >> 16);
        let (ml, mh) = (m as u32 & 0xFFFF, m >> 16);
        let ll = al * ml;
        let lh = (al as i32) * mh;
        let hl = ah * (ml as i32);
        let hh = ah * mh;
        // `adds` that must not overflow: checked.
        let mid = lh
            .checked_add((ll >> 16) as i32)
            .and_then(|v| v.checked_add(1 << 14));
        assert!(mid.is_some(), "mid overflows: a {a}, m {m}");
        let mid = mid.unwrap_or_default();
        let (lo, c) = ((mid as u32) << 16).overflowing_add((hl as u32) << 16);
        let hi = hh
            .wrapping_add(mid >> 16)
            .wrapping_add(hl >> 16)
            .wrapping_add(i32::from(c));
        (hi, lo)
    }
}
