//! Forward and backward passes of the VAE, written out by hand, generic over [`Real`].
//!
//! # Math (one window x, one noise draw eps; B windows per batch)
//!
//! ```text
//! h_0 = x,  h_l = relu(W_l h_{l-1} + b_l)              encoder hidden layers
//! mu = W_mu h + b_mu,  s = W_lv h + b_lv,  lv = clamp(s, -10, 10)
//! sd = exp(lv / 2),  z = mu + sd * eps
//! g_0 = z,  g_l = relu(V_l g_{l-1} + c_l),  m = V_out g + c_out       decoder
//! lx_j = clamp(theta_noise[j or j mod C], -7, 7)   (0 for unit variance),  iv_j = exp(-lx_j)
//! recon = 1/2 sum_j [ ln(2 pi) + lx_j + (x_j - m_j)^2 iv_j ]           = -log N(x; m, e^lx)
//! kl    = 1/2 sum_k [ sd_k^2 + mu_k^2 - 1 - lv_k ]                      = KL(q(z|x) || N(0, I))
//! objective = (1/B) sum_batch (recon + beta kl)
//! ```
//!
//! # Gradients (of the batch objective; every 1/B folded in at the output)
//!
//! ```text
//! dL/dm_j   = -(x_j - m_j) iv_j / B
//! dL/dlx_j  = (1/B) sum_n 1/2 (1 - (x_nj - m_nj)^2 iv_j)   [if -7 <= param <= 7, else 0;
//!                                                          summed over t for per-channel]
//! dense y = W a + b:  dW = dy^T a (a gemm over the batch),  db = sum_n dy,  da = dy W
//! relu:  da = dy * [y > 0]
//! dL/dmu_k  = dz_k + beta mu_k / B
//! dL/ds_k   = [-10 <= s_k <= 10] (dz_k eps_k sd_k / 2 + beta (sd_k^2 - 1) / (2B))
//! ```
//!
//! Activations are batch-major (`B x width`, row-major), so every dense layer is one
//! `matrixmultiply` product forward and two backward (none for the input gradient of the first
//! layer). The heads `mu` and `logvar` are one `2Z x H` product: the flat parameter vector stores
//! `mu.weight`, `logvar.weight`, `mu.bias`, `logvar.bias` back to back. All buffers are allocated
//! once in [`Model::new`] for a maximum batch; the passes themselves do not allocate.
//!
//! The finite-difference check (`tests/gradcheck.rs`) runs these functions in f64 on every
//! parameter of small models of each variant.
//!
//! It is kept as one file because it is one concept: the VAE's forward and backward passes, whose
//! buffers and gradients pair up line for line.

use super::arch::{
    Arch, NoiseKind, DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX, ENCODER_LOGVAR_MIN,
};
use super::params::{Linear, Params};
use super::real::{gemm, rm, rm_t, Real};
use core::ops::Range;

/// ln(2π) in f64.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Where one dense layer lives in the flat parameter vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseSlot {
    /// Offset of the `[out, in]` row-major weight matrix.
    pub w: usize,
    /// Offset of the `[out]` bias.
    pub b: usize,
    /// Input width.
    pub inp: usize,
    /// Output width.
    pub out: usize,
}

/// Hands out consecutive [`DenseSlot`]s of a flat parameter vector (weight, then bias).
#[derive(Debug, Default)]
pub struct SlotAlloc {
    /// Parameters handed out so far (the next slot's offset).
    pub off: usize,
}

impl SlotAlloc {
    /// The next `inp -> out` layer.
    pub fn dense(&mut self, inp: usize, out: usize) -> DenseSlot {
        let s = DenseSlot {
            w: self.off,
            b: self.off + inp * out,
            inp,
            out,
        };
        self.off += inp * out + out;
        s
    }

    /// A stack of layers of the given output `widths` on an input of `inp`: the slots and the
    /// last width (`inp` when `widths` is empty).
    pub fn stack(&mut self, inp: usize, widths: &[usize]) -> (Vec<DenseSlot>, usize) {
        let mut prev = inp;
        let slots = widths
            .iter()
            .map(|&w| {
                let s = self.dense(prev, w);
                prev = w;
                s
            })
            .collect();
        (slots, prev)
    }
}

/// The flat parameter layout of an [`Arch`].
///
/// Order: `encoder.{i}.weight`, `encoder.{i}.bias` for each hidden layer; `mu.weight`,
/// `logvar.weight`, `mu.bias`, `logvar.bias` (the heads as one `2Z x H` layer); `decoder.{i}`
/// weight and bias; `decoder.out` weight and bias; the trained decoder log-variances
/// (X, C or 0 values, see [`Arch::noise_params`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The architecture.
    pub arch: Arch,
    /// Encoder hidden layers.
    pub enc: Vec<DenseSlot>,
    /// `mu` and `logvar` stacked: `out = 2Z`.
    pub heads: DenseSlot,
    /// Decoder hidden layers.
    pub dec: Vec<DenseSlot>,
    /// `decoder.out`.
    pub out: DenseSlot,
    /// The trained decoder log-variances.
    pub noise: Range<usize>,
    /// Total number of parameters.
    pub total: usize,
}

impl Layout {
    /// The layout of a (validated) architecture.
    ///
    /// # Errors
    /// If `arch` fails [`Arch::validate`].
    pub fn new(arch: &Arch) -> anyhow::Result<Self> {
        arch.validate()?;
        let mut a = SlotAlloc::default();
        let (enc, h) = a.stack(arch.input, &arch.encoder_hidden);
        let heads = a.dense(h, 2 * arch.latent);
        let (dec, h) = a.stack(arch.latent, &arch.decoder_hidden);
        let out = a.dense(h, arch.input);
        let noise = a.off..a.off + arch.noise_params();
        Ok(Self {
            arch: arch.clone(),
            enc,
            heads,
            dec,
            out,
            total: noise.end,
            noise,
        })
    }

    /// Every trained tensor with its range in the flat vector, named as in checkpoints
    /// (`decoder.logvar` covers the trained values only: C of them for per-channel noise, and
    /// it is absent for unit variance).
    pub fn tensor_ranges(&self) -> Vec<(String, Range<usize>)> {
        let z = self.arch.latent;
        let mut v = Vec::new();
        let mut dense = |name: String, s: &DenseSlot| {
            v.push((format!("{name}.weight"), s.w..s.w + s.inp * s.out));
            v.push((format!("{name}.bias"), s.b..s.b + s.out));
        };
        for (i, s) in self.enc.iter().enumerate() {
            dense(format!("encoder.{i}"), s);
        }
        let h = self.heads;
        v.push(("mu.weight".into(), h.w..h.w + z * h.inp));
        v.push(("logvar.weight".into(), h.w + z * h.inp..h.b));
        v.push(("mu.bias".into(), h.b..h.b + z));
        v.push(("logvar.bias".into(), h.b + z..h.b + 2 * z));
        let mut dense = |name: String, s: &DenseSlot| {
            v.push((format!("{name}.weight"), s.w..s.w + s.inp * s.out));
            v.push((format!("{name}.bias"), s.b..s.b + s.out));
        };
        for (i, s) in self.dec.iter().enumerate() {
            dense(format!("decoder.{i}"), s);
        }
        dense("decoder.out".into(), &self.out);
        if !self.noise.is_empty() {
            v.push(("decoder.logvar".into(), self.noise.clone()));
        }
        v
    }

    /// The flat parameter vector of `p` (converted to `T`).
    ///
    /// # Errors
    /// If `p` does not have the shapes of this layout's architecture.
    pub fn flatten<T: Real>(&self, p: &Params) -> anyhow::Result<Vec<T>> {
        p.check_shapes(&self.arch)?;
        let mut theta = vec![T::ZERO; self.total];
        let mut put = |range: Range<usize>, src: &[f32]| {
            for (d, &s) in theta[range].iter_mut().zip(src) {
                *d = T::from_f32(s);
            }
        };
        for (name, range) in self.tensor_ranges() {
            let src: &[f32] = match name.as_str() {
                "mu.weight" => &p.mu.weight,
                "mu.bias" => &p.mu.bias,
                "logvar.weight" => &p.logvar.weight,
                "logvar.bias" => &p.logvar.bias,
                "decoder.logvar" => &p.decoder_logvar,
                _ => {
                    let l = linear_by_name(p, &name);
                    if name.ends_with(".weight") {
                        &l.weight
                    } else {
                        &l.bias
                    }
                }
            };
            put(range, src);
        }
        Ok(theta)
    }

    /// The [`Params`] of a flat vector. `decoder.logvar` is expanded to X values (the channel
    /// value repeated over time steps for per-channel noise, zeros for unit variance) and
    /// clamped to [-7, 7], so it holds the effective log-variances.
    pub fn unflatten<T: Real>(&self, theta: &[T]) -> Params {
        let get = |r: Range<usize>| -> Vec<f32> { theta[r].iter().map(|v| v.to_f32()).collect() };
        let lin = |s: &DenseSlot| Linear {
            in_features: s.inp,
            out_features: s.out,
            weight: get(s.w..s.w + s.inp * s.out),
            bias: get(s.b..s.b + s.out),
        };
        let z = self.arch.latent;
        let h = self.heads;
        let head = |k: usize| Linear {
            in_features: h.inp,
            out_features: z,
            weight: get(h.w + k * z * h.inp..h.w + (k + 1) * z * h.inp),
            bias: get(h.b + k * z..h.b + (k + 1) * z),
        };
        let x = self.arch.input;
        let c = self.arch.channels;
        let noise = get(self.noise.clone());
        let decoder_logvar = (0..x)
            .map(|j| {
                let v = match self.arch.noise {
                    NoiseKind::PerFeature => noise[j],
                    NoiseKind::PerChannel => noise[j % c],
                    NoiseKind::Unit => 0.0,
                };
                v.clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX)
            })
            .collect();
        Params {
            encoder: self.enc.iter().map(lin).collect(),
            mu: head(0),
            logvar: head(1),
            decoder: self.dec.iter().map(lin).collect(),
            decoder_out: lin(&self.out),
            decoder_logvar,
        }
    }
}

/// The hidden `Linear` named `encoder.{i}.*`, `decoder.{i}.*` or `decoder.out.*`.
fn linear_by_name<'a>(p: &'a Params, name: &str) -> &'a Linear {
    let mut parts = name.split('.');
    let side = parts.next().unwrap_or_default();
    let idx = parts.next().unwrap_or_default();
    match (side, idx) {
        ("decoder", "out") => &p.decoder_out,
        ("encoder", i) => &p.encoder[i.parse::<usize>().unwrap_or(usize::MAX)],
        ("decoder", i) => &p.decoder[i.parse::<usize>().unwrap_or(usize::MAX)],
        _ => unreachable!("tensor name {name} comes from Layout::tensor_ranges"),
    }
}

/// Mean per-window loss terms of a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    /// `recon + beta * kl`, the minimized objective (averaged over the batch).
    pub loss: f64,
    /// -log N(x; mean, diag(exp(logvar_x))) per window.
    pub recon: f64,
    /// KL(q(z|x) || N(0, I)) per window.
    pub kl: f64,
}

impl LossParts {
    /// Adds the batch means `p` of `k` windows as sums (undone by [`LossParts::mean`]).
    pub fn add(&mut self, p: &LossParts, k: usize) {
        let kf = k as f64;
        self.loss += p.loss * kf;
        self.recon += p.recon * kf;
        self.kl += p.kl * kf;
    }

    /// The sums of [`LossParts::add`] as means over `n` windows.
    #[must_use]
    pub fn mean(&self, n: usize) -> LossParts {
        let nf = n as f64;
        LossParts {
            loss: self.loss / nf,
            recon: self.recon / nf,
            kl: self.kl / nf,
        }
    }
}

/// A model's buffers for batches of up to `capacity` windows, and its passes.
pub struct Model<T: Real> {
    layout: Layout,
    cap: usize,
    /// Batch size of the last forward pass.
    b: usize,
    enc_h: Vec<Vec<T>>,
    heads: Vec<T>,
    sd: Vec<T>,
    z: Vec<T>,
    dec_h: Vec<Vec<T>>,
    mean: Vec<T>,
    lx: Vec<T>,
    lx_live: Vec<bool>,
    iv: Vec<T>,
    g_lx: Vec<T>,
    ga: Vec<T>,
    gb: Vec<T>,
}

/// out (b x s.out) ← input (b x s.inp) W^T + bias, then ReLU if `relu`.
pub(super) fn dense_forward<T: Real>(
    theta: &[T],
    s: &DenseSlot,
    input: &[T],
    b: usize,
    out: &mut [T],
    relu: bool,
) {
    let bias = &theta[s.b..s.b + s.out];
    let out = &mut out[..b * s.out];
    for row in out.chunks_exact_mut(s.out) {
        row.copy_from_slice(bias);
    }
    let w = &theta[s.w..s.w + s.inp * s.out];
    gemm(
        b,
        s.inp,
        s.out,
        T::ONE,
        rm(input, s.inp),
        rm_t(w, s.inp),
        T::ONE,
        out,
        s.out,
    );
    if relu {
        // A select, not a conditional store, so it vectorizes.
        for v in out.iter_mut() {
            *v = if *v > T::ZERO { *v } else { T::ZERO };
        }
    }
}

/// Given dy (b x s.out): grad W, grad b ← (dy^T input, sum dy); din (b x s.inp) ← dy W, then
/// masked by `input > 0` when the input came out of a ReLU.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_backward<T: Real>(
    theta: &[T],
    s: &DenseSlot,
    input: &[T],
    b: usize,
    dy: &[T],
    grad: &mut [T],
    din: Option<&mut [T]>,
    input_is_relu: bool,
) {
    let dy = &dy[..b * s.out];
    let gw = &mut grad[s.w..s.w + s.inp * s.out];
    gemm(
        s.out,
        b,
        s.inp,
        T::ONE,
        rm_t(dy, s.out),
        rm(input, s.inp),
        T::ZERO,
        gw,
        s.inp,
    );
    let gbias = &mut grad[s.b..s.b + s.out];
    gbias.fill(T::ZERO);
    for row in dy.chunks_exact(s.out) {
        for (g, &d) in gbias.iter_mut().zip(row) {
            *g += d;
        }
    }
    if let Some(din) = din {
        let din = &mut din[..b * s.inp];
        let w = &theta[s.w..s.w + s.inp * s.out];
        gemm(
            b,
            s.out,
            s.inp,
            T::ONE,
            rm(dy, s.out),
            rm(w, s.inp),
            T::ZERO,
            din,
            s.inp,
        );
        if input_is_relu {
            for (d, &a) in din.iter_mut().zip(&input[..b * s.inp]) {
                *d = if a > T::ZERO { *d } else { T::ZERO };
            }
        }
    }
}

impl<T: Real> Model<T> {
    /// Buffers for `arch` and batches of 1 to `capacity` windows.
    ///
    /// # Errors
    /// An invalid architecture or `capacity == 0`.
    pub fn new(arch: &Arch, capacity: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(capacity > 0, "batch capacity must be > 0");
        let layout = Layout::new(arch)?;
        let z = arch.latent;
        let x = arch.input;
        let widest = arch
            .encoder_hidden
            .iter()
            .chain(&arch.decoder_hidden)
            .copied()
            .chain([x, 2 * z])
            .max()
            .unwrap_or(x);
        let buf = |w: usize| vec![T::ZERO; capacity * w];
        Ok(Self {
            enc_h: arch.encoder_hidden.iter().map(|&w| buf(w)).collect(),
            heads: buf(2 * z),
            sd: buf(z),
            z: buf(z),
            dec_h: arch.decoder_hidden.iter().map(|&w| buf(w)).collect(),
            mean: buf(x),
            lx: vec![T::ZERO; x],
            lx_live: vec![false; x],
            iv: vec![T::ONE; x],
            g_lx: vec![T::ZERO; x],
            ga: buf(widest),
            gb: buf(widest),
            layout,
            cap: capacity,
            b: 0,
        })
    }

    /// The parameter layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of trained parameters (length of `theta` and `grad`).
    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    /// The largest batch these buffers hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Reconstruction means of the last forward pass (`b x X`).
    pub fn last_mean(&self) -> &[T] {
        &self.mean[..self.b * self.layout.arch.input]
    }

    fn check(&self, theta: &[T], x: &[T], eps: &[T]) -> anyhow::Result<usize> {
        let a = &self.layout.arch;
        anyhow::ensure!(
            theta.len() == self.layout.total,
            "theta has {} values, the model {}",
            theta.len(),
            self.layout.total
        );
        anyhow::ensure!(
            !x.is_empty() && x.len().is_multiple_of(a.input),
            "batch length {} is not a positive multiple of {}",
            x.len(),
            a.input
        );
        let b = x.len() / a.input;
        anyhow::ensure!(b <= self.cap, "batch of {b} exceeds capacity {}", self.cap);
        anyhow::ensure!(
            eps.len() == b * a.latent,
            "eps has {} values, expected {}",
            eps.len(),
            b * a.latent
        );
        Ok(b)
    }

    /// Forward pass of a batch `x` (`b x X`) with noise `eps` (`b x Z`); returns the mean loss
    /// terms and keeps the activations for [`Self::loss_grad`].
    ///
    /// # Errors
    /// Wrong lengths (see [`Self::loss_grad`]).
    pub fn loss(&mut self, theta: &[T], x: &[T], eps: &[T], beta: T) -> anyhow::Result<LossParts> {
        let b = self.check(theta, x, eps)?;
        Ok(self.forward(theta, x, eps, beta, b))
    }

    fn forward(&mut self, theta: &[T], x: &[T], eps: &[T], beta: T, b: usize) -> LossParts {
        self.b = b;
        let l = &self.layout;
        let (xd, zd, c) = (l.arch.input, l.arch.latent, l.arch.channels);
        // Encoder.
        for (i, s) in l.enc.iter().enumerate() {
            let (before, rest) = self.enc_h.split_at_mut(i);
            let input: &[T] = if i == 0 { x } else { &before[i - 1] };
            dense_forward(theta, s, input, b, &mut rest[0], true);
        }
        let last = self.enc_h.last().map_or(x, |v| v.as_slice());
        dense_forward(theta, &l.heads, last, b, &mut self.heads, false);
        // Reparameterize, KL.
        let (lo, hi) = (
            T::from_f32(ENCODER_LOGVAR_MIN),
            T::from_f32(ENCODER_LOGVAR_MAX),
        );
        let half = T::from_f64(0.5);
        let mut kl_sum = 0.0f64;
        for n in 0..b {
            let h = &self.heads[n * 2 * zd..(n + 1) * 2 * zd];
            let (mu, s) = h.split_at(zd);
            let mut kl = T::ZERO;
            for k in 0..zd {
                let lv = clamp(s[k], lo, hi);
                let sd = (half * lv).exp();
                self.sd[n * zd + k] = sd;
                self.z[n * zd + k] = mu[k] + sd * eps[n * zd + k];
                kl += sd * sd + mu[k] * mu[k] - T::ONE - lv;
            }
            kl_sum += (half * kl).to_f64();
        }
        // Decoder.
        for (i, s) in l.dec.iter().enumerate() {
            let (before, rest) = self.dec_h.split_at_mut(i);
            let input: &[T] = if i == 0 { &self.z } else { &before[i - 1] };
            dense_forward(theta, s, input, b, &mut rest[0], true);
        }
        let last = self.dec_h.last().map_or(&self.z[..], |v| v.as_slice());
        dense_forward(theta, &l.out, last, b, &mut self.mean, false);
        // Output noise.
        let (lo, hi) = (
            T::from_f32(DECODER_LOGVAR_MIN),
            T::from_f32(DECODER_LOGVAR_MAX),
        );
        let noise = &theta[l.noise.clone()];
        let mut lx_sum = T::ZERO;
        for j in 0..xd {
            let p = match l.arch.noise {
                NoiseKind::PerFeature => noise[j],
                NoiseKind::PerChannel => noise[j % c],
                NoiseKind::Unit => T::ZERO,
            };
            self.lx_live[j] = p >= lo && p <= hi;
            let v = clamp(p, lo, hi);
            self.lx[j] = v;
            self.iv[j] = (-v).exp();
            lx_sum += v;
        }
        let ln2pi = T::from_f64(LN_2PI) * T::from_f64(xd as f64);
        let mut recon_sum = 0.0f64;
        for (xr, mr) in x.chunks_exact(xd).zip(self.mean.chunks_exact(xd)).take(b) {
            let mut q = T::ZERO;
            for ((&xv, &mv), &iv) in xr.iter().zip(mr).zip(&self.iv) {
                let d = xv - mv;
                q += d * d * iv;
            }
            recon_sum += (half * (ln2pi + lx_sum + q)).to_f64();
        }
        let bf = b as f64;
        let (recon, kl) = (recon_sum / bf, kl_sum / bf);
        LossParts {
            loss: recon + beta.to_f64() * kl,
            recon,
            kl,
        }
    }

    /// Forward and backward pass: writes d(objective)/d(theta) into `grad` (fully overwritten)
    /// and returns the loss terms. The objective is the batch mean of `recon + beta * kl` with
    /// `z = mu + exp(lv/2) * eps`.
    ///
    /// # Errors
    /// `theta` or `grad` not of length [`Self::num_params`], `x` not `b x X` with
    /// `1 <= b <= capacity`, `eps` not `b x Z`.
    pub fn loss_grad(
        &mut self,
        theta: &[T],
        x: &[T],
        eps: &[T],
        beta: T,
        grad: &mut [T],
    ) -> anyhow::Result<LossParts> {
        let b = self.check(theta, x, eps)?;
        anyhow::ensure!(
            grad.len() == self.layout.total,
            "grad has {} values, the model {}",
            grad.len(),
            self.layout.total
        );
        let parts = self.forward(theta, x, eps, beta, b);
        self.backward(theta, x, eps, beta, b, grad);
        Ok(parts)
    }

    fn backward(&mut self, theta: &[T], x: &[T], eps: &[T], beta: T, b: usize, grad: &mut [T]) {
        let l = &self.layout;
        let (xd, zd, c) = (l.arch.input, l.arch.latent, l.arch.channels);
        let inv_b = T::ONE / T::from_f64(b as f64);
        let half = T::from_f64(0.5);
        let mut ga = core::mem::take(&mut self.ga);
        let mut gb = core::mem::take(&mut self.gb);
        // Output layer: d/dmean and d/dlx.
        self.g_lx.fill(T::ZERO);
        for ((xr, mr), gr) in x
            .chunks_exact(xd)
            .zip(self.mean.chunks_exact(xd))
            .zip(ga.chunks_exact_mut(xd))
            .take(b)
        {
            for ((((&xv, &mv), &iv), g), glx) in xr
                .iter()
                .zip(mr)
                .zip(&self.iv)
                .zip(gr.iter_mut())
                .zip(self.g_lx.iter_mut())
            {
                let d = xv - mv;
                let div = d * iv;
                *g = -div * inv_b;
                *glx += d * div;
            }
        }
        let gn = &mut grad[l.noise.clone()];
        gn.fill(T::ZERO);
        if l.arch.noise != NoiseKind::Unit {
            let bf = T::from_f64(b as f64);
            for j in 0..xd {
                if self.lx_live[j] {
                    let g = half * (bf - self.g_lx[j]) * inv_b;
                    match l.arch.noise {
                        NoiseKind::PerFeature => gn[j] += g,
                        NoiseKind::PerChannel => gn[j % c] += g,
                        NoiseKind::Unit => {}
                    }
                }
            }
        }
        // Decoder, top down; ga holds d/d(output of the current layer).
        let nd = l.dec.len();
        let last = self.dec_h.last().map_or(&self.z[..], |v| v.as_slice());
        dense_backward(theta, &l.out, last, b, &ga, grad, Some(&mut gb), nd > 0);
        core::mem::swap(&mut ga, &mut gb);
        for i in (0..nd).rev() {
            let input: &[T] = if i == 0 { &self.z } else { &self.dec_h[i - 1] };
            dense_backward(theta, &l.dec[i], input, b, &ga, grad, Some(&mut gb), i > 0);
            core::mem::swap(&mut ga, &mut gb);
        }
        // ga = dz (b x Z). Heads: gb = [dmu | ds] (b x 2Z).
        let (lo, hi) = (
            T::from_f32(ENCODER_LOGVAR_MIN),
            T::from_f32(ENCODER_LOGVAR_MAX),
        );
        let kb = beta * inv_b;
        for n in 0..b {
            let h = &self.heads[n * 2 * zd..(n + 1) * 2 * zd];
            let g = &mut gb[n * 2 * zd..(n + 1) * 2 * zd];
            for k in 0..zd {
                let dz = ga[n * zd + k];
                let (mu, s) = (h[k], h[zd + k]);
                let sd = self.sd[n * zd + k];
                g[k] = dz + kb * mu;
                g[zd + k] = if s >= lo && s <= hi {
                    half * (dz * eps[n * zd + k] * sd + kb * (sd * sd - T::ONE))
                } else {
                    T::ZERO
                };
            }
        }
        core::mem::swap(&mut ga, &mut gb);
        // Encoder, top down.
        let ne = l.enc.len();
        let last = self.enc_h.last().map_or(x, |v| v.as_slice());
        dense_backward(
            theta,
            &l.heads,
            last,
            b,
            &ga,
            grad,
            (ne > 0).then_some(&mut gb[..]),
            true,
        );
        core::mem::swap(&mut ga, &mut gb);
        for i in (0..ne).rev() {
            let input: &[T] = if i == 0 { x } else { &self.enc_h[i - 1] };
            let din = (i > 0).then_some(&mut gb[..]);
            dense_backward(theta, &l.enc[i], input, b, &ga, grad, din, true);
            core::mem::swap(&mut ga, &mut gb);
        }
        self.ga = ga;
        self.gb = gb;
    }
}

/// `v` clamped to `[lo, hi]` (NaN passes through).
#[inline]
pub(super) fn clamp<T: Real>(v: T, lo: T, hi: T) -> T {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}
