//! Memory and size bounds of the `tinyvae` binary (issue 17, items 9, 11, 12), measured on the
//! binary itself: each command runs as a child process and its peak resident memory is read
//! from `/proc/<pid>/status` (`VmHWM`). The bounds are generous (several times what the streaming code
//! needs) and far below what the old code took on the same inputs.
//!
//! - sizes a user asks for (`--epochs`, `--latent`, `--hidden`, ...) are refused with the
//!   option, the value and the range, before anything is allocated from them;
//! - `train` keeps one standardized copy of the stream, not one copy per stride-1 window;
//! - `score` streams: its peak memory does not grow with the input, and an over-long line is
//!   refused without being buffered.

#![cfg(target_os = "linux")]

mod common;

use common::{s, train_args};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Exit code, peak resident memory in MiB, stderr.
struct Run {
    code: Option<i32>,
    peak_mib: f64,
    stderr: String,
}

/// The child's peak resident set size so far (`VmHWM`, KiB), if it is still running.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `tinyvae args` and measures its peak resident set size: `VmHWM` of the child's own
/// address space, sampled every millisecond until it exits (a lower bound of the true peak that
/// misses at most the last millisecond). `wait4`'s `ru_maxrss` is not used: Linux carries the
/// forking test process's size over the `exec` into it.
fn run(dir: &Path, args: &[&str]) -> Run {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let err_path = dir.join(format!("stderr-{n}.txt"));
    let err_file = std::fs::File::create(&err_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(args)
        .env_remove("TINYVAE_MODEL")
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    Run {
        code: status.code(),
        peak_mib: peak as f64 / 1024.0,
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// A smooth 6-channel stream of `rows` rows (with a label column when `labels`).
fn stream(dir: &Path, name: &str, rows: usize, labels: bool) -> PathBuf {
    let mut s = String::from("ax,ay,az,wx,wy,wz");
    if labels {
        s.push_str(",label");
    }
    s.push('\n');
    for i in 0..rows {
        let t = i as f32 * 0.05;
        for c in 0..6 {
            let v = (t * (1.0 + c as f32 * 0.3)).sin() + 0.1 * ((i * 7 + c * 13) % 11) as f32;
            if c > 0 {
                s.push(',');
            }
            write!(s, "{v:.4}").unwrap();
        }
        if labels {
            s.push_str(if (i / 500) % 10 == 9 { ",1" } else { ",0" });
        }
        s.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

/// `train` of the tiny model (hidden 4, latent 2, one epoch, one sample) on `data` into `out`,
/// with `more` options (the window).
fn tiny_train<'a>(data: &'a Path, out: &'a Path, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = train_args(data, out);
    args.extend(more);
    args.extend([
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
    args
}

#[test]
fn sizes_asked_for_are_bounded_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let data = stream(dir.path(), "train.csv", 600, false);
    let out = dir.path().join("ck");
    let base = ["train", "--data", s(&data), "--out", s(&out), "--quiet"];
    let two62 = (1u64 << 62).to_string();
    for (extra, want) in [
        (
            &["--epochs", "1000000000", "--patience", "5"][..],
            "--epochs 1000000000 is out of range: valid values are 1 to 100000",
        ),
        (&["--epochs", &two62], "--epochs 4611686018427387904 is out of range"),
        (
            &["--latent", "1000000"],
            "--latent 1000000 is out of range: valid values are 1 to 256",
        ),
        (
            &["--hidden", "100000"],
            "--hidden 100000 is out of range: valid values are 1 to 1024",
        ),
        (&["--decoder-hidden", "60,100000"], "--decoder-hidden 100000"),
        (&["--batch", "1000000000"], "--batch 1000000000 is out of range"),
        (&["--window", "100000000"], "--window 100000000 is out of range"),
        (&["--patience", &two62], "--patience 4611686018427387904"),
        (&["--kl-warmup", &two62], "--kl-warmup 4611686018427387904"),
        (&["--stride", &two62], "--stride 4611686018427387904"),
        // within every per-option range, but 1024x1024 layers are too many parameters
        (
            &["--hidden", "1024,1024", "--latent", "8"],
            "the model would have 2224240 parameters (input 48 = window 8 x 6 channels, --hidden 1024,1024, --latent 8, --decoder-hidden 1024,1024); at most 1000000 are allowed",
        ),
    ] {
        let mut args: Vec<&str> = base.iter().chain(extra).copied().collect();
        if !extra.contains(&"--window") {
            args.extend(["--window", "8"]);
        }
        let r = run(dir.path(), &args);
        assert_eq!(r.code, Some(1), "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{extra:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{extra:?}: {}", r.stderr);
        assert!(r.peak_mib < 100.0, "{extra:?}: {} MiB", r.peak_mib);
        assert!(!out.exists());
    }
}

#[test]
fn training_memory_is_the_stream_not_its_windows() {
    // 40,000 rows x 6 channels = 0.9 MiB of samples; its stride-1 windows of 128 samples would
    // be 40,000 x 768 floats = 117 MiB (what the old code materialized).
    let dir = tempfile::tempdir().unwrap();
    let data = stream(dir.path(), "long.csv", 40_000, false);
    let out = dir.path().join("ck");
    let r = run(dir.path(), &tiny_train(&data, &out, &["--window", "128"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.peak_mib < 60.0,
        "train on a 0.9 MiB stream peaked at {:.1} MiB",
        r.peak_mib
    );
}

#[test]
fn score_memory_does_not_grow_with_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let train = stream(dir.path(), "train.csv", 2_000, false);
    let ck = dir.path().join("ck");
    let r = run(
        dir.path(),
        &tiny_train(&train, &ck, &["--window", "8", "--stride", "1"]),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mut peaks = Vec::new();
    for rows in [10_000, 600_000] {
        let data = stream(dir.path(), &format!("s{rows}.csv"), rows, true);
        let out = dir.path().join(format!("s{rows}.out.csv"));
        let r = run(
            dir.path(),
            &[
                "score",
                "--model",
                s(&ck),
                "--data",
                s(&data),
                "--out",
                s(&out),
            ],
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let text = std::fs::read_to_string(&out).unwrap();
        // header + one line per stride-1 window
        assert_eq!(text.lines().count(), 1 + rows - 8 + 1);
        assert!(text.starts_with("window,start,end,score,alarm,label,"));
        peaks.push(r.peak_mib);
    }
    // 600,000 rows: a 30 MiB file and 45 MiB of output, which the old code both held
    assert!(
        peaks[1] < peaks[0] + 12.0,
        "score peaked at {:.1} MiB on 10,000 rows and {:.1} MiB on 600,000",
        peaks[0],
        peaks[1]
    );
}

#[test]
fn an_overlong_line_is_refused_without_buffering_it() {
    let dir = tempfile::tempdir().unwrap();
    let train = stream(dir.path(), "train.csv", 600, false);
    let ck = dir.path().join("ck");
    let r = run(dir.path(), &tiny_train(&train, &ck, &["--window", "8"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // a 64 MiB line of digits after a valid header
    let long = dir.path().join("long.csv");
    let mut bytes = b"ax,ay,az,wx,wy,wz\n".to_vec();
    bytes.resize(bytes.len() + (64 << 20), b'1');
    std::fs::write(&long, &bytes).unwrap();
    drop(bytes);
    let out = dir.path().join("scores.csv");
    for args in [
        &[
            "score",
            "--model",
            s(&ck),
            "--data",
            s(&long),
            "--out",
            s(&out),
        ][..],
        &["train", "--data", s(&long), "--out", s(&out), "--quiet"],
    ] {
        let r = run(dir.path(), args);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("long.csv:2: line longer than 1048576 bytes"),
            "{}",
            r.stderr
        );
        assert!(r.peak_mib < 40.0, "{args:?}: {:.1} MiB", r.peak_mib);
        assert!(!out.exists());
    }
}
