//! The trained weights of a product-of-experts model ([`PoeParams`]): per-group experts and the
//! decoder in the shared training layout, and the per-group decoders cut out of it
//! ([`PoeParams::decoders`], [`PoeParams::set_decoders`]): decoder `d`'s hidden layer `i` is
//! rows `d h_i..(d + 1) h_i` and columns block `d` of the layer before; its output is the rows
//! of group `d`'s features, in sub-window order `t |M_d| + j`.

use super::super::params::Linear;
use super::{DecoderLayout, PoeArch};

/// One expert's trained weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpertParams {
    /// Hidden layers (ReLU).
    pub encoder: Vec<Linear>,
    /// Mean head.
    pub mu: Linear,
    /// Log-variance head.
    pub logvar: Linear,
}

/// A trained product-of-experts model.
#[derive(Clone, Debug, PartialEq)]
pub struct PoeParams {
    /// Its shape.
    pub arch: PoeArch,
    /// One per group.
    pub experts: Vec<ExpertParams>,
    /// Decoder hidden layers (ReLU), in the shared layout (per-group decoders: block-diagonal,
    /// see the module doc; [`PoeParams::decoders`] cuts them out).
    pub decoder: Vec<Linear>,
    /// Decoder output, in the shared layout (rows in feature order `t C + c`).
    pub decoder_out: Linear,
    /// Effective decoder log-variances (X values, clamped).
    pub decoder_logvar: Vec<f32>,
    /// Autoregressive noise fitted after training ([`super::noise`]); `None`: the trained
    /// diagonal noise (`decoder_logvar`).
    pub noise: Option<super::ArNoiseParams>,
}

/// One decoder's layers.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderParams {
    /// Hidden layers (ReLU).
    pub hidden: Vec<Linear>,
    /// Output layer: all X features (shared) or group g's sub-window `t |M_g| + j` (per group).
    pub out: Linear,
}

impl PoeParams {
    /// The rows of `decoder_out` (feature indices `t C + c`) of decoder `d`'s outputs, in its
    /// output order: every feature (shared), or group `d`'s sub-window order.
    fn decoder_rows(arch: &PoeArch, d: usize) -> Vec<usize> {
        let c = arch.channels;
        match arch.decoder {
            DecoderLayout::Shared => (0..arch.input()).collect(),
            DecoderLayout::PerGroup => (0..arch.window)
                .flat_map(|t| arch.groups[d].iter().map(move |&ch| t * c + ch))
                .collect(),
        }
    }

    /// The decoders: one (shared), or one per group (cut out of the block-diagonal layout).
    pub fn decoders(&self) -> Vec<DecoderParams> {
        let a = &self.arch;
        let n = a.decoder_count();
        (0..n)
            .map(|d| {
                let mut prev = (0..a.latent).collect::<Vec<_>>();
                let mut hidden = Vec::new();
                for (l, &w) in self.decoder.iter().zip(&a.decoder_hidden) {
                    let rows: Vec<usize> = (d * w..(d + 1) * w).collect();
                    hidden.push(sub_linear(l, &rows, &prev));
                    prev = rows;
                }
                DecoderParams {
                    hidden,
                    out: sub_linear(&self.decoder_out, &Self::decoder_rows(a, d), &prev),
                }
            })
            .collect()
    }

    /// The inverse of [`PoeParams::decoders`]: sets the decoder layers from `decoders` (zeros
    /// outside the blocks).
    ///
    /// # Errors
    /// A count or shape that does not match the architecture.
    pub fn set_decoders(&mut self, decoders: &[DecoderParams]) -> anyhow::Result<()> {
        let a = &self.arch;
        anyhow::ensure!(
            decoders.len() == a.decoder_count(),
            "{} decoders, the architecture has {}",
            decoders.len(),
            a.decoder_count()
        );
        let n = decoders.len();
        let mut layers: Vec<Linear> = Vec::new();
        let mut inp = a.latent;
        for &w in &a.decoder_hidden {
            layers.push(Linear::zeros(inp, w * n));
            inp = w * n;
        }
        let mut out = Linear::zeros(inp, a.input());
        for (d, dp) in decoders.iter().enumerate() {
            anyhow::ensure!(
                dp.hidden.len() == a.decoder_hidden.len(),
                "decoder {d}: {} hidden layers, expected {}",
                dp.hidden.len(),
                a.decoder_hidden.len()
            );
            let mut prev = (0..a.latent).collect::<Vec<_>>();
            for ((dst, src), &w) in layers.iter_mut().zip(&dp.hidden).zip(&a.decoder_hidden) {
                let rows: Vec<usize> = (d * w..(d + 1) * w).collect();
                put_linear(dst, src, &rows, &prev)?;
                prev = rows;
            }
            put_linear(&mut out, &dp.out, &Self::decoder_rows(a, d), &prev)?;
        }
        self.decoder = layers;
        self.decoder_out = out;
        Ok(())
    }
}

/// The sub-layer of `l` with output rows `rows` and inputs `cols`.
fn sub_linear(l: &Linear, rows: &[usize], cols: &[usize]) -> Linear {
    Linear {
        in_features: cols.len(),
        out_features: rows.len(),
        weight: rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| l.weight[r * l.in_features + c]))
            .collect(),
        bias: rows.iter().map(|&r| l.bias[r]).collect(),
    }
}

/// Writes `src` into `dst`'s output rows `rows` and inputs `cols` (the inverse of
/// [`sub_linear`]).
fn put_linear(
    dst: &mut Linear,
    src: &Linear,
    rows: &[usize],
    cols: &[usize],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        src.out_features == rows.len() && src.in_features == cols.len(),
        "decoder layer {}x{}, expected {}x{}",
        src.out_features,
        src.in_features,
        rows.len(),
        cols.len()
    );
    for (i, &r) in rows.iter().enumerate() {
        for (j, &c) in cols.iter().enumerate() {
            dst.weight[r * dst.in_features + c] = src.weight[i * src.in_features + j];
        }
        dst.bias[r] = src.bias[i];
    }
    Ok(())
}
