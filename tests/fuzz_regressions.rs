//! Regression tests of what the fuzz targets (`fuzz/`) found, one per finding, each failing
//! before its fix.

mod small_vae;

use small_vae::{model, Det, Model, TestRng, C};
use tinyvae::{AlarmConfig, Detector, DetectorConfig, Normalizer, ScoreKind, Workspace};

/// Fuzz target `detector`: a configuration with an unchecked `Normalizer::new` holding NaN, an
/// infinity or a zero precision made every window fail with `Error::NonFinite` (a finite sample
/// standardized to NaN), so the detector never scored again. `Detector::new` now sanitizes the
/// normalizer as it sanitizes the alarm, and `DetectorConfig::validate` reports it.
#[test]
fn a_non_finite_or_zero_normalizer_is_sanitized() {
    let model = model();
    let bad = Normalizer::new([f32::NAN, 0.5, f32::INFINITY], [1.0, 0.0, f32::NAN]);
    let fixed = Normalizer::new([0.0, 0.5, 0.0], [1.0, 1.0, 1.0]);
    assert!(!bad.is_valid() && fixed.is_valid());
    assert_eq!(bad.sanitized(), fixed);
    let cfg = |n| DetectorConfig::new(ScoreKind::Elbo, 2, n, AlarmConfig::threshold(50.0));
    assert!(cfg(bad).validate().is_err());
    assert!(cfg(fixed).validate().is_ok());
    let mut a: Det = Detector::new(cfg(bad), Workspace::new(Model::SCRATCH));
    let mut b: Det = Detector::new(cfg(fixed), Workspace::new(Model::SCRATCH));
    assert_eq!(a.normalizer(), &fixed);
    let mut rng = TestRng(4);
    let mut scored = 0;
    for t in 0..100 {
        // Huge but finite values every tenth sample.
        let x: [f32; C] = std::array::from_fn(|_| {
            let v = rng.normal() as f32;
            if t % 10 == 0 {
                v.signum() * 3.0e38
            } else {
                v
            }
        });
        let (ra, rb) = (a.push(&model, &x).unwrap(), b.push(&model, &x).unwrap());
        assert_eq!(ra, rb);
        scored += usize::from(ra.is_some_and(|r| r.score.is_some()));
    }
    assert!(scored >= 40, "{scored}");
}

/// Fuzz target `detector`: adaptation on values near `f32::MAX` overflowed Welford's `M2` to
/// infinity, so the learned precision was `1/sqrt(inf) = 0`, accepted as finite; then a sample
/// whose difference from the mean overflowed standardized to `inf * 0 = NaN` and the window
/// failed with `Error::NonFinite`. A zero precision is now refused (the channel keeps the
/// exported statistics).
#[test]
fn an_infinite_running_variance_keeps_the_exported_statistics() {
    // M2 overflows to infinity on the last value (one more would make it NaN, which was refused).
    let mut w = tinyvae::Welford::<2>::new();
    w.push(&[1.0, 0.0], tinyvae::ChannelMask::EMPTY);
    w.push(&[3.3e38, 1.0], tinyvae::ChannelMask::EMPTY);
    assert!(w.variance()[0].is_infinite());
    let fallback = Normalizer::new([1.0, 2.0], [0.5, 0.25]);
    let n = w.normalizer(&fallback);
    assert_eq!((n.mean()[0], n.inv_std()[0]), (1.0, 0.5), "{n:?}");
    assert!(n.inv_std()[1] > 0.0 && n.inv_std()[1] != 0.25);

    // Through the detector: the statistics phase (window 0: the first 8 samples) ends on such a
    // value, then a sample far on the other side is pushed.
    let model = model();
    let cfg = DetectorConfig::new(
        ScoreKind::Elbo,
        1,
        Normalizer::identity(),
        AlarmConfig::threshold(8.0),
    )
    .with_adaptation(tinyvae::AdaptConfig::new(1, 0, 0.05));
    let mut det: Det = Detector::new(cfg, Workspace::new(Model::SCRATCH));
    for k in 0..7 {
        det.push(&model, &[0.1 * k as f32, 1.0, 0.5]).unwrap();
    }
    det.push(&model, &[3.3e38, 1.5, 0.25]).unwrap();
    assert!(
        det.normalizer().inv_std().iter().all(|p| *p > 0.0),
        "{:?}",
        det.normalizer()
    );
    for _ in 0..20 {
        let r = det.push(&model, &[-3.39e38, 1.0, 0.5]).unwrap();
        assert!(r.is_some_and(|r| r.score.is_some()));
    }
}
