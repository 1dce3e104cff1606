//! Export of a calibrated multi-sensor (product-of-experts, `--group`) checkpoint's int8 model
//! as Rust source for the firmware.
//!
//! The file defines what the firmware pipeline needs of any model (`WINDOW`, `CHANNELS`,
//! `STRIDE`, `INPUT`, `HIDDEN`, `LATENT`, `CHANNEL_NAMES`, `NORM_MEAN`, `NORM_STD`, `THRESHOLD`,
//! `SCORE`, the type `Model` and `pub static MODEL: Model`) plus the groups: `GROUP_COUNT`,
//! `GROUP_INPUT` (`W |M_g|`, the same for every group), `GROUP_NAMES`, `GROUPS` (the channel
//! masks, a [`tinyvae::SensorGroups`]), `GROUP_LOG_NORM` (`log_norm_g`), `SHIFTS`
//! (`threshold(all) - threshold(S)` per subset `S`, indexed by [`tinyvae::GroupSet::index`]). `Model` is a
//! [`tinyvae::PoeVae`] of [`tinyvae::TypedExpert`]s (one per group: `Quantize`, int8 hidden
//! layers, the dequantized `mu` head, the `logvar` head's codes looked up in a table of their
//! 256 precisions, [`tinyvae::PrecisionLut`]) and `DECODERS`, `DECODER_COUNT`
//! [`tinyvae::TypedDecoder`]s (the shared int8 decoder, or one per group with `GROUP_INPUT`
//! outputs), every table a `static` in flash; its scratch buffer type is `[f32; SCRATCH_LEN]`
//! with `SCRATCH_LEN = max(GROUP_INPUT, GROUP_COUNT * LATENT)`.
//!
//! The experts live in one array, so they share one type: every group must have the same number
//! of channels (e.g. `acc = ax,ay,az` and `gyro = wx,wy,wz`); other groupings are refused with a
//! clear error.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::{
    array_item, assign_call, chain_named, f, finish, int8_decoder_chain, q_layer, table, Names, F32,
};
use crate::model::{HostDecoder, HostExpert, PoeHost};
use crate::poe_checkpoint::PoeCheckpoint;

/// The int8 PoE model `m` of checkpoint `ck` (full-set threshold `thresholds[all]`) as Rust
/// source; `thresholds` is the per-subset table indexed by [`tinyvae::GroupSet::index`].
///
/// # Errors
/// If `m` is not int8, or the groups differ in size.
pub fn export_poe_int8(ck: &PoeCheckpoint, m: &PoeHost, thresholds: &[f32; 16]) -> Result<String> {
    let cfg = &ck.config;
    let g_count = cfg.groups.len();
    let sizes: Vec<usize> = cfg.groups.iter().map(|g| g.channels.len()).collect();
    if sizes.windows(2).any(|w| w[0] != w[1]) {
        bail!(
            "export of a multi-sensor model needs groups of equal size (the firmware keeps the \
             experts in one typed array); these groups have {:?} channels",
            sizes
        );
    }
    let gi = cfg.window * sizes.first().copied().unwrap_or(0);
    let x = m.input();
    let z = m.latent;
    let n = Names {
        input: x,
        latent: z,
    };
    let full = m.groups.all().index();
    let threshold = thresholds[full];
    let hidden = match m.experts.first() {
        Some(HostExpert::Int8 { encoder, .. }) => encoder.last().map_or(gi, |l| l.out_dim),
        _ => bail!("export of a multi-sensor model needs the int8 model"),
    };
    let mut b = String::new();
    b.push_str(
        "use tinyvae::{\n    Chain, ChannelMask, Dequantize, PoeVae, PrecisionLut, QDense, QParams, Quantize, Requant,\n    ScoreKind, SensorGroups, TypedDecoder, TypedExpert,\n};\n\n",
    );
    let mut c = |s: String| {
        b.push_str(&s);
        b.push('\n');
    };
    c(format!(
        "/// Samples per window.\npub const WINDOW: usize = {};\n",
        cfg.window
    ));
    c(format!(
        "/// Channels per sample: {}.\npub const CHANNELS: usize = {};\n",
        cfg.channels.join(", "),
        cfg.channels.len()
    ));
    c(format!(
        "/// Samples between window starts.\npub const STRIDE: usize = {};\n",
        cfg.stride
    ));
    c("/// Values per window, time-major: `x[t * CHANNELS + c]`.\npub const INPUT: usize = WINDOW * CHANNELS;\n".to_string());
    c(format!(
        "/// Sensor groups (experts).\npub const GROUP_COUNT: usize = {g_count};\n"
    ));
    c(format!(
        "/// Values of one group's sub-window (`WINDOW` x its channels).\npub const GROUP_INPUT: usize = {gi};\n"
    ));
    c(format!(
        "/// Width of each expert's last hidden layer.\npub const HIDDEN: usize = {hidden};\n"
    ));
    c(format!(
        "/// Latent size.\npub const LATENT: usize = {z};\n"
    ));
    c("/// Length of the model's scratch buffers: `max(GROUP_INPUT, GROUP_COUNT * LATENT)`.\npub const SCRATCH_LEN: usize = if GROUP_INPUT > GROUP_COUNT * LATENT {\n    GROUP_INPUT\n} else {\n    GROUP_COUNT * LATENT\n};\n".to_string());
    let q = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>();
    b.push_str("/// Channel names, in input order.\n");
    b.push_str(&array_item(
        "pub static CHANNEL_NAMES: [&str; CHANNELS]",
        &q(&cfg.channels),
    ));
    b.push('\n');
    let names: Vec<String> = cfg.groups.iter().map(|g| g.name.clone()).collect();
    b.push_str("/// Group names, in group order (subsets are named by joining them with `+`).\n");
    b.push_str(&array_item(
        "pub static GROUP_NAMES: [&str; GROUP_COUNT]",
        &q(&names),
    ));
    b.push('\n');
    let masks: Vec<String> = (0..g_count)
        .map(|g| format!("ChannelMask({})", m.groups.channels(g).0))
        .collect();
    let groups_doc: Vec<String> = cfg
        .groups
        .iter()
        .map(|g| format!("{} = {}", g.name, g.channels.join(", ")))
        .collect();
    let _ = write!(
        b,
        "/// The channels of each group (bit c = channel c): {}.\npub const GROUPS: SensorGroups = match SensorGroups::new(&[{}]) {{\n    Ok(g) => g,\n    Err(_) => panic!(\"invalid sensor groups\"),\n}};\n\n",
        groups_doc.join("; "),
        masks.join(", ")
    );
    let means: Vec<String> = cfg.norm_mean.iter().map(|&v| f(v)).collect();
    super::assign_array(
        &mut b,
        "/// Per-channel mean: the model sees `(raw - NORM_MEAN[c]) * (1.0 / NORM_STD[c])`.",
        "pub static NORM_MEAN: [f32; CHANNELS]",
        &means,
    );
    let stds: Vec<String> = cfg.norm_std.iter().map(|&v| f(v)).collect();
    super::assign_array(
        &mut b,
        "/// Per-channel standard deviation (population, of the training data).",
        "pub static NORM_STD: [f32; CHANNELS]",
        &stds,
    );
    let _ = writeln!(
        b,
        "/// Alarm threshold on the anomaly score (nats) with every group present: alarm when\n/// `score > THRESHOLD`; a window scored with the groups `S` compares `score + SHIFTS[S]`.\npub const THRESHOLD: f32 = {};\n",
        f(threshold)
    );
    b.push_str("/// The score `THRESHOLD` was calibrated for.\npub const SCORE: ScoreKind = ScoreKind::Elbo;\n\n");
    table(
        &mut b,
        "`threshold(all) - threshold(S)` per subset `S` (index: bit g = group g).",
        "SHIFTS",
        "[f32; 16]",
        m.shifts.iter().map(|&v| F32(v)),
        8,
    );
    table(
        &mut b,
        "Per-group decoder log-normalizers `-1/2 sum_{i in group} (ln 2 pi + logvar_x[i])`.",
        "GROUP_LOG_NORM",
        "[f32; GROUP_COUNT]",
        m.group_log_norm.iter().map(|&v| F32(v)),
        8,
    );
    table(
        &mut b,
        if m.ar_order > 0 {
            "Decoder precisions `exp(-logvar_x[i])` (of the autoregressive noise's innovations)."
        } else {
            "Decoder precisions `exp(-logvar_x[i])`."
        },
        "INV_VAR",
        "[f32; INPUT]",
        m.inv_var.iter().map(|&v| F32(v)),
        8,
    );
    if m.ar_order > 0 {
        let _ = writeln!(
            b,
            "/// Order of the autoregressive decoder noise (`tinyvae::ar_quadratic`).\npub const AR_ORDER: usize = {};\n",
            m.ar_order
        );
        table(
            &mut b,
            "Autoregressive noise coefficients, `AR_ORDER` per channel (`a[c AR_ORDER + k - 1]`).",
            "AR",
            "[f32; CHANNELS * AR_ORDER]",
            m.ar.iter().map(|&v| F32(v)),
            8,
        );
    }
    // experts
    let mut values = Vec::new();
    let mut expert_types = None;
    for (g, e) in m.experts.iter().enumerate() {
        let HostExpert::Int8 {
            input_q,
            encoder,
            mu,
            logvar,
            precision,
        } = e
        else {
            bail!("export of a multi-sensor model needs the int8 model");
        };
        let _ = writeln!(
            b,
            "/// Quantization of group {g}'s standardized sub-window.\nconst E{g}_INPUT_Q: QParams = QParams::new({}, {});\n",
            f(input_q.scale),
            input_q.zero_point
        );
        let mut parts = vec![(
            "Quantize<GROUP_INPUT>".to_string(),
            format!("Quantize::new(E{g}_INPUT_Q)"),
            "GROUP_INPUT".to_string(),
        )];
        for (i, l) in encoder.iter().enumerate() {
            let name = format!("E{g}_ENCODER_{i}");
            let t = q_layer(&mut b, &n, &name, &format!("expert.{g}.encoder.{i}"), l).replacen(
                &format!("<{gi}, "),
                "<GROUP_INPUT, ",
                1,
            );
            parts.push((t, name, n.d(l.out_dim)));
        }
        let (enc_t, enc_v) = chain_named(&mut b, &format!("E{g}Enc"), &parts);
        let mut heads = Vec::new();
        for (l, nm, label) in [(mu, "MU", "mu"), (logvar, "LOGVAR", "logvar")] {
            let name = format!("E{g}_{nm}");
            let t = q_layer(&mut b, &n, &name, &format!("expert.{g}.{label}"), l);
            let out_t = if nm == "MU" {
                let _ = writeln!(
                    b,
                    "const {name}_OUT: Dequantize<LATENT> = Dequantize::new(QParams::new({}, {}));\n",
                    f(l.output_q.scale),
                    l.output_q.zero_point
                );
                "Dequantize<LATENT>"
            } else {
                table(
                    &mut b,
                    &format!(
                        "Precision `exp(-clamp(logvar))` of each log-variance code `q` at `q + 128` \
                         (dequantized with scale {}, zero point {}).",
                        f(l.output_q.scale),
                        l.output_q.zero_point
                    ),
                    &format!("{name}_PRECISION"),
                    "[f32; 256]",
                    precision.iter().map(|&v| F32(v)),
                    8,
                );
                let _ = writeln!(
                    b,
                    "const {name}_OUT: PrecisionLut<'static, LATENT> = PrecisionLut::new(&{name}_PRECISION);\n"
                );
                "PrecisionLut<'static, LATENT>"
            };
            heads.push(chain_named(
                &mut b,
                &format!("E{g}{}", if nm == "MU" { "Mu" } else { "Logvar" }),
                &[
                    (t, name.clone(), "LATENT".to_string()),
                    (
                        out_t.to_string(),
                        format!("{name}_OUT"),
                        "LATENT".to_string(),
                    ),
                ],
            ));
        }
        if expert_types.is_none() {
            expert_types = Some((enc_t, heads[0].0.clone(), heads[1].0.clone()));
        }
        values.push(format!(
            "    TypedExpert {{\n        body: {enc_v},\n        mu_head: {},\n        logvar_head: {},\n    }},\n",
            heads[0].1, heads[1].1
        ));
    }
    let Some((enc_t, mu_t, lv_t)) = expert_types else {
        bail!("the model has no expert");
    };
    // decoders
    let mut decoders = Vec::new();
    for (d, dec) in m.decoders.iter().enumerate() {
        let HostDecoder::Int8 {
            z_q,
            decoder,
            output,
        } = dec
        else {
            bail!("export of a multi-sensor model needs the int8 model");
        };
        if d == 0 {
            let _ = writeln!(
                b,
                "/// Quantization of the decoder input `z`.\nconst Z_Q: QParams = QParams::new({}, {});\n",
                f(z_q.scale),
                z_q.zero_point
            );
        }
        let group = (m.decoders.len() > 1).then_some(d);
        decoders.push(int8_decoder_chain(&mut b, &n, decoder, output, group));
    }
    let Some((dec_t, _)) = decoders.first().cloned() else {
        bail!("the model has no decoder");
    };
    let per_group = decoders.len() > 1;
    let _ = writeln!(
        b,
        "/// One group's expert: its standardized sub-window -> `mu`, precisions `exp(-logvar)`.\npub type Expert = TypedExpert<{enc_t}, {mu_t}, {lv_t}, GROUP_INPUT, HIDDEN, LATENT>;\n"
    );
    let _ = writeln!(
        b,
        "/// Number of decoders: {}.\npub const DECODER_COUNT: usize = {};\n",
        if per_group {
            "one per group"
        } else {
            "one shared"
        },
        decoders.len()
    );
    let (what, out) = if per_group {
        (
            "A group's decoder: latent -> mean of p(x_g|z), the group's sub-window",
            "GROUP_INPUT",
        )
    } else {
        ("The shared decoder: latent -> mean of p(x|z)", "INPUT")
    };
    let _ = writeln!(
        b,
        "/// {what}.\npub type Decoder = TypedDecoder<{dec_t}, LATENT, {out}>;\n"
    );
    let dec_values: Vec<String> = decoders
        .iter()
        .map(|(_, v)| format!("TypedDecoder({v})"))
        .collect();
    let _ = writeln!(
        b,
        "/// The decoders{}.",
        if per_group { ", in group order" } else { "" }
    );
    b.push_str(&array_item(
        "static DECODERS: [Decoder; DECODER_COUNT]",
        &dec_values,
    ));
    b.push('\n');
    let _ = writeln!(
        b,
        "/// The experts, in group order.\nstatic EXPERTS: [Expert; GROUP_COUNT] = [\n{}];\n",
        values.concat()
    );
    b.push_str("/// The model's type.\npub type Model = PoeVae<'static, Expert, Decoder, [f32; SCRATCH_LEN]>;\n\n");
    b.push_str("/// The model.\n");
    assign_call(
        &mut b,
        "pub static MODEL: Model",
        "PoeVae::new",
        &[
            "&EXPERTS".to_string(),
            "&DECODERS".to_string(),
            "GROUPS".to_string(),
            "CHANNELS".to_string(),
            "&INV_VAR".to_string(),
            "&GROUP_LOG_NORM".to_string(),
            "&SHIFTS".to_string(),
        ],
    );
    if m.ar_order > 0 {
        // `PoeVae::new(..)` then the noise: `)\n.with_ar(AR_ORDER, &AR);` as rustfmt writes it.
        if b.ends_with(");\n") {
            b.truncate(b.len() - 2);
            b.push_str("\n.with_ar(AR_ORDER, &AR);\n");
        } else {
            bail!("the model's initializer did not end as expected");
        }
    }
    let dec_hidden = match m.decoders.first() {
        Some(HostDecoder::Int8 { decoder, .. }) => decoder
            .iter()
            .map(|l| l.out_dim.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        _ => String::new(),
    };
    let dec_desc = if per_group {
        format!("one decoder per group {z}-{dec_hidden}-{gi}")
    } else {
        format!("decoder {z}-{dec_hidden}-{x}")
    };
    let noise_desc = if m.ar_order > 0 {
        format!(", AR({}) decoder noise", m.ar_order)
    } else {
        String::new()
    };
    let summary = format!(
        "int8 product-of-experts VAE, groups {}, experts {gi}-{hidden}-{z}, {dec_desc}{noise_desc}, window {} x {} channels, stride {}, threshold {} (-ELBO, all groups).",
        groups_doc.join("; "),
        cfg.window,
        cfg.channels.len(),
        cfg.stride,
        f(threshold)
    );
    Ok(finish(b, &summary))
}
