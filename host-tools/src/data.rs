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

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::columns::{self, Matching};

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
            if !overflows_f32(t, v) {
                return Ok(v);
            }
        }
    }
    parse_field(path, line, col, field)
}

/// Whether `t` is a finite number too large for f32 (it parsed as the infinity `v` but is not
/// spelled `inf` or `infinity`), e.g. `1e39`.
pub fn overflows_f32(t: &str, v: f32) -> bool {
    v.is_infinite()
        && !t
            .trim_start_matches(['+', '-'])
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("inf"))
}

/// The message for a number beyond the f32 range: `1e39 is out of the f32 range (|x| <=
/// 3.4028235e38)`.
pub fn f32_range_message(t: &str) -> String {
    format!(
        "{t:?} is out of the f32 range (finite values have |x| <= {:e})",
        f32::MAX
    )
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
    if overflows_f32(t, v) {
        return Err(InputError::new(
            path,
            Some(line),
            Some(col),
            format!("field {}", f32_range_message(t)),
        ));
    }
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

/// The longest line a CSV stream may have, in bytes (1 MiB): a row of the detector's at most 32
/// channels takes well under 1 KiB, so a longer line is not sensor data, and reading it would
/// cost memory in proportion to its length.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Reads a CSV stream (see the module docs for the format).
///
/// # Errors
/// An [`InputError`] for a missing or unreadable file, an empty file or header, a header without
/// channels, duplicate channel names, a row with a different number of fields than the header
/// (ragged), an empty, non-numeric or non-finite field, a label that is not 0 or 1, a line
/// longer than [`MAX_LINE_BYTES`], or a file with a header but no rows.
pub fn load_csv(path: &Path) -> Result<Series, InputError> {
    load_csv_with(path, NonFinite::Reject)
}

/// [`load_csv`], with non-finite channel values treated as `mode` says.
///
/// # Errors
/// As [`load_csv`] (non-finite and empty channel fields only with [`NonFinite::Reject`]).
pub fn load_csv_with(path: &Path, mode: NonFinite) -> Result<Series, InputError> {
    Series::from_rows(CsvRows::open(path, mode)?)
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
    Series::from_rows(CsvRows::new(path, bytes, mode)?)
}

impl Series {
    /// Collects every row of `rows` (what [`load_csv_with`] does).
    ///
    /// # Errors
    /// The first error of `rows`.
    pub fn from_rows<R: Read>(mut rows: CsvRows<R>) -> Result<Series, InputError> {
        let mut values = Vec::new();
        let mut labels = rows.has_labels().then(Vec::new);
        let mut gaps = Vec::new();
        while let Some(row) = rows.next_row()? {
            if row.gap {
                gaps.push(values.len() / row.values.len().max(1));
            }
            values.extend_from_slice(&row.values);
            if let (Some(ls), Some(l)) = (labels.as_mut(), row.label) {
                ls.push(l);
            }
        }
        Ok(Series {
            path: rows.path,
            channels: rows.channels,
            values,
            labels,
            gaps,
        })
    }
}

/// One data row of a [`CsvRows`] stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsvRow {
    /// 1-based line of the row in the file.
    pub line: u64,
    /// The channel values in column order (NaN for an empty field of a stream read with
    /// [`NonFinite::Keep`]).
    pub values: Vec<f32>,
    /// The label (0 or 1), when the file has a `label` column.
    pub label: Option<u8>,
    /// Whether the row is a dropped sample (every channel field empty, [`NonFinite::Keep`]).
    pub gap: bool,
}

/// Marker inside the I/O error [`LineLimit`] returns for an over-long line.
#[derive(Debug)]
struct LineTooLong {
    line: u64,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} is longer than {MAX_LINE_BYTES} bytes",
            self.line
        )
    }
}

impl std::error::Error for LineTooLong {}

/// A reader that fails as soon as a line exceeds [`MAX_LINE_BYTES`], so the CSV parser never
/// buffers more than one bounded line.
struct LineLimit<R> {
    inner: R,
    line: u64,
    len: usize,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in buf.get(..n).unwrap_or(&[]) {
            if b == b'\n' {
                self.line += 1;
                self.len = 0;
            } else {
                self.len += 1;
                if self.len > MAX_LINE_BYTES {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        LineTooLong { line: self.line },
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A CSV stream read one row at a time (the header is checked when it is opened): memory is one
/// line, however long the file. [`load_csv`] collects it into a [`Series`]; `tinyvae score`
/// feeds it to the detector row by row.
pub struct CsvRows<R> {
    path: PathBuf,
    reader: csv::Reader<LineLimit<R>>,
    record: csv::StringRecord,
    names: Vec<String>,
    label_col: Option<usize>,
    channels: Vec<String>,
    mode: NonFinite,
    rows: usize,
    row: CsvRow,
}

impl CsvRows<std::io::BufReader<std::fs::File>> {
    /// Opens `path` and reads its header.
    ///
    /// # Errors
    /// As [`load_csv`], for the header.
    pub fn open(path: &Path, mode: NonFinite) -> Result<Self, InputError> {
        use std::io::BufRead;
        let read_err = |e: std::io::Error| {
            let msg = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => format!("cannot read: {e}"),
            };
            InputError::new(path, None, None, msg)
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, file);
        if r.fill_buf().map_err(read_err)?.starts_with(b"\xEF\xBB\xBF") {
            r.consume(3);
        }
        CsvRows::new(path, r, mode)
    }
}

impl<R: Read> CsvRows<R> {
    /// Reads the header of the CSV text `reader` (after any byte-order mark), as if from `path`.
    ///
    /// # Errors
    /// As [`load_csv`], for the header.
    pub fn new(path: &Path, reader: R, mode: NonFinite) -> Result<Self, InputError> {
        let limited = LineLimit {
            inner: reader,
            line: 1,
            len: 0,
        };
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(limited);
        let mut s = CsvRows {
            path: path.to_path_buf(),
            reader,
            record: csv::StringRecord::new(),
            names: Vec::new(),
            label_col: None,
            channels: Vec::new(),
            mode,
            rows: 0,
            row: CsvRow::default(),
        };
        s.read_header()?;
        Ok(s)
    }

    /// The channel names from the header, in column order (without `label`).
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file has a `label` column.
    pub fn has_labels(&self) -> bool {
        self.label_col.is_some()
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> usize {
        self.rows
    }

    fn empty_file(&self) -> InputError {
        InputError::new(
            &self.path,
            None,
            None,
            "file is empty (expected a header row and data rows)".to_string(),
        )
    }

    fn csv_err(&self, e: csv::Error) -> InputError {
        if let csv::ErrorKind::Io(io) = e.kind() {
            if let Some(long) = io.get_ref().and_then(|x| x.downcast_ref::<LineTooLong>()) {
                return InputError::new(
                    &self.path,
                    Some(long.line),
                    None,
                    format!(
                        "line longer than {MAX_LINE_BYTES} bytes (a CSV row of sensor samples is \
                         far shorter; is this the right file?)"
                    ),
                );
            }
            return InputError::new(&self.path, None, None, format!("cannot read: {io}"));
        }
        let line = e.position().map(|p| p.line());
        let msg = match e.kind() {
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text".to_string(),
            _ => format!("malformed CSV: {e}"),
        };
        InputError::new(&self.path, line, None, msg)
    }

    /// Reads the next record into `self.record`; `false` at the end.
    fn read_record(&mut self) -> Result<bool, InputError> {
        match self.reader.read_record(&mut self.record) {
            Ok(more) => Ok(more),
            Err(e) => Err(self.csv_err(e)),
        }
    }

    fn is_blank(&self) -> bool {
        self.record.len() == 1 && self.record.get(0).is_some_and(str::is_empty)
    }

    fn read_header(&mut self) -> Result<(), InputError> {
        if !self.read_record()? {
            return Err(self.empty_file());
        }
        let header_line = self.record.position().map_or(1, |p| p.line());
        if self.is_blank() {
            // Blank lines only: an empty file; anything else after it: a header with an
            // empty name.
            loop {
                if !self.read_record()? {
                    return Err(self.empty_file());
                }
                if !self.is_blank() {
                    break;
                }
            }
            return Err(InputError::new(
                &self.path,
                Some(header_line),
                Some(1),
                "empty column name in the header".to_string(),
            ));
        }
        let path = &self.path;
        let names: Vec<String> = self.record.iter().map(|s| s.to_string()).collect();
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
        // First column of each name: O(n), so a header of millions of columns is checked at once.
        let mut first_at: HashMap<&str, usize> = HashMap::with_capacity(names.len());
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
            if let Some(&first) = first_at.get(n.as_str()) {
                return Err(InputError::new(
                    path,
                    Some(header_line),
                    Some(i + 1),
                    format!(
                        "duplicate column name {n:?} (also column {}); column names must be unique",
                        first + 1
                    ),
                ));
            }
            first_at.insert(n.as_str(), i);
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
        self.names = names;
        self.label_col = label_col;
        self.channels = channels;
        Ok(())
    }

    /// The next data row (blank lines are skipped), or `None` at the end of the file.
    ///
    /// # Errors
    /// As [`load_csv`], for the row (a file without data rows: at its end).
    pub fn next_row(&mut self) -> Result<Option<&CsvRow>, InputError> {
        loop {
            if !self.read_record()? {
                if self.rows == 0 {
                    return Err(InputError::new(
                        &self.path,
                        None,
                        None,
                        "no data rows after the header".to_string(),
                    ));
                }
                return Ok(None);
            }
            // A line with a single empty field is a blank line.
            if !self.is_blank() {
                break;
            }
        }
        let (path, rec, label_col, mode) = (&self.path, &self.record, self.label_col, self.mode);
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != self.names.len() {
            let col = rec.len().min(self.names.len()) + 1;
            return Err(InputError::new(
                path,
                Some(line),
                Some(col),
                format!(
                    "ragged row: {} fields, the header has {}",
                    rec.len(),
                    self.names.len()
                ),
            ));
        }
        let row = &mut self.row;
        row.line = line;
        row.values.clear();
        row.label = None;
        row.gap = mode == NonFinite::Keep
            && rec
                .iter()
                .enumerate()
                .all(|(i, f)| Some(i) == label_col || f.trim().is_empty());
        for (i, field) in rec.iter().enumerate() {
            if Some(i) == label_col {
                let v = parse_field(path, line, i + 1, field)?;
                row.label = Some(if v == 0.0 {
                    0
                } else if v == 1.0 {
                    1
                } else {
                    return Err(InputError::new(
                        path,
                        Some(line),
                        Some(i + 1),
                        format!(
                            "label {field:?} is not 0 or 1 (the `label` column marks normal \
                             samples 0 and anomalous ones 1)"
                        ),
                    ));
                });
            } else {
                row.values
                    .push(parse_channel(path, line, i + 1, field, mode)?);
            }
        }
        self.rows += 1;
        Ok(Some(&self.row))
    }
}

/// Start rows of the windows of `window` rows, every `stride` rows, in a stream of `rows` rows.
///
/// # Errors
/// As [`window_count`].
pub fn window_starts(rows: usize, window: usize, stride: usize) -> Result<Vec<usize>, String> {
    let n = window_count(rows, window, stride)?;
    Ok((0..n).map(|i| i * stride).collect())
}

/// Number of windows of `window` rows, every `stride` rows, in a stream of `rows` rows: window
/// `i` starts at row `i * stride`.
///
/// # Errors
/// A message when `window` or `stride` is zero or the window is longer than the data.
pub fn window_count(rows: usize, window: usize, stride: usize) -> Result<usize, String> {
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
    Ok((rows - window) / stride + 1)
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
        Self::fit_rows(series, 0..series.rows())
    }

    /// [`Norm::fit`] over the rows `rows` of `series` only (clamped to the data).
    pub fn fit_rows(series: &Series, rows: Range<usize>) -> Norm {
        let c = series.num_channels();
        let end = rows.end.min(series.rows());
        let start = rows.start.min(end);
        let values = &series.values[start * c..end * c];
        let n = (end - start).max(1) as f64;
        let mut sum = vec![0.0f64; c];
        for row in values.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut ss = vec![0.0f64; c];
        for row in values.chunks_exact(c) {
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

/// Standardized windows of a stream, as views: the stream is standardized once and window `i` is
/// the slice of `window` rows starting at row `i * stride`, so overlapping windows (stride 1)
/// cost no more memory than the stream itself.
#[derive(Clone, Debug)]
pub struct Windows {
    /// Window length in rows.
    pub window: usize,
    /// Channels per row.
    pub channels: usize,
    /// Rows between window starts.
    pub stride: usize,
    /// The standardized rows the windows are cut from (`rows * channels` values, row-major).
    pub stream: Vec<f32>,
    count: usize,
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
        Self::cut_rows(series, 0..series.rows(), window, stride, norm)
    }

    /// [`Windows::cut`] of the rows `rows` of `series` only (clamped to the data); starts are
    /// counted from `rows.start`.
    ///
    /// # Errors
    /// As [`Windows::cut`].
    pub fn cut_rows(
        series: &Series,
        rows: Range<usize>,
        window: usize,
        stride: usize,
        norm: &Norm,
    ) -> Result<Windows, InputError> {
        series.check_channels(norm.channels())?;
        let c = series.num_channels();
        let end = rows.end.min(series.rows());
        let start = rows.start.min(end);
        let count = window_count(end - start, window, stride)
            .map_err(|m| InputError::new(&series.path, None, None, m))?;
        let used = start..start + (count - 1) * stride + window;
        let mut stream = series.values[used.start * c..used.end * c].to_vec();
        norm.apply(&mut stream);
        let labels = series.labels.as_ref().map(|l| {
            let l = &l[used];
            (0..count)
                .map(|i| l[i * stride..i * stride + window].iter().any(|&v| v != 0))
                .collect()
        });
        Ok(Windows {
            window,
            channels: c,
            stride,
            stream,
            count,
            labels,
        })
    }

    /// Values per window (`window * channels`).
    pub fn dim(&self) -> usize {
        self.window * self.channels
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Start row of window `i` (`i * stride`).
    pub fn start(&self, i: usize) -> usize {
        i * self.stride
    }

    /// Window `i` as a slice.
    pub fn get(&self, i: usize) -> &[f32] {
        self.view().get(i)
    }

    /// Iterates over the windows.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[f32]> + Clone + '_ {
        self.view().iter()
    }

    /// The windows as a [`WindowView`] (what training takes).
    pub fn view(&self) -> WindowView<'_> {
        WindowView {
            data: &self.stream,
            dim: self.dim(),
            step: self.stride * self.channels,
            len: self.count,
        }
    }
}

/// `len` windows of `dim` values in `data`, window `i` at offset `i * step`: flattened windows
/// one after the other (`step == dim`), or the overlapping windows of a stream
/// (`step = stride * channels`). `Copy`, borrows the data.
#[derive(Clone, Copy, Debug)]
pub struct WindowView<'a> {
    data: &'a [f32],
    dim: usize,
    step: usize,
    len: usize,
}

impl<'a> WindowView<'a> {
    /// Windows stored one after the other; `None` unless `dim > 0` divides `data.len()`.
    pub fn contiguous(data: &'a [f32], dim: usize) -> Option<Self> {
        (dim > 0 && data.len().is_multiple_of(dim)).then(|| WindowView {
            data,
            dim,
            step: dim,
            len: data.len() / dim,
        })
    }

    /// Values per window.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Window `i` (`i < len()`).
    pub fn get(&self, i: usize) -> &'a [f32] {
        let from = i * self.step;
        &self.data[from..from + self.dim]
    }

    /// Iterates over the windows.
    pub fn iter(self) -> impl ExactSizeIterator<Item = &'a [f32]> + Clone {
        (0..self.len).map(move |i| self.get(i))
    }
}

/// The row where [`split_tail`] splits `series`: training rows `..split`, validation rows
/// `split..`.
///
/// # Errors
/// As [`split_tail`].
pub fn split_row(series: &Series, fraction: f64, window: usize) -> Result<usize, InputError> {
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
    if val_rows.saturating_add(window) > rows {
        let message = if window > rows {
            format!(
                "window of {window} samples is longer than the data: {rows} rows cannot hold a \
                 training and a validation window"
            )
        } else if window.saturating_mul(2) > rows {
            format!(
                "{rows} rows cannot hold a training and a validation window of {window} samples \
                 each (at least {} rows are needed)",
                window.saturating_mul(2)
            )
        } else {
            // The largest fraction that leaves one training window, rounded down.
            let max = ((rows - window) as f64 / rows as f64 * 1e4).floor() / 1e4;
            format!(
                "validation fraction (--val-fraction) {fraction} holds out {val_rows} of the \
                 {rows} rows and leaves {} for training, fewer than one window of {window} \
                 samples; with this data and window it must be in (0, {max}]",
                rows - val_rows.min(rows)
            )
        };
        return Err(InputError::new(&series.path, None, None, message));
    }
    Ok(rows - val_rows)
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
    let split = split_row(series, fraction, window)?;
    Ok((
        series.slice_rows(0, split),
        series.slice_rows(split, series.rows()),
    ))
}

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
        assert_eq!(
            e.to_string(),
            "d.csv:2:2: label \"2\" is not 0 or 1 (the `label` column marks normal samples 0 \
             and anomalous ones 1)"
        );
        let e = parse("a,b,c,b\n1,2,3,4\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv:1:4: duplicate column name \"b\" (also column 2); column names must be unique"
        );
        for mode in [NonFinite::Reject, NonFinite::Keep] {
            let e = parse_csv_with(Path::new("d.csv"), b"a,b\n1,-1e39\n", mode).unwrap_err();
            assert_eq!(
                e.to_string(),
                "d.csv:2:2: field \"-1e39\" is out of the f32 range (finite values have |x| <= \
                 3.4028235e38)"
            );
        }
        let kept = parse_csv_with(Path::new("d.csv"), b"a,b\n1,-inf\n", NonFinite::Keep).unwrap();
        assert_eq!(kept.values[1], f32::NEG_INFINITY);
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
        assert_eq!(
            (0..w.len()).map(|i| w.start(i)).collect::<Vec<_>>(),
            [0, 2, 4]
        );
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
        let e = split_tail(&s, 0.95, 8).unwrap_err();
        assert_eq!(
            e.message,
            "validation fraction (--val-fraction) 0.95 holds out 95 of the 100 rows and leaves 5 \
             for training, fewer than one window of 8 samples; with this data and window it must \
             be in (0, 0.92]"
        );
        assert!(split_tail(&s, 0.92, 8).is_ok());
    }
}
