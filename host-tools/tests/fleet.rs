//! `tinyvae fleet` (feature `fleet`): a generated fleet of 24 devices with dropped samples and
//! sensor faults, scored on DataFusion, equals `tinyvae score` on each device's stream bit for
//! bit; the same archive scored on a local Ballista cluster (a scheduler and two executors
//! started from this binary) equals the local result row for row; `fleet convert` round-trips a
//! CSV stream; `fleet calibrate` gives each device a threshold at the target false-positive rate
//! that `tinyvae export --threshold` writes into the firmware source.
#![cfg(feature = "fleet")]

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float32Type, UInt64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One window row as text cells in `tinyvae score`'s CSV form (scores and levels as their f32
/// bits), keyed by device.
type Row = Vec<String>;

fn bits(v: Option<f32>) -> String {
    v.map_or(String::new(), |x| format!("{:08x}", x.to_bits()))
}

/// The rows of every Parquet file under `dir`, by device, in window order.
fn read_windows(dir: &Path) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    for f in files {
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            push_rows(&b.unwrap(), &mut out);
        }
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r[0].parse::<u64>().unwrap());
    }
    out
}

fn push_rows(b: &RecordBatch, out: &mut BTreeMap<String, Vec<Row>>) {
    let s = b.schema();
    let col = |n: &str| b.column(s.index_of(n).unwrap()).clone();
    let device = col("device");
    let device = device.as_string::<i32>();
    let u = |n: &str| col(n).as_primitive::<UInt64Type>().clone();
    let f = |n: &str| col(n).as_primitive::<Float32Type>().clone();
    let t = |n: &str| col(n).as_string::<i32>().clone();
    let (window, start, end) = (u("window"), u("start"), u("end"));
    let (score, level) = (f("score"), f("level"));
    let alarm = col("alarm").as_boolean().clone();
    let label = s
        .index_of("label")
        .ok()
        .map(|i| b.column(i).as_boolean().clone());
    let (event, faults, top) = (t("event"), t("faults"), t("top_channel"));
    let opt_f =
        |a: &datafusion::arrow::array::Float32Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let opt_s = |a: &datafusion::arrow::array::StringArray, i: usize| {
        if a.is_valid(i) {
            a.value(i).to_string()
        } else {
            String::new()
        }
    };
    for i in 0..b.num_rows() {
        let mut r = vec![
            window.value(i).to_string(),
            start.value(i).to_string(),
            end.value(i).to_string(),
            bits(opt_f(&score, i)),
            u8::from(alarm.value(i)).to_string(),
        ];
        if let Some(l) = &label {
            r.push(u8::from(l.value(i)).to_string());
        }
        r.extend([
            bits(opt_f(&level, i)),
            opt_s(&event, i),
            opt_s(&faults, i),
            opt_s(&top, i),
        ]);
        out.entry(device.value(i).to_string()).or_default().push(r);
    }
}

/// `tinyvae score`'s CSV as rows of the same form.
fn read_score_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let fcol = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (si, li) = (fcol("score"), fcol("level"));
    lines
        .map(|l| {
            l.split(',')
                .enumerate()
                .map(|(i, c)| {
                    if (i == si || i == li) && !c.is_empty() {
                        bits(Some(c.parse::<f32>().unwrap()))
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Child processes killed when the test ends (pass or fail).
struct Cluster(Vec<Child>);

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn fleet_score_equals_tinyvae_score_per_device_locally_and_on_ballista() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = slice(d, "train.csv", "train.csv", 3000);
    let model = train_small(&train, &d.join("model"), "2");
    let (archive, csvs) = (d.join("archive"), d.join("csv"));
    let recordings = data_file("train.csv").parent().unwrap().to_path_buf();
    ok(&[
        "fleet",
        "generate",
        "--archive",
        s(&archive),
        "--devices",
        "24",
        "--samples",
        "700",
        "--seed",
        "7",
        "--recordings",
        s(&recordings),
        "--csv",
        s(&csvs),
    ]);

    // Local DataFusion, 3 tasks, a small memory pool.
    let out = d.join("out");
    ok(&[
        "fleet",
        "score",
        "--model",
        s(&model),
        "--archive",
        s(&archive),
        "--out",
        s(&out),
        "--partitions",
        "3",
        "--memory-limit",
        "16",
    ]);
    let fleet = read_windows(&out.join("windows"));
    assert_eq!(fleet.len(), 24, "every device has windows");
    assert!(out.join("devices.parquet").exists());

    // Bit for bit against `tinyvae score` on each device's own stream.
    let (mut gaps, mut faults, mut raised) = (0, 0, 0);
    for (device, rows) in &fleet {
        let scores = d.join(format!("{device}.scores.csv"));
        let csv = csvs.join(format!("{device}.csv"));
        ok(&score_args(s(&model), s(&csv), s(&scores)));
        let want = read_score_csv(&scores);
        assert_eq!(rows.len(), want.len(), "{device}: window count");
        for (got, want) in rows.iter().zip(&want) {
            assert_eq!(got, want, "{device}");
        }
        gaps += rows.iter().filter(|r| r[8].contains("gap")).count();
        faults += rows
            .iter()
            .filter(|r| r[8].contains("nonfinite") || r[8].contains("stuck"))
            .count();
        raised += rows.iter().filter(|r| r[7] == "raised").count();
    }
    assert!(
        gaps > 0 && faults > 0 && raised > 0,
        "{gaps} {faults} {raised}"
    );

    // The same on a Ballista cluster: a scheduler and two executors of this binary.
    let sp = free_port().to_string();
    let sched = format!("127.0.0.1:{sp}");
    let mut cluster = Cluster(vec![spawn(&["fleet", "scheduler", "--bind", &sched])]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    for _ in 0..2 {
        let (p, g) = (free_port().to_string(), free_port().to_string());
        cluster.0.push(spawn(&[
            "fleet",
            "executor",
            "--scheduler",
            &sched,
            "--port",
            &p,
            "--grpc-port",
            &g,
            "--cores",
            "1",
            "--memory-limit",
            "64",
        ]));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out2 = d.join("out-ballista");
    ok(&[
        "fleet",
        "score",
        "--model",
        s(&model),
        "--archive",
        s(&archive),
        "--out",
        s(&out2),
        "--engine",
        &format!("ballista://{sched}"),
        "--partitions",
        "2",
    ]);
    drop(cluster);
    let distributed = read_windows(&out2.join("windows"));
    assert_eq!(
        distributed, fleet,
        "Ballista equals DataFusion, row for row"
    );
}

#[test]
fn convert_round_trips_a_csv_and_calibrate_feeds_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = slice(d, "train.csv", "train.csv", 3000);
    let model = train_small(&train, &d.join("model"), "2");
    // A stream with a dropped sample (empty row) and a NaN, converted as one device.
    let test = slice(d, "test.csv", "test.csv", 400);
    let mut text = std::fs::read_to_string(&test).unwrap();
    text = text.replacen("\n", "\n,,,,,,0\n", 40);
    let stream = d.join("stream.csv");
    std::fs::write(&stream, text.replacen(",0\n", ",0\nnan,1,1,1,1,1,0\n", 1)).unwrap();
    let archive = d.join("archive");
    ok(&[
        "fleet",
        "convert",
        "--data",
        s(&stream),
        "--device",
        "pen-1",
        "--archive",
        s(&archive),
    ]);
    let err = fails(&[
        "fleet",
        "convert",
        "--data",
        s(&stream),
        "--device",
        "pen-1",
        "--archive",
        s(&archive),
    ]);
    assert!(err.contains("already in the archive"), "{err}");
    let err = fails(&[
        "fleet",
        "convert",
        "--data",
        s(&stream),
        "--device",
        "a/b",
        "--archive",
        s(&archive),
    ]);
    assert!(err.contains("device name"), "{err}");
    let out = d.join("out");
    ok(&[
        "fleet",
        "score",
        "--model",
        s(&model),
        "--archive",
        s(&archive),
        "--out",
        s(&out),
        "--partitions",
        "1",
    ]);
    let scores = d.join("scores.csv");
    ok(&score_args(s(&model), s(&stream), s(&scores)));
    let fleet = read_windows(&out.join("windows"));
    assert_eq!(fleet.get("pen-1"), Some(&read_score_csv(&scores)));

    // A multi-sensor (--group) model is refused clearly, before anything is written.
    let poe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/model/poe");
    let err = fails(&[
        "fleet",
        "score",
        "--model",
        s(&poe),
        "--archive",
        s(&archive),
        "--out",
        s(&d.join("out-poe")),
    ]);
    assert!(err.contains("multi-sensor"), "{err}");
    assert!(!d.join("out-poe").exists());

    // The in-order scan trusts the files' order and checks it: a second file whose `t` starts
    // over is refused, not scored as more windows.
    let dev = archive.join("device=pen-1");
    std::fs::copy(dev.join("part-0.parquet"), dev.join("part-1.parquet")).unwrap();
    let err = fails(&[
        "fleet",
        "score",
        "--model",
        s(&model),
        "--archive",
        s(&archive),
        "--out",
        s(&d.join("out-bad")),
    ]);
    assert!(err.contains("repeats or goes back"), "{err}");
    assert!(!d.join("out-bad").exists(), "no half-written output");

    // Calibrate at 10 %: each device's normal windows alarm at most that often.
    let gen = d.join("gen");
    let recordings = data_file("train.csv").parent().unwrap().to_path_buf();
    ok(&[
        "fleet",
        "generate",
        "--archive",
        s(&gen),
        "--devices",
        "4",
        "--samples",
        "900",
        "--recordings",
        s(&recordings),
    ]);
    let table = d.join("thresholds.csv");
    let err = ok_stderr(&[
        "fleet",
        "calibrate",
        "--model",
        s(&model),
        "--archive",
        s(&gen),
        "--out",
        s(&table),
        "--fpr",
        "0.1",
    ]);
    let text = std::fs::read_to_string(&table).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("device,threshold,normal_windows,fpr"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // Seed 0 starts dev-0003 in the anomalous part of the test recording (873 of its 900 rows
    // are labeled): no normal window, so no threshold, and the command says so.
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|r| r[0] != "dev-0003"), "{text}");
    assert!(
        err.contains("without a normal window") && err.contains("dev-0003"),
        "{err}"
    );
    let out = d.join("out-cal");
    ok(&[
        "fleet",
        "score",
        "--model",
        s(&model),
        "--archive",
        s(&gen),
        "--out",
        s(&out),
        "--thresholds",
        s(&table),
    ]);
    let w = read_windows(&out.join("windows"));
    for r in &rows {
        let (device, n): (&str, usize) = (r[0], r[2].parse().unwrap());
        let normal: Vec<&Row> = w[device]
            .iter()
            .filter(|x| !x[3].is_empty() && x[8].is_empty() && x[5] == "0")
            .collect();
        assert_eq!(normal.len(), n, "{device}");
        let alarms = normal.iter().filter(|x| x[4] == "1").count();
        assert!(alarms as f64 <= 0.1 * n as f64, "{device}: {alarms} of {n}");
    }
    // One device's threshold into the firmware source.
    let src = d.join("model.rs");
    ok(&[
        "export",
        "--model",
        s(&model),
        "--out",
        s(&src),
        "--threshold",
        rows[0][1],
    ]);
    let code = std::fs::read_to_string(&src).unwrap();
    let t: f32 = rows[0][1].parse().unwrap();
    let line = code
        .lines()
        .find_map(|l| l.strip_prefix("pub const THRESHOLD: f32 = "))
        .unwrap();
    let exported: f32 = line
        .trim_end_matches(';')
        .trim_end_matches("_f32")
        .parse()
        .unwrap();
    assert_eq!(exported.to_bits(), t.to_bits(), "{line}");
}
