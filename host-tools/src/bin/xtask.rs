//! `cargo xtask`: the orchestration entry point (test, bench, regenerate).

fn main() {
    println!("xtask (in progress)");
}
