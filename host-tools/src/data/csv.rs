//! The CSV reader: a streaming row reader ([`CsvRows`]) with a line-length limit and header
//! checks, the loaders that collect a whole stream ([`load_csv`], [`parse_csv`]) and the parsing
//! of channel fields.
//!
//! # CSV format
//! A header row, then one row per time step and one column per channel (`ax,ay,az,...`). A
//! column named `label` (any case) is optional: `0` marks a normal sample, `1` an anomalous one;
//! it is never used as a channel. Every other field must parse as a finite number. Blank lines
//! are skipped. A stream to be scored ([`load_csv_with`] and [`NonFinite::Keep`], what
//! `tinyvae score` reads) may also hold `nan`, `inf`, `-inf` or an empty field in a channel
//! column: a sensor fault the streaming detector reports (the windows holding it are skipped),
//! not an input error; a row whose channel fields are all empty is a dropped sample (a gap).
//! Errors name the file, the 1-based line and the 1-based column, e.g.
//! `data.csv:17:3: field "abc" is not a number`.
//!
//! It is kept as one file because it is one concept: the sensor CSV reader and its checks.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{InputError, Series};

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
        // Line by line (`memchr` finds each newline with SIMD): the current line grows by the
        // bytes before the next newline, and fails as soon as it is over the limit.
        let mut rest = buf.get(..n).unwrap_or(&[]);
        loop {
            let nl = memchr::memchr(b'\n', rest);
            self.len += nl.unwrap_or(rest.len());
            if self.len > MAX_LINE_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    LineTooLong { line: self.line },
                ));
            }
            let Some(p) = nl else { break };
            self.line += 1;
            self.len = 0;
            rest = rest.get(p + 1..).unwrap_or(&[]);
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
    /// The record as read (untrimmed); `record` is it with every field trimmed.
    raw: csv::StringRecord,
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
            // Fields are trimmed by `read_record` into a reused record: the csv crate's own
            // trimming (`Trim::All`) allocates two new records per row.
            .trim(csv::Trim::None)
            .from_reader(limited);
        let mut s = CsvRows {
            path: path.to_path_buf(),
            reader,
            raw: csv::StringRecord::new(),
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

    /// Reads the next record into `self.record`, every field trimmed of leading and trailing
    /// (Unicode) whitespace as `csv::Trim::All` would; `false` at the end.
    fn read_record(&mut self) -> Result<bool, InputError> {
        match self.reader.read_record(&mut self.raw) {
            Ok(more) => {
                self.record.clear();
                for f in &self.raw {
                    self.record.push_field(f.trim());
                }
                self.record.set_position(self.raw.position().cloned());
                Ok(more)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_str as parse;

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
}
