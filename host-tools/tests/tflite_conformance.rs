//! TFLite import: bit-exact conformance with TFLite's reference kernels on the MLPerf Tiny
//! anomaly-detection model, refusals with clear messages, per-channel handling, float I/O edges,
//! and a fuzz loop (truncations and byte mutations must give `Err`, never a panic).
//!
//! `cargo test -p tinyvae-host-tools --test tflite_conformance -- --nocapture` prints the counts.

use std::path::PathBuf;

use flatbuffers::FlatBufferBuilder;
use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use tinyvae::{
    per_channel_multiplier, per_tensor_multiplier, quantize_multiplier, Chain, Layer, QDense,
    QParams, Requant,
};
use tinyvae_host_tools::tflite::{
    import_tflite, to_rust_source, FusedActivation, ImportError, ImportedLayer, ImportedModel,
};
use tract_tflite::tflite as fb;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/mlperf_tiny_ad01")
}

fn ad01_bytes() -> Vec<u8> {
    let p = model_dir().join("ad01_int8.tflite");
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

struct Case {
    input: Vec<i8>,
    reference: Vec<i8>,
    optimized: Vec<i8>,
}

struct ReferenceIo {
    input: QParams,
    output: QParams,
    cases: Vec<Case>,
}

fn reference_io() -> ReferenceIo {
    let p = model_dir().join("reference_io.json");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("reference_io.json is JSON");
    let qp = |k: &str| {
        QParams::new(
            v[k]["scale"].as_f64().expect("scale") as f32,
            v[k]["zero_point"].as_i64().expect("zero_point") as i32,
        )
    };
    let ints = |c: &serde_json::Value, k: &str| -> Vec<i8> {
        c[k].as_array()
            .unwrap_or_else(|| panic!("{k} is an array"))
            .iter()
            .map(|x| i8::try_from(x.as_i64().expect("integer")).expect("int8"))
            .collect()
    };
    let cases = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            input: ints(c, "input"),
            reference: ints(c, "output_reference"),
            optimized: ints(c, "output_tflite_optimized"),
        })
        .collect();
    ReferenceIo {
        input: qp("input"),
        output: qp("output"),
        cases,
    }
}

#[test]
fn ad01_matches_tflite_reference_kernels_bit_for_bit() {
    let model = import_tflite(&ad01_bytes()).expect("ad01 imports");
    let io = reference_io();
    let dims: Vec<usize> = std::iter::once(model.in_dim())
        .chain(model.layers.iter().map(|l| l.out_dim))
        .collect();
    assert_eq!(dims, [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]);
    assert_eq!(model.macs(), 264_192);
    assert_eq!(model.input, io.input, "input quantization");
    assert_eq!(model.output, io.output, "output quantization");
    assert!(!model.float_input && !model.float_output);
    assert_eq!(io.cases.len(), 64);

    let mut scratch = Vec::new();
    let mut y = vec![0i8; 640];
    let (mut ours_wrong, mut optimized_wrong, mut ours_vs_optimized) = (0usize, 0usize, 0usize);
    let mut first_failures = Vec::new();
    for (c, case) in io.cases.iter().enumerate() {
        model
            .forward(&case.input, &mut y, &mut scratch)
            .expect("forward");
        assert_eq!(case.reference.len(), 640);
        for (i, ((&a, &r), &o)) in y
            .iter()
            .zip(&case.reference)
            .zip(&case.optimized)
            .enumerate()
        {
            if a != r {
                ours_wrong += 1;
                if first_failures.len() < 20 {
                    first_failures.push(format!("case {c} index {i}: actual {a}, expected {r}"));
                }
            }
            optimized_wrong += usize::from(o != r);
            ours_vs_optimized += usize::from(a != o);
        }
    }
    let total = 64 * 640;
    println!("ad01 conformance over {total} outputs:");
    println!("  tinyvae vs TFLite reference kernels:        {ours_wrong} differ");
    println!("  TFLite optimized x86 vs reference kernels:  {optimized_wrong} differ");
    println!("  tinyvae vs TFLite optimized x86:            {ours_vs_optimized} differ");
    assert!(
        first_failures.is_empty(),
        "{ours_wrong} of {total} outputs differ from TFLite's reference kernels:\n{}",
        first_failures.join("\n")
    );
    assert_eq!(
        optimized_wrong, 82,
        "the reference file's optimized outputs"
    );
    assert_eq!(ours_vs_optimized, 82);
}

/// TFLite's per-tensor multiplier takes the product of the f32 scales in f32
/// (`tinyvae::per_tensor_multiplier`). The product in f64 gives a different Q31 multiplier in 9
/// of the 10 ad01 layers, and those multipliers change one of the 40,960 reference outputs: the
/// conformance above pins the formula down.
#[test]
fn ad01_requant_uses_tflites_per_tensor_formula() {
    let model = import_tflite(&ad01_bytes()).expect("ad01 imports");
    let mut f64_model = model.clone();
    let mut layers_differing = 0;
    for (k, (l, l64)) in model.layers.iter().zip(&mut f64_model.layers).enumerate() {
        assert!(!l.per_channel());
        let want_act = if k == 9 {
            FusedActivation::None
        } else {
            FusedActivation::Relu
        };
        assert_eq!(l.activation, want_act);
        // ReLU with output zero point -128 clamps at -128: no clamp at all.
        assert_eq!((l.act_min, l.act_max), (-128, 127), "layer {k}");
        let s_w = l.weight_scales[0];
        let m32 = per_tensor_multiplier(l.input.scale, s_w, l.output.scale);
        let want = quantize_multiplier(m32).expect("multiplier");
        assert!(l.requant.iter().all(|&r| r == want), "layer {k}");
        let m64 = per_channel_multiplier(l.input.scale, s_w, l.output.scale);
        let rq64 = quantize_multiplier(m64).expect("multiplier");
        layers_differing += usize::from(rq64 != want);
        l64.requant = vec![rq64; l.out_dim];
    }
    let io = reference_io();
    let mut y = vec![0i8; 640];
    let mut misses = 0;
    for case in &io.cases {
        f64_model
            .forward(&case.input, &mut y, &mut Vec::new())
            .expect("forward");
        misses += y
            .iter()
            .zip(&case.reference)
            .filter(|(a, r)| a != r)
            .count();
    }
    println!(
        "ad01 with f64-product multipliers: {layers_differing} of 10 layers differ, {misses} of \
         40960 outputs miss the reference"
    );
    assert_eq!((layers_differing, misses), (9, 1));
}

/// The typed firmware path (`QDense<IN, OUT>` in nested `Chain`s, as `to_rust_source` emits it)
/// gives the same bits as the reference kernels.
#[test]
fn ad01_typed_chain_matches_reference() {
    fn typed<const IN: usize, const OUT: usize>(l: &ImportedLayer) -> QDense<IN, OUT> {
        assert_eq!((l.in_dim, l.out_dim), (IN, OUT));
        let mut w = vec![[0i8; IN]; OUT];
        for (row, src) in w.iter_mut().zip(l.weights.chunks_exact(IN)) {
            row.copy_from_slice(src);
        }
        let w: &'static [[i8; IN]; OUT] =
            Box::leak(w.into_boxed_slice().try_into().expect("OUT rows"));
        let b: &'static [i32; OUT] =
            Box::leak(l.bias.clone().into_boxed_slice().try_into().expect("OUT"));
        let r: &'static [Requant; OUT] = Box::leak(
            l.requant
                .clone()
                .into_boxed_slice()
                .try_into()
                .expect("OUT"),
        );
        QDense::new(w, b, r, l.output.zero_point, l.act_min, l.act_max, None)
    }
    type Q<const I: usize, const O: usize> = QDense<I, O>;
    type Ad01 = Chain<
        Q<640, 128>,
        Chain<
            Q<128, 128>,
            Chain<
                Q<128, 128>,
                Chain<
                    Q<128, 128>,
                    Chain<
                        Q<128, 8>,
                        Chain<
                            Q<8, 128>,
                            Chain<
                                Q<128, 128>,
                                Chain<Q<128, 128>, Chain<Q<128, 128>, Q<128, 640>, 128>, 128>,
                                128,
                            >,
                            128,
                        >,
                        8,
                    >,
                    128,
                >,
                128,
            >,
            128,
        >,
        128,
    >;
    let m = import_tflite(&ad01_bytes()).expect("ad01 imports");
    let l = &m.layers;
    let net: Ad01 = Chain::new(
        typed(&l[0]),
        Chain::new(
            typed(&l[1]),
            Chain::new(
                typed(&l[2]),
                Chain::new(
                    typed(&l[3]),
                    Chain::new(
                        typed(&l[4]),
                        Chain::new(
                            typed(&l[5]),
                            Chain::new(
                                typed(&l[6]),
                                Chain::new(typed(&l[7]), Chain::new(typed(&l[8]), typed(&l[9]))),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    );
    let mut scratch = <Ad01 as Layer<640, 640>>::SCRATCH;
    assert_eq!(std::mem::size_of_val(&scratch), 8 * 128 + 8);
    let io = reference_io();
    for (c, case) in io.cases.iter().enumerate() {
        let x: [i8; 640] = case.input.clone().try_into().expect("640 inputs");
        let mut y = [0i8; 640];
        net.forward(&x, &mut y, &mut scratch);
        for (i, (&a, &r)) in y.iter().zip(&case.reference).enumerate() {
            assert_eq!(a, r, "case {c} index {i}: actual {a}, expected {r}");
        }
    }
}

#[test]
fn ad01_mse_score_is_the_benchmark_score() {
    let model = import_tflite(&ad01_bytes()).expect("ad01 imports");
    let io = reference_io();
    for (c, case) in io.cases.iter().enumerate().take(8) {
        // A float input on the int8 grid quantizes back to the case's input exactly.
        let x: Vec<f32> = case
            .input
            .iter()
            .map(|&q| tinyvae::dequantize(q, io.input))
            .collect();
        let expected: f64 = x
            .iter()
            .zip(&case.reference)
            .map(|(&xi, &r)| {
                let d = f64::from(tinyvae::dequantize(r, io.output)) - f64::from(xi);
                d * d
            })
            .sum::<f64>()
            / 640.0;
        let got = model.mse_score(&x).expect("score");
        assert_eq!(
            got, expected as f32,
            "case {c}: actual {got}, expected {expected}"
        );
    }
    assert!(model.mse_score(&[0.0; 3]).is_err());
    let mut bad = vec![0.0f32; 640];
    bad[5] = f32::NAN;
    assert!(matches!(
        model.mse_score(&bad),
        Err(tinyvae::Error::NonFinite { index: 5 })
    ));
}

// ---------------------------------------------------------------------------------------------
// A small TFLite writer (the `flatbuffers` builder with TFLite's generated tables), for models
// that exercise each rule.

#[derive(Clone, Debug)]
struct TensorSpec {
    name: String,
    ty: fb::TensorType,
    shape: Vec<i32>,
    data: Option<Vec<u8>>,
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    quantized_dimension: i32,
}

#[derive(Clone, Debug)]
struct OpSpec {
    code: fb::BuiltinOperator,
    custom: Option<String>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    /// `FullyConnectedOptions` (activation, keep_num_dims, weights format).
    fc: Option<(
        fb::ActivationFunctionType,
        bool,
        fb::FullyConnectedOptionsWeightsFormat,
    )>,
}

#[derive(Clone, Debug)]
struct GraphSpec {
    tensors: Vec<TensorSpec>,
    ops: Vec<OpSpec>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    /// Write operator codes as old converters did: only `deprecated_builtin_code`.
    old_style_codes: bool,
}

fn act_tensor(name: &str, ty: fb::TensorType, n: usize, q: (f32, i64)) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        ty,
        shape: vec![1, n as i32],
        data: None,
        scales: if ty == fb::TensorType::FLOAT32 {
            vec![]
        } else {
            vec![q.0]
        },
        zero_points: if ty == fb::TensorType::FLOAT32 {
            vec![]
        } else {
            vec![q.1]
        },
        quantized_dimension: 0,
    }
}

fn build(g: &GraphSpec) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let mut codes: Vec<(fb::BuiltinOperator, Option<String>)> = Vec::new();
    let mut op_index = Vec::new();
    for op in &g.ops {
        let key = (op.code, op.custom.clone());
        let i = codes.iter().position(|c| *c == key).unwrap_or_else(|| {
            codes.push(key);
            codes.len() - 1
        });
        op_index.push(i as u32);
    }
    let code_offsets: Vec<_> = codes
        .iter()
        .map(|(code, custom)| {
            let custom_code = custom.as_deref().map(|s| fbb.create_string(s));
            let deprecated = code.0.min(127) as i8;
            let args = fb::OperatorCodeArgs {
                deprecated_builtin_code: deprecated,
                custom_code,
                version: 1,
                builtin_code: if g.old_style_codes {
                    fb::BuiltinOperator(0)
                } else {
                    *code
                },
            };
            fb::OperatorCode::create(&mut fbb, &args)
        })
        .collect();
    let mut buffers = vec![fb::Buffer::create(&mut fbb, &fb::BufferArgs { data: None })];
    let mut tensors = Vec::new();
    for t in &g.tensors {
        let buffer = match &t.data {
            Some(d) => {
                let data = Some(fbb.create_vector(d));
                buffers.push(fb::Buffer::create(&mut fbb, &fb::BufferArgs { data }));
                (buffers.len() - 1) as u32
            }
            None => 0,
        };
        let quantization = if t.scales.is_empty() && t.zero_points.is_empty() {
            None
        } else {
            let scale = Some(fbb.create_vector(&t.scales));
            let zero_point = Some(fbb.create_vector(&t.zero_points));
            Some(fb::QuantizationParameters::create(
                &mut fbb,
                &fb::QuantizationParametersArgs {
                    scale,
                    zero_point,
                    quantized_dimension: t.quantized_dimension,
                    ..Default::default()
                },
            ))
        };
        let shape = Some(fbb.create_vector(&t.shape));
        let name = Some(fbb.create_string(&t.name));
        tensors.push(fb::Tensor::create(
            &mut fbb,
            &fb::TensorArgs {
                shape,
                type_: t.ty,
                buffer,
                name,
                quantization,
                ..Default::default()
            },
        ));
    }
    let mut ops = Vec::new();
    for (op, &opcode_index) in g.ops.iter().zip(&op_index) {
        let (builtin_options_type, builtin_options) = match op.fc {
            Some((act, keep, format)) => {
                let o = fb::FullyConnectedOptions::create(
                    &mut fbb,
                    &fb::FullyConnectedOptionsArgs {
                        fused_activation_function: act,
                        weights_format: format,
                        keep_num_dims: keep,
                        asymmetric_quantize_inputs: false,
                    },
                );
                (
                    fb::BuiltinOptions::FullyConnectedOptions,
                    Some(o.as_union_value()),
                )
            }
            None => (fb::BuiltinOptions::NONE, None),
        };
        let inputs = Some(fbb.create_vector(&op.inputs));
        let outputs = Some(fbb.create_vector(&op.outputs));
        ops.push(fb::Operator::create(
            &mut fbb,
            &fb::OperatorArgs {
                opcode_index,
                inputs,
                outputs,
                builtin_options_type,
                builtin_options,
                ..Default::default()
            },
        ));
    }
    let tensors = Some(fbb.create_vector(&tensors));
    let operators = Some(fbb.create_vector(&ops));
    let inputs = Some(fbb.create_vector(&g.inputs));
    let outputs = Some(fbb.create_vector(&g.outputs));
    let name = Some(fbb.create_string("main"));
    let sg = fb::SubGraph::create(
        &mut fbb,
        &fb::SubGraphArgs {
            tensors,
            inputs,
            outputs,
            operators,
            name,
        },
    );
    let subgraphs = Some(fbb.create_vector(&[sg]));
    let operator_codes = Some(fbb.create_vector(&code_offsets));
    let buffers = Some(fbb.create_vector(&buffers));
    let description = Some(fbb.create_string("tinyvae test model"));
    let model = fb::Model::create(
        &mut fbb,
        &fb::ModelArgs {
            version: 3,
            operator_codes,
            subgraphs,
            description,
            buffers,
            ..Default::default()
        },
    );
    fb::finish_model_buffer(&mut fbb, model);
    fbb.finished_data().to_vec()
}

/// One int8 fully connected layer for [`chain`].
#[derive(Clone, Debug)]
struct Fc {
    in_dim: usize,
    out_dim: usize,
    weights: Vec<i8>,
    weight_scales: Vec<f32>,
    bias: Option<Vec<i32>>,
    act: fb::ActivationFunctionType,
    out_q: (f32, i64),
}

fn random_fc(rng: &mut XorShiftRng, in_dim: usize, out_dim: usize, per_channel: bool) -> Fc {
    let mut r = |lo: i32, hi: i32| lo + (rng.next_u32() % (hi - lo + 1) as u32) as i32;
    let weights = (0..in_dim * out_dim).map(|_| r(-127, 127) as i8).collect();
    let n_scales = if per_channel { out_dim } else { 1 };
    let weight_scales = (0..n_scales)
        .map(|_| 0.002 + r(0, 1000) as f32 * 1e-5)
        .collect();
    let bias = Some((0..out_dim).map(|_| r(-4000, 4000)).collect());
    let out_q = (0.02 + r(0, 100) as f32 * 1e-3, i64::from(r(-20, 20)));
    Fc {
        in_dim,
        out_dim,
        weights,
        weight_scales,
        bias,
        act: fb::ActivationFunctionType::RELU,
        out_q,
    }
}

/// An int8 chain of `FULLY_CONNECTED` layers, input quantization `in_q`.
fn chain(in_q: (f32, i64), layers: &[Fc]) -> GraphSpec {
    let mut tensors = vec![act_tensor(
        "input",
        fb::TensorType::INT8,
        layers[0].in_dim,
        in_q,
    )];
    let mut ops = Vec::new();
    let mut cur = 0i32;
    let mut cur_q = in_q;
    for (k, l) in layers.iter().enumerate() {
        let w = tensors.len() as i32;
        tensors.push(TensorSpec {
            name: format!("w{k}"),
            ty: fb::TensorType::INT8,
            shape: vec![l.out_dim as i32, l.in_dim as i32],
            data: Some(l.weights.iter().map(|&v| v as u8).collect()),
            scales: l.weight_scales.clone(),
            zero_points: vec![0; l.weight_scales.len()],
            quantized_dimension: 0,
        });
        let b = match &l.bias {
            Some(bias) => {
                tensors.push(TensorSpec {
                    name: format!("b{k}"),
                    ty: fb::TensorType::INT32,
                    shape: vec![l.out_dim as i32],
                    data: Some(bias.iter().flat_map(|v| v.to_le_bytes()).collect()),
                    scales: l.weight_scales.iter().map(|s| cur_q.0 * s).collect(),
                    zero_points: vec![0; l.weight_scales.len()],
                    quantized_dimension: 0,
                });
                tensors.len() as i32 - 1
            }
            None => -1,
        };
        let y = tensors.len() as i32;
        tensors.push(act_tensor(
            &format!("y{k}"),
            fb::TensorType::INT8,
            l.out_dim,
            l.out_q,
        ));
        ops.push(OpSpec {
            code: fb::BuiltinOperator::FULLY_CONNECTED,
            custom: None,
            inputs: vec![cur, w, b],
            outputs: vec![y],
            fc: Some((
                l.act,
                false,
                fb::FullyConnectedOptionsWeightsFormat::DEFAULT,
            )),
        });
        cur = y;
        cur_q = l.out_q;
    }
    GraphSpec {
        tensors,
        ops,
        inputs: vec![0],
        outputs: vec![cur],
        old_style_codes: false,
    }
}

fn small_net(seed: u64) -> (GraphSpec, Vec<Fc>) {
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let layers = vec![
        random_fc(&mut rng, 12, 7, false),
        random_fc(&mut rng, 7, 5, true),
    ];
    (chain((0.05, -3), &layers), layers)
}

fn random_inputs(rng: &mut XorShiftRng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.next_u32() as u8 as i8).collect()
}

fn unsupported_message(g: &GraphSpec) -> String {
    match import_tflite(&build(g)) {
        Err(ImportError::Unsupported(m)) => m,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn builder_models_import_with_the_documented_parameters() {
    let (g, layers) = small_net(1);
    for old_style in [false, true] {
        let g = GraphSpec {
            old_style_codes: old_style,
            ..g.clone()
        };
        let m = import_tflite(&build(&g)).expect("imports");
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.description, "tinyvae test model");
        let mut in_q = QParams::new(0.05, -3);
        for (k, (il, fc)) in m.layers.iter().zip(&layers).enumerate() {
            let out_q = QParams::new(fc.out_q.0, fc.out_q.1 as i32);
            assert_eq!(il.input, in_q, "layer {k}");
            assert_eq!(il.output, out_q, "layer {k}");
            assert_eq!(il.weights, fc.weights, "layer {k}");
            assert_eq!(il.raw_bias, fc.bias.clone().unwrap(), "layer {k}");
            for o in 0..fc.out_dim {
                let m = if fc.weight_scales.len() == 1 {
                    per_tensor_multiplier(in_q.scale, fc.weight_scales[0], out_q.scale)
                } else {
                    per_channel_multiplier(in_q.scale, fc.weight_scales[o], out_q.scale)
                };
                assert_eq!(
                    il.requant[o],
                    quantize_multiplier(m).unwrap(),
                    "layer {k} output {o}"
                );
                let row = &fc.weights[o * fc.in_dim..(o + 1) * fc.in_dim];
                let sum: i64 = row.iter().map(|&w| i64::from(w)).sum();
                let want = i64::from(il.raw_bias[o]) - i64::from(in_q.zero_point) * sum;
                assert_eq!(i64::from(il.bias[o]), want, "layer {k} output {o}");
            }
            // RELU: [max(-128, zp), 127].
            assert_eq!(
                (il.act_min, il.act_max),
                ((out_q.zero_point).max(-128) as i8, 127)
            );
            in_q = out_q;
        }
    }
}

#[test]
fn fused_activation_ranges_follow_tflite() {
    let mut rng = XorShiftRng::seed_from_u64(2);
    let mut fc = random_fc(&mut rng, 4, 3, false);
    fc.out_q = (0.05, -10);
    let cases = [
        (
            fb::ActivationFunctionType::NONE,
            FusedActivation::None,
            (-128, 127),
        ),
        (
            fb::ActivationFunctionType::RELU,
            FusedActivation::Relu,
            (-10, 127),
        ),
        // 6 / 0.05 = 120 (f32: 119.99999 or 120.00001 both round to 120): -10 + 120 = 110.
        (
            fb::ActivationFunctionType::RELU6,
            FusedActivation::Relu6,
            (-10, 110),
        ),
        (
            fb::ActivationFunctionType::RELU_N1_TO_1,
            FusedActivation::ReluN1To1,
            (-30, 10),
        ),
    ];
    for (act, want_act, want_range) in cases {
        fc.act = act;
        let m =
            import_tflite(&build(&chain((0.1, 0), std::slice::from_ref(&fc)))).expect("imports");
        let l = &m.layers[0];
        assert_eq!(l.activation, want_act);
        assert_eq!((l.act_min, l.act_max), want_range, "{act:?}");
    }
    fc.act = fb::ActivationFunctionType::TANH;
    let msg = unsupported_message(&chain((0.1, 0), std::slice::from_ref(&fc)));
    assert!(msg.contains("TANH"), "{msg}");
}

/// Per-channel weights: output `o` of a per-channel layer equals output `o` of the per-tensor
/// layer whose single scale is `s_w[o]` (the conformance test pins the per-tensor arithmetic).
/// The scales are dyadic so that `s_in * s_w` is exact in f32: TFLite's per-tensor (f32 product)
/// and per-channel (f64 product) multipliers then agree.
#[test]
fn per_channel_equals_per_tensor_channel_by_channel() {
    let mut rng = XorShiftRng::seed_from_u64(3);
    let mut pc = random_fc(&mut rng, 16, 6, true);
    pc.weight_scales = (0..6).map(|o| (3 + 5 * o) as f32 / 4096.0).collect();
    let in_q = (0.0625, 7);
    let m = import_tflite(&build(&chain(in_q, std::slice::from_ref(&pc)))).expect("per-channel");
    assert!(m.layers[0].per_channel());
    let distinct: std::collections::BTreeSet<_> =
        m.layers[0].requant.iter().map(|r| r.multiplier).collect();
    assert!(
        distinct.len() > 1,
        "the channels have different multipliers"
    );
    let inputs: Vec<Vec<i8>> = (0..200).map(|_| random_inputs(&mut rng, 16)).collect();
    let run = |m: &ImportedModel, x: &[i8]| {
        let mut y = vec![0i8; m.out_dim()];
        m.forward(x, &mut y, &mut Vec::new()).expect("forward");
        y
    };
    for (o, &s) in pc.weight_scales.iter().enumerate() {
        let pt = Fc {
            weight_scales: vec![s],
            ..pc.clone()
        };
        let mt =
            import_tflite(&build(&chain(in_q, std::slice::from_ref(&pt)))).expect("per-tensor");
        assert!(!mt.layers[0].per_channel());
        assert_eq!(mt.layers[0].requant[o], m.layers[0].requant[o]);
        for x in &inputs {
            let (a, b) = (run(&m, x)[o], run(&mt, x)[o]);
            assert_eq!(
                a, b,
                "output {o} input {x:?}: per-channel {a}, per-tensor {b}"
            );
        }
    }
    // The same scale in every channel is exactly the per-tensor layer.
    let same = Fc {
        weight_scales: vec![pc.weight_scales[0]; 6],
        ..pc.clone()
    };
    let one = Fc {
        weight_scales: vec![pc.weight_scales[0]],
        ..pc.clone()
    };
    let (ms, mo) = (
        import_tflite(&build(&chain(in_q, &[same]))).expect("same"),
        import_tflite(&build(&chain(in_q, &[one]))).expect("one"),
    );
    for x in &inputs {
        assert_eq!(run(&ms, x), run(&mo, x), "input {x:?}");
    }
    // Wrong number of scales, or scales along the input dimension: refused.
    let mut g = chain(in_q, std::slice::from_ref(&pc));
    g.tensors[1].scales.truncate(4);
    g.tensors[1].zero_points.truncate(4);
    assert!(
        matches!(import_tflite(&build(&g)), Err(ImportError::Malformed(m)) if m.contains("4 scales"))
    );
    let mut g = chain(in_q, std::slice::from_ref(&pc));
    g.tensors[1].quantized_dimension = 1;
    let msg = unsupported_message(&g);
    assert!(msg.contains("dimension 1"), "{msg}");
}

#[test]
fn layers_without_bias() {
    let mut rng = XorShiftRng::seed_from_u64(4);
    let mut fc = random_fc(&mut rng, 9, 4, false);
    let with = import_tflite(&build(&chain((0.1, 5), std::slice::from_ref(&fc)))).expect("bias");
    fc.bias = None;
    let without =
        import_tflite(&build(&chain((0.1, 5), std::slice::from_ref(&fc)))).expect("no bias");
    let l = &without.layers[0];
    assert!(!l.has_bias && with.layers[0].has_bias);
    assert_eq!(l.raw_bias, vec![0; 4]);
    for o in 0..4 {
        let sum: i32 = fc.weights[o * 9..(o + 1) * 9]
            .iter()
            .map(|&w| i32::from(w))
            .sum();
        assert_eq!(l.bias[o], -5 * sum);
    }
    // Two inputs instead of three (bias omitted entirely) is the same layer.
    let mut g = chain((0.1, 5), std::slice::from_ref(&fc));
    g.ops[0].inputs.truncate(2);
    assert_eq!(
        import_tflite(&build(&g)).expect("2 inputs").layers,
        without.layers
    );
}

#[test]
fn float_io_edges_are_reproduced() {
    let (g, _) = small_net(5);
    let int8 = import_tflite(&build(&g)).expect("int8");
    // float input -> QUANTIZE -> (int8 chain) -> DEQUANTIZE -> float output
    let mut f = g.clone();
    let n_in = int8.in_dim();
    let n_out = int8.out_dim();
    let fin = f.tensors.len() as i32;
    f.tensors.push(act_tensor(
        "float_in",
        fb::TensorType::FLOAT32,
        n_in,
        (0.0, 0),
    ));
    let fout = fin + 1;
    f.tensors.push(act_tensor(
        "float_out",
        fb::TensorType::FLOAT32,
        n_out,
        (0.0, 0),
    ));
    let last = g.outputs[0];
    f.ops.insert(
        0,
        OpSpec {
            code: fb::BuiltinOperator::QUANTIZE,
            custom: None,
            inputs: vec![fin],
            outputs: vec![0],
            fc: None,
        },
    );
    f.ops.push(OpSpec {
        code: fb::BuiltinOperator::DEQUANTIZE,
        custom: None,
        inputs: vec![last],
        outputs: vec![fout],
        fc: None,
    });
    f.inputs = vec![fin];
    f.outputs = vec![fout];
    let float = import_tflite(&build(&f)).expect("float I/O");
    assert!(float.float_input && float.float_output);
    assert_eq!(float.layers, int8.layers);
    assert_eq!((float.input, float.output), (int8.input, int8.output));

    // A QUANTIZE inside the chain is a requantization: refused.
    let mut bad = g.clone();
    let extra = bad.tensors.len() as i32;
    let q = (bad.tensors[3].scales[0], bad.tensors[3].zero_points[0]);
    bad.tensors
        .push(act_tensor("requantized", fb::TensorType::INT8, 7, q));
    bad.ops.insert(
        1,
        OpSpec {
            code: fb::BuiltinOperator::QUANTIZE,
            custom: None,
            inputs: vec![3],
            outputs: vec![extra],
            fc: None,
        },
    );
    bad.ops[2].inputs[0] = extra;
    let msg = unsupported_message(&bad);
    assert!(
        msg.contains("QUANTIZE is supported only as the first operator"),
        "{msg}"
    );
}

#[test]
fn unsupported_operators_are_named() {
    let (g, _) = small_net(6);
    // An element-wise op between the two layers.
    for (code, name) in [
        (fb::BuiltinOperator::TANH, "TANH"),
        (fb::BuiltinOperator::LOGISTIC, "LOGISTIC"),
        (fb::BuiltinOperator::CONV_2D, "CONV_2D"),
        (fb::BuiltinOperator::CONV_3D, "CONV_3D"), // code 132 > 127
    ] {
        for old_style in [false, true] {
            let mut bad = g.clone();
            bad.old_style_codes = old_style && code.0 < 127;
            let t = bad.tensors.len() as i32;
            let q = (bad.tensors[3].scales[0], bad.tensors[3].zero_points[0]);
            bad.tensors
                .push(act_tensor("act", fb::TensorType::INT8, 7, q));
            bad.ops.insert(
                1,
                OpSpec {
                    code,
                    custom: None,
                    inputs: vec![3],
                    outputs: vec![t],
                    fc: None,
                },
            );
            bad.ops[2].inputs[0] = t;
            let msg = unsupported_message(&bad);
            assert!(msg.contains(&format!("operator 1 is {name}")), "{msg}");
        }
    }
    let mut bad = g.clone();
    bad.ops[1].code = fb::BuiltinOperator::CUSTOM;
    bad.ops[1].custom = Some("MyDense".into());
    let msg = unsupported_message(&bad);
    assert!(msg.contains("custom operator 'MyDense'"), "{msg}");
}

/// The real model with its one operator code patched in place (`deprecated_builtin_code` 9,
/// `FULLY_CONNECTED`, becomes 3, `CONV_2D`, or 32, `CUSTOM`).
#[test]
fn patched_real_model_is_refused_by_operator_name() {
    let bytes = ad01_bytes();
    let model = fb::root_as_model(&bytes).expect("valid");
    let oc = model.operator_codes().expect("codes").get(0);
    assert_eq!(oc.deprecated_builtin_code(), 9);
    let at = oc._tab.loc()
        + usize::from(
            oc._tab
                .vtable()
                .get(fb::OperatorCode::VT_DEPRECATED_BUILTIN_CODE),
        );
    assert_eq!(bytes[at], 9);
    for (code, want) in [
        (3u8, "operator 0 is CONV_2D"),
        (32, "operator 0 is the custom operator"),
    ] {
        let mut patched = bytes.clone();
        patched[at] = code;
        match import_tflite(&patched) {
            Err(ImportError::Unsupported(m)) => assert!(m.contains(want), "{m}"),
            other => panic!(
                "expected Unsupported({want}), got {:?}",
                other.map(|m| m.layers.len())
            ),
        }
    }
}

#[test]
fn unsupported_options_and_types_are_named() {
    let (g, _) = small_net(7);
    let check = |mutate: &dyn Fn(&mut GraphSpec), want: &str| {
        let mut bad = g.clone();
        mutate(&mut bad);
        let msg = unsupported_message(&bad);
        assert!(msg.contains(want), "wanted '{want}' in: {msg}");
    };
    check(
        &|g| {
            g.ops[0].fc = Some((
                fb::ActivationFunctionType::RELU,
                true,
                fb::FullyConnectedOptionsWeightsFormat::DEFAULT,
            ))
        },
        "keep_num_dims",
    );
    check(
        &|g| {
            g.ops[0].fc = Some((
                fb::ActivationFunctionType::RELU,
                false,
                fb::FullyConnectedOptionsWeightsFormat::SHUFFLED4x16INT8,
            ))
        },
        "weights_format SHUFFLED4x16INT8",
    );
    check(
        &|g| g.tensors[1].zero_points = vec![3],
        "asymmetric weights (zero point 3",
    );
    check(&|g| g.tensors[0].ty = fb::TensorType::INT16, "type INT16");
    check(
        &|g| {
            g.tensors[0].ty = fb::TensorType::FLOAT32;
            g.tensors[0].scales.clear();
            g.tensors[0].zero_points.clear();
        },
        "type FLOAT32",
    );
    check(
        &|g| g.tensors[1].ty = fb::TensorType::FLOAT32,
        "only int8 weights",
    );
    check(
        &|g| g.tensors[2].ty = fb::TensorType::INT64,
        "only int32 biases",
    );
    check(&|g| g.tensors[0].shape = vec![2, 12], "batch size 2");
    check(&|g| g.tensors[0].shape = vec![3, 12], "batch size 3");
    check(&|g| g.tensors[1].data = None, "not constant");
    check(&|g| g.ops[1].inputs[0] = 0, "only a chain");
    check(&|g| g.outputs = vec![3], "the graph output is tensor 3");
    check(&|g| g.inputs = vec![0, 3], "2 inputs");
    // Bias scale far from input scale x weight scale: TFLite refuses it too.
    let mut bad = g.clone();
    bad.tensors[2].scales[0] = 1.0;
    assert!(
        matches!(import_tflite(&build(&bad)), Err(ImportError::Invalid(m)) if m.contains("bias scale"))
    );
    // Weights whose data does not match the shape.
    let mut bad = g.clone();
    bad.tensors[1].data.as_mut().unwrap().pop();
    assert!(
        matches!(import_tflite(&build(&bad)), Err(ImportError::Malformed(m)) if m.contains("bytes of data"))
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: truncations and byte mutations of real and small models must never panic.

fn must_not_panic(bytes: &[u8], what: &str) -> bool {
    match std::panic::catch_unwind(|| import_tflite(bytes)) {
        Ok(r) => r.is_ok(),
        Err(_) => panic!("import_tflite panicked on {what}"),
    }
}

#[test]
fn fuzz_truncated_and_mutated_files_never_panic() {
    let start = std::time::Instant::now();
    let real = ad01_bytes();
    let (g, _) = small_net(8);
    let small = build(&g);
    assert!(import_tflite(&small).is_ok());
    let mut rng = XorShiftRng::seed_from_u64(0x7f1_17e);
    let mut ok = 0usize;
    let mut n = 0usize;
    // Every truncation of the small model, then random truncations of the real one.
    for len in 0..small.len() {
        ok += usize::from(must_not_panic(&small[..len], &format!("small[..{len}]")));
        n += 1;
    }
    for _ in 0..300 {
        let len = rng.next_u32() as usize % real.len();
        ok += usize::from(must_not_panic(&real[..len], &format!("real[..{len}]")));
        n += 1;
    }
    // Every byte of the small model set to 0x00, 0xff, flipped high bit, +1.
    for i in 0..small.len() {
        let orig = small[i];
        for v in [0x00, 0xff, orig ^ 0x80, orig.wrapping_add(1)] {
            if v == orig {
                continue;
            }
            let mut m = small.clone();
            m[i] = v;
            ok += usize::from(must_not_panic(&m, &format!("small[{i}] = {v:#04x}")));
            n += 1;
        }
    }
    // Random multi-byte mutations of the real model's flatbuffer structure (outside the large
    // weight buffers, where most bytes are plain data, mutations are aimed at the first and last
    // 4 KiB) and random bytes behind a valid identifier.
    for _ in 0..400 {
        let mut m = real.clone();
        for _ in 0..1 + rng.next_u32() % 8 {
            let r = rng.next_u32() as usize % 8192;
            let i = if r < 4096 {
                r
            } else {
                real.len() - 1 - (r - 4096)
            };
            m[i] = rng.next_u32() as u8;
        }
        ok += usize::from(must_not_panic(&m, "a mutated ad01"));
        n += 1;
    }
    for _ in 0..2000 {
        let len = 8 + rng.next_u32() as usize % 512;
        let mut m: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        m[4..8].copy_from_slice(b"TFL3");
        ok += usize::from(must_not_panic(&m, "random bytes"));
        n += 1;
    }
    println!(
        "fuzz: {n} inputs, {ok} imported, {} refused, no panic ({:.1} s)",
        n - ok,
        start.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Rust export.

fn rustfmt_output(src: &str) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let src = src.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(src.as_bytes()));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    assert!(
        out.status.success(),
        "rustfmt failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("utf-8"))
}

fn assert_rustfmt_clean(src: &str, what: &str) {
    match rustfmt_output(src) {
        None => println!("rustfmt not available: {what} not checked"),
        Some(formatted) => {
            if formatted != src {
                let (a, b): (Vec<_>, Vec<_>) = (src.lines().collect(), formatted.lines().collect());
                let i = a
                    .iter()
                    .zip(&b)
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.len().min(b.len()));
                let dir = std::env::temp_dir();
                let _ = std::fs::write(dir.join("tinyvae_generated.rs"), src);
                let _ = std::fs::write(dir.join("tinyvae_rustfmt.rs"), &formatted);
                panic!(
                    "{what}: rustfmt changes line {}:\n  generated: {:?}\n  rustfmt:   {:?}",
                    i + 1,
                    a.get(i),
                    b.get(i)
                );
            }
        }
    }
}

#[test]
fn rust_source_is_deterministic_and_rustfmt_clean() {
    let m = import_tflite(&ad01_bytes()).expect("ad01 imports");
    let src = to_rust_source(&m, "ad01_int8");
    assert_eq!(src, to_rust_source(&m, "ad01_int8"));
    for needle in [
        "pub const AD01_INT8_INPUT: tinyvae::QParams = tinyvae::QParams::new(0.39101523, 89);",
        "pub type Ad01Int8 = tinyvae::Chain<tinyvae::QDense<640, 128>, Ad01Int8From1, 128>;",
        "pub static AD01_INT8: Ad01Int8 = tinyvae::Chain::new(AD01_INT8_L0, AD01_INT8_FROM1);",
        "pub type Ad01Int8From9 = tinyvae::QDense<128, 640>;",
        "pub static AD01_INT8_L0_WEIGHTS: [[i8; 640]; 128] = [",
        "pub static AD01_INT8_L9_REQUANT: [tinyvae::Requant; 640] = [",
    ] {
        assert!(src.contains(needle), "missing: {needle}");
    }
    println!(
        "ad01 model.rs: {} bytes, {} lines",
        src.len(),
        src.lines().count()
    );
    assert_rustfmt_clean(&src, "ad01_int8");
    assert_rustfmt_clean(&to_rust_source(&m, "a"), "name a");
    assert_rustfmt_clean(
        &to_rust_source(&m, &"long_name_".repeat(4)),
        "a 32-character name",
    );

    // Small shapes: rows and arrays that fit on one line, big biases (one item per line), one layer.
    let mut rng = XorShiftRng::seed_from_u64(9);
    let mut tiny = vec![
        random_fc(&mut rng, 3, 2, false),
        random_fc(&mut rng, 2, 1, true),
    ];
    tiny[0].bias = Some(vec![-2_000_000_000, 1_999_999_999]);
    let tm = import_tflite(&build(&chain((0.1, 0), &tiny))).expect("tiny");
    let ts = to_rust_source(&tm, "tiny");
    assert!(
        ts.contains("pub static TINY_L0_WEIGHTS: [[i8; 3]; 2] = [["),
        "{ts}"
    );
    assert_rustfmt_clean(&ts, "tiny");
    assert_rustfmt_clean(&to_rust_source(&tm, &"x".repeat(32)), "tiny, long name");
    let one = import_tflite(&build(&chain((0.1, 0), &tiny[..1]))).expect("one layer");
    let os = to_rust_source(&one, "one");
    assert!(os.contains("pub type One = tinyvae::QDense<3, 2>;"), "{os}");
    assert!(os.contains("pub static ONE: One = ONE_L0;"), "{os}");
    assert_rustfmt_clean(&os, "one layer");
    for seed in 10..20 {
        let mut rng = XorShiftRng::seed_from_u64(seed);
        let dims: Vec<usize> = (0..4).map(|_| 1 + rng.next_u32() as usize % 40).collect();
        let layers: Vec<Fc> = dims
            .windows(2)
            .map(|w| random_fc(&mut rng, w[0], w[1], rng_bool(seed)))
            .collect();
        let m = import_tflite(&build(&chain((0.1, 0), &layers))).expect("random shapes");
        assert_rustfmt_clean(
            &to_rust_source(&m, &format!("net{seed}")),
            &format!("dims {dims:?}"),
        );
    }
}

fn rng_bool(seed: u64) -> bool {
    seed.is_multiple_of(2)
}

#[test]
fn import_to_dir_writes_source_and_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let m = tinyvae_host_tools::tflite::import_to_dir(&model_dir().join("ad01_int8.tflite"), &out)
        .expect("import_to_dir");
    let src = std::fs::read_to_string(out.join("model.rs")).expect("model.rs");
    assert_eq!(src, to_rust_source(&m, "ad01_int8"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).expect("json"))
            .expect("JSON");
    assert_eq!(json["name"], "ad01_int8");
    assert_eq!(json["macs"], 264_192);
    assert_eq!(json["source_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(json["layers"].as_array().map(Vec::len), Some(10));
    assert_eq!(json["scratch_bytes"], 1032);
    println!(
        "ad01 summary: weights {} B, constants {} B, scratch {} B",
        json["weight_bytes"], json["constant_bytes"], json["scratch_bytes"]
    );
    // Errors name the file.
    let bad = dir.path().join("bad.tflite");
    std::fs::write(&bad, b"not a model").expect("write");
    let e = tinyvae_host_tools::tflite::import_to_dir(&bad, &out).expect_err("refused");
    assert!(format!("{e:#}").contains("bad.tflite"), "{e:#}");
}

/// Compiles the generated `model.rs` against the real library in a scratch crate (`cargo run
/// --offline`, about 10 s) and runs the typed network, as the firmware will, on the 64 reference
/// cases. Skipped (with a message) only if cargo cannot resolve the library's dependencies offline.
#[test]
fn generated_source_compiles_and_matches_reference() {
    let m = import_tflite(&ad01_bytes()).expect("ad01 imports");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("src")).expect("scratch dir");
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"generated_check\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\ntinyvae = {{ path = {:?} }}\n\n[workspace]\n",
            lib.display().to_string()
        ),
    )
    .expect("Cargo.toml");
    std::fs::write(dir.join("src/model.rs"), to_rust_source(&m, "ad01_int8")).expect("model.rs");
    let io = reference_io();
    let cases: Vec<String> = io
        .cases
        .iter()
        .map(|c| format!("({:?}, {:?})", c.input, c.reference))
        .collect();
    std::fs::write(
        dir.join("src/main.rs"),
        format!(
            "mod model;\nuse tinyvae::Layer;\n\
             static CASES: [([i8; 640], [i8; 640]); {}] = [{}];\n\
             fn main() {{\n\
                 let mut s = <model::Ad01Int8 as Layer<640, 640>>::SCRATCH;\n\
                 let mut bad = 0;\n\
                 for (x, r) in CASES.iter() {{\n\
                     let mut y = [0i8; 640];\n\
                     model::AD01_INT8.forward(x, &mut y, &mut s);\n\
                     bad += y.iter().zip(r).filter(|(a, b)| a != b).count();\n\
                 }}\n\
                 println!(\"mismatches {{bad}} scale {{}}\", model::AD01_INT8_INPUT.scale);\n\
             }}\n",
            cases.len(),
            cases.join(",\n")
        ),
    )
    .expect("main.rs");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--offline"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .expect("cargo run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("offline") && !stderr.contains("error[E") {
        println!("generated source not compiled: cargo could not resolve offline:\n{stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "generated code failed to build or run:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("mismatches 0 scale 0.39101523"), "{stdout}");
}

/// Writes the TFLite seeds of the `tflite` fuzz target (`fuzz/seeds/tflite/`): the small
/// builder networks `small_net(1)` and `small_net(2)` (12-7-5, a per-tensor then a per-channel
/// layer). Run once with `--ignored` when the builder changes; the files are committed.
#[test]
#[ignore = "writes fuzz/seeds/tflite"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/tflite");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in [1, 2] {
        let (g, _) = small_net(seed);
        std::fs::write(dir.join(format!("small_net_{seed}.tflite")), build(&g)).unwrap();
    }
}
