//! `fleet generate`: a real-looking fleet made from the bundled recordings, seeded (same seed,
//! same archive), never stored in the repository.
//!
//! Device `k` (named `dev-0000`, `dev-0001`, ...) replays `samples` rows of one recording (the
//! training stream for even `k`, the labeled test stream for odd `k`), starting at a random
//! row and wrapping around, through a per-device, per-channel affine sensor response
//! `x' = g x + o` with gain `g` uniform in `[0.9, 1.1]` and offset `o` uniform in
//! `[-0.05, 0.05]` (in the recording's units). Then, each with its own probability per device:
//! - dropped samples: isolated single drops (0.2 % of rows) and one burst of 1 to 40 rows
//!   (absent `t` values in the archive, empty rows in the CSV copy);
//! - a non-finite burst: 1 to 8 rows of one channel set to NaN;
//! - a stuck channel: one channel holding its value for 3 windows' worth of rows;
//! - a saturated burst: 1 to 16 rows of one channel pinned at +-50.
//!
//! The first and last row are never dropped. Labels are the recording's (0 for the training
//! stream); a dropped row has none. With `--csv DIR` every device is also written as
//! `DIR/NAME.csv`, the stream `tinyvae score` reads (the exactness test scores it).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::archive::DeviceWriter;
use crate::data::{load_csv, Series};
use crate::output::FileWriter;

/// The generator's options.
#[derive(Clone, Debug)]
pub struct GenerateOpts {
    /// Devices.
    pub devices: usize,
    /// Rows per device (before drops).
    pub samples: usize,
    /// Seed.
    pub seed: u64,
    /// Rows a stuck channel holds (three windows of the model, or 48).
    pub stuck_rows: usize,
}

/// SplitMix64: a small, seeded, portable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo).max(1) as u64) as usize
    }
}

/// What happened to one row.
#[derive(Clone, Copy, PartialEq)]
enum Row {
    Keep,
    Drop,
}

/// Generates the fleet into `archive` (and CSV copies into `csv` if given); returns the rows
/// written (dropped rows excluded).
///
/// # Errors
/// Missing recordings, an existing device, I/O errors.
pub fn generate(
    recordings: &Path,
    archive: &Path,
    csv: Option<&Path>,
    o: &GenerateOpts,
) -> Result<u64> {
    if o.devices == 0 || o.devices > 100_000 {
        bail!("--devices {}: valid values are 1 to 100000", o.devices);
    }
    if o.samples < 2 {
        bail!("--samples {}: at least 2", o.samples);
    }
    let train = load_csv(&recordings.join("train.csv"))?;
    let test = load_csv(&recordings.join("test.csv"))?;
    let channels = train.channels.clone();
    if test.channels != channels {
        bail!(
            "{}: the two recordings have different channels",
            recordings.display()
        );
    }
    let c = channels.len();
    let mut total = 0u64;
    for k in 0..o.devices {
        let mut rng = Rng(o.seed ^ (k as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let src: &Series = if k % 2 == 0 { &train } else { &test };
        let n = src.rows();
        let name = format!("dev-{k:04}");
        let start = rng.range(0, n);
        let gain: Vec<f32> = (0..c).map(|_| (0.9 + 0.2 * rng.unit()) as f32).collect();
        let off: Vec<f32> = (0..c).map(|_| (-0.05 + 0.1 * rng.unit()) as f32).collect();
        let len = o.samples;
        let mut rows = vec![Row::Keep; len];
        let mut vals: Vec<f32> = Vec::with_capacity(len * c);
        let mut labels: Vec<u8> = Vec::with_capacity(len);
        for i in 0..len {
            let r = (start + i) % n;
            for ch in 0..c {
                let x = src.values.get(r * c + ch).copied().unwrap_or(0.0);
                vals.push(gain[ch] * x + off[ch]);
            }
            labels.push(
                src.labels
                    .as_ref()
                    .and_then(|l| l.get(r))
                    .copied()
                    .unwrap_or(0),
            );
        }
        // Dropped samples: isolated, and one burst.
        for row in rows.iter_mut().take(len - 1).skip(1) {
            if rng.unit() < 0.002 {
                *row = Row::Drop;
            }
        }
        if rng.unit() < 0.5 {
            let b = rng.range(1, 41).min(len / 4).max(1);
            let at = rng.range(1, len.saturating_sub(b + 1).max(2));
            for row in rows.iter_mut().skip(at).take(b) {
                *row = Row::Drop;
            }
        }
        // A non-finite burst.
        if rng.unit() < 0.5 {
            let (ch, b) = (rng.range(0, c), rng.range(1, 9));
            let at = rng.range(0, len);
            for i in at..(at + b).min(len) {
                vals[i * c + ch] = f32::NAN;
            }
        }
        // A stuck channel.
        if rng.unit() < 0.3 {
            let ch = rng.range(0, c);
            let at = rng.range(0, len);
            let v = vals[at * c + ch];
            for i in at..(at + o.stuck_rows).min(len) {
                vals[i * c + ch] = v;
            }
        }
        // A saturated burst.
        if rng.unit() < 0.3 {
            let (ch, b) = (rng.range(0, c), rng.range(1, 17));
            let at = rng.range(0, len);
            let v = if rng.unit() < 0.5 { 50.0 } else { -50.0 };
            for i in at..(at + b).min(len) {
                vals[i * c + ch] = v;
            }
        }
        let mut w = DeviceWriter::create(archive, &name, &channels, true)?;
        let mut text = String::new();
        if csv.is_some() {
            text.push_str(&channels.join(","));
            text.push_str(",label\n");
        }
        let mut values = vec![None; c];
        for (i, row) in rows.iter().enumerate() {
            let x = &vals[i * c..(i + 1) * c];
            match row {
                Row::Drop => {
                    if csv.is_some() {
                        text.push_str(&",".repeat(c));
                        text.push_str("0\n");
                    }
                }
                Row::Keep => {
                    for (v, &xv) in values.iter_mut().zip(x) {
                        *v = Some(xv);
                    }
                    w.push(i as u64, &values, labels[i])?;
                    if csv.is_some() {
                        for &xv in x {
                            if xv.is_nan() {
                                text.push_str("nan,");
                            } else {
                                write!(text, "{xv:?},")?;
                            }
                        }
                        writeln!(text, "{}", labels[i])?;
                    }
                }
            }
        }
        total += w.rows;
        w.finish()?;
        if let Some(dir) = csv {
            let path = dir.join(format!("{name}.csv"));
            let mut f = FileWriter::create(&path)?;
            std::io::Write::write_all(&mut f, text.as_bytes())
                .with_context(|| format!("{}: cannot write", path.display()))?;
            f.commit()?;
        }
    }
    Ok(total)
}
