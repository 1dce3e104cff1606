//! The TFLite importer (`tinyvae import --tflite`), fed arbitrary bytes.
//!
//! Checked: no panic; an imported model is usable: its layers chain, its views build, and it runs
//! on an input of its width (int8 and through the f32 edges) with outputs of its width.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyvae_host_tools::tflite::import_tflite;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = import_tflite(data) else {
        return;
    };
    assert!(!model.layers.is_empty());
    for pair in model.layers.windows(2) {
        assert_eq!(pair[0].out_dim, pair[1].in_dim);
    }
    for layer in &model.layers {
        layer.view().expect("an imported layer has a valid view");
    }
    // Bounded work per input: the fuzzer's models are small, skip a pathological width.
    if model.macs() > 1 << 22 {
        return;
    }
    let (i, o) = (model.in_dim(), model.out_dim());
    let x: Vec<i8> = (0..i).map(|k| (k as i8).wrapping_mul(37)).collect();
    let mut y = vec![0i8; o];
    let mut scratch = Vec::new();
    model
        .forward(&x, &mut y, &mut scratch)
        .expect("forward at the model's width");
    let xf: Vec<f32> = x.iter().map(|&v| f32::from(v) * 0.01).collect();
    let mut yf = vec![0.0f32; o];
    if i == o {
        model
            .reconstruct(&xf, &mut yf)
            .expect("reconstruct at the model's width");
        let _ = model.mse_score(&xf);
    }
    let _ = model.summary("fuzz");
});
