//! tinyvae on a real board: an MPU-6050 IMU (accelerometer + gyroscope, the six channels
//! `ax, ay, az, wx, wy, wz` of the bundled smartwatch data) read at 50 Hz over I2C through the
//! `embedded-hal` 1.0 [`I2c`](embedded_hal::i2c::I2c) trait, scored live with the compiled-in
//! model by the library's streaming detector, logged with defmt over RTT.
//!
//! Board: Nordic nRF52840-DK (Cortex-M4F at 64 MHz, 1 MB flash, 256 KB RAM, on-board J-Link).
//! Wiring (Arduino header): MPU-6050 `SDA` to P0.26, `SCL` to P0.27, `VCC` to 3.3 V (VDD),
//! `GND` to GND, `AD0` to GND (address 0x68). Most breakouts (GY-521) carry the pull-ups.
//!
//! Run with a probe attached, from this directory: `cargo run --release` (runner
//! `probe-rs run --chip nRF52840_xxAA`, see `.cargo/config.toml`); the model is the one
//! `$TINYVAE_MODEL` names at build time (default: `firmware/model/default_model.rs`).
//!
//! Per window the log shows the score, the alarm state and events; on an alarm the channel and
//! time step that contribute most to the reconstruction error (attribution); sensor faults
//! (saturated or stuck channels, dropped samples after a bus error or a late sample) are logged
//! as such and never stop the loop.
#![no_std]
#![no_main]

mod mpu6050;

use embedded_hal::delay::DelayNs;
use nrf52840_hal::gpio::p0;
use nrf52840_hal::pac;
use nrf52840_hal::twim::{self, Twim};
use nrf52840_hal::Timer;
use tinyvae::{AlarmEvent, Detector, Error, WindowReport, Workspace};
use tinyvae_fw::exit;
use tinyvae_pipeline::model::{self, Model, CHANNELS, MODEL};
use tinyvae_pipeline::run::{config, ModelDetector};

use mpu6050::{Mpu6050, ADDRESS, RAW_SCALE};

const _: () = assert!(
    CHANNELS == 6,
    "this example feeds the six IMU channels ax, ay, az, wx, wy, wz: export a 6-channel model"
);

/// Polls of the data-ready flag (every 0.5 ms) before a sample counts as dropped: 25 ms, a bit
/// more than the 20 ms sample period.
const MAX_POLLS: u32 = 50;

fn report(det: &mut ModelDetector, r: Result<Option<WindowReport>, Error>) {
    let r = match r {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            defmt::error!("scoring failed: {}", e);
            return;
        }
    };
    for f in r.faults.iter() {
        defmt::warn!("window {=u64}: sensor fault {}", r.window, f);
    }
    match r.score {
        Some(s) => defmt::info!(
            "window {=u64} samples {=u64}..{=u64}: score {=f32} (recon {=f32}, kl {=f32}) alarm {=bool}",
            r.window,
            r.start,
            r.end,
            s.score,
            s.recon,
            s.kl,
            r.alarm
        ),
        None => defmt::warn!("window {=u64}: skipped (sensor fault)", r.window),
    }
    match r.event {
        Some(AlarmEvent::AlarmRaised { window }) => {
            defmt::warn!("ALARM raised at window {=u64}", window);
            match det.attribute(&MODEL) {
                Ok(a) => defmt::warn!(
                    "  most anomalous: channel {=str}, time step {=usize} of {=usize}",
                    model::CHANNEL_NAMES
                        .get(a.top_channel)
                        .copied()
                        .unwrap_or("?"),
                    a.top_step,
                    model::WINDOW
                ),
                Err(e) => defmt::warn!("  no attribution: {}", e),
            }
        }
        Some(AlarmEvent::AlarmCleared { window }) => {
            defmt::info!("alarm cleared at window {=u64}", window)
        }
        None => {}
    }
    if r.window % 100 == 0 {
        defmt::info!(
            "stack high-water mark {=u32} bytes",
            tinyvae_fw::stack::high_water()
        );
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let Some(p) = pac::Peripherals::take() else {
        exit::failure()
    };
    let port0 = p0::Parts::new(p.P0);
    let pins = twim::Pins {
        scl: port0.p0_27.into_floating_input().degrade(),
        sda: port0.p0_26.into_floating_input().degrade(),
    };
    let i2c = Twim::new(p.TWIM0, pins, twim::Frequency::K400);
    let mut timer = Timer::new(p.TIMER0);

    let mut imu = match Mpu6050::new(i2c, ADDRESS) {
        Ok(imu) => imu,
        Err(e) => {
            defmt::error!("MPU-6050 not found at 0x68 ({}): check the wiring", e);
            exit::failure()
        }
    };
    let cfg = match config(model::SCORE) {
        Ok(c) => c.with_raw(RAW_SCALE),
        Err(e) => {
            defmt::error!("bad exported constants: {}", e);
            exit::failure()
        }
    };
    let mut det: ModelDetector = Detector::new(cfg, Workspace::new(Model::SCRATCH));
    defmt::info!(
        "scoring {=usize} channels, windows of {=usize} every {=usize} samples, threshold {=f32}",
        CHANNELS,
        model::WINDOW,
        model::STRIDE,
        model::THRESHOLD
    );

    let mut polls = 0u32;
    loop {
        match imu.data_ready() {
            Ok(true) => {
                polls = 0;
                let r = match imu.read_raw() {
                    Ok(raw) => det.push_raw(&MODEL, &raw),
                    Err(e) => {
                        defmt::warn!("IMU read failed ({}): sample dropped", e);
                        Ok(det.mark_gap())
                    }
                };
                report(&mut det, r);
            }
            Ok(false) => {
                polls += 1;
                if polls >= MAX_POLLS {
                    polls = 0;
                    defmt::warn!("no sample for 25 ms: marked as dropped");
                    let r = det.mark_gap();
                    report(&mut det, Ok(r));
                }
                timer.delay_us(500);
            }
            Err(e) => {
                defmt::warn!("IMU status read failed ({}): sample dropped", e);
                let r = det.mark_gap();
                report(&mut det, Ok(r));
                timer.delay_ms(20);
            }
        }
    }
}
