//! Instructions per inference under QEMU `-icount` (see `tinyvae_qemu::counter`), per workload:
//!
//! - `small_vae`: the small sensor VAE of `shared/BENCHMARKS.md`, int8, encoder 96-64-16 then
//!   decoder 8-64-96 (13,824 MACs; CMSIS-NN -O3 on the M4: 38,492 instructions);
//! - `mlperf_ad`: the MLPerf Tiny anomaly-detection autoencoder shapes
//!   640-128-128-128-128-8-128-128-128-128-640 (264,192 MACs; CMSIS-NN: 579,584), random int8
//!   weights; reported as not fitting where flash is too small (the micro:bit);
//!
//! Each line: `bench <workload> instructions=<n> macs=<n> checksum=<hex>`; the checksum of the
//! outputs must be the same on every core (same bits everywhere).
#![no_std]
#![no_main]

use tinyvae::Layer;
use tinyvae_fw as _;
use tinyvae_qemu::counter::Counter;

mod nets {
    include!(concat!(env!("OUT_DIR"), "/bench_small.rs"));
    #[cfg(fw_big_flash)]
    include!(concat!(env!("OUT_DIR"), "/bench_mlperf.rs"));
}

use nets::*;

type EncScratch = <SmallEncoder as Layer<96, 16>>::Scratch;
type DecScratch = <SmallDecoder as Layer<8, 96>>::Scratch;

/// One inference of the small VAE: encode, take the 8 means, decode.
#[inline(never)]
fn small_vae(x: &[i8; 96], y: &mut [i8; 96], es: &mut EncScratch, ds: &mut DecScratch) {
    let mut h = [0i8; 16];
    SMALL_ENCODER.forward(x, &mut h, es);
    let mut z = [0i8; 8];
    z.copy_from_slice(&h[..8]);
    SMALL_DECODER.forward(&z, y, ds);
}

#[cfg(fw_big_flash)]
#[inline(never)]
fn mlperf_ad(x: &[i8; 640], y: &mut [i8; 640], s: &mut <MlperfAd as Layer<640, 640>>::Scratch) {
    MLPERF_AD.forward(x, y, s);
}

/// FNV-1a over the output bytes.
fn checksum(y: &[i8]) -> u32 {
    y.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b as u8)).wrapping_mul(0x0100_0193)
    })
}

/// Deterministic pseudo-random int8 input.
fn input<const N: usize>(seed: u32) -> [i8; N] {
    let mut s = seed;
    core::array::from_fn(|_| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 24) as i8
    })
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let c = Counter::start();
    defmt::info!("counter overhead={=u32}", c.overhead());

    {
        let x: [i8; 96] = input(0x1234_5678);
        let mut y = [0i8; 96];
        let mut es = <SmallEncoder as Layer<96, 16>>::SCRATCH;
        let mut ds = <SmallDecoder as Layer<8, 96>>::SCRATCH;
        let (n, ()) = c.instructions(|| small_vae(&x, &mut y, &mut es, &mut ds));
        let macs =
            (<SmallEncoder as Layer<96, 16>>::MACS + <SmallDecoder as Layer<8, 96>>::MACS) as u32;
        defmt::info!(
            "bench small_vae instructions={=u32} macs={=u32} checksum={=u32:08x} weights={=u32}",
            n,
            macs,
            checksum(&y),
            SMALL_VAE_BYTES as u32
        );
    }

    #[cfg(fw_big_flash)]
    {
        let x: [i8; 640] = input(0x9E37_79B9);
        let mut y = [0i8; 640];
        let mut s = <MlperfAd as Layer<640, 640>>::SCRATCH;
        let (n, ()) = c.instructions(|| mlperf_ad(&x, &mut y, &mut s));
        defmt::info!(
            "bench mlperf_ad instructions={=u32} macs={=u32} checksum={=u32:08x} weights={=u32}",
            n,
            <MlperfAd as Layer<640, 640>>::MACS as u32,
            checksum(&y),
            MLPERF_AD_BYTES as u32
        );
    }
    #[cfg(not(fw_big_flash))]
    defmt::info!(
        "bench mlperf_ad does-not-fit weights={=u32}",
        MLPERF_AD_BYTES as u32
    );

    defmt::info!(
        "stack high_water={=u32} size={=u32}",
        tinyvae_fw::stack::high_water(),
        tinyvae_fw::stack::size()
    );
    tinyvae_fw::exit::success()
}
