//! Link setup of the no-panic check: a memory map large enough for every core (the program is
//! only linked, never run, so the MPS2 boards' 4M/4M map is used for all targets) and the
//! `cortex-m-rt` link script. Emitted here so the check links whatever directory cargo runs from.
//! Also sets `cfg(fw_poe)` when the compiled-in model is a product-of-experts model, by the rule
//! of `firmware/model_kind.rs`, shared with `firmware/qemu/build.rs`.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "../model_kind.rs"]
mod model_kind;
use model_kind::model_kind;

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
