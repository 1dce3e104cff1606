//! The sensor-loss table of issue 13: ROC AUC of the product-of-experts VAE with every sensor
//! group present and with each one dead, next to what users would do without it.
//!
//! ```text
//! cargo run --release -p tinyvae-host-tools --bin poe_bench -- [OPTIONS]
//!   --train FILE    training stream (default: the bundled train.csv)
//!   --test FILE     labeled test stream (default: the bundled test.csv)
//!   --seeds N       seeds 0..N (default 3)
//!   --epochs N      epochs of every training run (default: the `train` default, 300)
//!   --latent Z      latent size of every model (default 32, what `--latent auto` picks for
//!                   the single VAE on the bundled set)
//!   --groups SPEC   e.g. `acc=ax,ay,az;gyro=wx,wy,wz` (the default)
//!   --single-weight W  weight of each single group's ELBO in PoE training (default 1)
//!   --full-weight W    weight of the full set's ELBO in PoE training (default 1)
//!   --lr-final F    PoE learning rate falls along a half cosine to F x lr (default 1: constant)
//!   --decoder L     PoE decoder layout: per-group (default, as `tinyvae train --group`) or shared
//!   --hidden W      encoder hidden width of every model (default 60)
//!   --decoder-hidden W  PoE decoder hidden width (default: 44 per group; shared: --hidden)
//!   --batch N       minibatch of every model (default 64)
//!   --first-seed S  seeds S..S+N (default 0)
//!   --noise-ar K    PoE decoder noise: auto (default, as `tinyvae train --group`), 0 (the
//!                   trained per-feature noise) or an autoregressive order 1 to 3
//!   --poe-only      skip the comparison models
//!   --json FILE     also write the figures as JSON
//! ```
//!
//! Per seed, on windows of 64 samples (training stride 1, test stride 32), standardized with
//! the training part's statistics, thresholds and ranges from training/validation data only:
//! - `poe`: the MVAE (`train::poe`), one 60-wide expert per group, one 44-wide decoder per
//!   group, trained on the full set and each single group, then its autoregressive decoder
//!   noise fitted (`train::poe::noise`, order by validation likelihood); scored with `-ELBO_S`
//!   for every subset.
//! - `single, mean-filled`: today's single VAE (384-60-Z / Z-60-384); a dead group's channels
//!   are replaced by their training mean (0 after standardization).
//! - `per-group VAEs`: one single VAE per group, trained on that group's channels only; the
//!   full-set row sums their two scores.
//!
//! Every figure is the int8 model's (post-training quantization as `tinyvae quantize`) unless
//! the column says f32.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tinyvae::{GroupSet, ScoreKind};
use tinyvae_host_tools::data::{self, Norm, Windows};
use tinyvae_host_tools::metrics::roc_auc;
use tinyvae_host_tools::model::{score_windows, HostModel, PoeHost};
use tinyvae_host_tools::pipeline::calibrate::split_windows;
use tinyvae_host_tools::pipeline::config::{default_decoder_hidden, resolve, ModelOpts};
use tinyvae_host_tools::pipeline::default_data;
use tinyvae_host_tools::train::poe::{
    fit_ar_noise, train_poe_recipe, DecoderLayout, NoiseOrder, PoeArch, PoeRecipe,
};
use tinyvae_host_tools::train::{self, Arch};

struct Opts {
    train: PathBuf,
    test: PathBuf,
    seeds: u64,
    epochs: Option<usize>,
    latent: usize,
    groups: String,
    json: Option<PathBuf>,
    recipe: PoeRecipe,
    first_seed: u64,
    poe_only: bool,
    hidden: Option<usize>,
    decoder_hidden: Option<usize>,
    batch: Option<usize>,
    decoder: DecoderLayout,
    noise: NoiseOrder,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        train: default_data("train.csv"),
        test: default_data("test.csv"),
        seeds: 3,
        epochs: None,
        latent: 32,
        groups: "acc=ax,ay,az;gyro=wx,wy,wz".into(),
        json: None,
        recipe: PoeRecipe::default(),
        first_seed: 0,
        poe_only: false,
        hidden: None,
        decoder_hidden: None,
        batch: None,
        decoder: DecoderLayout::PerGroup,
        noise: NoiseOrder::Auto,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--train" => o.train = val()?.into(),
            "--test" => o.test = val()?.into(),
            "--seeds" => o.seeds = val()?.parse()?,
            "--epochs" => o.epochs = Some(val()?.parse()?),
            "--latent" => o.latent = val()?.parse()?,
            "--groups" => o.groups = val()?,
            "--json" => o.json = Some(val()?.into()),
            "--single-weight" => o.recipe.single_weight = val()?.parse()?,
            "--full-weight" => o.recipe.full_weight = val()?.parse()?,
            "--lr-final" => o.recipe.lr_final = val()?.parse()?,
            "--decoder" => {
                o.decoder = match val()?.as_str() {
                    "per-group" => DecoderLayout::PerGroup,
                    "shared" => DecoderLayout::Shared,
                    v => bail!("--decoder: per-group or shared, found {v}"),
                }
            }
            "--hidden" => o.hidden = Some(val()?.parse()?),
            "--decoder-hidden" => o.decoder_hidden = Some(val()?.parse()?),
            "--batch" => o.batch = Some(val()?.parse()?),
            "--first-seed" => o.first_seed = val()?.parse()?,
            "--poe-only" => o.poe_only = true,
            "--noise-ar" => o.noise = val()?.parse().map_err(anyhow::Error::msg)?,
            _ => bail!("unknown option {a}"),
        }
    }
    Ok(o)
}

/// Windows restricted to `chans` (time-major, channel order kept).
fn gather(w: &Windows, c: usize, chans: &[usize]) -> Vec<f32> {
    w.iter()
        .flat_map(|x| {
            x.chunks_exact(c)
                .flat_map(|s| chans.iter().map(move |&ch| s[ch]))
        })
        .collect()
}

/// Windows with the channels not in `keep` set to 0 (the training mean).
fn mean_filled(w: &Windows, c: usize, keep: &[usize]) -> Vec<f32> {
    w.iter()
        .flat_map(|x| {
            x.chunks_exact(c).flat_map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(ch, &v)| if keep.contains(&ch) { v } else { 0.0 })
            })
        })
        .collect()
}

fn quantized(
    p: &train::Params,
    cal: impl Iterator<Item = Vec<f32>>,
) -> Result<(HostModel, HostModel)> {
    let f = HostModel::float(p)?;
    let cal: Vec<Vec<f32>> = cal.collect();
    let r = f.calibrate(cal.iter().map(|v| v.as_slice()))?;
    let q = HostModel::int8(p, &r)?;
    Ok((f, q))
}

fn elbo(m: &HostModel, flat: &[f32]) -> Result<Vec<f32>> {
    Ok(
        score_windows(m, flat.chunks_exact(m.input), ScoreKind::Elbo, 0)?
            .iter()
            .map(|s| s.score)
            .collect(),
    )
}

fn main() -> Result<()> {
    let o = parse()?;
    let mut r = resolve(&ModelOpts {
        quiet: true,
        ..ModelOpts::default()
    })?;
    if let Some(h) = o.hidden {
        r.encoder_hidden = vec![h];
    }
    if let Some(b) = o.batch {
        r.train.batch = b;
    }
    let series = data::load_csv(&o.train)?;
    let names = series.channels.clone();
    let c = names.len();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for part in o.groups.split(';') {
        let (name, chans) = part.split_once('=').context("group NAME=ch,ch")?;
        let idx = chans
            .split(',')
            .map(|n| {
                names
                    .iter()
                    .position(|x| x == n)
                    .with_context(|| format!("no channel {n}"))
            })
            .collect::<Result<Vec<_>>>()?;
        groups.push((name.to_string(), idx));
    }
    let g = groups.len();
    let norm = Norm::fit_rows(
        &series,
        0..data::split_row(&series, r.val_fraction, r.window)?,
    );
    let split = split_windows(&series, r.window, r.train_stride, r.val_fraction, &norm)?;
    let test_series = data::load_csv(&o.test)?.select_channels(&names)?;
    let test = Windows::cut(&test_series, r.window, r.stride, &norm)?;
    let labels = test.labels.clone().context("test stream has no labels")?;
    let subsets: Vec<GroupSet> = (1..(1u8 << g)).rev().map(GroupSet).collect();
    let subset_name = |s: GroupSet| {
        s.iter()
            .map(|i| groups[i].0.clone())
            .collect::<Vec<_>>()
            .join("+")
    };
    let test_flat: Vec<f32> = test.iter().flatten().copied().collect();
    let mut rows: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut cost = json!({});
    for seed in o.first_seed..o.first_seed + o.seeds {
        let mut cfg = r.train.clone();
        cfg.seed = seed;
        cfg.quiet = true;
        if let Some(e) = o.epochs {
            cfg.epochs = e;
        }
        // Product of experts.
        let t0 = Instant::now();
        let arch = PoeArch {
            window: r.window,
            channels: c,
            groups: groups.iter().map(|(_, v)| v.clone()).collect(),
            encoder_hidden: r.encoder_hidden.clone(),
            latent: o.latent,
            decoder_hidden: o.decoder_hidden.map_or_else(
                || default_decoder_hidden(o.decoder, &r.encoder_hidden),
                |w| vec![w],
            ),
            noise: r.noise,
            decoder: o.decoder,
        };
        let (mut p, rep) =
            train_poe_recipe(&arch, &cfg, &o.recipe, split.train.view(), split.val.view())?;
        let fit = fit_ar_noise(&p, split.train.view(), split.val.view(), o.noise)?;
        p.noise = fit.chosen;
        let noise_line: Vec<String> = fit
            .validation
            .iter()
            .map(|(k, v)| format!("{k}: {v:.1}"))
            .collect();
        eprintln!(
            "seed {seed}: decoder noise AR order {} (validation log-likelihood per window by order: {})",
            p.noise.as_ref().map_or(0, |n| n.order),
            noise_line.join(", ")
        );
        let f = PoeHost::float(&p)?;
        let ranges = f.calibrate(split.train.iter())?;
        let q = PoeHost::int8(&p, &ranges)?;
        let val_elbo = rep.history[rep.best_epoch - 1].val_elbo.unwrap_or(f64::NAN);
        eprintln!(
            "seed {seed}: poe trained in {:.1} s ({} epochs, best {}, validation objective {:.2} nats, {} params, {} MACs, {} B int8)",
            t0.elapsed().as_secs_f64(),
            rep.history.len(),
            rep.best_epoch,
            -val_elbo,
            rep.n_params,
            q.macs(),
            q.param_bytes(true)
        );
        for &s in &subsets {
            for (prec, m) in [("int8", &q), ("f32", &f)] {
                let sc = m.scores(test.iter(), s, ScoreKind::Elbo, 0)?;
                let auc = roc_auc(&sc, &labels).context("one class only")?;
                eprintln!("seed {seed}: poe {prec} {} {auc:.4}", subset_name(s));
                rows.entry(format!("poe {prec} | {}", subset_name(s)))
                    .or_default()
                    .push(auc);
            }
        }
        cost["poe"] = json!({"macs": q.macs(), "param_bytes_int8": q.param_bytes(true)});
        if o.poe_only {
            continue;
        }
        // Today's single VAE, dead channels mean-filled.
        let t0 = Instant::now();
        let sarch = Arch {
            input: r.window * c,
            encoder_hidden: r.encoder_hidden.clone(),
            latent: o.latent,
            decoder_hidden: r.encoder_hidden.iter().rev().copied().collect(),
            noise: r.noise,
            channels: c,
        };
        let (sp, _) = train::train_views(&sarch, &cfg, split.train.view(), split.val.view())?;
        let (_, sq) = quantized(&sp, split.train.iter().map(|w| w.to_vec()))?;
        eprintln!(
            "seed {seed}: single trained in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        for &s in &subsets {
            let keep: Vec<usize> = s.iter().flat_map(|i| groups[i].1.clone()).collect();
            let x = if s == GroupSet::first(g) {
                test_flat.clone()
            } else {
                mean_filled(&test, c, &keep)
            };
            let auc = roc_auc(&elbo(&sq, &x)?, &labels).context("one class only")?;
            rows.entry(format!("single int8, mean-filled | {}", subset_name(s)))
                .or_default()
                .push(auc);
        }
        cost["single"] = json!({"macs": sq.macs(), "param_bytes_int8": sq.param_bytes()});
        // One VAE per group.
        let mut per_group = Vec::new();
        let mut bytes = 0;
        for (gi, (_, chans)) in groups.iter().enumerate() {
            let t0 = Instant::now();
            let cg = chans.len();
            let ga = Arch {
                input: r.window * cg,
                channels: cg,
                ..sarch.clone()
            };
            let tr = gather(&split.train, c, chans);
            let va = gather(&split.val, c, chans);
            let (gp, _) = train::train(&ga, &cfg, &tr, &va)?;
            let (_, gq) = quantized(&gp, tr.chunks_exact(ga.input).map(|w| w.to_vec()))?;
            bytes += gq.param_bytes();
            let sc = elbo(&gq, &gather(&test, c, chans))?;
            eprintln!(
                "seed {seed}: group {gi} VAE trained in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            per_group.push(sc);
        }
        cost["per_group"] = json!({"param_bytes_int8": bytes});
        for &s in &subsets {
            let sum: Vec<f32> = (0..test.len())
                .map(|i| s.iter().map(|gi| per_group[gi][i]).sum())
                .collect();
            let auc = roc_auc(&sum, &labels).context("one class only")?;
            rows.entry(format!("per-group VAEs int8 | {}", subset_name(s)))
                .or_default()
                .push(auc);
        }
    }
    println!("| model | present | ROC AUC per seed | mean |");
    println!("|---|---|---|---|");
    for (k, v) in &rows {
        let (m, s) = k.split_once(" | ").unwrap_or((k, ""));
        let per: Vec<String> = v.iter().map(|a| format!("{a:.4}")).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        println!("| {m} | {s} | {} | {mean:.4} |", per.join(" / "));
    }
    println!("cost: {cost}");
    if let Some(path) = o.json {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&json!({"rows": rows, "cost": cost}))?,
        )?;
    }
    Ok(())
}
