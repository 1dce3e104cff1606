//! End-to-end tests of the multi-sensor model (`tinyvae train --group`): train, eval by
//! subset and with a dead group (`--drop`), score a recording in which one sensor dies and later
//! the other (`groups` column), and the `--group` / `--drop` errors.

use std::path::Path;

use serde_json::Value;

mod common;

use common::{fails, ok, s, slice, small, train_args, train_small};

const GROUPS: [&str; 4] = ["--group", "acc=ax,ay,az", "--group", "gyro=wx,wy,wz"];

fn train_poe(dir: &Path) -> std::path::PathBuf {
    train_poe_with(dir, "poe", &[])
}

/// A small `--group` model in `dir/name`, trained with the extra options `extra`.
fn train_poe_with(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let data = slice(dir, "train.csv", "train.csv", 1200);
    let out = dir.join(name);
    let mut args = train_args(&data, &out);
    args.extend(small("4"));
    args.extend(GROUPS);
    args.extend(extra);
    let text = ok(&args);
    assert!(text.contains("product-of-experts"), "{text}");
    out
}

#[test]
fn train_eval_by_groups_drop_and_score_with_dead_sensors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train_poe(dir);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let th = &cfg["calibration"]["thresholds_int8"];
    for k in ["acc+gyro", "acc", "gyro"] {
        assert!(th[k].as_f64().is_some(), "threshold of {k}: {cfg}");
    }
    let test = slice(dir, "test.csv", "test.csv", 1700);
    let j: Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--json",
    ]))
    .unwrap();
    for key in ["roc_auc_int8_by_groups", "roc_auc_f32_by_groups"] {
        let o = j[key].as_object().unwrap();
        assert_eq!(o.len(), 3, "{j}");
        for k in ["acc+gyro", "acc", "gyro"] {
            assert!(
                o[k].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)),
                "{j}"
            );
        }
    }
    assert_eq!(j["roc_auc_int8"], j["roc_auc_int8_by_groups"]["acc+gyro"]);
    let d: Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--json",
        "--drop",
        "gyro",
    ]))
    .unwrap();
    assert_eq!(d["groups"], "acc");
    assert_eq!(d["roc_auc_int8"], j["roc_auc_int8_by_groups"]["acc"]);
    // Columns renamed: by name it fails, --by-position takes them in file order.
    let text = std::fs::read_to_string(&test).unwrap();
    let renamed = dir.join("renamed.csv");
    std::fs::write(
        &renamed,
        text.replacen("ax,ay,az,wx,wy,wz", "c0,c1,c2,c3,c4,c5", 1),
    )
    .unwrap();
    let e = fails(&["eval", "--model", s(&model), "--data", s(&renamed)]);
    assert!(e.contains("ax"), "{e}");
    let p: Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&renamed),
        "--json",
        "--by-position",
    ]))
    .unwrap();
    assert_eq!(p["roc_auc_int8_by_groups"], j["roc_auc_int8_by_groups"]);
    let e = fails(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--baseline",
        "gaussian",
    ]);
    assert!(e.contains("--baseline is not supported"), "{e}");

    // One sensor dies for a stretch, later the other, then a dropped row.
    let text = std::fs::read_to_string(&test).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (i, l) in lines.iter_mut().enumerate().skip(1) {
        let mut f: Vec<String> = l.split(',').map(String::from).collect();
        if (200..260).contains(&i) {
            for v in &mut f[3..6] {
                *v = "nan".into();
            }
        }
        if (500..530).contains(&i) {
            for v in &mut f[0..3] {
                *v = "nan".into();
            }
        }
        *l = f.join(",");
    }
    let dead = dir.join("dead.csv");
    std::fs::write(&dead, lines.join("\n") + "\n").unwrap();
    let out = dir.join("scores.csv");
    ok(&[
        "score",
        "--model",
        s(&model),
        "--data",
        s(&dead),
        "--out",
        s(&out),
    ]);
    let csv = std::fs::read_to_string(&out).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header[header.len() - 2..], ["groups", "top_channel"]);
    let col = |l: &'_ str, back: usize| -> String {
        let f: Vec<&str> = l.split(',').collect();
        f[f.len() - back].to_string()
    };
    let groups: Vec<String> = csv.lines().skip(1).map(|l| col(l, 2)).collect();
    for g in ["acc+gyro", "acc", "gyro"] {
        assert!(groups.iter().any(|x| x == g), "no {g} window: {groups:?}");
    }
    // Attribution among the present groups only: a window scored without the gyroscope names
    // an accelerometer channel, and the other way round (the dead channels hold placeholders).
    for l in csv.lines().skip(1) {
        let top = col(l, 1);
        let allowed: &[&str] = match col(l, 2).as_str() {
            "acc" => &["ax", "ay", "az"],
            "gyro" => &["wx", "wy", "wz"],
            "acc+gyro" => &["ax", "ay", "az", "wx", "wy", "wz"],
            _ => &[""],
        };
        assert!(allowed.contains(&top.as_str()), "{l}");
    }
    // A degraded window is scored (not skipped) and its level is its score moved by
    // threshold(acc+gyro) - threshold(acc): it is compared with the acc-only threshold.
    let full = th["acc+gyro"].as_f64().unwrap() as f32;
    let acc = th["acc"].as_f64().unwrap() as f32;
    let mut seen = 0;
    for l in csv.lines().skip(1).filter(|l| col(l, 2) == "acc") {
        let f: Vec<&str> = l.split(',').collect();
        let score: f32 = f[3].parse().unwrap();
        let level: f32 = f[6].parse().unwrap();
        assert_eq!(level, score + (full - acc), "{l}");
        assert_eq!(f[4] == "1", level > full, "{l}");
        seen += 1;
    }
    assert!(seen > 0);
}

#[test]
fn group_and_drop_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = slice(dir, "train.csv", "train.csv", 400);
    let out = dir.join("bad");
    for (groups, want) in [
        (
            vec!["--group", "acc=ax,ay", "--group", "gyro=wx,wy,wz"],
            "\"az\" is in no group",
        ),
        (
            vec!["--group", "acc=ax,ay,az", "--group", "acc=wx,wy,wz"],
            "used twice",
        ),
        (
            vec!["--group", "acc=ax,ay,az,wx", "--group", "gyro=wx,wy,wz"],
            "already in group",
        ),
        (
            vec!["--group", "acc=ax,ay,az,q", "--group", "gyro=wx,wy,wz"],
            "no channel \"q\"",
        ),
        (vec!["--group", "accax,ay"], "expected NAME=CHANNEL"),
        (
            vec![
                "--group", "a=ax", "--group", "b=ay", "--group", "c=az", "--group", "d=wx",
                "--group", "e=wy,wz",
            ],
            "at most 4",
        ),
    ] {
        let mut args = train_args(&data, &out);
        args.extend(small("1"));
        args.extend(groups);
        let e = fails(&args);
        assert!(e.contains(want), "{e}");
        assert!(!out.exists(), "nothing written on error");
    }
    let single = train_small(&data, &dir.join("single"), "1");
    let e = fails(&["eval", "--model", s(&single), "--drop", "gyro"]);
    assert!(e.contains("single-sensor model"), "{e}");
}

#[test]
fn commands_without_poe_support_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train_poe(dir);
    let e = fails(&["quantize", "--model", s(&model)]);
    assert!(e.contains("multi-sensor (--group) checkpoint"), "{e}");
    let out = dir.join("model.rs");
    let e = fails(&["export", "--model", s(&model), "--out", s(&out), "--f32"]);
    assert!(e.contains("int8 model only"), "{e}");
    assert!(!out.exists());
}

/// `tinyvae export` of a `--group` checkpoint: the firmware's PoE model source (experts, shared
/// decoder, groups, per-subset shifts), with a valid header, rustfmt-clean; groups of different
/// sizes are refused.
#[test]
fn export_of_a_poe_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train_poe(dir);
    let out = dir.join("model.rs");
    ok(&["export", "--model", s(&model), "--out", s(&out)]);
    let src = std::fs::read_to_string(&out).unwrap();
    tinyvae_host_tools::export::verify(&src).unwrap();
    for item in [
        "pub const GROUP_COUNT: usize = 2;",
        "pub static GROUP_NAMES: [&str; GROUP_COUNT] = [\"acc\", \"gyro\"];",
        "SensorGroups::new(&[ChannelMask(7), ChannelMask(56)])",
        "static EXPERTS: [Expert; GROUP_COUNT]",
        "static SHIFTS: [f32; 16]",
        "static E0_LOGVAR_PRECISION: [f32; 256]",
        "static E1_LOGVAR_PRECISION: [f32; 256]",
        "pub const DECODER_COUNT: usize = 2;",
        "static DECODERS: [Decoder; DECODER_COUNT]",
        "pub type Decoder = TypedDecoder<D0Dec",
        "pub static MODEL: Model = PoeVae::new(",
    ] {
        assert!(src.contains(item), "{item} missing");
    }
    // the same checkpoint gives the same bytes
    let again = dir.join("again.rs");
    ok(&["export", "--model", s(&model), "--out", s(&again)]);
    assert_eq!(std::fs::read(&again).unwrap(), src.as_bytes());
    if let Ok(o) = std::process::Command::new("rustfmt")
        .args(["--edition", "2021", "--check"])
        .arg(&out)
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let data = slice(dir, "train.csv", "train.csv", 1200);
    let uneven = dir.join("uneven");
    let mut args = train_args(&data, &uneven);
    args.extend(small("1"));
    args.extend(["--group", "acc=ax,ay,az,wz", "--group", "gyro=wx,wy"]);
    ok(&args);
    let e = fails(&["export", "--model", s(&uneven), "--out", s(&out)]);
    assert!(e.contains("groups of equal size"), "{e}");
}

/// `tinyvae firmware parity --checkpoint` of a `--group` checkpoint (per-group decoders, the
/// default, and `--decoder shared`): exported, run on the M4 in QEMU, and every window of the
/// four passes (clean, IWAE, fault-injected, dead-sensor) compared with `tinyvae score`'s
/// detector, groups included. Skipped (with a note) where `qemu-system-arm` is not installed.
#[test]
fn firmware_parity_of_a_poe_checkpoint() {
    let qemu = std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .output();
    if !qemu.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let per_group = train_poe(tmp.path());
    let shared = train_poe_with(tmp.path(), "shared", &["--decoder", "shared"]);
    for model in [per_group, shared] {
        let text = ok(&[
            "firmware",
            "parity",
            "--checkpoint",
            s(&model),
            "--core",
            "m4",
            "--json",
        ]);
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        let p = &v[0];
        assert_eq!(p["core"], "m4", "{text}");
        assert!(p["mismatch"].is_null(), "{text}");
        // The firmware streams the first 2,048 rows of the bundled test set; the small model's
        // windows are 16 samples with stride 8: the clean, IWAE and dead-sensor passes over 2,048
        // rows and the fault pass over 512.
        let n = |rows: u64| (rows - 16) / 8 + 1;
        assert_eq!(p["windows"], 3 * n(2048) + n(512), "{text}");
        let text = ok(&[
            "firmware",
            "parity",
            "--checkpoint",
            s(&model),
            "--core",
            "m4",
        ]);
        assert!(text.contains("dead-sensor passes) bit-identical"), "{text}");
    }
}

/// `tinyvae score` of a `--group` checkpoint takes the alarm options (EMA, hysteresis,
/// debounce), saturation limits and column matching of the single model's `score`, and refuses
/// with a message what it cannot do (another score than -ELBO, on-device adaptation) instead of
/// ignoring it.
#[test]
fn score_options_of_a_poe_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train_poe(dir);
    let test = slice(dir, "test.csv", "test.csv", 1700);
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["score", "--model", s(&model), "--data", s(&test), "--out"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        v.push(s(out).to_string());
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let score = |name: &str, extra: &[&str]| -> Vec<Vec<String>> {
        let out = dir.join(name);
        let a = args(&out, extra);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    // Columns: window,start,end,score,alarm,label,level,event,faults,groups,top_channel.
    let plain = score("plain.csv", &[]);
    let smooth = score("ema.csv", &["--ema", "0.25"]);
    assert_eq!(plain.len(), smooth.len());
    // Same scores, EMA levels: the second level is 0.25 of the way from the first to the score.
    for (a, b) in plain.iter().zip(&smooth) {
        assert_eq!(a[3], b[3]);
    }
    let f = |v: &str| v.parse::<f32>().unwrap();
    assert_eq!(f(&smooth[0][6]), f(&plain[0][6]));
    let want = f(&plain[0][6]) + 0.25 * (f(&plain[1][6]) - f(&plain[0][6]));
    assert!(
        (f(&smooth[1][6]) - want).abs() <= 1e-3 * want.abs().max(1.0),
        "{smooth:?}"
    );
    // Debounce 3 of 3: no more raised alarms than without, and each alarm follows 3 levels above.
    let raised = |rows: &[Vec<String>]| rows.iter().filter(|r| r[7] == "raised").count();
    let deb = score("debounce.csv", &["--debounce", "3,3"]);
    assert!(
        raised(&deb) <= raised(&plain),
        "{} > {}",
        raised(&deb),
        raised(&plain)
    );
    assert!(raised(&plain) > 0);
    // Saturation limits inside the data's range flag windows.
    let lim = score("limits.csv", &["--limits", "-1,1"]);
    assert!(lim.iter().any(|r| r[8].contains("saturated")), "{lim:?}");
    assert!(plain.iter().all(|r| !r[8].contains("saturated")));
    for (extra, what) in [
        (&["--score", "iwae"][..], "--score other than elbo"),
        (&["--adapt", "10,20"][..], "--adapt"),
    ] {
        let out = dir.join("refused.csv");
        let a = args(&out, extra);
        let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(e.contains(what) && e.contains("multi-sensor"), "{e}");
        assert!(!out.exists());
    }
}
