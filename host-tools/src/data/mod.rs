//! Sensor CSV streams: loading with precise error positions, windowing and standardization.
//!
//! One file per concept, all re-exported here so every `data::X` path is the same:
//! - `csv`: the CSV reader and its format ([`CsvRows`], [`load_csv`], [`parse_csv`]);
//! - `error`: [`InputError`], a problem with its `file:line:column` position;
//! - `series`: [`Series`], a loaded stream, and the selection of the model's channels;
//! - `windows`: window starts and counts, [`Windows`] and [`WindowView`];
//! - `norm`: [`Norm`], per-channel standardization;
//! - `split`: the train/validation split by time ([`split_tail`]).
//!
//! Output files are written by [`crate::output`].

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

/// Parses `s` as the CSV file `d.csv` (the unit tests' input).
#[cfg(test)]
fn parse_str(s: &str) -> Result<Series, InputError> {
    parse_csv(std::path::Path::new("d.csv"), s.as_bytes())
}
