//! Link setup of the no-panic check: a memory map large enough for every core (the program is
//! only linked, never run, so the MPS2 boards' 4M/4M map is used for all targets) and the
//! `cortex-m-rt` link script. Emitted here so the check links whatever directory cargo runs from.
//! Also sets `cfg(fw_poe)` when the compiled-in model is a product-of-experts model, by the rule
//! of `firmware/qemu/build.rs`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(nopanic_locate)");
    model_kind();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(
        out.join("memory.x"),
        "MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 4096K\n  RAM : ORIGIN = 0x20000000, LENGTH = 4096K\n}\n",
    )
    .expect("write memory.x");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-link-arg-bins=--nmagic");
    println!("cargo::rustc-link-arg-bins=-Tlink.x");
}

/// `cfg(fw_poe)` when `$TINYVAE_MODEL` (absolute or relative to `firmware/`, default
/// `model/default_model.rs`, as the pipeline's `build.rs` resolves it) declares a `PoeVae`.
fn model_kind() {
    println!("cargo::rustc-check-cfg=cfg(fw_poe)");
    println!("cargo::rerun-if-env-changed=TINYVAE_MODEL");
    let firmware = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .parent()
        .expect("nopanic/ is inside firmware/")
        .to_path_buf();
    let path = match env::var_os("TINYVAE_MODEL").filter(|v| !v.is_empty()) {
        Some(p) => firmware.join(p),
        None => firmware.join("model/default_model.rs"),
    };
    println!("cargo::rerun-if-changed={}", path.display());
    // A missing file is reported by the pipeline's build script.
    let text = fs::read_to_string(&path).unwrap_or_default();
    if text
        .lines()
        .any(|l| l.starts_with("pub type Model = PoeVae<"))
    {
        println!("cargo::rustc-cfg=fw_poe");
    }
}
