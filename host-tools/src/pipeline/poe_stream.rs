//! Streaming a recording through the library's detector with a product-of-experts model
//! (`tinyvae score` of a `--group` checkpoint): the same [`tinyvae::SliceDetector`] as the
//! single model, so every window is scored with the sensor groups that are healthy in it and
//! compared with that subset's threshold (see `src/groups.rs` and `src/poe_vae.rs`).

use anyhow::{anyhow, bail, Result};
use tinyvae::{
    AlarmConfig, BorrowedWorkspace, Buffers, DetectorConfig, Normalizer, SaturationLimits,
    ScoreKind, SliceDetector, WindowReport,
};

use crate::data::Series;
use crate::model::{PoeHost, PoeView};
use crate::poe_checkpoint::PoeConfig;
use crate::stream::WindowRow;

/// Runs the detector over every row of `series` (the model's channels in order; NaN values
/// and gap rows kept) with the ELBO score, stride `stride` and the full-set `threshold`;
/// returns every window's report.
///
/// # Errors
/// A channel count outside 1..=32 or different from the model's, a bad stride, or a scoring
/// error (with the row).
pub fn run_poe(
    model: &PoeHost,
    cfg: &PoeConfig,
    series: &Series,
    stride: usize,
    threshold: f32,
) -> Result<Vec<WindowReport>> {
    let opts = PoeStream {
        kind: ScoreKind::Elbo,
        stride,
        seed: 0,
        alarm: AlarmConfig::threshold(threshold),
        limits: None,
        alarm_on_flagged: false,
        attribution: false,
    };
    Ok(run_poe_with(model, cfg, series, &opts)?
        .into_iter()
        .map(|r| r.report)
        .collect())
}

/// How [`run_poe_with`] runs the detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoeStream {
    /// The score.
    pub kind: ScoreKind,
    /// Samples between window starts.
    pub stride: usize,
    /// Seed of the per-window generators of sampled scores.
    pub seed: u64,
    /// The alarm (full-set threshold, EMA, hysteresis, debounce); a degraded window's score is
    /// moved to the full set's scale before it.
    pub alarm: AlarmConfig,
    /// Saturation limits `(lo, hi)` in physical units, the same for every channel.
    pub limits: Option<(f32, f32)>,
    /// Flagged windows (saturated or stuck channel) update the alarm too.
    pub alarm_on_flagged: bool,
    /// Compute each scored window's top channel among its present groups' channels.
    pub attribution: bool,
}

/// [`run_poe`] with any score, seed and saturation limits (the firmware's passes, for
/// `tinyvae firmware parity --checkpoint`), and with [`PoeStream::attribution`] each scored
/// window's top channel among the channels of the groups it was scored with
/// ([`tinyvae::ChannelAttribution::top_channel_among`]): a dead sensor's placeholder values
/// never name it.
///
/// # Errors
/// As [`run_poe`].
pub fn run_poe_with(
    model: &PoeHost,
    cfg: &PoeConfig,
    series: &Series,
    opts: &PoeStream,
) -> Result<Vec<WindowRow>> {
    let c = series.num_channels();
    if c != cfg.channels.len() {
        bail!(
            "{}: {c} channels, the model expects {}",
            series.path.display(),
            cfg.channels.len()
        );
    }
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match c {
                $($n => run_c::<$n>(model, cfg, series, opts),)*
                _ => bail!("{c} channels: the detector supports 1 to 32"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

fn run_c<const C: usize>(
    model: &PoeHost,
    cfg: &PoeConfig,
    series: &Series,
    opts: &PoeStream,
) -> Result<Vec<WindowRow>> {
    let stride = opts.stride;
    let arr = |v: &[f32]| -> Result<[f32; C]> {
        v.try_into()
            .map_err(|_| anyhow!("checkpoint: {} statistics, not {C}", v.len()))
    };
    let norm = Normalizer::from_std(arr(&cfg.norm_mean)?, arr(&cfg.norm_std)?)
        .map_err(|e| anyhow!("checkpoint standardization: {e}"))?;
    let max = crate::train::limits::MAX_STRIDE;
    if !(1..=max).contains(&stride) {
        bail!("--stride {stride} is out of range: valid values are 1 to {max}");
    }
    let mut dc = DetectorConfig::new(opts.kind, u32::try_from(stride)?, norm, opts.alarm)
        .with_seed(opts.seed)
        .with_alarm_on_flagged(opts.alarm_on_flagged);
    if let Some((lo, hi)) = opts.limits {
        dc = dc.with_limits(SaturationLimits::new([lo; C], [hi; C]));
    }
    dc.validate()
        .map_err(|e| anyhow!("detector configuration: {e}"))?;
    let view = model.view();
    let z = model.latent;
    let (mut mu, mut lv, mut zb, mut eps) =
        (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
    let mut mean = vec![0.0; model.input()];
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
    let mut ring = vec![[0.0f32; C]; cfg.window];
    let mut input = vec![0.0f32; cfg.window * C];
    let mut det = SliceDetector::<PoeView<'_>, _, C>::with_buffers(dc, ws, &mut ring, &mut input)
        .map_err(|e| anyhow!("detector buffers: {e}"))?;
    let mut out = Vec::new();
    let mut steps = vec![0.0f32; cfg.window];
    let mut gaps = series.gaps.iter().peekable();
    for (i, row) in series.values.chunks_exact(C).enumerate() {
        let r = if gaps.next_if(|&&g| g == i).is_some() {
            det.mark_gap()
        } else {
            let s: [f32; C] = arr(row)?;
            det.push(&view, &s)
                .map_err(|e| anyhow!("{}: row {}: {e}", series.path.display(), i + 1))?
        };
        if let Some(report) = r {
            let top_channel = if opts.attribution && report.score.is_some() {
                det.attribute_into(&view, &mut steps)
                    .map_err(|e| {
                        anyhow!("{}: row {}: attribution: {e}", series.path.display(), i + 1)
                    })?
                    .top_channel_among(model.groups.channels_of(report.groups))
            } else {
                None
            };
            out.push(WindowRow {
                report,
                top_channel,
            });
        }
    }
    Ok(out)
}
