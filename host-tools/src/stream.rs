//! The library's streaming detector over a host model: what `tinyvae score` and `eval` run, so
//! the host's windows, scores, alarms, alarm events and sensor faults are the chip's.
//!
//! The checkpoint's shapes are known only at run time, so the detector is the library's
//! [`tinyvae::SliceDetector`] (ring and window buffers in `Vec`s, scoring buffers in a
//! [`tinyvae::BorrowedWorkspace`]); it runs the same code as the firmware's typed
//! [`tinyvae::Detector`] (`tests/detector.rs` checks the two bit for bit). The channel count is a
//! const generic of the detector's per-channel state; [`run`] picks it from the checkpoint
//! (1 to 32 channels, the library's limit).
//!
//! Every row of the stream is pushed as one sample in physical units (a NaN or infinite value is
//! a sensor fault: its windows are skipped); a gap row ([`Series::gaps`]) is a dropped sample
//! ([`tinyvae::StreamDetector::mark_gap`]). Windows are numbered from 0 and window `k` covers
//! rows `[k stride, k stride + W)`, the windows [`crate::data::Windows::cut`] makes; sampled
//! scores of window `k` draw from [`tinyvae::window_rng`]`(seed, k)`.

use anyhow::{anyhow, bail, Context, Result};
use tinyvae::{
    AdaptConfig, AlarmConfig, BorrowedWorkspace, Buffers, DetectorConfig, Normalizer,
    SaturationLimits, ScoreKind, SliceDetector, WindowReport,
};

use crate::checkpoint::CheckpointConfig;
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;

use crate::data::{column_map, CsvRows, Series};
use crate::model::HostModel;

/// How to run the detector (everything but the model and the standardization, which come from
/// the checkpoint).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamConfig {
    /// The score.
    pub kind: ScoreKind,
    /// Samples between window starts.
    pub stride: usize,
    /// Seed of the per-window generators of sampled scores.
    pub seed: u64,
    /// Alarm logic (threshold, EMA, hysteresis, debounce).
    pub alarm: AlarmConfig,
    /// Saturation limits `(lo, hi)` in physical units, the same for every channel.
    pub limits: Option<(f32, f32)>,
    /// Whether saturated or stuck windows update the alarm.
    pub alarm_on_flagged: bool,
    /// On-device adaptation.
    pub adapt: Option<AdaptConfig>,
    /// Compute the attribution (top channel) of every scored window.
    pub attribution: bool,
}

impl StreamConfig {
    /// Score `kind`, plain threshold, no limits, no adaptation, no attribution.
    pub fn new(kind: ScoreKind, stride: usize, seed: u64, threshold: f32) -> Self {
        Self {
            kind,
            stride,
            seed,
            alarm: AlarmConfig::threshold(threshold),
            limits: None,
            alarm_on_flagged: false,
            adapt: None,
            attribution: false,
        }
    }
}

/// One window: the library's report, and its attribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowRow {
    /// What the detector reported (index, rows, score, level, alarm, event, faults, phase).
    pub report: WindowReport,
    /// The channel contributing most to the reconstruction term (with
    /// [`StreamConfig::attribution`], scored windows only).
    pub top_channel: Option<usize>,
}

impl WindowRow {
    /// The faults as text, e.g. `nonfinite:1;stuck:2` (empty if none).
    pub fn faults_text(&self, channels: &[String]) -> String {
        let f = &self.report.faults;
        let name = |c: usize| channels.get(c).cloned().unwrap_or_else(|| c.to_string());
        let mut parts: Vec<String> = Vec::new();
        for (tag, mask) in [
            ("nonfinite", f.non_finite),
            ("saturated", f.saturated),
            ("stuck", f.stuck),
        ] {
            parts.extend(mask.iter().map(|c| format!("{tag}:{}", name(c))));
        }
        if f.gap {
            parts.push("gap".into());
        }
        parts.join(";")
    }
}

/// Runs the detector of `model` over every row of `series` (its channels in the checkpoint's
/// order, see [`Series::select_channels`]).
///
/// # Errors
/// A channel count outside 1..=32 or different from the checkpoint's, an invalid configuration
/// (stride 0, bad alarm or adaptation parameters, bad statistics), a model whose input is not
/// `window * channels`, or a scoring error (with the row).
pub fn run(
    model: &HostModel,
    ck: &CheckpointConfig,
    series: &Series,
    cfg: &StreamConfig,
) -> Result<Vec<WindowRow>> {
    let mut out = Vec::with_capacity(series.rows() / cfg.stride.max(1) + 1);
    let mut rows = SeriesRows {
        series,
        next: 0,
        gaps: 0,
    };
    run_rows(model, ck, &mut rows, cfg, |_, r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// Where the detector's samples come from, one row at a time.
pub trait RowSource {
    /// The file the rows are read from (for messages).
    fn path(&self) -> &Path;
    /// Channels per row.
    fn channels(&self) -> usize;
    /// Writes the next row into `sample` (`channels()` values) and returns `Some(false)`, or
    /// returns `Some(true)` for a dropped sample (a gap), or `None` at the end.
    ///
    /// # Errors
    /// An input error of the row.
    fn next_row(&mut self, sample: &mut [f32]) -> Result<Option<bool>>;
}

/// The rows of a loaded [`Series`].
struct SeriesRows<'a> {
    series: &'a Series,
    next: usize,
    gaps: usize,
}

impl RowSource for SeriesRows<'_> {
    fn path(&self) -> &Path {
        &self.series.path
    }
    fn channels(&self) -> usize {
        self.series.num_channels()
    }
    fn next_row(&mut self, sample: &mut [f32]) -> Result<Option<bool>> {
        let c = self.series.num_channels();
        let i = self.next;
        let Some(row) = self.series.values.get(i * c..(i + 1) * c) else {
            return Ok(None);
        };
        self.next += 1;
        if self.series.gaps.get(self.gaps) == Some(&i) {
            self.gaps += 1;
            return Ok(Some(true));
        }
        sample.copy_from_slice(row);
        Ok(Some(false))
    }
}

/// The rows of a CSV file read one at a time ([`CsvRows`]), with the model's channels picked
/// out by [`column_map`]: memory stays one line and one window, however long the file.
pub struct CsvSource<R> {
    rows: CsvRows<R>,
    columns: Vec<usize>,
    /// Rows (0-based) labeled 1 among the last ones read (at most two windows back).
    ones: VecDeque<usize>,
    keep: usize,
    read: usize,
    clamp: Option<crate::scale::ClampCheck>,
}

impl<R: Read> CsvSource<R> {
    /// Reads `rows`, feeding the detector the columns `names` (the model's channels, matched
    /// as `matching` says, like [`Series::select_channels_with`]); `window` is the model's
    /// window length.
    ///
    /// # Errors
    /// A header that does not provide the model's channels.
    pub fn new(
        rows: CsvRows<R>,
        names: &[String],
        window: usize,
        matching: crate::columns::Matching,
    ) -> Result<Self> {
        let columns = column_map(rows.path(), rows.channels(), names, matching)?;
        Ok(Self {
            rows,
            columns,
            ones: VecDeque::new(),
            keep: window.saturating_mul(2),
            read: 0,
            clamp: None,
        })
    }

    /// Also checks every row against the model's standardization `norm`, for values it clamps
    /// ([`crate::scale::ClampCheck`]; read the result with [`CsvSource::clamp_warnings`]).
    pub fn check_clamped(mut self, norm: &crate::data::Norm) -> Self {
        self.clamp = Some(crate::scale::ClampCheck::new(norm));
        self
    }

    /// The warnings of the clamp check (empty without [`CsvSource::check_clamped`]).
    pub fn clamp_warnings(&self, channels: &[String]) -> Vec<String> {
        self.clamp
            .as_ref()
            .map(|c| c.warnings(channels))
            .unwrap_or_default()
    }

    /// Whether the file has a `label` column.
    pub fn has_labels(&self) -> bool {
        self.rows.has_labels()
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> usize {
        self.read
    }

    /// Whether a row in `start..end` is labeled 1 (for the window just reported).
    pub fn any_label(&self, start: u64, end: u64) -> bool {
        self.ones
            .iter()
            .any(|&r| (start..end).contains(&(r as u64)))
    }
}

impl<R: Read> RowSource for CsvSource<R> {
    fn path(&self) -> &Path {
        self.rows.path()
    }
    fn channels(&self) -> usize {
        self.columns.len()
    }
    fn next_row(&mut self, sample: &mut [f32]) -> Result<Option<bool>> {
        let Some(row) = self.rows.next_row()? else {
            return Ok(None);
        };
        let i = self.read;
        self.read += 1;
        if row.label == Some(1) {
            self.ones.push_back(i);
        }
        while self.ones.front().is_some_and(|&r| r + self.keep <= i) {
            self.ones.pop_front();
        }
        if row.gap {
            return Ok(Some(true));
        }
        for (s, &c) in sample.iter_mut().zip(&self.columns) {
            *s = row.values.get(c).copied().unwrap_or(f32::NAN);
        }
        if let Some(check) = self.clamp.as_mut() {
            check.push(sample);
        }
        Ok(Some(false))
    }
}

/// Runs the detector of `model` over every row of `rows` (its channels in the checkpoint's
/// order), handing each window to `sink` (with the source, e.g. for its labels) as soon as the
/// detector reports it.
///
/// # Errors
/// As [`run`], the first error of `rows`, or of `sink`.
pub fn run_rows<S: RowSource>(
    model: &HostModel,
    ck: &CheckpointConfig,
    rows: &mut S,
    cfg: &StreamConfig,
    mut sink: impl FnMut(&S, WindowRow) -> Result<()>,
) -> Result<()> {
    let c = rows.channels();
    if c != ck.channels.len() {
        bail!(
            "{}: {} channels, the model expects {}",
            rows.path().display(),
            c,
            ck.channels.len()
        );
    }
    if model.input != ck.window * c {
        bail!(
            "model input {} is not window {} x {} channels",
            model.input,
            ck.window,
            c
        );
    }
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match c {
                $($n => run_c::<$n, S>(model, ck, rows, cfg, &mut sink),)*
                _ => bail!("{c} channels: the detector supports 1 to 32"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

fn lib_err(what: &str) -> impl Fn(tinyvae::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {e}")
}

fn run_c<const C: usize, S: RowSource>(
    model: &HostModel,
    ck: &CheckpointConfig,
    rows: &mut S,
    cfg: &StreamConfig,
    sink: &mut impl FnMut(&S, WindowRow) -> Result<()>,
) -> Result<()> {
    let arr = |v: &[f32], what: &str| -> Result<[f32; C]> {
        v.try_into()
            .map_err(|_| anyhow!("checkpoint: {what} has {} values, not {C}", v.len()))
    };
    let norm = Normalizer::from_std(
        arr(&ck.norm_mean, "norm_mean")?,
        arr(&ck.norm_std, "norm_std")?,
    )
    .map_err(lib_err("checkpoint standardization"))?;
    let max = crate::train::limits::MAX_STRIDE;
    if !(1..=max).contains(&cfg.stride) {
        bail!(
            "--stride {} is out of range: valid values are 1 to {max}",
            cfg.stride
        );
    }
    let stride = u32::try_from(cfg.stride).context("stride too large")?;
    let mut dc = DetectorConfig::new(cfg.kind, stride, norm, cfg.alarm)
        .with_seed(cfg.seed)
        .with_alarm_on_flagged(cfg.alarm_on_flagged);
    if let Some((lo, hi)) = cfg.limits {
        dc = dc.with_limits(SaturationLimits::new([lo; C], [hi; C]));
    }
    if let Some(a) = cfg.adapt {
        dc = dc.with_adaptation(a);
    }
    dc.validate().map_err(lib_err("detector configuration"))?;

    let z = model.latent;
    let (mut mu, mut lv, mut zb, mut eps) =
        (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
    let mut mean = vec![0.0; model.input];
    let mut scratch = model.scratch();
    let ws = BorrowedWorkspace::new(
        Buffers {
            mu: &mut mu,
            logvar: &mut lv,
            z: &mut zb,
            eps: &mut eps,
            mean: &mut mean,
        },
        &mut scratch,
    );
    let mut ring = vec![[0.0f32; C]; ck.window];
    let mut input = vec![0.0f32; ck.window * C];
    let mut det = SliceDetector::<HostModel, _, C>::with_buffers(dc, ws, &mut ring, &mut input)
        .map_err(lib_err("detector buffers"))?;
    let mut steps = vec![0.0f32; ck.window];
    let mut sample = [0.0f32; C];
    let mut i = 0usize;
    while let Some(gap) = rows.next_row(&mut sample)? {
        i += 1;
        let r = if gap {
            det.mark_gap()
        } else {
            det.push(model, &sample)
                .map_err(|e| anyhow!("{}: row {i}: {e}", rows.path().display()))?
        };
        let Some(r) = r else { continue };
        let top_channel = if cfg.attribution && r.score.is_some() {
            Some(
                det.attribute_into(model, &mut steps)
                    .map_err(lib_err("attribution"))?
                    .top_channel,
            )
        } else {
            None
        };
        sink(
            rows,
            WindowRow {
                report: r,
                top_channel,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Norm, Windows};
    use crate::train::{Arch, NoiseKind, Params, TrainConfig};

    const W: usize = 5;
    const CH: usize = 3;

    fn setup() -> (HostModel, HostModel, CheckpointConfig, Series) {
        let arch = Arch {
            input: W * CH,
            encoder_hidden: vec![8],
            latent: 2,
            decoder_hidden: vec![8],
            noise: NoiseKind::PerFeature,
            channels: CH,
        };
        let p = Params::init(&arch, 11).unwrap();
        let f = HostModel::float(&p).unwrap();
        let windows: Vec<f32> = (0..40 * W * CH)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 5.0)
            .collect();
        let ranges = f.calibrate(windows.chunks_exact(W * CH)).unwrap();
        let q = HostModel::int8(&p, &ranges).unwrap();
        let ck = CheckpointConfig::new(
            vec!["a".into(), "b".into(), "c".into()],
            W,
            2,
            vec![1.0, -2.0, 0.5],
            vec![2.0, 0.5, 1.5],
            arch,
            TrainConfig::default(),
        );
        let rows = 57;
        let values = (0..rows * CH)
            .map(|i| {
                let (t, c) = ((i / CH) as f32, i % CH);
                ck.norm_mean[c] + ck.norm_std[c] * (0.3 * t + c as f32).sin() * 1.5
            })
            .collect();
        let series = Series {
            path: "s.csv".into(),
            channels: ck.channels.clone(),
            values,
            labels: None,
            gaps: Vec::new(),
        };
        (f, q, ck, series)
    }

    #[test]
    fn detector_scores_equal_the_windowed_scores_and_alarm_above_the_threshold() {
        let (f, q, ck, series) = setup();
        let norm = Norm {
            mean: ck.norm_mean.clone(),
            std: ck.norm_std.clone(),
        };
        let w = Windows::cut(&series, W, ck.stride, &norm).unwrap();
        for model in [&f, &q] {
            for kind in [
                ScoreKind::Elbo,
                ScoreKind::Iwae { samples: 3 },
                ScoreKind::ReconProb { samples: 2 },
            ] {
                let want = crate::model::score_windows(model, w.iter(), kind, 5).unwrap();
                let mut sorted: Vec<f32> = want.iter().map(|s| s.score).collect();
                sorted.sort_by(f32::total_cmp);
                let threshold = sorted[sorted.len() / 2];
                let mut cfg = StreamConfig::new(kind, ck.stride, 5, threshold);
                cfg.attribution = true;
                let rows = run(model, &ck, &series, &cfg).unwrap();
                assert_eq!(rows.len(), w.len());
                for (i, (r, s)) in rows.iter().zip(&want).enumerate() {
                    let start = w.start(i);
                    assert_eq!(r.report.start, start as u64);
                    assert_eq!(r.report.end, (start + W) as u64);
                    assert_eq!(
                        r.report.score.map(|s| s.score.to_bits()),
                        Some(s.score.to_bits())
                    );
                    assert_eq!(
                        r.report.alarm,
                        s.score > threshold,
                        "{kind:?} window {}",
                        r.report.window
                    );
                    assert!(r.top_channel.is_some_and(|c| c < CH));
                }
                assert!(
                    rows.iter().any(|r| r.report.alarm) && rows.iter().any(|r| !r.report.alarm)
                );
            }
        }
    }

    #[test]
    fn faults_gaps_and_shapes() {
        let (f, _, ck, mut series) = setup();
        series.values[10 * CH + 1] = f32::NAN;
        series.gaps = vec![30];
        let cfg = StreamConfig::new(ScoreKind::Elbo, ck.stride, 0, 0.0);
        let rows = run(&f, &ck, &series, &cfg).unwrap();
        for r in &rows {
            let (nf, gap) = (
                (r.report.start..r.report.end).contains(&10),
                (r.report.start..r.report.end).contains(&30),
            );
            assert_eq!(r.report.faults.non_finite.contains(1), nf, "{r:?}");
            assert_eq!(r.report.faults.gap, gap, "{r:?}");
            assert_eq!(r.report.score.is_none(), nf || gap, "{r:?}");
        }
        assert_eq!(
            rows.iter()
                .find(|r| r.report.faults.gap)
                .unwrap()
                .faults_text(&ck.channels),
            "gap"
        );
        // Channel counts that do not fit.
        let mut two = series.clone();
        two.channels.pop();
        assert!(run(&f, &ck, &two, &cfg).is_err());
        let bad = StreamConfig::new(ScoreKind::Elbo, 0, 0, 0.0);
        assert!(run(&f, &ck, &series, &bad).is_err());
    }
}
