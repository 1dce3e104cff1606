//! Inputs that used to give wrong output or misleading errors (issue 17, items 7, 8, 10, 13,
//! 14): columns matched by name, duplicate channel names in a checkpoint, headers of 100,000
//! columns, errors that name the option, the value and the valid range, requantization errors
//! that name the layer, and warnings for channels of absurd scale. Each test fails without its
//! fix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{
    data_file, fails, ok_stderr as ok, score_args, slice, tinyvae, train_args, train_small,
};

/// The bundled file's header and rows `0..rows`, with its columns rearranged: `cols` lists, for
/// each output column, its header name and the source column it copies.
fn rearranged(dir: &Path, src: &str, name: &str, rows: usize, cols: &[(&str, &str)]) -> PathBuf {
    let text = std::fs::read_to_string(data_file(src)).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<usize> = cols
        .iter()
        .map(|(_, from)| header.iter().position(|h| h == from).unwrap())
        .collect();
    let mut out = cols.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",");
    out.push('\n');
    for l in lines.take(rows) {
        let f: Vec<&str> = l.split(',').collect();
        out.push_str(&idx.iter().map(|&i| f[i]).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// Runs a command whose option value clap refuses (exit status 2); returns stderr.
fn refused_by_parser(args: &[&str]) -> String {
    let o = tinyvae(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "tinyvae {args:?}: {err}");
    err
}

/// Trains the small model (windows of 16, 96-16-4) on 1,200 rows into `dir/model`.
fn train(dir: &Path) -> PathBuf {
    let data = slice(dir, "train.csv", "train.csv", 1200);
    train_small(&data, &dir.join("model"), "3")
}

fn scores(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').nth(3).unwrap().to_string())
        .collect()
}

/// Item 7: `ay,ax,az,wx,wy,foo` used to feed `ay` as `ax` with exit 0. Columns are matched by
/// name (any order, extra columns ignored with a note), a missing channel is refused with both
/// lists, and `--by-position` (score, eval, quantize) uses the file order.
#[test]
fn columns_are_matched_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir);
    let m = model.to_str().unwrap();
    let plain = slice(dir, "test.csv", "plain.csv", 400);
    let swapped = rearranged(
        dir,
        "test.csv",
        "swapped.csv",
        400,
        &[
            ("ay", "ax"),
            ("ax", "ay"),
            ("az", "az"),
            ("wx", "wx"),
            ("wy", "wy"),
            ("foo", "wz"),
            ("label", "label"),
        ],
    );
    let out = dir.join("scores.csv");
    let o = out.to_str().unwrap();
    let s = swapped.to_str().unwrap();
    let want = format!(
        "error: {s}:1: the model's channel wz is not in the header: the header has 6 \
         (ay,ax,az,wx,wy,foo), the model expects 6 (ax,ay,az,wx,wy,wz); columns are matched by \
         name (--by-position uses them in file order)"
    );
    assert_eq!(fails(&score_args(m, s, o)), want);
    assert!(!out.exists());
    assert_eq!(fails(&["eval", "--model", m, "--data", s]), want);
    let q = fails(&["quantize", "--model", m, "--data", s]);
    assert!(
        q.contains("the model's channel wz is not in the header"),
        "{q}"
    );
    // entirely different names
    let abc = rearranged(
        dir,
        "test.csv",
        "abc.csv",
        400,
        &[
            ("a", "ax"),
            ("b", "ay"),
            ("c", "az"),
            ("d", "wx"),
            ("e", "wy"),
            ("f", "wz"),
            ("label", "label"),
        ],
    );
    let err = fails(&score_args(m, abc.to_str().unwrap(), o));
    assert!(
        err.contains("the model's channels ax,ay,az,wx,wy,wz are not in the header")
            && err.contains("(a,b,c,d,e,f)"),
        "{err}"
    );
    // --by-position: the file order, as before (the user asked for it)
    ok(&[
        score_args(m, abc.to_str().unwrap(), o),
        vec!["--by-position"],
    ]
    .concat());
    let by_position = scores(&out);
    ok(&[
        "eval",
        "--model",
        m,
        "--data",
        abc.to_str().unwrap(),
        "--by-position",
        "--json",
    ]);
    // By name, any column order and an extra column give the scores of the plain file; the
    // extra column is named in a note.
    let shuffled = rearranged(
        dir,
        "test.csv",
        "shuffled.csv",
        400,
        &[
            ("label", "label"),
            ("wz", "wz"),
            ("extra", "ax"),
            ("ay", "ay"),
            ("ax", "ax"),
            ("wy", "wy"),
            ("az", "az"),
            ("wx", "wx"),
        ],
    );
    let note = ok(&score_args(m, shuffled.to_str().unwrap(), o));
    assert!(
        note.contains(&format!(
            "note: {}: column extra is not one of the model's channels (ax,ay,az,wx,wy,wz); \
             ignored",
            shuffled.display()
        )),
        "{note}"
    );
    let by_name = scores(&out);
    ok(&score_args(m, plain.to_str().unwrap(), o));
    assert_eq!(by_name, scores(&out));
    assert_eq!(by_position, scores(&out), "a,b,c,... in the model's order");
}

/// Item 8: duplicate channel names in config.json were accepted (and gave wrong scores).
#[test]
fn duplicate_channel_names_in_the_checkpoint_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir);
    let cfg = model.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["channels"] = serde_json::json!(["ax", "ay", "az", "wx", "ax", "wz"]);
    std::fs::write(&cfg, json.to_string()).unwrap();
    let test = slice(dir, "test.csv", "test.csv", 400);
    let err = fails(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("{}: invalid checkpoint config", cfg.display()))
            && err.contains(
                "channels has the name \"ax\" twice (channels[0] and channels[4]); channel names \
                 must be unique"
            ),
        "{err}"
    );
    // the library function the commands call
    let e = tinyvae_host_tools::checkpoint::load(&model).unwrap_err();
    assert!(format!("{e:#}").contains("\"ax\" twice"), "{e:#}");
}

/// Item 10: the duplicate-name check was quadratic (80,000 columns: 7 s) and errors printed
/// every name (549 KB). A 100,000-column header is now checked at once, with short errors.
#[test]
fn a_header_of_100000_columns_is_checked_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir);
    let n = 100_000; // 689 KB: under the 1 MiB line limit (data::MAX_LINE_BYTES)
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let ones = vec!["1"; n].join(",");
    // a duplicate at the very end
    let dup = dir.join("dup.csv");
    std::fs::write(&dup, format!("{},c7\n{ones},1\n", names.join(","))).unwrap();
    let t0 = Instant::now();
    let err = fails(&[
        "train",
        "--data",
        dup.to_str().unwrap(),
        "--out",
        dir.join("never").to_str().unwrap(),
        "--quiet",
    ]);
    let took = t0.elapsed();
    assert_eq!(
        err,
        format!(
            "error: {}:1:{}: duplicate column name \"c7\" (also column 8); column names must be \
             unique",
            dup.display(),
            n + 1
        )
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // none of the model's channels: a short error, quickly
    let wide = dir.join("wide.csv");
    std::fs::write(&wide, format!("{}\n{ones}\n{ones}\n", names.join(","))).unwrap();
    let t0 = Instant::now();
    let err = fails(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        wide.to_str().unwrap(),
        "--out",
        dir.join("s.csv").to_str().unwrap(),
    ]);
    let took = t0.elapsed();
    assert!(err.len() < 1000, "{} bytes: {}", err.len(), &err[..1000]);
    assert!(
        err.contains("the header has 100000 (c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,... and 99990 more)"),
        "{err}"
    );
    let err = fails(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        wide.to_str().unwrap(),
        "--out",
        dir.join("s.csv").to_str().unwrap(),
        "--by-position",
    ]);
    assert!(
        err.len() < 1000 && err.contains("... and 99990 more"),
        "{}",
        &err[..err.len().min(1000)]
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // the library's matching alone, on the header
    let model_names: Vec<String> = ["ax", "ay"].iter().map(|s| s.to_string()).collect();
    let mut header = names.clone();
    header.push("ay".into());
    header.push("ax".into());
    let t0 = Instant::now();
    let map = tinyvae_host_tools::columns::match_channels(
        Path::new("h.csv"),
        &header,
        &model_names,
        tinyvae_host_tools::columns::Matching::ByName,
    )
    .unwrap();
    assert_eq!(map.indices, [n + 1, n]);
    assert_eq!(map.ignored.len(), n);
    assert!(t0.elapsed() < Duration::from_secs(2));
}

/// Item 13: every option error names the option, the value and the valid range.
#[test]
fn option_errors_name_the_option_value_and_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir);
    let m = model.to_str().unwrap();
    let test = slice(dir, "test.csv", "test.csv", 400);
    let t = test.to_str().unwrap();
    let out = dir.join("never.csv");
    let o = out.to_str().unwrap();
    let score = |extra: &[&'static str]| {
        let mut a = vec!["score", "--model", m, "--data", t, "--out", o];
        a.extend(extra);
        a
    };
    assert_eq!(
        fails(&score(&["--threshold", "nan"])),
        "error: --threshold NaN is outside its valid range: any number but NaN (inf never \
         raises the alarm)"
    );
    assert_eq!(
        fails(&score(&["--debounce", "5,3"])),
        "error: --debounce 5,3,1: K = 5 is outside its valid range 1..=N (N = 3)"
    );
    assert_eq!(
        fails(&score(&["--debounce", "2,40"])),
        "error: --debounce 2,40,1: N = 40 is outside its valid range 1..=32"
    );
    assert_eq!(
        fails(&score(&["--debounce", "2,3,3"])),
        "error: --debounce 2,3,3: CLEAR = 3 is outside its valid range 1..=K (K = 2)"
    );
    let err = fails(&score(&["--clear-threshold", "99999"]));
    assert!(
        err.starts_with(
            "error: --clear-threshold 99999 is outside its valid range: a number at most the \
             alarm threshold (the checkpoint's calibrated threshold "
        ),
        "{err}"
    );
    assert_eq!(
        fails(&score(&["--threshold", "5", "--clear-threshold", "6"])),
        "error: --clear-threshold 6 is outside its valid range: a number at most the alarm \
         threshold (--threshold 5)"
    );
    assert_eq!(
        fails(&score(&["--adapt", "10,10", "--adapt-fpr", "2"])),
        "error: --adapt-fpr 2 is outside its valid range 0 < FPR < 1 (the target false-positive \
         rate of the adapted threshold)"
    );
    assert!(fails(&score(&["--ema", "0"]))
        .contains("--ema 0 is outside its valid range 0 < ALPHA <= 1"));
    // a negative threshold is a value, not an option
    ok(&score(&["--threshold", "-5", "--clear-threshold", "-6"]));
    std::fs::remove_file(&out).unwrap();
    // beyond the f32 range: not "not finite"
    for (flag, v) in [
        ("--threshold", "1e39"),
        ("--clear-threshold", "-1e39"),
        ("--limits", "-1e39,5"),
        ("--adapt-fpr", "1e40"),
    ] {
        let err = refused_by_parser(&score(&[flag, v]));
        assert!(
            err.contains(flag)
                && err.contains("is out of the f32 range (finite values have |x| <= 3.4028235e38)"),
            "{flag} {v}: {err}"
        );
    }
    assert!(!out.exists());
    let big = dir.join("big.csv");
    std::fs::write(&big, "ax,ay\n1,2\n3,1e39\n").unwrap();
    assert_eq!(
        fails(&train_args(&big, &dir.join("m2"))),
        format!(
            "error: {}:3:2: field \"1e39\" is out of the f32 range (finite values have |x| <= \
             3.4028235e38)",
            big.display()
        )
    );
    // a stream to score: 1e39 is an input error too, `inf` a sensor fault
    let mut lines: Vec<String> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let rest = lines[2].split_once(',').unwrap().1.to_string();
    lines[2] = format!("1e39,{rest}");
    let big_stream = dir.join("big_stream.csv");
    std::fs::write(&big_stream, lines.join("\n") + "\n").unwrap();
    let err = fails(&score_args(m, big_stream.to_str().unwrap(), o));
    assert!(
        err.contains(":3:1: field \"1e39\" is out of the f32 range"),
        "{err}"
    );
    // --val-fraction that leaves too few training rows
    let train_csv = dir.join("train.csv");
    let err = fails(&[
        "train",
        "--data",
        train_csv.to_str().unwrap(),
        "--out",
        dir.join("m3").to_str().unwrap(),
        "--window",
        "16",
        "--val-fraction",
        "0.9999",
    ]);
    assert_eq!(
        err,
        format!(
            "error: {}: validation fraction (--val-fraction) 0.9999 holds out 1200 of the 1200 \
             rows and leaves 0 for training, fewer than one window of 16 samples; with this \
             data and window it must be in (0, 0.9866]",
            train_csv.display()
        )
    );
    // label values: help and behaviour agree
    let help = String::from_utf8(tinyvae(&["train", "--help"]).stdout).unwrap();
    assert!(!help.contains("is ignored"), "{help}");
    assert!(help.contains("`label` column must hold 0 or 1"), "{help}");
    let lab = dir.join("lab.csv");
    std::fs::write(&lab, "ax,label\n1,0\n2,2\n").unwrap();
    assert_eq!(
        fails(&train_args(&lab, &dir.join("m4"))),
        format!(
            "error: {}:3:2: label \"2\" is not 0 or 1 (the `label` column marks normal samples \
             0 and anomalous ones 1)",
            lab.display()
        )
    );
}

/// Item 13: a requantization error names the layer and why.
#[test]
fn requantization_errors_name_the_layer() {
    use tinyvae_host_tools::model::{HostModel, Ranges};
    use tinyvae_host_tools::train::{Arch, NoiseKind, Params};
    let arch = Arch {
        input: 12,
        encoder_hidden: vec![8],
        latent: 2,
        decoder_hidden: vec![8],
        noise: NoiseKind::PerFeature,
        channels: 3,
    };
    let p = Params::init(&arch, 5).unwrap();
    let ranges = |enc: (f32, f32)| Ranges {
        input: (-3.0, 3.0),
        encoder: vec![enc],
        mu: (-2.0, 2.0),
        logvar: (-2.0, 2.0),
        z: (-4.0, 4.0),
        decoder: vec![(0.0, 4.0)],
        output: (-3.0, 3.0),
    };
    assert!(HostModel::int8(&p, &ranges((0.0, 4.0))).is_ok());
    // an output range so narrow that s_in * s_w / s_out >= 2^30
    let e = HostModel::int8(&p, &ranges((0.0, 1e-30))).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.starts_with("layer encoder.0: output 0: requantization multiplier s_in * s_w / s_out"),
        "{msg}"
    );
    assert!(
        msg.contains("is outside the valid range [0, 2^30)"),
        "{msg}"
    );
}

/// Item 14: absurd channel scales are warned about, naming the channel (train: the statistics;
/// score: values the standardization clamps).
#[test]
fn absurd_scales_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = train(dir);
    let huge = dir.join("huge.csv");
    let mut text = String::from("ax,ay\n");
    for i in 0..300 {
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        text.push_str(&format!(
            "{:e},{}\n",
            sign * 3e38 * ((i % 7) as f64 + 1.0) / 8.0,
            i % 5
        ));
    }
    std::fs::write(&huge, text).unwrap();
    let err = ok(&[
        "train",
        "--data",
        huge.to_str().unwrap(),
        "--out",
        dir.join("huge_model").to_str().unwrap(),
        "--window",
        "8",
        "--hidden",
        "4",
        "--latent",
        "2",
        "--epochs",
        "1",
        "--samples",
        "1",
        "--quiet",
    ]);
    assert!(
        err.contains(&format!("warning: {}: channel ax: mean ", huge.display()))
            && err.contains("beyond the plausible scale of a sensor channel (1e12)")
            && !err.contains("channel ay"),
        "{err}"
    );
    // score: 40 rows of 3e38 in ax
    let test = slice(dir, "test.csv", "test.csv", 400);
    let lines: Vec<String> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if (101..141).contains(&i) {
                let mut f: Vec<&str> = l.split(',').collect();
                f[0] = "3e38";
                f.join(",")
            } else {
                l.to_string()
            }
        })
        .collect();
    let bad = dir.join("t38.csv");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let err = ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        bad.to_str().unwrap(),
        "--out",
        dir.join("s.csv").to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!(
            "warning: {}: channel ax: 40 values beyond 1e6 standard deviations of the model's \
             training data (largest 3e38;",
            bad.display()
        )),
        "{err}"
    );
    // the clean stream: no warning
    let err = ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--out",
        dir.join("s.csv").to_str().unwrap(),
    ]);
    assert!(!err.contains("warning"), "{err}");
}
