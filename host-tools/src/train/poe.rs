//! Training the multi-sensor product-of-experts VAE (MVAE, Wu & Goodman 2018): forward and
//! backward passes through the product, and the training loop.
//!
//! # Model ([`PoeArch`])
//! Group `g` (channels `M_g`, ascending) has its own encoder over its sub-window
//! `x_g[t |M_g| + j] = x[t C + M_g[j]]` (the hidden widths of `encoder_hidden`), heads
//! `mu_g`, `s_g` (Z each), `lv_g = clamp(s_g, -10, 10)`, `T_g = exp(-lv_g)`. One decoder (as in
//! the single VAE) maps z to all X features, with the learned decoder variance `lx`.
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
//! is given others, [`train_poe_recipe`]).
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

use super::adam::Adam;
use super::arch::{
    NoiseKind, DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX, ENCODER_LOGVAR_MIN,
};
use super::model::{clamp, dense_backward, dense_forward, DenseSlot, LossParts, SlotAlloc};
use super::params::Linear;
use super::real::Real;
use super::rng;
use super::trainer::{run_epochs, shuffled_pass, TrainConfig, TrainReport, VAL_SEED_MIX};
use crate::data::WindowView;
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;
use std::ops::Range;
use std::time::Instant;
use tinyvae::GroupSet;

/// ln(2π) in f64.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The shape of a product-of-experts model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoeArch {
    /// W: samples per window.
    pub window: usize,
    /// C: channels per sample.
    pub channels: usize,
    /// The channels of each group (ascending, disjoint, covering `0..C`), 1 to 4 groups.
    pub groups: Vec<Vec<usize>>,
    /// Widths of each expert's hidden ReLU layers.
    pub encoder_hidden: Vec<usize>,
    /// Z.
    pub latent: usize,
    /// Widths of the decoder's hidden ReLU layers.
    pub decoder_hidden: Vec<usize>,
    /// The decoder's variance model.
    pub noise: NoiseKind,
}

impl PoeArch {
    /// X = W C.
    pub fn input(&self) -> usize {
        self.window * self.channels
    }

    /// Checks the groups and widths.
    ///
    /// # Errors
    /// Names what is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=tinyvae::MAX_GROUPS).contains(&self.groups.len()),
            "1 to {} sensor groups, found {}",
            tinyvae::MAX_GROUPS,
            self.groups.len()
        );
        let mut seen = vec![false; self.channels];
        for g in &self.groups {
            anyhow::ensure!(!g.is_empty(), "a sensor group has no channel");
            for &c in g {
                anyhow::ensure!(c < self.channels, "channel {c} out of range");
                anyhow::ensure!(!seen[c], "channel {c} is in two groups");
                seen[c] = true;
            }
        }
        anyhow::ensure!(seen.iter().all(|&s| s), "every channel must be in a group");
        anyhow::ensure!(
            self.window > 0 && self.latent > 0,
            "window and latent must be > 0"
        );
        anyhow::ensure!(
            (1..=3).contains(&self.encoder_hidden.len())
                && (1..=3).contains(&self.decoder_hidden.len())
                && self
                    .encoder_hidden
                    .iter()
                    .chain(&self.decoder_hidden)
                    .all(|&w| w > 0),
            "1 to 3 hidden layers of positive width on each side"
        );
        Ok(())
    }

    /// The subsets trained: the full set, then each single group (only the full set for one
    /// group).
    pub fn trained_subsets(&self) -> Vec<GroupSet> {
        let g = self.groups.len();
        let mut v = vec![GroupSet::first(g)];
        if g > 1 {
            v.extend((0..g).map(|i| GroupSet(1 << i)));
        }
        v
    }

    /// Whether feature `j` (of X) belongs to a group of `s`.
    fn present(&self, s: GroupSet, j: usize) -> bool {
        let c = j % self.channels;
        s.iter().any(|g| self.groups[g].contains(&c))
    }
}

/// Where one expert lives in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpertSlots {
    /// Hidden layers.
    pub enc: Vec<DenseSlot>,
    /// `mu` and `logvar` heads stacked (`out = 2Z`).
    pub heads: DenseSlot,
}

/// The flat layout: experts in group order, then decoder hidden layers, the output, the noise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoeLayout {
    /// The architecture.
    pub arch: PoeArch,
    /// One per group.
    pub experts: Vec<ExpertSlots>,
    /// Decoder hidden layers.
    pub dec: Vec<DenseSlot>,
    /// Decoder output.
    pub out: DenseSlot,
    /// Trained decoder log-variances (X, C or 0 values).
    pub noise: Range<usize>,
    /// Number of parameters.
    pub total: usize,
}

impl PoeLayout {
    /// The layout of a validated architecture.
    ///
    /// # Errors
    /// An invalid architecture.
    pub fn new(arch: &PoeArch) -> anyhow::Result<Self> {
        arch.validate()?;
        let mut a = SlotAlloc::default();
        let experts = arch
            .groups
            .iter()
            .map(|g| {
                let (enc, h) = a.stack(arch.window * g.len(), &arch.encoder_hidden);
                let heads = a.dense(h, 2 * arch.latent);
                ExpertSlots { enc, heads }
            })
            .collect();
        let (dec, h) = a.stack(arch.latent, &arch.decoder_hidden);
        let out = a.dense(h, arch.input());
        let n_noise = match arch.noise {
            NoiseKind::PerFeature => arch.input(),
            NoiseKind::PerChannel => arch.channels,
            NoiseKind::Unit => 0,
        };
        let noise = a.off..a.off + n_noise;
        Ok(Self {
            arch: arch.clone(),
            experts,
            dec,
            out,
            total: noise.end,
            noise,
        })
    }

    /// Fresh weights like `nn.Linear` (uniform ±1/sqrt(fan_in), weight then bias, slot by slot),
    /// decoder log-variances 0.
    pub fn init(&self, rng: &mut XorShiftRng) -> Vec<f32> {
        let mut theta = vec![0.0f32; self.total];
        let slots = self
            .experts
            .iter()
            .flat_map(|e| e.enc.iter().chain([&e.heads]))
            .chain(&self.dec)
            .chain([&self.out]);
        for s in slots {
            let a = 1.0 / (s.inp as f32).sqrt();
            for v in &mut theta[s.w..s.b + s.out] {
                *v = rng::uniform_sym(rng, a);
            }
        }
        theta
    }

    /// The trained weights of a flat vector.
    pub fn unflatten(&self, theta: &[f32]) -> PoeParams {
        let get = |r: Range<usize>| theta[r].to_vec();
        let lin = |s: &DenseSlot| Linear {
            in_features: s.inp,
            out_features: s.out,
            weight: get(s.w..s.w + s.inp * s.out),
            bias: get(s.b..s.b + s.out),
        };
        let z = self.arch.latent;
        let experts = self
            .experts
            .iter()
            .map(|e| {
                let h = e.heads;
                let head = |k: usize| Linear {
                    in_features: h.inp,
                    out_features: z,
                    weight: get(h.w + k * z * h.inp..h.w + (k + 1) * z * h.inp),
                    bias: get(h.b + k * z..h.b + (k + 1) * z),
                };
                ExpertParams {
                    encoder: e.enc.iter().map(lin).collect(),
                    mu: head(0),
                    logvar: head(1),
                }
            })
            .collect();
        let c = self.arch.channels;
        let noise = get(self.noise.clone());
        let decoder_logvar = (0..self.arch.input())
            .map(|j| {
                let v = match self.arch.noise {
                    NoiseKind::PerFeature => noise[j],
                    NoiseKind::PerChannel => noise[j % c],
                    NoiseKind::Unit => 0.0,
                };
                v.clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX)
            })
            .collect();
        PoeParams {
            arch: self.arch.clone(),
            experts,
            decoder: self.dec.iter().map(lin).collect(),
            decoder_out: lin(&self.out),
            decoder_logvar,
        }
    }
}

/// One expert's trained weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpertParams {
    /// Hidden layers (ReLU).
    pub encoder: Vec<Linear>,
    /// Mean head.
    pub mu: Linear,
    /// Log-variance head.
    pub logvar: Linear,
}

/// A trained product-of-experts model.
#[derive(Clone, Debug, PartialEq)]
pub struct PoeParams {
    /// Its shape.
    pub arch: PoeArch,
    /// One per group.
    pub experts: Vec<ExpertParams>,
    /// Decoder hidden layers (ReLU).
    pub decoder: Vec<Linear>,
    /// Decoder output.
    pub decoder_out: Linear,
    /// Effective decoder log-variances (X values, clamped).
    pub decoder_logvar: Vec<f32>,
}

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

/// Trains a product-of-experts model on `train` with early stopping on `val` (the objective
/// summed over the trained subsets, `beta = 1`, one fixed noise draw per validation window and
/// subset), as [`super::train_views`] does for the single VAE: same shuffles, Adam, KL warm-up
/// and patience.
///
/// # Errors
/// Invalid shapes or configuration, empty or non-finite data, divergence.
pub fn train_poe(
    arch: &PoeArch,
    cfg: &TrainConfig,
    train: WindowView<'_>,
    val: WindowView<'_>,
) -> anyhow::Result<(PoeParams, TrainReport)> {
    train_poe_recipe(arch, cfg, &PoeRecipe::default(), train, val)
}

/// Training variants measured by `poe_bench` (README, "Multi-sensor models"); the default is
/// what `tinyvae train --group` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoeRecipe {
    /// Weight of each single group's terms ([`PoeModel::with_single_weight`]).
    pub single_weight: f64,
    /// Weight of the full set's terms.
    pub full_weight: f64,
    /// The learning rate falls along a half cosine from `lr` to `lr * lr_final` over the
    /// epochs (1: constant).
    pub lr_final: f64,
    /// Decoder output restricted to a block diagonal: the decoder's last hidden layer is cut
    /// into one block per group (in group order) and block g's units feed only group g's
    /// features (the other output weights are held at 0). This trains, in the shared layout,
    /// the function of one decoder per group of `hidden / G` units each.
    pub block_decoder: bool,
}

impl Default for PoeRecipe {
    fn default() -> Self {
        Self {
            single_weight: 1.0,
            full_weight: 1.0,
            lr_final: 1.0,
            block_decoder: false,
        }
    }
}

/// Indices into the flat vector of the decoder output weights a block-diagonal decoder holds
/// at 0 ([`PoeRecipe::block_decoder`]): the weight of hidden unit h to feature j when
/// `h * G / H` is not feature j's group.
fn off_block_weights(layout: &PoeLayout) -> Vec<usize> {
    let (a, o) = (&layout.arch, layout.out);
    let g = a.groups.len();
    let mut idx = Vec::new();
    for j in 0..o.out {
        let ch = j % a.channels;
        let gj = a.groups.iter().position(|m| m.contains(&ch));
        for h in 0..o.inp {
            if Some(h * g / o.inp) != gj {
                idx.push(o.w + j * o.inp + h);
            }
        }
    }
    idx
}

/// [`train_poe`] with the variants of `recipe`; the subset weights count in training and in
/// the validation objective. `PoeRecipe::default()` is `train_poe`.
///
/// # Errors
/// As [`train_poe`], and a weight or `lr_final` that is not finite and positive.
pub fn train_poe_recipe(
    arch: &PoeArch,
    cfg: &TrainConfig,
    recipe: &PoeRecipe,
    train: WindowView<'_>,
    val: WindowView<'_>,
) -> anyhow::Result<(PoeParams, TrainReport)> {
    let start = Instant::now();
    cfg.validate()?;
    let mut model = PoeModel::with_single_weight(arch, recipe.single_weight)?;
    for (what, v) in [
        ("full-set weight", recipe.full_weight),
        ("lr_final", recipe.lr_final),
    ] {
        anyhow::ensure!(
            v.is_finite() && v > 0.0,
            "the {what} must be finite and > 0, found {v}"
        );
    }
    model.weights[0] = recipe.full_weight;
    let layout = &model.layout;
    let off_block = if recipe.block_decoder {
        off_block_weights(layout)
    } else {
        Vec::new()
    };
    let hold = |theta: &mut [f32]| {
        for &i in &off_block {
            theta[i] = 0.0;
        }
    };
    let xd = arch.input();
    anyhow::ensure!(train.dim() == xd && val.dim() == xd, "window width");
    let n = train.len();
    anyhow::ensure!(n > 0, "training data: no windows");
    let nv = val.len();
    for w in train.iter().chain(val.iter()) {
        anyhow::ensure!(w.iter().all(|v| v.is_finite()), "non-finite training data");
    }
    let b = cfg.batch.min(n);
    let mut rng = XorShiftRng::seed_from_u64(cfg.seed);
    let mut theta = layout.init(&mut rng);
    hold(&mut theta);
    let mut grad = vec![0.0f32; layout.total];
    let mut adam = Adam::new(layout.total, cfg.lr, cfg.beta1, cfg.beta2, cfg.adam_eps);
    let mut val_eps = vec![0.0f32; model.eps_len(nv.max(1))];
    rng::fill_normal(
        &mut XorShiftRng::seed_from_u64(cfg.seed ^ VAL_SEED_MIX),
        &mut val_eps,
    );
    let mut order: Vec<u32> = (0..u32::try_from(n)?).collect();
    let mut xb = vec![0.0f32; b * xd];
    let mut eps = vec![0.0f32; model.eps_len(b)];
    let fit = run_epochs(
        cfg,
        &mut theta,
        &mut (),
        |(), theta, e, beta| {
            if recipe.lr_final != 1.0 {
                let c = 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / cfg.epochs as f64).cos());
                adam.lr = cfg.lr * (recipe.lr_final + (1.0 - recipe.lr_final) * c);
            }
            shuffled_pass(&mut rng, &mut order, train, &mut xb, |xs, k, rng| {
                let es = &mut eps[..model.eps_len(k)];
                rng::fill_normal(rng, es);
                let p = model.loss_grad(theta, xs, es, beta as f32, &mut grad)?;
                adam.step(theta, &grad);
                hold(theta);
                Ok(p)
            })
        },
        |(), theta| {
            if nv == 0 {
                return Ok(None);
            }
            val_objective(&model, theta, val, &val_eps).map(Some)
        },
    )?;
    Ok((
        layout.unflatten(&fit.best),
        fit.report(n, nv, layout.total, start),
    ))
}

/// Mean validation objective (beta = 1) per window, in batches of 256 windows.
fn val_objective(
    model: &PoeModel,
    theta: &[f32],
    val: WindowView<'_>,
    val_eps: &[f32],
) -> anyhow::Result<LossParts> {
    let zd = model.layout.arch.latent;
    let ns = model.subsets.len();
    let nv = val.len();
    let mut acc = LossParts::default();
    let mut xb = Vec::new();
    let mut eb = Vec::new();
    let mut start = 0;
    while start < nv {
        let k = (nv - start).min(256);
        xb.clear();
        eb.clear();
        for i in start..start + k {
            xb.extend_from_slice(val.get(i));
        }
        // Noise: subset-major within the batch, drawn per (window, subset) from the fixed stream.
        for si in 0..ns {
            for i in start..start + k {
                let o = (i * ns + si) * zd;
                eb.extend_from_slice(&val_eps[o..o + zd]);
            }
        }
        let p = model.loss(theta, &xb, &eb, 1.0f32)?;
        acc.add(&p, k);
        start += k;
    }
    Ok(acc.mean(nv))
}
