//! The demo's plots: training curves, score histograms (f32 and int8) and ROC curves (with the
//! Gaussian baseline's), drawn into the report directory.

use std::path::Path;

use anyhow::Result;

use super::baseline::BaselineResult;
use crate::data::Windows;
use crate::metrics;
use crate::plots::{self, EpochPoint, HistPanel, RocLine};
use crate::train::TrainReport;

/// Draws `training_curves.svg`, `score_histogram.svg` and `roc.svg` into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn plots(
    dir: &Path,
    report: &TrainReport,
    w: &Windows,
    f32s: &[f32],
    int8s: &[f32],
    score: &str,
    t_f32: f32,
    t_int8: f32,
    baseline: Option<&BaselineResult>,
) -> Result<()> {
    let hist: Vec<EpochPoint> = report
        .history
        .iter()
        .map(|h| EpochPoint {
            epoch: h.epoch,
            loss: h.loss,
            kl: h.kl,
            val_elbo: h.val_elbo.unwrap_or(f64::NAN),
        })
        .collect();
    plots::training_curves(&dir.join("training_curves.svg"), &hist)?;
    let labels = w.labels.as_deref().unwrap_or(&[]);
    let split = |s: &[f32]| -> (Vec<f32>, Vec<f32>) {
        let (mut n, mut a) = (Vec::new(), Vec::new());
        for (&v, &l) in s.iter().zip(labels) {
            if l {
                a.push(v);
            } else {
                n.push(v);
            }
        }
        (n, a)
    };
    let (nf, af) = split(f32s);
    let (nq, aq) = split(int8s);
    plots::score_histograms(
        &dir.join("score_histogram.svg"),
        &[
            HistPanel {
                title: format!("f32 model, -{score} on the test windows"),
                normal: &nf,
                anomalous: &af,
                threshold: t_f32,
            },
            HistPanel {
                title: format!("int8 model, -{score} on the test windows"),
                normal: &nq,
                anomalous: &aq,
                threshold: t_int8,
            },
        ],
    )?;
    let mut lines = vec![
        RocLine {
            name: "VAE f32".into(),
            points: metrics::roc_curve(f32s, labels),
            auc: metrics::roc_auc(f32s, labels).unwrap_or(f64::NAN),
        },
        RocLine {
            name: "VAE int8".into(),
            points: metrics::roc_curve(int8s, labels),
            auc: metrics::roc_auc(int8s, labels).unwrap_or(f64::NAN),
        },
    ];
    if let Some(b) = baseline {
        lines.push(RocLine {
            name: "full-cov. Gaussian".into(),
            points: metrics::roc_curve(&b.scores, labels),
            auc: b.roc_auc.unwrap_or(f64::NAN),
        });
    }
    plots::roc_curves(&dir.join("roc.svg"), &format!("ROC, -{score}"), &lines)?;
    Ok(())
}
