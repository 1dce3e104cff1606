//! [`to_rust_source`]: an imported model as plain Rust for the firmware: `pub static` constant
//! arrays, one `const` [`tinyvae::QDense`] per layer and a typed [`tinyvae::Chain`] of them.
//!
//! The text is deterministic and already in `rustfmt`'s default style (max width 100): the few
//! layout rules it needs are reproduced here (a list goes on one line if its items fit in 60
//! columns and the line fits in 100; otherwise lists of short literals are filled greedily, up to
//! 100 columns per line counting the `, ` after each item, and other lists put one item per line; a right-hand side that fits on
//! the next line goes there). `tests/tflite_conformance.rs` checks the output against `rustfmt`.

use std::fmt::Write as _;

use super::{FusedActivation, ImportedLayer, ImportedModel};

const MAX_WIDTH: usize = 100;
/// rustfmt's `fn_call_width` and `array_width` (60% of `max_width`).
const SMALL_WIDTH: usize = 60;
/// rustfmt's `short_array_element_width_threshold`.
const SHORT_ITEM: usize = 10;
const INDENT: usize = 4;

/// An expression as rustfmt lays it out: an atom, or a delimited, comma-separated list.
enum Node {
    Atom(String),
    List {
        open: String,
        close: &'static str,
        items: Vec<Node>,
        /// Width limit for the one-line form of the items (60 for calls and arrays, 100 for
        /// generic arguments).
        limit: usize,
    },
}

impl Node {
    fn call(callee: &str, items: Vec<Node>) -> Node {
        Node::List {
            open: format!("{callee}("),
            close: ")",
            items,
            limit: SMALL_WIDTH,
        }
    }

    fn array(items: Vec<Node>) -> Node {
        Node::List {
            open: "[".to_string(),
            close: "]",
            items,
            limit: SMALL_WIDTH,
        }
    }

    fn generic(ty: &str, items: Vec<Node>) -> Node {
        Node::List {
            open: format!("{ty}<"),
            close: ">",
            items,
            limit: MAX_WIDTH,
        }
    }

    fn atom(s: impl ToString) -> Node {
        Node::Atom(s.to_string())
    }

    /// The one-line form, if the list rules allow one (ignoring the line's own width).
    fn flat(&self) -> Option<String> {
        match self {
            Node::Atom(s) => Some(s.clone()),
            Node::List {
                open,
                close,
                items,
                limit,
            } => {
                let inner = items
                    .iter()
                    .map(Node::flat)
                    .collect::<Option<Vec<_>>>()?
                    .join(", ");
                (inner.len() <= *limit).then(|| format!("{open}{inner}{close}"))
            }
        }
    }

    /// Lays the node out starting at column `col` on a line whose block indent is `indent`,
    /// followed by `suffix` more characters on its last line.
    fn render(&self, indent: usize, col: usize, suffix: usize) -> String {
        if let Some(flat) = self.flat() {
            if col + flat.len() + suffix <= MAX_WIDTH {
                return flat;
            }
        }
        match self {
            Node::Atom(s) => s.clone(),
            Node::List {
                open, close, items, ..
            } => {
                let inner = indent + INDENT;
                let pad = " ".repeat(inner);
                let mut out = format!("{open}\n");
                let short: Option<Vec<&str>> = items
                    .iter()
                    .map(|i| match i {
                        Node::Atom(s) if s.len() <= SHORT_ITEM => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                match short {
                    Some(atoms) if !atoms.is_empty() => {
                        // rustfmt's "mixed" tactic: fill each line up to the max width, keeping
                        // room for the ", " after every item (measured: the last item may use that
                        // column only if it is on the first line).
                        let mut line = String::new();
                        let mut first_line = true;
                        let last = atoms.len() - 1;
                        for (j, a) in atoms.into_iter().enumerate() {
                            let tail = if j == last && first_line { 1 } else { 2 };
                            let extra = usize::from(!line.is_empty()) + a.len() + tail;
                            if !line.is_empty() && inner + line.len() + extra > MAX_WIDTH {
                                let _ = writeln!(out, "{pad}{line}");
                                line.clear();
                                first_line = false;
                            }
                            if !line.is_empty() {
                                line.push(' ');
                            }
                            line.push_str(a);
                            line.push(',');
                        }
                        let _ = writeln!(out, "{pad}{line}");
                    }
                    _ => {
                        for item in items {
                            let s = item.render(inner, inner, 1);
                            let _ = writeln!(out, "{pad}{s},");
                        }
                    }
                }
                out.push_str(&" ".repeat(indent));
                out.push_str(close);
                out
            }
        }
    }
}

/// `lhs = rhs;` at column 0, as rustfmt places a right-hand side: on the same line if it all
/// fits, else on the next line (indented) if the right-hand side fits there in one line, else
/// broken after its opening delimiter (on the same line if that line fits, else on the next).
fn assign(out: &mut String, lhs: &str, rhs: &Node) {
    if let Some(flat) = rhs.flat() {
        // `lhs = flat;`
        let width = lhs.len() + " = ".len() + flat.len() + ";".len();
        if width <= MAX_WIDTH {
            let _ = writeln!(out, "{lhs} = {flat};");
            return;
        }
        if INDENT + flat.len() + ";".len() <= MAX_WIDTH {
            let _ = writeln!(out, "{lhs} =\n{}{flat};", " ".repeat(INDENT));
            return;
        }
    }
    let same_line = rhs.render(0, lhs.len() + 3, 1);
    if lhs.len() + 3 + same_line.lines().next().map_or(0, str::len) <= MAX_WIDTH {
        let _ = writeln!(out, "{lhs} = {same_line};");
    } else {
        let pad = " ".repeat(INDENT);
        let _ = writeln!(out, "{lhs} =\n{pad}{};", rhs.render(INDENT, INDENT, 1));
    }
}

/// A Rust identifier stem from any name: ASCII lowercase letters, digits and single `_`, not
/// starting with a digit, at most 32 characters; `"model"` if nothing is left.
pub(crate) fn identifier_stem(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.is_empty() && !s.ends_with('_') {
            s.push('_');
        }
    }
    s.truncate(32);
    while s.ends_with('_') {
        s.pop();
    }
    if s.is_empty() {
        return "model".to_string();
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "m_");
        s.truncate(32);
    }
    s
}

fn camel(stem: &str) -> String {
    let c: String = stem
        .split('_')
        .map(|p| {
            let mut cs = p.chars();
            cs.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + cs.as_str()
            })
        })
        .collect();
    if c == "Self" {
        "SelfModel".to_string()
    } else {
        c
    }
}

fn activation_name(a: FusedActivation) -> &'static str {
    match a {
        FusedActivation::None => "no activation",
        FusedActivation::Relu => "ReLU",
        FusedActivation::ReluN1To1 => "ReLU(-1, 1)",
        FusedActivation::Relu6 => "ReLU6",
    }
}

fn f32_literal(x: f32) -> String {
    // `{:?}` is the shortest representation that parses back to the same f32.
    format!("{x:?}")
}

fn qparams(q: tinyvae::QParams) -> Node {
    Node::call(
        "tinyvae::QParams::new",
        vec![Node::atom(f32_literal(q.scale)), Node::atom(q.zero_point)],
    )
}

fn qdense_type(l: &ImportedLayer) -> String {
    format!("tinyvae::QDense<{}, {}>", l.in_dim, l.out_dim)
}

/// The model as Rust source (see the module doc). `name` is turned into an identifier stem
/// (e.g. `"ad01_int8"`): the file defines `<NAME>_INPUT` / `<NAME>_OUTPUT` (`tinyvae::QParams`),
/// the type `<Name>` (nested `tinyvae::Chain`s of `tinyvae::QDense`, one alias `<Name>From<k>` per
/// suffix of the chain), the `pub static <NAME>: <Name>`, and per layer `k` the `const
/// <NAME>_L<k>` and the statics `<NAME>_L<k>_WEIGHTS` (`[[i8; IN]; OUT]`), `<NAME>_L<k>_BIAS`
/// (`[i32; OUT]`, input zero point folded in) and `<NAME>_L<k>_REQUANT`
/// (`[tinyvae::Requant; OUT]`). It uses `//` comments only, so it can be `include!`d.
pub fn to_rust_source(model: &ImportedModel, name: &str) -> String {
    let stem = identifier_stem(name);
    let upper = stem.to_ascii_uppercase();
    let ty = camel(&stem);
    let layers = &model.layers;
    let n = layers.len();
    let mut out = String::new();

    // Header.
    let _ = writeln!(out, "// `{stem}`:");
    let _ = writeln!(
        out,
        "// an int8 fully connected network imported from a TFLite model by `tinyvae import`."
    );
    let _ = writeln!(out, "// Generated code: do not edit.");
    if !model.description.is_empty()
        && model.description.len() <= 60
        && model.description.is_ascii()
    {
        let _ = writeln!(out, "// TFLite description: {:?}.", model.description);
    }
    let _ = writeln!(out, "//");
    let shapes: Vec<String> = std::iter::once(model.in_dim().to_string())
        .chain(layers.iter().map(|l| l.out_dim.to_string()))
        .collect();
    let _ = writeln!(out, "// {} layers: {}.", n, shapes.join("-"));
    let weight_bytes: usize = layers.iter().map(|l| l.weights.len()).sum();
    let bias_bytes: usize = layers.iter().map(|l| 4 * l.bias.len()).sum();
    let requant_bytes: usize = layers.iter().map(|l| 8 * l.requant.len()).sum();
    let scratch: usize = layers.iter().skip(1).map(|l| l.in_dim).sum();
    let _ = writeln!(
        out,
        "// {} multiply-accumulates per inference; constants: {weight_bytes} bytes of weights,",
        model.macs()
    );
    let _ = writeln!(
        out,
        "// {bias_bytes} bytes of biases, {requant_bytes} bytes of requantization multipliers;"
    );
    let _ = writeln!(
        out,
        "// scratch (`tinyvae::Layer::SCRATCH` of `{ty}`): {scratch} bytes."
    );
    if model.float_input || model.float_output {
        let _ = writeln!(
            out,
            "// The TFLite graph has float I/O: quantize its input with `{upper}_INPUT` and"
        );
        let _ = writeln!(out, "// dequantize its output with `{upper}_OUTPUT`.");
    }

    // Interface.
    out.push('\n');
    let _ = writeln!(out, "/// Quantization of the network's int8 input.");
    assign(
        &mut out,
        &format!("pub const {upper}_INPUT: tinyvae::QParams"),
        &qparams(model.input),
    );
    out.push('\n');
    let _ = writeln!(out, "/// Quantization of the network's int8 output.");
    assign(
        &mut out,
        &format!("pub const {upper}_OUTPUT: tinyvae::QParams"),
        &qparams(model.output),
    );

    // Types and values of the chain suffixes: `From<k>` runs layers k..n.
    let suffix_type = |k: usize| -> String {
        if k == 0 {
            ty.clone()
        } else {
            format!("{ty}From{k}")
        }
    };
    let suffix_value = |k: usize| -> String {
        if k + 1 == n {
            format!("{upper}_L{k}")
        } else if k == 0 {
            upper.clone()
        } else {
            format!("{upper}_FROM{k}")
        }
    };
    for (k, l) in layers.iter().enumerate() {
        out.push('\n');
        if k == 0 {
            let _ = writeln!(
                out,
                "/// The network's type: a `tinyvae::Layer<{}, {}>` on int8 values.",
                model.in_dim(),
                model.out_dim()
            );
        } else {
            let _ = writeln!(out, "/// Layers {k} to {} of `{ty}`.", n - 1);
        }
        let rhs = if k + 1 == n {
            Node::atom(qdense_type(l))
        } else {
            Node::generic(
                "tinyvae::Chain",
                vec![
                    Node::atom(qdense_type(l)),
                    Node::atom(suffix_type(k + 1)),
                    Node::atom(l.out_dim),
                ],
            )
        };
        assign(&mut out, &format!("pub type {}", suffix_type(k)), &rhs);
        let value = if k + 1 == n {
            Node::atom(format!("{upper}_L{k}"))
        } else {
            Node::call(
                "tinyvae::Chain::new",
                vec![
                    Node::atom(format!("{upper}_L{k}")),
                    Node::atom(suffix_value(k + 1)),
                ],
            )
        };
        if k == 0 {
            out.push('\n');
            let _ = writeln!(out, "/// The network.");
            assign(&mut out, &format!("pub static {upper}: {ty}"), &value);
        } else if k + 1 < n {
            out.push('\n');
            let _ = writeln!(out, "/// Layers {k} to {} of `{upper}`.", n - 1);
            assign(
                &mut out,
                &format!("pub const {}: {}", suffix_value(k), suffix_type(k)),
                &value,
            );
        }
    }

    // Layers.
    for (k, l) in layers.iter().enumerate() {
        let p = format!("{upper}_L{k}");
        out.push('\n');
        let _ = writeln!(
            out,
            "/// Layer {k}: {} -> {}, {}; {} weights{}.",
            l.in_dim,
            l.out_dim,
            activation_name(l.activation),
            if l.per_channel() {
                "per-channel"
            } else {
                "per-tensor"
            },
            if l.has_bias { "" } else { ", no bias" }
        );
        let _ = writeln!(
            out,
            "/// Input scale {}, zero point {}; output scale {}, zero point {}.",
            f32_literal(l.input.scale),
            l.input.zero_point,
            f32_literal(l.output.scale),
            l.output.zero_point
        );
        assign(
            &mut out,
            &format!("pub const {p}: {}", qdense_type(l)),
            &Node::call(
                "tinyvae::QDense::new",
                vec![
                    Node::atom(format!("&{p}_WEIGHTS")),
                    Node::atom(format!("&{p}_BIAS")),
                    Node::atom(format!("&{p}_REQUANT")),
                    Node::atom(l.output.zero_point),
                    Node::atom(l.act_min),
                    Node::atom(l.act_max),
                    Node::atom("None"),
                ],
            ),
        );
        out.push('\n');
        let _ = writeln!(out, "/// Layer {k} weights, `[output][input]`.");
        let rows = l
            .weights
            .chunks(l.in_dim.max(1))
            .map(|row| Node::array(row.iter().map(Node::atom).collect()))
            .collect();
        assign(
            &mut out,
            &format!(
                "pub static {p}_WEIGHTS: [[i8; {}]; {}]",
                l.in_dim, l.out_dim
            ),
            &Node::array(rows),
        );
        out.push('\n');
        let _ = writeln!(
            out,
            "/// Layer {k} bias, with the input zero point folded in (`tinyvae::fold_bias`)."
        );
        assign(
            &mut out,
            &format!("pub static {p}_BIAS: [i32; {}]", l.out_dim),
            &Node::array(l.bias.iter().map(Node::atom).collect()),
        );
        out.push('\n');
        let _ = writeln!(out, "/// Layer {k} requantization multipliers, per output.");
        let rq = l
            .requant
            .iter()
            .map(|r| {
                Node::call(
                    "tinyvae::Requant::new",
                    vec![Node::atom(r.multiplier), Node::atom(r.shift)],
                )
            })
            .collect();
        assign(
            &mut out,
            &format!("pub static {p}_REQUANT: [tinyvae::Requant; {}]", l.out_dim),
            &Node::array(rq),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_stems() {
        assert_eq!(identifier_stem("ad01_int8"), "ad01_int8");
        assert_eq!(identifier_stem("My Model-v2.tflite"), "my_model_v2_tflite");
        assert_eq!(identifier_stem("01"), "m_01");
        assert_eq!(identifier_stem("__"), "model");
        assert_eq!(identifier_stem(&"x".repeat(50)).len(), 32);
        assert_eq!(camel("ad01_int8"), "Ad01Int8");
        assert_eq!(camel("self"), "SelfModel");
    }

    #[test]
    fn layout_rules() {
        let mut s = String::new();
        assign(
            &mut s,
            "pub static A: [i32; 3]",
            &Node::array((1..=3).map(Node::atom).collect()),
        );
        assert_eq!(s, "pub static A: [i32; 3] = [1, 2, 3];\n");
        // 61 columns of items: no longer one line, filled.
        let items: Vec<Node> = (0..14)
            .map(|_| Node::atom("11"))
            .chain([Node::atom("11111")])
            .collect();
        let mut s = String::new();
        assign(&mut s, "pub static W: [i32; 15]", &Node::array(items));
        assert_eq!(
            s,
            "pub static W: [i32; 15] = [\n    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11111,\n];\n"
        );
    }
}
