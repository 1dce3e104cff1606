//! The real MLPerf Tiny anomaly-detection autoencoder (`models/mlperf_tiny_ad01/ad01_int8.tflite`,
//! 640-128-128-128-128-8-128-128-128-128-640, int8) imported by `tinyvae import --tflite` and
//! compiled in from `$TINYVAE_MLPERF_RS` (see `build.rs`): instructions for one inference
//! (`bench mlperf_ad_tflite ...`, QEMU `-icount` method of `tinyvae_qemu::counter`), and the
//! outputs for TFLite's reference cases compared bit for bit with TFLite's reference kernels
//! (`tflite case=<k> differing_outputs=<n>`; any difference fails the run). Without the source,
//! or on a core whose flash is too small, it says so and exits successfully.
#![no_std]
#![no_main]

use tinyvae_fw as _;

#[cfg(fw_tflite)]
mod net {
    include!(concat!(env!("OUT_DIR"), "/bench_tflite.rs"));
}

#[cfg(fw_tflite)]
#[inline(never)]
fn forward(
    x: &[i8; net::TFLITE_IN],
    y: &mut [i8; net::TFLITE_OUT],
    s: &mut <net::TfliteNet as tinyvae::Layer<{ net::TFLITE_IN }, { net::TFLITE_OUT }>>::Scratch,
) {
    use tinyvae::Layer;
    net::TFLITE_NET.forward(x, y, s);
}

#[cfg(fw_tflite)]
fn run() -> bool {
    use net::{TfliteNet, TFLITE_CASE_IN, TFLITE_CASE_OUT, TFLITE_IN, TFLITE_OUT};
    use tinyvae::Layer;
    let c = tinyvae_qemu::counter::Counter::start();
    let mut s = <TfliteNet as Layer<TFLITE_IN, TFLITE_OUT>>::SCRATCH;
    let mut y = [0i8; TFLITE_OUT];
    let x = TFLITE_CASE_IN
        .first()
        .copied()
        .unwrap_or_else(|| tinyvae_qemu::input(0x9E37_79B9));
    let (n, ()) = c.instructions(|| forward(&x, &mut y, &mut s));
    defmt::info!(
        "bench mlperf_ad_tflite instructions={=u32} macs={=u32} checksum={=u32:08x}",
        n,
        <TfliteNet as Layer<TFLITE_IN, TFLITE_OUT>>::MACS as u32,
        tinyvae_qemu::checksum(&y)
    );
    let mut ok = true;
    for (k, (x, want)) in TFLITE_CASE_IN.iter().zip(&TFLITE_CASE_OUT).enumerate() {
        forward(x, &mut y, &mut s);
        let diff = y.iter().zip(want).filter(|(a, b)| a != b).count() as u32;
        ok &= diff == 0;
        defmt::info!("tflite case={=usize} differing_outputs={=u32}", k, diff);
    }
    if !ok {
        defmt::error!("the imported model differs from TFLite's reference kernels");
    }
    defmt::info!(
        "stack high_water={=u32} size={=u32}",
        tinyvae_fw::stack::high_water(),
        tinyvae_fw::stack::size()
    );
    ok
}

#[cfg(not(fw_tflite))]
fn run() -> bool {
    defmt::info!("bench mlperf_ad_tflite does-not-fit (no source given, or flash too small)");
    true
}

#[cortex_m_rt::entry]
fn main() -> ! {
    if run() {
        tinyvae_fw::exit::success()
    }
    tinyvae_fw::exit::failure()
}
