//! The streaming detector, its alarm logic, normalization, running statistics and the P²
//! quantile estimator. Figures: `cargo test --test detector -- --nocapture`.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod common;
use common::{leak, normal_dense as dense, SplitMix as TestRng};
use tinyvae::{
    decoder_noise, score, window_rng, Activation, AdaptConfig, Alarm, AlarmConfig, AlarmEvent,
    BorrowedWorkspace, Buffers, Chain, ChannelMask, Dense, Detector, DetectorConfig, Error,
    NormalSampler, Normalizer, P2Quantile, Phase, RawScale, SaturationLimits, Score, ScoreKind,
    SensorFault, Vae, VaeDetector, VaeModel, Welford, WindowReport, Workspace, NORM_LIMIT,
};

// ---------------------------------------------------------------------------------------------
// A small typed VAE with random static weights: C = 3 channels, W = 8 steps, X = 24, H = 6, Z = 2.

const C: usize = 3;
const W: usize = 8;
const X: usize = W * C;
const H: usize = 6;
const Z: usize = 2;

type Dec = Chain<Dense<Z, H>, Dense<H, X>, H>;
type Model = Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Dec, X, H, Z>;
type Det = VaeDetector<Model, C, W, X, Z>;

fn model(seed: u64) -> Model {
    let mut rng = TestRng(seed);
    let enc = dense::<X, H>(&mut rng, 1.0, 0.0, Activation::Relu);
    let mu = dense::<H, Z>(&mut rng, 1.0, 0.0, Activation::Identity);
    let lv = dense::<H, Z>(&mut rng, 0.3, -1.0, Activation::Identity);
    let dec: Dec = Chain::new(
        dense::<Z, H>(&mut rng, 1.0, 0.0, Activation::Relu),
        dense::<H, X>(&mut rng, 1.0, 0.0, Activation::Identity),
    );
    let mut logvar_x = [0.0f32; X];
    for v in logvar_x.iter_mut() {
        *v = (0.2 * rng.normal()) as f32;
    }
    let mut inv_var = [0.0f32; X];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    Vae::new(enc, mu, lv, dec, leak(inv_var), log_norm)
}

const MEAN: [f32; C] = [1.0, -0.5, 9.81];
const STD: [f32; C] = [0.5, 2.0, 0.1];

fn exported() -> Normalizer<C> {
    Normalizer::from_std(MEAN, STD).unwrap()
}

/// Smooth periodic signals plus noise, around MEAN with spread STD.
fn signal(n: usize, seed: u64) -> Vec<[f32; C]> {
    let mut rng = TestRng(seed);
    (0..n)
        .map(|t| {
            let mut s = [0.0f32; C];
            for c in 0..C {
                let phase = std::f64::consts::TAU * t as f64 / (5.0 + 2.0 * c as f64);
                let v = 1.2 * phase.sin() + 0.4 * rng.normal();
                s[c] = MEAN[c] + STD[c] * v as f32;
            }
            s
        })
        .collect()
}

fn config(kind: ScoreKind, stride: u32, threshold: f32) -> DetectorConfig<C> {
    DetectorConfig::new(kind, stride, exported(), AlarmConfig::threshold(threshold)).with_seed(7)
}

fn detector(cfg: DetectorConfig<C>) -> Det {
    Detector::new(cfg, Workspace::new(Model::SCRATCH))
}

enum Input {
    Sample([f32; C]),
    Raw([i16; C]),
    Gap,
}

fn run(det: &mut Det, m: &Model, input: &[Input]) -> Vec<WindowReport> {
    let mut out = Vec::new();
    for s in input {
        let r = match s {
            Input::Sample(x) => det.push(m, x).unwrap(),
            Input::Raw(x) => det.push_raw(m, x).unwrap(),
            Input::Gap => det.mark_gap(),
        };
        out.extend(r);
    }
    out
}

fn samples(v: &[[f32; C]]) -> Vec<Input> {
    v.iter().map(|&s| Input::Sample(s)).collect()
}

fn score_bits(s: &Option<Score>) -> Option<[u32; 3]> {
    s.map(|s| [s.score.to_bits(), s.recon.to_bits(), s.kl.to_bits()])
}

/// The standardized, time-major window of samples `[start, end)`, computed here.
fn window_input(hist: &[[f32; C]], start: usize, norm: &Normalizer<C>) -> [f32; X] {
    let mut x = [0.0f32; X];
    for t in 0..W {
        for c in 0..C {
            x[t * C + c] = (hist[start + t][c] - norm.mean()[c]) * norm.inv_std()[c];
        }
    }
    x
}

/// `tinyvae::score` on the window, with the detector's documented generator.
fn direct_score(m: &Model, x: &[f32; X], kind: ScoreKind, seed: u64, window: u64) -> Score {
    let (mut mu, mut lv, mut z, mut eps, mut mean) =
        ([0.0; Z], [0.0; Z], [0.0; Z], [0.0; Z], [0.0; X]);
    let buf = Buffers {
        mu: &mut mu,
        logvar: &mut lv,
        z: &mut z,
        eps: &mut eps,
        mean: &mut mean,
    };
    let mut scratch = Model::SCRATCH;
    let mut sampler = NormalSampler::new();
    let mut rng = window_rng(seed, window);
    score(m, x, kind, buf, &mut scratch, &mut sampler, &mut rng).unwrap()
}

const KINDS: [ScoreKind; 4] = [
    ScoreKind::Elbo,
    ScoreKind::ElboSampled { samples: 3 },
    ScoreKind::Iwae { samples: 4 },
    ScoreKind::ReconProb { samples: 2 },
];

// ---------------------------------------------------------------------------------------------
// Windows and scores

const CONST_CFG: DetectorConfig<C> = DetectorConfig::new(
    ScoreKind::Elbo,
    4,
    Normalizer::new(MEAN, [2.0, 0.5, 10.0]),
    AlarmConfig::threshold(50.0).with_debounce(2, 3, 1),
);
const _: () = assert!(CONST_CFG.validate().is_ok());

/// A detector in a `static` (const construction).
static STATIC_DET: std::sync::Mutex<Det> =
    std::sync::Mutex::new(Detector::new(CONST_CFG, Workspace::new(Model::SCRATCH)));

#[test]
fn windows_every_stride_with_correct_bounds() {
    let m = model(1);
    for stride in [1u32, 3, 8, 11] {
        let mut det = detector(config(ScoreKind::Elbo, stride, f32::MAX));
        let n = 60;
        let mut formed_at = Vec::new();
        for (i, s) in signal(n, 2).iter().enumerate() {
            if let Some(r) = det.push(&m, s).unwrap() {
                formed_at.push(i + 1);
                let k = r.window;
                assert_eq!(r.start, k * u64::from(stride), "stride {stride} window {k}");
                assert_eq!(r.end, r.start + W as u64, "stride {stride} window {k}");
                assert_eq!(r.end, (i + 1) as u64, "formed when its last sample arrives");
                assert!(r.score.is_some() && r.faults.is_clean() && r.phase == Phase::Running);
            }
        }
        let expected = (n - W) / stride as usize + 1;
        assert_eq!(formed_at.len(), expected, "stride {stride}: {formed_at:?}");
        assert_eq!(det.windows(), expected as u64);
        assert_eq!(det.samples(), n as u64);
    }
    println!(
        "memory: Detector with C {C}, W {W}, X {X}, Z {Z}: {} bytes (of which Workspace {} bytes)",
        std::mem::size_of::<Det>(),
        std::mem::size_of::<Workspace<<Model as VaeModel>::Scratch, X, Z>>()
    );
    // The static detector works like a runtime-built one.
    let mut a = STATIC_DET.lock().unwrap();
    let mut b = detector(CONST_CFG);
    let data = samples(&signal(40, 3));
    let (ra, rb) = (run(&mut a, &m, &data), run(&mut b, &m, &data));
    assert_eq!(ra, rb);
    assert_eq!(ra.len(), (40 - W) / 4 + 1);
}

#[test]
fn score_equals_library_score_on_the_same_window() {
    let m = model(3);
    let hist = signal(50, 4);
    for kind in KINDS {
        let mut det = detector(config(kind, 3, f32::MAX));
        let reports = run(&mut det, &m, &samples(&hist));
        assert_eq!(reports.len(), (50 - W) / 3 + 1);
        for r in &reports {
            let x = window_input(&hist, r.start as usize, &exported());
            assert_eq!(det.normalizer(), &exported());
            let want = direct_score(&m, &x, kind, 7, r.window);
            assert_eq!(
                score_bits(&r.score),
                score_bits(&Some(want)),
                "{kind:?} window {}: detector {:?}, library {want:?}",
                r.window,
                r.score
            );
        }
        // The last window's standardized input is kept.
        let last = reports.last().unwrap();
        assert_eq!(
            det.last_input(),
            &window_input(&hist, last.start as usize, &exported())
        );
    }
}

#[test]
fn borrowed_workspace_matches_typed_workspace() {
    // The host tool's path for runtime-shaped models: the same reports bit for bit.
    let m = model(5);
    let data = samples(&signal(70, 6));
    for kind in KINDS {
        let cfg = config(kind, 5, 30.0);
        let mut typed = detector(cfg);
        let (mut mu, mut lv, mut z, mut eps, mut mean) = (
            vec![0.0; Z],
            vec![0.0; Z],
            vec![0.0; Z],
            vec![0.0; Z],
            vec![0.0; X],
        );
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
        let mut borrowed: Detector<Model, _, C, W, X> = Detector::new(cfg, ws);
        for s in &data {
            let Input::Sample(s) = s else { unreachable!() };
            let a = typed.push(&m, s).unwrap();
            let b = borrowed.push(&m, s).unwrap();
            assert_eq!(a, b, "{kind:?}");
        }
        assert_eq!(
            typed.attribute(&m).unwrap(),
            borrowed.attribute(&m).unwrap()
        );
    }
}

#[test]
fn slice_ring_matches_heapless_deque() {
    use tinyvae::{SampleRing, SliceRing};
    let mut rng = TestRng(40);
    fn check<const N: usize>(rng: &mut TestRng) {
        let mut deque: heapless::Deque<[f32; 2], N> = heapless::Deque::new();
        let mut storage = [[f32::NAN; 2]; N];
        let mut ring = SliceRing::new(&mut storage);
        assert_eq!(SampleRing::capacity(&ring), N);
        assert!(ring.is_empty() && ring.oldest().is_none() && ring.newest().is_none());
        for i in 0..(3 * N + 5) {
            let s = [i as f32, rng.normal() as f32];
            deque.push_evict(s);
            ring.push_evict(s);
            assert_eq!(
                SampleRing::len(&ring),
                SampleRing::len(&deque),
                "N {N} push {i}"
            );
            assert_eq!(ring.oldest(), deque.oldest(), "N {N} push {i}");
            assert_eq!(ring.newest(), Some(&s), "N {N} push {i}");
            let a: Vec<_> = ring.samples().copied().collect();
            let b: Vec<_> = deque.samples().copied().collect();
            assert_eq!(a, b, "N {N} push {i}");
            // Oldest first, consecutive: the last min(i + 1, N) pushes.
            let want: Vec<f32> = ((i + 1).saturating_sub(N)..=i).map(|k| k as f32).collect();
            assert_eq!(a.iter().map(|s| s[0]).collect::<Vec<_>>(), want);
        }
    }
    check::<1>(&mut rng);
    check::<2>(&mut rng);
    check::<5>(&mut rng);
    check::<8>(&mut rng);
    // A zero-capacity ring holds nothing and never panics.
    let mut empty: [[f32; 2]; 0] = [];
    let mut ring = SliceRing::new(&mut empty);
    ring.push_evict([1.0, 2.0]);
    assert!(ring.is_empty() && ring.samples().next().is_none());
}

/// A stream with every kind of fault, for comparing detectors run by run.
fn faulty_stream(n: usize, seed: u64) -> Vec<Input> {
    let mut input = samples(&signal(n, seed));
    input[9] = Input::Sample([f32::NAN, MEAN[1], MEAN[2]]);
    input[23] = Input::Gap;
    input[31] = Input::Sample([MEAN[0], 1.0e9, MEAN[2]]);
    for i in 40..52 {
        if let Input::Sample(s) = &mut input[i] {
            s[2] = 9.0;
        }
    }
    input[60] = Input::Raw([i16::MAX, 3, -3]);
    input[61] = Input::Sample([f32::NEG_INFINITY; C]);
    input
}

#[test]
fn slice_detector_matches_typed_detector() {
    // The host tool's detector (window length at run time) runs the firmware's code: the same
    // reports, fault counts, phases, thresholds and attributions, bit for bit.
    let m = model(5);
    let input = faulty_stream(400, 41);
    let adapt = AdaptConfig::new(6, 20, 0.2).with_clear_fpr(0.4);
    for kind in KINDS {
        for cfg in [
            config(kind, 3, 12.0),
            config(kind, 5, 12.0)
                .with_limits(SaturationLimits::new([-1e6; C], [1e6; C]))
                .with_alarm_on_flagged(true),
            DetectorConfig::new(
                kind,
                2,
                exported(),
                AlarmConfig::threshold(10.0)
                    .with_ema(0.3)
                    .with_hysteresis(8.0)
                    .with_debounce(2, 3, 2),
            )
            .with_raw(RawScale::new([0.01; C], MEAN))
            .with_adaptation(adapt),
        ] {
            let mut typed = detector(cfg);
            let mut ring = vec![[0.0f32; C]; W];
            let mut xbuf = vec![0.0f32; X];
            let mut dynamic: tinyvae::SliceDetector<Model, _, C> =
                tinyvae::SliceDetector::with_buffers(
                    cfg,
                    Workspace::<_, X, Z>::new(Model::SCRATCH),
                    &mut ring,
                    &mut xbuf,
                )
                .unwrap();
            assert_eq!(dynamic.window_len(), W);
            let mut steps = vec![0.0f32; W];
            let mut n = 0;
            for (i, s) in input.iter().enumerate() {
                let (a, b) = match s {
                    Input::Sample(x) => (typed.push(&m, x).unwrap(), dynamic.push(&m, x).unwrap()),
                    Input::Raw(x) => (
                        typed.push_raw(&m, x).unwrap(),
                        dynamic.push_raw(&m, x).unwrap(),
                    ),
                    Input::Gap => (typed.mark_gap(), dynamic.mark_gap()),
                };
                assert_eq!(a, b, "{kind:?} sample {i}");
                if a.is_some_and(|r| r.score.is_some()) {
                    n += 1;
                    let full = typed.attribute(&m).unwrap();
                    let part = dynamic.attribute_into(&m, &mut steps).unwrap();
                    assert_eq!(
                        (full.window, full.channels, full.top_channel, full.top_step),
                        (part.window, part.channels, part.top_channel, part.top_step)
                    );
                    assert_eq!(&full.steps[..], &steps[..]);
                    assert_eq!(&typed.last_input()[..], dynamic.input());
                }
            }
            assert!(n > 50, "{kind:?}: {n} scored windows");
            assert_eq!(typed.fault_counts(), dynamic.fault_counts());
            assert_eq!(typed.phase(), dynamic.phase());
            assert_eq!(typed.normalizer(), dynamic.normalizer());
            assert_eq!(typed.alarm().config(), dynamic.alarm().config());
            assert!(
                typed.fault_counts().skipped_windows > 0
                    && typed.fault_counts().flagged_windows > 0
            );
        }
    }
}

#[test]
fn slice_detector_rejects_bad_buffers() {
    let cfg = config(ScoreKind::Elbo, 1, 1.0);
    let ws = || Workspace::<_, X, Z>::new(Model::SCRATCH);
    let (mut ring, mut xbuf) = (vec![[0.0f32; C]; W], vec![0.0f32; X - 1]);
    let r = tinyvae::SliceDetector::<Model, _, C>::with_buffers(cfg, ws(), &mut ring, &mut xbuf);
    assert!(matches!(r, Err(Error::ShapeMismatch { expected: X, found } ) if found == X - 1));
    let (mut ring, mut xbuf) = (Vec::<[f32; C]>::new(), Vec::<f32>::new());
    let r = tinyvae::SliceDetector::<Model, _, C>::with_buffers(cfg, ws(), &mut ring, &mut xbuf);
    assert!(matches!(r, Err(Error::InvalidParameter)));
    // A window shorter than the model's input: the score reports the mismatch, nothing panics.
    let (mut ring, mut xbuf) = (vec![[0.0f32; C]; W - 1], vec![0.0f32; X - C]);
    let mut det =
        tinyvae::SliceDetector::<Model, _, C>::with_buffers(cfg, ws(), &mut ring, &mut xbuf)
            .unwrap();
    let m = model(1);
    let mut errors = 0;
    for s in signal(20, 1) {
        errors += usize::from(det.push(&m, &s).is_err());
    }
    assert_eq!(errors, 20 - (W - 1) + 1);
    assert_eq!(det.windows(), (20 - (W - 1) + 1) as u64);
}

// ---------------------------------------------------------------------------------------------
// Sensor faults

/// Runs `clean` and `faulted` (same length, one input per time step) and checks: windows that
/// contain position `pos` report `check`; all others have scores bit-identical to the clean run.
fn compare_runs(
    kind: ScoreKind,
    cfg: DetectorConfig<C>,
    clean: &[Input],
    faulted: &[Input],
    pos: usize,
    check: impl Fn(&WindowReport),
) -> (Det, Det) {
    let m = model(8);
    let mut a = detector(DetectorConfig { kind, ..cfg });
    let mut b = detector(DetectorConfig { kind, ..cfg });
    let ra = run(&mut a, &m, clean);
    let rb = run(&mut b, &m, faulted);
    assert_eq!(ra.len(), rb.len(), "the time grid is kept");
    let mut hit = 0;
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!((x.window, x.start, x.end), (y.window, y.start, y.end));
        if (y.start as usize..y.end as usize).contains(&pos) {
            hit += 1;
            check(y);
        } else {
            assert!(y.faults.is_clean(), "window {} {:?}", y.window, y.faults);
            assert_eq!(
                score_bits(&x.score),
                score_bits(&y.score),
                "{kind:?} window {}: clean {:?} faulted {:?}",
                y.window,
                x.score,
                y.score
            );
        }
    }
    assert!(hit > 0, "some window contains the fault");
    (a, b)
}

#[test]
fn non_finite_samples_skip_their_windows_and_nothing_else() {
    let hist = signal(80, 9);
    let pos = 37;
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for kind in [ScoreKind::Elbo, ScoreKind::Iwae { samples: 3 }] {
            let clean = samples(&hist);
            let mut f = hist.clone();
            f[pos][1] = bad;
            let (_, b) = compare_runs(
                kind,
                config(kind, 3, f32::MAX),
                &clean,
                &samples(&f),
                pos,
                |r| {
                    assert_eq!(r.score, None, "skipped, never scored");
                    assert_eq!(r.faults.non_finite, ChannelMask(0b010));
                    let ev: Vec<_> = r.faults.iter().collect();
                    assert_eq!(ev, vec![SensorFault::NonFinite { channel: 1 }]);
                },
            );
            let fc = b.fault_counts();
            assert_eq!(fc.non_finite_samples, 1);
            assert_eq!(
                fc.skipped_windows, 3,
                "windows containing sample 37 with W 8, stride 3"
            );
        }
    }
}

#[test]
fn gaps_skip_their_windows_and_keep_the_time_grid() {
    let hist = signal(80, 10);
    let pos = 20;
    let clean = samples(&hist);
    let mut f = samples(&hist);
    f[pos] = Input::Gap;
    for kind in [ScoreKind::Elbo, ScoreKind::ElboSampled { samples: 2 }] {
        let (_, b) = compare_runs(kind, config(kind, 4, f32::MAX), &clean, &f, pos, |r| {
            assert_eq!(r.score, None);
            assert!(r.faults.gap && r.faults.non_finite.is_empty());
            assert_eq!(r.faults.iter().collect::<Vec<_>>(), vec![SensorFault::Gap]);
        });
        assert_eq!(b.fault_counts().gaps, 1);
        assert_eq!(b.fault_counts().skipped_windows, 2);
    }
    // A gap can complete a window: mark_gap returns its (skipped) report.
    let m = model(8);
    let mut det = detector(config(ScoreKind::Elbo, 1, f32::MAX));
    for s in &hist[..W - 1] {
        assert_eq!(det.push(&m, s).unwrap(), None);
    }
    let r = det.mark_gap().expect("the 8th sample completes window 0");
    assert_eq!((r.window, r.start, r.end, r.score), (0, 0, W as u64, None));
    assert!(r.faults.gap);
}

#[test]
fn saturated_samples_are_scored_and_flagged() {
    let hist = signal(80, 11);
    let pos = 44;
    // f32 limits on channel 2.
    let limits = SaturationLimits::new([f32::MIN; C], [f32::MAX, f32::MAX, 10.5]);
    let cfg = config(ScoreKind::Elbo, 3, f32::MAX).with_limits(limits);
    let mut f = hist.clone();
    f[pos][2] = 10.5;
    let m = model(8);
    let (_, b) = compare_runs(
        ScoreKind::Elbo,
        cfg,
        &samples(&hist),
        &samples(&f),
        pos,
        |r| {
            assert!(r.score.is_some(), "scored");
            assert_eq!(r.faults.saturated, ChannelMask(0b100));
            assert_eq!(
                r.faults.iter().collect::<Vec<_>>(),
                vec![SensorFault::Saturated { channel: 2 }]
            );
            assert_eq!(
                r.level, None,
                "flagged windows do not reach the alarm by default"
            );
        },
    );
    assert_eq!(b.fault_counts().saturated_samples, 1);
    assert_eq!(
        b.fault_counts().flagged_windows,
        2,
        "windows [39, 47) and [42, 50)"
    );

    // The saturated window's score is the library score of the stored (saturated) value.
    let mut det = detector(cfg);
    let reports = run(&mut det, &m, &samples(&f));
    for r in reports.iter().filter(|r| r.faults.flags_window()) {
        let x = window_input(&f, r.start as usize, &exported());
        let want = direct_score(&m, &x, ScoreKind::Elbo, 7, r.window);
        assert_eq!(score_bits(&r.score), score_bits(&Some(want)));
    }
    // With alarm_on_flagged, they do reach the alarm.
    let mut det = detector(cfg.with_alarm_on_flagged(true));
    let reports = run(&mut det, &m, &samples(&f));
    assert!(reports.iter().all(|r| r.level.is_some()));

    // Raw counts at the rails of a 12-bit ADC.
    let raw_scale = RawScale::new([0.01; C], [-20.0; C]).with_saturation([0; C], [4095; C]);
    let cfg = config(ScoreKind::Elbo, 4, f32::MAX).with_raw(raw_scale);
    let mut rng = TestRng(12);
    let raw: Vec<[i16; C]> = (0..60)
        .map(|_| std::array::from_fn(|_| 2000 + (300.0 * rng.normal()) as i16))
        .collect();
    let mut raw_f = raw.clone();
    raw_f[30][0] = 4095;
    let to_in = |v: &[[i16; C]]| v.iter().map(|&r| Input::Raw(r)).collect::<Vec<_>>();
    compare_runs(
        ScoreKind::Elbo,
        cfg,
        &to_in(&raw),
        &to_in(&raw_f),
        30,
        |r| {
            assert!(r.score.is_some());
            assert_eq!(r.faults.saturated, ChannelMask(0b001));
        },
    );
    // Raw conversion is x = raw * scale + offset.
    let (x, sat) = raw_scale.convert(&[0, 2000, 4095]);
    assert_eq!(
        x,
        [
            0.0f32 * 0.01 - 20.0,
            2000.0f32 * 0.01 - 20.0,
            4095.0f32 * 0.01 - 20.0
        ]
    );
    assert_eq!(sat, ChannelMask(0b101));
}

#[test]
fn stuck_channels_are_flagged() {
    let m = model(8);
    let mut hist = signal(60, 13);
    // Channel 0 frozen over samples 20..32 (12 samples).
    for s in &mut hist[20..32] {
        s[0] = 1.25;
    }
    let mut det = detector(config(ScoreKind::Elbo, 2, f32::MAX));
    let reports = run(&mut det, &m, &samples(&hist));
    for r in &reports {
        let inside = r.start >= 20 && r.end <= 32;
        assert_eq!(
            r.faults.stuck.contains(0),
            inside,
            "window {} [{}, {})",
            r.window,
            r.start,
            r.end
        );
        assert!(r.faults.stuck.0 & !1 == 0);
        assert!(r.score.is_some(), "stuck windows are scored");
        if inside {
            assert_eq!(
                r.faults.iter().collect::<Vec<_>>(),
                vec![SensorFault::Stuck { channel: 0 }]
            );
        }
    }
    // Windows [20,28), [22,30), [24,32).
    assert_eq!(
        reports.iter().filter(|r| r.faults.flags_window()).count(),
        3
    );
    assert_eq!(det.fault_counts().flagged_windows, 3);
}

#[test]
fn faults_never_reach_the_running_statistics() {
    // Adaptation of the statistics over 6 windows of stride 8 (samples 0..48). Faulty samples
    // must be excluded exactly: the learned normalizer equals Welford over the clean subset.
    let m = model(8);
    let hist = signal(60, 14);
    let adapt = AdaptConfig::new(6, 0, 0.05);
    let limits = SaturationLimits::new([f32::MIN; C], [f32::MAX, 3.0, f32::MAX]);
    let cfg = config(ScoreKind::Elbo, 8, f32::MAX)
        .with_adaptation(adapt)
        .with_limits(limits);
    let mut input = samples(&hist);
    input[5] = Input::Sample([f32::NAN, 0.0, 9.8]);
    input[17] = Input::Gap;
    input[30] = Input::Sample([1.0, 3.5, f32::INFINITY]);
    let mut sat = hist[40];
    sat[1] = 3.0;
    input[40] = Input::Sample(sat);
    let mut det = detector(cfg);
    let reports = run(&mut det, &m, &input);
    assert!(reports[..6]
        .iter()
        .all(|r| r.phase == Phase::AdaptingStats && r.level.is_none()));
    assert!(reports[6..].iter().all(|r| r.phase == Phase::Running));
    assert_eq!(det.phase(), Phase::Running);

    let mut reference = Welford::<C>::new();
    let mut sum = [0.0f64; C];
    let mut sq = [0.0f64; C];
    let mut n = [0usize; C];
    for i in 0..48 {
        if [5, 17, 30].contains(&i) {
            continue;
        }
        let skip = if i == 40 {
            ChannelMask(0b010)
        } else {
            ChannelMask::EMPTY
        };
        let s = if i == 40 { sat } else { hist[i] };
        reference.push(&s, skip);
        for c in 0..C {
            if !skip.contains(c) {
                sum[c] += f64::from(s[c]);
                sq[c] += f64::from(s[c]).powi(2);
                n[c] += 1;
            }
        }
    }
    assert_eq!(reference.count(), &[45, 44, 45]);
    assert_eq!(det.running_stats(), &reference);
    let learned = det.normalizer();
    assert_eq!(learned, &reference.normalizer(&exported()));
    for c in 0..C {
        let mean = sum[c] / n[c] as f64;
        let std = (sq[c] / n[c] as f64 - mean * mean).sqrt();
        let (gm, gs) = (
            f64::from(learned.mean()[c]),
            1.0 / f64::from(learned.inv_std()[c]),
        );
        assert!(
            (gm - mean).abs() < 1e-5 * (1.0 + mean.abs()),
            "c {c}: mean {gm} vs f64 {mean}"
        );
        assert!(
            (gs - std).abs() < 1e-3 * std,
            "c {c}: std {gs} vs f64 {std}"
        );
        assert!(learned.mean()[c].is_finite() && learned.inv_std()[c].is_finite());
    }
}

#[test]
fn garbage_input_never_panics_or_corrupts() {
    let m = model(15);
    let mut rng = TestRng(16);
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        1e30,
        -1e-40,
        0.0,
    ];
    for kind in KINDS {
        let mut det = detector(config(kind, 2, 5.0));
        for i in 0..3000 {
            let u = rng.uniform();
            if u < 0.02 {
                let _ = det.mark_gap();
                continue;
            }
            let mut s = [0.0f32; C];
            for c in 0..C {
                s[c] = if rng.uniform() < 0.05 {
                    specials[(rng.next_u64() % specials.len() as u64) as usize]
                } else {
                    MEAN[c] + STD[c] * rng.normal() as f32
                };
            }
            let r = if u < 0.1 {
                det.push_raw(&m, &[i16::MIN, (rng.next_u64() as u16) as i16, i16::MAX])
            } else {
                det.push(&m, &s)
            };
            let r = r.unwrap_or_else(|e| panic!("sample {i}: {e}"));
            if let Some(r) = r {
                if let Some(sc) = r.score {
                    assert!(sc.score.is_finite(), "{kind:?} window {}: {sc:?}", r.window);
                    assert!(!sc.score.is_nan() && (!sc.overflow || sc.score == f32::MAX));
                }
                if let Some(l) = r.level {
                    assert!(l.is_finite());
                }
                if r.score.is_some() {
                    let a = det.attribute(&m).unwrap();
                    assert!(a.channels.iter().all(|v| !v.is_nan()));
                }
            }
            assert!(det.normalizer().mean().iter().all(|v| v.is_finite()));
        }
        assert!(det.fault_counts().non_finite_samples > 0 && det.fault_counts().gaps > 0);
    }
    // A huge finite value is clamped after standardization: scored, never an error.
    let n = exported();
    assert_eq!(
        n.normalize(&[f32::MAX, f32::MIN, 9.81]),
        [NORM_LIMIT, -NORM_LIMIT, 0.0]
    );
}

// ---------------------------------------------------------------------------------------------
// Alarm logic

fn events(alarm: &mut Alarm, scores: &[f32]) -> Vec<AlarmEvent> {
    scores
        .iter()
        .enumerate()
        .filter_map(|(k, &s)| alarm.update(k as u64, s))
        .collect()
}

use AlarmEvent::{AlarmCleared as Cleared, AlarmRaised as Raised};

#[test]
fn plain_threshold_raises_and_clears_at_the_crossing_windows() {
    let mut a = Alarm::new(AlarmConfig::threshold(1.0));
    let s = [0.0, 0.5, 1.0, 1.5, 2.0, 1.0, 0.2, 3.0, 0.9];
    assert_eq!(
        events(&mut a, &s),
        vec![
            Raised { window: 3 },
            Cleared { window: 5 },
            Raised { window: 7 },
            Cleared { window: 8 }
        ],
        "raise when level > threshold, clear when level <= threshold"
    );
}

#[test]
fn hysteresis_does_not_flap_around_the_threshold() {
    // Scores jitter around the threshold after one clear excursion.
    let mut rng = TestRng(17);
    let mut s: Vec<f32> = (0..10).map(|_| 0.2 * rng.normal() as f32).collect();
    s.extend((0..40).map(|_| 1.0 + 0.1 * rng.normal() as f32));
    s.extend((0..10).map(|_| 0.2 * rng.normal() as f32));
    let mut plain = Alarm::new(AlarmConfig::threshold(1.0));
    let plain_events = events(&mut plain, &s).len();
    let mut hyst = Alarm::new(AlarmConfig::threshold(1.0).with_hysteresis(0.5));
    let ev = events(&mut hyst, &s);
    println!(
        "jitter around the threshold: {plain_events} events plain, {} with hysteresis",
        ev.len()
    );
    assert!(
        plain_events >= 10,
        "the plain threshold flaps ({plain_events} events)"
    );
    assert_eq!(ev.len(), 2, "{ev:?}");
    let Raised { window: up } = ev[0] else {
        panic!("{ev:?}")
    };
    assert!((10..15).contains(&up), "{ev:?}");
    assert_eq!(
        ev[1],
        Cleared { window: 50 },
        "clears at the first level <= 0.5"
    );
}

#[test]
fn k_of_n_debounce_ignores_single_noisy_windows() {
    let cfg = AlarmConfig::threshold(1.0).with_debounce(2, 3, 1);
    let mut a = Alarm::new(cfg);
    // Isolated spikes (never 2 within 3 windows) never raise.
    let mut s = vec![0.0f32; 40];
    for k in (0..40).step_by(3) {
        s[k] = 5.0;
    }
    assert_eq!(events(&mut a, &s), vec![], "single spikes");
    // Two exceedances within 3 windows raise at the second; clear after 3 quiet windows.
    let mut a = Alarm::new(cfg);
    let s = [0.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
    assert_eq!(
        events(&mut a, &s),
        vec![Raised { window: 3 }, Cleared { window: 6 }]
    );
    // A single quiet window does not clear it (clear_count 1: none of the last 3 above).
    let mut a = Alarm::new(cfg);
    let s = [2.0, 2.0, 0.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0];
    assert_eq!(
        events(&mut a, &s),
        vec![Raised { window: 1 }, Cleared { window: 8 }]
    );
    // 3-of-5 raising, cleared when fewer than 2 of the last 5 exceed.
    let mut a = Alarm::new(AlarmConfig::threshold(1.0).with_debounce(3, 5, 2));
    let s = [2.0, 0.0, 2.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
    //  over:  1    0    1    0    1 -> 3 of 5 at k=4; k=6: {2,4}=2; k=7: {4,7}=2; k=8: {4,7}=2? no:
    //  window k=8 covers 4..=8: {4,7} = 2; k=9 covers 5..=9: {7} = 1 < 2 -> clear at 9.
    assert_eq!(
        events(&mut a, &s),
        vec![Raised { window: 4 }, Cleared { window: 9 }]
    );
}

#[test]
fn ema_smooths_single_spikes_and_follows_sustained_shifts() {
    let alpha = 0.25f32;
    let cfg = AlarmConfig::threshold(1.0).with_ema(alpha);
    let mut a = Alarm::new(cfg);
    // Level closed form: l_0 = s_0, l_k = alpha s_k + (1 - alpha) l_{k-1}.
    let s = [
        0.0f32, 3.5, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0,
    ];
    let mut want = 0.0f32;
    let mut evs = Vec::new();
    for (k, &x) in s.iter().enumerate() {
        want = if k == 0 {
            x
        } else {
            alpha * x + (1.0 - alpha) * want
        };
        evs.extend(a.update(k as u64, x));
        assert_eq!(a.level(), Some(want), "k {k}");
    }
    // The spike of 3.5 gives a level 0.875 <= 1: no alarm. The shift to 2 crosses 1 at k = 5
    // (levels 0.87, 1.15), and the decay back at k = 9 (levels 1.52, 1.14, 0.86).
    assert_eq!(evs, vec![Raised { window: 5 }, Cleared { window: 9 }]);
    // Overflow scores saturate instead of producing infinity.
    let mut a = Alarm::new(cfg);
    a.update(0, -5.0);
    for k in 1..5 {
        a.update(k, f32::MAX);
        assert!(a.level().unwrap().is_finite());
    }
    a.update(5, f32::NAN);
    assert!(a.level().unwrap().is_finite() && a.is_active());
}

#[test]
fn alarm_configs_validate_and_sanitize() {
    assert!(AlarmConfig::threshold(1.0).validate().is_ok());
    assert!(AlarmConfig::threshold(1.0)
        .with_debounce(3, 5, 2)
        .with_ema(0.3)
        .with_hysteresis(0.5)
        .validate()
        .is_ok());
    for bad in [
        AlarmConfig::threshold(f32::NAN),
        AlarmConfig::threshold(1.0).with_hysteresis(2.0),
        AlarmConfig::threshold(1.0).with_ema(0.0),
        AlarmConfig::threshold(1.0).with_ema(1.5),
        AlarmConfig::threshold(1.0).with_debounce(4, 3, 1),
        AlarmConfig::threshold(1.0).with_debounce(2, 3, 3),
        AlarmConfig::threshold(1.0).with_debounce(2, 33, 1),
        AlarmConfig::threshold(1.0).with_debounce(0, 3, 0),
    ] {
        assert_eq!(bad.validate(), Err(Error::InvalidParameter), "{bad:?}");
        assert!(
            bad.sanitized().validate().is_ok(),
            "{bad:?} -> {:?}",
            bad.sanitized()
        );
    }
    let cfg = config(ScoreKind::Elbo, 0, 1.0);
    assert_eq!(cfg.validate(), Err(Error::InvalidParameter));
    assert_eq!(detector(cfg).config().stride, 1, "stride 0 runs as 1");
    assert_eq!(
        config(ScoreKind::Iwae { samples: 0 }, 1, 1.0).validate(),
        Err(Error::InvalidParameter)
    );
    let m = model(1);
    let mut det = detector(config(ScoreKind::Iwae { samples: 0 }, 1, 1.0));
    let results: Vec<_> = signal(W + 2, 1).iter().map(|s| det.push(&m, s)).collect();
    assert_eq!(
        results[W - 1],
        Err(Error::InvalidParameter),
        "the score's error is returned"
    );
    assert_eq!(det.windows(), 3, "windows still count");
    assert!(config(ScoreKind::Elbo, 1, 1.0)
        .with_adaptation(AdaptConfig::new(1, 1, 0.1).with_clear_fpr(0.05))
        .validate()
        .is_err());
}

#[test]
fn detector_alarm_on_an_injected_anomaly_with_attribution() {
    let m = model(18);
    let mut hist = signal(400, 19);
    // A burst on channel 2 over samples 200..232: +8 standard deviations.
    for s in &mut hist[200..232] {
        s[2] += 8.0 * STD[2];
    }
    // Threshold from the clean windows' scores: their maximum plus a margin.
    let mut probe = detector(config(ScoreKind::Elbo, 4, f32::MAX));
    let clean_max = run(&mut probe, &m, &samples(&hist[..190]))
        .iter()
        .map(|r| r.score.unwrap().score)
        .fold(f32::MIN, f32::max);
    let cfg = DetectorConfig::new(
        ScoreKind::Elbo,
        4,
        exported(),
        AlarmConfig::threshold(clean_max + 5.0).with_debounce(2, 3, 1),
    );
    let mut det = detector(cfg);
    let mut evs = Vec::new();
    for s in &hist {
        if let Some(r) = det.push(&m, s).unwrap() {
            if let Some(e) = r.event {
                evs.push((e, r.start, r.end));
                if let Raised { .. } = e {
                    let a = det.attribute(&m).unwrap();
                    println!(
                        "raised at window {} [{}, {}): attribution {a:?}",
                        r.window, r.start, r.end
                    );
                    assert_eq!(a.window, r.window);
                    assert_eq!(a.top_channel, 2, "the burst is on channel 2: {a:?}");
                    let t = r.start as usize + a.top_step;
                    assert!((200..232).contains(&t), "top step at sample {t}");
                    // The contributions add up to the reconstruction term.
                    let total: f32 = a.channels.iter().sum();
                    let steps: f32 = a.steps.iter().sum();
                    let sc = r.score.unwrap();
                    let want = m.noise().log_norm - sc.recon;
                    assert!(
                        (total - want).abs() <= 1e-5 * want.abs(),
                        "{total} vs {want}"
                    );
                    assert!(
                        (steps - want).abs() <= 1e-5 * want.abs(),
                        "{steps} vs {want}"
                    );
                }
            }
        }
    }
    println!("events: {evs:?}");
    assert_eq!(evs.len(), 2, "{evs:?}");
    let (Raised { window: up }, s_up, e_up) = evs[0] else {
        panic!()
    };
    let (Cleared { window: down }, s_down, _) = evs[1] else {
        panic!()
    };
    assert!(e_up > 200 && s_up < 232 && up < down, "{evs:?}");
    assert!(s_down >= 232 - W as u64, "cleared after the burst: {evs:?}");
}

#[test]
fn attribution_is_the_same_for_sampled_scores() {
    // Attribution uses D(mu) for every kind: an ELBO and an IWAE detector agree on it.
    let m = model(20);
    let hist = signal(40, 21);
    let mut a = detector(config(ScoreKind::Elbo, 4, f32::MAX));
    let mut b = detector(config(ScoreKind::Iwae { samples: 5 }, 4, f32::MAX));
    assert_eq!(a.attribute(&m), Err(Error::Empty));
    run(&mut a, &m, &samples(&hist));
    run(&mut b, &m, &samples(&hist));
    let (x, y) = (a.attribute(&m).unwrap(), b.attribute(&m).unwrap());
    assert_eq!(x, y);
    assert_eq!(b.attribute(&m).unwrap(), y, "repeatable");
}

// ---------------------------------------------------------------------------------------------
// Adaptation

#[test]
fn adaptation_reaches_the_target_false_positive_rate() {
    // A new machine: means and spreads differ from the exported statistics (identity here).
    let m = model(22);
    let mean = [3.0f32, -1.0, 0.5];
    let std = [2.0f32, 0.5, 0.05];
    let mut rng = TestRng(23);
    let mut next =
        || -> [f32; C] { std::array::from_fn(|c| mean[c] + std[c] * rng.normal() as f32) };
    let fpr = 0.05f32;
    let (n_stats, n_thr, n_test) = (250u32, 2000u32, 20_000usize);
    for (alpha, tol_se) in [(1.0f32, 4.0f64), (0.5, 6.0)] {
        let cfg = DetectorConfig::new(
            ScoreKind::Elbo,
            W as u32,
            Normalizer::identity(),
            AlarmConfig::threshold(f32::MAX).with_ema(alpha),
        )
        .with_adaptation(AdaptConfig::new(n_stats, n_thr, fpr).with_clear_fpr(0.2));
        assert!(cfg.validate().is_ok());
        let mut det = detector(cfg);
        let mut k = 0u32;
        while det.phase() != Phase::Running {
            let r = det.push(&m, &next()).unwrap();
            if let Some(r) = r {
                assert_eq!(r.event, None, "no alarms while adapting");
                k += 1;
            }
        }
        assert_eq!(k, n_stats + n_thr);
        // Statistics: within 4 standard errors of the truth.
        let n = f64::from(n_stats) * W as f64;
        let norm = det.normalizer();
        for c in 0..C {
            let (gm, gs) = (
                f64::from(norm.mean()[c]),
                1.0 / f64::from(norm.inv_std()[c]),
            );
            let (tm, ts) = (f64::from(mean[c]), f64::from(std[c]));
            assert!(
                (gm - tm).abs() < 4.0 * ts / n.sqrt(),
                "c {c}: mean {gm} vs {tm}"
            );
            assert!(
                (gs - ts).abs() < 4.0 * ts / (2.0 * n).sqrt(),
                "c {c}: std {gs} vs {ts}"
            );
        }
        let thr = det.alarm().config().threshold;
        let clear = det.alarm().config().clear_threshold;
        assert!(clear < thr);
        // Fresh normal data: the fraction of levels above the threshold.
        let (mut above, mut above_clear, mut total) = (0usize, 0usize, 0usize);
        while total < n_test {
            if let Some(r) = det.push(&m, &next()).unwrap() {
                let l = r.level.unwrap();
                above += usize::from(l > thr);
                above_clear += usize::from(l > clear);
                total += 1;
            }
        }
        let measured = above as f64 / total as f64;
        let measured_clear = above_clear as f64 / total as f64;
        // Spread: the threshold's own rank error (n_thr values) plus the test's binomial error;
        // EMA levels are autocorrelated (effective sample size smaller), hence a wider band.
        let p = f64::from(fpr);
        let se = (p * (1.0 - p) / f64::from(n_thr) + p * (1.0 - p) / n_test as f64).sqrt();
        println!(
            "adaptation alpha {alpha}: threshold {thr:.3}, clear {clear:.3}; fresh normal data: \
             FPR {measured:.4} (target {fpr}, tolerance {:.4}), above clear {measured_clear:.4} \
             (target 0.2)",
            tol_se * se
        );
        assert!(
            (measured - p).abs() < tol_se * se,
            "alpha {alpha}: measured {measured} vs target {p} (tolerance {})",
            tol_se * se
        );
        assert!((measured_clear - 0.2).abs() < 0.05, "{measured_clear}");
    }
}

#[test]
fn restart_adaptation_relearns() {
    let m = model(24);
    let cfg = config(ScoreKind::Elbo, 8, 1e9).with_adaptation(AdaptConfig::new(3, 4, 0.25));
    let mut det = detector(cfg);
    let hist = signal(400, 25);
    let r = run(&mut det, &m, &samples(&hist[..8 * 10]));
    let phases: Vec<_> = r.iter().map(|r| r.phase).collect();
    use Phase::*;
    assert_eq!(
        phases,
        [
            AdaptingStats,
            AdaptingStats,
            AdaptingStats,
            AdaptingThreshold,
            AdaptingThreshold,
            AdaptingThreshold,
            AdaptingThreshold,
            Running,
            Running,
            Running
        ]
    );
    let first = *det.alarm().config();
    assert!(first.threshold < 1e9);
    det.restart_adaptation();
    assert_eq!(det.phase(), AdaptingStats);
    let r = run(&mut det, &m, &samples(&hist[80..160]));
    assert_eq!(r[0].phase, AdaptingStats);
    assert_eq!(r[3].phase, AdaptingThreshold);
    assert_eq!(r[7].phase, Running);
}

// ---------------------------------------------------------------------------------------------
// Quantile estimator, running statistics, normalizer

type Draw = fn(&mut TestRng) -> f64;

fn exact_rank_error(sorted: &[f64], est: f64, p: f64) -> f64 {
    // |F_N(est) - p| with F_N the empirical CDF; for an estimate between two order statistics
    // the nearest attainable rank counts.
    let below = sorted.partition_point(|&v| v < est) as f64;
    let at_or_below = sorted.partition_point(|&v| v <= est) as f64;
    let n = sorted.len() as f64;
    let (lo, hi) = (below / n, at_or_below / n);
    if p < lo {
        lo - p
    } else if p > hi {
        p - hi
    } else {
        0.0
    }
}

#[test]
fn quantile_p2_matches_exact_sorted_quantiles() {
    let n = 20_000;
    let dists: [(&str, Draw); 4] = [
        ("normal", |r| r.normal()),
        ("exponential", |r| -r.uniform().ln()),
        ("uniform", |r| r.uniform()),
        ("lognormal", |r| (1.5 * r.normal()).exp()),
    ];
    let mut worst = 0.0f64;
    for (name, draw) in dists {
        for p in [0.5f64, 0.9, 0.95, 0.99] {
            let mut rng = TestRng(26);
            let mut q = P2Quantile::new(p as f32);
            let mut xs = Vec::with_capacity(n);
            for _ in 0..n {
                let x = draw(&mut rng) as f32;
                q.push(x).unwrap();
                xs.push(f64::from(x));
            }
            xs.sort_by(f64::total_cmp);
            let est = f64::from(q.estimate().unwrap());
            let exact = xs[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
            let err = exact_rank_error(&xs, est, p);
            worst = worst.max(err);
            println!("P2 {name:11} p {p:.2}: estimate {est:10.5}, exact {exact:10.5}, rank error {err:.5}");
            assert!(
                err < 0.004,
                "{name} p {p}: estimate {est} exact {exact} rank error {err}"
            );
        }
    }
    println!("P2 worst rank error over 20 000 values: {worst:.5}");
}

#[test]
fn quantile_p2_edge_cases() {
    let mut q = P2Quantile::new(0.5);
    assert_eq!(q.estimate(), None);
    assert_eq!(q.push(f32::NAN), Err(Error::NonFinite { index: 0 }));
    assert_eq!(q.count(), 0);
    // Fewer than five values: the exact nearest-rank quantile.
    for (i, &x) in [5.0f32, 1.0, 4.0, 2.0].iter().enumerate() {
        q.push(x).unwrap();
        let mut v = [5.0f32, 1.0, 4.0, 2.0][..=i].to_vec();
        v.sort_by(f32::total_cmp);
        let want = v[((0.5 * v.len() as f32).ceil() as usize).max(1) - 1];
        assert_eq!(q.estimate(), Some(want), "{v:?}");
    }
    // Constant input stays exact; sorted input is tracked.
    let mut q = P2Quantile::new(0.9);
    for _ in 0..1000 {
        q.push(3.0).unwrap();
    }
    assert_eq!(q.estimate(), Some(3.0));
    let mut q = P2Quantile::new(0.9);
    for i in 0..10_000 {
        q.push(i as f32).unwrap();
    }
    let e = q.estimate().unwrap();
    assert!((e - 8999.0).abs() < 50.0, "ascending 0..10000, p 0.9: {e}");
    assert_eq!(P2Quantile::new(f32::NAN).p(), 0.5);
    assert_eq!(P2Quantile::new(2.0).p(), 1.0);
}

#[test]
fn welford_matches_f64_two_pass() {
    let mut rng = TestRng(27);
    let mut w = Welford::<2>::new();
    let mut xs = Vec::new();
    for _ in 0..10_000 {
        let s = [
            5.0 + 0.1 * rng.normal() as f32,
            -300.0 + 20.0 * rng.normal() as f32,
        ];
        w.push(&s, ChannelMask::EMPTY);
        xs.push(s);
    }
    for c in 0..2 {
        let n = xs.len() as f64;
        let mean = xs.iter().map(|s| f64::from(s[c])).sum::<f64>() / n;
        let var = xs
            .iter()
            .map(|s| (f64::from(s[c]) - mean).powi(2))
            .sum::<f64>()
            / n;
        let (gm, gv) = (f64::from(w.mean()[c]), f64::from(w.variance()[c]));
        let (em, es) = (
            (gm - mean).abs() / mean.abs(),
            (gv.sqrt() - var.sqrt()).abs() / var.sqrt(),
        );
        println!(
            "Welford f32 vs f64, channel {c}: mean rel. error {em:.2e}, std rel. error {es:.2e}"
        );
        assert!(
            em < 1e-4 && es < 1e-3,
            "c {c}: mean {gm} vs {mean}, var {gv} vs {var}"
        );
    }
    // Channels without values or without spread keep the fallback.
    let mut w = Welford::<3>::new();
    w.push(&[1.0, 2.0, 3.0], ChannelMask(0b100));
    w.push(&[2.0, 2.0, f32::NAN], ChannelMask::EMPTY);
    let fb = Normalizer::new([10.0; 3], [0.5; 3]);
    let n = w.normalizer(&fb);
    assert_eq!(n.mean(), &[1.5, 10.0, 10.0]);
    assert_eq!(n.inv_std(), &[2.0, 0.5, 0.5]);
}

#[test]
fn normalizer_construction_and_arithmetic() {
    let n = Normalizer::from_std([1.0, 2.0], [0.5, 4.0]).unwrap();
    assert_eq!(n.inv_std(), &[2.0, 0.25]);
    assert_eq!(n.normalize(&[2.0, 0.0]), [2.0, -0.5]);
    assert_eq!(
        Normalizer::<2>::identity().normalize(&[3.0, -4.0]),
        [3.0, -4.0]
    );
    assert_eq!(
        Normalizer::from_std([0.0, 0.0], [1.0, 0.0]),
        Err(Error::InvalidParameter)
    );
    assert_eq!(
        Normalizer::from_std([0.0, 0.0], [1.0, f32::NAN]),
        Err(Error::InvalidParameter)
    );
    assert_eq!(
        Normalizer::from_std([0.0, 0.0], [1.0, 1e-45]),
        Err(Error::InvalidParameter)
    );
    assert_eq!(
        Normalizer::from_std([0.0, f32::INFINITY], [1.0, 1.0]),
        Err(Error::NonFinite { index: 1 })
    );
    let lim = SaturationLimits::new([-1.0, -1.0], [1.0, 1.0]);
    assert_eq!(lim.check(&[1.0, 0.5]), ChannelMask(0b01));
    assert_eq!(lim.check(&[-2.0, -1.0]), ChannelMask(0b11));
    assert_eq!(
        SaturationLimits::<2>::none().check(&[f32::MAX, f32::MIN]),
        ChannelMask(0)
    );
}

// ---------------------------------------------------------------------------------------------
// The bundled data set (see data/watch_shoulder_pen/README.md)

fn read_csv(name: &str) -> (Vec<[f32; 6]>, Vec<u8>) {
    let path = format!(
        "{}/data/watch_shoulder_pen/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        rows.push(std::array::from_fn(|c| f[c].parse::<f32>().unwrap()));
        if f.len() > 6 {
            labels.push(f[6].trim().parse::<u8>().unwrap());
        }
    }
    (rows, labels)
}

fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    // Mann–Whitney with average ranks for ties.
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let npos = labels.iter().filter(|&&l| l).count() as f64;
    let nneg = labels.len() as f64 - npos;
    let rpos: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    (rpos - npos * (npos + 1.0) / 2.0) / (npos * nneg)
}

mod pen {
    //! A linear VAE for the data set, fitted in closed form: probabilistic PCA (Tipping & Bishop,
    //! 1999), which is the optimum of a linear VAE. With the top-K eigenpairs `(lambda_j, u_j)`
    //! of the window covariance and `sigma^2` the mean of the other eigenvalues:
    //! decoder `mean = mu_x + U (Lambda - sigma^2)^{1/2} z`, variance `sigma^2`; posterior
    //! `q(z|x) = N(Lambda^{-1} (Lambda - sigma^2)^{1/2} U^T (x - mu_x), sigma^2 Lambda^{-1})`
    //! (exact). A trained nonlinear VAE is reported by the host tool.
    use super::*;
    pub const C: usize = 6;
    pub const W: usize = 64;
    pub const X: usize = W * C;
    pub const K: usize = 8;
    pub type M = Vae<Dense<X, K>, Dense<K, K>, Dense<K, K>, Dense<K, X>, X, K, K>;

    fn mat_vec(s: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
        s.iter()
            .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    }

    fn orthonormalize(q: &mut [Vec<f64>]) {
        for j in 0..q.len() {
            for i in 0..j {
                let d: f64 = q[i].iter().zip(&q[j]).map(|(a, b)| a * b).sum();
                let qi = q[i].clone();
                for (x, y) in q[j].iter_mut().zip(&qi) {
                    *x -= d * y;
                }
            }
            let n = q[j].iter().map(|x| x * x).sum::<f64>().sqrt();
            for x in q[j].iter_mut() {
                *x /= n;
            }
        }
    }

    /// Jacobi eigen-decomposition of a small symmetric matrix: (eigenvalues, eigenvectors as
    /// columns of `v`).
    fn jacobi(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
        let n = a.len();
        let mut v: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
            .collect();
        for _ in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                .map(|(i, j)| a[i][j] * a[i][j])
                .sum();
            if off < 1e-24 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    if a[p][q].abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                    for k in 0..n {
                        let (akp, akq) = (a[k][p], a[k][q]);
                        a[k][p] = c * akp - s * akq;
                        a[k][q] = s * akp + c * akq;
                    }
                    for k in 0..n {
                        let (apk, aqk) = (a[p][k], a[q][k]);
                        a[p][k] = c * apk - s * aqk;
                        a[q][k] = s * apk + c * aqk;
                    }
                    for k in 0..n {
                        let (vkp, vkq) = (v[k][p], v[k][q]);
                        v[k][p] = c * vkp - s * vkq;
                        v[k][q] = s * vkp + c * vkq;
                    }
                }
            }
        }
        ((0..n).map(|i| a[i][i]).collect(), v)
    }

    /// Fits PPCA to standardized windows (each of length X). Returns the model and sigma^2.
    pub fn fit(windows: &[Vec<f64>]) -> (M, f64) {
        let n = windows.len() as f64;
        let mut mu = vec![0.0; X];
        for w in windows {
            for (m, x) in mu.iter_mut().zip(w) {
                *m += x / n;
            }
        }
        let mut s = vec![vec![0.0; X]; X];
        for w in windows {
            let d: Vec<f64> = w.iter().zip(&mu).map(|(x, m)| x - m).collect();
            for i in 0..X {
                let di = d[i] / n;
                for (sij, dj) in s[i].iter_mut().zip(&d).skip(i) {
                    *sij += di * dj;
                }
            }
        }
        for i in 0..X {
            for j in 0..i {
                s[i][j] = s[j][i];
            }
        }
        // Subspace iteration for the top 2K directions, then Rayleigh–Ritz.
        let kk = 2 * K;
        let mut rng = TestRng(99);
        let mut q: Vec<Vec<f64>> = (0..kk)
            .map(|_| (0..X).map(|_| rng.normal()).collect())
            .collect();
        orthonormalize(&mut q);
        for _ in 0..30 {
            q = q.iter().map(|v| mat_vec(&s, v)).collect();
            orthonormalize(&mut q);
        }
        let sq: Vec<Vec<f64>> = q.iter().map(|v| mat_vec(&s, v)).collect();
        let t: Vec<Vec<f64>> = (0..kk)
            .map(|i| {
                (0..kk)
                    .map(|j| q[i].iter().zip(&sq[j]).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect();
        let (lam, v) = jacobi(t);
        let mut order: Vec<usize> = (0..kk).collect();
        order.sort_by(|&a, &b| lam[b].total_cmp(&lam[a]));
        let trace: f64 = (0..X).map(|i| s[i][i]).sum();
        let top: Vec<usize> = order[..K].to_vec();
        let sigma2 = (trace - top.iter().map(|&j| lam[j]).sum::<f64>()) / (X - K) as f64;
        // u_j = Q v_j.
        let u: Vec<Vec<f64>> = top
            .iter()
            .map(|&j| {
                (0..X)
                    .map(|i| (0..kk).map(|r| q[r][i] * v[r][j]).sum())
                    .collect()
            })
            .collect();

        let mut we = [[0.0f32; X]; K];
        let mut be = [0.0f32; K];
        let mut ident = [[0.0f32; K]; K];
        let mut blv = [0.0f32; K];
        let mut wd = [[0.0f32; K]; X];
        let mut bd = [0.0f32; X];
        for (j, &jj) in top.iter().enumerate() {
            let l = lam[jj];
            let g = (l - sigma2).max(0.0).sqrt();
            let a = g / l;
            for i in 0..X {
                we[j][i] = (a * u[j][i]) as f32;
                wd[i][j] = (g * u[j][i]) as f32;
            }
            be[j] = (-a * u[j].iter().zip(&mu).map(|(x, m)| x * m).sum::<f64>()) as f32;
            ident[j][j] = 1.0;
            blv[j] = (sigma2 / l).ln() as f32;
        }
        for i in 0..X {
            bd[i] = mu[i] as f32;
        }
        let logvar_x = [sigma2.ln() as f32; X];
        let mut inv_var = [0.0f32; X];
        let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
        let model = Vae::new(
            Dense::new(leak(we), leak(be), Activation::Identity),
            Dense::new(leak(ident), leak([0.0f32; K]), Activation::Identity),
            Dense::new(leak([[0.0f32; K]; K]), leak(blv), Activation::Identity),
            Dense::new(leak(wd), leak(bd), Activation::Identity),
            leak(inv_var),
            log_norm,
        );
        (model, sigma2)
    }
}

#[test]
fn bundled_data_set_alarms() {
    use pen::{C, K, W, X};
    let (train, _) = read_csv("train.csv");
    let (test, labels) = read_csv("test.csv");
    let stride = 32usize;
    // Exported statistics: per-channel mean and population std of train.csv (f64, as the
    // host exports them).
    let n = train.len() as f64;
    let mean: [f32; C] =
        std::array::from_fn(|c| (train.iter().map(|s| f64::from(s[c])).sum::<f64>() / n) as f32);
    let std: [f32; C] = std::array::from_fn(|c| {
        let m = f64::from(mean[c]);
        (train
            .iter()
            .map(|s| (f64::from(s[c]) - m).powi(2))
            .sum::<f64>()
            / n)
            .sqrt() as f32
    });
    let norm = Normalizer::from_std(mean, std).unwrap();
    let windows: Vec<Vec<f64>> = (0..=(train.len() - W) / stride)
        .map(|k| {
            train[k * stride..k * stride + W]
                .iter()
                .flat_map(|s| norm.normalize(s).map(f64::from))
                .collect()
        })
        .collect();
    // Fit on all training windows (as the benchmark's PCA); the threshold comes from on-device
    // adaptation over the same training stream (in-sample: the normal windows' score quantile).
    let (m, sigma2) = pen::fit(&windows);
    let n_thr = windows.len() as u32;
    let fpr_target = 0.02f32;
    let alarm = AlarmConfig::threshold(f32::MAX).with_debounce(2, 3, 1);
    let cfg = DetectorConfig::new(ScoreKind::Elbo, stride as u32, norm, alarm)
        .with_adaptation(AdaptConfig::new(0, n_thr, fpr_target));
    let mut det: VaeDetector<pen::M, C, W, X, K> =
        Detector::new(cfg, Workspace::new(pen::M::SCRATCH));
    for s in &train {
        det.push(&m, s).unwrap();
    }
    assert_eq!(det.phase(), Phase::Running);
    let thr = det.alarm().config().threshold;
    println!(
        "memory: Detector with C {C}, W {W}, X {X}, Z {K}: {} bytes (of which Workspace {} bytes)",
        std::mem::size_of::<VaeDetector<pen::M, C, W, X, K>>(),
        std::mem::size_of::<Workspace<<pen::M as VaeModel>::Scratch, X, K>>()
    );
    // The test stream with the frozen parameters, windows from test sample 0 (BENCHMARKS.md).
    let frozen = DetectorConfig::new(ScoreKind::Elbo, stride as u32, norm, *det.alarm().config());
    let mut det: VaeDetector<pen::M, C, W, X, K> =
        Detector::new(frozen, Workspace::new(pen::M::SCRATCH));
    let mut rep = Vec::new();
    for s in &test {
        rep.extend(det.push(&m, s).unwrap());
    }
    let scores: Vec<f32> = rep.iter().map(|r| r.score.unwrap().score).collect();
    let lab: Vec<bool> = rep
        .iter()
        .map(|r| labels[r.start as usize..r.end as usize].contains(&1))
        .collect();
    let auc = roc_auc(&scores, &lab);
    let neg = lab.iter().filter(|&&l| !l).count();
    let pos = lab.len() - neg;
    let over = |r: &WindowReport| r.level.unwrap() > thr;
    let fpr = rep.iter().zip(&lab).filter(|(r, &l)| over(r) && !l).count() as f64 / neg as f64;
    let tpr = rep.iter().zip(&lab).filter(|(r, &l)| over(r) && l).count() as f64 / pos as f64;
    let alarm_neg = rep.iter().zip(&lab).filter(|(r, &l)| r.alarm && !l).count();
    let alarm_pos = rep.iter().zip(&lab).filter(|(r, &l)| r.alarm && l).count();
    println!(
        "watch_shoulder_pen, PPCA linear VAE (K {K}, sigma^2 {sigma2:.4}, fitted on {n_thr} \
         train windows), W {W}, stride {stride}, ELBO; threshold {thr:.1} adapted on these \
         windows at FPR {fpr_target}; debounce 2 of 3"
    );
    println!(
        "test: {} windows ({pos} anomalous, {neg} normal); ROC AUC {auc:.4}; level > threshold: \
         TPR {tpr:.3}, FPR {fpr:.3}; alarm on: {alarm_pos}/{pos} anomalous, {alarm_neg}/{neg} \
         normal windows",
        rep.len()
    );
    // Segments: the recordings alternate normal / anomalous (label runs).
    let mut segments = Vec::new();
    let mut start = 0;
    for i in 1..=labels.len() {
        if i == labels.len() || labels[i] != labels[start] {
            segments.push((start as u64, i as u64, labels[start]));
            start = i;
        }
    }
    let (mut detected, mut normal_raised, mut normal_alarm_windows) = (0, 0, 0);
    for &(a, b, l) in &segments {
        let inside: Vec<_> = rep.iter().filter(|r| r.start >= a && r.end <= b).collect();
        let on = inside.iter().filter(|r| r.alarm).count();
        let raised = inside
            .iter()
            .filter(|r| matches!(r.event, Some(Raised { .. })))
            .count();
        let first = inside.iter().find(|r| r.alarm).map(|r| r.end - a);
        println!(
            "  segment [{a:5}, {b:5}) {}: alarm on in {on:3}/{:3} windows inside, {raised} raised{}",
            if l == 1 { "anomalous" } else { "normal   " },
            inside.len(),
            first.map_or(String::new(), |d| format!(", first on {d} samples after its start"))
        );
        if l == 1 {
            detected +=
                usize::from(on > 0 || rep.iter().any(|r| r.alarm && r.end > a && r.start < b));
        } else {
            normal_raised += raised;
            normal_alarm_windows += on;
        }
    }
    let n_anom = segments.iter().filter(|s| s.2 == 1).count();
    println!(
        "anomalous recordings with the alarm on: {detected}/{n_anom}; alarms raised inside \
         normal recordings: {normal_raised} ({normal_alarm_windows} windows with the alarm on)"
    );
    assert_eq!(segments.len(), 12);
    assert!(auc > 0.96, "AUC {auc}");
    assert!(
        detected >= 5,
        "anomalous recordings with an alarm: {detected}/{n_anom}"
    );
    assert!(fpr < 0.05, "FPR {fpr}");
    assert!(
        alarm_neg * 10 < neg,
        "alarm on in {alarm_neg}/{neg} normal windows"
    );
}
