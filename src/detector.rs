//! The streaming anomaly detector: a ring buffer of samples, windows scored every `stride`
//! samples, alarms, attribution, sensor faults and on-device adaptation. The firmware and the
//! host tool run this same code, so the host's alarms are the chip's alarms.
//!
//! # Windows
//!
//! Samples `[f32; C]` (or raw `[i16; C]` through [`RawScale`](crate::RawScale)) are numbered `0, 1, 2, ...` in
//! arrival order (from `first_window * stride` with [`DetectorConfig::first_window`]); a dropped sample ([`Detector::mark_gap`]) takes a number too, so the numbering
//! is time. The last `W` samples are kept, in physical units, in a [`SampleRing`]: a
//! `heapless::Deque<[f32; C], W>` for a [`Detector`] (every size in the type, the firmware's),
//! or a [`SliceRing`] over caller-owned memory for a [`SliceDetector`] (window length read at run
//! time, the host tool's). Both are the one [`StreamDetector`] and run the same code, so the host
//! tool's windows, scores, alarms and faults are the chip's.
//! Window `k` covers samples `[k stride, k stride + W)` (end exclusive) and is formed when its
//! last sample arrives: the first after `W` samples, then every `stride` samples. Its input is
//! the standardized window flattened time-major, oldest first,
//!
//! ```text
//! x[t C + c] = normalize(sample[start + t])[c],      t = 0..W, c = 0..C,  X = W C
//! ```
//!
//! (standardized at scoring time with the normalizer current then, see [`Normalizer`]), scored
//! with [`ScoreKind`](crate::ScoreKind) chosen at construction. The `X == W * C` and `1 <= C <= 32` constraints are
//! checked at compile time.
//!
//! # Random numbers
//!
//! Sampled scores draw from a generator seeded per window, [`window_rng`]`(seed, k)`
//! (`XorShiftRng::seed_from_u64(seed ^ k * 0x9E3779B97F4A7C15)`), with the normal sampler reset
//! first. A window's score is therefore a function of its samples, the normalizer, the seed and
//! its index only: skipped windows, faults and earlier windows do not shift later draws, and a
//! host can reproduce any single window.
//!
//! # Alarm
//!
//! The score of every scored, unflagged window (while [`Phase::Running`]) goes through [`Alarm`]
//! (EMA, hysteresis, k-of-n debounce; see its module), which yields
//! [`AlarmEvent::AlarmRaised`](crate::AlarmEvent::AlarmRaised)/[`AlarmEvent::AlarmCleared`](crate::AlarmEvent::AlarmCleared) with the window index.
//!
//! # Counters and their limits
//!
//! | counter | width | at its limit |
//! |---|---|---|
//! | sample index ([`StreamDetector::samples`], [`WindowReport::start`]/`end`, fault positions) | `u64` | saturates at `u64::MAX` (5.8e8 years at 1 kHz, 584 years at 1 GHz): windows are still formed every `stride` samples, all with `start = u64::MAX - W`, and a fault seen after that point marks every later window |
//! | window index ([`WindowReport::window`], alarm events, [`window_rng`]) | `u64` | saturates at `u64::MAX` (reached only after the sample index) |
//! | windows into the statistics phase (window index minus the phase's first) | `u64` | as the window index; compared with [`AdaptConfig::stats_windows`] (`u32`) |
//! | clean windows into the threshold phase | `u32` | never past [`AdaptConfig::threshold_windows`] (`u32`), where the phase ends |
//! | values per channel in [`Welford`], values in [`P2Quantile`] | `u32` | both stop taking values at `u32::MAX` (see their docs); only reachable with `stats_windows * stride` or `threshold_windows` near 2^32 |
//! | cumulative fault counts ([`FaultCounts`]) | `u32` each | saturate at `u32::MAX`; nothing depends on them |
//! | samples until the next window | `usize` | counts down from `stride` (a `u32`) |
//!
//! The alarm keeps no counter (two 32-bit histories shifted once per window). So a sensor at
//! 1 kHz for a year (3.2e10 samples, past 2^32) is numbered, windowed, scored and alarmed exactly
//! as in its first hour; `tests/counters.rs` starts the counters just below 2^32, `u32::MAX` and
//! `u64::MAX` ([`DetectorConfig::first_window`], [`StreamDetector::restore_fault_counts`]) and
//! runs across. The QEMU programs print window and sample indices as `u32` (their streams are
//! 2,048 samples long).
//!
//! # Memory
//!
//! `8 X` bytes (ring and standardized window) plus the workspace plus about `140 C + 170` bytes
//! of configuration and state; no heap, no recursion. Measured `size_of`: 5 616 bytes for
//! `C = 6, W = 64, Z = 8` (workspace 1 704), 952 bytes for `C = 3, W = 8, Z = 2`. A [`Detector`]
//! can live in a `static` ([`Detector::new`] is `const`).
//!
//! The state machine is kept in this one file because every part of it updates the same state
//! per sample. The types it is configured with and reports are in their own modules: sensor
//! faults (`fault.rs`, with their behavior), configuration and adaptation
//! (`detector_config.rs`, with the adaptation procedure), reports and attribution
//! (`report.rs`, with the attribution math) and window scoring (`scorer.rs`).

use core::marker::PhantomData;

use heapless::Deque;

use crate::vae::same_len;
use crate::{
    window_rng, AdaptConfig, Alarm, Attribution, ChannelAttribution, ChannelMask, DecoderNoise,
    DetectorConfig, Error, FaultCounts, Faults, GroupSet, Normalizer, P2Quantile, Phase,
    SampleRing, SliceRing, VaeModel, Welford, WindowReport, WindowScorer, Workspace,
};

/// A [`Detector`] scoring a typed model with the typed [`Workspace`].
pub type VaeDetector<V, const C: usize, const W: usize, const X: usize, const Z: usize> =
    Detector<V, Workspace<<V as VaeModel>::Scratch, X, Z>, C, W, X>;

/// The streaming detector with every size in its type (the firmware's): model type `V`,
/// scoring buffers `S`, `C` channels, window length `W`, window width `X = W * C`; the ring is a
/// `heapless::Deque<[f32; C], W>`. Built with [`Detector::new`].
pub type Detector<V, S, const C: usize, const W: usize, const X: usize> =
    StreamDetector<V, S, Deque<[f32; C], W>, [f32; X], C>;

/// The streaming detector with the window length chosen at run time (the host tool's, whose
/// window comes from the checkpoint): the ring and the standardized window live in caller-owned
/// slices. Built with [`SliceDetector::with_buffers`]; it runs the same code as [`Detector`].
pub type SliceDetector<'a, V, S, const C: usize> =
    StreamDetector<V, S, SliceRing<'a, C>, &'a mut [f32], C>;

/// The streaming detector (see the module doc), generic over its sample ring `R` (a
/// [`SampleRing`] whose capacity is the window length `W`) and its standardized-window buffer
/// `B` (`W * C` values). Use it through [`Detector`] (sizes in the type) or [`SliceDetector`]
/// (window length at run time).
#[derive(Debug)]
pub struct StreamDetector<V, S, R, B, const C: usize> {
    config: DetectorConfig<C>,
    scorer: S,
    ring: R,
    xbuf: B,
    normalizer: Normalizer<C>,
    alarm: Alarm,
    welford: Welford<C>,
    raise_q: P2Quantile,
    clear_q: P2Quantile,
    phase: Phase,
    phase_start: u64,
    threshold_count: u32,
    samples: u64,
    windows: u64,
    until_window: usize,
    last_gap: Option<u64>,
    last_non_finite: [Option<u64>; C],
    last_saturated: [Option<u64>; C],
    last_scored: Option<u64>,
    counts: FaultCounts,
    model: PhantomData<fn(&V)>,
}

const fn first_phase(adapt: Option<AdaptConfig>) -> Phase {
    match adapt {
        Some(a) if a.stats_windows > 0 => Phase::AdaptingStats,
        Some(a) if a.threshold_windows > 0 => Phase::AdaptingThreshold,
        _ => Phase::Running,
    }
}

impl<V, S, R, B, const C: usize> StreamDetector<V, S, R, B, C> {
    /// Sanitizes the configuration and assembles a detector over an empty `ring` of capacity
    /// `window`.
    #[inline(always)]
    const fn assemble(
        config: DetectorConfig<C>,
        scorer: S,
        ring: R,
        xbuf: B,
        window: usize,
    ) -> Self {
        let mut config = config;
        if config.stride == 0 {
            config.stride = 1;
        }
        config.normalizer = config.normalizer.sanitized();
        config.alarm = config.alarm.sanitized();
        let (fpr, clear_fpr) = match config.adapt {
            Some(a) => (a.fpr, a.clear_fpr),
            None => (0.5, 0.5),
        };
        Self {
            config,
            scorer,
            ring,
            xbuf,
            normalizer: config.normalizer,
            alarm: Alarm::new(config.alarm),
            welford: Welford::new(),
            raise_q: P2Quantile::new(1.0 - fpr),
            clear_q: P2Quantile::new(1.0 - clear_fpr),
            phase: first_phase(config.adapt),
            phase_start: config.first_window,
            threshold_count: 0,
            samples: config.first_window.saturating_mul(config.stride as u64),
            windows: config.first_window,
            until_window: window,
            last_gap: None,
            last_non_finite: [None; C],
            last_saturated: [None; C],
            last_scored: None,
            counts: FaultCounts {
                non_finite_samples: 0,
                gaps: 0,
                saturated_samples: 0,
                skipped_windows: 0,
                flagged_windows: 0,
            },
            model: PhantomData,
        }
    }

    /// The (sanitized) configuration.
    pub const fn config(&self) -> &DetectorConfig<C> {
        &self.config
    }

    /// The normalizer in use (the exported one, or the adapted one).
    pub const fn normalizer(&self) -> &Normalizer<C> {
        &self.normalizer
    }

    /// The alarm logic, with its current thresholds ([`Alarm::config`]) and state.
    pub const fn alarm(&self) -> &Alarm {
        &self.alarm
    }

    /// The current phase.
    pub const fn phase(&self) -> Phase {
        self.phase
    }

    /// The number the next sample gets: samples seen (including gaps) plus
    /// `first_window * stride` (see the module doc, *Counters*).
    pub const fn samples(&self) -> u64 {
        self.samples
    }

    /// The index the next window gets: windows formed (including skipped ones) plus
    /// `first_window`.
    pub const fn windows(&self) -> u64 {
        self.windows
    }

    /// Cumulative fault counts.
    pub const fn fault_counts(&self) -> &FaultCounts {
        &self.counts
    }

    /// Continues the cumulative fault counts from `counts` (e.g. saved before a restart, with
    /// [`DetectorConfig::first_window`] continuing the numbering); they saturate as documented
    /// in [`FaultCounts`].
    pub fn restore_fault_counts(&mut self, counts: FaultCounts) {
        self.counts = counts;
    }

    /// The running statistics of the current (or last) statistics phase.
    pub const fn running_stats(&self) -> &Welford<C> {
        &self.welford
    }

    /// The scoring buffers.
    pub fn scorer_mut(&mut self) -> &mut S {
        &mut self.scorer
    }

    /// Starts the adaptation of [`DetectorConfig::adapt`] again from the next window (nothing
    /// if adaptation is off): clears the running statistics and quantile estimates and resets
    /// the alarm (off, no history; no event is reported). The window contents are kept.
    pub fn restart_adaptation(&mut self) {
        if let Some(a) = self.config.adapt {
            self.welford = Welford::new();
            self.raise_q.reset();
            self.clear_q.reset();
            self.threshold_count = 0;
            self.phase = first_phase(Some(a));
            self.phase_start = self.windows;
            self.alarm.reset();
        }
    }
}

impl<V, S, const C: usize, const W: usize, const X: usize> Detector<V, S, C, W, X> {
    /// A detector with an empty window; `scorer` is e.g. `Workspace::new(MyVae::SCRATCH)`.
    /// Usable in `static` initialisers. Never fails: an invalid configuration is sanitized
    /// (see [`DetectorConfig::validate`]). Compile-time checks: `X == W * C`, `1 <= C <= 32`,
    /// `W >= 1`.
    pub const fn new(config: DetectorConfig<C>, scorer: S) -> Self {
        const {
            assert!(X == W * C, "X must equal W * C");
            assert!(C >= 1 && C <= 32, "1 to 32 channels");
            assert!(W >= 1, "window length must be at least 1");
        }
        Self::assemble(config, scorer, Deque::new(), [0.0; X], W)
    }

    /// The standardized input of the last scored window (`x[t C + c]`).
    pub const fn last_input(&self) -> &[f32; X] {
        &self.xbuf
    }
}

impl<'a, V, S, const C: usize> SliceDetector<'a, V, S, C> {
    /// A detector whose window length is `ring.len()` (`W`), with `input` (`W * C` values) for
    /// the standardized window; both buffers' contents are ignored. The configuration is
    /// sanitized as in [`Detector::new`].
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an empty ring or `C` outside `1..=32`;
    /// [`Error::ShapeMismatch`] if `input.len() != ring.len() * C`.
    pub fn with_buffers(
        config: DetectorConfig<C>,
        scorer: S,
        ring: &'a mut [[f32; C]],
        input: &'a mut [f32],
    ) -> Result<Self, Error> {
        if ring.is_empty() || !(1..=32).contains(&C) {
            return Err(Error::InvalidParameter);
        }
        let window = ring.len();
        same_len(window.saturating_mul(C), input.len())?;
        Ok(Self::assemble(
            config,
            scorer,
            SliceRing::new(ring),
            input,
            window,
        ))
    }
}

impl<V, S, R, B, const C: usize> StreamDetector<V, S, R, B, C>
where
    R: SampleRing<C>,
    B: AsRef<[f32]> + AsMut<[f32]>,
{
    /// The window length `W` (samples per window).
    pub fn window_len(&self) -> usize {
        self.ring.capacity()
    }

    /// The standardized input of the last scored window (`x[t C + c]`, `W * C` values).
    pub fn input(&self) -> &[f32] {
        self.xbuf.as_ref()
    }

    fn placeholder(&self) -> [f32; C] {
        self.ring.newest().copied().unwrap_or([0.0; C])
    }

    /// Index of the first sample of the window ending now.
    fn window_start(&self) -> u64 {
        self.samples.saturating_sub(self.window_len() as u64)
    }

    /// Records a dropped sample: time advances by one sample, the window that contains it is
    /// skipped (and reported with [`Faults::gap`]). Returns the report if a window is formed.
    pub fn mark_gap(&mut self) -> Option<WindowReport> {
        let i = self.samples;
        self.last_gap = Some(i);
        self.counts.gaps = self.counts.gaps.saturating_add(1);
        let stored = self.placeholder();
        if self.store(stored) {
            // The window contains the gap: it is skipped, no model needed.
            let faults = self.faults_in(self.window_start(), false);
            Some(self.skip(faults))
        } else {
            None
        }
    }

    /// Appends a sample to the ring and advances time; true if a window is due.
    fn store(&mut self, sample: [f32; C]) -> bool {
        self.ring.push_evict(sample);
        self.samples = self.samples.saturating_add(1);
        self.until_window = self.until_window.saturating_sub(1);
        if self.until_window == 0 {
            self.until_window = self.config.stride as usize;
            true
        } else {
            false
        }
    }

    /// The faults of the window starting at sample `start` (the current ring). Stuck channels
    /// are looked for in windows that are not skipped, and, for a multi-group model (`multi`),
    /// in windows without a gap (among the channels that are finite).
    fn faults_in(&self, start: u64, multi: bool) -> Faults {
        let within = |v: Option<u64>| matches!(v, Some(i) if i >= start);
        let mut f = Faults {
            gap: within(self.last_gap),
            ..Faults::default()
        };
        for (c, (&nf, &sat)) in self
            .last_non_finite
            .iter()
            .zip(&self.last_saturated)
            .enumerate()
        {
            if within(nf) {
                f.non_finite.insert(c);
            }
            if within(sat) {
                f.saturated.insert(c);
            }
        }
        if (!f.skips_window() || (multi && !f.gap)) && self.window_len() >= 2 {
            if let Some(first) = self.ring.oldest() {
                let mut same = [true; C];
                for s in self.ring.samples() {
                    for ((eq, &v), &f0) in same.iter_mut().zip(s).zip(first) {
                        *eq &= v == f0;
                    }
                }
                for (c, &eq) in same.iter().enumerate() {
                    if eq && !f.non_finite.contains(c) {
                        f.stuck.insert(c);
                    }
                }
            }
        }
        f
    }

    /// Forms the next window's report without scoring it.
    fn next_report(&mut self, faults: Faults) -> WindowReport {
        let window = self.windows;
        self.windows = self.windows.saturating_add(1);
        WindowReport {
            window,
            start: self.window_start(),
            end: self.samples,
            score: None,
            level: None,
            alarm: self.alarm.is_active(),
            event: None,
            faults,
            groups: GroupSet::EMPTY,
            phase: self.phase,
            expert: None,
        }
    }

    fn skip(&mut self, faults: Faults) -> WindowReport {
        self.counts.skipped_windows = self.counts.skipped_windows.saturating_add(1);
        let report = self.next_report(faults);
        self.end_stats_phase_if_due(report.window);
        report
    }

    /// Ends the statistics phase after its last window.
    fn end_stats_phase_if_due(&mut self, window: u64) {
        if let (Phase::AdaptingStats, Some(a)) = (self.phase, self.config.adapt) {
            if window.saturating_add(1).saturating_sub(self.phase_start)
                >= u64::from(a.stats_windows)
            {
                self.normalizer = self.welford.normalizer(&self.normalizer);
                self.alarm.reset_level();
                self.phase = if a.threshold_windows > 0 {
                    Phase::AdaptingThreshold
                } else {
                    Phase::Running
                };
            }
        }
    }
}

impl<V, S, R, B, const C: usize> StreamDetector<V, S, R, B, C>
where
    V: VaeModel,
    S: WindowScorer<V>,
    R: SampleRing<C>,
    B: AsRef<[f32]> + AsMut<[f32]>,
{
    /// Pushes one sample in physical units. Returns the report when a window is formed (every
    /// `stride` samples once `W` have arrived).
    ///
    /// A sample with a NaN or infinite value is not stored (see the module doc): the windows
    /// containing its position are skipped and report [`SensorFault::NonFinite`](crate::SensorFault::NonFinite).
    ///
    /// # Errors
    /// Only from scoring, i.e. a configuration or model the score rejects (0 samples, a model
    /// whose shapes differ from `X`); the window still counts and the state stays consistent.
    pub fn push(&mut self, model: &V, sample: &[f32; C]) -> Result<Option<WindowReport>, Error> {
        self.ingest(model, sample, ChannelMask::EMPTY)
    }

    /// Pushes one sample of raw counts, converted by [`DetectorConfig::raw`]; a count at its
    /// rail is saturated. Otherwise as [`push`](Self::push).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn push_raw(&mut self, model: &V, raw: &[i16; C]) -> Result<Option<WindowReport>, Error> {
        let (x, sat) = self.config.raw.convert(raw);
        self.ingest(model, &x, sat)
    }

    fn ingest(
        &mut self,
        model: &V,
        x: &[f32; C],
        raw_saturated: ChannelMask,
    ) -> Result<Option<WindowReport>, Error> {
        let i = self.samples;
        let mut non_finite = ChannelMask::EMPTY;
        for (c, v) in x.iter().enumerate() {
            if !v.is_finite() {
                non_finite.insert(c);
            }
        }
        let stored = if non_finite.is_empty() {
            let sat = raw_saturated | self.config.limits.check(x);
            if !sat.is_empty() {
                self.counts.saturated_samples = self.counts.saturated_samples.saturating_add(1);
                for (c, last) in self.last_saturated.iter_mut().enumerate() {
                    if sat.contains(c) {
                        *last = Some(i);
                    }
                }
            }
            if self.phase == Phase::AdaptingStats {
                self.welford.push(x, sat);
            }
            *x
        } else {
            self.counts.non_finite_samples = self.counts.non_finite_samples.saturating_add(1);
            for (c, last) in self.last_non_finite.iter_mut().enumerate() {
                if non_finite.contains(c) {
                    *last = Some(i);
                }
            }
            // Finite channels are kept (a multi-group model scores the healthy groups); the
            // others repeat the previous stored sample.
            let mut s = self.placeholder();
            for (c, (v, &xv)) in s.iter_mut().zip(x).enumerate() {
                if !non_finite.contains(c) {
                    *v = xv;
                }
            }
            s
        };
        if !self.store(stored) {
            return Ok(None);
        }
        let groups = model.groups();
        let faults = self.faults_in(self.window_start(), groups.count() > 1);
        let present = groups.healthy(&faults, self.config.drop_flagged_groups);
        if present.is_empty() {
            return Ok(Some(self.skip(faults)));
        }
        self.score_window(model, faults, present)
    }

    fn score_window(
        &mut self,
        model: &V,
        faults: Faults,
        present: GroupSet,
    ) -> Result<Option<WindowReport>, Error> {
        let groups = model.groups();
        let used = groups.channels_of(present);
        let flagged = (faults.stuck | faults.saturated).0 & used.0 != 0;
        if flagged {
            self.counts.flagged_windows = self.counts.flagged_windows.saturating_add(1);
        }
        let mut report = self.next_report(faults);
        report.groups = present;
        let shift = if present == groups.all() {
            None
        } else {
            Some(model.threshold_shift(present))
        };
        let xbuf = self.xbuf.as_mut();
        for (step, s) in xbuf.chunks_exact_mut(C).zip(self.ring.samples()) {
            self.normalizer.normalize_into(s, step);
        }
        let mut rng = window_rng(self.config.seed, report.window);
        let result =
            self.scorer
                .score_window_groups(model, xbuf, present, self.config.kind, &mut rng);
        if let Ok(score) = result {
            self.last_scored = Some(report.window);
            report.score = Some(score);
            report.expert = self.scorer.route(model).map(|r| r.expert);
            let usable = !flagged;
            let score = match shift {
                None => score,
                Some(d) => crate::Score {
                    score: score.score + d,
                    ..score
                },
            };
            match self.phase {
                Phase::AdaptingStats => {}
                Phase::AdaptingThreshold => {
                    if usable {
                        let level = self.alarm.smooth(score.score);
                        report.level = Some(level);
                        // Levels are finite (smooth maps non-finite scores to f32::MAX).
                        let _ = self.raise_q.push(level);
                        let _ = self.clear_q.push(level);
                        self.threshold_count = self.threshold_count.saturating_add(1);
                        self.end_threshold_phase_if_due();
                    }
                }
                Phase::Running => {
                    if usable || self.config.alarm_on_flagged {
                        let level = self.alarm.smooth(score.score);
                        report.level = Some(level);
                        report.event = self.alarm.decide(report.window, level);
                        report.alarm = self.alarm.is_active();
                    }
                }
            }
        }
        self.end_stats_phase_if_due(report.window);
        result.map(|_| Some(report))
    }

    fn end_threshold_phase_if_due(&mut self) {
        if let Some(a) = self.config.adapt {
            if self.threshold_count >= a.threshold_windows {
                if let Some(t) = self.raise_q.estimate() {
                    let clear = self.clear_q.estimate().unwrap_or(t);
                    self.alarm
                        .set_thresholds(t, if clear < t { clear } else { t });
                }
                self.phase = Phase::Running;
            }
        }
    }

    /// Attribution of the last scored window (see the module doc), for a window length known
    /// only at run time: the per-time-step sums go to `steps` (`W` values, oldest first), the
    /// rest is returned.
    ///
    /// # Errors
    /// [`Error::Empty`] before the first scored window; [`Error::ShapeMismatch`] if `steps` is
    /// not `W` long or the model's decoder width differs from `W * C`; errors of the model's
    /// `decode`.
    pub fn attribute_into(
        &mut self,
        model: &V,
        steps: &mut [f32],
    ) -> Result<ChannelAttribution<C>, Error> {
        let window = self.last_scored.ok_or(Error::Empty)?;
        let x_len = self.xbuf.as_ref().len();
        same_len(self.window_len(), steps.len())?;
        let noise = self.scorer.noise(model);
        let recon = self.scorer.reconstruction(model, self.config.kind)?;
        same_len(x_len, recon.len())?;
        same_len(x_len, noise.inv_var.len())?;
        let mut channels = [0.0f32; C];
        let mut e = [0.0f32; C];
        let parts = self
            .xbuf
            .as_ref()
            .chunks_exact(C)
            .zip(recon.chunks_exact(C))
            .zip(noise.inv_var.chunks_exact(C));
        for (step, ((x, m), p)) in steps.iter_mut().zip(parts) {
            let noise_t = DecoderNoise {
                inv_var: p,
                log_norm: 0.0,
            };
            noise_t.contributions(x, m, &mut e)?;
            let mut sum = 0.0f32;
            for (ch, &v) in channels.iter_mut().zip(&e) {
                *ch += v;
                sum += v;
            }
            *step = sum;
        }
        Ok(ChannelAttribution {
            window,
            channels,
            top_channel: argmax(&channels),
            top_step: argmax(steps),
        })
    }
}

impl<V, S, const C: usize, const W: usize, const X: usize> Detector<V, S, C, W, X>
where
    V: VaeModel,
    S: WindowScorer<V>,
{
    /// Attribution of the last scored window (see the module doc).
    ///
    /// # Errors
    /// [`Error::Empty`] before the first scored window; [`Error::ShapeMismatch`] if the model's
    /// decoder width differs from `X`; errors of the model's `decode`.
    pub fn attribute(&mut self, model: &V) -> Result<Attribution<C, W>, Error> {
        let mut steps = [0.0f32; W];
        let a = self.attribute_into(model, &mut steps)?;
        Ok(Attribution {
            window: a.window,
            channels: a.channels,
            steps,
            top_channel: a.top_channel,
            top_step: a.top_step,
        })
    }
}

/// Index of the first maximum (0 for an empty slice; NaN never wins).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best = i;
            best_v = x;
        }
    }
    best
}
