//! Minimal InvenSense MPU-6050 driver (3-axis accelerometer + 3-axis gyroscope) over any
//! `embedded-hal` 1.0 [`I2c`] bus, registers written directly (register map rev. 4.2).
//!
//! Configured to match the training data (`data/watch_shoulder_pen`: 50 Hz, accelerometer in g,
//! gyroscope in rad/s): digital low-pass filter 44 Hz (`CONFIG.DLPF_CFG = 3`, gyro output rate
//! 1 kHz), sample rate `1 kHz / (1 + 19) = 50 Hz`, ranges ±2 g (16,384 LSB/g) and ±250 °/s
//! (131 LSB per °/s), data-ready flag polled. Raw counts are big-endian `i16`; [`RAW_SCALE`]
//! converts them to the data set's units in the detector ([`tinyvae::RawScale`]), which also
//! flags a count at the `i16` rails as saturated.

use embedded_hal::i2c::{ErrorKind, I2c, NoAcknowledgeSource};

/// 7-bit address with AD0 low (0x69 with AD0 high).
pub const ADDRESS: u8 = 0x68;

const SMPLRT_DIV: u8 = 0x19;
const CONFIG: u8 = 0x1A;
const GYRO_CONFIG: u8 = 0x1B;
const ACCEL_CONFIG: u8 = 0x1C;
const INT_ENABLE: u8 = 0x38;
const INT_STATUS: u8 = 0x3A;
const ACCEL_XOUT_H: u8 = 0x3B;
const PWR_MGMT_1: u8 = 0x6B;
const WHO_AM_I: u8 = 0x75;

/// g per count at ±2 g.
pub const ACCEL_G_PER_COUNT: f32 = 1.0 / 16_384.0;
/// rad/s per count at ±250 °/s: `(pi / 180) / 131`.
pub const GYRO_RAD_S_PER_COUNT: f32 = core::f32::consts::PI / 180.0 / 131.0;

/// Counts to physical units, channel order `ax, ay, az, wx, wy, wz`.
pub const RAW_SCALE: tinyvae::RawScale<6> = tinyvae::RawScale::new(
    [
        ACCEL_G_PER_COUNT,
        ACCEL_G_PER_COUNT,
        ACCEL_G_PER_COUNT,
        GYRO_RAD_S_PER_COUNT,
        GYRO_RAD_S_PER_COUNT,
        GYRO_RAD_S_PER_COUNT,
    ],
    [0.0; 6],
);

/// What can go wrong talking to the sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bus failed (no acknowledge, arbitration loss, ...), as `embedded-hal` classifies it.
    Bus(ErrorKind),
    /// `WHO_AM_I` did not read 0x68: not an MPU-6050 at this address.
    WrongDevice(u8),
}

impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Error::Bus(kind) => {
                let what = match kind {
                    ErrorKind::Bus => "bus error",
                    ErrorKind::ArbitrationLoss => "arbitration lost",
                    ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address) => {
                        "no ACK of the address"
                    }
                    ErrorKind::NoAcknowledge(_) => "no ACK",
                    ErrorKind::Overrun => "overrun",
                    _ => "other bus error",
                };
                defmt::write!(f, "I2C: {=str}", what);
            }
            Error::WrongDevice(id) => {
                defmt::write!(f, "WHO_AM_I = {=u8:#04x}, not an MPU-6050", id)
            }
        }
    }
}

fn bus<E: embedded_hal::i2c::Error>(e: E) -> Error {
    Error::Bus(e.kind())
}

/// An MPU-6050 on bus `I`.
pub struct Mpu6050<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Mpu6050<I> {
    /// Checks the device identity and configures 50 Hz, ±2 g, ±250 °/s, data-ready flag.
    ///
    /// # Errors
    /// [`Error::Bus`] on a bus error, [`Error::WrongDevice`] for another chip.
    pub fn new(i2c: I, address: u8) -> Result<Self, Error> {
        let mut s = Self { i2c, address };
        let id = s.read_reg(WHO_AM_I)?;
        if id & 0x7E != 0x68 {
            return Err(Error::WrongDevice(id));
        }
        // Wake up with the X gyro PLL as clock source (more stable than the internal oscillator).
        s.write_reg(PWR_MGMT_1, 0x01)?;
        s.write_reg(CONFIG, 0x03)?;
        s.write_reg(SMPLRT_DIV, 19)?;
        s.write_reg(GYRO_CONFIG, 0x00)?;
        s.write_reg(ACCEL_CONFIG, 0x00)?;
        s.write_reg(INT_ENABLE, 0x01)?;
        Ok(s)
    }

    /// Whether a new sample is ready (reading `INT_STATUS` clears the flag).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn data_ready(&mut self) -> Result<bool, Error> {
        Ok(self.read_reg(INT_STATUS)? & 0x01 != 0)
    }

    /// Reads one sample as raw counts `[ax, ay, az, wx, wy, wz]` (one burst read, so the six
    /// values belong to the same sample).
    ///
    /// # Errors
    /// [`Error::Bus`].
    pub fn read_raw(&mut self) -> Result<[i16; 6], Error> {
        let mut b = [0u8; 14];
        self.i2c
            .write_read(self.address, &[ACCEL_XOUT_H], &mut b)
            .map_err(bus)?;
        let be = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
        // Bytes 6..8 are the temperature.
        Ok([be(0), be(2), be(4), be(8), be(10), be(12)])
    }

    fn read_reg(&mut self, reg: u8) -> Result<u8, Error> {
        let mut v = [0u8];
        self.i2c
            .write_read(self.address, &[reg], &mut v)
            .map_err(bus)?;
        Ok(v[0])
    }

    fn write_reg(&mut self, reg: u8, value: u8) -> Result<(), Error> {
        self.i2c.write(self.address, &[reg, value]).map_err(bus)
    }
}
