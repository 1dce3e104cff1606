//! Sets `cfg(tinyvae_dsp)` when the target has the Arm DSP instructions (SXTB16, SMLAD, SSAT) in
//! Thumb state, for `src/arch.rs`. Stable rustc does not expose `target_feature = "dsp"` (Arm
//! target features are unstable), so the target name decides:
//!
//! - `thumbv7em-*` (Cortex-M4/M7): the DSP extension is part of Armv7E-M;
//! - `thumbv8m.main-*eabihf` (Cortex-M33/M35P/M55/M85 with an FPU): DSP is optional in Armv8-M
//!   Mainline but present in these cores as shipped; a core without it must not use this build
//!   (its first dense layer would fault);
//! - any other Thumb target where rustc does report `target_feature = "dsp"` (nightly).
//!
//! Everything else (Armv6-M, Armv7-M, A/R-profile targets in Arm state, whose LDRD needs
//! register pairs the `asm!` blocks do not pick, the host) uses the portable kernels.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(tinyvae_dsp)");
    let target = std::env::var("TARGET").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let dsp = target.starts_with("thumbv7em-")
        || (target.starts_with("thumbv8m.main-") && target.ends_with("eabihf"))
        || (target.starts_with("thumb") && features.split(',').any(|f| f == "dsp"));
    if dsp {
        println!("cargo::rustc-cfg=tinyvae_dsp");
    }
}
