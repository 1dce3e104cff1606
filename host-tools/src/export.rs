//! Export of a calibrated model as plain Rust source for the firmware.
//!
//! The file is deterministic (the same checkpoint and calibration give the same bytes: no
//! timestamps, no paths, every number printed exactly) and rustfmt-clean (the large weight
//! tables carry `#[rustfmt::skip]` and are laid out 16–24 values per line; everything else is
//! written the way rustfmt 1.95 formats it, which `tests/export.rs` checks with
//! `rustfmt --check`). A header names the generator and version and gives the SHA-256 of
//! everything after the header, so a hand edit is detectable.
//!
//! f32 constants are printed with Rust's shortest round-trip formatting (`{:?}`), which parses
//! back to the same bits; int8/i32 constants are exact.
//!
//! # What the file defines
//! `WINDOW`, `CHANNELS`, `STRIDE`, `INPUT` (= `WINDOW * CHANNELS`, time-major `x[t * CHANNELS +
//! c]`), `HIDDEN` (the encoder's last width), `LATENT`; `CHANNEL_NAMES`; `NORM_MEAN`, `NORM_STD`
//! (the firmware standardizes `(raw - mean) / std`); `THRESHOLD` (alarm when
//! `score > THRESHOLD`) and `SCORE` (the [`tinyvae::ScoreKind`] it was calibrated for);
//! `LOG_NORM`; the type `Model`, a typed [`tinyvae::Vae`] whose layers are
//! [`tinyvae::QDense`] between [`tinyvae::Quantize`] / [`tinyvae::Dequantize`] (int8) or
//! [`tinyvae::Dense`] (f32); and `pub static MODEL: Model`.
//!
//! A mixture of experts is written by the child module `moe` (each expert as above, in its own
//! module, plus the gate).
//!
//! It is kept as one file because it is one concept: the writer of the generated model source,
//! whose sections share one set of formatting rules.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use tinyvae::Activation;

use crate::checkpoint::Checkpoint;
use crate::model::{FloatLayer, HostModel, Layers, QLayer};

mod moe;

/// The generator named in the header.
pub const GENERATOR: &str = concat!("tinyvae-host-tools ", env!("CARGO_PKG_VERSION"));

pub mod poe;
pub use poe::export_poe_int8;

const MAX_WIDTH: usize = 100;
const FN_CALL_WIDTH: usize = 60;

/// `head = Name(args);` laid out like rustfmt: one line if it fits (and the arguments are
/// short), else broken after `=` if that fits, else one argument per line.
fn assign_call(out: &mut String, head: &str, callee: &str, args: &[String]) {
    let joined = args.join(", ");
    let one = format!("{head} = {callee}({joined});");
    let simple = joined.len() <= FN_CALL_WIDTH && !joined.contains('\n');
    if simple && one.len() <= MAX_WIDTH {
        out.push_str(&one);
        out.push('\n');
        return;
    }
    let next = format!("    {callee}({joined});");
    if simple && next.len() <= MAX_WIDTH && format!("{head} =").len() <= MAX_WIDTH {
        let _ = writeln!(out, "{head} =\n{next}");
        return;
    }
    let _ = writeln!(out, "{head} = {callee}(");
    for a in args {
        let _ = writeln!(out, "    {a},");
    }
    out.push_str(");\n");
}

/// `[T; N]` items, `per_line` values per line, under `#[rustfmt::skip]`.
fn table<T: std::fmt::Display>(
    out: &mut String,
    doc: &str,
    name: &str,
    ty: &str,
    vals: impl IntoIterator<Item = T>,
    per_line: usize,
) {
    let _ = writeln!(out, "/// {doc}\n#[rustfmt::skip]\nstatic {name}: {ty} = [");
    push_values(out, "    ", vals, per_line);
    out.push_str("];\n\n");
}

fn push_values<T: std::fmt::Display>(
    out: &mut String,
    indent: &str,
    vals: impl IntoIterator<Item = T>,
    per_line: usize,
) {
    let vals: Vec<String> = vals.into_iter().map(|v| v.to_string()).collect();
    for chunk in vals.chunks(per_line.max(1)) {
        let _ = writeln!(out, "{indent}{},", chunk.join(", "));
    }
}

/// A `[[T; IN]; OUT]` matrix, one bracketed row per output.
fn matrix<T: std::fmt::Display + Copy>(
    out: &mut String,
    doc: &str,
    name: &str,
    ty: &str,
    vals: &[T],
    cols: usize,
    per_line: usize,
) {
    let _ = writeln!(out, "/// {doc}\n#[rustfmt::skip]\nstatic {name}: {ty} = [");
    for row in vals.chunks_exact(cols.max(1)) {
        out.push_str("    [\n");
        push_values(out, "        ", row.iter().copied(), per_line);
        out.push_str("    ],\n");
    }
    out.push_str("];\n\n");
}

/// An f32 value as a Rust literal that parses back to the same bits.
fn f(v: f32) -> String {
    // `{:?}` is the shortest representation that round-trips; it always has a `.` or an `e`.
    format!("{v:?}")
}

#[derive(Clone, Copy)]
struct F32(f32);

impl std::fmt::Display for F32 {
    fn fmt(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fm.write_str(&f(self.0))
    }
}

fn dim_name(d: usize, input: usize, latent: usize) -> String {
    if d == input {
        "INPUT".to_string()
    } else if d == latent {
        "LATENT".to_string()
    } else {
        d.to_string()
    }
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "Activation::Relu",
        Activation::Relu6 => "Activation::Relu6",
        Activation::Tanh => "Activation::Tanh",
        Activation::Sigmoid => "Activation::Sigmoid",
        Activation::Softplus => "Activation::Softplus",
        _ => "Activation::Identity",
    }
}

struct Names {
    input: usize,
    latent: usize,
}

impl Names {
    fn d(&self, d: usize) -> String {
        dim_name(d, self.input, self.latent)
    }
}

/// Writes an int8 layer's tables and its `const NAME: QDense<..>`.
fn q_layer(out: &mut String, n: &Names, name: &str, label: &str, l: &QLayer) -> String {
    let (i, o) = (n.d(l.in_dim), n.d(l.out_dim));
    matrix(
        out,
        &format!(
            "`{label}`: int8 weights, symmetric per output row (scales {}..{}).",
            f(min_of(&l.weight_scales)),
            f(max_of(&l.weight_scales))
        ),
        &format!("{name}_W"),
        &format!("[[i8; {i}]; {o}]"),
        &l.weights,
        l.in_dim,
        24,
    );
    table(
        out,
        &format!(
            "`{label}`: i32 biases with the input zero point ({}) folded in.",
            l.input_q.zero_point
        ),
        &format!("{name}_B"),
        &format!("[i32; {o}]"),
        l.bias.iter(),
        12,
    );
    table(
        out,
        &format!("`{label}`: requantization `s_in * s_w[o] / s_out` per output."),
        &format!("{name}_RQ"),
        &format!("[Requant; {o}]"),
        l.requant
            .iter()
            .map(|r| format!("Requant::new({}, {})", r.multiplier, r.shift)),
        3,
    );
    let _ = writeln!(
        out,
        "/// `{label}`: output scale {}, zero point {}{}.",
        f(l.output_q.scale),
        l.output_q.zero_point,
        if l.activation == Activation::Relu {
            ", fused ReLU"
        } else {
            ""
        }
    );
    assign_call(
        out,
        &format!("const {name}: QDense<{i}, {o}>"),
        "QDense::new",
        &[
            format!("&{name}_W"),
            format!("&{name}_B"),
            format!("&{name}_RQ"),
            l.output_q.zero_point.to_string(),
            l.act_min.to_string(),
            l.act_max.to_string(),
            "None".to_string(),
        ],
    );
    out.push('\n');
    format!("QDense<{i}, {o}>")
}

/// Writes an f32 layer's tables and its `const NAME: Dense<..>`.
fn f_layer(out: &mut String, n: &Names, name: &str, label: &str, l: &FloatLayer) -> String {
    let (i, o) = (n.d(l.in_dim), n.d(l.out_dim));
    matrix(
        out,
        &format!("`{label}`: f32 weights `[out][in]`."),
        &format!("{name}_W"),
        &format!("[[f32; {i}]; {o}]"),
        &l.weights.iter().map(|&v| F32(v)).collect::<Vec<_>>(),
        l.in_dim,
        8,
    );
    table(
        out,
        &format!("`{label}`: f32 biases."),
        &format!("{name}_B"),
        &format!("[f32; {o}]"),
        l.bias.iter().map(|&v| F32(v)),
        8,
    );
    let _ = writeln!(out, "/// `{label}`.");
    assign_call(
        out,
        &format!("const {name}: Dense<{i}, {o}>"),
        "Dense::new",
        &[
            format!("&{name}_W"),
            format!("&{name}_B"),
            activation_name(l.activation).to_string(),
        ],
    );
    out.push('\n');
    format!("Dense<{i}, {o}>")
}

fn min_of(v: &[f32]) -> f32 {
    v.iter().copied().fold(f32::INFINITY, f32::min)
}

fn max_of(v: &[f32]) -> f32 {
    v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Common leading items: constants, normalization, threshold.
fn preamble(
    out: &mut String,
    ck: &Checkpoint,
    m: &HostModel,
    threshold: f32,
    kind: &str,
) -> Result<()> {
    let c = &ck.config;
    let (enc, _, _) = m.dims();
    let hidden = enc.last().map_or(m.input, |d| d.1);
    let _ = writeln!(
        out,
        "/// Samples per window.\npub const WINDOW: usize = {};\n",
        c.window
    );
    let _ = writeln!(
        out,
        "/// Channels per sample: {}.\npub const CHANNELS: usize = {};\n",
        c.channels.join(", "),
        c.channels.len()
    );
    let _ = writeln!(
        out,
        "/// Samples between window starts.\npub const STRIDE: usize = {};\n",
        c.stride
    );
    let _ = writeln!(
        out,
        "/// Values per window, time-major: `x[t * CHANNELS + c]`.\npub const INPUT: usize = WINDOW * CHANNELS;\n"
    );
    let _ = writeln!(
        out,
        "/// Width of the encoder's last hidden layer.\npub const HIDDEN: usize = {hidden};\n"
    );
    let _ = writeln!(
        out,
        "/// Latent size.\npub const LATENT: usize = {};\n",
        m.latent
    );
    let names: Vec<String> = c.channels.iter().map(|s| format!("{s:?}")).collect();
    assign_array(
        out,
        "/// Channel names, in input order.",
        "pub static CHANNEL_NAMES: [&str; CHANNELS]",
        &names,
    );
    let means: Vec<String> = c.norm_mean.iter().map(|&v| f(v)).collect();
    assign_array(
        out,
        "/// Per-channel mean: the model sees `(raw - NORM_MEAN[c]) * (1.0 / NORM_STD[c])`.",
        "pub static NORM_MEAN: [f32; CHANNELS]",
        &means,
    );
    let stds: Vec<String> = c.norm_std.iter().map(|&v| f(v)).collect();
    assign_array(
        out,
        "/// Per-channel standard deviation (population, of the training data).",
        "pub static NORM_STD: [f32; CHANNELS]",
        &stds,
    );
    let _ = writeln!(
        out,
        "/// Alarm threshold on the anomaly score (nats): alarm when `score > THRESHOLD`.\npub const THRESHOLD: f32 = {};\n",
        f(threshold)
    );
    let _ = writeln!(
        out,
        "/// The score `THRESHOLD` was calibrated for.\npub const SCORE: ScoreKind = {kind};\n"
    );
    let _ = writeln!(
        out,
        "/// Decoder log-normalizer `-1/2 sum_i (ln 2 pi + logvar_x[i])`.\npub const LOG_NORM: f32 = {};\n",
        f(m.log_norm)
    );
    table(
        out,
        "Decoder precisions `exp(-logvar_x[i])`.",
        "INV_VAR",
        "[f32; INPUT]",
        m.inv_var.iter().map(|&v| F32(v)),
        8,
    );
    Ok(())
}

/// `head = [a, b, ...];` as rustfmt lays out a short array (one line if it fits, else one
/// element per line).
fn assign_array(out: &mut String, doc: &str, head: &str, elems: &[String]) {
    out.push_str(doc);
    out.push('\n');
    out.push_str(&array_item(head, elems));
    out.push('\n');
}

/// `head = [a, b, ...];` laid out as rustfmt 1.95 does with its default widths: on one line if
/// the elements take at most `array_width` (60) columns and the line fits; else, if every
/// element is at most `short_array_element_width_threshold` (10) columns wide, packed as many per
/// line as fit in 100 columns; else one element per line.
fn array_item(head: &str, elems: &[String]) -> String {
    const ARRAY_WIDTH: usize = 60;
    const SHORT_ELEMENT: usize = 10;
    let width = |s: &str| s.chars().count();
    let joined = elems.join(", ");
    let one = format!("{head} = [{joined}];\n");
    if width(&joined) <= ARRAY_WIDTH {
        if width(&one) <= MAX_WIDTH + 1 {
            return one;
        }
        return format!("{head} =\n    [{joined}];\n");
    }
    let mut s = format!("{head} = [\n");
    if elems.len() > 1 && elems.iter().all(|e| width(e) <= SHORT_ELEMENT) {
        let mut line = String::new();
        for e in elems {
            let add = if line.is_empty() {
                format!("{e},")
            } else {
                format!(" {e},")
            };
            if !line.is_empty() && 4 + width(&line) + width(&add) > MAX_WIDTH {
                let _ = writeln!(s, "    {line}");
                line = format!("{e},");
            } else {
                line.push_str(&add);
            }
        }
        let _ = writeln!(s, "    {line}");
    } else {
        for e in elems {
            let _ = writeln!(s, "    {e},");
        }
    }
    s.push_str("];\n");
    s
}

fn finish(body: String, summary: &str) -> String {
    let mut h = Sha256::new();
    h.update(body.as_bytes());
    let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// @generated by {GENERATOR} (`tinyvae export`). Do not edit."
    );
    let _ = writeln!(s, "// {summary}");
    let _ = writeln!(s, "// sha256 of the rest of this file: {hash}");
    s.push('\n');
    s.push_str(&body);
    s
}

/// Checks the header hash of an exported file.
///
/// # Errors
/// No header, or a body that does not match the hash.
pub fn verify(src: &str) -> Result<()> {
    let mut lines = src.splitn(5, '\n');
    let (_, _, hash_line, blank, body) = (
        lines.next(),
        lines.next(),
        lines.next().unwrap_or(""),
        lines.next(),
        lines.next().unwrap_or(""),
    );
    let Some(hash) = hash_line.strip_prefix("// sha256 of the rest of this file: ") else {
        bail!("no tinyvae export header");
    };
    if blank != Some("") {
        bail!("malformed export header");
    }
    let mut h = Sha256::new();
    h.update(body.as_bytes());
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != hash {
        bail!("content hash mismatch: header {hash}, body {got} (the file was edited)");
    }
    Ok(())
}

fn arch_summary(m: &HostModel) -> String {
    let (e, _, d) = m.dims();
    let enc: Vec<String> = e.iter().map(|x| x.1.to_string()).collect();
    let dec: Vec<String> = d.iter().map(|x| x.1.to_string()).collect();
    format!(
        "{}-{}-{} / {}-{}",
        m.input,
        enc.join("-"),
        m.latent,
        m.latent,
        dec.join("-")
    )
}

/// The int8 model as Rust source.
///
/// # Errors
/// If `m` is not an int8 model.
pub fn export_int8(ck: &Checkpoint, m: &HostModel, threshold: f32) -> Result<String> {
    if m.moe.is_some() {
        return moe::export_mixture(ck, m, threshold, export_int8);
    }
    let Layers::Int8 {
        input_q,
        encoder,
        mu,
        logvar,
        z_q,
        decoder,
        output,
    } = &m.layers
    else {
        bail!("export_int8 needs the int8 model");
    };
    let n = Names {
        input: m.input,
        latent: m.latent,
    };
    let mut b = String::new();
    b.push_str(
        "use tinyvae::{Chain, Dequantize, QDense, QParams, Quantize, Requant, ScoreKind, Vae};\n\n",
    );
    preamble(&mut b, ck, m, threshold, "ScoreKind::Elbo")?;
    let _ = writeln!(
        b,
        "/// Quantization of the standardized input.\nconst INPUT_Q: QParams = QParams::new({}, {});\n",
        f(input_q.scale),
        input_q.zero_point
    );
    let _ = writeln!(
        b,
        "/// Quantization of the decoder input `z`.\nconst Z_Q: QParams = QParams::new({}, {});\n",
        f(z_q.scale),
        z_q.zero_point
    );
    // encoder
    let mut parts = vec![(
        "Quantize<INPUT>".to_string(),
        "Quantize::new(INPUT_Q)".to_string(),
        m.input,
    )];
    for (i, l) in encoder.iter().enumerate() {
        let name = format!("ENCODER_{i}");
        let t = q_layer(&mut b, &n, &name, &format!("encoder.{i}"), l);
        parts.push((t, name, l.out_dim));
    }
    let parts: Vec<(String, String, String)> =
        parts.into_iter().map(|(t, v, w)| (t, v, n.d(w))).collect();
    let (enc_t, enc_v) = chain_named(&mut b, "Enc", &parts);
    let mut heads = Vec::new();
    for (l, nm, label) in [(mu, "MU", "mu"), (logvar, "LOGVAR", "logvar")] {
        let t = q_layer(&mut b, &n, nm, label, l);
        let _ = writeln!(
            b,
            "const {nm}_OUT: Dequantize<LATENT> = Dequantize::new(QParams::new({}, {}));\n",
            f(l.output_q.scale),
            l.output_q.zero_point
        );
        heads.push(chain_named(
            &mut b,
            if nm == "MU" { "Mu" } else { "Logvar" },
            &[
                (t, nm.to_string(), "LATENT".to_string()),
                (
                    "Dequantize<LATENT>".to_string(),
                    format!("{nm}_OUT"),
                    "LATENT".to_string(),
                ),
            ],
        ));
    }
    let (dec_t, dec_v) = int8_decoder_chain(&mut b, &n, decoder, output, None);
    model_items(&mut b, &enc_t, &enc_v, &heads, &dec_t, &dec_v);
    let summary = format!(
        "int8 VAE {}, window {} x {} channels, stride {}, threshold {} (-ELBO).",
        arch_summary(m),
        ck.config.window,
        ck.config.channels.len(),
        ck.config.stride,
        f(threshold)
    );
    Ok(finish(b, &summary))
}

/// The f32 model as Rust source.
///
/// # Errors
/// If `m` is not an f32 model.
pub fn export_f32(ck: &Checkpoint, m: &HostModel, threshold: f32) -> Result<String> {
    if m.moe.is_some() {
        return moe::export_mixture(ck, m, threshold, export_f32);
    }
    let Layers::Float {
        encoder,
        mu,
        logvar,
        decoder,
        output,
    } = &m.layers
    else {
        bail!("export_f32 needs the f32 model");
    };
    let n = Names {
        input: m.input,
        latent: m.latent,
    };
    let mut b = String::new();
    b.push_str("use tinyvae::{Activation, Chain, Dense, ScoreKind, Vae};\n\n");
    preamble(&mut b, ck, m, threshold, "ScoreKind::Elbo")?;
    let mut parts = Vec::new();
    for (i, l) in encoder.iter().enumerate() {
        let name = format!("ENCODER_{i}");
        let t = f_layer(&mut b, &n, &name, &format!("encoder.{i}"), l);
        parts.push((t, name, n.d(l.out_dim)));
    }
    let (enc_t, enc_v) = chain_named(&mut b, "Enc", &parts);
    let mut heads = Vec::new();
    for (l, nm, label) in [(mu, "MU", "mu"), (logvar, "LOGVAR", "logvar")] {
        let t = f_layer(&mut b, &n, nm, label, l);
        heads.push((t, nm.to_string()));
    }
    let mut parts = Vec::new();
    for (i, l) in decoder.iter().enumerate() {
        let name = format!("DECODER_{i}");
        let t = f_layer(&mut b, &n, &name, &format!("decoder.{i}"), l);
        parts.push((t, name, n.d(l.out_dim)));
    }
    let t = f_layer(&mut b, &n, "DECODER_OUT", "decoder.out", output);
    parts.push((t, "DECODER_OUT".to_string(), "INPUT".to_string()));
    let (dec_t, dec_v) = chain_named(&mut b, "Dec", &parts);
    model_items(&mut b, &enc_t, &enc_v, &heads, &dec_t, &dec_v);
    let summary = format!(
        "f32 VAE {}, window {} x {} channels, stride {}, threshold {} (-ELBO).",
        arch_summary(m),
        ck.config.window,
        ck.config.channels.len(),
        ck.config.stride,
        f(threshold)
    );
    Ok(finish(b, &summary))
}

/// The int8 decoder as a named `Chain`: `Quantize` of `z` (the `Z_Q` the caller wrote), the
/// hidden layers `DECODER_{i}`, `DECODER_OUT` and the `Dequantize` of the mean (`OUTPUT_DQ`,
/// written here), to `INPUT` values. Group `g`'s decoder (`group = Some(g)`) has the names
/// `D{g}_DECODER_{i}`, `D{g}_DECODER_OUT`, `D{g}_OUTPUT_DQ` and `GROUP_INPUT` outputs.
/// Returns the chain's type and value names.
fn int8_decoder_chain(
    b: &mut String,
    n: &Names,
    decoder: &[QLayer],
    output: &QLayer,
    group: Option<usize>,
) -> (String, String) {
    let (p, label, chain, out) = match group {
        None => (
            String::new(),
            "decoder".to_string(),
            "Dec".to_string(),
            "INPUT",
        ),
        Some(g) => (
            format!("D{g}_"),
            format!("decoder.{g}"),
            format!("D{g}Dec"),
            "GROUP_INPUT",
        ),
    };
    let mut parts = vec![(
        "Quantize<LATENT>".to_string(),
        "Quantize::new(Z_Q)".to_string(),
        "LATENT".to_string(),
    )];
    for (i, l) in decoder.iter().enumerate() {
        let name = format!("{p}DECODER_{i}");
        let t = q_layer(b, n, &name, &format!("{label}.{i}"), l);
        parts.push((t, name, n.d(l.out_dim)));
    }
    let name = format!("{p}DECODER_OUT");
    let t = q_layer(b, n, &name, &format!("{label}.out"), output);
    parts.push((t, name, out.to_string()));
    let _ = writeln!(
        b,
        "const {p}OUTPUT_DQ: Dequantize<{out}> = Dequantize::new(QParams::new({}, {}));\n",
        f(output.output_q.scale),
        output.output_q.zero_point
    );
    parts.push((
        format!("Dequantize<{out}>"),
        format!("{p}OUTPUT_DQ"),
        out.to_string(),
    ));
    chain_named(b, &chain, &parts)
}

/// As [`chain`], with the widths already given as names.
fn chain_named(
    out: &mut String,
    prefix: &str,
    parts: &[(String, String, String)],
) -> (String, String) {
    let mut ty = parts[0].0.clone();
    let mut val = parts[0].1.clone();
    let mut mid = parts[0].2.clone();
    for (k, (t, v, w)) in parts.iter().enumerate().skip(1) {
        let link_ty = format!("{prefix}{k}");
        let link_val = format!("{}_{k}", prefix.to_uppercase());
        let _ = writeln!(
            out,
            "/// `{prefix}` up to part {k}.\ntype {link_ty} = Chain<{ty}, {t}, {mid}>;\n"
        );
        assign_call(
            out,
            &format!("const {link_val}: {link_ty}"),
            "Chain::new",
            &[val.clone(), v.clone()],
        );
        out.push('\n');
        ty = link_ty;
        val = link_val;
        mid = w.clone();
    }
    (ty, val)
}

fn model_items(
    b: &mut String,
    enc_t: &str,
    enc_v: &str,
    heads: &[(String, String)],
    dec_t: &str,
    dec_v: &str,
) {
    let _ = writeln!(b, "/// Encoder body: standardized window -> last hidden layer.\npub type Encoder = {enc_t};\n");
    let _ = writeln!(
        b,
        "/// Head giving the posterior mean.\npub type MuHead = {};\n",
        heads[0].0
    );
    let _ = writeln!(
        b,
        "/// Head giving the posterior log-variance.\npub type LogvarHead = {};\n",
        heads[1].0
    );
    let _ = writeln!(
        b,
        "/// Decoder: latent -> mean of p(x|z).\npub type Decoder = {dec_t};\n"
    );
    let _ = writeln!(
        b,
        "/// The model's type.\npub type Model = Vae<Encoder, MuHead, LogvarHead, Decoder, INPUT, HIDDEN, LATENT>;\n"
    );
    b.push_str("/// The model.\n");
    assign_call(
        b,
        "pub static MODEL: Model",
        "Vae::new",
        &[
            enc_v.to_string(),
            heads[0].1.clone(),
            heads[1].1.clone(),
            dec_v.to_string(),
            "&INV_VAR".to_string(),
            "LOG_NORM".to_string(),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand layout equals rustfmt's on arrays of many shapes (skipped without rustfmt).
    #[test]
    fn array_layout_matches_rustfmt() {
        let mut x = 7u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut src = String::new();
        for case in 0..300 {
            let n = 1 + next() as usize % 40;
            let elems: Vec<String> = (0..n)
                .map(|_| {
                    let v = f32::from_bits(0x3000_0000 + next() % 0x1800_0000);
                    match case % 3 {
                        0 => f(v),
                        1 => f(-v * 1e3),
                        _ => format!("{:?}", format!("c{}", next() % 1000)),
                    }
                })
                .collect();
            let head = format!("pub static A{case}: [f32; {n}]");
            src.push_str(&array_item(&head, &elems));
            src.push('\n');
        }
        let mut cmd = match std::process::Command::new("rustfmt")
            .args(["--edition", "2021", "--emit", "stdout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("rustfmt not available ({e}); skipped");
                return;
            }
        };
        use std::io::Write;
        cmd.stdin.take().unwrap().write_all(src.as_bytes()).unwrap();
        let out = cmd.wait_with_output().unwrap();
        let formatted = String::from_utf8(out.stdout).unwrap();
        for (i, (a, b)) in src.lines().zip(formatted.lines()).enumerate() {
            assert_eq!(a, b, "line {}", i + 1);
        }
        assert_eq!(
            src.trim_end().lines().count(),
            formatted.trim_end().lines().count()
        );
    }
}
