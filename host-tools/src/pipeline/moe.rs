//! Mixture-of-experts steps (`tinyvae train --experts K`): training ([`train_moe_model`]),
//! calibration of the two runtime mixtures ([`calibrate_moe`]), and the checkpoint layout.
//!
//! # Checkpoint
//! A mixture is an ordinary checkpoint directory whose `model.safetensors` holds expert 0 (so
//! every tool that reads the shapes reads them there) plus:
//! - `expert1.safetensors` ... `expert{K-1}.safetensors`: the other experts, same tensor names;
//! - `config.json` key `moe` ([`MoeConfig`]): `experts` (K), the f32 `gate` (weights on the
//!   per-channel mean and mean square, see `tinyvae::SummaryGate`), each expert's int8 activation
//!   `ranges`, and the `training` diagnostics (EM rounds, shares, the gate's validation
//!   agreement). The `threshold` and `calibration` objects are the mixture's (top-1 scores).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calibrate::{calibrate_models, split_windows, CalibOpts, TrainSplit};
use super::config::{resolve, LatentSpec, ModelOpts};
use super::train::Trained;
use crate::checkpoint::{self, Checkpoint, CheckpointConfig};
use crate::data::{self, Norm, Windows};
use crate::model::{HostGate, HostModel, Ranges};
use crate::train::{self, moe, Arch, Params};

/// The `config.json` key of a mixture.
pub const MOE_KEY: &str = "moe";

/// `config.json`'s `moe` object (module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Number of experts K.
    pub experts: usize,
    /// The gate.
    pub gate: HostGate,
    /// Each expert's int8 activation ranges.
    pub ranges: Vec<Ranges>,
    /// Training diagnostics.
    #[serde(default)]
    pub training: Value,
}

/// The file of expert `k >= 1` (expert 0 is `model.safetensors`).
pub fn expert_file(k: usize) -> String {
    format!("expert{k}.safetensors")
}

/// The checkpoint files of a mixture of `k` experts.
pub fn moe_files(k: usize) -> Vec<String> {
    let mut v: Vec<String> = super::CHECKPOINT_FILES
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend((1..k).map(expert_file));
    v
}

/// The `moe` object of a checkpoint, if it is a mixture.
///
/// # Errors
/// A malformed `moe` object.
pub fn moe_config(c: &CheckpointConfig) -> Result<Option<MoeConfig>> {
    c.extra
        .get(MOE_KEY)
        .map(|v| serde_json::from_value(v.clone()).context("config.json: invalid `moe`"))
        .transpose()
}

/// A mixture's checkpoint with all its experts' weights.
pub struct MoeCheckpoint {
    /// The checkpoint (expert 0's weights, the `moe` object in its config).
    pub ck: Checkpoint,
    /// Every expert's weights (index 0 equals `ck.params`).
    pub experts: Vec<Params>,
}

/// Writes a mixture's checkpoint (module doc), all files or none.
///
/// # Errors
/// As [`checkpoint::save`], for any expert.
pub fn save_moe(dir: &Path, m: &MoeCheckpoint) -> Result<()> {
    m.ck.config.validate().context("checkpoint config")?;
    let mut blobs = Vec::new();
    for (k, p) in m.experts.iter().enumerate() {
        p.check_shapes(&m.ck.config.arch)
            .with_context(|| format!("expert {k}"))?;
        anyhow::ensure!(
            p.all_finite(),
            "refusing to save non-finite weights (expert {k})"
        );
        blobs.push(checkpoint::weights_to_bytes(p)?);
    }
    let mut json = serde_json::to_string_pretty(&m.ck.config)?;
    json.push('\n');
    let names: Vec<String> = (1..m.experts.len()).map(expert_file).collect();
    let mut files: Vec<(&str, &[u8])> = vec![(checkpoint::CONFIG_FILE, json.as_bytes())];
    if let Some(b0) = blobs.first() {
        files.push((checkpoint::WEIGHTS_FILE, b0));
    }
    for (n, b) in names.iter().zip(blobs.iter().skip(1)) {
        files.push((n, b));
    }
    crate::output::write_dir_files(dir, &files)
}

/// Reads every expert of the mixture checkpoint `ck` in `dir`.
///
/// # Errors
/// A missing or mismatched expert file (naming it).
pub fn load_experts(dir: &Path, ck: &Checkpoint, k: usize) -> Result<Vec<Params>> {
    let mut out = vec![ck.params.clone()];
    for j in 1..k {
        let path = dir.join(expert_file(j));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        out.push(checkpoint::weights_from_bytes(
            &bytes,
            &ck.config.arch,
            &path.display().to_string(),
        )?);
    }
    Ok(out)
}

/// The f32 and int8 runtime mixtures of `experts` behind `m.gate` with `m.ranges`.
///
/// # Errors
/// A count that differs from `m.experts`, or invalid weights or gate.
pub fn build_mixtures(m: &MoeConfig, experts: &[Params]) -> Result<(HostModel, HostModel)> {
    if experts.len() != m.experts || m.ranges.len() != m.experts {
        bail!(
            "config.json `moe`: {} experts, {} weight files, {} ranges",
            m.experts,
            experts.len(),
            m.ranges.len()
        );
    }
    let f: Vec<HostModel> = experts
        .iter()
        .map(HostModel::float)
        .collect::<Result<_>>()?;
    let q: Vec<HostModel> = experts
        .iter()
        .zip(&m.ranges)
        .map(|(p, r)| HostModel::int8(p, r))
        .collect::<Result<_>>()?;
    Ok((
        HostModel::mixture(m.gate.clone(), f)?,
        HostModel::mixture(m.gate.clone(), q)?,
    ))
}

/// Loads the runtime mixtures of the checkpoint in `dir` (`None` if it is a single VAE).
///
/// # Errors
/// As [`load_experts`] and [`build_mixtures`].
pub fn load_mixtures(dir: &Path, ck: &Checkpoint) -> Result<Option<(HostModel, HostModel)>> {
    let Some(m) = moe_config(&ck.config)? else {
        return Ok(None);
    };
    let experts = load_experts(dir, ck, m.experts)?;
    build_mixtures(&m, &experts).map(Some)
}

/// Each expert's int8 ranges, from the training windows the gate routes to it (all training
/// windows for an expert the gate never picks).
///
/// # Errors
/// A window the models reject.
pub fn expert_ranges(gate: &HostGate, experts: &[Params], train: &Windows) -> Result<Vec<Ranges>> {
    let g = gate.view();
    let routes: Vec<usize> = train
        .iter()
        .map(|x| g.route(x).map(|r| usize::from(r.expert)).unwrap_or(0))
        .collect();
    experts
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let f = HostModel::float(p)?;
            let mine = train
                .iter()
                .zip(&routes)
                .filter(|(_, &r)| r == k)
                .map(|(x, _)| x);
            if routes.contains(&k) {
                f.calibrate(mine)
            } else {
                f.calibrate(train.iter())
            }
        })
        .collect()
}

/// Calibrates a mixture: each expert's int8 ranges, then the top-1 thresholds of both
/// mixtures (as [`calibrate_models`]); writes the `moe` object into `mc.ck`.
///
/// # Errors
/// As [`calibrate_models`].
pub fn calibrate_moe(
    mc: &mut MoeCheckpoint,
    gate: HostGate,
    training: Value,
    split: &TrainSplit,
    train_data: &Path,
    val_fraction: f64,
    c: &CalibOpts,
) -> Result<(HostModel, HostModel)> {
    let ranges = expert_ranges(&gate, &mc.experts, &split.train)?;
    let cfg = MoeConfig {
        experts: mc.experts.len(),
        gate,
        ranges,
        training,
    };
    let (f, q) = build_mixtures(&cfg, &mc.experts)?;
    let r0 = cfg.ranges.first().cloned().context("no experts")?;
    let out = calibrate_models(&mut mc.ck, split, train_data, val_fraction, c, (f, q), r0)?;
    mc.ck
        .config
        .extra
        .insert(MOE_KEY.to_string(), serde_json::to_value(&cfg)?);
    Ok(out)
}

/// Trains a mixture of `k` experts on the stream at `data_path` (see `crate::train::moe`) and
/// calibrates it. `--latent auto` picks the latent size as for a single VAE (a single-VAE
/// selection run first).
///
/// # Errors
/// Invalid options, bad data, or a failed training run.
pub fn train_moe_model(
    data_path: &Path,
    o: &ModelOpts,
    c: &CalibOpts,
    k: usize,
) -> Result<(Trained, Vec<Params>)> {
    let r = resolve(o)?;
    let t0 = Instant::now();
    let latent = match r.latent {
        LatentSpec::Fixed(z) => z,
        LatentSpec::Auto => {
            super::train::train_model(data_path, o, c)?
                .ck
                .config
                .arch
                .latent
        }
    };
    let series = data::load_csv(data_path)?;
    let norm = Norm::fit_rows(
        &series,
        0..data::split_row(&series, r.val_fraction, r.window)?,
    );
    let split = split_windows(&series, r.window, r.train_stride, r.val_fraction, &norm)?;
    let ch = series.num_channels();
    let arch = Arch {
        input: r.window * ch,
        encoder_hidden: r.encoder_hidden.clone(),
        latent,
        decoder_hidden: r
            .decoder_hidden
            .clone()
            .unwrap_or_else(|| r.encoder_hidden.iter().rev().copied().collect()),
        noise: r.noise,
        channels: ch,
    };
    arch.validate()?;
    train::limits::check_arch(&arch)?;
    let mt = moe::train_mixture(
        &arch,
        &r.train,
        k,
        moe::DEFAULT_ROUNDS,
        &split.train,
        &split.val,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let config = CheckpointConfig::new(
        series.channels.clone(),
        r.window,
        r.stride,
        norm.mean.clone(),
        norm.std.clone(),
        arch,
        r.train.clone(),
    );
    let params = mt.experts.first().cloned().context("no experts")?;
    let mut mc = MoeCheckpoint {
        ck: Checkpoint { config, params },
        experts: mt.experts,
    };
    let (f32, int8) = calibrate_moe(
        &mut mc,
        mt.gate,
        mt.history,
        &split,
        data_path,
        r.val_fraction,
        c,
    )?;
    // The mixture's mean validation score (top-1 ELBO, f32): what choosing K compares.
    let val = super::calibrate::scores_of(&f32, &split.val, tinyvae::ScoreKind::Elbo, 0)?;
    let mean = val.iter().map(|&v| f64::from(v)).sum::<f64>() / val.len().max(1) as f64;
    if let Some(t) = mc
        .ck
        .config
        .extra
        .get_mut(MOE_KEY)
        .and_then(|m| m.get_mut("training"))
        .and_then(Value::as_object_mut)
    {
        t.insert("val_score_top1_mean".into(), mean.into());
    }
    let report = mt.reports.into_iter().next().context("no experts")?;
    Ok((
        Trained {
            ck: mc.ck,
            seconds,
            report,
            f32,
            int8,
            split,
        },
        mc.experts,
    ))
}

/// `mixture of 3 experts: training shares 0.41 0.33 0.26 after 2 EM rounds; gate agrees with
/// the best expert on 97.1 % of validation windows`.
pub fn summary_line(m: &MoeConfig) -> String {
    let rounds = m.training["rounds"].as_array().cloned().unwrap_or_default();
    let accepted = rounds
        .iter()
        .filter(|r| r["accepted"].as_bool() == Some(true))
        .count();
    let last_shares = rounds
        .iter()
        .rev()
        .find(|r| r.get("accepted").is_none() || r["accepted"].as_bool() == Some(true))
        .and_then(|r| r["shares"].as_array().cloned())
        .unwrap_or_default();
    let shares: Vec<String> = last_shares
        .iter()
        .map(|v| format!("{:.2}", v.as_f64().unwrap_or(f64::NAN)))
        .collect();
    let mut line = format!(
        "mixture of {} experts: training shares {} after {} EM round(s); gate agrees with the best expert on {:.1} % of validation windows",
        m.experts,
        shares.join(" "),
        accepted,
        100.0 * m.training["gate_agreement_val"].as_f64().unwrap_or(f64::NAN)
    );
    if m.training["fallback_to_single"].as_bool() == Some(true) {
        line.push_str(&format!(
            "; a single VAE had the better mean validation score ({:.2} vs {:.2} nats): every expert is a copy of it (--experts 1 gives the same ranking at 1/K the flash)",
            m.training["val_score_single"].as_f64().unwrap_or(f64::NAN),
            m.training["val_score_mixture"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    line
}

/// The keys `eval --json` adds for a mixture (`None` for a single VAE): `experts` (K),
/// `expert_share` (the share of the test windows the int8 detector routed to each expert, default
/// score), `roc_auc_int8_dense` (every expert, log-sum-exp, int8) beside `roc_auc_int8` (top-1,
/// what the chip runs), `macs_gate`, and `flash_bytes_int8` / `flash_bytes_f32` / `macs`
/// replaced by the mixture's (all experts and the gate; gate plus one expert).
///
/// # Errors
/// A window the detector or the experts reject.
pub fn eval_keys(
    m: &super::Loaded,
    series: &crate::data::Series,
    w: &Windows,
    labels: &[bool],
    stride: usize,
    seed: u64,
) -> Result<Option<serde_json::Map<String, Value>>> {
    let (Some(qm), Some(fm)) = (&m.int8.moe, &m.f32.moe) else {
        return Ok(None);
    };
    let kind = super::calibrate::score_kinds(super::calibrate::samples_of(&m.th))
        .into_iter()
        .find(|k| crate::model::score_name(*k) == m.th.score)
        .unwrap_or(tinyvae::ScoreKind::Elbo);
    let cfg = crate::stream::StreamConfig::new(kind, stride, seed, m.th.int8);
    let rows = crate::stream::run(&m.int8, &m.ck.config, series, &cfg)?;
    let k = qm.experts.len();
    let mut counts = vec![0usize; k];
    for r in &rows {
        if let Some(e) = r.report.expert {
            if let Some(c) = counts.get_mut(usize::from(e)) {
                *c += 1;
            }
        }
    }
    let total = counts.iter().sum::<usize>().max(1) as f64;
    let share: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
    let dense: Vec<f32> = qm
        .dense_scores(w.iter(), kind, seed)?
        .into_iter()
        .map(|d| d.0)
        .collect();
    let mut o = serde_json::Map::new();
    o.insert("experts".into(), k.into());
    o.insert("expert_share".into(), serde_json::to_value(share)?);
    o.insert(
        "roc_auc_int8_dense".into(),
        serde_json::to_value(crate::metrics::roc_auc(&dense, labels))?,
    );
    o.insert("macs_gate".into(), qm.gate.macs(m.int8.input).into());
    o.insert(
        "macs".into(),
        (m.int8.macs() + qm.gate.macs(m.int8.input)).into(),
    );
    o.insert("flash_bytes_int8".into(), qm.param_bytes().into());
    o.insert("flash_bytes_f32".into(), fm.param_bytes().into());
    Ok(Some(o))
}
