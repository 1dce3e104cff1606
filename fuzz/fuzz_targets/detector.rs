//! The library's streaming detector fed arbitrary configurations and arbitrary `f32` / `i16`
//! sample streams with gaps, attribution requests and adaptation restarts: the typed
//! [`Detector`] and the run-time [`SliceDetector`] in lockstep.
//!
//! Input: 40 bytes of configuration (score kind and samples, stride, alarm thresholds as raw
//! `f32` bits, EMA, debounce, adaptation, saturation limits, raw scale, seed, the first window
//! index, so the counters can start anywhere up to `u64::MAX`), then operations: a byte
//! choosing push (raw `f32` bits, NaN and infinities included), push of small values, push_raw
//! (`i16`), mark_gap, attribute or restart_adaptation, followed by its data.
//!
//! Checked: no panic and no error (a valid model never fails to score: every configuration is
//! sanitized); both detectors report
//! the same; every report is consistent (window index in sequence, `end - start = W`, `end` =
//! samples, skipped exactly when a non-finite value or a gap is inside, finite scores and levels,
//! events agreeing with the alarm state, phases in order, fault counts never decreasing); and
//! the state is usable afterwards: `W` clean samples give a scored window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyvae::{Activation, FaultCounts};
use tinyvae::{
    AdaptConfig, AlarmConfig, AlarmEvent, BorrowedWorkspace, Buffers, Chain, Dense, Detector,
    DetectorConfig, Normalizer, Phase, RawScale, SaturationLimits, ScoreKind, SliceDetector, Vae,
    VaeDetector, WindowReport, Workspace,
};

const C: usize = 2;
const W: usize = 4;
const X: usize = W * C;
const H: usize = 4;
const Z: usize = 2;

type Model =
    Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Chain<Dense<Z, H>, Dense<H, X>, H>, X, H, Z>;

static ENC_W: [[f32; X]; H] = [
    [0.3, -0.2, 0.1, 0.4, -0.5, 0.2, 0.1, -0.1],
    [-0.1, 0.2, 0.3, -0.4, 0.1, 0.5, -0.3, 0.2],
    [0.2, 0.2, -0.2, 0.1, 0.3, -0.1, 0.4, 0.1],
    [-0.3, 0.1, 0.2, 0.2, -0.2, 0.1, 0.3, -0.4],
];
static ENC_B: [f32; H] = [0.1, -0.1, 0.0, 0.2];
static MU_W: [[f32; H]; Z] = [[0.5, -0.3, 0.2, 0.1], [-0.2, 0.4, 0.3, -0.5]];
static LV_W: [[f32; H]; Z] = [[0.1, 0.2, -0.1, 0.3], [0.2, -0.2, 0.1, 0.1]];
static HEAD_B: [f32; Z] = [0.0, -1.0];
static DEC0_W: [[f32; Z]; H] = [[0.5, -0.4], [0.3, 0.2], [-0.2, 0.6], [0.1, -0.3]];
static DEC1_W: [[f32; H]; X] = [
    [0.2, -0.1, 0.3, 0.1],
    [-0.3, 0.2, 0.1, 0.2],
    [0.1, 0.4, -0.2, 0.1],
    [0.2, 0.1, 0.2, -0.3],
    [-0.1, 0.3, 0.1, 0.2],
    [0.3, -0.2, 0.2, 0.1],
    [0.1, 0.1, -0.3, 0.4],
    [0.2, -0.3, 0.1, 0.1],
];
static INV_VAR: [f32; X] = [1.0, 2.0, 0.5, 1.5, 1.0, 0.8, 1.2, 2.5];

static MODEL: Model = Vae::new(
    Dense::new(&ENC_W, &ENC_B, Activation::Tanh),
    Dense::new(&MU_W, &HEAD_B, Activation::Identity),
    Dense::new(&LV_W, &HEAD_B, Activation::Identity),
    Chain::new(
        Dense::new(&DEC0_W, &ENC_B, Activation::Relu),
        Dense::new(&DEC1_W, &[0.0; X], Activation::Identity),
    ),
    &INV_VAR,
    -7.0,
);

/// Reads the input front to back; missing bytes are zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.array())
    }
    fn i16(&mut self) -> i16 {
        i16::from_le_bytes(self.array())
    }
}

fn config(b: &mut Bytes<'_>) -> DetectorConfig<C> {
    let samples = 1 + u16::from(b.u8() % 4);
    let kind = match b.u8() % 4 {
        0 => ScoreKind::Elbo,
        1 => ScoreKind::ElboSampled { samples },
        2 => ScoreKind::Iwae { samples },
        _ => ScoreKind::ReconProb { samples },
    };
    let stride = u32::from(b.u8() % 6);
    let alarm = AlarmConfig::threshold(b.f32())
        .with_hysteresis(b.f32())
        .with_ema(f32::from(b.u8()) / 200.0)
        .with_debounce(b.u8() % 6, b.u8() % 6, b.u8() % 6);
    let norm = Normalizer::new([b.f32(), b.f32()], [b.f32(), b.f32()]);
    let flags = b.u8();
    let mut cfg = DetectorConfig::new(kind, stride, norm, alarm)
        .with_seed(u64::from(b.u8()))
        .with_alarm_on_flagged(flags & 1 != 0);
    if flags & 2 != 0 {
        cfg = cfg.with_adaptation(
            AdaptConfig::new(
                u32::from(b.u8() % 5),
                u32::from(b.u8() % 7),
                f32::from(b.u8()) / 256.0,
            )
            .with_clear_fpr(f32::from(b.u8()) / 256.0),
        );
    }
    if flags & 4 != 0 {
        cfg = cfg.with_limits(SaturationLimits::new(
            [b.f32(), b.f32()],
            [b.f32(), b.f32()],
        ));
    }
    if flags & 8 != 0 {
        cfg = cfg.with_raw(
            RawScale::new([b.f32(), b.f32()], [b.f32(), b.f32()])
                .with_saturation([b.i16(), b.i16()], [b.i16(), b.i16()]),
        );
    }
    if flags & 16 != 0 {
        cfg = cfg.with_first_window(u64::from_le_bytes(b.array()));
    }
    cfg
}

fn rank(p: Phase) -> u8 {
    match p {
        Phase::AdaptingStats => 0,
        Phase::AdaptingThreshold => 1,
        Phase::Running => 2,
    }
}

struct Expect {
    next_window: u64,
    alarm: bool,
    phase: u8,
    counts: FaultCounts,
}

fn check(r: &WindowReport, e: &mut Expect, samples: u64, counts: &FaultCounts) {
    assert_eq!(r.window, e.next_window, "{r:?}");
    e.next_window = e.next_window.saturating_add(1);
    assert_eq!(r.end, samples);
    assert_eq!(r.end - r.start, (W as u64).min(r.end), "{r:?}");
    assert_eq!(r.score.is_none(), r.faults.skips_window(), "{r:?}");
    if let Some(s) = r.score {
        assert!(s.score.is_finite(), "{r:?}");
        assert_eq!(s.overflow, s.score == f32::MAX && s.overflow, "{r:?}");
    } else {
        assert!(r.level.is_none() && r.event.is_none(), "{r:?}");
    }
    if let Some(l) = r.level {
        assert!(l.is_finite() && r.phase != Phase::AdaptingStats, "{r:?}");
    }
    match r.event {
        Some(AlarmEvent::AlarmRaised { window }) => {
            assert!(r.alarm && !e.alarm && window == r.window, "{r:?}")
        }
        Some(AlarmEvent::AlarmCleared { window }) => {
            assert!(!r.alarm && e.alarm && window == r.window, "{r:?}")
        }
        None => assert_eq!(r.alarm, e.alarm, "{r:?}"),
    }
    e.alarm = r.alarm;
    assert!(rank(r.phase) >= e.phase, "phase went back: {r:?}");
    e.phase = rank(r.phase);
    let (a, b) = (&e.counts, counts);
    assert!(
        b.non_finite_samples >= a.non_finite_samples
            && b.gaps >= a.gaps
            && b.saturated_samples >= a.saturated_samples
            && b.skipped_windows >= a.skipped_windows
            && b.flagged_windows >= a.flagged_windows
    );
    e.counts = *b;
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let cfg = config(&mut b);
    let mut typed: VaeDetector<Model, C, W, X, Z> =
        Detector::new(cfg, Workspace::new(Model::SCRATCH));
    let (mut ring, mut input) = ([[0.0f32; C]; W], [0.0f32; X]);
    let (mut mu, mut lv, mut z, mut eps, mut mean) =
        ([0.0; Z], [0.0; Z], [0.0; Z], [0.0; Z], [0.0; X]);
    let mut scratch = Model::SCRATCH;
    let ws = BorrowedWorkspace::new(
        Buffers {
            mu: &mut mu,
            logvar: &mut lv,
            z: &mut z,
            eps: &mut eps,
            mean: &mut mean,
        },
        &mut scratch,
    );
    let mut slice = SliceDetector::<Model, _, C>::with_buffers(cfg, ws, &mut ring, &mut input)
        .expect("valid buffers");
    let mut e = Expect {
        next_window: typed.windows(),
        alarm: false,
        phase: rank(typed.phase()),
        counts: FaultCounts::default(),
    };
    let mut steps = [0.0f32; W];
    let mut ops = 0;
    while !b.0.is_empty() && ops < 4096 {
        ops += 1;
        let (rt, rs) = match b.u8() % 8 {
            0 | 1 => {
                let x = [b.f32(), b.f32()];
                (typed.push(&MODEL, &x), slice.push(&MODEL, &x))
            }
            2 | 3 => {
                let x = [
                    f32::from(b.u8() as i8) / 16.0,
                    f32::from(b.u8() as i8) / 16.0,
                ];
                (typed.push(&MODEL, &x), slice.push(&MODEL, &x))
            }
            4 => {
                let x = [b.i16(), b.i16()];
                (typed.push_raw(&MODEL, &x), slice.push_raw(&MODEL, &x))
            }
            5 => (Ok(typed.mark_gap()), Ok(slice.mark_gap())),
            6 => {
                let (a, s) = (
                    typed.attribute(&MODEL),
                    slice.attribute_into(&MODEL, &mut steps),
                );
                assert_eq!(
                    format!(
                        "{:?}",
                        a.map(|a| (a.window, a.channels, a.top_channel, a.top_step))
                    ),
                    format!(
                        "{:?}",
                        s.map(|a| (a.window, a.channels, a.top_channel, a.top_step))
                    )
                );
                if let Ok(a) = a {
                    assert!(a.top_channel < C && a.top_step < W);
                    assert_eq!(format!("{:?}", a.steps), format!("{steps:?}"));
                }
                continue;
            }
            _ => {
                typed.restart_adaptation();
                slice.restart_adaptation();
                if cfg.adapt.is_some() {
                    e.alarm = false;
                }
                e.phase = rank(typed.phase());
                continue;
            }
        };
        assert_eq!(format!("{rt:?}"), format!("{rs:?}"));
        // No error: the score fails only on a configuration it rejects, and `Detector::new`
        // sanitizes every configuration (see tests/fuzz_regressions.rs for the normalizer).
        let rt = rt.expect("a sanitized configuration scores");
        assert_eq!(typed.samples(), slice.samples());
        if let Some(r) = rt {
            check(&r, &mut e, typed.samples(), typed.fault_counts());
        }
    }
    assert_eq!(typed.fault_counts(), slice.fault_counts());
    assert_eq!(
        format!("{:?}", typed.normalizer()),
        format!("{:?}", slice.normalizer())
    );
    // Usable afterwards: after W clean samples a window is scored (unless the sample index has
    // reached its limit by then, where a fault marks every later window: see the detector's doc).
    let mut last = None;
    for k in 0..W * 6 {
        let x = [k as f32 * 0.1, 1.0 - k as f32 * 0.05];
        if let Some(r) = typed
            .push(&MODEL, &x)
            .expect("a sanitized configuration scores")
        {
            check(&r, &mut e, typed.samples(), typed.fault_counts());
            last = Some(r);
        }
        let _ = slice.push(&MODEL, &x);
    }
    let last = last.expect("clean samples form windows");
    let saturated = typed.samples() == u64::MAX;
    assert!(saturated || last.score.is_some(), "{last:?}");
});
