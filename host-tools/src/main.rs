//! `tinyvae`: the host tool (train, quantize, evaluate, export, firmware runs).

fn main() {
    println!("tinyvae host tool (in progress)");
}
