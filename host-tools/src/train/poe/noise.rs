//! Autoregressive decoder noise for a trained product-of-experts model: the residual of each
//! channel as an AR(`p`) process over time ([`tinyvae::ar_quadratic`]), fitted after training,
//! with its order chosen on the validation windows.
//!
//! The trained decoder's noise is diagonal: every feature `x[t C + c]` independent given `z`.
//! Its residuals `d = x - D(mu_S)` are not: neighbouring samples of a channel move together, and
//! a diagonal model cannot tell a smooth residual from a rough one of the same size. For each
//! order `p` in `1..=MAX_AR_ORDER` the fit takes, on the training windows, the residual of every
//! group `g` decoded from the posterior mean `mu_S` of every subset `S` that contains `g` (the
//! windows the scores `-ELBO_S` see), and per channel `c`:
//!
//! ```text
//! a[c, 1..p]   least squares of d[t, c] on d[t-1, c] .. d[t-p, c], over t >= p   (f64 normal equations)
//! nu[t, c]     d[t, c] - sum_k a[c, k] d[t-k, c]   (t >= p),   d[t, c]   (t < p)
//! logvar[i]    ln mean(nu_i^2) per feature i = t C + c (clamped as the trained log-variances)
//! ```
//!
//! (the Gaussian maximum likelihood of the coefficients and the innovation variances given the
//! residuals). The order is the one with the highest validation log-likelihood
//! `sum_S sum_{g in S} log p(x_g | mu_S)` per window, with the trained diagonal noise as the
//! candidate "0"; so a model whose residuals carry no such structure keeps its trained noise.
//! Only the noise model changes: the encoders, decoders, posterior and KL term are the trained
//! ones, and the ELBO stays a bound of the (refitted) model's likelihood.

use anyhow::{bail, Result};
use tinyvae::{GroupSet, VaeModel, MAX_AR_ORDER};

use super::super::arch::{DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN};
use super::PoeParams;
use crate::data::WindowView;
use crate::model::PoeHost;

/// Fitted autoregressive noise.
#[derive(Clone, Debug, PartialEq)]
pub struct ArNoiseParams {
    /// The order `p` (1 to [`MAX_AR_ORDER`]).
    pub order: usize,
    /// Coefficients, `p` per channel (`coef[c p + k - 1] = a[c, k]`).
    pub coef: Vec<f32>,
    /// Innovation log-variances, one per feature (`X`).
    pub logvar: Vec<f32>,
}

/// Which noise model `tinyvae train --group` fits (`--noise-ar`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseOrder {
    /// The order with the best validation log-likelihood, the trained diagonal noise included.
    Auto,
    /// The trained diagonal noise.
    Off,
    /// This order (1 to [`MAX_AR_ORDER`]).
    Fixed(usize),
}

impl std::str::FromStr for NoiseOrder {
    type Err = String;

    /// `auto`, `0` (off) or an order from 1 to [`MAX_AR_ORDER`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "0" | "off" => Ok(Self::Off),
            _ => match s.parse::<usize>() {
                Ok(k) if (1..=MAX_AR_ORDER).contains(&k) => Ok(Self::Fixed(k)),
                _ => Err(format!(
                    "expected auto, 0 (off) or an order from 1 to {MAX_AR_ORDER}, found {s:?}"
                )),
            },
        }
    }
}

/// What [`fit_ar_noise`] found.
#[derive(Clone, Debug)]
pub struct NoiseFit {
    /// The chosen noise (`None`: the trained diagonal noise).
    pub chosen: Option<ArNoiseParams>,
    /// Validation log-likelihood per window (nats) of every candidate order (0: the trained
    /// diagonal noise).
    pub validation: Vec<(usize, f64)>,
}

/// Residuals of every group under every subset that contains it: per group, sub-windows of
/// `W |M_g|` values (time-major, the group's channels ascending).
fn residuals(p: &PoeParams, windows: WindowView<'_>) -> Result<Vec<Vec<f32>>> {
    let mut plain = p.clone();
    plain.noise = None;
    let host = PoeHost::float(&plain)?;
    let view = host.view();
    let mut scratch = host.scratch();
    let a = &p.arch;
    let (c, z, g) = (a.channels, a.latent, a.groups.len());
    let (mut mu, mut lv) = (vec![0.0f32; z], vec![0.0f32; z]);
    let mut mean = vec![0.0f32; a.input()];
    let mut out = vec![Vec::new(); g];
    for x in windows.iter() {
        for bits in 1..(1u8 << g) {
            let s = GroupSet(bits);
            view.encode_groups(x, s, &mut mu, &mut lv, &mut scratch)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            view.decode_groups(&mu, s, &mut mean, &mut scratch)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for gi in s.iter() {
                let chans = &a.groups[gi];
                for (xs, ms) in x.chunks_exact(c).zip(mean.chunks_exact(c)) {
                    out[gi].extend(chans.iter().map(|&ch| xs[ch] - ms[ch]));
                }
            }
        }
    }
    Ok(out)
}

/// The innovations `nu` of one group's residual sub-windows `r` (its channels `chans`, global
/// numbers) under coefficients `coef` of order `p`, passed to `f(feature, nu)` with the
/// feature's index `t C + c` in the window.
fn innovations(
    r: &[f32],
    chans: &[usize],
    c: usize,
    coef: &[f64],
    p: usize,
    w: usize,
    mut f: impl FnMut(usize, f64),
) {
    let k = chans.len();
    for sub in r.chunks_exact(w * k) {
        for t in 0..w {
            for (j, &ch) in chans.iter().enumerate() {
                let mut nu = f64::from(sub[t * k + j]);
                if t >= p {
                    for lag in 1..=p {
                        nu -= coef[ch * p + lag - 1] * f64::from(sub[(t - lag) * k + j]);
                    }
                }
                f(t * c + ch, nu);
            }
        }
    }
}

/// Least squares of each channel's residual on its `p` previous residuals (see the module doc).
fn fit_coefficients(
    res: &[Vec<f32>],
    groups: &[Vec<usize>],
    c: usize,
    p: usize,
    w: usize,
) -> Vec<f64> {
    let mut coef = vec![0.0f64; c * p];
    for (r, chans) in res.iter().zip(groups) {
        let k = chans.len();
        for (j, &ch) in chans.iter().enumerate() {
            let mut gram = vec![vec![0.0f64; p]; p];
            let mut rhs = vec![0.0f64; p];
            for sub in r.chunks_exact(w * k) {
                for t in p..w {
                    let y = f64::from(sub[t * k + j]);
                    for a in 0..p {
                        let ha = f64::from(sub[(t - 1 - a) * k + j]);
                        rhs[a] += ha * y;
                        for b in 0..p {
                            gram[a][b] += ha * f64::from(sub[(t - 1 - b) * k + j]);
                        }
                    }
                }
            }
            // A tiny ridge keeps a constant (zero) residual solvable.
            for (a, row) in gram.iter_mut().enumerate() {
                row[a] += 1e-9 * (1.0 + row[a]);
            }
            if let Some(sol) = solve_spd(&gram, &rhs) {
                coef[ch * p..(ch + 1) * p].copy_from_slice(&sol);
            }
        }
    }
    coef
}

/// Solves `g a = b` for a symmetric positive-definite `g` (Cholesky in f64; `None` if `g` is
/// not numerically positive definite).
#[allow(clippy::needless_range_loop)] // matrix indices
fn solve_spd(g: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s = g[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut y = vec![0.0f64; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0f64; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Fits the order-`p` noise to the training residuals `res`.
fn fit_order(res: &[Vec<f32>], pp: &PoeParams, p: usize) -> ArNoiseParams {
    let a = &pp.arch;
    let (c, w) = (a.channels, a.window);
    let coef = fit_coefficients(res, &a.groups, c, p, w);
    let mut sum = vec![0.0f64; a.input()];
    let mut count = vec![0usize; a.input()];
    for (r, chans) in res.iter().zip(&a.groups) {
        innovations(r, chans, c, &coef, p, w, |i, nu| {
            sum[i] += nu * nu;
            count[i] += 1;
        });
    }
    let logvar = sum
        .iter()
        .zip(&count)
        .zip(&pp.decoder_logvar)
        .map(|((&s, &n), &trained)| {
            if n == 0 {
                trained
            } else {
                ((s / n as f64).ln() as f32).clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX)
            }
        })
        .collect();
    ArNoiseParams {
        order: p,
        coef: coef.iter().map(|&v| v as f32).collect(),
        logvar,
    }
}

/// Mean log-likelihood per window of the residuals `res` (of `n` windows) under `coef` of
/// order `p` and log-variances `logvar`.
fn log_likelihood(
    res: &[Vec<f32>],
    pp: &PoeParams,
    coef: &[f64],
    p: usize,
    logvar: &[f32],
    n: usize,
) -> f64 {
    let a = &pp.arch;
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    let mut total = 0.0f64;
    for (r, chans) in res.iter().zip(&a.groups) {
        innovations(r, chans, a.channels, coef, p, a.window, |i, nu| {
            let lv = f64::from(logvar[i]);
            total -= 0.5 * (ln_2pi + lv + nu * nu * (-lv).exp());
        });
    }
    total / n.max(1) as f64
}

/// Fits the autoregressive noise of `p` on `train` and picks its order on `val` (see the module
/// doc). A model of one group keeps its trained noise (it is scored by the single VAE's path).
///
/// # Errors
/// An order above [`MAX_AR_ORDER`], no validation windows, or a model that does not run.
pub fn fit_ar_noise(
    p: &PoeParams,
    train: WindowView<'_>,
    val: WindowView<'_>,
    order: NoiseOrder,
) -> Result<NoiseFit> {
    let candidates: Vec<usize> = match order {
        NoiseOrder::Off => {
            return Ok(NoiseFit {
                chosen: None,
                validation: Vec::new(),
            })
        }
        NoiseOrder::Auto => (1..=MAX_AR_ORDER).collect(),
        NoiseOrder::Fixed(k) if (1..=MAX_AR_ORDER).contains(&k) => vec![k],
        NoiseOrder::Fixed(k) => bail!("--noise-ar: 0 (off) to {MAX_AR_ORDER}, found {k}"),
    };
    if p.arch.groups.len() < 2 {
        return Ok(NoiseFit {
            chosen: None,
            validation: Vec::new(),
        });
    }
    if val.is_empty() {
        bail!("fitting the noise model needs validation windows");
    }
    let tr = residuals(p, train)?;
    let va = residuals(p, val)?;
    let mut validation = vec![(
        0,
        log_likelihood(&va, p, &[], 0, &p.decoder_logvar, val.len()),
    )];
    let mut best: Option<(f64, ArNoiseParams)> = None;
    for k in candidates {
        let fit = fit_order(&tr, p, k);
        let coef: Vec<f64> = fit.coef.iter().map(|&v| f64::from(v)).collect();
        let ll = log_likelihood(&va, p, &coef, k, &fit.logvar, val.len());
        validation.push((k, ll));
        if best.as_ref().is_none_or(|b| ll > b.0) {
            best = Some((ll, fit));
        }
    }
    let trained = validation[0].1;
    let chosen =
        best.and_then(|(ll, fit)| (order != NoiseOrder::Auto || ll > trained).then_some(fit));
    Ok(NoiseFit { chosen, validation })
}
