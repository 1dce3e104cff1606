//! The forward and backward passes of the product-of-experts training objective
//! ([`PoeModel`]).
//!
//! # Loss
//! For every trained subset `S` (the full set and each single group; one subset for one group)
//! and window, with one noise draw per subset:
//!
//! ```text
//! P = 1 + sum_{g in S} T_g,   mu = sum_{g in S} T_g mu_g / P,   lv = -ln P,   sd = P^(-1/2)
//! z = mu + sd eps,   m = D(z)
//! recon_S = 1/2 sum_{j: channel(j) in S} [ln 2 pi + lx_j + (x_j - m_j)^2 e^-lx_j]
//! kl_S    = 1/2 sum_k [sd_k^2 + mu_k^2 - 1 - lv_k]
//! objective = (1/B) sum_windows sum_S w_S (recon_S + beta kl_S)
//! ```
//!
//! `w_S` is the subset's weight ([`PoeModel::weights`], 1 for every subset unless the trainer
//! is given others, [`train_poe_recipe`](super::train_poe_recipe)).
//!
//! # Gradients through the product (per latent dimension, `w_g = T_g / P`)
//! ```text
//! dmu/dmu_g = w_g,   dmu/dlv_g = -w_g (mu_g - mu),   dlv/dlv_g = w_g
//! dL/dmu = dz + w_S beta mu / B,   dL/dlv = dz eps sd / 2 + w_S beta (sd^2 - 1) / (2B)
//! dL/ds_g = [-10 <= s_g <= 10] sum_{S ∋ g} (dL/dmu_S dmu_S/dlv_g + dL/dlv_S w_g)
//! ```
//!
//! The decoder runs once on all subsets' latents stacked along the batch (`|S| B` rows), so its
//! backward pass sums every subset's gradient; each expert's backward pass takes the sum over
//! the subsets that contain it. `tests/gradcheck.rs` checks every parameter against central
//! differences in f64 (`poe_gradient_matches_finite_differences`).

use super::super::arch::{
    NoiseKind, DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX, ENCODER_LOGVAR_MIN,
};
use super::super::model::{clamp, dense_backward, dense_forward, LossParts};
use super::super::real::Real;
use super::{PoeArch, PoeLayout};
use tinyvae::GroupSet;

/// ln(2π) in f64.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The passes of a [`PoeLayout`] (buffers allocated per call; training is dominated by the
/// products).
pub struct PoeModel {
    /// The layout.
    pub layout: PoeLayout,
    /// The subsets trained.
    pub subsets: Vec<GroupSet>,
    /// The weight `w_S` of each trained subset's terms (same order as `subsets`).
    pub weights: Vec<f64>,
}

struct Forward<T> {
    xg: Vec<Vec<T>>,
    enc_h: Vec<Vec<Vec<T>>>,
    heads: Vec<Vec<T>>,
    mu: Vec<T>,
    sd: Vec<T>,
    z: Vec<T>,
    dec_h: Vec<Vec<T>>,
    mean: Vec<T>,
    lx: Vec<T>,
    lx_live: Vec<bool>,
    iv: Vec<T>,
    parts: LossParts,
}

impl PoeModel {
    /// The passes of `arch`, training the full set and each single group.
    ///
    /// # Errors
    /// An invalid architecture.
    pub fn new(arch: &PoeArch) -> anyhow::Result<Self> {
        let subsets = arch.trained_subsets();
        Ok(Self {
            layout: PoeLayout::new(arch)?,
            weights: vec![1.0; subsets.len()],
            subsets,
        })
    }

    /// The passes of `arch` with the weight `single` on each single group's terms (the full
    /// set's weight stays 1; a one-group model has no single-group term).
    ///
    /// # Errors
    /// An invalid architecture or a weight that is not finite and positive.
    pub fn with_single_weight(arch: &PoeArch, single: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            single.is_finite() && single > 0.0,
            "the single-group weight must be finite and > 0, found {single}"
        );
        let mut m = Self::new(arch)?;
        let full = GroupSet::first(arch.groups.len());
        for (w, s) in m.weights.iter_mut().zip(&m.subsets) {
            if *s != full {
                *w = single;
            }
        }
        Ok(m)
    }

    /// Noise values a batch of `b` windows needs (`|subsets| b Z`).
    pub fn eps_len(&self, b: usize) -> usize {
        self.subsets.len() * b * self.layout.arch.latent
    }

    /// The objective of a batch `x` (`b x X`) with noise `eps` ([`Self::eps_len`]).
    ///
    /// # Errors
    /// Wrong lengths.
    pub fn loss<T: Real>(
        &self,
        theta: &[T],
        x: &[T],
        eps: &[T],
        beta: T,
    ) -> anyhow::Result<LossParts> {
        let b = self.check(theta, x, eps)?;
        Ok(self.forward(theta, x, eps, beta, b).parts)
    }

    /// The objective and its gradient (into `grad`, overwritten).
    ///
    /// # Errors
    /// Wrong lengths.
    pub fn loss_grad<T: Real>(
        &self,
        theta: &[T],
        x: &[T],
        eps: &[T],
        beta: T,
        grad: &mut [T],
    ) -> anyhow::Result<LossParts> {
        let b = self.check(theta, x, eps)?;
        anyhow::ensure!(grad.len() == self.layout.total, "grad length");
        let f = self.forward(theta, x, eps, beta, b);
        self.backward(theta, x, eps, beta, b, &f, grad);
        Ok(f.parts)
    }

    fn check<T>(&self, theta: &[T], x: &[T], eps: &[T]) -> anyhow::Result<usize> {
        let xd = self.layout.arch.input();
        anyhow::ensure!(theta.len() == self.layout.total, "theta length");
        anyhow::ensure!(
            !x.is_empty() && x.len().is_multiple_of(xd),
            "batch length {} is not a multiple of {xd}",
            x.len()
        );
        let b = x.len() / xd;
        anyhow::ensure!(eps.len() == self.eps_len(b), "eps length");
        Ok(b)
    }

    fn forward<T: Real>(&self, theta: &[T], x: &[T], eps: &[T], beta: T, b: usize) -> Forward<T> {
        let l = &self.layout;
        let a = &l.arch;
        let (xd, zd, c) = (a.input(), a.latent, a.channels);
        let ns = self.subsets.len();
        let rows = ns * b;
        let half = T::from_f64(0.5);
        // Experts.
        let mut xg = Vec::new();
        let mut enc_h = Vec::new();
        let mut heads = Vec::new();
        for (g, e) in l.experts.iter().enumerate() {
            let chans = &a.groups[g];
            let mut v = Vec::with_capacity(b * a.window * chans.len());
            for xr in x.chunks_exact(xd) {
                for step in xr.chunks_exact(c) {
                    v.extend(chans.iter().map(|&ch| step[ch]));
                }
            }
            let mut hs: Vec<Vec<T>> = Vec::new();
            for (i, s) in e.enc.iter().enumerate() {
                let mut out = vec![T::ZERO; b * s.out];
                let input: &[T] = if i == 0 { &v } else { &hs[i - 1] };
                dense_forward(theta, s, input, b, &mut out, true);
                hs.push(out);
            }
            let mut hd = vec![T::ZERO; b * 2 * zd];
            dense_forward(
                theta,
                &e.heads,
                hs.last().map_or(&v[..], |h| h),
                b,
                &mut hd,
                false,
            );
            xg.push(v);
            enc_h.push(hs);
            heads.push(hd);
        }
        // Products, noise, KL.
        let (lo, hi) = (
            T::from_f32(ENCODER_LOGVAR_MIN),
            T::from_f32(ENCODER_LOGVAR_MAX),
        );
        let mut mu = vec![T::ZERO; rows * zd];
        let mut sd = vec![T::ZERO; rows * zd];
        let mut z = vec![T::ZERO; rows * zd];
        let mut kl_sum = 0.0f64;
        for (si, s) in self.subsets.iter().enumerate() {
            for n in 0..b {
                let r = si * b + n;
                let mut kl = T::ZERO;
                for k in 0..zd {
                    let mut p = T::ONE;
                    let mut num = T::ZERO;
                    for g in s.iter() {
                        let h = &heads[g][n * 2 * zd..];
                        let t = (-clamp(h[zd + k], lo, hi)).exp();
                        p += t;
                        num += t * h[k];
                    }
                    let m = num / p;
                    let sdv = T::ONE / p.sqrt();
                    let lv = -p.to_f64().ln();
                    mu[r * zd + k] = m;
                    sd[r * zd + k] = sdv;
                    z[r * zd + k] = m + sdv * eps[r * zd + k];
                    kl += sdv * sdv + m * m - T::ONE - T::from_f64(lv);
                }
                kl_sum += self.weights[si] * (half * kl).to_f64();
            }
        }
        // Decoder on all rows.
        let mut dec_h: Vec<Vec<T>> = Vec::new();
        for (i, s) in l.dec.iter().enumerate() {
            let mut out = vec![T::ZERO; rows * s.out];
            let input: &[T] = if i == 0 { &z } else { &dec_h[i - 1] };
            dense_forward(theta, s, input, rows, &mut out, true);
            dec_h.push(out);
        }
        let mut mean = vec![T::ZERO; rows * xd];
        dense_forward(
            theta,
            &l.out,
            dec_h.last().map_or(&z[..], |h| h),
            rows,
            &mut mean,
            false,
        );
        // Likelihood over present features.
        let (dlo, dhi) = (
            T::from_f32(DECODER_LOGVAR_MIN),
            T::from_f32(DECODER_LOGVAR_MAX),
        );
        let noise = &theta[l.noise.clone()];
        let mut lx = vec![T::ZERO; xd];
        let mut lx_live = vec![false; xd];
        let mut iv = vec![T::ONE; xd];
        for j in 0..xd {
            let p = match a.noise {
                NoiseKind::PerFeature => noise[j],
                NoiseKind::PerChannel => noise[j % c],
                NoiseKind::Unit => T::ZERO,
            };
            lx_live[j] = p >= dlo && p <= dhi;
            lx[j] = clamp(p, dlo, dhi);
            iv[j] = (-lx[j]).exp();
        }
        let ln2pi = T::from_f64(LN_2PI);
        let mut recon_sum = 0.0f64;
        for (si, s) in self.subsets.iter().enumerate() {
            let present: Vec<bool> = (0..xd).map(|j| a.present(*s, j)).collect();
            for n in 0..b {
                let r = si * b + n;
                let xr = &x[n * xd..(n + 1) * xd];
                let mr = &mean[r * xd..(r + 1) * xd];
                let mut q = T::ZERO;
                for j in 0..xd {
                    if present[j] {
                        let d = xr[j] - mr[j];
                        q += ln2pi + lx[j] + d * d * iv[j];
                    }
                }
                recon_sum += self.weights[si] * (half * q).to_f64();
            }
        }
        let bf = b as f64;
        let (recon, kl) = (recon_sum / bf, kl_sum / bf);
        Forward {
            xg,
            enc_h,
            heads,
            mu,
            sd,
            z,
            dec_h,
            mean,
            lx,
            lx_live,
            iv,
            parts: LossParts {
                loss: recon + beta.to_f64() * kl,
                recon,
                kl,
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward<T: Real>(
        &self,
        theta: &[T],
        x: &[T],
        eps: &[T],
        beta: T,
        b: usize,
        f: &Forward<T>,
        grad: &mut [T],
    ) {
        let l = &self.layout;
        let a = &l.arch;
        let (xd, zd, c) = (a.input(), a.latent, a.channels);
        let rows = self.subsets.len() * b;
        let inv_b = T::ONE / T::from_f64(b as f64);
        let half = T::from_f64(0.5);
        let _ = &f.lx;
        // Output: d/dmean over present features, d/dlx.
        let mut g_mean = vec![T::ZERO; rows * xd];
        let mut g_lx = vec![T::ZERO; xd];
        for (si, s) in self.subsets.iter().enumerate() {
            let present: Vec<bool> = (0..xd).map(|j| a.present(*s, j)).collect();
            let wb = T::from_f64(self.weights[si]) * inv_b;
            for n in 0..b {
                let r = si * b + n;
                for j in 0..xd {
                    if present[j] {
                        let d = x[n * xd + j] - f.mean[r * xd + j];
                        let div = d * f.iv[j];
                        g_mean[r * xd + j] = -div * wb;
                        g_lx[j] += half * (T::ONE - d * div) * wb;
                    }
                }
            }
        }
        let gn = &mut grad[l.noise.clone()];
        gn.fill(T::ZERO);
        for j in 0..xd {
            if f.lx_live[j] {
                match a.noise {
                    NoiseKind::PerFeature => gn[j] += g_lx[j],
                    NoiseKind::PerChannel => gn[j % c] += g_lx[j],
                    NoiseKind::Unit => {}
                }
            }
        }
        // Decoder, top down.
        let widest = l
            .dec
            .iter()
            .map(|s| s.out.max(s.inp))
            .chain([xd, zd])
            .max()
            .unwrap_or(xd);
        let mut ga = g_mean;
        ga.resize(rows * widest, T::ZERO);
        let mut gb = vec![T::ZERO; rows * widest];
        let nd = l.dec.len();
        let last = f.dec_h.last().map_or(&f.z[..], |h| h);
        dense_backward(theta, &l.out, last, rows, &ga, grad, Some(&mut gb), nd > 0);
        core::mem::swap(&mut ga, &mut gb);
        for i in (0..nd).rev() {
            let input: &[T] = if i == 0 { &f.z } else { &f.dec_h[i - 1] };
            dense_backward(
                theta,
                &l.dec[i],
                input,
                rows,
                &ga,
                grad,
                Some(&mut gb),
                i > 0,
            );
            core::mem::swap(&mut ga, &mut gb);
        }
        // ga = dz (rows x Z). Through the products into each expert's heads.
        let (lo, hi) = (
            T::from_f32(ENCODER_LOGVAR_MIN),
            T::from_f32(ENCODER_LOGVAR_MAX),
        );
        let mut g_heads: Vec<Vec<T>> = (0..a.groups.len())
            .map(|_| vec![T::ZERO; b * 2 * zd])
            .collect();
        for (si, s) in self.subsets.iter().enumerate() {
            let kb = T::from_f64(self.weights[si]) * beta * inv_b;
            for n in 0..b {
                let r = si * b + n;
                for k in 0..zd {
                    let i = r * zd + k;
                    let dz = ga[i];
                    let (m, sdv) = (f.mu[i], f.sd[i]);
                    let dmu = dz + kb * m;
                    let dlv = half * (dz * eps[i] * sdv + kb * (sdv * sdv - T::ONE));
                    let p = T::ONE / (sdv * sdv);
                    for g in s.iter() {
                        let h = &f.heads[g][n * 2 * zd..];
                        let t = (-clamp(h[zd + k], lo, hi)).exp();
                        let w = t / p;
                        let gh = &mut g_heads[g][n * 2 * zd..];
                        gh[k] += dmu * w;
                        gh[zd + k] += -dmu * w * (h[k] - m) + dlv * w;
                    }
                }
            }
        }
        // Experts, top down.
        for (g, e) in l.experts.iter().enumerate() {
            let gh = &mut g_heads[g];
            for n in 0..b {
                for k in 0..zd {
                    let s = f.heads[g][n * 2 * zd + zd + k];
                    if !(s >= lo && s <= hi) {
                        gh[n * 2 * zd + zd + k] = T::ZERO;
                    }
                }
            }
            let xg = &f.xg[g];
            let ne = e.enc.len();
            let w = e
                .enc
                .iter()
                .map(|s| s.out.max(s.inp))
                .chain([2 * zd])
                .max()
                .unwrap_or(2 * zd);
            let mut ga = gh.clone();
            ga.resize(b * w, T::ZERO);
            let mut gb = vec![T::ZERO; b * w];
            let last = f.enc_h[g].last().map_or(&xg[..], |h| h);
            dense_backward(
                theta,
                &e.heads,
                last,
                b,
                &ga,
                grad,
                (ne > 0).then_some(&mut gb[..]),
                true,
            );
            core::mem::swap(&mut ga, &mut gb);
            for i in (0..ne).rev() {
                let input: &[T] = if i == 0 { xg } else { &f.enc_h[g][i - 1] };
                let din = (i > 0).then_some(&mut gb[..]);
                dense_backward(theta, &e.enc[i], input, b, &ga, grad, din, true);
                core::mem::swap(&mut ga, &mut gb);
            }
        }
    }
}
