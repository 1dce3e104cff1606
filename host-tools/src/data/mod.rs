//! Sensor CSV streams: loading with precise error positions, windowing and standardization.
//!
//! One file per concept, all re-exported here so every `data::X` path is the same:
//! - `csv`: the CSV reader and its format ([`CsvRows`], [`load_csv`], [`parse_csv`]);
//! - `error`: [`InputError`], a problem with its `file:line:column` position;
//! - `series`: [`Series`], a loaded stream, and the selection of the model's channels;
//! - `windows`: window starts and counts, [`Windows`] and [`WindowView`];
//! - `norm`: [`Norm`], per-channel standardization;
//! - `split`: the train/validation split by time ([`split_tail`]);
//! - here: the output-file wrappers [`write_atomic`] and [`AtomicWriter`].

mod csv;
mod error;
mod norm;
mod series;
mod split;
mod windows;

pub use self::csv::*;
pub use self::error::*;
pub use self::norm::*;
pub use self::series::*;
pub use self::split::*;
pub use self::windows::*;

use std::path::Path;

/// Writes `bytes` as the output file `path`: [`crate::output::write_file`] (atomic
/// replacement of regular files, links followed, devices, FIFOs and `-` written through).
///
/// # Errors
/// Any I/O error, with the path in the message.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::output::write_file(path, bytes)
}

/// An output file written as a stream: [`crate::output::FileWriter`].
pub type AtomicWriter = crate::output::FileWriter;

/// Parses `s` as the CSV file `d.csv` (the unit tests' input).
#[cfg(test)]
fn parse_str(s: &str) -> Result<Series, InputError> {
    parse_csv(Path::new("d.csv"), s.as_bytes())
}
