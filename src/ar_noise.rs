//! Autoregressive decoder noise: the residual of each channel follows an AR(`p`) process over
//! time, so the likelihood sees the residual's correlation between neighbouring samples that a
//! per-feature (diagonal) noise model cannot.
//!
//! For a window `x` (time-major, `x[t C + c]`, `W` steps), the decoder's mean `m` and the
//! residual `d[t, c] = x[t C + c] - m[t C + c]`, each channel `c` has coefficients
//! `a[c, 1..=p]` (stored `a[c p + k - 1]`) and every feature a precision `P[t C + c]`:
//!
//! ```text
//! nu[t, c] = d[t, c]                                   t < p   (the first p samples)
//! nu[t, c] = d[t, c] - sum_{k=1..p} a[c, k] d[t-k, c]  t >= p
//! log p(x | z) = log_norm - 1/2 sum_c sum_t nu[t, c]^2 P[t C + c]
//! log_norm     = -1/2 sum_i (ln 2 pi - ln P[i])
//! ```
//!
//! Each `x[t C + c]` given its channel's `p` previous samples is Gaussian with variance
//! `1 / P[t C + c]`; the map `d -> nu` is triangular with a unit diagonal (its Jacobian is 1),
//! so this is a normalized density of `x`: the Gaussian `N(m, Sigma)` whose precision
//! `Sigma^-1 = L^T diag(P) L` has the band of `L` (`L[t, t] = 1`, `L[t, t-k] = -a[k]`) within
//! each channel. `p = 0` is the diagonal model of [`DecoderNoise`](crate::DecoderNoise).
//! `tests/ar_noise.rs` checks the value against that Gaussian's closed form.
//!
//! Cost: `p` multiply-adds per counted feature on top of the diagonal model. The sum runs
//! channel by channel (ascending), each over time, so host and chip add in the same order.

use crate::vae::same_len;
use crate::{ChannelMask, Error};

/// Largest AR order the library evaluates. Order 4 was measured and left out: a 3-axis pass of
/// order 4 no longer keeps its history in the M4's 32 float registers (2,648 more instructions
/// than order 3 for the bundled set's default model), for at most 1.3 nats per window of
/// validation likelihood there.
pub const MAX_AR_ORDER: usize = 3;

/// `sum_c sum_t nu[t, c]^2 P[t C + c]` over the channels in `used` (see the module doc):
/// `x`, `mean` and `precision` hold `W C` values, `coef` holds `C p`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the lengths disagree (`x`, `mean` and `precision` not equally
/// long or not whole steps of `channels`, `coef` not `channels * order` long);
/// [`Error::InvalidParameter`] for an order above [`MAX_AR_ORDER`] or no channel.
pub fn ar_quadratic(
    x: &[f32],
    mean: &[f32],
    precision: &[f32],
    coef: &[f32],
    order: usize,
    channels: usize,
    used: ChannelMask,
) -> Result<f32, Error> {
    same_len(precision.len(), x.len())?;
    same_len(precision.len(), mean.len())?;
    if channels == 0 || order > MAX_AR_ORDER {
        return Err(Error::InvalidParameter);
    }
    same_len(channels * order, coef.len())?;
    if !x.len().is_multiple_of(channels) {
        return Err(Error::ShapeMismatch {
            expected: (x.len() / channels + 1) * channels,
            found: x.len(),
        });
    }
    let mut q = 0.0f32;
    let c = channels.min(32);
    let mut ch = 0;
    while ch < c {
        if !used.contains(ch) {
            ch += 1;
            continue;
        }
        // Three adjacent channels (a 3-axis sensor) share one pass over the steps; each keeps
        // its own sum, added in channel order, so the result is the one-channel passes'.
        let k = if ch + 2 < c && used.contains(ch + 1) && used.contains(ch + 2) {
            3
        } else {
            1
        };
        if k == 3 {
            for s in by_order::<3>(x, mean, precision, coef, order, ch, channels) {
                q += s;
            }
        } else {
            for s in by_order::<1>(x, mean, precision, coef, order, ch, channels) {
                q += s;
            }
        }
        ch += k;
    }
    Ok(q)
}

/// The sums of the `K` channels `ch..ch + K` for the runtime `order`.
#[inline(always)]
fn by_order<const K: usize>(
    x: &[f32],
    mean: &[f32],
    precision: &[f32],
    coef: &[f32],
    order: usize,
    ch: usize,
    channels: usize,
) -> [f32; K] {
    let steps = Strided::<K> {
        x,
        mean,
        precision,
        i: ch,
        stride: channels,
    };
    let a = |n: usize| coef.get(ch * n..(ch + K) * n).unwrap_or(&[]);
    match order {
        0 => lanes_sum::<K, 0>(steps, a(0)),
        1 => lanes_sum::<K, 1>(steps, a(1)),
        2 => lanes_sum::<K, 2>(steps, a(2)),
        _ => lanes_sum::<K, 3>(steps, a(3)),
    }
}

/// `K` adjacent channels' residuals and precisions `(x_i - mean_i, P_i)` at every step,
/// `i = ch + j, ch + j + C, ...` for lane `j`.
struct Strided<'s, const K: usize> {
    x: &'s [f32],
    mean: &'s [f32],
    precision: &'s [f32],
    i: usize,
    stride: usize,
}

impl<const K: usize> Iterator for Strided<'_, K> {
    type Item = ([f32; K], [f32; K]);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let i = self.i;
        let end = i + K;
        match (
            self.x.get(i..end),
            self.mean.get(i..end),
            self.precision.get(i..end),
        ) {
            (Some(xs), Some(ms), Some(ps)) => {
                self.i = i + self.stride;
                let mut d = [0.0f32; K];
                let mut p = [0.0f32; K];
                for (((dj, pj), &xj), (&mj, &pv)) in d
                    .iter_mut()
                    .zip(p.iter_mut())
                    .zip(xs)
                    .zip(ms.iter().zip(ps))
                {
                    *dj = xj - mj;
                    *pj = pv;
                }
                Some((d, p))
            }
            _ => None,
        }
    }
}

/// `K` channels' `sum_t nu_t^2 P_t` for a fixed order `N` (coefficients `a`, `N` per channel;
/// the history in registers): the first `N` steps unpredicted, then the predicted ones,
/// without a per-step test.
#[inline(always)]
fn lanes_sum<const K: usize, const N: usize>(
    mut steps: impl Iterator<Item = ([f32; K], [f32; K])>,
    a: &[f32],
) -> [f32; K] {
    let mut coef = [[0.0f32; N]; K];
    for (lane, src) in coef.iter_mut().zip(a.chunks_exact(N.max(1))) {
        for (c, &v) in lane.iter_mut().zip(src) {
            *c = v;
        }
    }
    // hist[j][k] = d[t - 1 - k] of lane j
    let mut hist = [[0.0f32; N]; K];
    let mut q = [0.0f32; K];
    for k in (0..N).rev() {
        let Some((d, p)) = steps.next() else {
            return q;
        };
        for (((qj, hj), &dj), &pj) in q.iter_mut().zip(hist.iter_mut()).zip(&d).zip(&p) {
            *qj += dj * dj * pj;
            if let Some(h) = hj.get_mut(k) {
                *h = dj;
            }
        }
    }
    for (d, p) in steps {
        let lanes = q.iter_mut().zip(hist.iter_mut()).zip(&coef).zip(&d).zip(&p);
        for ((((qj, hj), cj), &dj), &pj) in lanes {
            let mut nu = dj;
            for (&c, &h) in cj.iter().zip(hj.iter()) {
                nu -= c * h;
            }
            *qj += nu * nu * pj;
            hj.copy_within(0..N.saturating_sub(1), 1.min(N));
            if let Some(h0) = hj.first_mut() {
                *h0 = dj;
            }
        }
    }
    q
}
