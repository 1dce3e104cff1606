//! The input of the Armv7-M (Cortex-M3) packed kernel (`armv7m.rs`): two MACs per `SMLAL` on
//! the stored row-major signed weights, and a portable model of its arithmetic for the host
//! tests.
//!
//! # Arithmetic
//!
//! A word `R` of a row holds the weights of four inputs `x0..x3` (bytes 0..3). With `M =
//! 0xFF0000FF`, `R & M` has byte 0 in the low lane and byte 3 in the top lane, and `ROR(R, 16) &
//! M` byte 2 low and byte 1 on top: two words `U = lo + hi 2^24` whose top lane, read as signed,
//! is the weight itself, and whose low lane is a byte read unsigned. `EOR` with a key `K` (one
//! per group, bytes 0 and 2) first makes each low lane an affine function of its weight: key
//! byte `0x80` gives `w + 128`, `0x7F` gives `127 - w`. The input side is prepared once per
//! layer: for the pair (low-lane input `a`, top-lane input `b`), `V = b + s a 2^24` with `s = 1`
//! for key `0x80` and `s = -1` for `0x7F`. Then, exactly in 64 bits (`SMLAL`),
//!
//! ```text
//! U V = lo b + (lo s a + w_b b) 2^24 + w_b s a 2^48,    lo s a = w_a a + (128 a | -127 a)
//! ```
//!
//! so the middle lane (bits 24..48) collects the two MACs plus a term of the input only, which
//! is subtracted through the accumulator's start value, shared by every row. `V` must be an i32:
//! `b + a 2^24` is not when `a = -128` and `b < 0`; those pairs take `s = -1` (`V = b + 2^31`),
//! all others `s = 1`.
//!
//! Over a chunk of at most [`CHUNK`] groups the accumulator starts at `T0 = 2^23 - C 2^24` (`C`
//! the chunk's input terms) and ends at `T = (L + 2^23) + D 2^24 + H 2^48`, with `D` the chunk's
//! exact dot product and `L` the low-lane sum: `|L| <= 2 CHUNK 255 128 < 2^23` and `|D| <= 4
//! CHUNK 2^14 <= 2^22`, so bits 16..48 of `T` shifted right by 8 (arithmetic) are `D` exactly
//! (the top lane only wraps above bit 48).
//!
//! # Layout of the prepared input (in the caller's scratch, `n` words)
//!
//! Three words per group of four inputs (`V1` for the pair (0, 3), `V2` for (2, 1), then `K`),
//! the start value of each chunk as (low, high) words, then the last `n % 4` inputs. This needs
//! `3g + 2 ceil(g / CHUNK) + n % 4 <= n` words (`g = n / 4`): true for `n >= 8`; smaller layers
//! take the portable kernel.

use core::mem::MaybeUninit;

/// Groups of four inputs per chunk (module doc: `2 CHUNK 255 128 < 2^23`, `4 CHUNK 2^14 < 2^23`).
pub(crate) const CHUNK: usize = 64;

/// The mask of the two lanes.
#[cfg(test)]
pub(crate) const MASK: u32 = 0xFF00_00FF;

/// The prepared input of one layer.
pub(crate) struct Packed<'a> {
    /// `[V1, V2, K]` per group.
    pub(crate) v: &'a [u32],
    /// `(low, high)` start value per chunk.
    pub(crate) init: &'a [u32],
    /// The last `n % 4` inputs.
    pub(crate) tail: &'a [i32],
    /// Inputs.
    pub(crate) n: usize,
}

/// One pair: (`V`, key byte, input term `C`) for low-lane input `a` and top-lane input `b`.
#[inline(always)]
fn pair(a: i32, b: i32) -> (u32, u32, i32) {
    if a == -128 && b < 0 {
        // V = b + 2^31, in [2^31 - 128, 2^31 - 1].
        ((b as u32).wrapping_add(1 << 31), 0x7F, -127 * a)
    } else {
        ((b as u32).wrapping_add((a as u32) << 24), 0x80, 128 * a)
    }
}

/// Writes the packed input of `x` into `scratch` (module doc); `None` for fewer than 8 inputs
/// or a scratch shorter than `x` (every word read is written here).
pub(crate) fn prepare<'a>(x: &[i8], scratch: &'a mut [MaybeUninit<i32>]) -> Option<Packed<'a>> {
    let n = x.len();
    if n < 8 || scratch.len() < n {
        return None;
    }
    let g = n / 4;
    let chunks = g.div_ceil(CHUNK);
    let (v, rest) = scratch.split_at_mut_checked(3 * g)?;
    let (init, rest) = rest.split_at_mut_checked(2 * chunks)?;
    let (xg, xt) = x.as_chunks::<4>();
    let tail = rest.get_mut(..xt.len())?;
    for (o, &t) in tail.iter_mut().zip(xt) {
        o.write(i32::from(t));
    }
    let (v3, _) = v.as_chunks_mut::<3>();
    let (i2, _) = init.as_chunks_mut::<2>();
    for ((vc, xc), ic) in v3
        .chunks_mut(CHUNK)
        .zip(xg.chunks(CHUNK))
        .zip(i2.iter_mut())
    {
        let mut c = 0i64;
        for (o, &[x0, x1, x2, x3]) in vc.iter_mut().zip(xc) {
            let (v1, k1, c1) = pair(i32::from(x0), i32::from(x3));
            let (v2, k2, c2) = pair(i32::from(x2), i32::from(x1));
            o[0].write(v1 as i32);
            o[1].write(v2 as i32);
            o[2].write((k1 | (k2 << 16)) as i32);
            c += i64::from(c1 + c2);
        }
        let t0 = (1i64 << 23) - (c << 24);
        ic[0].write(t0 as i32);
        ic[1].write((t0 >> 32) as i32);
    }
    let used = 3 * g + 2 * chunks + xt.len();
    let words = scratch.get(..used)?;
    // SAFETY: every one of the `used` words was written above (all groups, all chunk starts,
    // the tail); `MaybeUninit<i32>` has the layout of `i32` and of `u32`.
    let words: &'a [u32] = unsafe { &*(core::ptr::from_ref(words) as *const [u32]) };
    let (v, rest) = words.split_at_checked(3 * g)?;
    let (init, tail) = rest.split_at_checked(2 * chunks)?;
    // SAFETY: as above; i32 and u32 have the same layout.
    let tail: &'a [i32] = unsafe { &*(core::ptr::from_ref(tail) as *const [i32]) };
    Some(Packed { v, init, tail, n })
}

/// The `asm!` kernel's arithmetic for one row, instruction by instruction (`EOR`, `AND`, `ROR`,
/// `SMLAL`, the extraction): `Σ_i row[i] x[i]` over the groups, mod 2^32.
#[cfg(test)]
pub(crate) fn row_model(p: &Packed<'_>, row: &[i8]) -> i32 {
    let mut sum = 0i32;
    let (w4, _) = row.as_chunks::<4>();
    let (v3, _) = p.v.as_chunks::<3>();
    let (i2, _) = p.init.as_chunks::<2>();
    for ((wc, vc), ic) in w4.chunks(CHUNK).zip(v3.chunks(CHUNK)).zip(i2) {
        let mut t = (u64::from(ic[1]) << 32 | u64::from(ic[0])) as i64;
        for (w, &[v1, v2, k]) in wc.iter().zip(vc) {
            let r = u32::from_le_bytes(w.map(|b| b as u8)) ^ k;
            let u1 = r & MASK;
            let u2 = r.rotate_right(16) & MASK;
            t = t.wrapping_add(i64::from(u1 as i32) * i64::from(v1 as i32));
            t = t.wrapping_add(i64::from(u2 as i32) * i64::from(v2 as i32));
        }
        let (lo, hi) = (t as u32, (t >> 32) as u32);
        let mid = ((hi << 16) | (lo >> 16)) as i32;
        sum = sum.wrapping_add(mid >> 8);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::{prepare, row_model};
    use core::mem::MaybeUninit;

    /// xorshift32.
    fn next(s: &mut u32) -> u32 {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        *s
    }

    /// The model against the plain dot product: extremes (all -128, all 127, mixed signs next
    /// to -128 inputs), random values, widths up to 4 chunks.
    #[test]
    fn packed_arithmetic_is_exact() {
        const N: usize = 1100;
        let mut s = 0x1234_5678u32;
        let mut x = [0i8; N];
        let mut w = [0i8; N];
        let mut scratch = [MaybeUninit::<i32>::uninit(); N];
        for case in 0..600 {
            let n = match case % 5 {
                0 => 8 + case % 13,
                1 => 256 + case % 9,
                2 => N - case % 7,
                _ => 8 + next(&mut s) as usize % (N - 8),
            };
            let pick = |s: &mut u32, mode: usize| -> i8 {
                match mode {
                    0 => -128,
                    1 => 127,
                    2 => [-128, 127, -1, 0]
                        .get(next(s) as usize % 4)
                        .copied()
                        .unwrap_or(0),
                    3 => [-128i8, -127, 126, 127]
                        .get(next(s) as usize % 4)
                        .copied()
                        .unwrap_or(0),
                    _ => next(s) as i8,
                }
            };
            let (mx, mw) = ((case / 5) % 6, (case / 30) % 6);
            for v in x.iter_mut().take(n) {
                *v = pick(&mut s, mx);
            }
            for v in w.iter_mut().take(n) {
                *v = pick(&mut s, mw);
            }
            let (x, w) = (
                x.get(..n).unwrap_or_default(),
                w.get(..n).unwrap_or_default(),
            );
            let p = prepare(x, &mut scratch);
            assert!(p.is_some(), "not prepared: n {n}");
            let Some(p) = p else { return };
            let g4 = 4 * (n / 4);
            let want = w.iter().zip(x).take(g4).fold(0i32, |a, (&w, &x)| {
                a.wrapping_add(i32::from(w) * i32::from(x))
            });
            assert_eq!(row_model(&p, w), want, "case {case}, n {n}");
            assert_eq!((p.tail.len(), p.n), (n % 4, n));
            for (&t, &xv) in p.tail.iter().zip(x.iter().skip(g4)) {
                assert_eq!(t, i32::from(xv));
            }
        }
    }

    /// The packing of the narrow kernel (`armv7m_narrow::prepare`, one chunk of `g <= 32`
    /// groups), instruction by instruction: its `V1`, `V2`, keys (`CMN #128` overflow) and
    /// start value from the lane sums and the count of special pairs.
    fn narrow_model(x: &[i8], v: &mut [u32; 96]) -> [u32; 2] {
        let (mut lanes, mut special) = (0u32, 0i64);
        let (xg, _) = x.as_chunks::<4>();
        let (v3, _) = v.as_chunks_mut::<3>();
        for (o, w) in v3.iter_mut().zip(xg) {
            let r4 = u32::from_le_bytes(w.map(|b| b as u8));
            let v1 = (r4 << 24).wrapping_add(((r4 as i32) >> 24) as u32);
            let x1 = i32::from((r4 >> 8) as u8 as i8) as u32;
            let v2 = x1.wrapping_add((r4 & 0x00FF_0000) << 8);
            lanes = lanes.wrapping_add((r4 ^ 0x8080_8080) & 0x00FF_00FF);
            let mut k = 0x0080_0080u32;
            if (v1 as i32).checked_add(128).is_none() {
                k ^= 0xFF;
                special += 1;
            }
            if (v2 as i32).checked_add(128).is_none() {
                k ^= 0x00FF_0000;
                special += 1;
            }
            *o = [v1, v2, k];
        }
        let g = xg.len() as i64;
        let l = i64::from((lanes & 0xFFFF) + (lanes >> 16));
        let c = 128 * l - 32768 * g + 32640 * special;
        let t0 = (1i64 << 23) - (c << 24);
        [t0 as u32, (t0 >> 32) as u32]
    }

    /// The narrow kernel's packing gives `prepare`'s words: every width of whole groups in
    /// 8..=128, inputs all -128, all 127, -128 next to negatives (the pairs with key `0x7F`),
    /// random.
    #[test]
    fn narrow_packing_equals_prepare() {
        let mut s = 0x0BAD_5EEDu32;
        let mut scratch = [MaybeUninit::<i32>::uninit(); 128];
        let mut x = [0i8; 128];
        for case in 0..2000 {
            let n = 4 * (2 + case % 31);
            for v in x.iter_mut().take(n) {
                *v = match (case / 31) % 4 {
                    0 => -128,
                    1 => 127,
                    2 => [-128i8, -1, -128, 5]
                        .get(next(&mut s) as usize % 4)
                        .copied()
                        .unwrap_or(0),
                    _ => next(&mut s) as i8,
                };
            }
            let x = x.get(..n).unwrap_or_default();
            let mut v = [0u32; 96];
            let init = narrow_model(x, &mut v);
            let p = prepare(x, &mut scratch);
            assert!(p.is_some(), "not prepared: n {n}");
            let Some(p) = p else { return };
            assert_eq!(p.init, &init[..], "case {case}, n {n}");
            assert_eq!(p.v, v.get(..3 * (n / 4)).unwrap_or_default(), "case {case}");
        }
    }

    /// Fewer than 8 inputs, or too short a scratch: not prepared.
    #[test]
    fn small_layers_are_not_prepared() {
        let mut scratch = [MaybeUninit::<i32>::uninit(); 16];
        assert!(prepare(&[1; 7], &mut scratch).is_none());
        assert!(prepare(&[1; 8], &mut scratch[..7]).is_none());
        assert!(prepare(&[1; 8], &mut scratch).is_some());
    }
}
