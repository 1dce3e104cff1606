//! Training a mixture of K expert VAEs and its gate (`tinyvae train --experts K`).
//!
//! # Schedule (hard EM with a k-means start)
//! 1. **Start.** The gate's features of every training window, `f(x) = [mean_c, mean_c(x^2)]`
//!    (the library's `SummaryGate` summary), standardized over the training windows, are
//!    clustered by k-means (k-means++ seeding from the training seed, Lloyd iterations): the
//!    initial assignment. A k-means start cannot collapse (every cluster keeps at least one
//!    window) and puts windows of one posture and intensity, i.e. one activity, together.
//! 2. **M step.** Expert `k` is trained (the ordinary trainer, [`super::train`], seed
//!    `seed + k`) on the training windows assigned to it, with early stopping on the validation
//!    windows assigned to it.
//! 3. **E step.** Every expert's ELBO on every training window; responsibilities
//!    `r_k ∝ pi_k exp(ELBO_k(x))` with `pi_k` the expert's share; the new hard assignment is
//!    `argmax_k r_k`. It is accepted only if every expert keeps at least [`MIN_SHARE`] of the
//!    windows (the guard against collapse); otherwise, or when fewer than 1 % of the windows
//!    moved, the loop ends. At most `rounds` E steps, each followed by an M step.
//! 4. **Gate.** A softmax-linear classifier on the standardized features, trained on the final
//!    experts' responsibilities by full-batch Adam on
//!
//! ```text
//! L(W, b) = -1/N sum_n sum_k r_nk ln p_nk  +  alpha K sum_k f_k P_k  +  lambda/2 |W|^2
//! p_n = softmax(W f_n + b),  P_k = 1/N sum_n p_nk,  f_k = share of windows whose argmax is k
//! dL/da_nk = (p_nk - r_nk)/N + alpha K/N p_nk (f_k - sum_j f_j p_nj)        (f_k held fixed)
//! ```
//!
//! (cross-entropy plus the Switch Transformer's load-balancing term, Fedus et al. 2021); the
//! feature standardization is then folded into the weights, giving the f32 [`HostGate`] the
//! chip runs.
//! 5. **Single-mode guard.** A single VAE is trained on all the training windows (same seed and
//!    settings). If its mean validation score (`-ELBO`) is at most the mixture's (top-1), the
//!    data did not need experts: every expert becomes a copy of that VAE behind a uniform gate,
//!    so the score is the single VAE's plus `ln K` and ranks windows exactly as it does.
//!    Chosen on validation data only; recorded as `fallback_to_single` in `config.json`. [`gate_loss`] is checked against central differences (`tests` below).

use anyhow::{bail, Result};
use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use serde_json::{json, Value};
use tinyvae::ScoreKind;

use super::{Arch, Params, TrainConfig, TrainReport};
use crate::data::Windows;
use crate::model::{score_windows, HostGate, HostModel};

/// Smallest share of the training windows an E step may leave an expert.
pub const MIN_SHARE: f64 = 0.02;
/// Default number of E steps.
pub const DEFAULT_ROUNDS: usize = 2;
/// Load-balancing weight `alpha` of the gate loss.
pub const BALANCE: f64 = 0.01;
/// L2 weight `lambda` of the gate loss.
pub const GATE_L2: f64 = 1e-4;
/// Full-batch Adam steps of the gate.
pub const GATE_STEPS: usize = 600;

/// The result of [`train_mixture`].
pub struct MoeTrained {
    /// The experts' weights, in the gate's order.
    pub experts: Vec<Params>,
    /// Each expert's last training report.
    pub reports: Vec<TrainReport>,
    /// The gate, standardization folded in.
    pub gate: HostGate,
    /// Per round: shares and moves, and the gate's agreement (diagnostics for `config.json`).
    pub history: Value,
}

/// The gate's features of a window (`X = W C`, time-major): per-channel mean, then mean square.
pub fn features(x: &[f32], channels: usize) -> Vec<f64> {
    let mut f = vec![0.0f64; 2 * channels];
    let steps = (x.len() / channels).max(1) as f64;
    for step in x.chunks_exact(channels) {
        for (c, &v) in step.iter().enumerate() {
            let v = f64::from(v);
            f[c] += v;
            f[channels + c] += v * v;
        }
    }
    f.iter_mut().for_each(|v| *v /= steps);
    f
}

/// Per-feature mean and standard deviation (1 where it is 0).
fn standardizer(feats: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let d = feats.first().map_or(0, Vec::len);
    let n = feats.len().max(1) as f64;
    let mut m = vec![0.0; d];
    for f in feats {
        m.iter_mut().zip(f).for_each(|(a, b)| *a += b / n);
    }
    let mut s = vec![0.0; d];
    for f in feats {
        s.iter_mut()
            .zip(f.iter().zip(&m))
            .for_each(|(a, (b, mm))| *a += (b - mm).powi(2) / n);
    }
    let s = s
        .into_iter()
        .map(|v| if v.sqrt() > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    (m, s)
}

fn standardize(feats: &[Vec<f64>], m: &[f64], s: &[f64]) -> Vec<Vec<f64>> {
    feats
        .iter()
        .map(|f| {
            f.iter()
                .zip(m)
                .zip(s)
                .map(|((v, a), b)| (v - a) / b)
                .collect()
        })
        .collect()
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

fn nearest(f: &[f64], centers: &[Vec<f64>]) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (k, c) in centers.iter().enumerate() {
        let d = dist2(f, c);
        if d < best.0 {
            best = (d, k);
        }
    }
    best.1
}

/// k-means++ seeding and Lloyd iterations; returns the centers. An emptied cluster is re-seeded
/// with the point farthest from its center.
pub fn kmeans(points: &[Vec<f64>], k: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = XorShiftRng::seed_from_u64(seed ^ 0x6b6d_6561_6e73);
    let unit = |r: &mut XorShiftRng| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let n = points.len();
    if n == 0 {
        return Vec::new();
    }
    let mut centers = vec![points[(rng.next_u64() % n as u64) as usize].clone()];
    while centers.len() < k {
        let d: Vec<f64> = points
            .iter()
            .map(|p| {
                centers
                    .iter()
                    .map(|c| dist2(p, c))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let total: f64 = d.iter().sum();
        let mut t = unit(&mut rng) * total;
        let mut pick = n - 1;
        for (i, &v) in d.iter().enumerate() {
            if t < v {
                pick = i;
                break;
            }
            t -= v;
        }
        centers.push(points[pick].clone());
    }
    for _ in 0..50 {
        let assign: Vec<usize> = points.iter().map(|p| nearest(p, &centers)).collect();
        let dim = points[0].len();
        let mut sums = vec![vec![0.0; dim]; k];
        let mut counts = vec![0usize; k];
        for (p, &a) in points.iter().zip(&assign) {
            counts[a] += 1;
            sums[a].iter_mut().zip(p).for_each(|(s, v)| *s += v);
        }
        let mut next = centers.clone();
        for j in 0..k {
            if counts[j] == 0 {
                let far = (0..n)
                    .max_by(|&a, &b| {
                        dist2(&points[a], &centers[assign[a]])
                            .total_cmp(&dist2(&points[b], &centers[assign[b]]))
                    })
                    .unwrap_or(0);
                next[j] = points[far].clone();
            } else {
                next[j] = sums[j].iter().map(|s| s / counts[j] as f64).collect();
            }
        }
        if next == centers {
            break;
        }
        centers = next;
    }
    centers
}

/// The gate loss of the module doc at `theta = [W (K x D row-major), b (K)]`, and its gradient
/// when `grad` is given. `balance` is `f_k` (held fixed); `None` skips the balancing term.
pub fn gate_loss(
    theta: &[f64],
    feats: &[Vec<f64>],
    resp: &[Vec<f64>],
    k: usize,
    balance: Option<&[f64]>,
    mut grad: Option<&mut [f64]>,
) -> f64 {
    let d = feats.first().map_or(0, Vec::len);
    let (w, b) = theta.split_at(k * d);
    let n = feats.len().max(1) as f64;
    if let Some(g) = grad.as_deref_mut() {
        g.iter_mut().for_each(|v| *v = 0.0);
    }
    let mut loss = 0.0;
    let mut big_p = vec![0.0; k];
    let mut probs = Vec::with_capacity(feats.len());
    for (f, r) in feats.iter().zip(resp) {
        let a: Vec<f64> = (0..k)
            .map(|j| {
                b[j] + w[j * d..(j + 1) * d]
                    .iter()
                    .zip(f)
                    .map(|(x, y)| x * y)
                    .sum::<f64>()
            })
            .collect();
        let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + a.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let p: Vec<f64> = a.iter().map(|v| (v - lse).exp()).collect();
        for j in 0..k {
            loss -= r[j] * (a[j] - lse) / n;
            big_p[j] += p[j] / n;
        }
        probs.push(p);
    }
    if let Some(fk) = balance {
        loss += BALANCE * k as f64 * fk.iter().zip(&big_p).map(|(x, y)| x * y).sum::<f64>();
    }
    loss += 0.5 * GATE_L2 * w.iter().map(|v| v * v).sum::<f64>();
    if let Some(g) = grad {
        let (gw, gb) = g.split_at_mut(k * d);
        for ((f, r), p) in feats.iter().zip(resp).zip(&probs) {
            let fp: f64 = balance.map_or(0.0, |fk| fk.iter().zip(p).map(|(x, y)| x * y).sum());
            for j in 0..k {
                let mut da = (p[j] - r[j]) / n;
                if let Some(fk) = balance {
                    da += BALANCE * k as f64 / n * p[j] * (fk[j] - fp);
                }
                gb[j] += da;
                gw[j * d..(j + 1) * d]
                    .iter_mut()
                    .zip(f)
                    .for_each(|(gv, x)| *gv += da * x);
            }
        }
        gw.iter_mut().zip(w).for_each(|(gv, x)| *gv += GATE_L2 * x);
    }
    loss
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Fits the gate (module doc, step 4) on standardized features; returns `theta`.
pub fn fit_gate(feats: &[Vec<f64>], resp: &[Vec<f64>], k: usize) -> Vec<f64> {
    let d = feats.first().map_or(0, Vec::len);
    let mut theta = vec![0.0; k * d + k];
    let (mut m, mut v) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    let mut g = vec![0.0; theta.len()];
    let (lr, b1, b2, eps): (f64, f64, f64, f64) = (0.05, 0.9, 0.999, 1e-8);
    for t in 1..=GATE_STEPS {
        // f_k: the share each expert gets from the current gate's argmax.
        let mut fk = vec![0.0; k];
        let (w, b) = theta.split_at(k * d);
        for f in feats {
            let a: Vec<f64> = (0..k)
                .map(|j| {
                    b[j] + w[j * d..(j + 1) * d]
                        .iter()
                        .zip(f)
                        .map(|(x, y)| x * y)
                        .sum::<f64>()
                })
                .collect();
            fk[argmax(&a)] += 1.0 / feats.len().max(1) as f64;
        }
        gate_loss(&theta, feats, resp, k, Some(&fk), Some(&mut g));
        let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        for i in 0..theta.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            theta[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
    }
    theta
}

fn gather(w: &Windows, assign: &[usize], k: usize) -> Vec<f32> {
    w.iter()
        .zip(assign)
        .filter(|(_, &a)| a == k)
        .flat_map(|(x, _)| x.iter().copied())
        .collect()
}

/// `ELBO_k` of every window (rows) for every expert (columns).
fn elbos(experts: &[Params], w: &Windows) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::with_capacity(experts.len()); w.len()];
    for p in experts {
        let m = HostModel::float(p)?;
        for (row, s) in out
            .iter_mut()
            .zip(score_windows(&m, w.iter(), ScoreKind::Elbo, 0)?)
        {
            row.push(if s.overflow {
                -1e30
            } else {
                -f64::from(s.score)
            });
        }
    }
    Ok(out)
}

/// Responsibilities `r_k ∝ pi_k exp(ELBO_k)` per window.
fn responsibilities(elbo: &[Vec<f64>], share: &[f64]) -> Vec<Vec<f64>> {
    elbo.iter()
        .map(|e| {
            let t: Vec<f64> = e
                .iter()
                .zip(share)
                .map(|(v, s)| v + s.max(1e-12).ln())
                .collect();
            let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = t.iter().map(|v| (v - m).exp()).sum();
            t.iter().map(|v| (v - m).exp() / z).collect()
        })
        .collect()
}

fn shares(assign: &[usize], k: usize) -> Vec<f64> {
    let mut s = vec![0.0; k];
    for &a in assign {
        s[a] += 1.0 / assign.len().max(1) as f64;
    }
    s
}

fn train_experts(
    arch: &Arch,
    cfg: &TrainConfig,
    k: usize,
    train: &Windows,
    val: &Windows,
    ta: &[usize],
    va: &[usize],
) -> Result<(Vec<Params>, Vec<TrainReport>)> {
    let mut ps = Vec::new();
    let mut rs = Vec::new();
    for j in 0..k {
        let t = gather(train, ta, j);
        let v = gather(val, va, j);
        if t.is_empty() {
            bail!("expert {j} has no training windows");
        }
        let mut c = cfg.clone();
        c.seed = cfg.seed.wrapping_add(j as u64);
        let (p, r) = super::train(arch, &c, &t, &v)?;
        ps.push(p);
        rs.push(r);
    }
    Ok((ps, rs))
}

/// Trains `k` experts of shape `arch` and their gate on `train`, validating on `val` (module
/// doc). `cfg.seed` seeds everything.
///
/// # Errors
/// `k` outside 2..=[`tinyvae::MAX_EXPERTS`], fewer training windows than experts, or a failed
/// expert training.
pub fn train_mixture(
    arch: &Arch,
    cfg: &TrainConfig,
    k: usize,
    rounds: usize,
    train: &Windows,
    val: &Windows,
) -> Result<MoeTrained> {
    if !(2..=tinyvae::MAX_EXPERTS).contains(&k) {
        bail!(
            "--experts {k}: a mixture has 2 to {} experts",
            tinyvae::MAX_EXPERTS
        );
    }
    if train.len() < 2 * k {
        bail!(
            "{} training windows are too few for {k} experts",
            train.len()
        );
    }
    let ch = arch.channels;
    let raw_t: Vec<Vec<f64>> = train.iter().map(|x| features(x, ch)).collect();
    let raw_v: Vec<Vec<f64>> = val.iter().map(|x| features(x, ch)).collect();
    let (fm, fs) = standardizer(&raw_t);
    let ft = standardize(&raw_t, &fm, &fs);
    let fv = standardize(&raw_v, &fm, &fs);
    let centers = kmeans(&ft, k, cfg.seed);
    let mut ta: Vec<usize> = ft.iter().map(|f| nearest(f, &centers)).collect();
    let mut va: Vec<usize> = fv.iter().map(|f| nearest(f, &centers)).collect();
    let mut hist = vec![json!({"round": 0, "start": "k-means", "shares": shares(&ta, k)})];
    let (mut experts, mut reports) = train_experts(arch, cfg, k, train, val, &ta, &va)?;
    for round in 1..=rounds {
        let share = shares(&ta, k);
        let et = elbos(&experts, train)?;
        let nta: Vec<usize> = responsibilities(&et, &share)
            .iter()
            .map(|r| argmax(r))
            .collect();
        let ns = shares(&nta, k);
        let moved = ta.iter().zip(&nta).filter(|(a, b)| a != b).count() as f64 / ta.len() as f64;
        let ok = ns.iter().all(|&s| s >= MIN_SHARE);
        hist.push(
            json!({"round": round, "moved": moved, "shares": ns, "accepted": ok && moved >= 0.01}),
        );
        if !ok || moved < 0.01 {
            break;
        }
        let ev = elbos(&experts, val)?;
        va = responsibilities(&ev, &share)
            .iter()
            .map(|r| argmax(r))
            .collect();
        ta = nta;
        (experts, reports) = train_experts(arch, cfg, k, train, val, &ta, &va)?;
    }
    // The gate learns which final expert explains each window best.
    let share = shares(&ta, k);
    let resp = responsibilities(&elbos(&experts, train)?, &share);
    let theta = fit_gate(&ft, &resp, k);
    let d = 2 * ch;
    let (w, b) = theta.split_at(k * d);
    let mut weight = Vec::with_capacity(k * d);
    let mut bias = Vec::with_capacity(k);
    for j in 0..k {
        let row = &w[j * d..(j + 1) * d];
        bias.push(
            (b[j]
                - row
                    .iter()
                    .zip(&fm)
                    .zip(&fs)
                    .map(|((x, m), s)| x * m / s)
                    .sum::<f64>()) as f32,
        );
        weight.extend(row.iter().zip(&fs).map(|(x, s)| (x / s) as f32));
    }
    let mut gate = HostGate {
        weight,
        bias,
        channels: ch,
    };
    // Diagnostic: how often the gate picks the expert of the largest validation responsibility
    // (of the trained mixture, before the guard below).
    let rv = responsibilities(&elbos(&experts, val)?, &share);
    let g = gate.view();
    let agree = val
        .iter()
        .zip(&rv)
        .filter(|(x, r)| {
            g.route(x)
                .is_ok_and(|rt| usize::from(rt.expert) == argmax(r))
        })
        .count() as f64
        / val.len().max(1) as f64;
    // Guard for data with one mode: a single VAE on every training window (the same seed and
    // settings); if it has the better mean validation score, the experts become copies of it
    // behind a uniform gate (top-1 score = its score + ln K, the same ranking).
    let mut fallback = false;
    let mut single_val = f64::NAN;
    let mut mixture_val = f64::NAN;
    if !val.is_empty() {
        let all: Vec<f32> = train.iter().flat_map(|x| x.iter().copied()).collect();
        let vall: Vec<f32> = val.iter().flat_map(|x| x.iter().copied()).collect();
        let (single, single_report) = super::train(arch, cfg, &all, &vall)?;
        let mean = |m: &HostModel| -> Result<f64> {
            let s = score_windows(m, val.iter(), ScoreKind::Elbo, 0)?;
            Ok(s.iter().map(|v| f64::from(v.score)).sum::<f64>() / s.len().max(1) as f64)
        };
        let fexp: Vec<HostModel> = experts
            .iter()
            .map(HostModel::float)
            .collect::<Result<_>>()?;
        mixture_val = mean(&HostModel::mixture(gate.clone(), fexp)?)?;
        single_val = mean(&HostModel::float(&single)?)?;
        if single_val <= mixture_val {
            fallback = true;
            experts = vec![single; k];
            reports = vec![single_report; k];
            gate = HostGate {
                weight: vec![0.0; k * d],
                bias: vec![0.0; k],
                channels: ch,
            };
        }
    }
    Ok(MoeTrained {
        experts,
        reports,
        gate,
        history: json!({
            "rounds": hist,
            "gate_agreement_val": agree,
            "schedule": "k-means start, hard EM, softmax gate with load balancing",
            "val_score_mixture": mixture_val,
            "val_score_single": single_val,
            "fallback_to_single": fallback,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::gradcheck::{numeric_gradient, rel_err};

    fn data(seed: u64, n: usize, d: usize, k: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = XorShiftRng::seed_from_u64(seed);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let feats = (0..n)
            .map(|_| (0..d).map(|_| 2.0 * u()).collect())
            .collect();
        let resp = (0..n)
            .map(|_| {
                let r: Vec<f64> = (0..k).map(|_| u() + 0.6).collect();
                let s: f64 = r.iter().sum();
                r.iter().map(|v| v / s).collect()
            })
            .collect();
        let theta = (0..k * d + k).map(|_| u()).collect();
        (feats, resp, theta)
    }

    #[test]
    fn gate_gradient_matches_central_differences() {
        let (k, d) = (3, 4);
        let (feats, resp, theta) = data(1, 17, d, k);
        let fk = [0.5, 0.3, 0.2];
        for balance in [None, Some(&fk[..])] {
            let mut g = vec![0.0; theta.len()];
            gate_loss(&theta, &feats, &resp, k, balance, Some(&mut g));
            let num = numeric_gradient(&theta, 1e-5, |t| {
                Ok(gate_loss(t, &feats, &resp, k, balance, None))
            })
            .unwrap();
            let worst = g
                .iter()
                .zip(&num)
                .map(|(&a, &n)| rel_err(a, n, 1e-6))
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-6,
                "balance {balance:?}: worst relative error {worst:e}"
            );
            // A broken gradient (the balancing term's sign flipped) fails the check.
            if balance.is_some() {
                let mut wrong = g.clone();
                let mut g0 = vec![0.0; theta.len()];
                gate_loss(&theta, &feats, &resp, k, None, Some(&mut g0));
                wrong
                    .iter_mut()
                    .zip(&g0)
                    .for_each(|(w, z)| *w = 2.0 * *z - *w);
                let bad = wrong
                    .iter()
                    .zip(&num)
                    .map(|(&a, &n)| rel_err(a, n, 1e-6))
                    .fold(0.0, f64::max);
                assert!(bad > 1e-3, "a broken gradient passed: {bad:e}");
            }
        }
    }

    #[test]
    fn gate_learns_separable_clusters_and_kmeans_finds_them() {
        let mut rng = XorShiftRng::seed_from_u64(3);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let centers = [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]];
        let mut pts = Vec::new();
        let mut lab = Vec::new();
        for i in 0..300 {
            let c = centers[i % 3];
            pts.push(vec![c[0] + u(), c[1] + u()]);
            lab.push(i % 3);
        }
        let cs = kmeans(&pts, 3, 7);
        let assign: Vec<usize> = pts.iter().map(|p| nearest(p, &cs)).collect();
        // The clusters are the labels up to a permutation.
        for a in 0..3 {
            let ls: std::collections::BTreeSet<usize> = assign
                .iter()
                .zip(&lab)
                .filter(|(x, _)| **x == a)
                .map(|(_, l)| *l)
                .collect();
            assert_eq!(ls.len(), 1);
        }
        let resp: Vec<Vec<f64>> = assign
            .iter()
            .map(|&a| (0..3).map(|j| f64::from(u8::from(j == a))).collect())
            .collect();
        let theta = fit_gate(&pts, &resp, 3);
        let d = 2;
        let ok = pts
            .iter()
            .zip(&assign)
            .filter(|(p, &a)| {
                let l: Vec<f64> = (0..3)
                    .map(|j| theta[3 * d + j] + theta[j * d] * p[0] + theta[j * d + 1] * p[1])
                    .collect();
                argmax(&l) == a
            })
            .count();
        assert_eq!(ok, 300);
    }
}
