//! An expert's precision `exp(-logvar)`, as the product of experts ([`PoeVae`](crate::PoeVae))
//! consumes it: the expert's log-variance is clamped to [`LOGVAR_MIN`]..=[`LOGVAR_MAX`] (NaN to
//! the maximum) and exponentiated once ([`expert_precision`]).
//!
//! An int8 log-variance head produces one of 256 codes, so its precisions are a table of 256
//! values computed once, at export, by the same function ([`precision_table`]); the layer
//! [`PrecisionLut`] looks the codes up, and [`Precision`] is the f32 counterpart. Both give the
//! same bits as [`expert_precision`] of the dequantized (resp. f32) log-variance, on the host and
//! on the chip, without an `exp` per value at run time.

use crate::math::exp;
use crate::{dequantize, Layer, QParams, LOGVAR_MAX, LOGVAR_MIN};

/// `exp(-clamp(lv, LOGVAR_MIN, LOGVAR_MAX))`, a NaN `lv` taken as [`LOGVAR_MAX`]: an expert's
/// precision, between `exp(-16)` and `exp(16)`.
pub fn expert_precision(lv: f32) -> f32 {
    let cl = lv.clamp(LOGVAR_MIN, LOGVAR_MAX);
    let cl = if cl.is_nan() { LOGVAR_MAX } else { cl };
    exp(-cl)
}

/// The precision of every int8 log-variance code `q` (dequantized with `qp`), at index
/// `q + 128`: `expert_precision(dequantize(q, qp))`.
pub fn precision_table(qp: QParams) -> [f32; 256] {
    core::array::from_fn(|i| {
        let q = i8::try_from(i as i32 - 128).unwrap_or(0);
        expert_precision(dequantize(q, qp))
    })
}

/// The int8 log-variance codes to precisions by a 256-entry table ([`precision_table`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrecisionLut<'a, const N: usize> {
    /// `table[q + 128]` is the precision of code `q`.
    pub table: &'a [f32; 256],
}

impl<'a, const N: usize> PrecisionLut<'a, N> {
    /// A lookup layer; usable in `static` initialisers.
    pub const fn new(table: &'a [f32; 256]) -> Self {
        Self { table }
    }
}

impl<const N: usize> Layer<N, N> for PrecisionLut<'_, N> {
    type In = i8;
    type Out = f32;
    type Scratch = ();
    const SCRATCH: Self::Scratch = ();
    const MACS: usize = 0;

    #[inline]
    fn forward(&self, x: &[i8; N], y: &mut [f32; N], _scratch: &mut ()) {
        for (o, &q) in y.iter_mut().zip(x.iter()) {
            // `q as u8 ^ 0x80` is `q + 128` in 0..=255: always in the table.
            *o = self
                .table
                .get(usize::from(q as u8 ^ 0x80))
                .copied()
                .unwrap_or(0.0);
        }
    }
}

/// f32 log-variances to precisions ([`expert_precision`] of each value).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Precision<const N: usize>;

impl<const N: usize> Layer<N, N> for Precision<N> {
    type In = f32;
    type Out = f32;
    type Scratch = ();
    const SCRATCH: Self::Scratch = ();
    const MACS: usize = 0;

    #[inline]
    fn forward(&self, x: &[f32; N], y: &mut [f32; N], _scratch: &mut ()) {
        for (o, &lv) in y.iter_mut().zip(x.iter()) {
            *o = expert_precision(lv);
        }
    }
}
