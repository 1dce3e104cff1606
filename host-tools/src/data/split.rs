//! The train/validation split of a training stream by time.
//!
//! # Validation split
//! [`split_tail`] holds out the last `fraction` of the rows of a training stream, by time: the
//! training windows lie entirely before the split row, the validation windows entirely after
//! it, so no sample is shared (no leakage through overlapping windows).

use super::{InputError, Series};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_str as parse;

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
