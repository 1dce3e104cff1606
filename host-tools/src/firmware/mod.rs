//! `tinyvae firmware run|parity|bench`: build the firmware for a Cortex-M core, run it in
//! `qemu-system-arm`, decode its defmt output, and check or report what it printed.
//!
//! - [`run`] builds `firmware/qemu`'s `score` program for each core, runs it and prints its log.
//! - [`parity`] also computes every window's score on the host with the same library, model and
//!   data, and compares them bit for bit (score, reconstruction and KL terms, alarm, flagged
//!   faults); it returns `Ok(false)` and prints the first mismatch when one differs.
//! - [`bench()`] runs the `bench` program (instructions per inference under `-icount`, see
//!   `firmware/qemu/src/counter.rs`) and measures flash and RAM from the `score` ELF plus the
//!   stack high-water mark the firmware measures by stack painting; prints a table or, with
//!   `json`, one object keyed by core name.
//!
//! Each core builds in its own target directory (`firmware/target/qemu-<core>/`): the M4 and M7
//! share a target triple but not a `target-cpu`, and the defmt decoder needs the exact ELF that
//! ran. Cargo always runs inside `firmware/`, so its `.cargo/config.toml` applies.
//!
//! QEMU exit status: 0 success, 1 failure reported by the firmware (panic, HardFault, failed
//! check), 134 a crash or lockup (wrong memory map, no semihosting): anything but 0 is an error.
//!
//! The files, by concern: `cores` (the core/machine table), `cargo_build` (cargo builds of the
//! firmware workspace), `qemu` (QEMU runs and exit statuses), `records` (defmt log lines),
//! `parity` (host/chip comparison), `faults` (the test stream and its injected faults rebuilt
//! on the host), `elf` (flash and RAM from the ELF), `bench` (the benchmark table),
//! `reference` (the `firmware/host-ref` run); their public items are re-exported here.

use std::path::Path;

use anyhow::Result;

mod bench;
mod cargo_build;
mod cores;
mod elf;
mod faults;
mod parity;
mod qemu;
mod records;
mod reference;

pub use bench::{bench, bench_core, BenchFigures};
pub use cargo_build::{
    build, build_board, build_core, firmware_dir, model_source, tflite_source, Built,
};
pub use cores::{memory_of, Core};
pub use elf::{elf_sizes, ElfSizes};
pub use faults::{stream_source, write_stream_slice};
pub use parity::{
    event_code, parity, parity_report, parity_with_host_scores, CoreParity, HostPass,
};
pub use qemu::{run_elf, run_on, RunOutput};
pub use records::{Record, WINDOW_TAGS};

use qemu::ensure_success;

/// Builds and runs the scoring program on each core with the model `model` (see
/// [`model_source`]), printing its decoded log.
///
/// # Errors
/// Build or run failure, or a non-zero exit status.
pub fn run(cores: &[Core], model: Option<&Path>) -> Result<()> {
    for &core in cores {
        let b = build_core(core, &["score"], model)?;
        let out = b.run("score")?;
        for l in &out.lines {
            if cores.len() > 1 {
                println!("{core} | {l}");
            } else {
                println!("{l}");
            }
        }
        ensure_success(&b, "score", &out)?;
        eprintln!(
            "{core}: `score` on {} exited 0 ({} lines, {:.2} s)",
            b.machine,
            out.lines.len(),
            out.elapsed.as_secs_f64()
        );
    }
    Ok(())
}
