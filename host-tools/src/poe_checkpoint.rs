//! Checkpoints of the multi-sensor product-of-experts VAE (`tinyvae train --group`): the same
//! directory layout as [`crate::checkpoint`] (`model.safetensors` + `config.json`), another
//! `format` and per-group tensors.
//!
//! # `model.safetensors`
//! | tensor | shape |
//! |---|---|
//! | `expert.{g}.encoder.{i}.weight`, `.bias` (group g, hidden layer i) | `[H_i, H_{i-1}]` (H_{-1} = W·C_g), `[H_i]` |
//! | `expert.{g}.mu.weight`, `.bias`; `expert.{g}.logvar.weight`, `.bias` | `[Z, H_last]`, `[Z]` |
//! | `decoder.{i}.weight`, `.bias`; `decoder.out.weight`, `.bias` (shared decoder) | as in a single-VAE checkpoint |
//! | `decoder.{g}.{i}.weight`, `.bias`; `decoder.{g}.out.weight`, `.bias` (`"decoder": "per_group"`: group g's decoder) | `[H_i, H_{i-1}]` (H_{-1} = Z), `[H_i]`; `[W·C_g, H_last]` (rows in sub-window order `t·C_g + j`), `[W·C_g]` |
//! | `decoder.logvar` | `[X]` (clamped to [-7, 7] on load) |
//!
//! # `config.json` ([`PoeConfig`])
//! ```json
//! { "format": "tinyvae-poe-checkpoint-1", "channels": ["ax", ...], "window": 64, "stride": 32,
//!   "norm_mean": [...], "norm_std": [...],
//!   "groups": [{"name": "acc", "channels": ["ax", "ay", "az"]}, {"name": "gyro", ...}],
//!   "arch": {"encoder_hidden": [60], "latent": 32, "decoder_hidden": [52], "noise": "per_feature",
//!            "decoder": "per_group"},
//!   "train": {...},
//!   "calibration": {"fpr": 0.01, "score": "elbo", "validation_windows": 97,
//!                   "thresholds_f32": {"acc+gyro": .., "acc": .., "gyro": ..},
//!                   "thresholds_int8": {...}, "ranges": {...}} }
//! ```
//! Subset names join group names with `+` in group order. Every non-empty subset has a
//! threshold: the `1 - fpr` quantile of its `-ELBO_S` on the validation windows.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use tinyvae::GroupSet;

use crate::checkpoint::{CONFIG_FILE, WEIGHTS_FILE};
use crate::model::PoeRanges;
use crate::train::poe::{ArNoiseParams, DecoderLayout, ExpertParams, PoeArch, PoeParams};
use crate::train::{Linear, NoiseKind, TrainConfig, DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN};

/// The `format` of a PoE checkpoint.
pub const POE_FORMAT: &str = "tinyvae-poe-checkpoint-1";

/// One sensor group: its name and channel names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Name (used in subset names).
    pub name: String,
    /// Channel names, in input order.
    pub channels: Vec<String>,
}

/// Layer widths (the groups and window are in [`PoeConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoeWidths {
    /// Each expert's hidden widths.
    pub encoder_hidden: Vec<usize>,
    /// Z.
    pub latent: usize,
    /// Decoder hidden widths.
    pub decoder_hidden: Vec<usize>,
    /// Decoder variance model.
    pub noise: NoiseKind,
    /// One shared decoder (`"shared"`, the default of checkpoints that do not say) or one per
    /// group (`"per_group"`, `decoder_hidden` being each one's widths).
    #[serde(default)]
    pub decoder: DecoderLayout,
}

/// Per-subset thresholds and the int8 ranges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoeCalibration {
    /// Target false-positive rate per window.
    pub fpr: f64,
    /// The score the thresholds are for (`elbo`).
    pub score: String,
    /// Validation windows the thresholds came from.
    pub validation_windows: usize,
    /// f32 thresholds by subset name.
    pub thresholds_f32: BTreeMap<String, f32>,
    /// int8 thresholds by subset name.
    pub thresholds_int8: BTreeMap<String, f32>,
    /// Activation ranges of the int8 model.
    pub ranges: PoeRanges,
}

/// `config.json` of a PoE checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoeConfig {
    /// Always [`POE_FORMAT`].
    pub format: String,
    /// Channel names in input order.
    pub channels: Vec<String>,
    /// Samples per window.
    pub window: usize,
    /// Samples between window starts.
    pub stride: usize,
    /// Per-channel mean.
    pub norm_mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub norm_std: Vec<f32>,
    /// The sensor groups, in group order.
    pub groups: Vec<GroupSpec>,
    /// Layer widths.
    pub arch: PoeWidths,
    /// How it was trained.
    #[serde(default)]
    pub train: TrainConfig,
    /// Thresholds and ranges (after calibration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<PoeCalibration>,
}

impl PoeConfig {
    /// The architecture (channel indices of each group).
    ///
    /// # Errors
    /// A group naming a channel the model does not have, or an invalid shape.
    pub fn poe_arch(&self) -> Result<PoeArch> {
        let groups = self
            .groups
            .iter()
            .map(|g| {
                g.channels
                    .iter()
                    .map(|n| {
                        self.channels
                            .iter()
                            .position(|c| c == n)
                            .with_context(|| format!("group {}: no channel {n:?}", g.name))
                    })
                    .collect::<Result<Vec<usize>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let a = PoeArch {
            window: self.window,
            channels: self.channels.len(),
            groups,
            encoder_hidden: self.arch.encoder_hidden.clone(),
            latent: self.arch.latent,
            decoder_hidden: self.arch.decoder_hidden.clone(),
            noise: self.arch.noise,
            decoder: self.arch.decoder,
        };
        a.validate()?;
        Ok(a)
    }

    /// The name of a subset: its group names joined with `+`, in group order.
    pub fn subset_name(&self, s: GroupSet) -> String {
        s.iter()
            .filter_map(|g| self.groups.get(g).map(|x| x.name.clone()))
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Every non-empty subset, the full set first, then by decreasing size, in group order.
    pub fn subsets(&self) -> Vec<GroupSet> {
        let g = self.groups.len();
        let mut v: Vec<GroupSet> = (1..(1u8 << g)).map(GroupSet).collect();
        v.sort_by_key(|s| (std::cmp::Reverse(s.len()), s.iter().collect::<Vec<_>>()));
        v
    }
}

/// A PoE checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct PoeCheckpoint {
    /// `config.json`.
    pub config: PoeConfig,
    /// `model.safetensors`.
    pub params: PoeParams,
}

fn tensors(p: &PoeParams) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut v = Vec::new();
    for (g, e) in p.experts.iter().enumerate() {
        for (i, l) in e.encoder.iter().enumerate() {
            push(&mut v, format!("expert.{g}.encoder.{i}"), l);
        }
        push(&mut v, format!("expert.{g}.mu"), &e.mu);
        push(&mut v, format!("expert.{g}.logvar"), &e.logvar);
    }
    for (prefix, d) in decoder_prefixes(p).into_iter().zip(p.decoders()) {
        for (i, l) in d.hidden.iter().enumerate() {
            push(&mut v, format!("{prefix}.{i}"), l);
        }
        push(&mut v, format!("{prefix}.out"), &d.out);
    }
    v.push((
        "decoder.logvar".into(),
        vec![p.decoder_logvar.len()],
        p.decoder_logvar.clone(),
    ));
    if let Some(n) = &p.noise {
        let c = p.arch.channels;
        v.push(("noise.ar".into(), vec![c, n.order], n.coef.clone()));
        v.push((
            "noise.logvar".into(),
            vec![n.logvar.len()],
            n.logvar.clone(),
        ));
    }
    v
}

/// The tensor-name prefix of each decoder: `decoder` (shared) or `decoder.{g}` (per group).
fn decoder_prefixes(p: &PoeParams) -> Vec<String> {
    match p.arch.decoder {
        DecoderLayout::Shared => vec!["decoder".to_string()],
        DecoderLayout::PerGroup => (0..p.arch.groups.len())
            .map(|g| format!("decoder.{g}"))
            .collect(),
    }
}

fn push(v: &mut Vec<(String, Vec<usize>, Vec<f32>)>, name: String, l: &Linear) {
    v.push((
        format!("{name}.weight"),
        vec![l.out_features, l.in_features],
        l.weight.clone(),
    ));
    v.push((format!("{name}.bias"), vec![l.out_features], l.bias.clone()));
}

/// Writes `ck` as the checkpoint directory `dir` (atomically, as [`crate::checkpoint::save`]).
///
/// # Errors
/// Non-finite weights, a serialization failure, or I/O errors.
pub fn save(dir: &Path, ck: &PoeCheckpoint) -> Result<()> {
    ck.config.poe_arch()?;
    let t = tensors(&ck.params);
    anyhow::ensure!(
        t.iter().all(|(_, _, d)| d.iter().all(|v| v.is_finite())),
        "refusing to save non-finite weights"
    );
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::new();
    for (name, shape, b) in &bytes {
        views.push((
            name.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), b)
                .with_context(|| format!("tensor `{name}`"))?,
        ));
    }
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("tinyvae".to_string(), POE_FORMAT.to_string()),
    ]);
    let weights = safetensors::serialize(views, Some(meta)).context("serializing safetensors")?;
    let mut json = serde_json::to_string_pretty(&ck.config)?;
    json.push('\n');
    crate::output::write_dir_files(
        dir,
        &[
            (WEIGHTS_FILE, weights.as_slice()),
            (CONFIG_FILE, json.as_bytes()),
        ],
    )
}

/// Whether the checkpoint directory `dir` holds a PoE checkpoint (its `config.json` has
/// `"format": "tinyvae-poe-checkpoint-1"`); false if it cannot be read.
pub fn is_poe(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("format")
                .and_then(|f| f.as_str())
                .map(|f| f == POE_FORMAT)
        })
        .unwrap_or(false)
}

/// Reads and checks the PoE checkpoint directory `dir`.
///
/// # Errors
/// Missing files, malformed JSON, an invalid configuration, or a missing, unexpected,
/// non-f32, wrongly shaped or non-finite tensor (named).
pub fn load(dir: &Path) -> Result<PoeCheckpoint> {
    let cpath = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&cpath).with_context(|| format!("reading {}", cpath.display()))?;
    let config: PoeConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid checkpoint config", cpath.display()))?;
    if config.format != POE_FORMAT {
        bail!(
            "{}: format {:?}, expected {POE_FORMAT:?}",
            cpath.display(),
            config.format
        );
    }
    let arch = config
        .poe_arch()
        .with_context(|| format!("{}: invalid checkpoint config", cpath.display()))?;
    let wpath = dir.join(WEIGHTS_FILE);
    let origin = wpath.display().to_string();
    let bytes = std::fs::read(&wpath).with_context(|| format!("reading {origin}"))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{origin}: not a valid safetensors file: {e}"))?;
    // The expected tensors: those of a zero model of this shape.
    let layout = crate::train::poe::PoeLayout::new(&arch)?;
    let mut params = layout.unflatten(&vec![0.0; layout.total]);
    // Autoregressive noise (optional): its order is the second dimension of `noise.ar`.
    if let Ok(t) = st.tensor("noise.ar") {
        let order = match t.shape() {
            &[c, p] if c == arch.channels && (1..=tinyvae::MAX_AR_ORDER).contains(&p) => p,
            s => bail!(
                "{origin}: tensor `noise.ar` has shape {s:?}, expected [{}, p] with p from 1 to {}",
                arch.channels,
                tinyvae::MAX_AR_ORDER
            ),
        };
        params.noise = Some(ArNoiseParams {
            order,
            coef: vec![0.0; arch.channels * order],
            logvar: vec![0.0; arch.input()],
        });
    }
    let expected: Vec<(String, Vec<usize>)> = tensors(&params)
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    if let Some(n) = st
        .names()
        .into_iter()
        .find(|n| !expected.iter().any(|(e, _)| e == *n))
    {
        bail!("{origin}: unexpected tensor `{n}`");
    }
    let mut values = std::collections::HashMap::new();
    for (name, shape) in &expected {
        let t = st
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("{origin}: missing tensor `{name}` (shape {shape:?})"))?;
        anyhow::ensure!(
            t.dtype() == Dtype::F32,
            "{origin}: tensor `{name}` has dtype {:?}, expected F32",
            t.dtype()
        );
        anyhow::ensure!(
            t.shape() == shape.as_slice(),
            "{origin}: tensor `{name}` has shape {:?}, expected {shape:?}",
            t.shape()
        );
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            bail!("{origin}: tensor `{name}` element {i} is not finite");
        }
        values.insert(name.clone(), v);
    }
    let mut take = |n: &str| values.remove(n).unwrap_or_default();
    let mut fill = |name: &str, l: &mut Linear| {
        l.weight = take(&format!("{name}.weight"));
        l.bias = take(&format!("{name}.bias"));
    };
    for (g, e) in params.experts.iter_mut().enumerate() {
        let ExpertParams {
            encoder,
            mu,
            logvar,
        } = e;
        for (i, l) in encoder.iter_mut().enumerate() {
            fill(&format!("expert.{g}.encoder.{i}"), l);
        }
        fill(&format!("expert.{g}.mu"), mu);
        fill(&format!("expert.{g}.logvar"), logvar);
    }
    let mut decoders = params.decoders();
    for (prefix, d) in decoder_prefixes(&params).into_iter().zip(&mut decoders) {
        for (i, l) in d.hidden.iter_mut().enumerate() {
            fill(&format!("{prefix}.{i}"), l);
        }
        fill(&format!("{prefix}.out"), &mut d.out);
    }
    params
        .set_decoders(&decoders)
        .with_context(|| format!("{origin}: decoder tensors"))?;
    params.decoder_logvar = take("decoder.logvar")
        .into_iter()
        .map(|v| v.clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX))
        .collect();
    if let Some(n) = &mut params.noise {
        n.coef = take("noise.ar");
        n.logvar = take("noise.logvar")
            .into_iter()
            .map(|v| v.clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX))
            .collect();
    }
    Ok(PoeCheckpoint { config, params })
}
