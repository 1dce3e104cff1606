//! The multi-row kernel's interface on every target without its `asm!` (the host, A/R
//! profiles, the DSP cores): the sums of the `asm!` kernels with the Armv6-M kernel's
//! preconditions (one word of scratch per input, at least four inputs) and output stage
//! (`finish`, else `slow`), so that the host tests run the same fallbacks.

/// The prepared input: widened to words.
pub(crate) struct Input<'a> {
    xw: &'a [i32],
}

/// Widens `x` into `scratch`; `None` unless `x.len() >= 4` and `scratch` holds it. `_fused`
/// (whether the output stage is `finish`'s) picks the kernel on Armv7-M only.
pub(crate) fn prepare<'a>(
    x: &[i8],
    scratch: &'a mut [core::mem::MaybeUninit<i32>],
    _fused: impl FnOnce() -> bool,
) -> Option<Input<'a>> {
    if x.len() < 4 {
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

/// `bias[o] + Σ_i w[o][i] x[i]` (mod 2^32) for every row, then [`finish`](super::finish)
/// with `l.zp2` and `slow` for the rows it does not take (all rows without); returns the
/// number of rows written.
pub(crate) fn layer(
    inp: &Input<'_>,
    l: super::Layer<'_, '_>,
    slow: impl Fn(i32, crate::Requant) -> i8,
) -> usize {
    let n = inp.xw.len();
    let rows = (l.weights.len() / n)
        .min(l.bias.len())
        .min(l.requant.len())
        .min(l.y.len());
    let outs = l.y.iter_mut().zip(l.bias).zip(l.requant);
    for (((yo, &b), &rq), row) in outs.zip(l.weights.chunks_exact(n)).take(rows) {
        let acc = row.iter().zip(inp.xw).fold(b, |s, (&w, &x)| {
            s.wrapping_add(i32::from(w).wrapping_mul(x))
        });
        let fast = l.zp2.and_then(|zp2| super::finish(acc, rq, zp2));
        *yo = fast.unwrap_or_else(|| slow(acc, rq));
    }
    rows
}
