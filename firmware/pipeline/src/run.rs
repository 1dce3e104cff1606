//! The detector of the compiled-in model, and the scoring run over the compiled-in stream.
//!
//! [`detector`] builds the library's streaming [`tinyvae::Detector`] for the exported model with
//! the exported constants: windows of `WINDOW` samples every `STRIDE`, standardization from
//! `NORM_MEAN`/`NORM_STD`, the score `SCORE` and `alarm = score > THRESHOLD` (no smoothing or
//! debounce), sampled scores seeded with [`SEED`] per window ([`tinyvae::window_rng`]).
//!
//! [`run_stream`] (feature `stream`) makes three passes, each with a fresh detector, and reports
//! every window to its callback:
//! 1. [`Pass::Stream`]: the compiled-in stream with the exported score — what `tinyvae score`
//!    computes for the same rows;
//! 2. [`Pass::Sampled`]: the same stream with [`SAMPLED`] (IWAE, 8 importance samples), so the
//!    sampled path (normal draws, reparameterization, streaming log-sum-exp) is checked too;
//! 3. [`Pass::Faults`]: the first [`FAULT_ROWS`] rows with the sensor faults of [`FAULTS`]
//!    injected (NaN, infinity, a dropped sample, a stuck channel, a value beyond the saturation
//!    limit [`SATURATION`]): the detector reports every kind of fault, skips (non-finite, gap)
//!    or flags (stuck, saturated) the windows, and never panics.
//!
//! Each pass runs in its own non-inlined function, so only one detector (6.7 KB for a 384-64-24
//! model) is on the stack at a time.

#[cfg(feature = "stream")]
use tinyvae::WindowReport;
use tinyvae::{
    AlarmConfig, Detector, DetectorConfig, Error, Normalizer, ScoreKind, VaeDetector, Workspace,
};

use crate::model::{
    Model, CHANNELS, INPUT, LATENT, NORM_MEAN, NORM_STD, STRIDE, THRESHOLD, WINDOW,
};
#[cfg(feature = "stream")]
use crate::model::{MODEL, SCORE};

/// The detector type of the compiled-in model.
pub type ModelDetector = VaeDetector<Model, CHANNELS, WINDOW, INPUT, LATENT>;

/// Seed of the per-window generators of sampled scores (the host tool's default seed).
pub const SEED: u64 = 0;

/// The sampled score of [`Pass::Sampled`].
pub const SAMPLED: ScoreKind = ScoreKind::Iwae { samples: 8 };

/// The detector configuration for score `kind` (see the module doc).
///
/// # Errors
/// [`Error::NonFinite`] / [`Error::InvalidParameter`] for bad exported statistics.
pub fn config(kind: ScoreKind) -> Result<DetectorConfig<CHANNELS>, Error> {
    let norm = Normalizer::from_std(NORM_MEAN, NORM_STD)?;
    Ok(
        DetectorConfig::new(kind, STRIDE as u32, norm, AlarmConfig::threshold(THRESHOLD))
            .with_seed(SEED),
    )
}

/// A fresh detector for the compiled-in model.
///
/// # Errors
/// As [`config`].
pub fn detector(kind: ScoreKind) -> Result<ModelDetector, Error> {
    Ok(Detector::new(config(kind)?, Workspace::new(Model::SCRATCH)))
}

/// The passes of [`run_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The stream with the exported score.
    Stream,
    /// The stream with [`SAMPLED`].
    Sampled,
    /// The first [`FAULT_ROWS`] rows with injected faults.
    Faults,
    /// A multi-sensor model's dead-sensor pass ([`crate::dead`]).
    Dead,
}

impl Pass {
    /// The tag of the pass's log lines.
    pub const fn tag(self) -> &'static str {
        match self {
            Pass::Stream => "window",
            Pass::Sampled => "sampled",
            Pass::Faults => "faulty",
            Pass::Dead => "dead",
        }
    }
}

/// Windows of one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Windows formed.
    pub windows: u32,
    /// Windows with the alarm on.
    pub alarms: u32,
    /// Windows skipped for non-finite samples or gaps.
    pub skipped: u32,
    /// Windows scored but flagged (saturated or stuck channel).
    pub flagged: u32,
}

/// What one sample of the fault pass becomes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Injection {
    /// Channel `c` of the row is replaced by the value.
    Value(usize, f32),
    /// The row is dropped ([`Detector::mark_gap`]).
    Gap,
    /// Channel `c` holds its value of the row `from` (a stuck sensor) for this row.
    StuckFrom(usize, usize),
}

/// Rows of the fault pass.
pub const FAULT_ROWS: usize = 512;

/// Saturation limit (physical units, every channel) of the fault pass's detector: a value at or
/// beyond `±SATURATION` is flagged as saturated (the window is scored and flagged, not alarmed).
pub const SATURATION: f32 = 1.0e6;

/// Faults injected in the fault pass: `(rows, injection)`, rows as a half-open range.
pub const FAULTS: [(usize, usize, Injection); 5] = [
    (100, 101, Injection::Value(1, f32::NAN)),
    (200, 201, Injection::Value(5, f32::INFINITY)),
    (260, 261, Injection::Gap),
    (320, 400, Injection::StuckFrom(2, 320)),
    (450, 451, Injection::Value(0, 1.0e30)),
];

#[cfg(feature = "stream")]
pub(crate) fn tally(s: &mut PassSummary, r: &WindowReport) {
    s.windows += 1;
    s.alarms += u32::from(r.alarm);
    // A multi-sensor model scores a window with a dead group (`faults.skips_window()`) with
    // its healthy groups: only a window without a score is skipped.
    s.skipped += u32::from(r.score.is_none());
    s.flagged += u32::from(r.faults.flags_window() && r.score.is_some());
}

#[cfg(feature = "stream")]
pub(crate) fn row(i: usize) -> [f32; CHANNELS] {
    const _: () = assert!(
        crate::stream::COLUMNS == CHANNELS,
        "the test stream and the model have different channel counts"
    );
    crate::stream::BITS
        .get(i)
        .map_or([0.0; CHANNELS], |r| r.map(f32::from_bits))
}

#[cfg(feature = "stream")]
#[inline(never)]
fn clean_pass(
    pass: Pass,
    kind: ScoreKind,
    emit: &mut dyn FnMut(Pass, &WindowReport),
) -> Result<PassSummary, Error> {
    // Built here, not through `detector()`: returning the 6.7 KB detector in a `Result` costs
    // extra copies of it in this frame (measured on the M0: 14.8 KB of stack instead of 11 KB).
    let mut det: ModelDetector = Detector::new(config(kind)?, Workspace::new(Model::SCRATCH));
    let mut s = PassSummary::default();
    for i in 0..crate::stream::ROWS {
        if let Some(r) = det.push(&MODEL, &row(i))? {
            tally(&mut s, &r);
            emit(pass, &r);
        }
    }
    Ok(s)
}

#[cfg(feature = "stream")]
#[inline(never)]
fn fault_pass(emit: &mut dyn FnMut(Pass, &WindowReport)) -> Result<PassSummary, Error> {
    let cfg = config(SCORE)?.with_limits(tinyvae::SaturationLimits::new(
        [-SATURATION; CHANNELS],
        [SATURATION; CHANNELS],
    ));
    let mut det: ModelDetector = Detector::new(cfg, Workspace::new(Model::SCRATCH));
    let mut s = PassSummary::default();
    for i in 0..FAULT_ROWS.min(crate::stream::ROWS) {
        let mut x = row(i);
        let mut gap = false;
        for &(from, to, inj) in &FAULTS {
            if (from..to).contains(&i) {
                match inj {
                    Injection::Value(c, v) => {
                        if let Some(slot) = x.get_mut(c) {
                            *slot = v;
                        }
                    }
                    Injection::Gap => gap = true,
                    Injection::StuckFrom(c, r) => {
                        if let (Some(slot), Some(&v)) = (x.get_mut(c), row(r).get(c)) {
                            *slot = v;
                        }
                    }
                }
            }
        }
        let report = if gap {
            det.mark_gap()
        } else {
            det.push(&MODEL, &x)?
        };
        if let Some(r) = report {
            tally(&mut s, &r);
            emit(Pass::Faults, &r);
        }
    }
    Ok(s)
}

/// Runs the three passes (see the module doc), calling `emit` for every window.
///
/// # Errors
/// A library error other than a sensor fault (faults are reported in the windows): a bad
/// exported constant or a model the score rejects.
#[cfg(feature = "stream")]
pub fn run_stream(mut emit: impl FnMut(Pass, &WindowReport)) -> Result<[PassSummary; 3], Error> {
    Ok([
        clean_pass(Pass::Stream, SCORE, &mut emit)?,
        clean_pass(Pass::Sampled, SAMPLED, &mut emit)?,
        fault_pass(&mut emit)?,
    ])
}
