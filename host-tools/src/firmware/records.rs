//! Decoding the firmware's log: each defmt line (`LEVEL tag word key=value ...`) split into a
//! [`Record`] with typed access to decimal and hexadecimal (f32 bits) fields.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};

use super::qemu::RunOutput;

/// The words of a firmware log line after its level: a tag, positional words and `key=value`
/// pairs.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// First word (`window`, `fault`, `bench`, `size`, `stack`, `done`, ...).
    pub tag: String,
    /// Words without `=`, after the tag.
    pub words: Vec<String>,
    /// `key=value` pairs.
    pub fields: BTreeMap<String, String>,
}

/// Tags of the per-window lines of the `score` program (one per pass, see
/// `firmware/pipeline/src/run.rs`).
pub const WINDOW_TAGS: [&str; 4] = ["window", "sampled", "faulty", "dead"];

impl Record {
    /// Splits a decoded line (`LEVEL tag word key=value ...`).
    pub fn parse(line: &str) -> Record {
        let mut it = line.split_whitespace();
        let _level = it.next();
        let mut r = Record {
            tag: it.next().unwrap_or_default().to_string(),
            ..Record::default()
        };
        for w in it {
            match w.split_once('=') {
                Some((k, v)) => {
                    r.fields.insert(k.to_string(), v.to_string());
                }
                None => r.words.push(w.to_string()),
            }
        }
        r
    }

    /// The value of field `key`.
    fn field(&self, key: &str) -> Result<&String> {
        self.fields
            .get(key)
            .ok_or_else(|| anyhow!("`{}` line without `{key}=`", self.tag))
    }

    /// A decimal field.
    ///
    /// # Errors
    /// Missing or not a number.
    pub fn num(&self, key: &str) -> Result<u64> {
        let v = self.field(key)?;
        v.parse()
            .with_context(|| format!("`{}` line: `{key}={v}` is not a number", self.tag))
    }

    /// A hexadecimal `u32` field (f32 bits).
    ///
    /// # Errors
    /// Missing or not hexadecimal.
    pub fn hex(&self, key: &str) -> Result<u32> {
        let v = self.field(key)?;
        u32::from_str_radix(v.trim_start_matches("0x"), 16)
            .with_context(|| format!("`{}` line: `{key}={v}` is not hexadecimal", self.tag))
    }

    /// Whether this is a per-window line.
    pub fn is_window(&self) -> bool {
        WINDOW_TAGS.contains(&self.tag.as_str())
    }

    /// The line as printed, without the level (for messages).
    pub fn render(&self) -> String {
        let mut s = self.tag.clone();
        if let Some(w) = self.words.first() {
            s.push(' ');
            s.push_str(w);
        }
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }

    /// Describes the values that differ between two window lines (scores decoded).
    pub(super) fn diff(&self, other: &Record) -> String {
        let mut parts = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            self.fields.keys().chain(other.fields.keys()).collect();
        for k in keys {
            let (a, b) = (self.fields.get(k), other.fields.get(k));
            if a != b {
                let show = |v: Option<&String>| match v {
                    None => "(missing)".to_string(),
                    Some(v) => match (k.as_str(), u32::from_str_radix(v, 16)) {
                        ("score" | "recon" | "kl" | "level", Ok(bits)) => {
                            format!("{v} ({:e})", f32::from_bits(bits))
                        }
                        _ => v.clone(),
                    },
                };
                parts.push(format!("{k}: chip {} vs host {}", show(a), show(b)));
            }
        }
        parts.join(", ")
    }
}

/// The lines of a run as records.
pub(super) fn records(out: &RunOutput) -> Vec<Record> {
    out.lines.iter().map(|l| Record::parse(l)).collect()
}

/// Splits decoded lines into records (for tests).
#[cfg(test)]
pub(super) fn recs(lines: &[&str]) -> Vec<Record> {
    lines.iter().copied().map(Record::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields() {
        let r = Record::parse("INFO window 7 start=224 score=43b02666 level=none alarm=1");
        assert_eq!(r.tag, "window");
        assert_eq!(r.words, vec!["7".to_string()]);
        assert_eq!(r.num("start").unwrap(), 224);
        assert_eq!(r.hex("score").unwrap(), 0x43b0_2666);
        assert!(r.num("level").is_err(), "`none` is not a number");
        assert!(r.num("missing").is_err());
        assert!(r.is_window());
        assert!(!Record::parse("INFO done pass=window").is_window());
    }
}
