//! Soak: millions of windows through the host detector with periodic injected faults (NaN,
//! infinity, dropped samples, saturated values, a stuck channel, a burst that raises the
//! alarm), after an adaptation phase. Checked at the end: no heap allocation during the run
//! (the detector is heap-free: its memory is its `size_of`, flat by construction, and the
//! process's resident size is printed), every report consistent with the injected faults and
//! the cumulative counts, and a fixed probe window scoring bit-identically to its score at the
//! start (nothing drifts in the running state).
//!
//! CI: `cargo test --release --test soak` (10^5 windows). The README's run:
//! `cargo test --release --test soak -- --ignored --nocapture` (10^7 windows).

mod small_vae;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use small_vae::{model, Det, Model, TestRng, C, W};
use tinyvae::{
    AdaptConfig, AlarmConfig, AlarmEvent, Detector, DetectorConfig, Normalizer, Phase,
    SaturationLimits, ScoreKind, Workspace,
};

/// Counts this thread's heap allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Resident set size in KiB (Linux), for the record.
fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

const STRIDE: u32 = 2;
const PROBE_SEED: u64 = 99;

fn probe() -> [[f32; C]; W] {
    let mut rng = TestRng(PROBE_SEED);
    std::array::from_fn(|_| std::array::from_fn(|c| (0.3 * c as f64 + rng.normal()) as f32))
}

/// Pushes the probe (cycling through its samples, after 0 or more filler samples to meet the
/// stride's phase) until a window holds exactly its `W` samples, and returns that score's bits.
fn probe_score(det: &mut Det, model: &Model) -> u32 {
    let p = probe();
    for _ in 0..STRIDE {
        for i in 0..W * (STRIDE as usize + 2) {
            if let Some(r) = det.push(model, &p[i % W]).unwrap() {
                if i % W == W - 1 && i >= W - 1 {
                    return r.score.unwrap().score.to_bits();
                }
            }
        }
        det.push(model, &[0.0; C]).unwrap(); // a filler: shifts the phase by one sample
    }
    panic!("no window held the probe");
}

fn soak(windows: u64) {
    let model = model();
    let cfg = DetectorConfig::new(
        ScoreKind::Elbo,
        STRIDE,
        Normalizer::identity(),
        AlarmConfig::threshold(1.0e9)
            .with_ema(0.3)
            .with_hysteresis(1.0e9)
            .with_debounce(2, 4, 1),
    )
    .with_limits(SaturationLimits::new([-40.0; C], [40.0; C]))
    .with_adaptation(AdaptConfig::new(200, 1000, 0.01).with_clear_fpr(0.05));
    let mut det: Det = Detector::new(cfg, Workspace::new(Model::SCRATCH));
    let mut rng = TestRng(2026);
    let mut t = 0u64;
    let clean = |rng: &mut TestRng| -> [f32; C] {
        std::array::from_fn(|c| (0.3 * c as f64 + rng.normal()) as f32)
    };
    // Adaptation on clean data, then the probe's score in the running state.
    while det.phase() != Phase::Running {
        det.push(&model, &clean(&mut rng)).unwrap();
    }
    let probe_before = probe_score(&mut det, &model);
    let start_windows = det.windows();
    let counts_before = *det.fault_counts();
    let (rss_before, allocs_before) = (rss_kib(), allocations());

    let (mut skipped, mut flagged, mut raised, mut cleared, mut scored) = (0u64, 0, 0, 0, 0);
    let mut stuck_value = 0.0f32;
    let mut alarm = det.alarm().is_active();
    while det.windows() - start_windows < windows {
        t += 1;
        let mut x = clean(&mut rng);
        // Periodic faults, by sample number (periods coprime to each other and to the stride).
        let burst = t % 100_003 < 400;
        if burst {
            for v in &mut x {
                *v += 12.0;
            }
        }
        let report = if t.is_multiple_of(10_007) {
            det.mark_gap()
        } else {
            if t.is_multiple_of(7_919) {
                x[1] = f32::NAN;
            } else if t.is_multiple_of(15_013) {
                x[2] = f32::NEG_INFINITY;
            } else if t.is_multiple_of(12_011) {
                x[0] = 1.0e3;
            }
            if t % 50_021 < 40 {
                if t.is_multiple_of(50_021) {
                    stuck_value = x[2];
                }
                x[2] = stuck_value;
            }
            det.push(&model, &x).unwrap()
        };
        if let Some(r) = report {
            assert_eq!(r.score.is_none(), r.faults.skips_window());
            skipped += u64::from(r.faults.skips_window());
            flagged += u64::from(r.faults.flags_window() && !r.faults.skips_window());
            scored += u64::from(r.score.is_some());
            match r.event {
                Some(AlarmEvent::AlarmRaised { .. }) => raised += 1,
                Some(AlarmEvent::AlarmCleared { .. }) => cleared += 1,
                None => assert_eq!(r.alarm, alarm),
            }
            alarm = r.alarm;
        }
    }
    let allocs = allocations() - allocs_before;
    let rss_after = rss_kib();
    let c = *det.fault_counts();
    assert_eq!(
        u64::from(c.skipped_windows - counts_before.skipped_windows),
        skipped
    );
    assert_eq!(
        u64::from(c.flagged_windows - counts_before.flagged_windows),
        flagged
    );
    let probe_after = probe_score(&mut det, &model);
    eprintln!(
        "soak: {windows} windows ({} samples, stride {STRIDE}): scored {scored}, skipped \
         {skipped}, flagged {flagged}, alarms raised {raised} / cleared {cleared}; faults: \
         {} non-finite samples, {} gaps, {} saturated samples; heap allocations during the run \
         {allocs}; detector {} bytes; RSS {rss_before:?} -> {rss_after:?} KiB; probe score \
         {:08x} before, {:08x} after",
        det.samples(),
        c.non_finite_samples - counts_before.non_finite_samples,
        c.gaps - counts_before.gaps,
        c.saturated_samples - counts_before.saturated_samples,
        std::mem::size_of::<Det>(),
        probe_before,
        probe_after
    );
    assert_eq!(allocs, 0, "the detector allocated during the soak");
    assert_eq!(
        probe_before, probe_after,
        "the probe window's score changed"
    );
    assert!(skipped > 0 && flagged > 0 && scored > windows / 2);
    assert!(
        raised > 0 && cleared > 0,
        "the bursts raise and clear the alarm"
    );
}

#[test]
fn soak_1e5_windows() {
    soak(100_000);
}

#[test]
#[ignore = "10^7 windows, about a minute in release: the README's figure"]
fn soak_1e7_windows() {
    soak(10_000_000);
}
