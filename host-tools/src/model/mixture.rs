//! A mixture of expert VAEs on the host ([`HostMoe`]): the gate ([`HostGate`], the library's
//! [`SummaryGate`] on owned weights) and K [`HostModel`] experts of one architecture, f32 or
//! int8.
//!
//! A mixture is run as a [`HostModel`] whose `moe` is set ([`HostModel::mixture`]): `encode`
//! routes the window through the gate (the library's code, so the chip picks the same expert
//! with the same `ln pi_k`), records the route in the scratch and runs that expert; `decode` and
//! the decoder noise are the routed expert's, and [`tinyvae::score`] adds `ln pi_k` (see the
//! library's `moe_vae` module). So every host path that scores a [`HostModel`] (windows, the
//! streaming detector, calibration, evaluation) scores a mixture top-1, as the chip does;
//! [`HostMoe::dense_scores`] evaluates every expert (the log-sum-exp reference).

use anyhow::{bail, Result};
use tinyvae::{DecoderNoise, Error, Route, ScoreKind, SummaryGate, VaeModel, MAX_EXPERTS};

use super::{HostModel, HostScratch};

/// The gate's weights (see [`SummaryGate`]): `K x 2C` row-major, `K` biases, `C` channels.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostGate {
    /// Row `k`: weights of the per-channel means, then of the per-channel mean squares.
    pub weight: Vec<f32>,
    /// One bias per expert.
    pub bias: Vec<f32>,
    /// Channels of the window.
    pub channels: usize,
}

impl HostGate {
    /// The library's gate on these weights.
    pub fn view(&self) -> SummaryGate<'_> {
        SummaryGate::new(&self.weight, &self.bias, self.channels)
    }

    /// Number of experts.
    pub fn experts(&self) -> usize {
        self.bias.len()
    }

    /// Multiply-adds of one routing: the summary (`2 X`) and the logits (`2 C K`).
    pub fn macs(&self, input: usize) -> usize {
        2 * input + self.weight.len()
    }
}

/// The gate and the experts of a mixture (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct HostMoe {
    /// The gate.
    pub gate: HostGate,
    /// The experts, in the gate's order (single VAEs, same shapes).
    pub experts: Vec<HostModel>,
}

impl HostMoe {
    pub(super) fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        logvar: &mut [f32],
        s: &mut HostScratch,
    ) -> Result<(), Error> {
        let r = self.gate.view().route(x)?;
        s.route = r;
        self.expert(r)?.encode(x, mu, logvar, s)
    }

    pub(super) fn decode(
        &self,
        z: &[f32],
        mean: &mut [f32],
        s: &mut HostScratch,
    ) -> Result<(), Error> {
        self.expert(s.route)?.decode(z, mean, s)
    }

    pub(super) fn noise(&self, r: Route) -> Option<DecoderNoise<'_>> {
        self.experts.get(usize::from(r.expert)).map(VaeModel::noise)
    }

    fn expert(&self, r: Route) -> Result<&HostModel, Error> {
        self.experts
            .get(usize::from(r.expert))
            .ok_or(Error::InvalidModel)
    }

    /// Bytes of all experts' parameters (see [`HostModel::param_bytes`]) plus the gate's f32
    /// weights and biases.
    pub fn param_bytes(&self) -> usize {
        self.experts
            .iter()
            .map(HostModel::param_bytes)
            .sum::<usize>()
            + 4 * (self.gate.weight.len() + self.gate.bias.len())
    }

    /// The dense mixture score of each window (every expert, log-sum-exp; see
    /// [`tinyvae::dense_score`]) and the expert of the largest term; window `k` draws from
    /// [`tinyvae::window_rng`]`(seed, k)`.
    ///
    /// # Errors
    /// A library error, with the window index.
    pub fn dense_scores<'a>(
        &self,
        windows: impl Iterator<Item = &'a [f32]>,
        kind: ScoreKind,
        seed: u64,
    ) -> Result<Vec<(f32, u8)>> {
        let Some(first) = self.experts.first() else {
            bail!("a mixture without experts");
        };
        let z = first.latent;
        let (mut mu, mut lv, mut zb, mut eps) =
            (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
        let mut mean = vec![0.0; first.input];
        let mut scratch = first.scratch();
        let mut sampler = tinyvae::NormalSampler::new();
        let gate = self.gate.view();
        let mut out = Vec::new();
        for (i, x) in windows.enumerate() {
            let rng = tinyvae::window_rng(seed, i as u64);
            let buf = tinyvae::Buffers {
                mu: &mut mu,
                logvar: &mut lv,
                z: &mut zb,
                eps: &mut eps,
                mean: &mut mean,
            };
            let s = tinyvae::dense_score(
                &gate,
                &self.experts,
                x,
                kind,
                buf,
                &mut scratch,
                &mut sampler,
                &rng,
            )
            .map_err(|e| anyhow::anyhow!("window {i}: {e}"))?;
            out.push(s);
        }
        Ok(out)
    }
}

impl HostModel {
    /// A mixture of `experts` behind `gate`, run as one [`HostModel`] (module doc).
    ///
    /// # Errors
    /// No expert or more than [`MAX_EXPERTS`], experts of different shapes or precisions, a
    /// nested mixture, or a gate the library refuses (shape, non-finite weights, channels that
    /// do not divide the input).
    pub fn mixture(gate: HostGate, experts: Vec<HostModel>) -> Result<Self> {
        let Some(first) = experts.first() else {
            bail!("a mixture needs at least one expert");
        };
        if experts.len() > MAX_EXPERTS {
            bail!("{} experts: at most {MAX_EXPERTS}", experts.len());
        }
        for (k, e) in experts.iter().enumerate() {
            if e.moe.is_some() {
                bail!("expert {k} is itself a mixture");
            }
            if e.dims() != first.dims() || e.is_int8() != first.is_int8() {
                bail!("expert {k} differs in shape or precision from expert 0");
            }
        }
        tinyvae::Moe::new(gate.view(), &experts)
            .validate()
            .map_err(|e| anyhow::anyhow!("mixture of experts: {e}"))?;
        let mut top = first.clone();
        top.moe = Some(Box::new(HostMoe { gate, experts }));
        Ok(top)
    }

    /// The number of experts: K for a mixture, 1 for a single VAE.
    pub fn experts(&self) -> usize {
        self.moe.as_ref().map_or(1, |m| m.experts.len())
    }
}
