//! `tinyvae train --experts K` end to end on small slices of the bundled data: the mixture's
//! checkpoint, `eval --json` keys, the `score` column, quantize, export, and the refusal of a K
//! out of range. The same windows scored by the library directly: top-1 equals the routed
//! expert's score minus `ln pi_k`, dense is never above top-1, and int8 stays near f32.

use std::path::Path;

use serde_json::Value;
use tinyvae::{ScoreKind, VaeModel};
use tinyvae_host_tools::model::score_windows;
use tinyvae_host_tools::pipeline::{load_model, moe};

mod common;

use common::{fails, ok, s, slice, small, train_args};

fn train_moe(dir: &Path, k: &'static str) -> std::path::PathBuf {
    let train = slice(dir, "train.csv", "train.csv", 1200);
    let out = dir.join(format!("moe{k}"));
    let mut args = train_args(&train, &out);
    args.extend(small("4"));
    args.extend(["--experts", k]);
    ok(&args);
    out
}

#[test]
fn train_eval_score_quantize_export_a_mixture() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train_moe(dir, "3");
    for f in [
        "config.json",
        "model.safetensors",
        "expert1.safetensors",
        "expert2.safetensors",
    ] {
        assert!(model.join(f).is_file(), "{f}");
    }
    let m = s(&model);
    let test = slice(dir, "test.csv", "test.csv", 1700);
    let t = s(&test);

    let json: Value = serde_json::from_str(&ok(&["eval", "--model", m, "--data", t, "--json"]))
        .expect("eval --json prints one JSON object");
    assert_eq!(json["experts"], 3);
    let share: Vec<f64> = json["expert_share"]
        .as_array()
        .expect("expert_share")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(share.len(), 3);
    assert!((share.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{share:?}");
    for key in ["roc_auc_int8", "roc_auc_int8_dense", "roc_auc_f32"] {
        let v = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {json}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }

    let out = dir.join("scores.csv");
    ok(&["score", "--model", m, "--data", t, "--out", s(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(head.last(), Some(&"expert"), "{head:?}");
    let experts: Vec<u8> = lines
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(!experts.is_empty() && experts.iter().all(|&e| e < 3));
    // The column agrees with eval's share of the int8 detector's routes.
    let n0 = experts.iter().filter(|&&e| e == 0).count() as f64 / experts.len() as f64;
    assert!((n0 - share[0]).abs() < 1e-9, "{n0} vs {}", share[0]);

    // quantize recalibrates the mixture to the same thresholds.
    let before = std::fs::read_to_string(model.join("config.json")).unwrap();
    ok(&["quantize", "--model", m, "--samples", "2"]);
    let after = std::fs::read_to_string(model.join("config.json")).unwrap();
    let th = |c: &str| serde_json::from_str::<Value>(c).unwrap()["threshold"].clone();
    assert_eq!(th(&before), th(&after));

    // export writes every expert and the gate, hash-verified.
    let rs = dir.join("model.rs");
    ok(&["export", "--model", m, "--out", s(&rs)]);
    let src = std::fs::read_to_string(&rs).unwrap();
    tinyvae_host_tools::export::verify(&src).unwrap();
    for item in [
        "pub mod expert2 {",
        "pub type Model = Moe<'static, Expert>;",
        "pub static MODEL: Model = Moe::new(",
        "pub const EXPERTS: usize = 3;",
    ] {
        assert!(src.contains(item), "{item}");
    }

    // The library's view of the same windows: top-1 = routed expert's score - ln pi_k,
    // dense <= top-1, int8 near f32.
    let loaded = load_model(&model).unwrap();
    let (q, f) = (&loaded.int8, &loaded.f32);
    assert_eq!(q.experts(), 3);
    let series = tinyvae_host_tools::data::load_csv(&test).unwrap();
    let norm = tinyvae_host_tools::data::Norm {
        mean: loaded.ck.config.norm_mean.clone(),
        std: loaded.ck.config.norm_std.clone(),
    };
    let w = tinyvae_host_tools::data::Windows::cut(&series, 16, 8, &norm).unwrap();
    let top = score_windows(q, w.iter(), ScoreKind::Elbo, 0).unwrap();
    let topf = score_windows(f, w.iter(), ScoreKind::Elbo, 0).unwrap();
    let qm = q.moe.as_ref().unwrap();
    let dense = qm.dense_scores(w.iter(), ScoreKind::Elbo, 0).unwrap();
    let gate = qm.gate.view();
    let mut worst = 0.0f32;
    for (i, x) in w.iter().enumerate() {
        let r = gate.route(x).unwrap();
        let e = &qm.experts[usize::from(r.expert)];
        let alone = score_windows(e, std::iter::once(x), ScoreKind::Elbo, 0).unwrap()[0];
        assert_eq!(top[i].score, alone.score - r.log_weight, "window {i}");
        assert!(dense[i].0 <= top[i].score, "window {i}");
        worst = worst.max((top[i].score - topf[i].score).abs() / topf[i].score.abs().max(1.0));
    }
    assert!(worst < 0.1, "int8 vs f32 relative difference {worst}");
    assert_eq!(q.input_dim(), 96);
    assert!(moe::moe_config(&loaded.ck.config).unwrap().is_some());
}

#[test]
fn experts_out_of_range_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = slice(dir, "train.csv", "train.csv", 400);
    for k in ["0", "9"] {
        let out = dir.join(format!("m{k}"));
        let mut args = train_args(&train, &out);
        args.extend(["--experts", k]);
        let err = fails(&args);
        assert!(
            err.contains(&format!(
                "--experts {k} is out of range: valid values are 1 to 8"
            )),
            "{err}"
        );
        assert!(!out.exists(), "nothing written for --experts {k}");
    }
}

#[test]
fn experts_with_groups_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = slice(dir, "train.csv", "train.csv", 400);
    let out = dir.join("both");
    let mut args = train_args(&train, &out);
    args.extend([
        "--experts",
        "2",
        "--group",
        "acc=ax,ay,az",
        "--group",
        "gyro=wx,wy,wz",
    ]);
    let err = fails(&args);
    assert!(
        err.contains("--experts 2 and --group do not compose yet"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written for --experts with --group");
}
