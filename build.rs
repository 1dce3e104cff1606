//! Sets `cfg(tinyvae_dsp)` when the target has the Arm DSP instructions (SXTB16, SMLAD, SSAT) in
//! Thumb state, for `src/arch.rs`. Stable rustc does not expose `target_feature = "dsp"` (Arm
//! target features are unstable), so the target name decides:
//!
//! - `thumbv7em-*` (Cortex-M4/M7): the DSP extension is part of Armv7E-M;
//! - `thumbv8m.main-*` when the build names a core that has the (optional in Armv8-M Mainline)
//!   DSP extension: `-C target-cpu=cortex-m33|cortex-m35p|cortex-m55|cortex-m85` or
//!   `-C target-feature=+dsp` in the rustflags (the firmware's `.cargo/config.toml` does). Without
//!   it the assembler rejects the DSP instructions and a core without the extension would fault,
//!   so a generic `thumbv8m.main` build uses the portable kernels;
//! - any other Thumb target where rustc does report `target_feature = "dsp"` (nightly).
//!
//! Without DSP, two more cfgs select the multi-row `asm!` kernels of `src/arch/`:
//!
//! - `cfg(tinyvae_armv6m)` for `thumbv6m-*` (Cortex-M0/M0+/M1) and `thumbv8m.base-*` (M23):
//!   Thumb-1 only, `LDM`, `LDRSB` with register offset, `MULS`, `ADD` to a high register;
//! - `cfg(tinyvae_armv7m)` for `thumbv7m-*` (Cortex-M3) and `thumbv8m.main-*` built without
//!   the DSP extension: Thumb-2 `LDRSB` with post-increment and scaled register offsets, `MLA`.
//!
//! Everything else (A/R-profile targets in Arm state, whose LDRD needs register pairs the `asm!`
//! blocks do not pick, the host) uses the portable kernels.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(tinyvae_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinyvae_armv6m)");
    println!("cargo::rustc-check-cfg=cfg(tinyvae_armv7m)");
    let target = std::env::var("TARGET").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = rustflags.split('\x1f').collect();
    let names_dsp_core = flags.iter().any(|f| {
        let f = f.trim_start_matches("-C").trim();
        matches!(
            f,
            "target-cpu=cortex-m33"
                | "target-cpu=cortex-m35p"
                | "target-cpu=cortex-m55"
                | "target-cpu=cortex-m85"
        ) || (f.starts_with("target-feature=") && f.split(',').any(|t| t.ends_with("+dsp")))
    });
    let dsp = target.starts_with("thumbv7em-")
        || (target.starts_with("thumbv8m.main-") && names_dsp_core)
        || (target.starts_with("thumb") && features.split(',').any(|f| f == "dsp"));
    if dsp {
        println!("cargo::rustc-cfg=tinyvae_dsp");
    } else if target.starts_with("thumbv6m-") || target.starts_with("thumbv8m.base-") {
        println!("cargo::rustc-cfg=tinyvae_armv6m");
    } else if target.starts_with("thumbv7m-") || target.starts_with("thumbv8m.main-") {
        println!("cargo::rustc-cfg=tinyvae_armv7m");
    }
}
