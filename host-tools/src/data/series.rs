//! [`Series`]: a multichannel stream in memory, its row slices and the selection of the
//! model's channels from its columns ([`column_map`]).

use std::path::{Path, PathBuf};

use super::InputError;
use crate::columns::{self, Matching};

/// A multichannel stream loaded from CSV.
#[derive(Clone, Debug)]
pub struct Series {
    /// Where it was read from.
    pub path: PathBuf,
    /// Channel names from the header, in column order (without `label`).
    pub channels: Vec<String>,
    /// Row-major values: `values[row * channels.len() + c]`.
    pub values: Vec<f32>,
    /// Per-row labels (0 normal, 1 anomalous) when the file has a `label` column.
    pub labels: Option<Vec<u8>>,
    /// Rows that are dropped samples (every channel field empty, read with
    /// [`NonFinite::Keep`](super::NonFinite::Keep)), ascending; their values are NaN.
    pub gaps: Vec<usize>,
}

impl Series {
    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Number of rows (time steps).
    pub fn rows(&self) -> usize {
        self.values
            .len()
            .checked_div(self.channels.len())
            .unwrap_or(0)
    }

    /// Keeps rows `start..end` (clamped to the data).
    pub fn slice_rows(&self, start: usize, end: usize) -> Series {
        let c = self.num_channels();
        let end = end.min(self.rows());
        let start = start.min(end);
        Series {
            path: self.path.clone(),
            channels: self.channels.clone(),
            values: self.values[start * c..end * c].to_vec(),
            labels: self.labels.as_ref().map(|l| l[start..end].to_vec()),
            gaps: self
                .gaps
                .iter()
                .filter(|&&g| (start..end).contains(&g))
                .map(|&g| g - start)
                .collect(),
        }
    }

    /// The stream with the model's channels `names` in the model's order, matched by name
    /// ([`Series::select_channels_with`] and [`Matching::ByName`]).
    ///
    /// # Errors
    /// A model channel missing from the header (see [`crate::columns::match_channels`]).
    pub fn select_channels(&self, names: &[String]) -> Result<Series, InputError> {
        self.select_channels_with(names, Matching::ByName)
    }

    /// The stream with the model's channels `names` in the model's order, its columns matched
    /// as `matching` says ([`crate::columns::match_channels`]). Columns that feed no model
    /// channel are dropped, with a note on stderr naming them.
    ///
    /// # Errors
    /// By name, a model channel missing from the header; by position, a different number of
    /// channel columns. Both name the header's channels and the model's.
    pub fn select_channels_with(
        &self,
        names: &[String],
        matching: Matching,
    ) -> Result<Series, InputError> {
        let map = columns::match_channels(&self.path, &self.channels, names, matching)?;
        if let Some(note) = map.note(&self.path, names) {
            eprintln!("{note}");
        }
        if map.is_identity(self.num_channels()) {
            return Ok(Series {
                channels: names.to_vec(),
                ..self.clone()
            });
        }
        let c = self.num_channels();
        let values = self
            .values
            .chunks_exact(c)
            .flat_map(|row| map.indices.iter().map(move |&i| row[i]))
            .collect();
        Ok(Series {
            path: self.path.clone(),
            channels: names.to_vec(),
            values,
            labels: self.labels.clone(),
            gaps: self.gaps.clone(),
        })
    }

    /// Checks that the stream has `expected` channels.
    ///
    /// # Errors
    /// An [`InputError`] on line 1 (the header) naming both counts.
    pub fn check_channels(&self, expected: usize) -> Result<(), InputError> {
        if self.num_channels() == expected {
            Ok(())
        } else {
            Err(InputError::new(
                &self.path,
                Some(1),
                None,
                format!(
                    "{} channels ({}) but the model expects {}",
                    self.num_channels(),
                    columns::name_list(&self.channels),
                    expected
                ),
            ))
        }
    }
}

/// For each of the model's channels `names`, the index of the stream's channel column that
/// feeds it, matched as `matching` says ([`crate::columns::match_channels`]); columns that feed
/// no model channel are named in a note on stderr.
///
/// # Errors
/// By name, a model channel missing from the header; by position, a different number of
/// channel columns.
pub fn column_map(
    path: &Path,
    channels: &[String],
    names: &[String],
    matching: Matching,
) -> Result<Vec<usize>, InputError> {
    let map = columns::match_channels(path, channels, names, matching)?;
    if let Some(note) = map.note(path, names) {
        eprintln!("{note}");
    }
    Ok(map.indices)
}

#[cfg(test)]
mod tests {
    use crate::columns::Matching;
    use crate::data::parse_str as parse;

    #[test]
    fn channels_by_name_or_by_position() {
        let s = parse("b,x,a,label\n1,2,3,0\n4,5,6,1\n").unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = s.select_channels(&names(&["a", "b"])).unwrap();
        assert_eq!(t.channels, ["a", "b"]);
        assert_eq!(t.values, [3.0, 1.0, 6.0, 4.0]);
        assert_eq!(t.labels, Some(vec![0, 1]));
        // other names: refused by name, used in file order by position
        let e = s.select_channels(&names(&["p", "q", "r"])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d.csv:1: the model's channels p,q,r are not in the header"),
            "{e}"
        );
        let t = s
            .select_channels_with(&names(&["p", "q", "r"]), Matching::ByPosition)
            .unwrap();
        assert_eq!(t.values, s.values);
        assert_eq!(t.channels, ["p", "q", "r"]);
        let e = s
            .select_channels_with(&names(&["p", "q"]), Matching::ByPosition)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d.csv:1: 3 channels (b,x,a) but the model expects 2 (p,q)"),
            "{e}"
        );
    }
}
