//! The x86_64 SIMD int8 dense kernels (AVX-512 VNNI and AVX2) on a [`PackedLayer`]'s layout,
//! with the vector output stage; `packed.rs` states the layouts and the arithmetic.
//!
//! Each entry point is a `#[target_feature]` function called only for a layer packed for its
//! kernel, which [`PackedLayer::new`] creates only after `Int8Kernel::supported` confirmed the
//! CPU has the features (the `// SAFETY:` comments rely on that). The loads read the packed
//! weights, bias and output constants at offsets bounded by the layer's shape, checked on
//! entry (`assert!`: a mismatch is a bug, never data).
//!
//! Per pass over the inputs, a chunk of `B <= CHUNK` blocks keeps `B` accumulators in
//! registers and shares each broadcast input group among them; with `B <= 4` the groups
//! alternate between two sets of accumulators (summed at the end: wrapping addition is
//! associative), which hides the multiply-accumulate latency on layers with few outputs.

use std::arch::x86_64::*;

use super::packed::{KernelScratch, PackedLayer, CHUNK};

/// Checks what every kernel relies on: packed weights, bias and constants cover
/// `blocks * rows` outputs and `groups` groups of `g` inputs.
fn check(p: &PackedLayer, rows: usize, g: usize) -> usize {
    let blocks = p.out_dim.div_ceil(rows);
    assert_eq!(p.groups, p.in_dim.div_ceil(g));
    assert_eq!(p.weights.len(), blocks * rows * p.groups * g);
    for v in [&p.bias, &p.mult, &p.round, &p.shift] {
        assert_eq!(v.len(), blocks * rows);
    }
    blocks
}

/// [`PackedLayer::forward`] with AVX-512 VNNI (16 rows, groups of 4 inputs, `u8` input).
pub(super) fn forward_vnni(p: &PackedLayer, x: &[i8], y: &mut [i8], s: &mut KernelScratch) {
    assert_eq!(p.kernel, super::Int8Kernel::Avx512Vnni);
    let blocks = check(p, 16, 4);
    assert_eq!((x.len(), y.len()), (p.in_dim, p.out_dim));
    s.bytes.resize(s.bytes.len().max(4 * p.groups), 0);
    // SAFETY: a layer packed for this kernel exists only on a CPU with these features
    // (`PackedLayer::new` checked `Int8Kernel::supported`); the lengths were checked above.
    unsafe { vnni(p, blocks, x, y, &mut s.bytes) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn vnni(p: &PackedLayer, blocks: usize, x: &[i8], y: &mut [i8], xu: &mut [u8]) {
    // u = x + 128 (as u8), zero past the inputs (their weights are zero).
    for (u, &v) in xu.iter_mut().zip(x) {
        *u = v as u8 ^ 0x80;
    }
    for u in xu.iter_mut().take(4 * p.groups).skip(x.len()) {
        *u = 0;
    }
    let mut off = 0;
    let mut b0 = 0;
    while b0 < blocks {
        let bc = CHUNK.min(blocks - b0);
        macro_rules! run {
            ($($n:literal)*) => {
                match bc {
                    $($n => vnni_chunk::<$n>(p, b0, off, xu, y),)*
                    _ => unreachable!(),
                }
            };
        }
        run!(1 2 3 4 5 6 7 8);
        off += bc * 64 * p.groups;
        b0 += bc;
    }
}

/// Blocks `b0..b0 + B` (weights from byte `off`), output stage included.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn vnni_chunk<const B: usize>(p: &PackedLayer, b0: usize, off: usize, xu: &[u8], y: &mut [i8]) {
    let ng = p.groups;
    assert!(off + B * 64 * ng <= p.weights.len() && (b0 + B) * 16 <= p.bias.len());
    assert!(xu.len() >= 4 * ng);
    let w = p.weights[off..].as_ptr();
    let xp = xu.as_ptr();
    let bias = p.bias[b0 * 16..].as_ptr();
    let mut acc = [_mm512_setzero_si512(); B];
    let mut acc2 = [_mm512_setzero_si512(); B];
    // SAFETY: bias reads `16 B` i32 from `b0 * 16` (checked above); weight reads are the
    // `64`-byte vectors `(k B + b)` for `k < ng`, `b < B` from `off` (checked); input reads are
    // the 4-byte groups `k < ng` of `xu` (checked). All loads are unaligned loads.
    unsafe {
        for (b, a) in acc.iter_mut().enumerate() {
            *a = _mm512_loadu_si512(bias.add(16 * b).cast());
        }
        let mut k = 0;
        if B <= 4 {
            while k + 2 <= ng {
                let x0 = _mm512_set1_epi32(xp.add(4 * k).cast::<i32>().read_unaligned());
                let x1 = _mm512_set1_epi32(xp.add(4 * k + 4).cast::<i32>().read_unaligned());
                for (b, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_si512(w.add((k * B + b) * 64).cast());
                    *a = _mm512_dpbusd_epi32(*a, x0, wv);
                }
                for (b, a) in acc2.iter_mut().enumerate() {
                    let wv = _mm512_loadu_si512(w.add(((k + 1) * B + b) * 64).cast());
                    *a = _mm512_dpbusd_epi32(*a, x1, wv);
                }
                k += 2;
            }
        }
        while k < ng {
            let x0 = _mm512_set1_epi32(xp.add(4 * k).cast::<i32>().read_unaligned());
            for (b, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_loadu_si512(w.add((k * B + b) * 64).cast());
                *a = _mm512_dpbusd_epi32(*a, x0, wv);
            }
            k += 1;
        }
    }
    for (b, (a, a2)) in acc.iter().zip(&acc2).enumerate() {
        let a = _mm512_add_epi32(*a, *a2);
        let o0 = (b0 + b) * 16;
        let n = 16.min(p.out_dim - o0.min(p.out_dim));
        if n == 0 {
            break;
        }
        let mut out = [0i8; 16];
        if p.vector_requant {
            // SAFETY: reads 16 constants from `o0` of each padded vector (length checked
            // above); stores into a local array.
            unsafe {
                let v = out_stage16(p, o0, a);
                _mm_storeu_si128(out.as_mut_ptr().cast(), v);
            }
        } else {
            let mut lanes = [0i32; 16];
            // SAFETY: stores 16 i32 into a local array.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), a) };
            for (j, (o, &l)) in out.iter_mut().zip(&lanes).enumerate().take(n) {
                *o = p.out_scalar(o0 + j, l);
            }
        }
        y[o0..o0 + n].copy_from_slice(&out[..n]);
    }
}

/// The vector output stage of 16 outputs from `o0` (module doc of `packed.rs`).
///
/// # Safety
/// `p.mult`, `p.round`, `p.shift` hold at least `o0 + 16` values.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn out_stage16(p: &PackedLayer, o0: usize, acc: __m512i) -> __m128i {
    // SAFETY: the caller guarantees the 16 reads from `o0`.
    let (m, rnd, sh) = unsafe {
        (
            _mm512_loadu_si512(p.mult.as_ptr().add(o0).cast()),
            _mm512_loadu_si512(p.round.as_ptr().add(o0).cast()),
            _mm512_loadu_si512(p.shift.as_ptr().add(o0).cast()),
        )
    };
    let half = _mm512_set1_epi64(1 << 30);
    let b31 = _mm512_set1_epi64(1 << 31);
    // A = acc m + 2^30 for the even and the odd lanes (i64, exact).
    let pe = _mm512_add_epi64(_mm512_mul_epi32(acc, m), half);
    let po = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(m, 32)),
        half,
    );
    // A - [A < 0] 2^31; its high word is H.
    let pe = _mm512_sub_epi64(pe, _mm512_and_si512(_mm512_srai_epi64(pe, 63), b31));
    let po = _mm512_sub_epi64(po, _mm512_and_si512(_mm512_srai_epi64(po, 63), b31));
    let h = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    let v = _mm512_srav_epi32(_mm512_add_epi32(h, rnd), sh);
    let v = _mm512_add_epi32(v, _mm512_set1_epi32(p.zp));
    let v = _mm512_max_epi32(v, _mm512_set1_epi32(i32::from(p.act.0)));
    let v = _mm512_min_epi32(v, _mm512_set1_epi32(i32::from(p.act.1)));
    _mm512_cvtepi32_epi8(v)
}

/// [`PackedLayer::forward`] with AVX2 (8 rows, pairs of inputs widened to i16).
pub(super) fn forward_avx2(p: &PackedLayer, x: &[i8], y: &mut [i8], s: &mut KernelScratch) {
    assert_eq!(p.kernel, super::Int8Kernel::Avx2);
    let blocks = check(p, 8, 2);
    assert_eq!((x.len(), y.len()), (p.in_dim, p.out_dim));
    s.words.resize(s.words.len().max(2 * p.groups), 0);
    // SAFETY: as in `forward_vnni` (AVX2 checked by `PackedLayer::new`).
    unsafe { avx2(p, blocks, x, y, &mut s.words) }
}

#[target_feature(enable = "avx2")]
fn avx2(p: &PackedLayer, blocks: usize, x: &[i8], y: &mut [i8], xw: &mut [i16]) {
    for (u, &v) in xw.iter_mut().zip(x) {
        *u = i16::from(v);
    }
    for u in xw.iter_mut().take(2 * p.groups).skip(x.len()) {
        *u = 0;
    }
    let mut off = 0;
    let mut b0 = 0;
    while b0 < blocks {
        let bc = CHUNK.min(blocks - b0);
        macro_rules! run {
            ($($n:literal)*) => {
                match bc {
                    $($n => avx2_chunk::<$n>(p, b0, off, xw, y),)*
                    _ => unreachable!(),
                }
            };
        }
        run!(1 2 3 4 5 6 7 8);
        off += bc * 16 * p.groups;
        b0 += bc;
    }
}

/// Blocks `b0..b0 + B` of 8 rows (weights from byte `off`), output stage included.
#[inline]
#[target_feature(enable = "avx2")]
fn avx2_chunk<const B: usize>(p: &PackedLayer, b0: usize, off: usize, xw: &[i16], y: &mut [i8]) {
    let ng = p.groups;
    assert!(off + B * 16 * ng <= p.weights.len() && (b0 + B) * 8 <= p.bias.len());
    assert!(xw.len() >= 2 * ng);
    let w = p.weights[off..].as_ptr();
    let xp = xw.as_ptr();
    let bias = p.bias[b0 * 8..].as_ptr();
    let mut acc = [_mm256_setzero_si256(); B];
    // SAFETY: bias reads `8 B` i32 from `b0 * 8`; weight reads the 16-byte vectors `(k B + b)`
    // for `k < ng`, `b < B` from `off`; input reads the pairs `k < ng` of `xw` (all checked
    // above); unaligned loads.
    unsafe {
        for (b, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_si256(bias.add(8 * b).cast());
        }
        for k in 0..ng {
            let xb = _mm256_set1_epi32(xp.add(2 * k).cast::<i32>().read_unaligned());
            for (b, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add((k * B + b) * 16).cast()));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(wv, xb));
            }
        }
    }
    for (b, a) in acc.iter().enumerate() {
        let o0 = (b0 + b) * 8;
        let n = 8.min(p.out_dim - o0.min(p.out_dim));
        if n == 0 {
            break;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: stores 8 i32 into a local array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), *a) };
        if p.vector_requant {
            // SAFETY: reads 8 constants from `o0` of each padded vector (length checked above);
            // stores into a local array.
            unsafe {
                let v = out_stage8(p, o0, *a);
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v);
            }
            for (o, &l) in y[o0..o0 + n].iter_mut().zip(&lanes) {
                *o = l as i8;
            }
        } else {
            for (j, (o, &l)) in y[o0..o0 + n].iter_mut().zip(&lanes).enumerate() {
                *o = p.out_scalar(o0 + j, l);
            }
        }
    }
}

/// The vector output stage of 8 outputs from `o0`, as [`out_stage16`], returned as i32
/// lanes already clamped to the output range.
///
/// # Safety
/// `p.mult`, `p.round`, `p.shift` hold at least `o0 + 8` values.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn out_stage8(p: &PackedLayer, o0: usize, acc: __m256i) -> __m256i {
    // SAFETY: the caller guarantees the 8 reads from `o0`.
    let (m, rnd, sh) = unsafe {
        (
            _mm256_loadu_si256(p.mult.as_ptr().add(o0).cast()),
            _mm256_loadu_si256(p.round.as_ptr().add(o0).cast()),
            _mm256_loadu_si256(p.shift.as_ptr().add(o0).cast()),
        )
    };
    let half = _mm256_set1_epi64x(1 << 30);
    let b31 = _mm256_set1_epi64x(1 << 31);
    let zero = _mm256_setzero_si256();
    let pe = _mm256_add_epi64(_mm256_mul_epi32(acc, m), half);
    let po = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), _mm256_srli_epi64(m, 32)),
        half,
    );
    let pe = _mm256_sub_epi64(pe, _mm256_and_si256(_mm256_cmpgt_epi64(zero, pe), b31));
    let po = _mm256_sub_epi64(po, _mm256_and_si256(_mm256_cmpgt_epi64(zero, po), b31));
    let h = _mm256_blend_epi32::<0xAA>(_mm256_srli_epi64(pe, 32), po);
    let v = _mm256_srav_epi32(_mm256_add_epi32(h, rnd), sh);
    let v = _mm256_add_epi32(v, _mm256_set1_epi32(p.zp));
    let v = _mm256_max_epi32(v, _mm256_set1_epi32(i32::from(p.act.0)));
    _mm256_min_epi32(v, _mm256_set1_epi32(i32::from(p.act.1)))
}

/// `q[i] = tinyvae::quantize(x[i], qp)` for whole vectors of 16 (AVX-512); returns how many
/// values it did (the caller does the rest with the library). Needs `-128 <= zp <= 127`.
///
/// `quantize` is `saturate_i8(roundf(x / s) as i32 + zp)` (saturating add, NaN to 0): the
/// division is IEEE's in both; `roundf` (half away from zero) is `t = trunc(d)` plus
/// `copysign(1, d)` when `|d - t| >= 1/2` (`d - t` is exact; `t` is `d` itself from 2^23
/// on); clamping to `[-512, 512]` before the conversion cannot change the saturated result
/// (`|zp| <= 128`), NaN becomes 0 as `as i32` does, infinities saturate.
pub(super) fn quantize16(x: &[f32], qp: tinyvae::QParams, q: &mut [i8]) -> usize {
    assert!((-128..=127).contains(&qp.zero_point));
    // SAFETY: called only by `quantize::quantize_slice` for the AVX-512 kernel, whose layers
    // exist only on a CPU with AVX-512 F/BW/VL (`PackedLayer::new`).
    unsafe { quantize16_impl(x, qp, q) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize16_impl(x: &[f32], qp: tinyvae::QParams, q: &mut [i8]) -> usize {
    let s = _mm512_set1_ps(qp.scale);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_set1_epi32(1.0f32.to_bits() as i32);
    let sign = _mm512_set1_epi32(i32::MIN);
    let abs = _mm512_set1_epi32(i32::MAX);
    let (lo, hi) = (_mm512_set1_ps(-512.0), _mm512_set1_ps(512.0));
    let zp = _mm512_set1_epi32(qp.zero_point);
    let (qlo, qhi) = (_mm512_set1_epi32(-128), _mm512_set1_epi32(127));
    let mut done = 0;
    for (xs, qs) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
        // SAFETY: 16 floats read from a 16-value chunk, 16 bytes stored into a 16-byte chunk.
        unsafe {
            let d = _mm512_div_ps(_mm512_loadu_ps(xs.as_ptr()), s);
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(d);
            let f = _mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(d, t)), abs);
            let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_castsi512_ps(f), half);
            let step = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(d), sign), one);
            let r = _mm512_mask_add_ps(t, up, t, _mm512_castsi512_ps(step));
            let r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(d, d);
            let r = _mm512_mask_mov_ps(r, nan, _mm512_setzero_ps());
            let v = _mm512_add_epi32(_mm512_cvttps_epi32(r), zp);
            let v = _mm512_min_epi32(_mm512_max_epi32(v, qlo), qhi);
            _mm_storeu_si128(qs.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(v));
        }
        done += 16;
    }
    done
}

/// [`quantize16`] with AVX2, 8 values per vector.
pub(super) fn quantize8(x: &[f32], qp: tinyvae::QParams, q: &mut [i8]) -> usize {
    assert!((-128..=127).contains(&qp.zero_point));
    // SAFETY: called only for the AVX2 kernel, whose layers exist only on a CPU with AVX2.
    unsafe { quantize8_impl(x, qp, q) }
}

#[target_feature(enable = "avx2")]
fn quantize8_impl(x: &[f32], qp: tinyvae::QParams, q: &mut [i8]) -> usize {
    let s = _mm256_set1_ps(qp.scale);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let sign = _mm256_set1_ps(-0.0);
    let (lo, hi) = (_mm256_set1_ps(-512.0), _mm256_set1_ps(512.0));
    let zp = _mm256_set1_epi32(qp.zero_point);
    let (qlo, qhi) = (_mm256_set1_epi32(-128), _mm256_set1_epi32(127));
    let mut done = 0;
    for (xs, qs) in x.chunks_exact(8).zip(q.chunks_exact_mut(8)) {
        let mut lanes = [0i32; 8];
        // SAFETY: 8 floats read from an 8-value chunk, 8 i32 stored into a local array.
        unsafe {
            let d = _mm256_div_ps(_mm256_loadu_ps(xs.as_ptr()), s);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(d);
            let f = _mm256_andnot_ps(sign, _mm256_sub_ps(d, t));
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(f, half);
            let step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(d, sign), one));
            let r = _mm256_add_ps(t, step);
            let r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
            let ord = _mm256_cmp_ps::<_CMP_ORD_Q>(d, d);
            let r = _mm256_and_ps(r, ord);
            let v = _mm256_add_epi32(_mm256_cvttps_epi32(r), zp);
            let v = _mm256_min_epi32(_mm256_max_epi32(v, qlo), qhi);
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v);
        }
        for (o, &l) in qs.iter_mut().zip(&lanes) {
            *o = l as i8;
        }
        done += 8;
    }
    done
}
