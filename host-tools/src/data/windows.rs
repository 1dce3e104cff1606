//! Windows of a stream: their start rows and count ([`window_starts`], [`window_count`]), the
//! standardized windows of a stream ([`Windows`]) and a borrowed view of them ([`WindowView`]).
//!
//! # Windows
//! A window of `W` time steps starting at row `s` covers rows `s..s + W` (end exclusive) and is
//! flattened time-major: `x[t * C + c]` is channel `c` at time `s + t`. Starts are
//! `0, stride, 2 stride, ...` while `s + W <= rows`. A window is anomalous if any of its samples
//! is labeled 1.

use std::ops::Range;

use super::{InputError, Norm, Series};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_str as parse;

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
}
