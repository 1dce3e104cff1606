//! `tinyvae score` and `tinyvae eval` give the same bytes with every int8 kernel this CPU runs
//! (`TINYVAE_KERNEL=portable`, the library's own kernel; `avx2`; `avx512vnni`) on the bundled
//! test set with the default model (384-60-32): ELBO with attribution, IWAE-4 (four sampled decodes
//! per window), and a stream with injected non-finite values and gaps; and a bad
//! `TINYVAE_KERNEL` fails with a message naming the variable and the valid values.

mod common;

use common::{data_file, s};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tinyvae_host_tools::kernel::{Int8Kernel, KERNEL_ENV};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/model/default")
}

fn run(kernel: &str, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(args)
        .env_remove("TINYVAE_MODEL")
        .env(KERNEL_ENV, kernel)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "TINYVAE_KERNEL={kernel} tinyvae {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The bundled test stream with NaN, infinity and gap rows injected.
fn faulty(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(data_file("test.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        match i {
            500 => out.push_str("NaN,0,0,0,0,0,0"),
            1500 => out.push_str("0,inf,0,0,0,0,0"),
            2500..=2502 => out.push_str(",,,,,,0"),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let p = dir.join("faulty.csv");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn score_and_eval_bytes_do_not_depend_on_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let test = data_file("test.csv");
    let bad = faulty(dir.path());
    let kernels: Vec<Int8Kernel> = Int8Kernel::ALL
        .into_iter()
        .filter(|k| k.supported())
        .collect();
    assert!(
        kernels.len() > 1 || !cfg!(target_arch = "x86_64") || {
            eprintln!("note: no SIMD kernel on this CPU: only the portable one runs");
            true
        }
    );
    let cases: [(&str, &Path, &[&str]); 3] = [
        ("elbo", &test, &[]),
        (
            "iwae",
            &test,
            &[
                "--score",
                "iwae",
                "--samples",
                "4",
                "--seed",
                "3",
                "--threshold",
                "1500",
            ],
        ),
        ("faults", &bad, &["--limits", "-8,8"]),
    ];
    for (name, data, extra) in cases {
        let mut outputs = Vec::new();
        for k in &kernels {
            let out = dir.path().join(format!("{name}-{k}.csv"));
            let mut args = vec![
                "score",
                "--model",
                s(&m),
                "--data",
                s(data),
                "--out",
                s(&out),
            ];
            args.extend_from_slice(extra);
            let o = run(k.name(), &args);
            // The summary names the output file: the same text once that is taken out.
            let summary = String::from_utf8(o.stderr).unwrap().replace(s(&out), "OUT");
            outputs.push((k, std::fs::read(&out).unwrap(), summary));
        }
        let (k0, bytes, stderr) = &outputs[0];
        assert!(bytes.len() > 10_000, "{name}: {} bytes", bytes.len());
        for (k, b, e) in &outputs[1..] {
            assert!(b == bytes, "{name}: {k} and {k0} outputs differ");
            assert_eq!(e, stderr, "{name}: {k} and {k0} summaries differ");
        }
    }
    let evals: Vec<Vec<u8>> = kernels
        .iter()
        .map(|k| run(k.name(), &["eval", "--model", s(&m), "--json"]).stdout)
        .collect();
    for (k, e) in kernels.iter().zip(&evals).skip(1) {
        assert!(e == &evals[0], "eval --json: {k} differs from portable");
    }
}

#[test]
fn a_bad_kernel_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.csv");
    let o = Command::new(env!("CARGO_BIN_EXE_tinyvae"))
        .args(["score", "--model", s(&model()), "--data"])
        .arg(data_file("test.csv"))
        .arg("--out")
        .arg(&out)
        .env(KERNEL_ENV, "neon")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("TINYVAE_KERNEL=\"neon\"") && e.contains("portable"),
        "{e}"
    );
    assert!(!out.exists());
}
