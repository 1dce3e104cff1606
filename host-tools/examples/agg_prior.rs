//! Experiment (issue 8): score with a prior fitted to the aggregate posterior.
//!
//! After training, fit `p(z) = N(m, S)` to the encoder over the training windows:
//! `m = mean(mu)`, `S = Cov(mu) + mean(diag exp(logvar))` (the moment-matched aggregate
//! posterior), then score `-(ln p(x | mu) - KL(q(z|x) || N(m, S)))` with
//! `KL = 1/2 [ln|S| - sum logvar - Z + sum_j v_j (S^-1)_jj + (mu - m)^T S^-1 (mu - m)]`.
//! Prints, for f32 and int8: the validation ELBO per window under N(0, I) and under N(m, S)
//! (the validation criterion), and the test ROC AUC of both scores.
//!
//! `cargo run --release --example agg_prior -- MODEL_DIR [TRAIN_CSV TEST_CSV]`; the environment
//! variable `VAL_STRIDE` overrides the stride of the training/validation windows (default: the
//! checkpoint's training stride), so models trained at different strides compare on the same
//! validation windows.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tinyvae::ScoreKind;
use tinyvae_host_tools::data::{self, Norm, Windows};
use tinyvae_host_tools::model::{HostModel, Ranges};
use tinyvae_host_tools::{checkpoint, metrics};

/// Per window: (recon, kl to N(0, I), mu, logvar).
type Enc = Vec<(f64, f64, Vec<f64>, Vec<f64>)>;

fn encode(m: &HostModel, w: &Windows) -> Result<Enc> {
    let z = m.latent;
    let (mut mu, mut lv, mut zb, mut eps) =
        (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
    let mut mean = vec![0.0; m.input];
    let mut scratch = m.scratch();
    let mut sampler = tinyvae::NormalSampler::new();
    let mut out = Vec::new();
    for (i, x) in w.iter().enumerate() {
        let mut rng = tinyvae::window_rng(0, i as u64);
        let buf = tinyvae::Buffers {
            mu: &mut mu,
            logvar: &mut lv,
            z: &mut zb,
            eps: &mut eps,
            mean: &mut mean,
        };
        let s = tinyvae::score(
            m,
            x,
            ScoreKind::Elbo,
            buf,
            &mut scratch,
            &mut sampler,
            &mut rng,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push((
            f64::from(s.recon),
            f64::from(s.kl),
            mu.iter().map(|&v| f64::from(v)).collect(),
            lv.iter().map(|&v| f64::from(v)).collect(),
        ));
    }
    Ok(out)
}

/// Fitted prior: mean, inverse covariance, log-determinant.
struct Prior {
    m: Vec<f64>,
    inv: Vec<Vec<f64>>,
    logdet: f64,
}

fn fit(enc: &Enc) -> Prior {
    let z = enc[0].2.len();
    let n = enc.len() as f64;
    let mut m = vec![0.0; z];
    for e in enc {
        for (a, b) in m.iter_mut().zip(&e.2) {
            *a += b / n;
        }
    }
    let mut s = vec![vec![0.0; z]; z];
    for e in enc {
        for i in 0..z {
            for j in 0..z {
                s[i][j] += (e.2[i] - m[i]) * (e.2[j] - m[j]) / n;
            }
            s[i][i] += e.3[i].exp() / n;
        }
    }
    // Gauss-Jordan inverse and log-determinant (f64, SPD).
    let mut a = s.clone();
    let mut inv: Vec<Vec<f64>> = (0..z)
        .map(|i| (0..z).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let mut logdet = 0.0;
    for c in 0..z {
        let p = a[c][c];
        logdet += p.ln();
        for j in 0..z {
            a[c][j] /= p;
            inv[c][j] /= p;
        }
        for r in 0..z {
            if r != c {
                let f = a[r][c];
                for j in 0..z {
                    a[r][j] -= f * a[c][j];
                    inv[r][j] -= f * inv[c][j];
                }
            }
        }
    }
    Prior { m, inv, logdet }
}

fn kl_prior(p: &Prior, mu: &[f64], lv: &[f64]) -> f64 {
    let z = mu.len();
    let d: Vec<f64> = mu.iter().zip(&p.m).map(|(a, b)| a - b).collect();
    let mut maha = 0.0;
    let mut tr = 0.0;
    for i in 0..z {
        tr += lv[i].exp() * p.inv[i][i];
        for j in 0..z {
            maha += d[i] * p.inv[i][j] * d[j];
        }
    }
    0.5 * (p.logdet - lv.iter().sum::<f64>() - z as f64 + tr + maha)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .context("usage: agg_prior MODEL_DIR [TRAIN TEST]")?,
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/watch_shoulder_pen");
    let train = args.get(2).map_or(root.join("train.csv"), PathBuf::from);
    let test = args.get(3).map_or(root.join("test.csv"), PathBuf::from);
    let ck = checkpoint::load(&dir)?;
    let c = &ck.config;
    let cal = c.extra.get("calibration").context("not calibrated")?;
    let ranges: Ranges = serde_json::from_value(cal["ranges"].clone())?;
    let vf = cal["val_fraction"].as_f64().unwrap_or(0.2);
    let ts = match std::env::var("VAL_STRIDE") {
        Ok(v) => v.parse()?,
        Err(_) => cal["train_stride"].as_u64().unwrap_or(8) as usize,
    };
    let norm = Norm {
        mean: c.norm_mean.clone(),
        std: c.norm_std.clone(),
    };
    let s = data::load_csv(&train)?.select_channels(&c.channels)?;
    let (tr, va) = data::split_tail(&s, vf, c.window)?;
    let trw = Windows::cut(&tr, c.window, ts, &norm)?;
    let vaw = Windows::cut(&va, c.window, ts, &norm)?;
    let tew = Windows::cut(
        &data::load_csv(&test)?.select_channels(&c.channels)?,
        c.window,
        c.stride,
        &norm,
    )?;
    let labels = tew.labels.clone().context("no labels")?;
    for (name, m) in [
        ("f32", HostModel::float(&ck.params)?),
        ("int8", HostModel::int8(&ck.params, &ranges)?),
    ] {
        let p = fit(&encode(&m, &trw)?);
        let val = encode(&m, &vaw)?;
        let n = val.len() as f64;
        let v0: f64 = val.iter().map(|e| e.0 - e.1).sum::<f64>() / n;
        let v1: f64 = val
            .iter()
            .map(|e| e.0 - kl_prior(&p, &e.2, &e.3))
            .sum::<f64>()
            / n;
        let te = encode(&m, &tew)?;
        let s0: Vec<f32> = te.iter().map(|e| (e.1 - e.0) as f32).collect();
        let s1: Vec<f32> = te
            .iter()
            .map(|e| (kl_prior(&p, &e.2, &e.3) - e.0) as f32)
            .collect();
        let a0 = metrics::roc_auc(&s0, &labels).unwrap_or(f64::NAN);
        let a1 = metrics::roc_auc(&s1, &labels).unwrap_or(f64::NAN);
        println!(
            "{name}: latent {} | val ELBO N(0,I) {v0:.2} agg {v1:.2} | test AUC elbo {a0:.4} elbo-agg {a1:.4}",
            m.latent
        );
    }
    Ok(())
}
