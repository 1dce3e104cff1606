//! Matching a CSV header to a model's channels, and lists of names short enough to print.
//!
//! A stream given to a trained model (`score`, `eval`, `quantize`) must feed each model channel
//! from the column of the same name: [`match_channels`] maps every model channel to a column of
//! the header by name (the header's order does not matter). A model channel missing from the
//! header is an error that prints both lists of names; columns that are not model channels are
//! ignored, and [`ColumnMap::ignored`] says which (the commands print it as a note on stderr).
//! [`Matching::ByPosition`] (`--by-position`) instead uses the columns in file order, which needs
//! exactly as many columns as the model has channels. The `label` column is never a channel
//! (see [`crate::data`]); the functions here see the header without it.
//!
//! Matching works on the header record alone, so it serves a whole-file read and a row-by-row
//! streaming read alike: apply [`ColumnMap::indices`] to every row. It is O(n) in the number of
//! columns (a hash map from name to column), and every printed list of names is capped at
//! [`NAMES_SHOWN`] names by [`name_list`], so a header of 200,000 columns is matched in
//! milliseconds and its errors stay one short line.

use std::collections::HashMap;
use std::path::Path;

use crate::data::InputError;

/// Names printed by [`name_list`] before `... and N more`.
pub const NAMES_SHOWN: usize = 10;

/// `a,b,c` — or, for more than [`NAMES_SHOWN`] names, the first ten and `... and N more`.
pub fn name_list<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(NAMES_SHOWN).map(AsRef::as_ref).collect();
    let mut s = shown.join(",");
    if names.len() > NAMES_SHOWN {
        s.push_str(&format!(",... and {} more", names.len() - NAMES_SHOWN));
    }
    s
}

/// How the columns of a stream are matched to the model's channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Matching {
    /// By name (the default): every model channel must be a column of the header.
    #[default]
    ByName,
    /// In file order (`--by-position`): the header must have exactly as many channel columns as
    /// the model has channels; their names are not looked at.
    ByPosition,
}

impl Matching {
    /// [`Matching::ByPosition`] when `by_position`, else [`Matching::ByName`].
    pub fn from_flag(by_position: bool) -> Self {
        if by_position {
            Self::ByPosition
        } else {
            Self::ByName
        }
    }
}

/// Where each model channel is in a stream's channel columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMap {
    /// For model channel `i`, the index of its column among the stream's channel columns.
    pub indices: Vec<usize>,
    /// Channel columns of the stream that feed no model channel (by-name matching only), in
    /// header order.
    pub ignored: Vec<String>,
}

impl ColumnMap {
    /// Whether the stream's columns are the model's channels in the model's order, nothing else.
    pub fn is_identity(&self, stream_channels: usize) -> bool {
        self.ignored.is_empty()
            && self.indices.len() == stream_channels
            && self.indices.iter().enumerate().all(|(i, &c)| i == c)
    }

    /// The note printed when columns are ignored, e.g. `note: d.csv: column foo is not one of
    /// the model's channels (ax,ay,...); ignored`; `None` when every column is used.
    pub fn note(&self, path: &Path, model: &[String]) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let (what, verb) = if self.ignored.len() == 1 {
            ("column", "is not one of")
        } else {
            ("columns", "are not among")
        };
        Some(format!(
            "note: {}: {what} {} {verb} the model's channels ({}); ignored",
            path.display(),
            name_list(&self.ignored),
            name_list(model)
        ))
    }
}

/// Maps the model's channels `model` to the stream's channel columns `stream` (the header of
/// `path` without its `label` column), as `matching` says.
///
/// # Errors
/// An [`InputError`] on line 1 (the header): by name, a model channel that no column has
/// (naming the missing channels, the header's channels and the model's, and `--by-position`);
/// by position, a different number of channel columns (naming both lists).
pub fn match_channels(
    path: &Path,
    stream: &[String],
    model: &[String],
    matching: Matching,
) -> Result<ColumnMap, InputError> {
    let header_error = |message: String| InputError {
        path: path.to_path_buf(),
        line: Some(1),
        column: None,
        message,
    };
    match matching {
        Matching::ByPosition => {
            if stream.len() == model.len() {
                Ok(ColumnMap {
                    indices: (0..model.len()).collect(),
                    ignored: Vec::new(),
                })
            } else {
                Err(header_error(format!(
                    "{} channels ({}) but the model expects {} ({}); --by-position needs the \
                     same number of channel columns",
                    stream.len(),
                    name_list(stream),
                    model.len(),
                    name_list(model)
                )))
            }
        }
        Matching::ByName => {
            // First column of each name (duplicate names are refused when the CSV is parsed).
            let mut at: HashMap<&str, usize> = HashMap::with_capacity(stream.len());
            for (i, n) in stream.iter().enumerate() {
                at.entry(n.as_str()).or_insert(i);
            }
            let mut indices = Vec::with_capacity(model.len());
            let mut missing: Vec<&str> = Vec::new();
            for name in model {
                match at.get(name.as_str()) {
                    Some(&i) => indices.push(i),
                    None => missing.push(name),
                }
            }
            if !missing.is_empty() {
                let (what, verb) = if missing.len() == 1 {
                    ("channel", "is")
                } else {
                    ("channels", "are")
                };
                return Err(header_error(format!(
                    "the model's {what} {} {verb} not in the header: the header has {} \
                     ({}), the model expects {} ({}); columns are matched by name (--by-position \
                     uses them in file order)",
                    name_list(&missing),
                    stream.len(),
                    name_list(stream),
                    model.len(),
                    name_list(model)
                )));
            }
            let mut used = vec![false; stream.len()];
            for &i in &indices {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
            }
            let ignored = stream
                .iter()
                .zip(&used)
                .filter(|(_, &u)| !u)
                .map(|(n, _)| n.clone())
                .collect();
            Ok(ColumnMap { indices, ignored })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn by_name_reorders_and_ignores_extras() {
        let p = Path::new("d.csv");
        let m = match_channels(
            p,
            &names(&["ay", "ax", "az", "foo"]),
            &names(&["ax", "ay", "az"]),
            Matching::ByName,
        )
        .unwrap();
        assert_eq!(m.indices, [1, 0, 2]);
        assert_eq!(m.ignored, ["foo"]);
        assert!(!m.is_identity(4));
        assert_eq!(
            m.note(p, &names(&["ax", "ay", "az"])).unwrap(),
            "note: d.csv: column foo is not one of the model's channels (ax,ay,az); ignored"
        );
        let id = match_channels(
            p,
            &names(&["a", "b"]),
            &names(&["a", "b"]),
            Matching::ByName,
        )
        .unwrap();
        assert!(id.is_identity(2));
        assert_eq!(id.note(p, &names(&["a", "b"])), None);
    }

    #[test]
    fn missing_channel_names_both_lists() {
        let p = Path::new("d.csv");
        let e = match_channels(
            p,
            &names(&["ay", "ax", "az", "wx", "wy", "foo"]),
            &names(&["ax", "ay", "az", "wx", "wy", "wz"]),
            Matching::ByName,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv:1: the model's channel wz is not in the header: the header has 6 \
             (ay,ax,az,wx,wy,foo), the model expects 6 (ax,ay,az,wx,wy,wz); columns are matched \
             by name (--by-position uses them in file order)"
        );
    }

    #[test]
    fn by_position_needs_the_same_count() {
        let p = Path::new("d.csv");
        let m = match_channels(
            p,
            &names(&["p", "q"]),
            &names(&["a", "b"]),
            Matching::ByPosition,
        )
        .unwrap();
        assert_eq!(m.indices, [0, 1]);
        let e = match_channels(p, &names(&["p"]), &names(&["a", "b"]), Matching::ByPosition)
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("d.csv:1: 1 channels (p) but the model expects 2 (a,b)"));
    }

    #[test]
    fn long_lists_are_capped() {
        let many: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        assert_eq!(
            name_list(&many),
            "c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,... and 15 more"
        );
        assert_eq!(name_list(&many[..10]), many[..10].join(","));
    }
}
