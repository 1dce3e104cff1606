//! The long run of the README's "Long runs": `windows` windows through the compiled-in model's
//! detector (exported score and threshold), fed the compiled-in stream over and over with
//! periodic sensor faults, reduced to one checksum of every report. The firmware (`soak`
//! program) and the host reference (`host-ref --soak`) run this same code, so equal checksums
//! mean every report was bit-identical.
//!
//! Sample `t` (0-based) is stream row `t mod ROWS`, then: every 7,919th sample has channel 1
//! NaN, every 15,013th channel 2 at -infinity, every 12,011th channel 0 at 1e30 (saturated),
//! every 10,007th is dropped (a gap), and for 40 samples of every 50,021 channel 2 is stuck.
//!
//! Checksum: FNV-1a over, per report, the window index and start (`u64`), the score, recon, kl
//! and level bits (or `u32::MAX` for none), the flags, alarm, event and fault masks.

use tinyvae::{AlarmEvent, Detector, Error, SaturationLimits, WindowReport, Workspace};

use crate::model::{Model, CHANNELS, MODEL, SCORE};
use crate::run::{config, ModelDetector, PassSummary, SATURATION};

/// The result of [`soak`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoakSummary {
    /// Windows formed, alarms on, skipped and flagged windows (as the other passes count them).
    pub windows: PassSummary,
    /// Samples pushed (gaps included).
    pub samples: u64,
    /// FNV-1a of every report (see the module doc).
    pub checksum: u32,
}

struct Fnv(u32);

impl Fnv {
    fn u32(&mut self, v: u32) {
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    fn u64(&mut self, v: u64) {
        self.u32(v as u32);
        self.u32((v >> 32) as u32);
    }
    fn report(&mut self, r: &WindowReport) {
        self.u64(r.window);
        self.u64(r.start);
        match r.score {
            Some(s) => {
                self.u32(s.score.to_bits());
                self.u32(s.recon.to_bits());
                self.u32(s.kl.to_bits());
                self.u32(u32::from(s.clamped) | u32::from(s.overflow) << 1);
            }
            None => self.u32(u32::MAX),
        }
        self.u32(r.level.map_or(u32::MAX, f32::to_bits));
        let event = match r.event {
            None => 0,
            Some(AlarmEvent::AlarmRaised { .. }) => 1,
            Some(AlarmEvent::AlarmCleared { .. }) => 2,
        };
        self.u32(u32::from(r.alarm) | event << 1);
        let f = &r.faults;
        self.u32(f.non_finite.0);
        self.u32(f.saturated.0);
        self.u32(f.stuck.0);
        self.u32(u32::from(f.gap));
    }
}

fn row(t: u64) -> [f32; CHANNELS] {
    let rows = crate::stream::ROWS as u64;
    crate::stream::BITS
        .get((t % rows) as usize)
        .map_or([0.0; CHANNELS], |r| r.map(f32::from_bits))
}

/// Runs `windows` windows (see the module doc).
///
/// # Errors
/// As [`crate::run::run_stream`].
#[inline(never)]
pub fn soak(windows: u32) -> Result<SoakSummary, Error> {
    let cfg = config(SCORE)?.with_limits(SaturationLimits::new(
        [-SATURATION; CHANNELS],
        [SATURATION; CHANNELS],
    ));
    let mut det: ModelDetector = Detector::new(cfg, Workspace::new(Model::SCRATCH));
    let mut out = SoakSummary {
        checksum: 0x811C_9DC5,
        ..SoakSummary::default()
    };
    let mut fnv = Fnv(out.checksum);
    let mut stuck = 0.0f32;
    let mut t = 0u64;
    while out.windows.windows < windows {
        t += 1;
        let mut x = row(t);
        let report = if t.is_multiple_of(10_007) {
            det.mark_gap()
        } else {
            let set = |x: &mut [f32; CHANNELS], c: usize, v: f32| {
                if let Some(slot) = x.get_mut(c) {
                    *slot = v;
                }
            };
            if t.is_multiple_of(7_919) {
                set(&mut x, 1, f32::NAN);
            } else if t.is_multiple_of(15_013) {
                set(&mut x, 2, f32::NEG_INFINITY);
            } else if t.is_multiple_of(12_011) {
                set(&mut x, 0, 1.0e30);
            }
            let phase = t % 50_021;
            if phase == 0 {
                stuck = x.get(2).copied().unwrap_or(0.0);
            }
            if phase < 40 {
                set(&mut x, 2, stuck);
            }
            det.push(&MODEL, &x)?
        };
        if let Some(r) = report {
            fnv.report(&r);
            let s = &mut out.windows;
            s.windows += 1;
            s.alarms += u32::from(r.alarm);
            s.skipped += u32::from(r.faults.skips_window());
            s.flagged += u32::from(r.faults.flags_window() && !r.faults.skips_window());
        }
    }
    out.samples = det.samples();
    out.checksum = fnv.0;
    Ok(out)
}
