//! End-to-end tests of the `tinyvae` binary on small slices of the bundled data set (kept fast:
//! windows of 16 samples, a 96-16-4 model, a few epochs): train → export → eval → score,
//! determinism of the export, the demo report, and every bad-input case (a one-line message
//! naming file, line and column, a non-zero exit, no output written, no panic).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;

use common::{demo_args, fails, ok, slice, small, tinyvae, train_args, train_small};

/// Trains the small model on 1,200 rows into `dir/name`.
fn train(dir: &Path, name: &str) -> PathBuf {
    let train = slice(dir, "train.csv", "train.csv", 1200);
    train_small(&train, &dir.join(name), "4")
}

#[test]
fn train_export_eval_score() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir, "model");
    assert!(model.join("config.json").is_file() && model.join("model.safetensors").is_file());
    let m = model.to_str().unwrap();
    // 1,441 normal rows then anomalous ones
    let test = slice(dir, "test.csv", "test.csv", 1700);
    let t = test.to_str().unwrap();

    for (flag, name) in [(None, "model.rs"), (Some("--f32"), "model_f32.rs")] {
        let out = dir.join(name);
        let mut args = vec!["export", "--model", m, "--out", out.to_str().unwrap()];
        args.extend(flag);
        ok(&args);
        let src = std::fs::read_to_string(&out).unwrap();
        tinyvae_host_tools::export::verify(&src).unwrap();
        assert!(src.contains("pub static MODEL: Model"), "{name}");
        assert!(src.contains("pub const THRESHOLD: f32 = "), "{name}");
        if let Ok(o) = Command::new("rustfmt")
            .args(["--edition", "2021", "--check"])
            .arg(&out)
            .output()
        {
            assert!(
                o.status.success(),
                "{name} is not rustfmt-clean:\n{}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }

    let json: Value = serde_json::from_str(&ok(&["eval", "--model", m, "--data", t, "--json"]))
        .expect("eval --json prints one JSON object");
    for key in ["roc_auc_f32", "roc_auc_int8", "pr_auc_f32", "pr_auc_int8"] {
        let v = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {json}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    // the model learns something even from this little data
    assert!(json["roc_auc_int8"].as_f64().unwrap() > 0.6, "{json}");
    assert_eq!(json["windows"], 211);
    let kinds = json["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 8, "4 score kinds x f32/int8");

    let train_csv = dir.join("train.csv");
    let json: Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        m,
        "--data",
        t,
        "--json",
        "--baseline",
        "gaussian",
        "--train-data",
        train_csv.to_str().unwrap(),
    ]))
    .unwrap();
    let b = &json["baseline"];
    assert_eq!(b["dim"], 96);
    assert!(b["roc_auc"].as_f64().unwrap() > 0.5, "{b}");
    assert_eq!(b["flash_bytes"], 4 * (96 + 96 * 97 / 2 + 1));
    let text = ok(&["eval", "--model", m, "--data", t, "--baseline", "gaussian"]);
    assert!(text.contains("Gaussian (full cov., D=96)"), "{text}");
    assert!(text.contains("iwae-2"), "{text}");

    let scores = dir.join("scores.csv");
    ok(&[
        "score",
        "--model",
        m,
        "--data",
        t,
        "--out",
        scores.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(&scores).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("window,start,end,score,alarm,label,level,event,faults,top_channel")
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 211);
    assert_eq!(rows[1][..3], ["1", "8", "24"]);
    assert!(rows.iter().all(|r| r[4] == "0" || r[4] == "1"));
    let alarms_on_anomalies = rows.iter().filter(|r| r[4] == "1" && r[5] == "1").count();
    assert!(alarms_on_anomalies > 0);

    // quantize recalibrates in place, at another FPR
    let out = ok(&["quantize", "--model", m, "--fpr", "0.05", "--json"]);
    let q: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(q["threshold"]["fpr"], 0.05);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["threshold"]["fpr"], 0.05);
}

#[test]
fn training_and_export_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = train(dir, "a");
    let b = train(dir, "b");
    let export = |m: &Path, out: &str| {
        let p = dir.join(out);
        ok(&[
            "export",
            "--model",
            m.to_str().unwrap(),
            "--out",
            p.to_str().unwrap(),
        ]);
        std::fs::read(p).unwrap()
    };
    let ea = export(&a, "a.rs");
    assert_eq!(ea, export(&a, "a2.rs"), "same checkpoint, different bytes");
    assert_eq!(
        ea,
        export(&b, "b.rs"),
        "same data and seed, different bytes"
    );
}

/// On a machine without QEMU where it cannot be installed (here: an empty `PATH`, so no
/// `qemu-system-arm`, `apt-get`, `id` or `rustup`), the demo records the chip check as skipped
/// and ends its summary with the command that installs QEMU.
#[test]
fn demo_without_qemu_ends_with_the_install_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = slice(dir, "train.csv", "train.csv", 1200);
    let test = slice(dir, "test.csv", "test.csv", 1700);
    let out = dir.join("report");
    let empty = dir.join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let mut args = demo_args(&out, &train, &test);
    args.extend(small("4"));
    let o = Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(&args)
        .env_remove("TINYVAE_MODEL")
        .env("PATH", &empty)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains(r#"chip: {"skipped":"qemu-system-arm is not installed"}"#),
        "{text}"
    );
    let last = text.lines().last().unwrap_or("");
    assert!(
        last.contains(&format!(
            "install it with `{}`",
            tinyvae_host_tools::setup::INSTALL_HINT
        )),
        "{last}"
    );
}

#[test]
fn demo_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = slice(dir, "train.csv", "train.csv", 1200);
    let test = slice(dir, "test.csv", "test.csv", 1700);
    let out = dir.join("report");
    let mut args = demo_args(&out, &train, &test);
    args.push("--no-firmware");
    args.extend(small("4"));
    let text = ok(&args);
    assert!(
        text.contains("ROC AUC") && text.contains("VAE int8"),
        "{text}"
    );
    for f in [
        "model/config.json",
        "model/model.safetensors",
        "model.rs",
        "metrics.json",
        "training_curves.svg",
        "score_histogram.svg",
        "roc.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert!(
        m["roc_auc_f32"].is_number() && m["roc_auc_int8"].is_number(),
        "{m}"
    );
    assert!(m["baseline"]["roc_auc"].is_number(), "{m}");
    // The sensor-loss table: the full set and each group dead, both models, the single VAE's
    // full-set figure the same as its int8 -ELBO row.
    assert!(text.contains("sensor loss: test ROC AUC"), "{text}");
    assert!(text.contains("gyro (acc dead)"), "{text}");
    let rows = m["sensor_loss"]["rows"]
        .as_array()
        .expect("sensor_loss rows");
    let names: Vec<&str> = rows.iter().map(|r| r["groups"].as_str().unwrap()).collect();
    assert_eq!(names, ["acc+gyro", "acc", "gyro"], "{m}");
    for r in rows {
        assert!(r["single_mean_filled"].is_number(), "{m}");
        assert!(r["product_of_experts"].is_number(), "{m}");
    }
    assert_eq!(m["sensor_loss"]["poe_epochs"], 20, "{m}");
    let single = m["kinds"]
        .as_array()
        .and_then(|k| {
            k.iter()
                .find(|k| k["score"] == "elbo" && k["precision"] == "int8")
        })
        .map(|k| k["roc_auc"].clone());
    assert_eq!(Some(rows[0]["single_mean_filled"].clone()), single, "{m}");
    assert!(out.join("poe_model/config.json").is_file());
    let svg = std::fs::read_to_string(out.join("roc.svg")).unwrap();
    assert!(svg.contains("<text") && svg.contains("VAE int8"));
    // no staging directories left behind
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // running again replaces the report
    ok(&args);
    assert!(out.join("metrics.json").is_file());
}

const HEADER: &str = "ax,ay,az,wx,wy,wz\n";

fn rows(n: usize) -> String {
    (0..n)
        .map(|i| format!("{},0.5,-0.25,0.1,0.2,{}\n", i % 7, i % 3))
        .collect()
}

/// Each bad training file gives `file:line:column: message`, exit 1, and no checkpoint.
#[test]
fn bad_training_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "ragged.csv",
            format!("{HEADER}{}1,2,3\n", rows(40)),
            ":42:4: ragged row: 3 fields, the header has 6",
        ),
        (
            "long.csv",
            format!("{HEADER}{}1,2,3,4,5,6,7\n", rows(5)),
            ":7:7: ragged row: 7 fields, the header has 6",
        ),
        (
            "text.csv",
            format!("{HEADER}{}1,abc,3,4,5,6\n", rows(16)),
            ":18:2: field \"abc\" is not a number",
        ),
        (
            "emptyfield.csv",
            format!("{HEADER}{}1,2,,4,5,6\n", rows(3)),
            ":5:3: empty field",
        ),
        (
            "nan.csv",
            format!("{HEADER}{}1,2,3,4,NaN,6\n", rows(9)),
            ":11:5: field \"NaN\" is not finite",
        ),
        (
            "inf.csv",
            format!("{HEADER}1,2,3,4,5,inf\n{}", rows(9)),
            ":2:6: field \"inf\" is not finite",
        ),
        ("empty.csv", String::new(), ": file is empty"),
        ("headeronly.csv", HEADER.to_string(), ": no data rows"),
        (
            "short.csv",
            format!("{HEADER}{}", rows(50)),
            ": window of 64 samples is longer than the data",
        ),
    ];
    for (name, content, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let out = dir.join(format!("{name}.model"));
        let err = fails(&[
            "train",
            "--data",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        let want = format!("error: {}{want}", p.display());
        assert!(
            err.starts_with(&want),
            "{name}:\n got  {err}\n want {want}..."
        );
        assert!(!out.exists(), "{name}: wrote {}", out.display());
    }
    let missing = dir.join("missing.csv");
    let err = fails(&train_args(&missing, &dir.join("m")));
    assert_eq!(err, format!("error: {}: no such file", missing.display()));
    assert!(!dir.join("m").exists());
}

/// Bad streams given to a trained model (eval, score, quantize): same rules, and `score`
/// writes no CSV.
#[test]
fn bad_streams_for_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir, "model");
    let m = model.to_str().unwrap();
    let three = dir.join("three.csv");
    std::fs::write(&three, "a,b,c,label\n1,2,3,0\n4,5,6,1\n").unwrap();
    let short = dir.join("short.csv");
    std::fs::write(&short, format!("{HEADER}{}", rows(10))).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, format!("{HEADER}{}1,2,3,4,5,x\n", rows(30))).unwrap();
    let unlabeled = dir.join("unlabeled.csv");
    std::fs::write(&unlabeled, format!("{HEADER}{}", rows(40))).unwrap();
    let out = dir.join("scores.csv");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["eval", "--model", m, "--data", three.to_str().unwrap()],
            format!(
                "error: {}:1: the model's channels ax,ay,az,wx,wy,wz are not in the header: the \
                 header has 3 (a,b,c), the model expects 6 (ax,ay,az,wx,wy,wz); columns are \
                 matched by name (--by-position uses them in file order)",
                three.display()
            ),
        ),
        (
            vec![
                "score",
                "--model",
                m,
                "--data",
                three.to_str().unwrap(),
                "--out",
                o,
            ],
            format!(
                "error: {}:1: the model's channels ax,ay,az,wx,wy,wz are not in the header: the \
                 header has 3 (a,b,c), the model expects 6 (ax,ay,az,wx,wy,wz); columns are \
                 matched by name (--by-position uses them in file order)",
                three.display()
            ),
        ),
        (
            vec![
                "score",
                "--model",
                m,
                "--data",
                short.to_str().unwrap(),
                "--out",
                o,
            ],
            format!(
                "error: {}: window of 16 samples is longer than the data (10 rows)",
                short.display()
            ),
        ),
        (
            vec![
                "score",
                "--model",
                m,
                "--data",
                bad.to_str().unwrap(),
                "--out",
                o,
            ],
            format!("error: {}:32:6: field \"x\" is not a number", bad.display()),
        ),
        (
            vec!["eval", "--model", m, "--data", unlabeled.to_str().unwrap()],
            format!(
                "error: {}: no `label` column; evaluation needs labels (use `tinyvae score` for \
                 unlabeled data)",
                unlabeled.display()
            ),
        ),
        (
            vec!["quantize", "--model", m, "--data", bad.to_str().unwrap()],
            format!("error: {}:32:6: field \"x\" is not a number", bad.display()),
        ),
    ];
    for (args, want) in cases {
        let err = fails(&args);
        assert_eq!(err, want, "{args:?}");
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
    // a directory that is not a checkpoint, and a bad config file
    let err = fails(&["eval", "--model", dir.to_str().unwrap()]);
    assert_eq!(
        err,
        format!(
            "error: {}: not a checkpoint directory (no config.json)",
            dir.display()
        )
    );
    let err = fails(&["export", "--model", "/nonexistent/m", "--out", o]);
    assert_eq!(err, "error: /nonexistent/m: no such checkpoint directory");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[model]\nwindow = 16\nlatnet = 4\n").unwrap();
    let err = fails(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    assert!(
        err.starts_with(&format!(
            "error: {}:3:1: unknown field `latnet`",
            cfg.display()
        )),
        "{err}"
    );
}

/// `score` runs the library's streaming detector: sensor faults in the stream (NaN, infinity, an
/// empty field, a row of empty fields = a dropped sample, a value beyond --limits) are reported
/// per window, never an input error; the alarm options change the alarms as documented.
#[test]
fn score_reports_sensor_faults_and_alarm_options() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir, "model");
    let m = model.to_str().unwrap();
    let text = std::fs::read_to_string(slice(dir, "test.csv", "clean.csv", 1700)).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // data rows are lines[1..]; windows of 16 every 8 rows
    let set = |lines: &mut Vec<String>, row: usize, col: usize, v: &str| {
        let mut f: Vec<String> = lines[row + 1].split(',').map(String::from).collect();
        f[col] = v.to_string();
        lines[row + 1] = f.join(",");
    };
    set(&mut lines, 100, 1, "nan");
    set(&mut lines, 300, 4, "");
    set(&mut lines, 500, 5, "-inf");
    lines[701] = ",,,,,,0".to_string(); // every channel empty: a dropped sample
    set(&mut lines, 900, 0, "1e30");
    let faulty = dir.join("faulty.csv");
    std::fs::write(&faulty, lines.join("\n") + "\n").unwrap();
    let run = |name: &str, extra: &[&str]| -> Vec<Vec<String>> {
        let out = dir.join(name);
        let mut args = vec![
            "score",
            "--model",
            m,
            "--data",
            faulty.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        ok(&args);
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let rows = run("plain.csv", &["--limits", "-1e6,1e6"]);
    assert_eq!(rows.len(), 211);
    let covering = |r: &Vec<String>, row: usize| {
        let (s, e): (usize, usize) = (r[1].parse().unwrap(), r[2].parse().unwrap());
        (s..e).contains(&row)
    };
    for r in &rows {
        assert_eq!(r.len(), 10, "{r:?}");
        let want = [
            (100, "nonfinite:ay"),
            (300, "nonfinite:wy"),
            (500, "nonfinite:wz"),
            (701, "gap"),
            (900, "saturated:ax"),
        ]
        .iter()
        .find(|(row, _)| covering(r, *row))
        .map_or("", |(_, f)| *f);
        assert_eq!(r[8], want, "{r:?}");
        if want.starts_with("nonfinite") || want == "gap" {
            assert!(
                r[3].is_empty() && r[6].is_empty() && r[9].is_empty(),
                "skipped: {r:?}"
            );
        } else {
            assert!(r[3].parse::<f32>().unwrap().is_finite(), "{r:?}");
            assert!(
                !r[9].is_empty(),
                "scored windows name their top channel: {r:?}"
            );
            // flagged (saturated) windows do not reach the alarm
            assert_eq!(r[6].is_empty(), want.starts_with("saturated"), "{r:?}");
        }
    }
    // Windows away from the faults score as in the clean stream.
    let clean = {
        let out = dir.join("clean_scores.csv");
        let c = dir.join("clean.csv");
        ok(&[
            "score",
            "--model",
            m,
            "--data",
            c.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        std::fs::read_to_string(&out).unwrap()
    };
    for (r, c) in rows.iter().zip(clean.lines().skip(1)) {
        let c: Vec<&str> = c.split(',').collect();
        if r[8].is_empty() {
            assert_eq!(r[3], c[3], "window {}", r[0]);
        }
    }
    // k-of-n debounce raises no more alarms than the plain threshold; the events alternate.
    let events = |rows: &[Vec<String>]| -> Vec<String> {
        rows.iter()
            .filter(|r| !r[7].is_empty())
            .map(|r| r[7].clone())
            .collect()
    };
    let plain = events(&rows);
    let debounced = events(&run(
        "debounced.csv",
        &["--debounce", "3,4", "--ema", "0.5"],
    ));
    assert!(!plain.is_empty() && !debounced.is_empty());
    assert!(debounced.len() <= plain.len(), "{debounced:?} vs {plain:?}");
    for ev in [&plain, &debounced] {
        for (i, e) in ev.iter().enumerate() {
            assert_eq!(e, if i % 2 == 0 { "raised" } else { "cleared" }, "{ev:?}");
        }
    }
    // bad alarm options: one-line errors, nothing written
    let out = dir.join("never.csv");
    let o = out.to_str().unwrap();
    let f = faulty.to_str().unwrap();
    let err = fails(&[
        "score",
        "--model",
        m,
        "--data",
        f,
        "--out",
        o,
        "--debounce",
        "3,2",
    ]);
    assert!(
        err.contains("--debounce") && err.contains("outside its valid range"),
        "{err}"
    );
    let err = fails(&[
        "score", "--model", m, "--data", f, "--out", o, "--ema", "1.5",
    ]);
    assert!(err.contains("--ema"), "{err}");
    for bad in [["--limits", "5,1"], ["--debounce", "2"], ["--adapt", "x,3"]] {
        let mut args = vec!["score", "--model", m, "--data", f, "--out", o];
        args.extend(bad);
        let o = tinyvae(&args);
        assert!(!o.status.success(), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(bad[0]),
            "{bad:?}"
        );
    }
    assert!(!out.exists());
}

/// `--latent auto` with the default patience 0: candidates stop early (patience 20), the winner is
/// trained again to the last epoch, on the same trajectory, so its validation ELBO can only rise.
#[test]
fn latent_auto_trains_the_early_stopped_winner_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = slice(dir, "train.csv", "train.csv", 1200);
    let out = dir.join("auto");
    let text = ok(&[
        "train",
        "--data",
        train.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--window",
        "16",
        "--stride",
        "8",
        "--hidden",
        "16",
        "--epochs",
        "200",
        "--lr",
        "0.01",
        "--samples",
        "2",
        "--seed",
        "3",
        "--quiet",
    ]);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let latent = &cfg["arch"]["latent"];
    let winner = cfg["latent_selection"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| &c["latent"] == latent)
        .unwrap()
        .clone();
    let stopped_at = winner["epochs"].as_u64().unwrap();
    assert!(
        stopped_at < 200,
        "the winning candidate stopped early: {winner}"
    );
    assert!(
        text.contains(", 200 epochs (best "),
        "the final run trains all epochs: {text}"
    );
    let final_elbo: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("validation ELBO "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let cand_elbo = winner["val_elbo"].as_f64().unwrap();
    assert!(final_elbo >= cand_elbo - 0.05, "{final_elbo} < {cand_elbo}");
}

#[test]
fn latent_auto_keeps_the_best_validation_elbo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let train = slice(dir, "train.csv", "train.csv", 1200);
    let out = dir.join("auto");
    let mut args = train_args(&train, &out);
    // SMALL without its fixed latent size
    let small = small("4");
    let at = small.iter().position(|a| *a == "--latent").unwrap();
    args.extend(&small[..at]);
    args.extend(&small[at + 2..]);
    let text = ok(&args);
    assert!(
        text.contains("latent size chosen by validation ELBO"),
        "{text}"
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let cands = cfg["latent_selection"]["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 4);
    let best = cands
        .iter()
        .max_by(|a, b| {
            a["val_elbo"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_elbo"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(cfg["arch"]["latent"], best["latent"], "{cands:?}");
}
