//! Checkpoints: a directory holding `model.safetensors` (the weights) and `config.json`.
//!
//! # `model.safetensors`
//! Little-endian f32 tensors written with the standalone `safetensors` crate, PyTorch
//! state-dict names and `[out, in]` weight shapes (X = window·channels, Z = latent,
//! `H_i` = hidden widths):
//!
//! | tensor | shape |
//! |---|---|
//! | `encoder.{i}.weight`, `encoder.{i}.bias` (i = 0.., one per encoder hidden layer) | `[H_i, H_{i-1}]` (H_{-1} = X), `[H_i]` |
//! | `mu.weight`, `mu.bias` | `[Z, H_last]`, `[Z]` |
//! | `logvar.weight`, `logvar.bias` | `[Z, H_last]`, `[Z]` |
//! | `decoder.{i}.weight`, `decoder.{i}.bias` (one per decoder hidden layer) | `[G_i, G_{i-1}]` (G_{-1} = Z), `[G_i]` |
//! | `decoder.out.weight`, `decoder.out.bias` | `[X, G_last]`, `[X]` |
//! | `decoder.logvar` | `[X]` |
//!
//! A dense layer computes `y = W x + b` (ReLU after every hidden layer); the encoder's log-variance
//! is clamped to [-10, 10] and `decoder.logvar` to [-7, 7] (values outside are clamped on load).
//! `decoder.logvar` must repeat one value per channel across time steps for `per_channel`
//! noise (index `t*C + c`), and be zero (or absent) for `unit` noise. No other tensor may be
//! present. The file's metadata is `{"format": "pt", "tinyvae": "tinyvae-checkpoint-1"}`; it is
//! not required on load.
//!
//! Importing a PyTorch VAE with this structure: map its state dict onto these keys (e.g.
//! `{"encoder.0.weight": m.enc[0].weight, ..., "decoder.logvar": m.dec_logvar}`), then
//! `safetensors.torch.save_file({k: v.detach().float().contiguous() for k, v in d.items()},
//! "DIR/model.safetensors")` and write a `config.json` as below.
//!
//! # `config.json` ([`CheckpointConfig`])
//! ```json
//! { "format": "tinyvae-checkpoint-1", "channels": ["ax", "ay", ...], "window": 64,
//!   "stride": 32, "norm_mean": [...], "norm_std": [...],
//!   "arch": { "input": 384, "encoder_hidden": [64], "latent": 8, "decoder_hidden": [64],
//!             "noise": "per_feature", "channels": 6 },
//!   "train": { "epochs": 50, "batch": 64, "lr": 0.001, ... },
//!   "threshold": { ... } }
//! ```
//! `noise` is one of `per_feature`, `per_channel`, `unit`. `train` may be omitted (defaults).
//! `threshold` is optional, free-form JSON owned by the CLI (calibration); any other top-level
//! key is kept verbatim in [`CheckpointConfig::extra`] and written back on save.
//! Normalization: the model sees `(raw - norm_mean[c]) / norm_std[c]`.
//!
//! # Atomicity
//! [`save`] never leaves a half-written file: a new directory is assembled under a temporary
//! name next to the target and renamed into place; into an existing directory each file is
//! written to a temporary file in it and renamed over the old one (weights first, config last).
//! [`load`] checks every tensor's presence, dtype, shape and finiteness against the config
//! and names the offending tensor in its error.
//!
//! It is kept as one file because it is one concept: the checkpoint directory format, read and
//! written.

use crate::train::{Arch, Linear, NoiseKind, Params, TrainConfig};
use crate::train::{DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN};
use anyhow::Context;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The `format` value of this version.
pub const FORMAT: &str = "tinyvae-checkpoint-1";
/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";

/// `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// Channel (CSV column) names, in the order of the model's input.
    pub channels: Vec<String>,
    /// Samples per window.
    pub window: usize,
    /// Samples between window starts.
    pub stride: usize,
    /// Per-channel mean subtracted before the model.
    pub norm_mean: Vec<f32>,
    /// Per-channel standard deviation divided by before the model (> 0).
    pub norm_std: Vec<f32>,
    /// The model's shape.
    pub arch: Arch,
    /// How it was trained.
    #[serde(default)]
    pub train: TrainConfig,
    /// Calibrated alarm threshold, filled in by the CLI (free-form JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<serde_json::Value>,
    /// Any other top-level keys, preserved across load/save.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CheckpointConfig {
    /// A configuration with `format` = [`FORMAT`], no threshold and no extra keys.
    pub fn new(
        channels: Vec<String>,
        window: usize,
        stride: usize,
        norm_mean: Vec<f32>,
        norm_std: Vec<f32>,
        arch: Arch,
        train: TrainConfig,
    ) -> Self {
        Self {
            format: FORMAT.to_string(),
            channels,
            window,
            stride,
            norm_mean,
            norm_std,
            arch,
            train,
            threshold: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Checks the fields against each other.
    ///
    /// # Errors
    /// A wrong format, an invalid arch, or sizes that disagree (each message names the field).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.format == FORMAT,
            "format is {:?}, expected {FORMAT:?}",
            self.format
        );
        self.arch.validate()?;
        let c = self.channels.len();
        anyhow::ensure!(c > 0, "channels is empty");
        // Each name feeds one model input: a duplicate would make matching a CSV by name feed
        // one column to two inputs. O(n) with a hash map.
        let mut first_at: HashMap<&str, usize> = HashMap::with_capacity(c);
        for (i, n) in self.channels.iter().enumerate() {
            anyhow::ensure!(!n.is_empty(), "channels[{i}] is an empty name");
            anyhow::ensure!(
                !n.eq_ignore_ascii_case("label"),
                "channels[{i}] is {n:?}, the name a CSV reserves for its label column"
            );
            if let Some(&j) = first_at.get(n.as_str()) {
                anyhow::bail!(
                    "channels has the name {n:?} twice (channels[{j}] and channels[{i}]); \
                     channel names must be unique"
                );
            }
            first_at.insert(n.as_str(), i);
        }
        anyhow::ensure!(
            c == self.arch.channels,
            "channels lists {c} names but arch.channels is {}",
            self.arch.channels
        );
        anyhow::ensure!(self.window > 0, "window must be > 0");
        anyhow::ensure!(self.stride > 0, "stride must be > 0");
        anyhow::ensure!(
            self.window * c == self.arch.input,
            "window {} x {c} channels = {} but arch.input is {}",
            self.window,
            self.window * c,
            self.arch.input
        );
        for (name, v) in [("norm_mean", &self.norm_mean), ("norm_std", &self.norm_std)] {
            anyhow::ensure!(
                v.len() == c,
                "{name} has {} values for {c} channels",
                v.len()
            );
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                anyhow::bail!("{name}[{i}] is not finite ({})", v[i]);
            }
        }
        if let Some(i) = self.norm_std.iter().position(|&s| s <= 0.0) {
            anyhow::bail!("norm_std[{i}] must be > 0, found {}", self.norm_std[i]);
        }
        Ok(())
    }
}

/// A checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// `config.json`.
    pub config: CheckpointConfig,
    /// `model.safetensors`.
    pub params: Params,
}

/// The bytes of `model.safetensors` for `params`.
///
/// # Errors
/// A serialization failure of the `safetensors` crate.
pub fn weights_to_bytes(params: &Params) -> anyhow::Result<Vec<u8>> {
    let tensors = params.tensors();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, data)| {
            let b = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, b)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, b) in &bytes {
        views.push((
            name.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), b)
                .with_context(|| format!("tensor `{name}`"))?,
        ));
    }
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("tinyvae".to_string(), FORMAT.to_string()),
    ]);
    safetensors::serialize(views, Some(meta)).context("serializing safetensors")
}

/// Parses `model.safetensors` bytes against `arch` (`origin` names the file in messages).
///
/// # Errors
/// A malformed file, a missing, unexpected, non-f32, wrongly shaped or non-finite tensor, or a
/// `decoder.logvar` that does not fit the noise kind; the message names the tensor.
pub fn weights_from_bytes(bytes: &[u8], arch: &Arch, origin: &str) -> anyhow::Result<Params> {
    arch.validate()?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{origin}: not a valid safetensors file: {e}"))?;
    let specs = arch.tensor_specs();
    let mut unexpected: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !specs.iter().any(|s| s.name == *n))
        .collect();
    unexpected.sort_unstable();
    if let Some(n) = unexpected.first() {
        anyhow::bail!(
            "{origin}: unexpected tensor `{n}` (not part of the architecture in {CONFIG_FILE}; \
             expected exactly: {})",
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    for spec in &specs {
        let name = &spec.name;
        let t = match st.tensor(name) {
            Ok(t) => t,
            Err(_) if name == "decoder.logvar" && arch.noise == NoiseKind::Unit => {
                values.insert(name.clone(), vec![0.0; arch.input]);
                continue;
            }
            Err(_) => anyhow::bail!("{origin}: missing tensor `{name}` (shape {:?})", spec.shape),
        };
        anyhow::ensure!(
            t.dtype() == Dtype::F32,
            "{origin}: tensor `{name}` has dtype {:?}, expected F32",
            t.dtype()
        );
        anyhow::ensure!(
            t.shape() == spec.shape.as_slice(),
            "{origin}: tensor `{name}` has shape {:?}, the architecture expects {:?}",
            t.shape(),
            spec.shape
        );
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            anyhow::bail!(
                "{origin}: tensor `{name}` element {i} is not finite ({})",
                v[i]
            );
        }
        values.insert(name.clone(), v);
    }
    let mut take = |name: &str| values.remove(name).unwrap_or_default();
    let mut lin = |name: &str, inp: usize, out: usize| Linear {
        weight: take(&format!("{name}.weight")),
        bias: take(&format!("{name}.bias")),
        in_features: inp,
        out_features: out,
    };
    let mut encoder = Vec::new();
    let mut decoder = Vec::new();
    let mut heads = Vec::new();
    let mut decoder_out = None;
    for (name, inp, out) in arch.dense_layers() {
        let l = lin(&name, inp, out);
        if name.starts_with("encoder.") {
            encoder.push(l);
        } else if name == "decoder.out" {
            decoder_out = Some(l);
        } else if name.starts_with("decoder.") {
            decoder.push(l);
        } else {
            heads.push(l);
        }
    }
    let mut lv = take("decoder.logvar");
    let c = arch.channels;
    match arch.noise {
        NoiseKind::PerFeature => {}
        NoiseKind::PerChannel => {
            if let Some(j) = (0..lv.len()).find(|&j| lv[j].to_bits() != lv[j % c].to_bits()) {
                anyhow::bail!(
                    "{origin}: tensor `decoder.logvar` element {j} (time {}, channel {}) is {} \
                     but per_channel noise needs it equal to element {} ({})",
                    j / c,
                    j % c,
                    lv[j],
                    j % c,
                    lv[j % c]
                );
            }
        }
        NoiseKind::Unit => {
            if let Some(j) = lv.iter().position(|&v| v != 0.0) {
                anyhow::bail!(
                    "{origin}: tensor `decoder.logvar` element {j} is {} but unit noise needs 0",
                    lv[j]
                );
            }
        }
    }
    for v in &mut lv {
        *v = v.clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX);
    }
    let mut heads = heads.into_iter();
    let (Some(mu), Some(logvar), Some(decoder_out)) = (heads.next(), heads.next(), decoder_out)
    else {
        anyhow::bail!("internal: architecture without heads");
    };
    let p = Params {
        encoder,
        mu,
        logvar,
        decoder,
        decoder_out,
        decoder_logvar: lv,
    };
    p.check_shapes(arch)?;
    Ok(p)
}

/// Writes `ck` as the checkpoint directory `dir` (created if needed; see the module doc for
/// atomicity). Existing files other than the two of the checkpoint are left alone.
///
/// # Errors
/// An invalid config, weights that do not match its arch, non-finite weights, or I/O errors
/// (naming the path).
pub fn save(dir: &Path, ck: &Checkpoint) -> anyhow::Result<()> {
    ck.config.validate().context("checkpoint config")?;
    ck.params.check_shapes(&ck.config.arch)?;
    anyhow::ensure!(
        ck.params.all_finite(),
        "refusing to save non-finite weights"
    );
    let weights = weights_to_bytes(&ck.params)?;
    let mut json = serde_json::to_string_pretty(&ck.config)?;
    json.push('\n');
    let files = [
        (WEIGHTS_FILE, weights.as_slice()),
        (CONFIG_FILE, json.as_bytes()),
    ];
    crate::output::write_dir_files(dir, &files)
}

/// Reads and validates the checkpoint directory `dir`.
///
/// # Errors
/// A missing directory or file, malformed JSON, an invalid config, or weights that do not
/// match it (naming the file and the tensor).
pub fn load(dir: &Path) -> anyhow::Result<Checkpoint> {
    anyhow::ensure!(
        dir.is_dir(),
        "{}: not a checkpoint directory (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)",
        dir.display()
    );
    let cpath = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&cpath).with_context(|| format!("reading {}", cpath.display()))?;
    let config: CheckpointConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid checkpoint config", cpath.display()))?;
    config
        .validate()
        .with_context(|| format!("{}: invalid checkpoint config", cpath.display()))?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).with_context(|| format!("reading {}", wpath.display()))?;
    let params = weights_from_bytes(&bytes, &config.arch, &wpath.display().to_string())?;
    Ok(Checkpoint { config, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Arch;

    fn sample(noise: NoiseKind) -> Checkpoint {
        let arch = Arch {
            input: 12,
            encoder_hidden: vec![5, 4],
            latent: 2,
            decoder_hidden: vec![3],
            noise,
            channels: 3,
        };
        let mut params = Params::init(&arch, 42).unwrap();
        params.decoder_logvar = match noise {
            NoiseKind::PerFeature => (0..12).map(|j| j as f32 * 0.37 - 2.0).collect(),
            NoiseKind::PerChannel => (0..12).map(|j| (j % 3) as f32 * 0.5 - 0.25).collect(),
            NoiseKind::Unit => vec![0.0; 12],
        };
        let mut config = CheckpointConfig::new(
            vec!["a".into(), "b".into(), "c".into()],
            4,
            2,
            vec![0.1, -1.0 / 3.0, 1e-7],
            vec![1.0, 0.3, 7.0e4],
            arch,
            TrainConfig::default(),
        );
        config.threshold = Some(serde_json::json!({"elbo": 12.5, "fpr": 0.01}));
        config
            .extra
            .insert("note".into(), serde_json::json!("kept"));
        Checkpoint { config, params }
    }

    fn bits(p: &Params) -> Vec<(String, Vec<u32>)> {
        p.tensors()
            .into_iter()
            .map(|(n, _, d)| (n, d.iter().map(|v| v.to_bits()).collect()))
            .collect()
    }

    #[test]
    fn round_trip_is_bit_exact_for_every_noise_kind() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, noise) in [
            NoiseKind::PerFeature,
            NoiseKind::PerChannel,
            NoiseKind::Unit,
        ]
        .into_iter()
        .enumerate()
        {
            let ck = sample(noise);
            let dir = tmp.path().join(format!("ck{i}/nested"));
            save(&dir, &ck).unwrap();
            let back = load(&dir).unwrap();
            assert_eq!(bits(&back.params), bits(&ck.params), "{noise:?}");
            assert_eq!(back.config, ck.config, "{noise:?}");
            // Overwrite in place, then load again.
            save(&dir, &back).unwrap();
            assert_eq!(bits(&load(&dir).unwrap().params), bits(&ck.params));
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names.len(), 2, "no temporary leftovers: {names:?}");
        }
    }

    #[test]
    fn f32_json_round_trip_is_exact() {
        // norm statistics go through JSON: check the shortest-repr round trip on many values.
        let mut x = 0x1234_5678u32;
        let vals: Vec<f32> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                f32::from_bits(x & 0x7f7f_ffff | (x & 0x8000_0000))
            })
            .filter(|v| v.is_finite())
            .collect();
        let s = serde_json::to_string(&vals).unwrap();
        let back: Vec<f32> = serde_json::from_str(&s).unwrap();
        for (a, b) in vals.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} -> {b:e}");
        }
    }

    fn write_tensor_file(dir: &Path, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(&str, TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::write(
            dir.join(WEIGHTS_FILE),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
    }

    fn owned(p: &Params) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        p.tensors()
            .into_iter()
            .map(|(n, s, d)| (n, s, d.to_vec()))
            .collect()
    }

    #[test]
    fn load_rejects_bad_tensors_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ck");
        let ck = sample(NoiseKind::PerFeature);
        save(&dir, &ck).unwrap();
        let base = owned(&ck.params);

        // Wrong shape.
        let mut t = base.clone();
        let i = t
            .iter()
            .position(|(n, _, _)| n == "decoder.0.weight")
            .unwrap();
        t[i].1 = vec![2, 3];
        t[i].2.truncate(6);
        write_tensor_file(&dir, t);
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(
            e.contains("`decoder.0.weight`") && e.contains("[2, 3]") && e.contains("[3, 2]"),
            "{e}"
        );

        // Missing tensor.
        let t: Vec<_> = base
            .iter()
            .filter(|(n, _, _)| n != "mu.bias")
            .cloned()
            .collect();
        write_tensor_file(&dir, t);
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("missing tensor `mu.bias`"), "{e}");

        // Unexpected extra tensor (e.g. a third encoder layer).
        let mut t = base.clone();
        t.push(("encoder.2.weight".into(), vec![1, 1], vec![0.0]));
        write_tensor_file(&dir, t);
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("unexpected tensor `encoder.2.weight`"), "{e}");

        // Non-finite value.
        let mut t = base.clone();
        t[0].2[3] = f32::NAN;
        write_tensor_file(&dir, t);
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(
            e.contains("`encoder.0.weight` element 3 is not finite"),
            "{e}"
        );

        // Config and weights disagree about the architecture.
        write_tensor_file(&dir, base.clone());
        load(&dir).unwrap();
        let mut cfg = ck.config.clone();
        cfg.arch.latent = 3;
        std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&cfg).unwrap()).unwrap();
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(
            e.contains("`mu.weight`") && e.contains("[2, 4]") && e.contains("[3, 4]"),
            "{e}"
        );

        // Bad config.
        let mut cfg = ck.config.clone();
        cfg.window = 5;
        std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&cfg).unwrap()).unwrap();
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("arch.input"), "{e}");
        let mut cfg = ck.config.clone();
        cfg.format = "other".into();
        std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&cfg).unwrap()).unwrap();
        assert!(format!("{:#}", load(&dir).unwrap_err()).contains("format"));
        std::fs::write(dir.join(CONFIG_FILE), "{").unwrap();
        assert!(format!("{:#}", load(&dir).unwrap_err()).contains(CONFIG_FILE));
        assert!(load(&tmp.path().join("nope")).is_err());
    }

    #[test]
    fn noise_kind_constraints_on_decoder_logvar() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ck");
        let ck = sample(NoiseKind::PerChannel);
        save(&dir, &ck).unwrap();
        let mut t = owned(&ck.params);
        t.last_mut().unwrap().2[7] += 1.0;
        write_tensor_file(&dir, t);
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("`decoder.logvar` element 7"), "{e}");

        // Unit noise: the tensor may be absent (a PyTorch model without it).
        let ck = sample(NoiseKind::Unit);
        let dir = tmp.path().join("unit");
        save(&dir, &ck).unwrap();
        let t: Vec<_> = owned(&ck.params)
            .into_iter()
            .filter(|(n, _, _)| n != "decoder.logvar")
            .collect();
        write_tensor_file(&dir, t);
        assert_eq!(load(&dir).unwrap().params, ck.params);
    }

    #[test]
    fn save_refuses_mismatched_params_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ck = sample(NoiseKind::PerFeature);
        ck.params.mu.bias.push(0.0);
        let dir = tmp.path().join("ck");
        assert!(save(&dir, &ck).is_err());
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
