//! Every counter of the detector run across its limit (see the detector's module doc,
//! *Counters*): sample and window indices past 2^32 and up to `u64::MAX`, fault counts at
//! `u32::MAX`, adaptation started past 2^32, and the `u32` counts of `Welford` and `P2Quantile`.
//! The counters are started just below their limits with `DetectorConfig::first_window`,
//! `restore_fault_counts` and the (hidden) `at_count` states, then driven across.

mod small_vae;

use small_vae::{model, Det, Model, TestRng, C, W, X, Z};
use tinyvae::{
    window_rng, AdaptConfig, AlarmConfig, AlarmEvent, Detector, DetectorConfig, FaultCounts,
    Normalizer, P2Quantile, Phase, SaturationLimits, ScoreKind, Welford, WindowReport, Workspace,
};

const STRIDE: u32 = 3;
const SEED: u64 = 7;

/// A stationary signal with a burst (so the alarm raises and clears).
fn sample(rng: &mut TestRng, t: usize) -> [f32; C] {
    let burst = if (150..190).contains(&t) { 6.0 } else { 0.0 };
    std::array::from_fn(|c| (burst + rng.normal() + 0.5 * c as f64) as f32)
}

fn config(kind: ScoreKind) -> DetectorConfig<C> {
    let alarm = AlarmConfig::threshold(100.0)
        .with_ema(0.5)
        .with_hysteresis(60.0)
        .with_debounce(2, 3, 1);
    DetectorConfig::new(kind, STRIDE, Normalizer::identity(), alarm)
        .with_seed(SEED)
        .with_limits(SaturationLimits::new([-50.0; C], [50.0; C]))
}

/// What happens to sample `t` of the faulty stream.
enum Step {
    Push([f32; C]),
    Gap,
}

/// 300 samples with a NaN, an infinity, a gap, a saturated value and a stuck channel.
fn faulty_stream() -> Vec<Step> {
    let mut rng = TestRng(3);
    let mut stuck = 0.0;
    (0..300)
        .map(|t| {
            let mut x = sample(&mut rng, t);
            match t {
                40 => x[1] = f32::NAN,
                75 => x[2] = f32::INFINITY,
                110 => return Step::Gap,
                200 => x[0] = 1.0e3,
                230 => stuck = x[2],
                231..=250 => x[2] = stuck,
                _ => {}
            }
            Step::Push(x)
        })
        .collect()
}

fn run(det: &mut Det, model: &Model, steps: &[Step], mut each: impl FnMut(&Det, WindowReport)) {
    for s in steps {
        let r = match s {
            Step::Push(x) => det.push(model, x).unwrap(),
            Step::Gap => det.mark_gap(),
        };
        if let Some(r) = r {
            each(det, r);
        }
    }
}

fn shift_event(e: Option<AlarmEvent>, by: u64) -> Option<AlarmEvent> {
    e.map(|e| match e {
        AlarmEvent::AlarmRaised { window } => AlarmEvent::AlarmRaised {
            window: window + by,
        },
        AlarmEvent::AlarmCleared { window } => AlarmEvent::AlarmCleared {
            window: window + by,
        },
    })
}

/// Windows whose samples straddle 2^32: the first starts at 2^32 - 60.
const K32: u64 = (1u64 << 32) / STRIDE as u64 - 20;

#[test]
fn sample_index_past_2_32_changes_nothing_but_the_numbers() {
    let model = model();
    let steps = faulty_stream();
    let kind = ScoreKind::Elbo;
    let mut fresh = Vec::new();
    let mut d0: Det = Detector::new(config(kind), Workspace::new(Model::SCRATCH));
    run(&mut d0, &model, &steps, |_, r| fresh.push(r));
    let mut late = Vec::new();
    let mut d1: Det = Detector::new(
        config(kind).with_first_window(K32),
        Workspace::new(Model::SCRATCH),
    );
    assert_eq!(d1.samples(), K32 * u64::from(STRIDE));
    run(&mut d1, &model, &steps, |_, r| late.push(r));

    assert_eq!(fresh.len(), late.len());
    let offset = K32 * u64::from(STRIDE);
    let (mut below, mut above, mut events) = (0, 0, 0);
    for (a, b) in fresh.iter().zip(&late) {
        assert_eq!(b.window, a.window + K32);
        assert_eq!((b.start, b.end), (a.start + offset, a.end + offset));
        assert_eq!(
            b.score.map(|s| s.score.to_bits()),
            a.score.map(|s| s.score.to_bits())
        );
        assert_eq!(b.level.map(f32::to_bits), a.level.map(f32::to_bits));
        assert_eq!((b.alarm, b.faults, b.phase), (a.alarm, a.faults, a.phase));
        assert_eq!(b.event, shift_event(a.event, K32));
        below += usize::from(b.end < 1 << 32);
        above += usize::from(b.start > 1 << 32);
        events += usize::from(b.event.is_some());
    }
    assert!(
        below > 5 && above > 50,
        "{below} windows below 2^32, {above} above"
    );
    assert!(
        events >= 2,
        "the burst raises and clears the alarm ({events} events)"
    );
    assert_eq!(d1.fault_counts(), d0.fault_counts());
    assert!(d1.samples() > 1 << 32);
}

#[test]
fn sampled_scores_past_2_32_draw_from_the_window_index() {
    let model = model();
    let steps = faulty_stream();
    let kind = ScoreKind::Iwae { samples: 4 };
    let mut det: Det = Detector::new(
        config(kind).with_first_window(K32),
        Workspace::new(Model::SCRATCH),
    );
    let mut ws: Workspace<_, X, Z> = Workspace::new(Model::SCRATCH);
    let mut scored = 0;
    run(&mut det, &model, &steps, |det, r| {
        if let Some(s) = r.score {
            ws.reset_sampler();
            let want = ws
                .score(
                    &model,
                    det.last_input(),
                    kind,
                    &mut window_rng(SEED, r.window),
                )
                .unwrap();
            assert_eq!(
                s.score.to_bits(),
                want.score.to_bits(),
                "window {}",
                r.window
            );
            scored += 1;
        }
    });
    assert!(scored > 50);
}

#[test]
fn sample_and_window_indices_saturate_at_u64_max() {
    let model = model();
    let mut rng = TestRng(5);
    let clean: Vec<[f32; C]> = (0..120).map(|t| sample(&mut rng, t)).collect();
    let first = u64::MAX / u64::from(STRIDE) - 10;
    let mut det: Det = Detector::new(
        config(ScoreKind::Elbo).with_first_window(first),
        Workspace::new(Model::SCRATCH),
    );
    let mut fresh: Det = Detector::new(config(ScoreKind::Elbo), Workspace::new(Model::SCRATCH));
    let mut last = first;
    let mut saturated = 0;
    for x in &clean {
        let r = det.push(&model, x).unwrap();
        let f = fresh.push(&model, x).unwrap();
        assert_eq!(r.is_some(), f.is_some(), "a window every stride samples");
        if let (Some(r), Some(f)) = (r, f) {
            assert!(r.window >= last && r.start <= r.end);
            assert_eq!(
                r.score.map(|s| s.score.to_bits()),
                f.score.map(|s| s.score.to_bits())
            );
            assert_eq!(r.event.is_some(), f.event.is_some());
            last = r.window;
            if r.end == u64::MAX {
                assert_eq!(r.start, u64::MAX - W as u64);
                saturated += 1;
            }
        }
    }
    assert!(saturated > 10, "{saturated} windows at the limit");
    // The window index goes on counting (it reaches u64::MAX only long after the sample index).
    assert_eq!(det.samples(), u64::MAX);
    assert_eq!(det.windows(), last + 1);
    // Documented: at the limit a fault's position is the last index, so it marks every later
    // window; the detector still forms and reports them.
    det.push(&model, &[f32::NAN; C]).unwrap();
    let mut skipped = 0;
    for x in &clean {
        if let Some(r) = det.push(&model, x).unwrap() {
            assert!(r.faults.skips_window() && r.score.is_none());
            skipped += 1;
        }
    }
    assert_eq!(skipped, clean.len() / STRIDE as usize);
}

#[test]
fn fault_counts_saturate_at_u32_max_and_the_detector_goes_on() {
    let model = model();
    let below = u32::MAX - 2;
    let mut det: Det = Detector::new(
        config(ScoreKind::Elbo).with_first_window(K32),
        Workspace::new(Model::SCRATCH),
    );
    det.restore_fault_counts(FaultCounts {
        non_finite_samples: below,
        gaps: below,
        saturated_samples: below,
        skipped_windows: below,
        flagged_windows: below,
    });
    let mut rng = TestRng(9);
    for t in 0..60 {
        let mut x = sample(&mut rng, t);
        match t % 6 {
            0 => x[0] = f32::NAN,
            1 => x[1] = 1.0e4,
            2 => {
                det.mark_gap();
                continue;
            }
            _ => {}
        }
        det.push(&model, &x).unwrap();
    }
    let c = *det.fault_counts();
    assert_eq!(
        [
            c.non_finite_samples,
            c.gaps,
            c.saturated_samples,
            c.skipped_windows
        ],
        [u32::MAX; 4]
    );
    // Flagged windows: only those without a skip; there are none here. Clean data afterwards is
    // scored as before.
    assert_eq!(c.flagged_windows, below);
    let mut scored = 0;
    for t in 0..40 {
        if let Some(r) = det.push(&model, &sample(&mut rng, t)).unwrap() {
            scored += usize::from(r.score.is_some());
        }
    }
    assert!(scored >= 8);
    assert_eq!(det.fault_counts().flagged_windows, below);
}

#[test]
fn adaptation_started_past_2_32_learns_the_same_statistics_and_thresholds() {
    let model = model();
    let mut rng = TestRng(13);
    let data: Vec<[f32; C]> = (0..400).map(|t| sample(&mut rng, t % 140)).collect();
    let cfg =
        config(ScoreKind::Elbo).with_adaptation(AdaptConfig::new(10, 40, 0.1).with_clear_fpr(0.3));
    let mut a: Det = Detector::new(cfg, Workspace::new(Model::SCRATCH));
    let mut b: Det = Detector::new(cfg.with_first_window(K32), Workspace::new(Model::SCRATCH));
    let mut phases = Vec::new();
    for x in &data {
        let (ra, rb) = (a.push(&model, x).unwrap(), b.push(&model, x).unwrap());
        assert_eq!(
            ra.map(|r| (r.phase, r.alarm)),
            rb.map(|r| (r.phase, r.alarm))
        );
        if let Some(r) = rb {
            if phases.last() != Some(&r.phase) {
                phases.push(r.phase);
            }
        }
    }
    assert_eq!(
        phases,
        [
            Phase::AdaptingStats,
            Phase::AdaptingThreshold,
            Phase::Running
        ]
    );
    assert_eq!(a.normalizer(), b.normalizer());
    assert_eq!(a.alarm().config(), b.alarm().config());
    assert_ne!(b.normalizer(), &Normalizer::identity());
    // Restarting past 2^32 counts the phases from the current window.
    b.restart_adaptation();
    a.restart_adaptation();
    for x in &data {
        let (ra, rb) = (a.push(&model, x).unwrap(), b.push(&model, x).unwrap());
        assert_eq!(ra.map(|r| r.phase), rb.map(|r| r.phase));
    }
    assert_eq!(a.normalizer(), b.normalizer());
    assert_eq!(b.phase(), Phase::Running);
}

#[test]
fn welford_takes_no_value_past_u32_max() {
    let mut w = Welford::<2>::at_count(u32::MAX - 2);
    w.push(&[1.0, 2.0], tinyvae::ChannelMask::EMPTY);
    w.push(&[3.0, -2.0], tinyvae::ChannelMask::EMPTY);
    assert_eq!(w.count(), &[u32::MAX; 2]);
    let full = w;
    for x in [[5.0, 5.0], [1.0e6, -1.0e6], [0.5, 0.25]] {
        w.push(&x, tinyvae::ChannelMask::EMPTY);
    }
    assert_eq!(w, full, "values past the limit are not used");
    assert!(w.variance().iter().all(|v| v.is_finite() && *v >= 0.0));
    let n = w.normalizer(&Normalizer::identity());
    assert!(n.inv_std().iter().all(|p| p.is_finite()));
}

#[test]
fn p2_takes_no_value_past_u32_max() {
    let mut q = P2Quantile::at_count(0.9, u32::MAX - 3);
    assert_eq!(q.estimate(), Some(0.0));
    for x in [1.0, -1.0, 2.0] {
        q.push(x).unwrap();
    }
    assert_eq!(q.count(), u32::MAX);
    let full = q;
    for x in [7.0, -3.0, 1.0e9, 0.1] {
        q.push(x).unwrap();
    }
    assert_eq!(q, full, "values past the limit are not used");
    assert!(q.estimate().unwrap().is_finite());
    assert!(q.push(f32::NAN).is_err());
    // Starting just below the limit the markers keep moving without overflow.
    let mut q = P2Quantile::at_count(0.5, u32::MAX - 1000);
    let mut rng = TestRng(1);
    for _ in 0..2000 {
        q.push(rng.normal() as f32).unwrap();
    }
    assert_eq!(q.count(), u32::MAX);
    assert!(q.estimate().unwrap().abs() < 1.0);
}
