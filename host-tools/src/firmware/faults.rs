//! The test stream the firmware compiles in, rebuilt on the host: the stream slice it scores and
//! the same slice with the fault pass's logged injections (non-finite values, gaps, stuck
//! channels) applied, so the host can score exactly what the chip scored.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::cargo_build::firmware_dir;
use super::records::Record;

/// The test stream compiled into the firmware: `$TINYVAE_STREAM` (absolute or relative to
/// `firmware/`), else the bundled `data/watch_shoulder_pen/test.csv`.
pub fn stream_source() -> PathBuf {
    let dir = firmware_dir();
    match std::env::var_os("TINYVAE_STREAM").filter(|v| !v.is_empty()) {
        Some(p) => dir.join(p),
        None => dir.join("../data/watch_shoulder_pen/test.csv"),
    }
}

/// Writes the part of the stream the firmware compiled in (the header and the first `rows` data
/// rows of [`stream_source`]) to `out`, for scoring it on the host.
///
/// # Errors
/// I/O errors.
pub fn write_stream_slice(rows: usize, out: &Path) -> Result<()> {
    let src = stream_source();
    let text =
        std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut s = String::new();
    for l in lines.by_ref().take(rows + 1) {
        s.push_str(l);
        s.push('\n');
    }
    std::fs::write(out, s).with_context(|| format!("writing {}", out.display()))
}

/// Writes the first `rows` rows of `slice` (a CSV with a header) to `out` with the firmware's
/// injected faults (`inject` records) applied in order, as its fault pass applies them.
pub(super) fn write_fault_stream(
    slice: &Path,
    inject: &[&Record],
    rows: usize,
    out: &Path,
) -> Result<()> {
    let text =
        std::fs::read_to_string(slice).with_context(|| format!("reading {}", slice.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("empty stream slice")?;
    let channel_cols: Vec<usize> = header
        .split(',')
        .enumerate()
        .filter(|(_, n)| !n.trim().eq_ignore_ascii_case("label"))
        .map(|(i, _)| i)
        .collect();
    let clean: Vec<Vec<String>> = lines
        .take(rows)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let col = |r: &Record| -> Result<usize> {
        let c = usize::try_from(r.num("channel")?)?;
        channel_cols
            .get(c)
            .copied()
            .ok_or_else(|| anyhow!("inject: channel {c} is not in the stream"))
    };
    let mut s = format!("{header}\n");
    for (i, row) in clean.iter().enumerate() {
        let mut f = row.clone();
        for r in inject {
            let (from, to) = (r.num("from")?, r.num("to")?);
            if !(from..to).contains(&(i as u64)) {
                continue;
            }
            match r.fields.get("kind").map(String::as_str) {
                Some("value") => {
                    let v = f32::from_bits(r.hex("value")?);
                    let text = if v.is_nan() {
                        "nan".to_string()
                    } else {
                        format!("{v:e}")
                    };
                    if let Some(slot) = f.get_mut(col(r)?) {
                        *slot = text;
                    }
                }
                Some("gap") => {
                    for &c in &channel_cols {
                        if let Some(slot) = f.get_mut(c) {
                            slot.clear();
                        }
                    }
                }
                Some("stuck") => {
                    let c = col(r)?;
                    let from_row = usize::try_from(r.num("row")?)?;
                    let v = clean
                        .get(from_row)
                        .and_then(|row| row.get(c))
                        .ok_or_else(|| anyhow!("inject: row {from_row} is not in the stream"))?;
                    if let Some(slot) = f.get_mut(c) {
                        slot.clone_from(v);
                    }
                }
                k => bail!("inject: unknown kind {k:?}"),
            }
        }
        s.push_str(&f.join(","));
        s.push('\n');
    }
    std::fs::write(out, s).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::records::recs;

    #[test]
    fn fault_stream_applies_the_injections_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let slice = tmp.path().join("s.csv");
        std::fs::write(&slice, "a,b,label\n1,2,0\n3,4,0\n5,6,1\n7,8,1\n9,10,0\n").unwrap();
        let recs = recs(&[
            "INFO inject from=1 to=2 kind=value channel=1 value=7fc00000",
            "INFO inject from=2 to=3 kind=gap",
            "INFO inject from=3 to=5 kind=stuck channel=0 row=0",
            "INFO inject from=4 to=5 kind=value channel=1 value=ff800000",
        ]);
        let refs: Vec<&Record> = recs.iter().collect();
        let out = tmp.path().join("f.csv");
        write_fault_stream(&slice, &refs, 4, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "a,b,label\n1,2,0\n3,nan,0\n,,1\n1,8,1\n"
        );
        write_fault_stream(&slice, &refs, 5, &out).unwrap();
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .ends_with("1,-inf,0\n"));
        let bad = Record::parse("INFO inject from=0 to=1 kind=value channel=2 value=0");
        assert!(write_fault_stream(&slice, &[&bad], 5, &out).is_err());
    }
}
