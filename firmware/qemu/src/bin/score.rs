//! Scores the compiled-in test stream with the compiled-in model through the library's streaming
//! detector (see `tinyvae_pipeline::run`), logging one defmt line per window with exact values
//! as f32 bits, then a summary; exits through semihosting with status 0, or 1 if the library
//! failed for any reason other than a reported sensor fault.
//!
//! Window lines (parsed by `tinyvae firmware run|parity|bench`; `<tag>` is `window`, `sampled`
//! or `faulty` for the three passes, and `dead` for a multi-sensor model's dead-sensor pass,
//! `tinyvae_pipeline::dead`):
//! `<tag> <k> start=<row> score=<bits> recon=<bits> kl=<bits> flags=<f> level=<bits> alarm=<0|1>
//! event=<0|1|2> nf=<mask> sat=<mask> stuck=<mask> gap=<0|1> groups=<set>` with `score=none` (and no
//! recon/kl/flags) for a skipped window and `level=none` when the window did not reach the alarm.
//! `flags`: bit 0 log-variance clamped, bit 1 score overflow. `event`: 1 alarm raised,
//! 2 cleared. Masks: bit c = channel c. `groups`: the sensor groups the window was scored with
//! (bit g = group g; 1 for a single-group model, 0 for a skipped window).
//!
//! Before the windows, the fault pass's set-up, so a host can rebuild its input and run its own
//! detector on it (`tinyvae firmware parity --checkpoint`): `passes sampled_iwae=<K>
//! fault_rows=<n> saturation=<bits>`, then one `inject from=<row> to=<row> kind=<value|gap|stuck>
//! [channel=<c>] [value=<bits>] [row=<r>]` line per injected fault (rows half-open); for a
//! multi-sensor model also `dead_pass rows=<n>` and one `dead_inject` line (as `inject`, kind
//! `value`, a NaN) per channel of each dead group's stretch.
#![no_std]
#![no_main]

use tinyvae::{AlarmEvent, WindowReport};
use tinyvae_fw as _;
use tinyvae_pipeline::model;
use tinyvae_pipeline::run::{run_stream, Injection, Pass, FAULTS, FAULT_ROWS, SAMPLED, SATURATION};

fn log(pass: Pass, r: &WindowReport) {
    let tag = pass.tag();
    let event = match r.event {
        None => 0u8,
        Some(AlarmEvent::AlarmRaised { .. }) => 1,
        Some(AlarmEvent::AlarmCleared { .. }) => 2,
    };
    let (k, start, alarm) = (r.window as u32, r.start as u32, u8::from(r.alarm));
    let f = &r.faults;
    let (nf, sat, stuck, gap) = (f.non_finite.0, f.saturated.0, f.stuck.0, u8::from(f.gap));
    let groups = r.groups.0;
    match (r.score, r.level, r.expert) {
        // A mixture of experts: the same line with the expert that scored the window.
        (Some(s), Some(level), Some(e)) => defmt::info!(
            "{=str} {=u32} start={=u32} score={=u32:08x} recon={=u32:08x} kl={=u32:08x} flags={=u8} level={=u32:08x} alarm={=u8} event={=u8} nf={=u32} sat={=u32} stuck={=u32} gap={=u8} groups={=u8} expert={=u8}",
            tag, k, start, s.score.to_bits(), s.recon.to_bits(), s.kl.to_bits(),
            u8::from(s.clamped) | u8::from(s.overflow) << 1, level.to_bits(), alarm, event,
            nf, sat, stuck, gap, groups, e
        ),
        (Some(s), None, Some(e)) => defmt::info!(
            "{=str} {=u32} start={=u32} score={=u32:08x} recon={=u32:08x} kl={=u32:08x} flags={=u8} level=none alarm={=u8} event={=u8} nf={=u32} sat={=u32} stuck={=u32} gap={=u8} groups={=u8} expert={=u8}",
            tag, k, start, s.score.to_bits(), s.recon.to_bits(), s.kl.to_bits(),
            u8::from(s.clamped) | u8::from(s.overflow) << 1, alarm, event, nf, sat, stuck, gap,
            groups, e
        ),
        (Some(s), Some(level), None) => defmt::info!(
            "{=str} {=u32} start={=u32} score={=u32:08x} recon={=u32:08x} kl={=u32:08x} flags={=u8} level={=u32:08x} alarm={=u8} event={=u8} nf={=u32} sat={=u32} stuck={=u32} gap={=u8} groups={=u8}",
            tag, k, start, s.score.to_bits(), s.recon.to_bits(), s.kl.to_bits(),
            u8::from(s.clamped) | u8::from(s.overflow) << 1, level.to_bits(), alarm, event,
            nf, sat, stuck, gap, groups
        ),
        (Some(s), None, None) => defmt::info!(
            "{=str} {=u32} start={=u32} score={=u32:08x} recon={=u32:08x} kl={=u32:08x} flags={=u8} level=none alarm={=u8} event={=u8} nf={=u32} sat={=u32} stuck={=u32} gap={=u8} groups={=u8}",
            tag, k, start, s.score.to_bits(), s.recon.to_bits(), s.kl.to_bits(),
            u8::from(s.clamped) | u8::from(s.overflow) << 1, alarm, event, nf, sat, stuck, gap, groups
        ),
        (None, _, _) => defmt::warn!(
            "{=str} {=u32} start={=u32} score=none level=none alarm={=u8} event={=u8} nf={=u32} sat={=u32} stuck={=u32} gap={=u8} groups={=u8} (sensor fault: window skipped)",
            tag, k, start, alarm, event, nf, sat, stuck, gap, groups
        ),
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    defmt::info!(
        "model window={=usize} channels={=usize} stride={=usize} threshold={=u32:08x} stream_rows={=usize} detector_bytes={=usize}",
        model::WINDOW,
        model::CHANNELS,
        model::STRIDE,
        model::THRESHOLD.to_bits(),
        tinyvae_pipeline::stream::ROWS,
        core::mem::size_of::<tinyvae_pipeline::run::ModelDetector>()
    );
    let sampled = match SAMPLED {
        tinyvae::ScoreKind::Iwae { samples } => samples,
        _ => 0,
    };
    defmt::info!(
        "passes sampled_iwae={=u16} fault_rows={=usize} saturation={=u32:08x}",
        sampled,
        FAULT_ROWS,
        SATURATION.to_bits()
    );
    for &(from, to, inj) in &FAULTS {
        match inj {
            Injection::Value(c, v) => defmt::info!(
                "inject from={=usize} to={=usize} kind=value channel={=usize} value={=u32:08x}",
                from,
                to,
                c,
                v.to_bits()
            ),
            Injection::Gap => {
                defmt::info!("inject from={=usize} to={=usize} kind=gap", from, to)
            }
            Injection::StuckFrom(c, r) => defmt::info!(
                "inject from={=usize} to={=usize} kind=stuck channel={=usize} row={=usize}",
                from,
                to,
                c,
                r
            ),
        }
    }
    // A multi-sensor model's dead-sensor pass, so a host can rebuild it too: its rows, then
    // each dead channel's stretch as an injected NaN value.
    let groups = tinyvae::VaeModel::groups(&model::MODEL);
    if groups.count() >= 2 {
        use tinyvae_pipeline::dead::{DEAD, DEAD_ROWS};
        defmt::info!(
            "dead_pass rows={=usize}",
            DEAD_ROWS.min(tinyvae_pipeline::stream::ROWS)
        );
        for &(from, to, g) in &DEAD {
            let mask = groups.channels(g);
            for c in (0..model::CHANNELS).filter(|&c| mask.contains(c)) {
                defmt::info!(
                    "dead_inject from={=usize} to={=usize} kind=value channel={=usize} value={=u32:08x}",
                    from,
                    to,
                    c,
                    f32::NAN.to_bits()
                );
            }
        }
    }
    let mut emit = log;
    let ok =
        match run_stream(log).and_then(|p| Ok((p, tinyvae_pipeline::dead::run_dead(&mut emit)?))) {
            Ok((passes, dead)) => {
                for (p, s) in [Pass::Stream, Pass::Sampled, Pass::Faults]
                    .iter()
                    .zip(passes)
                {
                    defmt::info!(
                    "done pass={=str} windows={=u32} alarms={=u32} skipped={=u32} flagged={=u32}",
                    p.tag(),
                    s.windows,
                    s.alarms,
                    s.skipped,
                    s.flagged
                );
                }
                if let Some(s) = dead {
                    defmt::info!(
                    "done pass={=str} windows={=u32} alarms={=u32} skipped={=u32} flagged={=u32}",
                    Pass::Dead.tag(),
                    s.windows,
                    s.alarms,
                    s.skipped,
                    s.flagged
                );
                }
                true
            }
            Err(e) => {
                defmt::error!("failed error={}", e);
                false
            }
        };
    defmt::info!(
        "stack high_water={=u32} size={=u32}",
        tinyvae_fw::stack::high_water(),
        tinyvae_fw::stack::size()
    );
    if ok {
        tinyvae_fw::exit::success()
    }
    tinyvae_fw::exit::failure()
}
