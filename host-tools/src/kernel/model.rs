//! [`PackedModel`]: the int8 layers of a [`HostModel`](crate::model::HostModel) packed once at
//! load for the SIMD kernel of this CPU, with the encode and decode passes the host model runs
//! through them: the same quantize/dequantize boundaries (the library's `dequantize_slice`
//! and a vectorized twin of its `quantize_slice`, `quantize.rs`), the same layer order, the same bits as the library's kernels; only the
//! int8 layers run on [`PackedLayer`], and the intermediate buffers are reused (no allocation per
//! window).

use anyhow::{Context, Result};
use tinyvae::{Error, QParams};

use super::{Int8Kernel, KernelScratch, PackedLayer};
use crate::model::QLayer;

/// The packed int8 layers of a host model and its quantization boundaries.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedModel {
    input_q: QParams,
    encoder: Vec<PackedLayer>,
    mu: PackedLayer,
    mu_q: QParams,
    logvar: PackedLayer,
    logvar_q: QParams,
    z_q: QParams,
    /// Decoder hidden layers, then the output layer.
    decoder: Vec<PackedLayer>,
    output_q: QParams,
    width: usize,
}

/// Buffers of [`PackedModel`]'s passes (grown once, then reused).
#[derive(Clone, Debug, Default)]
pub struct PackedScratch {
    a: Vec<i8>,
    b: Vec<i8>,
    q: Vec<i8>,
    kernel: KernelScratch,
}

impl PackedModel {
    /// Packs the layers of an int8 host model for `kernel`.
    ///
    /// # Errors
    /// `kernel` cannot run here, or a layer's constants do not form a valid view.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kernel: Int8Kernel,
        input_q: QParams,
        encoder: &[QLayer],
        mu: &QLayer,
        logvar: &QLayer,
        z_q: QParams,
        decoder: &[QLayer],
        output: &QLayer,
    ) -> Result<Self> {
        let pack = |l: &QLayer| -> Result<PackedLayer> {
            let v = tinyvae::QDenseView::new(
                l.in_dim,
                l.out_dim,
                &l.weights,
                &l.bias,
                &l.requant,
                l.output_q.zero_point,
                l.act_min,
                l.act_max,
                None,
            )
            .map_err(|e| anyhow::anyhow!("tinyvae: {e}"))?;
            PackedLayer::new(&v, kernel)
        };
        let width = encoder
            .iter()
            .chain([mu, logvar])
            .chain(decoder)
            .chain([output])
            .flat_map(|l| [l.in_dim, l.out_dim])
            .max()
            .unwrap_or(0);
        let packed = || -> Result<Self> {
            Ok(Self {
                input_q,
                encoder: encoder.iter().map(pack).collect::<Result<_>>()?,
                mu: pack(mu)?,
                mu_q: mu.output_q,
                logvar: pack(logvar)?,
                logvar_q: logvar.output_q,
                z_q,
                decoder: decoder
                    .iter()
                    .chain([output])
                    .map(pack)
                    .collect::<Result<_>>()?,
                output_q: output.output_q,
                width,
            })
        };
        packed().context("packing the int8 layers")
    }

    /// The kernel the layers are packed for.
    pub fn kernel(&self) -> Int8Kernel {
        self.mu.kernel()
    }

    /// `quantize(x)` → encoder → heads → `dequantize` into `mu`, `logvar`: the bits of the host
    /// model's int8 encode.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        s: &mut PackedScratch,
    ) -> Result<(), Error> {
        s.grow(self.width);
        let q_in = s.a.get_mut(..x.len()).ok_or(Error::ShapeMismatch {
            expected: self.width,
            found: x.len(),
        })?;
        super::quantize_slice(self.kernel(), x, self.input_q, q_in)?;
        let (h, _) = run(&self.encoder, x.len(), &mut s.a, &mut s.b, &mut s.kernel)?;
        let q = &mut s.q[..self.mu.out_dim()];
        self.mu.forward(h, q, &mut s.kernel)?;
        tinyvae::dequantize_slice(q, self.mu_q, mu)?;
        let q = &mut s.q[..self.logvar.out_dim()];
        self.logvar.forward(h, q, &mut s.kernel)?;
        tinyvae::dequantize_slice(q, self.logvar_q, logvar)
    }

    /// `quantize(z)` → decoder → `dequantize` into `mean`: the bits of the host model's int8
    /// decode.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn decode(&self, z: &[f32], mean: &mut [f32], s: &mut PackedScratch) -> Result<(), Error> {
        s.grow(self.width);
        let q_in = s.a.get_mut(..z.len()).ok_or(Error::ShapeMismatch {
            expected: self.width,
            found: z.len(),
        })?;
        super::quantize_slice(self.kernel(), z, self.z_q, q_in)?;
        let (out, _) = run(&self.decoder, z.len(), &mut s.a, &mut s.b, &mut s.kernel)?;
        tinyvae::dequantize_slice(out, self.output_q, mean)
    }
}

impl PackedScratch {
    fn grow(&mut self, width: usize) {
        for v in [&mut self.a, &mut self.b, &mut self.q] {
            if v.len() < width {
                v.resize(width, 0);
            }
        }
    }
}

/// Runs `layers` from `a[..n]`, alternating between `a` and `b`; returns the last output (or
/// the input, for no layers) and its width.
fn run<'s>(
    layers: &[PackedLayer],
    n: usize,
    a: &'s mut [i8],
    b: &'s mut [i8],
    k: &mut KernelScratch,
) -> Result<(&'s [i8], usize), Error> {
    let (mut src, mut dst) = (a, b);
    let mut width = n;
    for l in layers {
        let x = src.get(..width).ok_or(Error::ShapeMismatch {
            expected: l.in_dim(),
            found: src.len(),
        })?;
        let o = l.out_dim();
        let y = dst.get_mut(..o).ok_or(Error::ShapeMismatch {
            expected: o,
            found: 0,
        })?;
        l.forward(x, y, k)?;
        std::mem::swap(&mut src, &mut dst);
        width = o;
    }
    Ok((&src[..width], width))
}

/// The [`PackedModel`] of a host model's layers for the active kernel
/// ([`Int8Kernel::active`]): `None` for f32 layers and for the portable kernel (the library's
/// own path then runs, unchanged).
///
/// # Errors
/// A bad `TINYVAE_KERNEL`, or a layer that does not pack.
pub fn pack_layers(layers: &crate::model::Layers) -> Result<Option<PackedModel>> {
    pack_layers_for(layers, Int8Kernel::active()?)
}

/// [`pack_layers`] for a given kernel (benchmarks and tests compare them in one process).
///
/// # Errors
/// `kernel` cannot run here, or a layer does not pack.
pub fn pack_layers_for(
    layers: &crate::model::Layers,
    kernel: Int8Kernel,
) -> Result<Option<PackedModel>> {
    let crate::model::Layers::Int8 {
        input_q,
        encoder,
        mu,
        logvar,
        z_q,
        decoder,
        output,
    } = layers
    else {
        return Ok(None);
    };
    if kernel == Int8Kernel::Portable {
        return Ok(None);
    }
    PackedModel::new(kernel, *input_q, encoder, mu, logvar, *z_q, decoder, output).map(Some)
}
