//! The fleet's window table: one row per window of a device, the columns of `tinyvae score`
//! with the same names and meaning, after `device`:
//!
//! | column | type | CSV of `tinyvae score` |
//! |---|---|---|
//! | `device` | Utf8 | (the device) |
//! | `window`, `start`, `end` | UInt64 | window index, first row, row past the last |
//! | `score` | Float32, null when skipped | the score (empty when skipped) |
//! | `alarm` | Boolean | `1` / `0` |
//! | `label` (if the archive has one) | Boolean | `1` when a row of the window is labeled 1 |
//! | `level` | Float32, null when not updated | the alarm level |
//! | `event` | Utf8, null when none | `raised` / `cleared` |
//! | `faults` | Utf8, null when none | `nonfinite:ax;gap` ... |
//! | `top_channel` | Utf8, null when not scored | the channel of the largest reconstruction term |
//!
//! A null cell is an empty CSV cell; scores and levels are the same `f32` bits.

use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, RecordBatch, StringBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::stream::WindowRow;

/// The window table's schema (with a `label` column when `labels`).
pub fn window_schema(labels: bool) -> SchemaRef {
    let mut f = vec![
        Field::new("device", DataType::Utf8, false),
        Field::new("window", DataType::UInt64, false),
        Field::new("start", DataType::UInt64, false),
        Field::new("end", DataType::UInt64, false),
        Field::new("score", DataType::Float32, true),
        Field::new("alarm", DataType::Boolean, false),
    ];
    if labels {
        f.push(Field::new("label", DataType::Boolean, false));
    }
    f.extend([
        Field::new("level", DataType::Float32, true),
        Field::new("event", DataType::Utf8, true),
        Field::new("faults", DataType::Utf8, true),
        Field::new("top_channel", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(f))
}

/// Builds window-table batches row by row.
pub struct WindowBatch {
    schema: SchemaRef,
    device: StringBuilder,
    window: UInt64Builder,
    start: UInt64Builder,
    end: UInt64Builder,
    score: Float32Builder,
    alarm: BooleanBuilder,
    label: Option<BooleanBuilder>,
    level: Float32Builder,
    event: StringBuilder,
    faults: StringBuilder,
    top: StringBuilder,
    len: usize,
}

impl WindowBatch {
    /// An empty batch (with a `label` column when `labels`).
    pub fn new(labels: bool) -> Self {
        Self {
            schema: window_schema(labels),
            device: StringBuilder::new(),
            window: UInt64Builder::new(),
            start: UInt64Builder::new(),
            end: UInt64Builder::new(),
            score: Float32Builder::new(),
            alarm: BooleanBuilder::new(),
            label: labels.then(BooleanBuilder::new),
            level: Float32Builder::new(),
            event: StringBuilder::new(),
            faults: StringBuilder::new(),
            top: StringBuilder::new(),
            len: 0,
        }
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `row` of `device` (`label`: whether a row of the window is labeled 1).
    pub fn push(
        &mut self,
        device: &str,
        row: &WindowRow,
        label: Option<bool>,
        channels: &[String],
    ) {
        let r = &row.report;
        self.device.append_value(device);
        self.window.append_value(r.window);
        self.start.append_value(r.start);
        self.end.append_value(r.end);
        self.score.append_option(r.score.map(|s| s.score));
        self.alarm.append_value(r.alarm);
        if let Some(b) = self.label.as_mut() {
            b.append_value(label.unwrap_or(false));
        }
        self.level.append_option(r.level);
        self.event.append_option(match r.event {
            None => None,
            Some(tinyvae::AlarmEvent::AlarmRaised { .. }) => Some("raised"),
            Some(tinyvae::AlarmEvent::AlarmCleared { .. }) => Some("cleared"),
        });
        let faults = row.faults_text(channels);
        self.faults
            .append_option((!faults.is_empty()).then_some(faults));
        self.top.append_option(
            row.top_channel
                .and_then(|c| channels.get(c))
                .map(String::as_str),
        );
        self.len += 1;
    }

    /// The rows as a batch; the builder is empty again.
    ///
    /// # Errors
    /// None in practice (the columns have equal lengths by construction).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.device.finish()),
            Arc::new(self.window.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.alarm.finish()),
        ];
        if let Some(b) = self.label.as_mut() {
            cols.push(Arc::new(b.finish()));
        }
        cols.extend([
            Arc::new(self.level.finish()) as ArrayRef,
            Arc::new(self.event.finish()),
            Arc::new(self.faults.finish()),
            Arc::new(self.top.finish()),
        ]);
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}
