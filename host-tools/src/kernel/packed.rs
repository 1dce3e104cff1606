//! [`PackedLayer`]: an int8 dense layer re-laid out once for one [`Int8Kernel`], computing
//! exactly what `tinyvae::QDenseView::forward` computes (same `acc`, same output stage).
//!
//! # Layout
//!
//! Outputs are cut into blocks of `R` rows (the lanes of one vector register) and inputs into
//! groups of `G` (what one lane multiplies and sums per instruction); missing rows and inputs
//! are zero weights. Blocks are taken in chunks of up to [`CHUNK`] (one accumulator register
//! each), and within a chunk the weights are stored group by group, block by block, `R x G`
//! bytes per (group, block), row-major inside: the kernel streams them in order.
//!
//! - [`Int8Kernel::Avx512Vnni`]: `R = 16`, `G = 4`. `vpdpbusd` multiplies unsigned by signed
//!   bytes, so the input goes in as `u = x + 128` (`x ^ 0x80`) and the bias absorbs the offset:
//!   `Σ w x = Σ w u - 128 Σ w`, `bias' = bias - 128 Σ_i w[o][i]` (wrapping, exact mod 2^32).
//! - [`Int8Kernel::Avx2`]: `R = 8`, `G = 2`, the input widened to i16 and each pair multiplied
//!   by `vpmaddwd` (`w0 x0 + w1 x1`, exact: at most `2 * 128^2`); the bias is unchanged.
//!
//! # Output stage
//!
//! When every row's shift is in `-31..=-2` (all real layers), the vector stage computes the
//! library's one-rounding requantization (`qkernel.rs`, `requantize_fast`): with
//! `A = acc m + 2^30` in i64 and `t = -shift - 2`, `H = floor((A - [A < 0] 2^31) / 2^32)` and
//! `v = (H + 2^t) >> (t + 1)`; then `v + zp` (no overflow: `|v| <= 2^30`), the clamp and the
//! table. Other layers take `tinyvae::requantize` per output, as the library does.

use anyhow::Result;
use tinyvae::{QDenseView, Requant};

use super::Int8Kernel;

/// The most blocks one pass over the inputs accumulates (one register each).
pub const CHUNK: usize = 8;

/// An int8 dense layer laid out for one kernel (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedLayer {
    pub(super) kernel: Int8Kernel,
    pub(super) in_dim: usize,
    pub(super) out_dim: usize,
    /// Inputs rounded up to whole groups.
    pub(super) groups: usize,
    /// Packed weights (module doc), or the row-major ones for [`Int8Kernel::Portable`].
    pub(super) weights: Vec<i8>,
    /// Per output, padded to whole blocks (with the `u8` offset folded in for VNNI).
    pub(super) bias: Vec<i32>,
    /// Multipliers, `2^t` and `t + 1` per output (padded), for the vector output stage.
    pub(super) mult: Vec<i32>,
    pub(super) round: Vec<i32>,
    pub(super) shift: Vec<i32>,
    /// Whether every shift is in `-31..=-2` (the vector output stage applies).
    pub(super) vector_requant: bool,
    /// The layer's own constants (scalar output stage, portable kernel).
    pub(super) orig_bias: Vec<i32>,
    pub(super) requant: Vec<Requant>,
    pub(super) zp: i32,
    pub(super) act: (i8, i8),
    pub(super) lut: Option<[i8; 256]>,
}

/// The buffers a [`PackedLayer`] widens or offsets its input into; grown on first use, then
/// reused (no allocation per call).
#[derive(Clone, Debug, Default)]
pub struct KernelScratch {
    pub(super) bytes: Vec<u8>,
    pub(super) words: Vec<i16>,
}

/// `(R, G)` of a kernel (module doc); `(1, 1)` for the portable one (not packed).
fn shape(kernel: Int8Kernel) -> (usize, usize) {
    match kernel {
        Int8Kernel::Portable => (1, 1),
        Int8Kernel::Avx2 => (8, 2),
        Int8Kernel::Avx512Vnni => (16, 4),
    }
}

impl PackedLayer {
    /// Lays out `view` for `kernel`.
    ///
    /// # Errors
    /// `kernel` cannot run on this CPU.
    pub fn new(view: &QDenseView<'_>, kernel: Int8Kernel) -> Result<Self> {
        if !kernel.supported() {
            anyhow::bail!("the {kernel} kernel cannot run on this CPU");
        }
        let (n, m) = (view.in_dim(), view.out_dim());
        let (r, g) = shape(kernel);
        let groups = n.div_ceil(g);
        let blocks = m.div_ceil(r);
        let w = view.weights();
        let at = |o: usize, i: usize| -> i8 {
            if o < m && i < n {
                w[o * n + i]
            } else {
                0
            }
        };
        let weights = if kernel == Int8Kernel::Portable {
            w.to_vec()
        } else {
            let mut p = Vec::with_capacity(blocks * r * groups * g);
            for c0 in (0..blocks).step_by(CHUNK) {
                let bc = CHUNK.min(blocks - c0);
                for k in 0..groups {
                    for b in c0..c0 + bc {
                        for row in b * r..(b + 1) * r {
                            p.extend((k * g..(k + 1) * g).map(|i| at(row, i)));
                        }
                    }
                }
            }
            p
        };
        let padded = blocks * r;
        let rq = view.requant();
        let mut bias = vec![0i32; padded];
        let (mut mult, mut round, mut shift) =
            (vec![0i32; padded], vec![1i32; padded], vec![1i32; padded]);
        for (o, (&b, q)) in view.bias().iter().zip(rq).enumerate() {
            bias[o] = if kernel == Int8Kernel::Avx512Vnni {
                let sum = w[o * n..(o + 1) * n]
                    .iter()
                    .fold(0i32, |s, &v| s.wrapping_add(i32::from(v)));
                b.wrapping_sub(sum.wrapping_mul(128))
            } else {
                b
            };
            let t = q.shift.wrapping_neg().wrapping_sub(2);
            mult[o] = q.multiplier;
            if (0..=29).contains(&t) {
                round[o] = 1 << t;
                shift[o] = t + 1;
            }
        }
        let vector_requant = rq.iter().all(|q| (-31..=-2).contains(&q.shift));
        Ok(Self {
            kernel,
            in_dim: n,
            out_dim: m,
            groups,
            weights,
            bias,
            mult,
            round,
            shift,
            vector_requant,
            orig_bias: view.bias().to_vec(),
            requant: rq.to_vec(),
            zp: view.output_zero_point(),
            act: view.act_range(),
            lut: view.lut().copied(),
        })
    }

    /// The kernel it was laid out for.
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    /// Inputs.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Outputs.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `y = layer(x)`, the bits of `QDenseView::forward`.
    ///
    /// # Errors
    /// `x` or `y` of the wrong length (nothing is written then).
    pub fn forward(
        &self,
        x: &[i8],
        y: &mut [i8],
        scratch: &mut KernelScratch,
    ) -> Result<(), tinyvae::Error> {
        for (want, got) in [(self.in_dim, x.len()), (self.out_dim, y.len())] {
            if want != got {
                return Err(tinyvae::Error::ShapeMismatch {
                    expected: want,
                    found: got,
                });
            }
        }
        match self.kernel {
            Int8Kernel::Portable => return self.portable_view()?.forward(x, y),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => super::x86::forward_avx2(self, x, y, scratch),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni => super::x86::forward_vnni(self, x, y, scratch),
            #[cfg(not(target_arch = "x86_64"))]
            _ => return self.portable_view()?.forward(x, y),
        }
        if let Some(t) = &self.lut {
            for v in y.iter_mut() {
                *v = t[usize::from(*v as u8 ^ 0x80)];
            }
        }
        let _ = scratch;
        Ok(())
    }

    /// The library's view of the layer's own constants.
    fn portable_view(&self) -> Result<QDenseView<'_>, tinyvae::Error> {
        QDenseView::new(
            self.in_dim,
            self.out_dim,
            &self.weights,
            &self.orig_bias,
            &self.requant,
            self.zp,
            self.act.0,
            self.act.1,
            self.lut.as_ref(),
        )
    }

    /// The scalar output stage of output `o` (before the table): the library's formula.
    #[inline]
    pub(super) fn out_scalar(&self, o: usize, acc: i32) -> i8 {
        let rq = self.requant[o];
        tinyvae::requantize(acc, rq)
            .saturating_add(self.zp)
            .max(i32::from(self.act.0))
            .min(i32::from(self.act.1)) as i8
    }
}
