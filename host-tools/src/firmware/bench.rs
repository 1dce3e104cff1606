//! `tinyvae firmware bench`: instructions per inference of each workload of the `bench` and
//! `tflite` programs under QEMU `-icount` (see `firmware/qemu/src/counter.rs`), flash and RAM
//! of the `score` program from its ELF, and its stack high-water mark from stack painting;
//! printed as a table or as one JSON object keyed by core name.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use super::cargo_build::build_core;
use super::cores::Core;
use super::elf::{elf_sizes, ElfSizes};
use super::qemu::ensure_success;
use super::records::records;

/// One core's benchmark figures (`None`: does not fit, or not measured).
#[derive(Clone, Debug, Default)]
pub struct BenchFigures {
    /// The QEMU machine the figures come from.
    pub machine: String,
    /// Instructions by workload name as the firmware printed them.
    pub instructions: BTreeMap<String, Option<u64>>,
    /// Multiply-accumulates by workload.
    pub macs: BTreeMap<String, u64>,
    /// Output checksums by workload (equal on every core when the kernels agree bit for bit).
    pub checksums: BTreeMap<String, String>,
    /// Sizes of the `score` program.
    pub score_elf: ElfSizes,
    /// Model parameter bytes in flash (weights, biases, requantization constants, tables).
    pub weights_bytes: u64,
    /// Bytes of the compiled-in test stream.
    pub stream_bytes: u64,
    /// Stack high-water mark of the `score` run.
    pub stack_bytes: u64,
    /// Stack high-water mark of the `bench` run.
    pub bench_stack_bytes: u64,
    /// Product-of-experts model only: the whole ELBO score with each non-empty subset of the
    /// sensor groups, as (subset name, instructions, MACs), in the firmware's order (full set
    /// first); the name joins the groups' names with `+` in training order.
    pub score_by_groups: Vec<(String, u64, Option<u64>)>,
}

impl BenchFigures {
    fn instr(&self, key: &str) -> Option<u64> {
        self.instructions.get(key).copied().flatten()
    }

    /// Flash without the model parameters and the test stream: code, constants, vector table.
    pub fn flash_code(&self) -> u64 {
        self.score_elf
            .flash
            .saturating_sub(self.weights_bytes + self.stream_bytes)
    }

    /// Flash of the deployable program: code plus the model (not the test stream).
    pub fn flash_with_weights(&self) -> u64 {
        self.flash_code() + self.weights_bytes
    }

    /// RAM: statics plus the measured stack peak.
    pub fn ram(&self) -> u64 {
        self.score_elf.ram_static() + self.stack_bytes
    }

    /// The JSON object of this core (scripts rely on the first five keys).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<u64>| {
            m.insert(k.to_string(), v.map_or(serde_json::Value::Null, Into::into));
        };
        put("small_vae_instructions", self.instr("small_vae"));
        put("mlperf_ad_instructions", self.instr("mlperf_ad"));
        put("score_instructions", self.instr("score"));
        put("flash_code_bytes", Some(self.flash_code()));
        put("ram_bytes", Some(self.ram()));
        for (k, v) in &self.instructions {
            if !matches!(k.as_str(), "small_vae" | "mlperf_ad" | "score") {
                put(&format!("{k}_instructions"), *v);
            }
        }
        put("flash_weights_bytes", Some(self.weights_bytes));
        // The same figure under the name the mixture-of-experts comparison uses (issue 14).
        put("flash_model_bytes", Some(self.weights_bytes));
        put("flash_with_weights_bytes", Some(self.flash_with_weights()));
        put("flash_text_bytes", Some(self.score_elf.text));
        put("flash_rodata_bytes", Some(self.score_elf.rodata));
        put("ram_static_bytes", Some(self.score_elf.ram_static()));
        put("stack_bytes", Some(self.stack_bytes));
        if !self.score_by_groups.is_empty() {
            let by: serde_json::Map<String, serde_json::Value> = self
                .score_by_groups
                .iter()
                .map(|(set, n, _)| (set.clone(), (*n).into()))
                .collect();
            m.insert("score_instructions_by_groups".to_string(), by.into());
        }
        m.insert("machine".to_string(), self.machine.clone().into());
        serde_json::Value::Object(m)
    }
}

/// Builds and runs the benchmarks on one core with the model `model` (see
/// [`model_source`](super::model_source)).
///
/// # Errors
/// Build or run failure, non-zero exit, unparsable output.
pub fn bench_core(core: Core, model: Option<&Path>) -> Result<BenchFigures> {
    let b = build_core(core, &["bench", "tflite", "score"], model)?;
    let mut bench_lines = Vec::new();
    for prog in ["bench", "tflite"] {
        let out = b.run(prog)?;
        ensure_success(&b, prog, &out)?;
        bench_lines.extend(records(&out).into_iter().filter(|r| r.tag == "bench"));
        if prog == "bench" {
            bench_lines.extend(records(&out).into_iter().filter(|r| r.tag == "stack"));
        }
    }
    // The bench program's last line is its stack report: without it the program stopped early
    // (e.g. a stack overflow into the exit path), and the missing workloads would read as
    // "does not fit".
    if !bench_lines.iter().any(|r| r.tag == "stack") {
        bail!(
            "`bench` on {} ended before its stack report: its output stops after {} benchmark lines",
            b.label(),
            bench_lines.len()
        );
    }
    let score_elf = elf_sizes(b.machine, &b.elf("score"))?;
    let mut f = BenchFigures {
        machine: b.machine.to_string(),
        score_elf,
        weights_bytes: score_elf.model,
        stream_bytes: score_elf.stream,
        ..BenchFigures::default()
    };
    for r in bench_lines {
        match r.tag.as_str() {
            "bench" => {
                let name = r
                    .words
                    .first()
                    .ok_or_else(|| anyhow!("`bench` line without a workload name"))?
                    .clone();
                if name == "score_groups" {
                    let set = r
                        .fields
                        .get("set")
                        .ok_or_else(|| anyhow!("`bench score_groups` line without `set=`"))?;
                    if let Some(c) = r.fields.get("checksum") {
                        f.checksums.insert(format!("score_groups {set}"), c.clone());
                    }
                    let macs = r.num("macs").ok();
                    f.score_by_groups
                        .push((set.clone(), r.num("instructions")?, macs));
                } else if r.words.iter().any(|w| w == "does-not-fit") {
                    f.instructions.insert(name, None);
                } else {
                    f.instructions
                        .insert(name.clone(), Some(r.num("instructions")?));
                    if let Some(c) = r.fields.get("checksum") {
                        f.checksums.insert(name.clone(), c.clone());
                    }
                    if let Ok(m) = r.num("macs") {
                        f.macs.insert(name, m);
                    }
                }
            }
            "stack" => f.bench_stack_bytes = r.num("high_water")?,
            _ => {}
        }
    }
    let out = b.run("score")?;
    ensure_success(&b, "score", &out)?;
    for r in records(&out) {
        if r.tag == "stack" {
            f.stack_bytes = r.num("high_water")?;
            if f.stack_bytes >= r.num("size")? {
                bail!(
                    "`score` on {} used its whole stack ({} bytes): overflow",
                    b.label(),
                    f.stack_bytes
                );
            }
        }
    }
    Ok(f)
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "does not fit".to_string(), group)
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs the benchmarks on each core (with the model `model`, see
/// [`model_source`](super::model_source)) and prints a table (or, with `json`, one JSON object
/// keyed by core name on stdout).
///
/// # Errors
/// Any core's build or run failure.
pub fn bench(cores: &[Core], json: bool, model: Option<&Path>) -> Result<()> {
    let mut all = Vec::new();
    for &core in cores {
        let t = Instant::now();
        let f = bench_core(core, model)?;
        eprintln!("{core}: measured in {:.1} s", t.elapsed().as_secs_f64());
        all.push((core, f));
    }
    // The same inputs through the same kernels must give the same outputs on every core.
    for (core, f) in &all {
        for (k, c) in &f.checksums {
            if let Some((c0, f0)) = all.iter().find(|(_, g)| g.checksums.contains_key(k)) {
                if f0.checksums.get(k) != Some(c) {
                    bail!(
                        "workload {k}: output checksum {c} on {core} differs from {} on {c0}",
                        f0.checksums[k]
                    );
                }
            }
        }
    }
    if json {
        let mut m = serde_json::Map::new();
        for (core, f) in &all {
            m.insert(core.name().to_string(), f.to_json());
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(m))?
        );
        return Ok(());
    }
    let mut keys: Vec<String> = Vec::new();
    for (_, f) in &all {
        for k in f.instructions.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let order = ["small_vae", "mlperf_ad", "encode", "decode", "kl", "score"];
    keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
    println!("Instructions per inference (QEMU -icount, exact; not cycles)");
    print!("| {:<28}", "workload");
    for (core, f) in &all {
        print!(" | {:>14}", format!("{core} {}", f.machine));
    }
    println!(" |");
    print!("|{:-<30}", "");
    for _ in &all {
        print!("|{:-<16}", "");
    }
    println!("|");
    for k in &keys {
        let macs = all.iter().find_map(|(_, f)| f.macs.get(k).copied());
        let label = match macs {
            Some(m) => format!("{k} ({} MACs)", group(m)),
            None => k.clone(),
        };
        print!("| {label:<28}");
        for (_, f) in &all {
            print!(
                " | {:>14}",
                fmt_opt(f.instructions.get(k).copied().flatten())
            );
        }
        println!(" |");
    }
    // Product-of-experts models: the score with each subset of the sensor groups.
    let mut sets: Vec<(String, Option<u64>)> = Vec::new();
    for (_, f) in &all {
        for (set, _, macs) in &f.score_by_groups {
            if !sets.iter().any(|(s, _)| s == set) {
                sets.push((set.clone(), *macs));
            }
        }
    }
    for (set, macs) in &sets {
        let label = match macs {
            Some(m) => format!("score {set} ({} MACs)", group(*m)),
            None => format!("score {set}"),
        };
        print!("| {label:<28}");
        for (_, f) in &all {
            let n = f
                .score_by_groups
                .iter()
                .find(|(s, _, _)| s == set)
                .map(|(_, n, _)| *n);
            print!(" | {:>14}", fmt_opt(n));
        }
        println!(" |");
    }
    println!(
        "Reference, Cortex-M4, same method (shared/BENCHMARKS.md): CMSIS-NN \
         arm_fully_connected_s8 -O3 small_vae 38,492, mlperf_ad 579,584; plain C int8 -O3 \
         92,342 / 1,649,350."
    );
    println!();
    println!("Memory of the `score` program (bytes; flash from the ELF, stack by painting)");
    type Row = (&'static str, fn(&BenchFigures) -> u64);
    let rows: [Row; 7] = [
        ("flash: code + constants", BenchFigures::flash_code),
        ("flash: model parameters", |f| f.weights_bytes),
        (
            "flash: program with model",
            BenchFigures::flash_with_weights,
        ),
        ("RAM: .data + .bss", |f| f.score_elf.ram_static()),
        ("RAM: stack peak", |f| f.stack_bytes),
        ("RAM: total", BenchFigures::ram),
        ("(test stream in flash)", |f| f.stream_bytes),
    ];
    for (label, get) in rows {
        print!("| {label:<28}");
        for (_, f) in &all {
            print!(" | {:>14}", group(get(f)));
        }
        println!(" |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(38_492), "38,492");
        assert_eq!(group(1_233_680), "1,233,680");
    }

    #[test]
    fn json_has_the_keys_scripts_rely_on() {
        let mut f = BenchFigures::default();
        f.instructions.insert("small_vae".into(), Some(51_234));
        f.instructions.insert("mlperf_ad".into(), None);
        f.instructions.insert("score".into(), Some(201_882));
        f.score_elf.flash = 150_000;
        f.weights_bytes = 58_728;
        f.stream_bytes = 49_152;
        f.stack_bytes = 7_344;
        f.score_elf.bss = 16;
        let j = f.to_json();
        assert_eq!(j["small_vae_instructions"], 51_234);
        assert!(j["mlperf_ad_instructions"].is_null());
        assert_eq!(j["score_instructions"], 201_882);
        assert_eq!(j["flash_code_bytes"], 150_000 - 58_728 - 49_152);
        assert_eq!(j["ram_bytes"], 7_344 + 16);
        // A single model has no group subsets: the key is absent.
        assert!(j.get("score_instructions_by_groups").is_none());
    }

    #[test]
    fn json_reports_the_score_of_each_group_subset() {
        let mut f = BenchFigures::default();
        f.instructions.insert("score".into(), Some(120_000));
        f.score_by_groups = vec![
            ("acc+gyro".into(), 120_500, Some(9_000)),
            ("gyro".into(), 80_000, Some(6_000)),
            ("acc".into(), 79_000, Some(6_000)),
        ];
        let j = f.to_json();
        assert_eq!(j["score_instructions"], 120_000);
        let by = &j["score_instructions_by_groups"];
        assert_eq!(by["acc+gyro"], 120_500);
        assert_eq!(by["acc"], 79_000);
        assert_eq!(by["gyro"], 80_000);
        assert_eq!(by.as_object().map(serde_json::Map::len), Some(3));
        // The subsets are not flattened into `<workload>_instructions` keys.
        assert!(j.get("score_groups_instructions").is_none());
    }
}
