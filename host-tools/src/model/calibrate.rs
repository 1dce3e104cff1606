//! The int8 calibration: the value [`Ranges`] the f32 model produces at every layer boundary.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{lib, FloatLayer, HostModel, Layers};

/// An empty range: the first value widened into it becomes both ends.
pub(crate) const EMPTY: (f32, f32) = (f32::INFINITY, f32::NEG_INFINITY);

/// Widens `r` to hold every value of `v`.
pub(crate) fn widen(r: &mut (f32, f32), v: &[f32]) {
    for &x in v {
        r.0 = r.0.min(x);
        r.1 = r.1.max(x);
    }
}

/// Runs the f32 `layers` on `x`, widening `ranges[i]` with layer i's outputs; returns the last
/// output (`x` itself without layers).
pub(crate) fn track(
    layers: &[FloatLayer],
    ranges: &mut [(f32, f32)],
    x: Vec<f32>,
) -> Result<Vec<f32>> {
    let mut cur = x;
    for (l, rr) in layers.iter().zip(ranges.iter_mut()) {
        let mut y = vec![0.0; l.out_dim];
        l.view().map_err(lib)?.forward(&cur, &mut y).map_err(lib)?;
        widen(rr, &y);
        cur = y;
    }
    Ok(cur)
}

/// The decoder's ranges for one latent `z`: its hidden layers into `hidden`, the output layer
/// into `output`.
pub(crate) fn track_decoder(
    decoder: &[FloatLayer],
    out_layer: &FloatLayer,
    hidden: &mut [(f32, f32)],
    output: &mut (f32, f32),
    z: Vec<f32>,
) -> Result<()> {
    let cur = track(decoder, hidden, z)?;
    track(
        std::slice::from_ref(out_layer),
        std::slice::from_mut(output),
        cur,
    )?;
    Ok(())
}

/// Observed value ranges `(min, max)` at each layer boundary of the f32 model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    /// Standardized input.
    pub input: (f32, f32),
    /// Each encoder hidden layer (after ReLU).
    pub encoder: Vec<(f32, f32)>,
    /// The `mu` head.
    pub mu: (f32, f32),
    /// The `logvar` head.
    pub logvar: (f32, f32),
    /// Decoder input `z`: `mu ± 3 exp(logvar / 2)`.
    pub z: (f32, f32),
    /// Each decoder hidden layer (after ReLU).
    pub decoder: Vec<(f32, f32)>,
    /// Decoder output (the mean).
    pub output: (f32, f32),
}

impl HostModel {
    /// Runs the f32 model over `windows` (each `input` values) and records the value range at
    /// every layer boundary (the int8 calibration).
    ///
    /// # Errors
    /// If `self` is not the f32 model, or a window has the wrong length.
    pub fn calibrate<'a>(&self, windows: impl Iterator<Item = &'a [f32]>) -> Result<Ranges> {
        let Layers::Float {
            encoder,
            mu,
            logvar,
            decoder,
            output,
        } = &self.layers
        else {
            bail!("calibration needs the f32 model");
        };
        let mut r = Ranges {
            input: EMPTY,
            encoder: vec![EMPTY; encoder.len()],
            mu: EMPTY,
            logvar: EMPTY,
            z: EMPTY,
            decoder: vec![EMPTY; decoder.len()],
            output: EMPTY,
        };
        let mut n = 0usize;
        for x in windows {
            if x.len() != self.input {
                bail!(
                    "window of {} values, the model takes {}",
                    x.len(),
                    self.input
                );
            }
            n += 1;
            widen(&mut r.input, x);
            let cur = track(encoder, &mut r.encoder, x.to_vec())?;
            let mut m = vec![0.0; self.latent];
            let mut lv = vec![0.0; self.latent];
            mu.view().map_err(lib)?.forward(&cur, &mut m).map_err(lib)?;
            logvar
                .view()
                .map_err(lib)?
                .forward(&cur, &mut lv)
                .map_err(lib)?;
            widen(&mut r.mu, &m);
            widen(&mut r.logvar, &lv);
            for (&mj, &lj) in m.iter().zip(&lv) {
                let s = 3.0
                    * tinyvae::math::exp(0.5 * lj.clamp(tinyvae::LOGVAR_MIN, tinyvae::LOGVAR_MAX));
                widen(&mut r.z, &[mj - s, mj + s]);
            }
            track_decoder(decoder, output, &mut r.decoder, &mut r.output, m)?;
        }
        if n == 0 {
            bail!("no calibration windows");
        }
        Ok(r)
    }
}
