//! Shared by the build scripts of `qemu` and `nopanic` (included with `#[path]`): which kind of
//! model the firmware compiles in.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Sets `cfg(fw_poe)` when the compiled-in model (`$TINYVAE_MODEL`, resolved as the pipeline's
/// `build.rs` does: absolute or relative to `firmware/`, default `model/default_model.rs`) is a
/// product-of-experts model (`tinyvae export` of a `--group` model declares a `PoeVae`): the
/// QEMU bench then times its encode through the model trait and its score with each group
/// subset, and the no-panic check takes its first expert's layer.
pub fn model_kind() {
    println!("cargo::rustc-check-cfg=cfg(fw_poe)");
    println!("cargo::rerun-if-env-changed=TINYVAE_MODEL");
    let firmware = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .parent()
        .expect("the crate is a directory of firmware/")
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
