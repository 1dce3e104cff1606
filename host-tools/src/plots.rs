//! SVG plots drawn with `plotters`' SVG backend: training curves, score histograms with the
//! threshold, ROC curves.
//!
//! The SVG backend writes text as `<text>` elements and plotters (built without its `ttf`
//! feature) estimates text extents itself, so no system font library (fontconfig, FreeType) is
//! needed to draw: the viewer renders the text with its own sans-serif font. Each plot is drawn
//! into a string and written atomically.
//!
//! Score axes use the symmetric log transform `t(s) = sign(s) log10(1 + |s|)` because anomalous
//! windows score orders of magnitude above normal ones; tick labels show the untransformed score.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::output::write_file;

/// One epoch of training history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochPoint {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss (negative ELBO with the KL weight of the epoch), nats per window.
    pub loss: f64,
    /// Mean KL(q(z|x) || p(z)) on the training windows, nats per window.
    pub kl: f64,
    /// Validation ELBO, nats per window.
    pub val_elbo: f64,
}

fn symlog(s: f64) -> f64 {
    s.signum() * (1.0 + s.abs()).log10()
}

fn symexp(t: f64) -> f64 {
    t.signum() * (10f64.powf(t.abs()) - 1.0)
}

/// A linear axis over symlog-transformed values with ticks at round untransformed values.
struct SymlogAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for SymlogAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Tick positions (in symlog space) at 0 and ±1, 2, 5 × 10^k, thinned to at most ~12.
fn symlog_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut t = vec![0.0];
    for k in 0..10 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(k);
            t.push(v);
            t.push(-v);
        }
    }
    let mut t: Vec<f64> = t
        .into_iter()
        .map(symlog)
        .filter(|&x| x >= lo && x <= hi)
        .collect();
    t.sort_by(f64::total_cmp);
    if t.len() > 12 {
        // keep only the powers of ten (and 0)
        t.retain(|&x| {
            let v = symexp(x).abs();
            v == 0.0 || (v.log10() - v.log10().round()).abs() < 1e-9
        });
    }
    t
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(0.01..100_000.0).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn range_of(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Training curves: loss, KL and validation ELBO per epoch, side by side.
///
/// # Errors
/// Drawing or writing failures.
pub fn training_curves(path: &Path, history: &[EpochPoint]) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let panels = root.split_evenly((1, 3));
        type Getter = fn(&EpochPoint) -> f64;
        let series: [(&str, &str, Getter, RGBColor); 3] = [
            ("training loss", "nats per window", |p| p.loss, BLUE),
            ("KL(q(z|x) || p(z))", "nats per window", |p| p.kl, MAGENTA),
            (
                "validation ELBO",
                "nats per window",
                |p| p.val_elbo,
                RGBColor(0, 140, 0),
            ),
        ];
        let last = history.last().map_or(1, |p| p.epoch).max(2);
        for (area, (title, ylab, get, color)) in panels.iter().zip(series) {
            let (lo, hi) = range_of(history.iter().map(get));
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(1f64..last as f64, lo..hi)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(ylab)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| fmt_num(*v))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(
                    history.iter().map(|p| (p.epoch as f64, get(p))),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    write_file(path, svg.as_bytes())
}

/// One panel of [`score_histograms`].
#[derive(Clone, Debug)]
pub struct HistPanel<'a> {
    /// Panel title (e.g. `int8, -ELBO`).
    pub title: String,
    /// Scores of normal windows.
    pub normal: &'a [f32],
    /// Scores of anomalous windows.
    pub anomalous: &'a [f32],
    /// The calibrated threshold (alarm when `score > threshold`).
    pub threshold: f32,
}

/// Histograms of normal vs anomalous scores with the threshold as a vertical line, one panel
/// per entry, stacked vertically. The x axis is symlog (see the module docs).
///
/// # Errors
/// Drawing or writing failures.
pub fn score_histograms(path: &Path, panels: &[HistPanel<'_>]) -> Result<()> {
    const BINS: usize = 60;
    let mut svg = String::new();
    {
        let h = 380 * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (900, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (area, p) in areas.iter().zip(panels) {
            let all = p
                .normal
                .iter()
                .chain(p.anomalous)
                .map(|&s| symlog(f64::from(s)));
            let (lo, hi) = range_of(all.chain(std::iter::once(symlog(f64::from(p.threshold)))));
            let width = (hi - lo) / BINS as f64;
            let hist = |v: &[f32]| {
                let mut c = vec![0usize; BINS];
                for &s in v {
                    let b = ((symlog(f64::from(s)) - lo) / width).floor();
                    let b = (b.max(0.0) as usize).min(BINS - 1);
                    c[b] += 1;
                }
                c
            };
            let (hn, ha) = (hist(p.normal), hist(p.anomalous));
            let ymax = hn.iter().chain(&ha).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    SymlogAxis {
                        lo,
                        hi,
                        ticks: symlog_ticks(lo, hi),
                    },
                    0f64..ymax,
                )
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("anomaly score (nats, symmetric log axis)")
                .y_desc("windows")
                .x_label_formatter(&|v| fmt_num(symexp(*v)))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(err)?;
            let bars = |counts: Vec<usize>, color: RGBColor| {
                counts
                    .into_iter()
                    .enumerate()
                    .filter(|(_, c)| *c > 0)
                    .map(move |(i, c)| {
                        let x0 = lo + i as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], color.mix(0.5).filled())
                    })
                    .collect::<Vec<_>>()
            };
            chart
                .draw_series(bars(hn, BLUE))
                .map_err(err)?
                .label(format!("normal ({})", p.normal.len()))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.5).filled())
                });
            chart
                .draw_series(bars(ha, RED))
                .map_err(err)?
                .label(format!("anomalous ({})", p.anomalous.len()))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], RED.mix(0.5).filled())
                });
            let t = symlog(f64::from(p.threshold));
            chart
                .draw_series(LineSeries::new(
                    vec![(t, 0.0), (t, ymax)],
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("threshold {}", fmt_num(f64::from(p.threshold))))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], BLACK.stroke_width(2))
                });
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    write_file(path, svg.as_bytes())
}

/// One curve of [`roc_curves`].
#[derive(Clone, Debug)]
pub struct RocLine {
    /// Legend name (e.g. `f32`).
    pub name: String,
    /// Points `(fpr, tpr)`.
    pub points: Vec<(f64, f64)>,
    /// Its ROC AUC, shown in the legend.
    pub auc: f64,
}

/// ROC curves (e.g. f32 vs int8) with the chance diagonal; a second panel zooms into
/// FPR ≤ 0.1 where the calibrated operating point lies.
///
/// # Errors
/// Drawing or writing failures.
pub fn roc_curves(path: &Path, title: &str, lines: &[RocLine]) -> Result<()> {
    const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(500);
        for (area, xmax, sub) in [(left, 1.0, ""), (right, 0.1, " (FPR ≤ 0.1)")] {
            let ymin = if xmax < 1.0 { 0.5 } else { 0.0 };
            let mut chart = ChartBuilder::on(&area)
                .caption(format!("{title}{sub}"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..xmax, ymin..1.0f64)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("false-positive rate")
                .y_desc("true-positive rate")
                .draw()
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(
                    vec![(0.0, 0.0), (1.0, 1.0)],
                    BLACK.mix(0.3),
                ))
                .map_err(err)?;
            for (i, l) in lines.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let width = if i == 0 { 4 } else { 2 };
                chart
                    .draw_series(LineSeries::new(
                        l.points.iter().copied(),
                        color.stroke_width(width),
                    ))
                    .map_err(err)?
                    .label(format!("{} (AUC {:.4})", l.name, l.auc))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(width))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    write_file(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlog_round_trips() {
        for s in [-1e5, -3.0, -0.5, 0.0, 0.25, 7.0, 1234.5] {
            assert!(
                (symexp(symlog(s)) - s).abs() <= 1e-9 * s.abs().max(1.0),
                "{s}"
            );
        }
    }

    #[test]
    fn plots_have_text_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let hist: Vec<EpochPoint> = (1..=5)
            .map(|e| EpochPoint {
                epoch: e,
                loss: 100.0 / e as f64,
                kl: e as f64,
                val_elbo: -50.0 / e as f64,
            })
            .collect();
        let p = dir.path().join("t.svg");
        training_curves(&p, &hist).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("<text") && s.contains("validation ELBO"), "{s}");
        assert!(s.contains("<polyline"), "{s}");

        let normal = [-10.0f32, -5.0, 0.0, 3.0];
        let anom = [50.0f32, 800.0, 1e4];
        let p = dir.path().join("h.svg");
        score_histograms(
            &p,
            &[HistPanel {
                title: "int8".into(),
                normal: &normal,
                anomalous: &anom,
                threshold: 4.0,
            }],
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(
            s.contains("threshold 4") && !s.contains("threshold 4.0"),
            "{s}"
        );
        assert!(s.contains("<rect"), "{s}");

        let p = dir.path().join("r.svg");
        roc_curves(
            &p,
            "ROC",
            &[RocLine {
                name: "f32".into(),
                points: vec![(0.0, 0.0), (0.1, 0.9), (1.0, 1.0)],
                auc: 0.95,
            }],
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("f32 (AUC 0.9500)"), "{s}");
    }
}
