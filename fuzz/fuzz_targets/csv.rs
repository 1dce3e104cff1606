//! The sensor CSV reader of `train`, `eval` and `score` (`tinyvae_host_tools::data`), fed
//! arbitrary bytes in both non-finite modes, then the steps those commands take next
//! (normalization statistics, window cutting, the train/validation split).
//!
//! Checked: no panic; an error names the file and, when it has a line, a 1-based line; a parsed
//! series is consistent (values = rows x channels, labels one per row and 0/1, gaps ascending,
//! non-finite values only when kept), and its windows cut without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tinyvae_host_tools::data::{parse_csv_with, split_tail, NonFinite, Norm, Windows};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mode = if mode & 1 == 0 {
        NonFinite::Reject
    } else {
        NonFinite::Keep
    };
    let path = Path::new("fuzz.csv");
    let series = match parse_csv_with(path, bytes, mode) {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(e.path, path);
            assert!(e.line.is_none_or(|l| l >= 1), "{e}");
            assert!(e.column.is_none_or(|c| c >= 1), "{e}");
            assert!(!e.message.is_empty());
            return;
        }
    };
    let (rows, c) = (series.rows(), series.num_channels());
    assert!(rows >= 1 && c >= 1);
    assert_eq!(series.values.len(), rows * c);
    if let Some(l) = &series.labels {
        assert_eq!(l.len(), rows);
        assert!(l.iter().all(|&v| v <= 1));
    }
    assert!(series.gaps.windows(2).all(|g| g[0] < g[1]));
    assert!(series.gaps.iter().all(|&g| g < rows));
    if mode == NonFinite::Reject {
        assert!(series.values.iter().all(|v| v.is_finite()));
        assert!(series.gaps.is_empty());
    }
    let norm = Norm::fit(&series);
    assert_eq!(norm.channels(), c);
    let window = 1 + usize::from(mode == NonFinite::Keep) + rows % 3;
    if let Ok(w) = Windows::cut(&series, window, 1 + rows % 2, &norm) {
        // The standardized rows the windows use: the first window's start to the last one's end.
        assert_eq!(w.stream.len(), ((w.len() - 1) * w.stride + w.window) * c);
        assert!(w.stream.len() <= rows * c);
        for i in 0..w.len() {
            assert_eq!(w.get(i).len(), w.dim());
        }
    }
    let _ = split_tail(&series, 0.25, window);
});
