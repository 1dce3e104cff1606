//! The Armv7-M (Cortex-M3) kernel of a layer, chosen by its width and output stage: the narrow
//! packed kernel (`armv7m_narrow.rs`: 1.625 instructions per MAC, about 21.5 per row and 21 per
//! group of four inputs to pack them) for 8..=128 inputs in whole groups of four when the
//! output stage is `finish`'s (every layer the exporters write but ReLU6 and tables); else the
//! general packed kernel (`armv7m_packed.rs`, the same arithmetic, about 34 more per row for
//! its two-row blocks and chunks) from [`PACKED_MIN`] inputs on, and the five-row
//! `LDRSB`/`MLA` kernel (`armv7m.rs`, 2.05 per MAC) below, where its cheaper rows win. All
//! compute the same bits (the portable reference's), so the choice changes only the
//! instruction count.

use super::{armv7m, armv7m_narrow, armv7m_packed};
use crate::Requant;
use core::mem::MaybeUninit;

/// Fewest inputs for the general packed kernel. Measured (`tinyvae firmware bench --core m3`): at 96
/// and 64 inputs the two kernels cost about the same, at 8 the packed one costs twice as much,
/// at 128 and more it is cheaper.
pub(crate) const PACKED_MIN: usize = 100;

/// Whether a layer of `n` inputs takes the narrow packed kernel (`armv7m_narrow.rs`): one
/// chunk of 2..=[`armv7m_narrow::MAX_GROUPS`] whole groups of four inputs.
fn narrow(n: usize) -> bool {
    n.is_multiple_of(4) && (8..=4 * armv7m_narrow::MAX_GROUPS).contains(&n)
}

/// The prepared input of either kernel.
pub(crate) enum Input<'a> {
    /// For [`armv7m_packed`].
    Packed(armv7m_packed::Input<'a>),
    /// For [`armv7m`].
    Rows(armv7m::Input<'a>),
}

/// Prepares `x` for the kernel its width (and, for the narrow kernel, `fused`: whether the
/// output stage is `finish`'s) picks; `None` (use another kernel) where that one declines.
pub(crate) fn prepare<'a>(
    x: &[i8],
    scratch: &'a mut [MaybeUninit<i32>],
    fused: impl FnOnce() -> bool,
) -> Option<Input<'a>> {
    if narrow(x.len()) && fused() {
        armv7m_narrow::prepare(x, scratch).map(Input::Packed)
    } else if x.len() >= PACKED_MIN {
        armv7m_packed::prepare(x, scratch).map(Input::Packed)
    } else {
        armv7m::prepare(x, scratch).map(Input::Rows)
    }
}

/// The layer on the prepared input's kernel (see `armv7m::layer`, `armv7m_packed::layer`).
pub(crate) fn layer(
    inp: &Input<'_>,
    l: super::Layer<'_, '_>,
    slow: impl Fn(i32, Requant) -> i8,
) -> usize {
    match inp {
        Input::Packed(p) if narrow(p.n) => armv7m_narrow::layer(p, l, slow),
        Input::Packed(p) => armv7m_packed::layer(p, l, slow),
        Input::Rows(r) => armv7m::layer(r, l, slow),
    }
}
