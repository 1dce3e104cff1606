//! Instructions per inference under QEMU `-icount` (see `tinyvae_qemu::counter`), per workload:
//!
//! - `small_vae`: the small sensor VAE of `shared/BENCHMARKS.md`, int8, encoder 96-64-16 then
//!   decoder 8-64-96 (13,824 MACs; CMSIS-NN -O3 on the M4: 38,492 instructions);
//! - `mlperf_ad`: the MLPerf Tiny anomaly-detection autoencoder shapes
//!   640-128-128-128-128-8-128-128-128-128-640 (264,192 MACs; CMSIS-NN: 579,584), random int8
//!   weights; reported as not fitting where flash is too small (the micro:bit);
//!
//! - the compiled-in model (`tinyvae_pipeline::model::MODEL`) on the first window of the
//!   compiled-in stream: `encode` (encoder and both heads), `decode` (at `z = mu`), `kl`
//!   (`KL(q || N(0, I))`), `score` (the whole deterministic ELBO score: input check, encode,
//!   clamp, KL, decode, log-likelihood) and `score_iwae8` (the sampled score with 8 draws).
//!   For a product-of-experts model (`cfg(fw_poe)`, set by `build.rs` from the model source)
//!   `encode` fuses every group's expert, and the whole ELBO score is also timed with each
//!   non-empty subset `S` of the groups (the library's `score_groups`), one line each:
//!   `bench score_groups set=<names joined by +> instructions=<n> macs=<n> checksum=<hex>`,
//!   with `macs = |S| * expert MACs + decoder MACs`.
//!
//! Before timing anything it checks the int8 kernels against each other on random layers
//! (`tinyvae_qemu::kernels`: every kernel, `asm!` ones included, bit for bit against the
//! portable reference): `kernels cases=<n> outputs=<n> mismatches=0`, or an error and a failed
//! run.
//!
//! The real MLPerf Tiny AD model imported from TFLite is measured by its own program (`tflite`),
//! so its presence does not change how the kernels of this one are compiled.
//!
//! Each line: `bench <workload> instructions=<n> macs=<n> checksum=<hex>`; the checksum of the
//! outputs must be the same on every core (same bits everywhere).
#![no_std]
#![no_main]

#[cfg(fw_poe)]
use tinyvae::GroupSet;
use tinyvae::{Layer, ScoreKind, VaeModel, Workspace};
use tinyvae_fw as _;
use tinyvae_pipeline::model::{self, Model, INPUT, LATENT, MODEL, SCORE};
use tinyvae_pipeline::run::{detector, SAMPLED, SEED};
use tinyvae_qemu::counter::Counter;
use tinyvae_qemu::{checksum, checksum_f32, input};

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

#[cfg(not(fw_poe))]
#[inline(never)]
fn model_encode(x: &[f32; INPUT], mu: &mut [f32; LATENT], lv: &mut [f32; LATENT], ws: &mut Ws) {
    MODEL.encode_array(x, mu, lv, ws.scratch_mut());
}

#[cfg(not(fw_poe))]
#[inline(never)]
fn model_decode(z: &[f32; LATENT], mean: &mut [f32; INPUT], ws: &mut Ws) {
    MODEL.decode_array(z, mean, ws.scratch_mut());
}

/// Multiply-accumulates of the whole score: encoder, heads and decoder.
#[cfg(not(fw_poe))]
const MODEL_MACS: usize = Model::MACS;

/// Encode with every group: each expert, then the product of experts.
#[cfg(fw_poe)]
#[inline(never)]
fn model_encode(x: &[f32; INPUT], mu: &mut [f32; LATENT], lv: &mut [f32; LATENT], ws: &mut Ws) {
    let _ = MODEL.encode(x, mu, lv, ws.scratch_mut());
}

#[cfg(fw_poe)]
#[inline(never)]
fn model_decode(z: &[f32; LATENT], mean: &mut [f32; INPUT], ws: &mut Ws) {
    let _ = MODEL.decode(z, mean, ws.scratch_mut());
}

/// Multiply-accumulates of a score with `groups` groups present: that many experts (all of
/// the exported type `Expert`) and the shared decoder, or (per-group decoders,
/// `DECODER_COUNT > 1`) the present groups' decoders.
#[cfg(fw_poe)]
const fn poe_macs(groups: usize) -> usize {
    let decoders = if model::DECODER_COUNT == 1 { 1 } else { groups };
    groups * model::Expert::MACS + decoders * model::Decoder::MACS
}

/// Multiply-accumulates of the whole score with every group.
#[cfg(fw_poe)]
const MODEL_MACS: usize = poe_macs(model::GROUP_COUNT);

#[inline(never)]
fn model_kl(mu: &[f32; LATENT], lv: &[f32; LATENT]) -> f32 {
    tinyvae::kl_std_normal(mu, lv).unwrap_or(f32::NAN)
}

#[inline(never)]
fn score_once(ws: &mut Ws, x: &[f32; INPUT], kind: ScoreKind, window: u64) -> u32 {
    let mut rng = tinyvae::window_rng(SEED, window);
    ws.score(&MODEL, x, kind, &mut rng)
        .map_or(0, |s| s.score.to_bits())
}

#[cfg(fw_poe)]
#[inline(never)]
fn score_groups_once(ws: &mut Ws, x: &[f32; INPUT], set: GroupSet) -> u32 {
    let mut rng = tinyvae::window_rng(SEED, 0);
    ws.score_groups(&MODEL, x, set, ScoreKind::Elbo, &mut rng)
        .map_or(0, |s| s.score.to_bits())
}

/// The name of a subset: its groups' names in group order, joined by `+`, written into `buf`.
#[cfg(fw_poe)]
fn subset_name(set: GroupSet, buf: &mut [u8; 64]) -> &str {
    let mut n = 0;
    for (g, name) in model::GROUP_NAMES.iter().enumerate() {
        if set.0 & (1 << g) == 0 {
            continue;
        }
        let sep: &[u8] = if n == 0 { b"" } else { b"+" };
        for &b in sep.iter().chain(name.as_bytes()) {
            if let Some(d) = buf.get_mut(n) {
                *d = b;
                n += 1;
            }
        }
    }
    buf.get(..n)
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("?")
}

/// The whole ELBO score with each non-empty subset of the groups, the full set first.
#[cfg(fw_poe)]
#[inline(never)]
fn bench_subsets(c: &Counter, x: &[f32; INPUT]) {
    let mut ws: Ws = Workspace::new(Model::SCRATCH);
    let all = (1u16 << model::GROUP_COUNT) - 1;
    for mask in (1..=all).rev() {
        let set = GroupSet(mask as u8);
        let (n, r) = c.instructions(|| score_groups_once(&mut ws, x, set));
        let mut buf = [0u8; 64];
        defmt::info!(
            "bench score_groups set={=str} instructions={=u32} macs={=u32} checksum={=u32:08x}",
            subset_name(set, &mut buf),
            n,
            poe_macs(mask.count_ones() as usize) as u32,
            r
        );
    }
}

type Ws = Workspace<<Model as VaeModel>::Scratch, INPUT, LATENT>;

/// The first window of the compiled-in stream, standardized by the detector. A function of its
/// own, so that the detector's stack frame is gone before the model is timed: on the micro:bit's
/// 16 KB of RAM the detector and the score's buffers do not fit on the stack together.
#[inline(never)]
fn first_window() -> [f32; INPUT] {
    let mut det = match detector(SCORE) {
        Ok(d) => d,
        Err(e) => {
            defmt::error!("bad exported constants: {}", e);
            tinyvae_fw::exit::failure()
        }
    };
    for row in tinyvae_pipeline::stream::BITS.iter().take(model::WINDOW) {
        let _ = det.push(&MODEL, &row.map(f32::from_bits));
    }
    *det.last_input()
}

fn bench_model(c: &Counter) {
    let x = first_window();
    bench_parts(c, &x);
    bench_scores(c, &x);
    #[cfg(fw_poe)]
    bench_subsets(c, &x);
}

/// Encode, decode and KL timed apart. Each group of timings has its own frame (and its own
/// workspace), so the stack peak is the larger of the two, not their sum.
#[inline(never)]
fn bench_parts(c: &Counter, x: &[f32; INPUT]) {
    let mut ws: Ws = Workspace::new(Model::SCRATCH);
    let mut mu = [0.0f32; LATENT];
    let mut lv = [0.0f32; LATENT];
    let mut mean = [0.0f32; INPUT];

    let (n, ()) = c.instructions(|| model_encode(x, &mut mu, &mut lv, &mut ws));
    defmt::info!(
        "bench encode instructions={=u32} checksum={=u32:08x}",
        n,
        checksum_f32(&mu) ^ checksum_f32(&lv)
    );
    let (n, ()) = c.instructions(|| model_decode(&mu, &mut mean, &mut ws));
    defmt::info!(
        "bench decode instructions={=u32} checksum={=u32:08x}",
        n,
        checksum_f32(&mean)
    );
    let (n, kl) = c.instructions(|| model_kl(&mu, &lv));
    defmt::info!(
        "bench kl instructions={=u32} checksum={=u32:08x}",
        n,
        kl.to_bits()
    );
}

/// The whole scores (deterministic ELBO, then IWAE-8), as the detector runs them.
#[inline(never)]
fn bench_scores(c: &Counter, x: &[f32; INPUT]) {
    let mut ws: Ws = Workspace::new(Model::SCRATCH);
    let (n, r) = c.instructions(|| score_once(&mut ws, x, ScoreKind::Elbo, 0));
    defmt::info!(
        "bench score instructions={=u32} macs={=u32} checksum={=u32:08x}",
        n,
        MODEL_MACS as u32,
        r
    );
    let (n, r) = c.instructions(|| score_once(&mut ws, x, SAMPLED, 0));
    defmt::info!(
        "bench score_iwae8 instructions={=u32} checksum={=u32:08x}",
        n,
        r
    );
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let k = tinyvae_qemu::kernels::check(400, 0x2545_F491);
    defmt::info!(
        "kernels cases={=u32} outputs={=u32} mismatches={=u32}",
        k.cases,
        k.outputs,
        k.mismatches
    );
    if let Some((case, kernel, o, i, n)) = k.first {
        defmt::error!(
            "kernel {} differs from the reference: case {=u32}, output {=usize} of a {=usize}x{=usize} layer",
            kernel,
            case,
            o,
            i,
            n
        );
        tinyvae_fw::exit::failure()
    }

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

    bench_model(&c);

    defmt::info!(
        "stack high_water={=u32} size={=u32}",
        tinyvae_fw::stack::high_water(),
        tinyvae_fw::stack::size()
    );
    tinyvae_fw::exit::success()
}
