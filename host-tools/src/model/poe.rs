//! [`PoeHost`]: the runtime-shaped product-of-experts VAE (f32 or int8), run through the
//! library's [`tinyvae::PoeVae`] and kernels, and its int8 calibration and per-subset
//! thresholds.
//!
//! Each expert is quantized like a [`HostModel`](super::HostModel)'s encoder (its own input
//! range over its group's standardized channels, per-layer ranges, dequantized heads); each
//! decoder (the shared one, or every group's) like a `HostModel`'s decoder, with the `z` range
//! the union over every non-empty subset `S` of the fused `mu_S ± 3 sigma_S` on the
//! calibration windows, and its hidden and output ranges from decoding `mu_S`. Everything else
//! (fusion, likelihood over the present groups, scores) is the library's code, so the host
//! computes what the chip computes.

use anyhow::{bail, Result};
use tinyvae::{
    Activation, Error, ExpertEncoder, GroupSet, LatentDecoder, PoeScratch, PoeVae, QParams,
    ScoreKind, SensorGroups,
};

use super::calibrate::{track, track_decoder, widen, EMPTY};
use super::host::{lib, quantize_layer, quantize_relu_stack, range_q, run_float, run_int8};
use super::{FloatLayer, QLayer};
use crate::train::poe::{DecoderParams, PoeParams};
use crate::train::Linear;

/// One expert: f32 or int8 layers.
#[derive(Clone, Debug, PartialEq)]
pub enum HostExpert {
    /// f32.
    Float {
        /// Hidden layers (ReLU).
        encoder: Vec<FloatLayer>,
        /// Mean head.
        mu: FloatLayer,
        /// Log-variance head.
        logvar: FloatLayer,
    },
    /// int8.
    Int8 {
        /// Input quantization.
        input_q: QParams,
        /// Hidden layers (fused ReLU).
        encoder: Vec<QLayer>,
        /// Mean head, dequantized with its output parameters.
        mu: QLayer,
        /// Log-variance head.
        logvar: QLayer,
        /// The precision of each log-variance code `q` at `q + 128`
        /// ([`tinyvae::precision_table`] of the head's output parameters).
        precision: Vec<f32>,
    },
}

/// A decoder (shared, or one group's): f32 or int8 layers.
#[derive(Clone, Debug, PartialEq)]
pub enum HostDecoder {
    /// f32.
    Float {
        /// Hidden layers (ReLU).
        decoder: Vec<FloatLayer>,
        /// Output layer.
        output: FloatLayer,
    },
    /// int8.
    Int8 {
        /// Quantization of `z`.
        z_q: QParams,
        /// Hidden layers (fused ReLU).
        decoder: Vec<QLayer>,
        /// Output layer, dequantized.
        output: QLayer,
    },
}

/// Buffers of a [`PoeHost`]'s layers.
#[derive(Clone, Debug)]
pub struct HostBufs {
    fa: Vec<f32>,
    fb: Vec<f32>,
    qa: Vec<i8>,
    qb: Vec<i8>,
}

impl HostBufs {
    fn new(w: usize) -> Self {
        Self {
            fa: vec![0.0; w],
            fb: vec![0.0; w],
            qa: vec![0; w],
            qb: vec![0; w],
        }
    }
}

impl ExpertEncoder for HostExpert {
    type Scratch = HostBufs;

    fn input_dim(&self) -> usize {
        match self {
            HostExpert::Float { encoder, mu, .. } => encoder.first().unwrap_or(mu).in_dim,
            HostExpert::Int8 { encoder, mu, .. } => encoder.first().unwrap_or(mu).in_dim,
        }
    }

    fn encode(
        &self,
        x: &[f32],
        mu: &mut [f32],
        precision: &mut [f32],
        s: &mut HostBufs,
    ) -> Result<(), Error> {
        match self {
            HostExpert::Float {
                encoder,
                mu: mh,
                logvar: lh,
            } => {
                let refs: Vec<&FloatLayer> = encoder.iter().collect();
                let h = encoder.last().map_or(x.len(), |l| l.out_dim);
                let mut hidden = vec![0.0f32; h];
                run_float(&refs, x, &mut hidden, &mut s.fa, &mut s.fb)?;
                mh.view()?.forward(&hidden, mu)?;
                lh.view()?.forward(&hidden, precision)?;
                for t in precision.iter_mut() {
                    *t = tinyvae::expert_precision(*t);
                }
                Ok(())
            }
            HostExpert::Int8 {
                input_q,
                encoder,
                mu: mh,
                logvar: lh,
                precision: table,
            } => {
                let n = x.len();
                tinyvae::quantize_slice(
                    x,
                    *input_q,
                    s.qa.get_mut(..n).ok_or(Error::ShapeMismatch {
                        expected: n,
                        found: 0,
                    })?,
                )?;
                let refs: Vec<&QLayer> = encoder.iter().collect();
                let hidden = run_int8(&refs, &mut s.qa, &mut s.qb)?.to_vec();
                let mut q = vec![0i8; mu.len()];
                mh.view()?.forward(&hidden, &mut q)?;
                tinyvae::dequantize_slice(&q, mh.output_q, mu)?;
                lh.view()?.forward(&hidden, &mut q)?;
                if q.len() != precision.len() {
                    return Err(Error::ShapeMismatch {
                        expected: q.len(),
                        found: precision.len(),
                    });
                }
                for (t, &c) in precision.iter_mut().zip(&q) {
                    *t = table
                        .get(usize::from(c as u8 ^ 0x80))
                        .copied()
                        .ok_or(Error::InvalidParameter)?;
                }
                Ok(())
            }
        }
    }
}

impl LatentDecoder for HostDecoder {
    type Scratch = HostBufs;

    fn latent_dim(&self) -> usize {
        match self {
            HostDecoder::Float { decoder, output } => decoder.first().unwrap_or(output).in_dim,
            HostDecoder::Int8 {
                decoder, output, ..
            } => decoder.first().unwrap_or(output).in_dim,
        }
    }

    fn decode(&self, z: &[f32], mean: &mut [f32], s: &mut HostBufs) -> Result<(), Error> {
        match self {
            HostDecoder::Float { decoder, output } => {
                let refs: Vec<&FloatLayer> = decoder.iter().chain([output]).collect();
                run_float(&refs, z, mean, &mut s.fa, &mut s.fb)
            }
            HostDecoder::Int8 {
                z_q,
                decoder,
                output,
            } => {
                let n = z.len();
                tinyvae::quantize_slice(
                    z,
                    *z_q,
                    s.qa.get_mut(..n).ok_or(Error::ShapeMismatch {
                        expected: n,
                        found: 0,
                    })?,
                )?;
                let refs: Vec<&QLayer> = decoder.iter().chain([output]).collect();
                let out = run_int8(&refs, &mut s.qa, &mut s.qb)?;
                tinyvae::dequantize_slice(out, output.output_q, mean)
            }
        }
    }
}

/// Calibration ranges of a product-of-experts model.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PoeRanges {
    /// Per expert: input, hidden layers, mu, logvar.
    pub experts: Vec<ExpertRanges>,
    /// Decoder input `z` (every decoder's).
    pub z: (f32, f32),
    /// Each decoder's (shared: one; per group: in group order).
    pub decoders: Vec<DecoderRanges>,
}

/// One decoder's ranges.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecoderRanges {
    /// Hidden layers.
    pub hidden: Vec<(f32, f32)>,
    /// Output.
    pub output: (f32, f32),
}

/// [`PoeRanges`] as `config.json` holds them: `decoders`, or (checkpoints of a shared decoder
/// written before per-group decoders) one decoder's `decoder` and `output`.
#[derive(serde::Deserialize)]
struct PoeRangesJson {
    experts: Vec<ExpertRanges>,
    z: (f32, f32),
    #[serde(default)]
    decoders: Vec<DecoderRanges>,
    #[serde(default)]
    decoder: Option<Vec<(f32, f32)>>,
    #[serde(default)]
    output: Option<(f32, f32)>,
}

impl<'de> serde::Deserialize<'de> for PoeRanges {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let j = PoeRangesJson::deserialize(d)?;
        let mut decoders = j.decoders;
        if let (true, Some(hidden), Some(output)) = (decoders.is_empty(), j.decoder, j.output) {
            decoders.push(DecoderRanges { hidden, output });
        }
        Ok(Self {
            experts: j.experts,
            z: j.z,
            decoders,
        })
    }
}

/// One expert's ranges.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExpertRanges {
    /// Its standardized input.
    pub input: (f32, f32),
    /// Hidden layers.
    pub encoder: Vec<(f32, f32)>,
    /// Mean head.
    pub mu: (f32, f32),
    /// Log-variance head.
    pub logvar: (f32, f32),
}

/// A product-of-experts model on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct PoeHost {
    /// One per group.
    pub experts: Vec<HostExpert>,
    /// The decoders: one shared, or one per group (in group order).
    pub decoders: Vec<HostDecoder>,
    /// The channels of each group.
    pub groups: SensorGroups,
    /// C.
    pub channels: usize,
    /// Z.
    pub latent: usize,
    /// Decoder log-variances (X; the innovations' with autoregressive noise).
    pub decoder_logvar: Vec<f32>,
    /// `exp(-logvar_x)` (X).
    pub inv_var: Vec<f32>,
    /// Per-group log-normalizers.
    pub group_log_norm: Vec<f32>,
    /// `threshold(all) - threshold(S)` per subset (0 until [`PoeHost::set_thresholds`]).
    pub shifts: [f32; 16],
    /// Order of the autoregressive noise (0: diagonal).
    pub ar_order: usize,
    /// Its coefficients, `ar_order` per channel.
    pub ar: Vec<f32>,
}

/// The model as the library sees it.
pub type PoeView<'a> = PoeVae<'a, HostExpert, HostDecoder, Vec<f32>>;

/// Scratch of a [`PoeView`].
pub type PoeHostScratch = PoeScratch<HostBufs, HostBufs, Vec<f32>>;

impl PoeHost {
    /// The f32 model of trained weights.
    ///
    /// # Errors
    /// Inconsistent shapes or a non-finite decoder log-variance.
    pub fn float(p: &PoeParams) -> Result<Self> {
        let fl = |l: &Linear, a| FloatLayer::from_linear(l, a);
        let experts = p
            .experts
            .iter()
            .map(|e| HostExpert::Float {
                encoder: e.encoder.iter().map(|l| fl(l, Activation::Relu)).collect(),
                mu: fl(&e.mu, Activation::Identity),
                logvar: fl(&e.logvar, Activation::Identity),
            })
            .collect();
        let decoders = p
            .decoders()
            .iter()
            .map(|d| HostDecoder::Float {
                decoder: d.hidden.iter().map(|l| fl(l, Activation::Relu)).collect(),
                output: fl(&d.out, Activation::Identity),
            })
            .collect();
        Self::assemble(p, experts, decoders)
    }

    /// The int8 model of trained weights with activation ranges `r`.
    ///
    /// # Errors
    /// A degenerate range or shapes that do not chain.
    pub fn int8(p: &PoeParams, r: &PoeRanges) -> Result<Self> {
        let dps: Vec<DecoderParams> = p.decoders();
        if r.experts.len() != p.experts.len()
            || r.decoders.len() != dps.len()
            || dps
                .iter()
                .zip(&r.decoders)
                .any(|(d, dr)| d.hidden.len() != dr.hidden.len())
        {
            bail!("calibration ranges do not match the model's layers");
        }
        let mut experts = Vec::new();
        for (g, (e, er)) in p.experts.iter().zip(&r.experts).enumerate() {
            let input_q = range_q(&format!("expert {g} input"), er.input)?;
            let (encoder, prev) = quantize_relu_stack(
                &format!("expert.{g}.encoder"),
                &e.encoder,
                &er.encoder,
                input_q,
            )?;
            let mu = quantize_layer(
                "mu",
                &e.mu,
                prev,
                range_q(&format!("expert.{g}.mu"), er.mu)?,
                Activation::Identity,
            )?;
            let logvar = quantize_layer(
                "logvar",
                &e.logvar,
                prev,
                range_q(&format!("expert.{g}.logvar"), er.logvar)?,
                Activation::Identity,
            )?;
            let precision = tinyvae::precision_table(logvar.output_q).to_vec();
            experts.push(HostExpert::Int8 {
                input_q,
                encoder,
                mu,
                logvar,
                precision,
            });
        }
        let z_q = range_q("z", r.z)?;
        let mut decoders = Vec::new();
        for (d, (dp, dr)) in dps.iter().zip(&r.decoders).enumerate() {
            let name = if dps.len() == 1 {
                "decoder".to_string()
            } else {
                format!("decoder.{d}")
            };
            let (decoder, prev) = quantize_relu_stack(&name, &dp.hidden, &dr.hidden, z_q)?;
            let out = format!("{name}.out");
            let output = quantize_layer(
                &out,
                &dp.out,
                prev,
                range_q(&out, dr.output)?,
                Activation::Identity,
            )?;
            decoders.push(HostDecoder::Int8 {
                z_q,
                decoder,
                output,
            });
        }
        Self::assemble(p, experts, decoders)
    }

    fn assemble(
        p: &PoeParams,
        experts: Vec<HostExpert>,
        decoders: Vec<HostDecoder>,
    ) -> Result<Self> {
        let a = &p.arch;
        let masks: Vec<tinyvae::ChannelMask> = a
            .groups
            .iter()
            .map(|g| {
                let mut m = tinyvae::ChannelMask::EMPTY;
                for &c in g {
                    m.insert(c);
                }
                m
            })
            .collect();
        let groups = SensorGroups::new(&masks).map_err(lib)?;
        let x = a.input();
        // With autoregressive noise the precisions and normalizers are the innovations'.
        let (logvar, ar_order, ar) = match &p.noise {
            Some(n) => {
                if n.order == 0
                    || n.order > tinyvae::MAX_AR_ORDER
                    || n.coef.len() != a.channels * n.order
                {
                    bail!(
                        "noise.ar: order {} with {} coefficients for {} channels",
                        n.order,
                        n.coef.len(),
                        a.channels
                    );
                }
                (&n.logvar, n.order, n.coef.clone())
            }
            None => (&p.decoder_logvar, 0, Vec::new()),
        };
        if logvar.len() != x {
            bail!(
                "decoder log-variances: {} values, expected {x}",
                logvar.len()
            );
        }
        let mut inv_var = vec![0.0f32; x];
        tinyvae::decoder_noise(logvar, &mut inv_var).map_err(lib)?;
        let mut group_log_norm = Vec::new();
        for g in 0..groups.count() {
            let lv: Vec<f32> = (0..x)
                .filter(|j| groups.channels(g).contains(j % a.channels))
                .map(|j| logvar[j])
                .collect();
            let mut iv = vec![0.0f32; lv.len()];
            group_log_norm.push(tinyvae::decoder_noise(&lv, &mut iv).map_err(lib)?);
        }
        Ok(Self {
            experts,
            decoders,
            groups,
            channels: a.channels,
            latent: a.latent,
            decoder_logvar: logvar.clone(),
            inv_var,
            group_log_norm,
            shifts: [0.0; 16],
            ar_order,
            ar,
        })
    }

    /// The library's view of the model.
    pub fn view(&self) -> PoeView<'_> {
        PoeVae::new(
            &self.experts,
            &self.decoders,
            self.groups,
            self.channels,
            &self.inv_var,
            &self.group_log_norm,
            &self.shifts,
        )
        .with_ar(self.ar_order, &self.ar)
    }

    /// X.
    pub fn input(&self) -> usize {
        self.inv_var.len()
    }

    /// Zeroed scratch.
    pub fn scratch(&self) -> PoeHostScratch {
        let w = self.widest();
        PoeScratch {
            experts: HostBufs::new(w),
            decoder: HostBufs::new(w),
            gather: vec![0.0; self.input()],
            means: vec![0.0; self.experts.len() * self.latent],
            precisions: vec![0.0; self.experts.len() * self.latent],
        }
    }

    /// The widest layer boundary of every expert and decoder (the scratch buffers' length).
    fn widest(&self) -> usize {
        self.dims()
            .iter()
            .fold(self.input().max(self.latent), |w, &(i, o)| w.max(i).max(o))
    }

    /// `(in, out)` of every dense layer (experts in order, then the decoders).
    pub fn dims(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for e in &self.experts {
            match e {
                HostExpert::Float {
                    encoder,
                    mu,
                    logvar,
                } => v.extend(
                    encoder
                        .iter()
                        .chain([mu, logvar])
                        .map(|l| (l.in_dim, l.out_dim)),
                ),
                HostExpert::Int8 {
                    encoder,
                    mu,
                    logvar,
                    ..
                } => v.extend(
                    encoder
                        .iter()
                        .chain([mu, logvar])
                        .map(|l| (l.in_dim, l.out_dim)),
                ),
            }
        }
        for d in &self.decoders {
            match d {
                HostDecoder::Float { decoder, output } => v.extend(
                    decoder
                        .iter()
                        .chain([output])
                        .map(|l| (l.in_dim, l.out_dim)),
                ),
                HostDecoder::Int8 {
                    decoder, output, ..
                } => v.extend(
                    decoder
                        .iter()
                        .chain([output])
                        .map(|l| (l.in_dim, l.out_dim)),
                ),
            }
        }
        v
    }

    /// Multiply-accumulates of the full-set ELBO score (every expert, every decoder).
    pub fn macs(&self) -> usize {
        self.dims().iter().map(|(a, b)| a * b).sum()
    }

    /// Parameter bytes as [`HostModel::param_bytes`](super::HostModel::param_bytes) counts
    /// them (int8: 1 byte per weight, 4 per bias, 8 per output for requantization), plus the
    /// noise constants (`4 X + 4 G`, and `4 C p` autoregressive coefficients). The 64 bytes
    /// of per-subset threshold shifts are configuration, like the single model's threshold,
    /// and not counted.
    pub fn param_bytes(&self, int8: bool) -> usize {
        let noise = 4 * self.input() + 4 * self.experts.len() + 4 * self.ar.len();
        let d = self.dims();
        if int8 {
            d.iter().map(|(a, b)| a * b + 12 * b).sum::<usize>() + noise
        } else {
            d.iter().map(|(a, b)| 4 * a * b + 4 * b).sum::<usize>() + noise
        }
    }

    /// The activation ranges of the f32 model over `windows` (see the module doc).
    ///
    /// # Errors
    /// Not the f32 model, a window of the wrong length, or no windows.
    pub fn calibrate<'a>(&self, windows: impl Iterator<Item = &'a [f32]>) -> Result<PoeRanges> {
        let decoders = self
            .decoders
            .iter()
            .map(|d| match d {
                HostDecoder::Float { decoder, output } => Ok((decoder, output)),
                HostDecoder::Int8 { .. } => bail!("calibration needs the f32 model"),
            })
            .collect::<Result<Vec<_>>>()?;
        let g = self.experts.len();
        let z = self.latent;
        let mut er: Vec<ExpertRanges> = self
            .experts
            .iter()
            .map(|e| match e {
                HostExpert::Float { encoder, .. } => Ok(ExpertRanges {
                    input: EMPTY,
                    encoder: vec![EMPTY; encoder.len()],
                    mu: EMPTY,
                    logvar: EMPTY,
                }),
                HostExpert::Int8 { .. } => bail!("calibration needs the f32 model"),
            })
            .collect::<Result<_>>()?;
        let mut r = PoeRanges {
            experts: Vec::new(),
            z: EMPTY,
            decoders: decoders
                .iter()
                .map(|(hidden, _)| DecoderRanges {
                    hidden: vec![EMPTY; hidden.len()],
                    output: EMPTY,
                })
                .collect(),
        };
        let c = self.channels;
        let mut n = 0usize;
        let mut means = vec![0.0f32; g * z];
        let mut lvs = vec![0.0f32; g * z];
        for x in windows {
            if x.len() != self.input() {
                bail!(
                    "window of {} values, the model takes {}",
                    x.len(),
                    self.input()
                );
            }
            n += 1;
            for (gi, (e, rr)) in self.experts.iter().zip(er.iter_mut()).enumerate() {
                let HostExpert::Float {
                    encoder,
                    mu,
                    logvar,
                } = e
                else {
                    bail!("calibration needs the f32 model");
                };
                let mask = self.groups.channels(gi);
                let xg: Vec<f32> = x
                    .chunks_exact(c)
                    .flat_map(|s| s.iter().enumerate().filter(|(ch, _)| mask.contains(*ch)))
                    .map(|(_, &v)| v)
                    .collect();
                widen(&mut rr.input, &xg);
                let cur = track(encoder, &mut rr.encoder, xg)?;
                let m = &mut means[gi * z..(gi + 1) * z];
                let lv = &mut lvs[gi * z..(gi + 1) * z];
                mu.view().map_err(lib)?.forward(&cur, m).map_err(lib)?;
                logvar.view().map_err(lib)?.forward(&cur, lv).map_err(lib)?;
                widen(&mut rr.mu, m);
                widen(&mut rr.logvar, lv);
                for v in lv.iter_mut() {
                    let cl = v.clamp(tinyvae::LOGVAR_MIN, tinyvae::LOGVAR_MAX);
                    *v = if cl.is_nan() { tinyvae::LOGVAR_MAX } else { cl };
                }
            }
            for bits in 1..(1u8 << g) {
                let (mut m, mut lv) = (vec![0.0f32; z], vec![0.0f32; z]);
                tinyvae::fuse_experts(&means, &lvs, GroupSet(bits), &mut m, &mut lv)
                    .map_err(lib)?;
                for (&mj, &lj) in m.iter().zip(&lv) {
                    let s = 3.0 * tinyvae::math::exp(0.5 * lj);
                    widen(&mut r.z, &[mj - s, mj + s]);
                }
                for ((hidden, output), dr) in decoders.iter().zip(&mut r.decoders) {
                    track_decoder(hidden, output, &mut dr.hidden, &mut dr.output, m.clone())?;
                }
            }
        }
        if n == 0 {
            bail!("no calibration windows");
        }
        r.experts = er;
        Ok(r)
    }

    /// Scores `windows` with the groups `present` (see [`tinyvae::score_groups`]); window `i`
    /// draws from `window_rng(seed, i)`.
    ///
    /// # Errors
    /// A library error, with the window index.
    pub fn scores<'a>(
        &self,
        windows: impl Iterator<Item = &'a [f32]>,
        present: GroupSet,
        kind: ScoreKind,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let v = self.view();
        let z = self.latent;
        let (mut mu, mut lv, mut zb, mut eps) =
            (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
        let mut mean = vec![0.0; self.input()];
        let mut scratch = self.scratch();
        let mut sampler = tinyvae::NormalSampler::new();
        let mut out = Vec::new();
        for (i, x) in windows.enumerate() {
            let mut rng = tinyvae::window_rng(seed, i as u64);
            let buf = tinyvae::Buffers {
                mu: &mut mu,
                logvar: &mut lv,
                z: &mut zb,
                eps: &mut eps,
                mean: &mut mean,
            };
            let s = tinyvae::score_groups(
                &v,
                x,
                present,
                kind,
                buf,
                &mut scratch,
                &mut sampler,
                &mut rng,
            )
            .map_err(|e| anyhow::anyhow!("window {i}: {e}"))?;
            out.push(s.score);
        }
        Ok(out)
    }

    /// Sets [`PoeHost::shifts`] from per-subset thresholds (indexed by [`GroupSet::index`]).
    pub fn set_thresholds(&mut self, thresholds: &[f32; 16]) {
        let full = thresholds[self.groups.all().index()];
        for (s, &t) in self.shifts.iter_mut().zip(thresholds) {
            *s = if t.is_finite() { full - t } else { 0.0 };
        }
        self.shifts[self.groups.all().index()] = 0.0;
    }
}
