//! The dead-sensor pass of a multi-sensor model (`tinyvae export` of a `--group` checkpoint):
//! the first [`DEAD_ROWS`] rows of the compiled-in stream with whole sensor groups dead (every
//! channel of the group NaN) for stretches of rows, [`DEAD`]: group 0 dies, later group 1,
//! for a while both, and again each in the anomalous part of the stream (alarms with fewer
//! groups). Every window is scored with its healthy groups `S` (reported in
//! [`WindowReport::groups`]) and compared with `S`'s threshold (the model's per-subset shift);
//! a window with no healthy group is skipped. A single-group model has no such pass
//! ([`run_dead`] returns `None`): any NaN skips its window, which the fault pass covers.

use tinyvae::{Detector, Error, VaeModel, WindowReport, Workspace};

use crate::model::{Model, MODEL, SCORE};
use crate::run::{config, row, tally, ModelDetector, Pass, PassSummary};

/// Rows of the dead-sensor pass.
pub const DEAD_ROWS: usize = 2048;

/// `(from, to, group)`: every channel of `group` is NaN in rows `from..to`.
pub const DEAD: [(usize, usize, usize); 5] = [
    (160, 400, 0),
    (560, 800, 1),
    (700, 740, 0),
    (1500, 1700, 0),
    (1800, 1950, 1),
];

/// Runs the pass (see the module doc) with the exported score, calling `emit` for every window;
/// `None` for a model with fewer than two sensor groups.
///
/// # Errors
/// A library error other than a sensor fault.
#[inline(never)]
pub fn run_dead(emit: &mut dyn FnMut(Pass, &WindowReport)) -> Result<Option<PassSummary>, Error> {
    let groups = MODEL.groups();
    if groups.count() < 2 {
        return Ok(None);
    }
    let mut det: ModelDetector = Detector::new(config(SCORE)?, Workspace::new(Model::SCRATCH));
    let mut s = PassSummary::default();
    for i in 0..DEAD_ROWS.min(crate::stream::ROWS) {
        let mut x = row(i);
        for &(from, to, g) in &DEAD {
            if (from..to).contains(&i) {
                let mask = groups.channels(g);
                for (c, v) in x.iter_mut().enumerate() {
                    if mask.contains(c) {
                        *v = f32::NAN;
                    }
                }
            }
        }
        if let Some(r) = det.push(&MODEL, &x)? {
            tally(&mut s, &r);
            emit(Pass::Dead, &r);
        }
    }
    Ok(Some(s))
}
