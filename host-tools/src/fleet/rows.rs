//! A stream of Arrow record batches, sorted by `(device, t)`, read as one [`RowSource`] per
//! device: what feeds the library's detector in a fleet task, one sample at a time, so a task
//! holds one batch and one window, however long the device's history.
//!
//! `t` is the sample index: consecutive samples of a device have consecutive `t`; a missing
//! index is a dropped sample (one [`tinyvae::StreamDetector::mark_gap`] each, as an empty CSV
//! row is for `tinyvae score`). A null channel value is a non-finite sample (NaN); a row whose
//! channels are all null is a dropped sample too. Rows are counted from the device's first `t`
//! (window `start`/`end` are offsets from it, as rows of a CSV stream are). A `t` that repeats
//! or goes back is an error naming the device and the value.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float32Type, UInt64Type, UInt8Type};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::stream::RowSource;

/// The columns the scorer reads, cast to their working types.
struct Cols {
    device: datafusion::arrow::array::StringArray,
    t: datafusion::arrow::array::UInt64Array,
    ch: Vec<datafusion::arrow::array::Float32Array>,
    label: Option<datafusion::arrow::array::UInt8Array>,
}

impl Cols {
    fn of(batch: &RecordBatch, channels: &[String]) -> Result<Self> {
        let col = |name: &str, ty: &DataType| -> Result<std::sync::Arc<dyn Array>> {
            let c = batch
                .column_by_name(name)
                .with_context(|| format!("archive: no column {name:?}"))?;
            cast(c, ty).map_err(|e| anyhow!("archive: column {name:?}: {e}"))
        };
        let device = col("device", &DataType::Utf8)?.as_string::<i32>().clone();
        let t = col("t", &DataType::UInt64)?
            .as_primitive::<UInt64Type>()
            .clone();
        if t.null_count() > 0 {
            bail!("archive: column \"t\" has null values");
        }
        let ch = channels
            .iter()
            .map(|c| {
                Ok(col(c, &DataType::Float32)?
                    .as_primitive::<Float32Type>()
                    .clone())
            })
            .collect::<Result<Vec<_>>>()?;
        let label = match batch.column_by_name("label") {
            Some(_) => Some(
                col("label", &DataType::UInt8)?
                    .as_primitive::<UInt8Type>()
                    .clone(),
            ),
            None => None,
        };
        Ok(Self {
            device,
            t,
            ch,
            label,
        })
    }
}

/// The batches of one task, sorted by `(device, t)`.
pub struct Batches {
    input: SendableRecordBatchStream,
    channels: Vec<String>,
    cur: Option<Cols>,
    pos: usize,
    last: Option<String>,
    /// Whether the input has a `label` column.
    pub has_labels: bool,
}

impl Batches {
    /// Reads `input` (blocking on it: call from a blocking thread), picking `channels` out.
    pub fn new(input: SendableRecordBatchStream, channels: &[String]) -> Self {
        let has_labels = input.schema().column_with_name("label").is_some();
        Self {
            input,
            channels: channels.to_vec(),
            cur: None,
            pos: 0,
            last: None,
            has_labels,
        }
    }

    /// Makes the current row valid; `false` at the end of the input.
    fn fill(&mut self) -> Result<bool> {
        loop {
            if let Some(c) = &self.cur {
                if self.pos < c.t.len() {
                    return Ok(true);
                }
            }
            match futures::executor::block_on(self.input.next()) {
                None => {
                    self.cur = None;
                    return Ok(false);
                }
                Some(b) => {
                    let b = b.map_err(|e| anyhow!("archive: {e}"))?;
                    self.cur = Some(Cols::of(&b, &self.channels)?);
                    self.pos = 0;
                }
            }
        }
    }

    /// The device of the next row, `None` at the end.
    ///
    /// # Errors
    /// A failed read or a column that is missing or of the wrong type.
    pub fn next_device(&mut self) -> Result<Option<String>> {
        if !self.fill()? {
            return Ok(None);
        }
        let Some(device) = self
            .cur
            .as_ref()
            .map(|c| c.device.value(self.pos).to_string())
        else {
            return Ok(None);
        };
        // Devices come in increasing name order, each once: a device that comes back would be
        // scored twice from two fresh detectors.
        if let Some(prev) = &self.last {
            if device.as_str() <= prev.as_str() {
                bail!(
                    "archive: device {device} comes after device {prev} in a task: a task's \
                     rows must be sorted by (device, t)"
                );
            }
        }
        self.last = Some(device.clone());
        Ok(Some(device))
    }

    /// The rows of `device`, from the current row to the last of that device.
    pub fn device<'a>(&'a mut self, device: String, window: usize) -> DeviceRows<'a> {
        DeviceRows {
            path: PathBuf::from(format!("device {device}")),
            batches: self,
            device,
            expect: None,
            index: 0,
            ones: VecDeque::new(),
            keep: window.saturating_mul(2),
        }
    }
}

/// One device's rows in `t` order, as the detector's [`RowSource`].
pub struct DeviceRows<'a> {
    batches: &'a mut Batches,
    device: String,
    path: PathBuf,
    expect: Option<u64>,
    index: u64,
    ones: VecDeque<u64>,
    keep: usize,
}

impl DeviceRows<'_> {
    /// Whether a row in `start..end` (row offsets) is labeled 1 (for the window just reported).
    pub fn any_label(&self, start: u64, end: u64) -> bool {
        self.ones.iter().any(|r| (start..end).contains(r))
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.device
    }
}

impl RowSource for DeviceRows<'_> {
    fn path(&self) -> &Path {
        &self.path
    }
    fn channels(&self) -> usize {
        self.batches.channels.len()
    }
    fn next_row(&mut self, sample: &mut [f32]) -> Result<Option<bool>> {
        if !self.batches.fill()? {
            return Ok(None);
        }
        let pos = self.batches.pos;
        let Some(c) = self.batches.cur.as_ref() else {
            return Ok(None);
        };
        if c.device.value(pos) != self.device {
            return Ok(None);
        }
        let t = c.t.value(pos);
        if let Some(e) = self.expect {
            if t < e {
                bail!(
                    "archive: device {}: t = {t} repeats or goes back (after t = {}); t must \
                     increase within a device",
                    self.device,
                    e - 1
                );
            }
            if t > e {
                // A dropped sample: the detector hears of it before the next row.
                self.expect = Some(e + 1);
                self.index += 1;
                return Ok(Some(true));
            }
        }
        self.expect = Some(t + 1);
        let i = self.index;
        self.index += 1;
        self.batches.pos += 1;
        if let Some(l) = &c.label {
            if l.is_valid(pos) && l.value(pos) == 1 {
                self.ones.push_back(i);
            }
        }
        while self
            .ones
            .front()
            .is_some_and(|&r| r + self.keep as u64 <= i)
        {
            self.ones.pop_front();
        }
        let mut all_null = true;
        for (s, a) in sample.iter_mut().zip(&c.ch) {
            if a.is_valid(pos) {
                all_null = false;
                *s = a.value(pos);
            } else {
                *s = f32::NAN;
            }
        }
        Ok(Some(all_null))
    }
}
