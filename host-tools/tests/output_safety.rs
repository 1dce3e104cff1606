//! What the `tinyvae` binary guarantees about its outputs (issue 17, items 1–6): it never
//! removes what it did not write, writes through devices, FIFOs, `-` and links, never writes
//! over one of its inputs, keeps the mode of a replaced file, checks every output before the
//! work, and leaves no staging directory behind on failure or SIGINT/SIGTERM.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{s, slice, small, succeeded, train_small};

/// Runs `tinyvae` under `umask 022` (so the expected modes are known).
fn tinyvae(args: &[&str]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_tinyvae"))
        .args(args)
        .env_remove("TINYVAE_MODEL")
        .stdin(Stdio::null());
    c.output().unwrap()
}

fn ok(args: &[&str]) -> Output {
    succeeded(args, tinyvae(args))
}

/// Runs a command that must fail fast (within `secs`, with a one-line error); returns the error.
fn fails_within(secs: u64, args: &[&str]) -> String {
    let t0 = Instant::now();
    let o = tinyvae(args);
    let err = String::from_utf8_lossy(&o.stderr).trim_end().to_string();
    assert_eq!(o.status.code(), Some(1), "tinyvae {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(secs),
        "tinyvae {args:?} took {:?} to fail: the output must be checked before the work",
        t0.elapsed()
    );
    err
}

/// A run that would take minutes if the output were only checked at the end.
const LONG: &str = "100000"; // the most --epochs allows (train::limits)

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    train: PathBuf,
    test: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let train = slice(&dir, "train.csv", "train.csv", 1200);
    let test = slice(&dir, "test.csv", "test.csv", 1700);
    Fixture {
        _tmp: tmp,
        dir,
        train,
        test,
    }
}

fn train(f: &Fixture, out: &Path) {
    train_small(&f.train, out, "4");
}

/// `demo` on the fixture's data into `out`, without the chip check, for `epochs` epochs.
fn demo_args<'a>(f: &'a Fixture, out: &'a Path, epochs: &'static str) -> Vec<&'a str> {
    let mut args = common::demo_args(out, &f.train, &f.test);
    args.push("--no-firmware");
    args.extend(small(epochs));
    args
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Names starting with `.tinyvae` anywhere under `dir` (staging and temporary files).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tinyvae") && name != ".tinyvae-manifest" {
                found.push(e.path());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// 1. demo never removes what it did not write

#[test]
fn demo_refuses_a_directory_it_does_not_own() {
    let f = fixture();
    let mine = f.dir.join("experiments");
    std::fs::create_dir_all(mine.join("old")).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    std::fs::write(mine.join("old/run.csv"), "keep me too").unwrap();
    let err = fails_within(10, &demo_args(&f, &mine, LONG));
    assert!(
        err.contains("experiments") && err.contains("not an earlier output"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert!(mine.join("old/run.csv").is_file());
    // an input inside the output directory (an earlier demo's) is refused too
    let inside = f.dir.join("inside");
    ok(&demo_args(&f, &inside, "2"));
    let train = slice(&inside, "train.csv", "train.csv", 1200);
    let mut args = demo_args(&f, &inside, LONG);
    args[4] = s(&train);
    let err = fails_within(10, &args);
    assert!(err.contains("is inside it"), "{err}");
    assert!(train.is_file());
    assert!(leftovers(&f.dir).is_empty(), "{:?}", leftovers(&f.dir));
}

#[test]
fn demo_replaces_only_its_own_files() {
    let f = fixture();
    // an existing empty directory is fine
    let out = f.dir.join("report");
    std::fs::create_dir(&out).unwrap();
    ok(&demo_args(&f, &out, "2"));
    let manifest = std::fs::read_to_string(out.join(".tinyvae-manifest")).unwrap();
    for name in ["metrics.json", "model.rs", "model/config.json", "roc.svg"] {
        assert!(manifest.lines().any(|l| l == name), "{name}: {manifest}");
        assert!(out.join(name).is_file(), "{name}");
    }
    // the user adds files; a file the demo wrote gets its own mode
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("model/README"), "mine too").unwrap();
    std::fs::set_permissions(out.join("metrics.json"), PermissionsExt::from_mode(0o640)).unwrap();
    // a file listed by an earlier manifest and not written again is removed (only that one)
    std::fs::write(out.join("stale.svg"), "old plot").unwrap();
    std::fs::write(
        out.join(".tinyvae-manifest"),
        format!("{manifest}stale.svg\n"),
    )
    .unwrap();
    ok(&demo_args(&f, &out, "2"));
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("model/README")).unwrap(),
        "mine too"
    );
    assert!(!out.join("stale.svg").exists());
    assert!(out.join("metrics.json").is_file());
    assert_eq!(mode(&out.join("metrics.json")), 0o640);
    assert!(leftovers(&f.dir).is_empty(), "{:?}", leftovers(&f.dir));
}

// ---------------------------------------------------------------------------------------------
// 2. devices, FIFOs, `-` and links are written through

/// Reads a FIFO on a thread while a command writes it.
fn read_fifo(fifo: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let p = fifo.to_path_buf();
    std::thread::spawn(move || std::fs::read(p).unwrap())
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success());
}

#[test]
fn score_and_export_write_through_devices_fifos_stdout_and_links() {
    let f = fixture();
    let model = f.dir.join("m");
    train(&f, &model);
    let score = |out: &str| -> Output {
        ok(&[
            "score",
            "--model",
            s(&model),
            "--data",
            s(&f.test),
            "--out",
            out,
        ])
    };
    // FIFO
    let fifo = f.dir.join("fifo");
    mkfifo(&fifo);
    let reader = read_fifo(&fifo);
    score(s(&fifo));
    let got = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(got.starts_with("window,start,end,score,alarm"), "{got}");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let reader = read_fifo(&fifo);
    ok(&["export", "--model", s(&model), "--out", s(&fifo)]);
    let src = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(src.contains("static") || src.contains("const"), "{src}");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // a character device stays one
    score("/dev/null");
    ok(&["export", "--model", s(&model), "--out", "/dev/null"]);
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // `-` is standard output
    let o = score("-");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("window,start,end,score,alarm"), "{text}");
    assert_eq!(text.lines().count(), got.lines().count());
    // a link stays a link; the file it points to is written (here: created)
    let link = f.dir.join("link.csv");
    std::os::unix::fs::symlink("sub/real.csv", &link).unwrap();
    std::fs::create_dir(f.dir.join("sub")).unwrap();
    score(s(&link));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(f.dir.join("sub/real.csv")).unwrap(),
        got
    );
    // ... and replaced when it exists, keeping its mode
    std::fs::write(f.dir.join("sub/real.csv"), "old").unwrap();
    std::fs::set_permissions(f.dir.join("sub/real.csv"), PermissionsExt::from_mode(0o604)).unwrap();
    score(s(&link));
    assert_eq!(
        std::fs::read_to_string(f.dir.join("sub/real.csv")).unwrap(),
        got
    );
    assert_eq!(mode(&f.dir.join("sub/real.csv")), 0o604);
    assert!(leftovers(&f.dir).is_empty(), "{:?}", leftovers(&f.dir));
}

// ---------------------------------------------------------------------------------------------
// 3. never over an input

#[test]
fn outputs_never_overwrite_inputs() {
    let f = fixture();
    let model = f.dir.join("m");
    train(&f, &model);
    let before = |p: &Path| std::fs::read(p).unwrap();
    let data = before(&f.test);
    let weights = before(&model.join("model.safetensors"));
    let config = before(&model.join("config.json"));
    let score = |out: &Path| {
        fails_within(
            10,
            &[
                "score",
                "--model",
                s(&model),
                "--data",
                s(&f.test),
                "--out",
                s(out),
            ],
        )
    };
    // same path
    let err = score(&f.test);
    assert!(err.contains("input"), "{err}");
    // a symbolic link to it, a hard link to it
    let sym = f.dir.join("sym.csv");
    std::os::unix::fs::symlink(&f.test, &sym).unwrap();
    assert!(score(&sym).contains("input"));
    let hard = f.dir.join("hard.csv");
    std::fs::hard_link(&f.test, &hard).unwrap();
    assert!(score(&hard).contains("input"));
    // inside the checkpoint it reads
    let err = score(&model.join("config.json"));
    assert!(err.contains("inside the directory"), "{err}");
    assert!(score(&model.join("new.csv")).contains("inside the directory"));
    let err = fails_within(
        10,
        &[
            "export",
            "--model",
            s(&model),
            "--out",
            s(&model.join("model.safetensors")),
        ],
    );
    assert!(err.contains("inside the directory"), "{err}");
    // train over its own data
    let mut args = vec!["train", "--data", s(&f.train), "--out", s(&f.dir)];
    args.extend(small(LONG));
    let train_copy = f.dir.join("config.json");
    std::fs::copy(&f.train, &train_copy).unwrap();
    args[2] = s(&train_copy);
    let err = fails_within(10, &args);
    assert!(err.contains("input"), "{err}");
    assert_eq!(before(&f.test), data);
    assert_eq!(before(&model.join("model.safetensors")), weights);
    assert_eq!(before(&model.join("config.json")), config);
    assert_eq!(before(&hard), data);
    // quantize in place is the one intended update, and keeps working
    ok(&["quantize", "--model", s(&model), "--data", s(&f.train)]);
}

// ---------------------------------------------------------------------------------------------
// 4. modes

#[test]
fn files_keep_their_mode_and_new_ones_follow_the_umask() {
    let f = fixture();
    let model = f.dir.join("m");
    train(&f, &model);
    assert_eq!(mode(&model), 0o755);
    assert_eq!(mode(&model.join("config.json")), 0o644);
    assert_eq!(mode(&model.join("model.safetensors")), 0o644);
    for (name, m) in [("config.json", 0o640), ("model.safetensors", 0o604)] {
        std::fs::set_permissions(model.join(name), PermissionsExt::from_mode(m)).unwrap();
    }
    ok(&["quantize", "--model", s(&model), "--data", s(&f.train)]);
    assert_eq!(mode(&model.join("config.json")), 0o640);
    assert_eq!(mode(&model.join("model.safetensors")), 0o604);
    // train into an existing directory: new files get the usual mode
    let existing = f.dir.join("existing");
    std::fs::create_dir(&existing).unwrap();
    train(&f, &existing);
    assert_eq!(mode(&existing.join("config.json")), 0o644);
    let out = f.dir.join("model.rs");
    ok(&["export", "--model", s(&model), "--out", s(&out)]);
    assert_eq!(mode(&out), 0o644);
    std::fs::set_permissions(&out, PermissionsExt::from_mode(0o600)).unwrap();
    ok(&["export", "--model", s(&model), "--out", s(&out)]);
    assert_eq!(mode(&out), 0o600);
}

// ---------------------------------------------------------------------------------------------
// 5. outputs checked before the work

#[test]
fn outputs_are_checked_before_training() {
    let f = fixture();
    let file = f.dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let train_to = |out: &Path| {
        let mut args = vec!["train", "--data", s(&f.train), "--out", s(out)];
        args.extend(small(LONG));
        fails_within(10, &args)
    };
    let err = train_to(&file);
    assert!(err.contains("not a directory"), "{err}");
    let err = train_to(&file.join("sub"));
    assert!(err.contains("a-file: is not a directory"), "{err}");
    // a directory where the checkpoint's file should be
    let d = f.dir.join("ck");
    std::fs::create_dir_all(d.join("config.json")).unwrap();
    let err = train_to(&d);
    assert!(err.contains("is a directory"), "{err}");
    // demo into a file, into `.` of a non-empty directory
    let err = fails_within(10, &demo_args(&f, &file, LONG));
    assert!(err.contains("not a directory"), "{err}");
    let mut args = demo_args(&f, Path::new("."), LONG);
    args[2] = ".";
    let o = {
        let t0 = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_tinyvae"))
            .args(&args)
            .current_dir(&f.dir)
            .output()
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10));
        o
    };
    assert_eq!(o.status.code(), Some(1));
    // score into a directory, export under a file, import into a file
    let model = f.dir.join("m");
    train(&f, &model);
    let err = fails_within(
        10,
        &[
            "score",
            "--model",
            s(&model),
            "--data",
            s(&f.test),
            "--out",
            s(&f.dir),
        ],
    );
    assert!(err.contains("is a directory"), "{err}");
    let err = fails_within(
        10,
        &[
            "export",
            "--model",
            s(&model),
            "--out",
            s(&file.join("model.rs")),
        ],
    );
    assert!(err.contains("not a directory"), "{err}");
    let err = fails_within(10, &["import", "--tflite", s(&f.train), "--out", s(&file)]);
    assert!(err.contains("not a directory"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 6. no staging left behind

fn killed_demo_leaves_nothing(signal: &str, code: i32) {
    let f = fixture();
    let out = f.dir.join("new/report");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(demo_args(&f, &out, LONG))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // wait until it is staging (training)
    while leftovers(&f.dir).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no staging seen");
        assert!(child.try_wait().unwrap().is_none(), "demo ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let st = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "{status:?}");
    assert!(leftovers(&f.dir).is_empty(), "{:?}", leftovers(&f.dir));
    assert!(
        !f.dir.join("new").exists(),
        "the directories it made are removed"
    );
}

#[test]
fn sigterm_removes_the_demo_staging() {
    killed_demo_leaves_nothing("-TERM", 143);
}

#[test]
fn sigint_removes_the_demo_staging() {
    killed_demo_leaves_nothing("-INT", 130);
}

#[test]
fn failed_demo_removes_its_staging() {
    let f = fixture();
    // test data without labels: the demo fails after training
    let unlabeled = f.dir.join("unlabeled.csv");
    let text = std::fs::read_to_string(&f.train).unwrap();
    let mut t = String::new();
    for l in text.lines() {
        let cols: Vec<&str> = l.split(',').collect();
        t.push_str(&cols[..6].join(","));
        t.push('\n');
    }
    std::fs::write(&unlabeled, t).unwrap();
    let out = f.dir.join("report");
    let mut args = demo_args(&f, &out, "2");
    args[6] = s(&unlabeled);
    let o = tinyvae(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(leftovers(&f.dir).is_empty(), "{:?}", leftovers(&f.dir));
    assert!(!out.exists());
}
