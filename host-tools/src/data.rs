//! Sensor CSV streams: loading with precise error positions, windowing and standardization.
//!
//! # CSV format
//! A header row, then one row per time step and one column per channel (`ax,ay,az,...`). A
//! column named `label` (any case) is optional: `0` marks a normal sample, `1` an anomalous one;
//! it is never used as a channel. Every other field must parse as a finite number. Blank lines
//! are skipped. A stream to be scored ([`load_csv_with`] and [`NonFinite::Keep`], what
//! `tinyvae score` reads) may also hold `nan`, `inf`, `-inf` or an empty field in a channel
//! column: a sensor fault the streaming detector reports (the windows holding it are skipped),
//! not an input error; a row whose channel fields are all empty is a dropped sample (a gap). Errors name the file, the 1-based line and the 1-based column, e.g.
//! `data.csv:17:3: field "abc" is not a number`.
//!
//! # Windows
//! A window of `W` time steps starting at row `s` covers rows `s..s + W` (end exclusive) and is
//! flattened time-major: `x[t * C + c]` is channel `c` at time `s + t`. Starts are
//! `0, stride, 2 stride, ...` while `s + W <= rows`. A window is anomalous if any of its samples
//! is labeled 1.
//!
//! # Standardization
//! Per channel, `x' = clamp((x - mean_c) * (1 / std_c), -NORM_LIMIT, NORM_LIMIT)` in f32: the
//! arithmetic of the library's [`tinyvae::Normalizer`] (which the firmware's detector runs), so
//! host and chip see the same bits (a unit test checks it against `Normalizer`). `mean_c` and
//! the population standard deviation `std_c` are accumulated in f64 over the training rows and
//! rounded to f32; a channel with `std_c < 1e-6` (constant) gets `std_c = 1` so it is centred
//! but not blown up.
//!
//! # Validation split
//! [`split_tail`] holds out the last `fraction` of the rows of a training stream, by time: the
//! training windows lie entirely before the split row, the validation windows entirely after
//! it, so no sample is shared (no leakage through overlapping windows).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An input problem with the position where it was found: `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// The file the problem is in.
    pub path: PathBuf,
    /// 1-based line, when the problem is at a line.
    pub line: Option<u64>,
    /// 1-based column (field index), when the problem is at a field.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    fn new(path: &Path, line: Option<u64>, column: Option<usize>, message: String) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

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
    /// [`NonFinite::Keep`]), ascending; their values are NaN.
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

    /// The stream with the model's channels in the model's order: columns are matched by name
    /// when the header has every one of `names` (extra columns are dropped, order may differ);
    /// otherwise by position, which needs the same count (a warning is printed on stderr when
    /// the names differ).
    ///
    /// # Errors
    /// A different channel count without matching names (see [`Series::check_channels`]).
    pub fn select_channels(&self, names: &[String]) -> Result<Series, InputError> {
        if self.channels == names {
            return Ok(self.clone());
        }
        let idx: Option<Vec<usize>> = names
            .iter()
            .map(|n| self.channels.iter().position(|c| c == n))
            .collect();
        if let Some(idx) = idx {
            let c = self.num_channels();
            let values = self
                .values
                .chunks_exact(c)
                .flat_map(|row| idx.iter().map(move |&i| row[i]))
                .collect();
            return Ok(Series {
                path: self.path.clone(),
                channels: names.to_vec(),
                values,
                labels: self.labels.clone(),
                gaps: self.gaps.clone(),
            });
        }
        self.check_channels(names.len())?;
        eprintln!(
            "warning: {}: channels {} do not match the model's {}; using them by position",
            self.path.display(),
            self.channels.join(","),
            names.join(",")
        );
        Ok(self.clone())
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
                    self.channels.join(","),
                    expected
                ),
            ))
        }
    }
}

/// What a non-finite or empty channel field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// An input error (training, calibration and evaluation data).
    Reject,
    /// A sensor fault, kept as NaN (empty field) or the parsed NaN/infinity (streams to score).
    Keep,
}

fn parse_channel(
    path: &Path,
    line: u64,
    col: usize,
    field: &str,
    mode: NonFinite,
) -> Result<f32, InputError> {
    if mode == NonFinite::Keep {
        let t = field.trim();
        if t.is_empty() {
            return Ok(f32::NAN);
        }
        if let Ok(v) = t.parse::<f32>() {
            return Ok(v);
        }
    }
    parse_field(path, line, col, field)
}

fn parse_field(path: &Path, line: u64, col: usize, field: &str) -> Result<f32, InputError> {
    let t = field.trim();
    if t.is_empty() {
        return Err(InputError::new(
            path,
            Some(line),
            Some(col),
            "empty field".to_string(),
        ));
    }
    let v: f32 = t.parse().map_err(|_| {
        InputError::new(
            path,
            Some(line),
            Some(col),
            format!("field {t:?} is not a number"),
        )
    })?;
    if !v.is_finite() {
        return Err(InputError::new(
            path,
            Some(line),
            Some(col),
            format!("field {t:?} is not finite (NaN and infinities are not allowed)"),
        ));
    }
    Ok(v)
}

/// Reads a CSV stream (see the module docs for the format).
///
/// # Errors
/// An [`InputError`] for a missing or unreadable file, an empty file or header, a header without
/// channels, duplicate channel names, a row with a different number of fields than the header
/// (ragged), an empty, non-numeric or non-finite field, a label that is not 0 or 1, or a file
/// with a header but no rows.
pub fn load_csv(path: &Path) -> Result<Series, InputError> {
    load_csv_with(path, NonFinite::Reject)
}

/// [`load_csv`], with non-finite channel values treated as `mode` says.
///
/// # Errors
/// As [`load_csv`] (non-finite and empty channel fields only with [`NonFinite::Reject`]).
pub fn load_csv_with(path: &Path, mode: NonFinite) -> Result<Series, InputError> {
    let bytes = std::fs::read(path).map_err(|e| {
        let msg = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => format!("cannot read: {e}"),
        };
        InputError::new(path, None, None, msg)
    })?;
    parse_csv_with(path, &bytes, mode)
}

/// Parses CSV bytes as if read from `path` (used by [`load_csv`] and the tests).
///
/// # Errors
/// As [`load_csv`].
pub fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Series, InputError> {
    parse_csv_with(path, bytes, NonFinite::Reject)
}

/// [`parse_csv`] with non-finite channel values treated as `mode` says.
///
/// # Errors
/// As [`load_csv_with`].
pub fn parse_csv_with(path: &Path, bytes: &[u8], mode: NonFinite) -> Result<Series, InputError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(InputError::new(
            path,
            None,
            None,
            "file is empty (expected a header row and data rows)".to_string(),
        ));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut records = rdr.records();
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line());
        let msg = match e.kind() {
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text".to_string(),
            _ => format!("malformed CSV: {e}"),
        };
        InputError::new(path, line, None, msg)
    };
    let header = match records.next() {
        Some(r) => r.map_err(csv_err)?,
        None => {
            return Err(InputError::new(
                path,
                None,
                None,
                "file is empty (expected a header row and data rows)".to_string(),
            ))
        }
    };
    let header_line = header.position().map_or(1, |p| p.line());
    let names: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let label_col = names.iter().position(|n| n.eq_ignore_ascii_case("label"));
    if names
        .iter()
        .filter(|n| n.eq_ignore_ascii_case("label"))
        .count()
        > 1
    {
        return Err(InputError::new(
            path,
            Some(header_line),
            None,
            "more than one `label` column".to_string(),
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(InputError::new(
                path,
                Some(header_line),
                Some(i + 1),
                "empty column name in the header".to_string(),
            ));
        }
        if n.parse::<f64>().is_ok() {
            return Err(InputError::new(
                path,
                Some(header_line),
                Some(i + 1),
                format!("header expected (channel names), found the number {n:?}"),
            ));
        }
        if names[..i].contains(n) {
            return Err(InputError::new(
                path,
                Some(header_line),
                Some(i + 1),
                format!("duplicate column name {n:?}"),
            ));
        }
    }
    let channels: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != label_col)
        .map(|(_, n)| n.clone())
        .collect();
    if channels.is_empty() {
        return Err(InputError::new(
            path,
            Some(header_line),
            None,
            "no channel columns in the header".to_string(),
        ));
    }
    let mut values = Vec::new();
    let mut labels = label_col.map(|_| Vec::new());
    let mut gaps = Vec::new();
    for rec in records {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map_or(0, |p| p.line());
        // A line with a single empty field is a blank line.
        if rec.len() == 1 && rec.get(0).is_some_and(str::is_empty) {
            continue;
        }
        if rec.len() != names.len() {
            let col = rec.len().min(names.len()) + 1;
            return Err(InputError::new(
                path,
                Some(line),
                Some(col),
                format!(
                    "ragged row: {} fields, the header has {}",
                    rec.len(),
                    names.len()
                ),
            ));
        }
        if mode == NonFinite::Keep
            && rec
                .iter()
                .enumerate()
                .all(|(i, f)| Some(i) == label_col || f.trim().is_empty())
        {
            gaps.push(values.len() / channels.len());
        }
        for (i, field) in rec.iter().enumerate() {
            if Some(i) == label_col {
                let v = parse_field(path, line, i + 1, field)?;
                let l = if v == 0.0 {
                    0
                } else if v == 1.0 {
                    1
                } else {
                    return Err(InputError::new(
                        path,
                        Some(line),
                        Some(i + 1),
                        format!("label {field:?} is not 0 or 1"),
                    ));
                };
                if let Some(ls) = labels.as_mut() {
                    ls.push(l);
                }
            } else {
                values.push(parse_channel(path, line, i + 1, field, mode)?);
            }
        }
    }
    if values.is_empty() {
        return Err(InputError::new(
            path,
            None,
            None,
            "no data rows after the header".to_string(),
        ));
    }
    Ok(Series {
        path: path.to_path_buf(),
        channels,
        values,
        labels,
        gaps,
    })
}

/// Start rows of the windows of `window` rows, every `stride` rows, in a stream of `rows` rows.
///
/// # Errors
/// A message when `window` or `stride` is zero or the window is longer than the data.
pub fn window_starts(rows: usize, window: usize, stride: usize) -> Result<Vec<usize>, String> {
    if window == 0 {
        return Err("--window must be at least 1".to_string());
    }
    if stride == 0 {
        return Err("--stride must be at least 1".to_string());
    }
    if window > rows {
        return Err(format!(
            "window of {window} samples is longer than the data ({rows} rows)"
        ));
    }
    Ok((0..=rows - window).step_by(stride).collect())
}

/// Per-channel standardization statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (1 for a constant channel).
    pub std: Vec<f32>,
}

impl Norm {
    /// Fits mean and population standard deviation per channel (f64 accumulation).
    pub fn fit(series: &Series) -> Norm {
        let c = series.num_channels();
        let n = series.rows().max(1) as f64;
        let mut sum = vec![0.0f64; c];
        for row in series.values.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut ss = vec![0.0f64; c];
        for row in series.values.chunks_exact(c) {
            for ((s, &v), &m) in ss.iter_mut().zip(row).zip(&mean) {
                let d = f64::from(v) - m;
                *s += d * d;
            }
        }
        let std = ss
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt() as f32;
                if sd < 1e-6 {
                    1.0
                } else {
                    sd
                }
            })
            .collect();
        Norm {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Standardizes consecutive samples in place (channels repeat every `channels()` values):
    /// `clamp((x - mean) * (1 / std), ±NORM_LIMIT)`, as [`tinyvae::Normalizer`] computes it.
    pub fn apply(&self, row: &mut [f32]) {
        for (v, (&m, &s)) in row.iter_mut().zip(self.mean.iter().zip(&self.std).cycle()) {
            let inv = 1.0 / s;
            *v = ((*v - m) * inv).clamp(-tinyvae::NORM_LIMIT, tinyvae::NORM_LIMIT);
        }
    }
}

/// Standardized, flattened windows of a stream.
#[derive(Clone, Debug)]
pub struct Windows {
    /// Window length in rows.
    pub window: usize,
    /// Channels per row.
    pub channels: usize,
    /// Start row of each window (in the stream the windows were cut from).
    pub starts: Vec<usize>,
    /// `starts.len() * window * channels` values, one window after the other, time-major.
    pub data: Vec<f32>,
    /// Per window: anomalous (any labeled sample), when the stream has labels.
    pub labels: Option<Vec<bool>>,
}

impl Windows {
    /// Cuts and standardizes the windows of `series`.
    ///
    /// # Errors
    /// As [`window_starts`] (reported against the file), or a channel-count mismatch with `norm`.
    pub fn cut(
        series: &Series,
        window: usize,
        stride: usize,
        norm: &Norm,
    ) -> Result<Windows, InputError> {
        series.check_channels(norm.channels())?;
        let c = series.num_channels();
        let starts = window_starts(series.rows(), window, stride)
            .map_err(|m| InputError::new(&series.path, None, None, m))?;
        let mut data = Vec::with_capacity(starts.len() * window * c);
        for &s in &starts {
            let from = data.len();
            data.extend_from_slice(&series.values[s * c..(s + window) * c]);
            norm.apply(&mut data[from..]);
        }
        let labels = series.labels.as_ref().map(|l| {
            starts
                .iter()
                .map(|&s| l[s..s + window].iter().any(|&v| v != 0))
                .collect()
        });
        Ok(Windows {
            window,
            channels: c,
            starts,
            data,
            labels,
        })
    }

    /// Values per window (`window * channels`).
    pub fn dim(&self) -> usize {
        self.window * self.channels
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Window `i` as a slice.
    pub fn get(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.data[i * d..(i + 1) * d]
    }

    /// Iterates over the windows.
    pub fn iter(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim())
    }
}

/// Splits a training stream by time: the first rows for training, the last `fraction` of the
/// rows (at least one window) for validation. Returns `(train, validation)`.
///
/// # Errors
/// A message if either part would be shorter than one window.
pub fn split_tail(
    series: &Series,
    fraction: f64,
    window: usize,
) -> Result<(Series, Series), InputError> {
    let rows = series.rows();
    if !(0.0..1.0).contains(&fraction) || fraction <= 0.0 {
        return Err(InputError::new(
            &series.path,
            None,
            None,
            format!("validation fraction {fraction} must be in (0, 1)"),
        ));
    }
    let val_rows = ((rows as f64 * fraction).round() as usize).max(window);
    if val_rows + window > rows {
        return Err(InputError::new(
            &series.path,
            None,
            None,
            format!(
                "window of {window} samples is longer than the data: {rows} rows cannot hold a \
                 training and a validation window"
            ),
        ));
    }
    let split = rows - val_rows;
    Ok((series.slice_rows(0, split), series.slice_rows(split, rows)))
}

/// Writes `bytes` as the output file `path`: [`crate::output::write_file`] (atomic
/// replacement of regular files, links followed, devices, FIFOs and `-` written through).
///
/// # Errors
/// Any I/O error, with the path in the message.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::output::write_file(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Series, InputError> {
        parse_csv(Path::new("d.csv"), s.as_bytes())
    }

    #[test]
    fn parses_channels_and_labels() {
        let s = parse("a,b,label\n1,2,0\n3,4,1\n\n5,6,0\n").unwrap();
        assert_eq!(s.channels, ["a", "b"]);
        assert_eq!(s.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(s.labels, Some(vec![0, 1, 0]));
        assert_eq!(s.rows(), 3);
    }

    #[test]
    fn label_column_anywhere() {
        let s = parse("label,a\n1,2.5\n").unwrap();
        assert_eq!(s.channels, ["a"]);
        assert_eq!(s.values, [2.5]);
        assert_eq!(s.labels, Some(vec![1]));
    }

    #[test]
    fn error_positions() {
        let e = parse("a,b\n1,2\n3,abc\n").unwrap_err();
        assert_eq!(e.to_string(), "d.csv:3:2: field \"abc\" is not a number");
        let e = parse("a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv:3:2: ragged row: 1 fields, the header has 2"
        );
        let e = parse("a,b\n1,2,3\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.column, Some(3));
        let e = parse("a,b\n1,\n").unwrap_err();
        assert_eq!(e.to_string(), "d.csv:2:2: empty field");
        for bad in ["NaN", "inf", "-inf", "nan"] {
            let e = parse(&format!("a,b\n1,2\n{bad},1\n")).unwrap_err();
            assert_eq!((e.line, e.column), (Some(3), Some(1)), "{bad}: {e}");
            assert!(e.message.contains("not finite"), "{e}");
        }
        assert!(parse("").unwrap_err().message.contains("empty"));
        assert!(parse("\n\n").unwrap_err().message.contains("empty"));
        assert!(parse("a,b\n").unwrap_err().message.contains("no data rows"));
        assert!(parse("1,2\n3,4\n").unwrap_err().message.contains("header"));
        let e = parse("a,label\n1,2\n").unwrap_err();
        assert_eq!(e.to_string(), "d.csv:2:2: label \"2\" is not 0 or 1");
        let e = load_csv(Path::new("/nonexistent/x.csv")).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/x.csv: no such file");
    }

    #[test]
    fn windows_and_labels() {
        assert_eq!(window_starts(10, 4, 3).unwrap(), [0, 3, 6]);
        assert_eq!(window_starts(4, 4, 1).unwrap(), [0]);
        assert!(window_starts(3, 4, 1).is_err());
        let s = parse("a,b,label\n0,10,0\n1,11,0\n2,12,1\n3,13,0\n4,14,0\n5,15,0\n").unwrap();
        let norm = Norm {
            mean: vec![0.0, 10.0],
            std: vec![1.0, 2.0],
        };
        let w = Windows::cut(&s, 2, 2, &norm).unwrap();
        assert_eq!(w.starts, [0, 2, 4]);
        assert_eq!(w.get(1), [2.0, 1.0, 3.0, 1.5]); // (x - m) * (1 / s)
        assert_eq!(w.labels, Some(vec![false, true, false]));
        let norm3 = Norm {
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        };
        let e = Windows::cut(&s, 2, 2, &norm3).unwrap_err();
        assert!(e.to_string().starts_with("d.csv:1: 2 channels"), "{e}");
    }

    #[test]
    fn standardization_is_the_librarys() {
        let norm = Norm {
            mean: vec![0.1, -3.7, 1e3],
            std: vec![0.3, 7.1, 1e-3],
        };
        let lib = tinyvae::Normalizer::<3>::from_std([0.1, -3.7, 1e3], [0.3, 7.1, 1e-3]).unwrap();
        let mut x = 0.123f32;
        for _ in 0..1000 {
            let raw = [x, -x * 17.0, 1e3 + x * 1e-2];
            let mut ours = raw;
            norm.apply(&mut ours);
            let want = lib.normalize(&raw);
            assert_eq!(
                ours.map(f32::to_bits),
                want.map(f32::to_bits),
                "raw {raw:?}"
            );
            x = x * 1.37 % 11.0 - 2.9;
        }
        let mut huge = [1e30f32, 0.0, 0.0];
        norm.apply(&mut huge);
        assert_eq!(huge[0], tinyvae::NORM_LIMIT);
    }

    #[test]
    fn channels_by_name_then_position() {
        let s = parse("b,x,a,label\n1,2,3,0\n4,5,6,1\n").unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = s.select_channels(&names(&["a", "b"])).unwrap();
        assert_eq!(t.channels, ["a", "b"]);
        assert_eq!(t.values, [3.0, 1.0, 6.0, 4.0]);
        assert_eq!(t.labels, Some(vec![0, 1]));
        let t = s.select_channels(&names(&["p", "q", "r"])).unwrap();
        assert_eq!(t.values, s.values);
        let e = s.select_channels(&names(&["p", "q"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv:1: 3 channels (b,x,a) but the model expects 2"
        );
    }

    #[test]
    fn norm_fit_matches_closed_form() {
        let s = parse("a,b\n1,5\n2,5\n3,5\n4,5\n").unwrap();
        let n = Norm::fit(&s);
        assert_eq!(n.mean, [2.5, 5.0]);
        // population std of 1..4 = sqrt(1.25)
        assert_eq!(n.std, [1.25f64.sqrt() as f32, 1.0]);
    }

    #[test]
    fn split_has_no_overlap() {
        let rows: String = (0..100).map(|i| format!("{i}\n")).collect();
        let s = parse(&format!("a\n{rows}")).unwrap();
        let (tr, va) = split_tail(&s, 0.2, 8).unwrap();
        assert_eq!(tr.rows(), 80);
        assert_eq!(va.rows(), 20);
        assert_eq!(va.values[0], 80.0);
        assert!(split_tail(&s, 0.2, 60).is_err());
    }
}
