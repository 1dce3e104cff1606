//! The int8 calibration: the value [`Ranges`] the f32 model produces at every layer boundary.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{lib, HostModel, Layers};

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
            input: (f32::INFINITY, f32::NEG_INFINITY),
            encoder: vec![(f32::INFINITY, f32::NEG_INFINITY); encoder.len()],
            mu: (f32::INFINITY, f32::NEG_INFINITY),
            logvar: (f32::INFINITY, f32::NEG_INFINITY),
            z: (f32::INFINITY, f32::NEG_INFINITY),
            decoder: vec![(f32::INFINITY, f32::NEG_INFINITY); decoder.len()],
            output: (f32::INFINITY, f32::NEG_INFINITY),
        };
        fn upd(r: &mut (f32, f32), v: &[f32]) {
            for &x in v {
                r.0 = r.0.min(x);
                r.1 = r.1.max(x);
            }
        }
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
            upd(&mut r.input, x);
            let mut cur = x.to_vec();
            for (l, rr) in encoder.iter().zip(r.encoder.iter_mut()) {
                let mut y = vec![0.0; l.out_dim];
                l.view().map_err(lib)?.forward(&cur, &mut y).map_err(lib)?;
                upd(rr, &y);
                cur = y;
            }
            let mut m = vec![0.0; self.latent];
            let mut lv = vec![0.0; self.latent];
            mu.view().map_err(lib)?.forward(&cur, &mut m).map_err(lib)?;
            logvar
                .view()
                .map_err(lib)?
                .forward(&cur, &mut lv)
                .map_err(lib)?;
            upd(&mut r.mu, &m);
            upd(&mut r.logvar, &lv);
            for (&mj, &lj) in m.iter().zip(&lv) {
                let s = 3.0
                    * tinyvae::math::exp(0.5 * lj.clamp(tinyvae::LOGVAR_MIN, tinyvae::LOGVAR_MAX));
                upd(&mut r.z, &[mj - s, mj + s]);
            }
            let mut cur = m;
            for (l, rr) in decoder.iter().zip(r.decoder.iter_mut()) {
                let mut y = vec![0.0; l.out_dim];
                l.view().map_err(lib)?.forward(&cur, &mut y).map_err(lib)?;
                upd(rr, &y);
                cur = y;
            }
            let mut y = vec![0.0; output.out_dim];
            output
                .view()
                .map_err(lib)?
                .forward(&cur, &mut y)
                .map_err(lib)?;
            upd(&mut r.output, &y);
        }
        if n == 0 {
            bail!("no calibration windows");
        }
        Ok(r)
    }
}
