//! Export of a mixture of experts (`train --experts K`) as Rust source.
//!
//! Each expert is exported exactly as a single model (`export_int8` / `export_f32`) into its
//! own module `expert{k}` (its `MODEL` a `const`, so the top level can gather them), and the top
//! level defines what the firmware uses of any exported model: the shapes and normalization
//! (re-exported from `expert0`; every expert shares them), `THRESHOLD` and `SCORE` (the
//! mixture's top-1 score), `EXPERTS` (K), the f32 gate `GATE_W` / `GATE_B` (see
//! `tinyvae::SummaryGate`), `EXPERT_MODELS: [Expert; K]`, `type Model = Moe<'static, Expert>`
//! and `pub static MODEL: Model`. The header's hash covers the whole file as for a single model.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::{f, finish, table, F32};
use crate::checkpoint::Checkpoint;
use crate::model::HostModel;

/// The mixture `m` as Rust source, each expert written by `single` (`export_int8` or
/// `export_f32`).
///
/// # Errors
/// `m` is not a mixture, or `single` fails on an expert.
pub(super) fn export_mixture(
    ck: &Checkpoint,
    m: &HostModel,
    threshold: f32,
    single: fn(&Checkpoint, &HostModel, f32) -> Result<String>,
) -> Result<String> {
    let Some(moe) = &m.moe else {
        bail!("not a mixture of experts");
    };
    let k = moe.experts.len();
    let mut b = String::new();
    b.push_str("use tinyvae::{Moe, ScoreKind, SummaryGate};\n\n");
    b.push_str(
        "pub use expert0::{\n    CHANNELS, CHANNEL_NAMES, HIDDEN, INPUT, LATENT, NORM_MEAN, NORM_STD, STRIDE, WINDOW,\n};\n\n",
    );
    let _ = writeln!(
        b,
        "/// Alarm threshold on the mixture's top-1 score (nats): alarm when `score > THRESHOLD`.\npub const THRESHOLD: f32 = {};\n",
        f(threshold)
    );
    b.push_str(
        "/// The score `THRESHOLD` was calibrated for.\npub const SCORE: ScoreKind = ScoreKind::Elbo;\n\n",
    );
    let _ = writeln!(
        b,
        "/// Number of experts.\npub const EXPERTS: usize = {k};\n"
    );
    table(
        &mut b,
        "Gate weights, row-major `EXPERTS x 2 CHANNELS`: per-channel mean, then mean square.",
        "GATE_W",
        "[f32; EXPERTS * 2 * CHANNELS]",
        moe.gate.weight.iter().map(|&v| F32(v)),
        6,
    );
    table(
        &mut b,
        "Gate biases, one per expert.",
        "GATE_B",
        "[f32; EXPERTS]",
        moe.gate.bias.iter().map(|&v| F32(v)),
        4,
    );
    let mut summary = String::new();
    for (j, e) in moe.experts.iter().enumerate() {
        let src = single(ck, e, threshold)?;
        let mut lines = src.lines();
        if j == 0 {
            summary = lines
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches("// ")
                .to_string();
        }
        // Drop the header (three comment lines and a blank line).
        let body: Vec<&str> = src.lines().skip(4).collect();
        let _ = writeln!(
            b,
            "/// Expert {j}, exported as a single model.\npub mod expert{j} {{"
        );
        for l in body {
            let l = l.replace("pub static MODEL: Model", "pub const MODEL: Model");
            if l.is_empty() {
                b.push('\n');
            } else {
                let _ = writeln!(b, "    {l}");
            }
        }
        b.push_str("}\n\n");
    }
    b.push_str("/// The type of every expert.\npub type Expert = expert0::Model;\n\n");
    b.push_str("/// The model's type: the experts behind the gate.\npub type Model = Moe<'static, Expert>;\n\n");
    let names: Vec<String> = (0..k).map(|j| format!("expert{j}::MODEL")).collect();
    let _ = writeln!(
        b,
        "/// The experts, in the gate's order.\npub static EXPERT_MODELS: [Expert; EXPERTS] = [{}];\n",
        names.join(", ")
    );
    b.push_str("/// The model.\npub static MODEL: Model = Moe::new(\n    SummaryGate::new(&GATE_W, &GATE_B, CHANNELS),\n    &EXPERT_MODELS,\n);\n");
    Ok(finish(
        b,
        &format!("mixture of {k} experts, each: {summary}"),
    ))
}
