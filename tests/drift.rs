//! Long-run drift of the adaptation's running statistics against an f64 reference: the
//! normalizer learned by [`Welford`] (f32) and the threshold estimated by [`P2Quantile`] (f32),
//! fed a stationary stream, compared with the same algorithms in f64 on the same values.
//!
//! `cargo test --release --test drift` runs 10^6 samples; the 10^8-sample run of the README
//! is `cargo test --release --test drift -- --ignored --nocapture`.

#![allow(clippy::needless_range_loop)]

mod common;
use common::SplitMix as TestRng;
use tinyvae::{ChannelMask, Normalizer, P2Quantile, Welford};

/// Channels of the stream: (mean, standard deviation), sensor-like offsets and spreads.
const CHANNELS: [(f64, f64); 4] = [(0.0, 1.0), (5.0, 0.1), (-300.0, 20.0), (9.81, 0.5)];
const C: usize = CHANNELS.len();

/// The P² target: the 0.95 quantile of levels distributed N(40, 5) (an alarm threshold).
const P: f64 = 0.95;
const LEVEL: (f64, f64) = (40.0, 5.0);

/// P² in f64 with the same steps as the library's (see `src/quantile.rs`).
struct P2f64 {
    p: f64,
    q: [f64; 5],
    n: [f64; 5],
    count: u64,
}

impl P2f64 {
    fn new(p: f64) -> Self {
        Self {
            p,
            q: [0.0; 5],
            n: [1.0, 2.0, 3.0, 4.0, 5.0],
            count: 0,
        }
    }

    fn push(&mut self, x: f64) {
        if self.count < 5 {
            self.q[self.count as usize] = x;
            self.count += 1;
            if self.count == 5 {
                self.q.sort_by(f64::total_cmp);
            }
            return;
        }
        self.count += 1;
        let k = if x < self.q[0] {
            self.q[0] = x;
            0
        } else if x >= self.q[4] {
            self.q[4] = x;
            3
        } else {
            (0..4).find(|&i| x < self.q[i + 1]).unwrap()
        };
        for i in k + 1..5 {
            self.n[i] += 1.0;
        }
        let m = (self.count - 1) as f64;
        let f = [0.0, 0.5 * self.p, self.p, 0.5 * (1.0 + self.p), 1.0];
        for i in 1..4 {
            let d = 1.0 + m * f[i] - self.n[i];
            let (up, down) = (self.n[i + 1] - self.n[i], self.n[i] - self.n[i - 1]);
            let s = if d >= 1.0 && up > 1.0 {
                1.0
            } else if d <= -1.0 && down > 1.0 {
                -1.0
            } else {
                continue;
            };
            let (qm, qi, qp) = (self.q[i - 1], self.q[i], self.q[i + 1]);
            let span = self.n[i + 1] - self.n[i - 1];
            let par = qi + s / span * ((down + s) * (qp - qi) / up + (up - s) * (qi - qm) / down);
            self.q[i] = if qm < par && par < qp {
                par
            } else if s > 0.0 {
                qi + (qp - qi) / up
            } else {
                qi - (qi - qm) / down
            };
            self.n[i] += s;
        }
    }

    fn estimate(&self) -> f64 {
        self.q[2]
    }
}

/// Largest relative errors after `n` samples: (normalizer mean, in standard deviations;
/// normalizer standard deviation; P² threshold), each against the f64 run on the same values.
fn drift(n: u64, checkpoints: &[u64]) -> (f64, f64, f64) {
    let mut rng = TestRng(2026);
    let mut w = Welford::<C>::new();
    let (mut cnt, mut mean, mut m2) = (0u64, [0.0f64; C], [0.0f64; C]);
    let mut q = P2Quantile::new(P as f32);
    let mut r = P2f64::new(P);
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for i in 1..=n {
        let x: [f32; C] =
            std::array::from_fn(|c| (CHANNELS[c].0 + CHANNELS[c].1 * rng.normal()) as f32);
        w.push(&x, ChannelMask::EMPTY);
        cnt += 1;
        for c in 0..C {
            let v = f64::from(x[c]);
            let d = v - mean[c];
            mean[c] += d / cnt as f64;
            m2[c] += d * (v - mean[c]);
        }
        let level = (LEVEL.0 + LEVEL.1 * rng.normal()) as f32;
        q.push(level).unwrap();
        r.push(f64::from(level));
        if checkpoints.contains(&i) || i == n {
            let norm = w.normalizer(&Normalizer::identity());
            let (mut em, mut es) = (0.0f64, 0.0f64);
            for c in 0..C {
                let sd = (m2[c] / cnt as f64).sqrt();
                em = em.max((f64::from(norm.mean()[c]) - mean[c]).abs() / sd);
                es = es.max((1.0 / f64::from(norm.inv_std()[c]) / sd - 1.0).abs());
            }
            let eq = (f64::from(q.estimate().unwrap()) / r.estimate() - 1.0).abs();
            eprintln!(
                "after {i:>11} samples: mean error {em:.2e} std, std error {es:.2e}, \
                 P2 threshold error {eq:.2e} (f32 {:.4}, f64 {:.4}, exact quantile {:.4})",
                q.estimate().unwrap(),
                r.estimate(),
                LEVEL.0 + LEVEL.1 * 1.644_853_626_951_472_2
            );
            worst = (worst.0.max(em), worst.1.max(es), worst.2.max(eq));
        }
    }
    worst
}

fn check(n: u64, checkpoints: &[u64]) {
    let (em, es, eq) = drift(n, checkpoints);
    assert!(
        em < 0.01,
        "normalizer mean drifted by {em:.3e} standard deviations"
    );
    assert!(
        es < 0.01,
        "normalizer standard deviation drifted by {es:.3e}"
    );
    assert!(eq < 0.01, "P2 threshold drifted by {eq:.3e}");
}

#[test]
fn running_statistics_do_not_drift_over_1e6_samples() {
    check(1_000_000, &[10_000, 100_000]);
}

#[test]
#[ignore = "10^8 samples: about a minute in release; the README's figure"]
fn running_statistics_do_not_drift_over_1e8_samples() {
    check(
        100_000_000,
        &[1_000_000, 10_000_000, 20_000_000, 50_000_000],
    );
}
