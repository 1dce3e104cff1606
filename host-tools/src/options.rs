//! Checks of the numeric command-line options of `score` (the alarm logic and on-device
//! adaptation), each with its own message naming the option, the value and the valid range.
//!
//! The ranges mirror the library's validation exactly, so a configuration these checks accept
//! is one [`tinyvae::AlarmConfig::validate`] and [`tinyvae::AdaptConfig::validate`] accept:
//!
//! | option | valid | library field |
//! |---|---|---|
//! | `--threshold T` | any number but NaN (`inf`: never raises) | `AlarmConfig::threshold` |
//! | `--ema ALPHA` | `0 < ALPHA <= 1` | `AlarmConfig::alpha` |
//! | `--clear-threshold LEVEL` | not NaN, `LEVEL <= T` | `AlarmConfig::clear_threshold` |
//! | `--debounce K,N[,CLEAR]` | `1 <= CLEAR <= K <= N <= 32` | `clear_count`, `raise_count`, `n` |
//! | `--adapt-fpr FPR` | `0 < FPR < 1` | `AdaptConfig::fpr` (= `clear_fpr`) |
//!
//! Every real-valued option is read with [`parse_f32`], which refuses a number beyond the f32
//! range (`1e39` would otherwise silently become infinity).

use anyhow::{anyhow, bail, Result};
use tinyvae::{AdaptConfig, AlarmConfig};

use crate::data::{f32_range_message, overflows_f32};

/// Largest `N` of `--debounce` (the alarm's history is a 32-bit mask).
pub const MAX_DEBOUNCE_N: u8 = 32;

/// Parses an f32 option value: a number (`nan`, `inf` and `-inf` are accepted here and judged
/// by each option's range), refusing a finite number beyond the f32 range.
///
/// # Errors
/// A message naming the value: not a number, or out of the f32 range.
pub fn parse_f32(s: &str) -> Result<f32, String> {
    let t = s.trim();
    let v: f32 = t.parse().map_err(|_| format!("{t:?} is not a number"))?;
    if overflows_f32(t, v) {
        return Err(f32_range_message(t));
    }
    Ok(v)
}

/// Where the alarm threshold came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdSource {
    /// `--threshold`.
    Flag,
    /// The checkpoint's calibrated threshold.
    Checkpoint,
}

/// `score`'s alarm options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlarmOptions {
    /// The alarm threshold.
    pub threshold: f32,
    /// Where it came from.
    pub source: ThresholdSource,
    /// `--ema`.
    pub ema: Option<f32>,
    /// `--clear-threshold`.
    pub clear_threshold: Option<f32>,
    /// `--debounce K,N,CLEAR`.
    pub debounce: Option<(u8, u8, u8)>,
}

impl AlarmOptions {
    /// The alarm configuration, each option checked against its range (module doc).
    ///
    /// # Errors
    /// The first option outside its range, with the option, the value and the range.
    pub fn config(&self) -> Result<AlarmConfig> {
        let t = self.threshold;
        let t_text = match self.source {
            ThresholdSource::Flag => format!("--threshold {t}"),
            ThresholdSource::Checkpoint => format!("the checkpoint's calibrated threshold {t}"),
        };
        if t.is_nan() {
            bail!(
                "{t_text} is outside its valid range: any number but NaN (inf never raises the \
                 alarm)"
            );
        }
        let mut alarm = AlarmConfig::threshold(t);
        if let Some(alpha) = self.ema {
            if !(alpha > 0.0 && alpha <= 1.0) {
                bail!(
                    "--ema {alpha} is outside its valid range 0 < ALPHA <= 1 (the weight of the \
                     newest score; 1: no smoothing)"
                );
            }
            alarm = alarm.with_ema(alpha);
        }
        if let Some(c) = self.clear_threshold {
            if c.is_nan() || c > t {
                bail!(
                    "--clear-threshold {c} is outside its valid range: a number at most the alarm \
                     threshold ({t_text})"
                );
            }
            alarm = alarm.with_hysteresis(c);
        }
        if let Some((k, n, clear)) = self.debounce {
            let v = format!("--debounce {k},{n},{clear}");
            if !(1..=MAX_DEBOUNCE_N).contains(&n) {
                bail!("{v}: N = {n} is outside its valid range 1..={MAX_DEBOUNCE_N}");
            }
            if !(1..=n).contains(&k) {
                bail!("{v}: K = {k} is outside its valid range 1..=N (N = {n})");
            }
            if !(1..=k).contains(&clear) {
                bail!("{v}: CLEAR = {clear} is outside its valid range 1..=K (K = {k})");
            }
            alarm = alarm.with_debounce(k, n, clear);
        }
        // The checks above are the library's; this only guards against them drifting apart.
        alarm
            .validate()
            .map_err(|e| anyhow!("alarm options (--ema, --clear-threshold, --debounce): {e}"))?;
        Ok(alarm)
    }
}

/// The adaptation configuration of `--adapt STATS,THRESHOLD` at `fpr`, which is `--adapt-fpr`
/// when `from_flag`, else the checkpoint's calibration target.
///
/// # Errors
/// `fpr` outside `0 < fpr < 1`, naming where it came from.
pub fn adapt_config(stats: u32, windows: u32, fpr: f32, from_flag: bool) -> Result<AdaptConfig> {
    if !(fpr > 0.0 && fpr < 1.0) {
        if from_flag {
            bail!(
                "--adapt-fpr {fpr} is outside its valid range 0 < FPR < 1 (the target \
                 false-positive rate of the adapted threshold)"
            );
        }
        bail!(
            "the checkpoint's false-positive rate {fpr} (the default of --adapt-fpr) is outside \
             the valid range 0 < FPR < 1 of --adapt; give --adapt-fpr"
        );
    }
    let a = AdaptConfig::new(stats, windows, fpr);
    a.validate()
        .map_err(|e| anyhow!("adaptation options (--adapt, --adapt-fpr): {e}"))?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> AlarmOptions {
        AlarmOptions {
            threshold: 10.0,
            source: ThresholdSource::Flag,
            ema: None,
            clear_threshold: None,
            debounce: None,
        }
    }

    /// Every accepted configuration is one the library accepts, and every refused one is one
    /// it refuses (over a grid covering each boundary).
    #[test]
    fn ranges_mirror_the_library() {
        let fs = [
            f32::NAN,
            f32::NEG_INFINITY,
            -1.0,
            0.0,
            1e-7,
            0.5,
            1.0,
            1.0001,
            9.0,
            10.0,
            11.0,
            f32::INFINITY,
        ];
        let counts = [0u8, 1, 2, 3, 31, 32, 33];
        for &t in &[f32::NAN, 10.0, f32::INFINITY, -5.0] {
            for &e in &fs {
                for &c in &fs {
                    let o = AlarmOptions {
                        threshold: t,
                        ema: Some(e),
                        clear_threshold: Some(c),
                        ..opts()
                    };
                    let lib = AlarmConfig::threshold(t).with_ema(e).with_hysteresis(c);
                    assert_eq!(o.config().is_ok(), lib.validate().is_ok(), "{t} {e} {c}");
                }
            }
        }
        for &k in &counts {
            for &n in &counts {
                for &c in &counts {
                    let o = AlarmOptions {
                        debounce: Some((k, n, c)),
                        ..opts()
                    };
                    let lib = AlarmConfig::threshold(10.0).with_debounce(k, n, c);
                    assert_eq!(o.config().is_ok(), lib.validate().is_ok(), "{k},{n},{c}");
                }
            }
        }
        for &f in &fs {
            let lib = AdaptConfig::new(5, 5, f).validate().is_ok();
            assert_eq!(adapt_config(5, 5, f, true).is_ok(), lib, "{f}");
        }
    }

    #[test]
    fn messages_name_option_value_and_range() {
        let msg = |o: AlarmOptions| o.config().unwrap_err().to_string();
        assert_eq!(
            msg(AlarmOptions {
                threshold: f32::NAN,
                ..opts()
            }),
            "--threshold NaN is outside its valid range: any number but NaN (inf never raises \
             the alarm)"
        );
        assert_eq!(
            msg(AlarmOptions {
                debounce: Some((5, 3, 1)),
                ..opts()
            }),
            "--debounce 5,3,1: K = 5 is outside its valid range 1..=N (N = 3)"
        );
        assert_eq!(
            msg(AlarmOptions {
                clear_threshold: Some(99999.0),
                source: ThresholdSource::Checkpoint,
                ..opts()
            }),
            "--clear-threshold 99999 is outside its valid range: a number at most the alarm \
             threshold (the checkpoint's calibrated threshold 10)"
        );
        assert!(adapt_config(1, 1, 2.0, true)
            .unwrap_err()
            .to_string()
            .starts_with("--adapt-fpr 2 is outside its valid range 0 < FPR < 1"));
        assert_eq!(
            parse_f32("1e39").unwrap_err(),
            "\"1e39\" is out of the f32 range (finite values have |x| <= 3.4028235e38)"
        );
        assert!(parse_f32("inf").unwrap().is_infinite());
        assert!(parse_f32("x").is_err());
    }
}
