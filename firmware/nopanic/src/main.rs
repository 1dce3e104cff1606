//! A link-time proof that the score path cannot panic.
//!
//! This program calls every public scoring and detector entry point of `tinyvae` on inputs the
//! optimizer cannot see (everything goes through [`black_box`]), with an f32 model (tanh
//! encoder, 12-8-2 / 2-8-12) and the compiled-in int8 model of `tinyvae-pipeline`, and runs the
//! scoring firmware's own pipeline (`tinyvae_pipeline::run::run_stream`, the three passes of the
//! `score` program) and its long run (`tinyvae_pipeline::soak::soak`). Its panic handler calls a
//! function that exists nowhere, so the program **links only if no panic is reachable**: with the firmware's release profile (opt-level 3, fat
//! LTO, one codegen unit, `panic = "abort"`) every panic call that the optimizer cannot prove
//! dead keeps the handler, and the linker stops with
//!
//! ```text
//! rust-lld: error: undefined symbol: <a message naming this check>
//! ```
//!
//! Covered, each with every score kind (`Elbo`, `ElboSampled`, `Iwae`, `ReconProb`, sample
//! counts opaque), every configuration value opaque (stride, alarm, adaptation, raw scale,
//! saturation limits, seed):
//! - `tinyvae::score` over caller slices of any length, `Workspace::score`/`decode_mu`;
//! - the typed [`tinyvae::Detector`] and the run-time [`tinyvae::SliceDetector`] (with a
//!   [`tinyvae::BorrowedWorkspace`] over slices of any length): `push`, `push_raw`,
//!   `mark_gap`, `attribute`/`attribute_into`, `restart_adaptation`, and every accessor;
//! - the int8 layers: `QDense::forward_with` with each `QKernel`, `QDenseView::new`/`forward_with`
//!   and `DenseView::new`/`forward` over slices of any length;
//! - the building blocks a host calls directly: `Alarm`, `P2Quantile`, `Welford`,
//!   `Normalizer::from_std`, `RawScale`, `SaturationLimits`.
//!
//! With a product-of-experts model compiled in (`TINYVAE_MODEL=model/poe_model.rs`, detected by
//! `build.rs` as `cfg(fw_poe)`), the same calls go through the groups' experts, the product and
//! the per-subset likelihood; `cargo xtask test` links both.
//!
//! Not covered: the logging of the QEMU programs (defmt, semihosting), which is not part of the
//! library. Built by `cargo xtask test` (firmware part) for the M0 (`thumbv6m-none-eabi`) and the
//! M4 (`thumbv7em-none-eabihf`); the program is linked, never run.
#![no_std]
#![no_main]

use core::hint::black_box;

use rand_xorshift::XorShiftRng;
use tinyvae::{Activation, ChannelMask};
use tinyvae::{
    AdaptConfig, Alarm, AlarmConfig, BorrowedWorkspace, Buffers, Chain, Dense, DenseView, Detector,
    DetectorConfig, NormalSampler, Normalizer, P2Quantile, QDense, QDenseView, QKernel, RawScale,
    SaturationLimits, ScoreKind, SliceDetector, Vae, VaeDetector, VaeModel, Welford, Workspace,
};
use tinyvae_pipeline::model::{self, Model, MODEL};

#[cfg(not(nopanic_locate))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "Rust" {
        #[link_name = "\n\nerror(tinyvae no-panic check): a panic is reachable from a scoring or detector entry point; see firmware/nopanic/src/main.rs\n\n"]
        fn reachable_panic() -> !;
    }
    // SAFETY: never runs; the symbol does not exist, so a reachable call fails the link.
    unsafe { reachable_panic() }
}

/// With `--cfg nopanic_locate` the program links with a plain handler, so the calls into
/// `core::panicking` can be found in the disassembly (see `firmware/nopanic/locate.sh`).
#[cfg(nopanic_locate)]
#[panic_handler]
#[inline(never)]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        black_box(());
    }
}

// ---- the f32 model: 4 samples x 3 channels, 12-8-2 / 2-8-12 ----

const W: usize = 4;
const C: usize = 3;
const X: usize = W * C;
const H: usize = 8;
const Z: usize = 2;

static ENC_W: [[f32; X]; H] = [[0.05; X]; H];
static ENC_B: [f32; H] = [0.0; H];
static HEAD_W: [[f32; H]; Z] = [[0.1; H]; Z];
static HEAD_B: [f32; Z] = [0.0; Z];
static DEC0_W: [[f32; Z]; H] = [[0.2; Z]; H];
static DEC0_B: [f32; H] = [0.0; H];
static DEC1_W: [[f32; H]; X] = [[0.1; H]; X];
static DEC1_B: [f32; X] = [0.0; X];
static INV_VAR: [f32; X] = [1.0; X];

type F32Vae =
    Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Chain<Dense<Z, H>, Dense<H, X>, H>, X, H, Z>;

static F32_MODEL: F32Vae = Vae::new(
    Dense::new(&ENC_W, &ENC_B, Activation::Tanh),
    Dense::new(&HEAD_W, &HEAD_B, Activation::Identity),
    Dense::new(&HEAD_W, &HEAD_B, Activation::Identity),
    Chain::new(
        Dense::new(&DEC0_W, &DEC0_B, Activation::Relu),
        Dense::new(&DEC1_W, &DEC1_B, Activation::Identity),
    ),
    &INV_VAR,
    -11.0,
);

/// Makes the optimizer assume `v` is used (so nothing computing it is removed).
fn keep<T>(v: T) {
    black_box(v);
}

/// A value the optimizer knows nothing about.
fn opaque<T>(v: T) -> T {
    black_box(v)
}

fn kind() -> ScoreKind {
    opaque(ScoreKind::Iwae { samples: 8 })
}

fn config<const CH: usize>() -> DetectorConfig<CH> {
    let alarm = opaque(
        AlarmConfig::threshold(10.0)
            .with_ema(0.5)
            .with_hysteresis(5.0)
            .with_debounce(2, 4, 1),
    );
    let norm = Normalizer::from_std(opaque([0.0; CH]), opaque([1.0; CH]))
        .unwrap_or(Normalizer::identity());
    opaque(
        DetectorConfig::new(kind(), opaque(2), norm, alarm)
            .with_seed(opaque(7))
            .with_raw(opaque(
                RawScale::new([0.01; CH], [0.0; CH]).with_saturation([-4000; CH], [4000; CH]),
            ))
            .with_limits(opaque(SaturationLimits::new([-50.0; CH], [50.0; CH])))
            .with_alarm_on_flagged(opaque(false))
            .with_adaptation(opaque(AdaptConfig::new(3, 5, 0.1).with_clear_fpr(0.2))),
    )
}

/// One opaque operation on a detector: push, push_raw, mark_gap, attribution, restart.
macro_rules! drive {
    ($det:expr, $model:expr, $ch:expr, $attribute:expr) => {{
        for _ in 0..opaque(1000u32) {
            let report = match opaque(0u8) {
                0 => $det.push($model, &opaque([0.5f32; $ch])).ok().flatten(),
                1 => $det.push_raw($model, &opaque([3i16; $ch])).ok().flatten(),
                2 => $det.mark_gap(),
                3 => {
                    keep($attribute);
                    None
                }
                _ => {
                    $det.restart_adaptation();
                    None
                }
            };
            if let Some(r) = report {
                keep(&r);
                for f in r.faults.iter() {
                    keep(f);
                }
            }
        }
        keep((
            $det.config(),
            $det.normalizer(),
            $det.alarm(),
            $det.phase(),
            $det.samples(),
            $det.windows(),
            $det.fault_counts(),
            $det.running_stats(),
            $det.window_len(),
            $det.input(),
        ));
    }};
}

/// `tinyvae::score` over caller slices of any length (shape errors are returned, not panics).
fn free_score<V: VaeModel>(model: &V, scratch: &mut V::Scratch) {
    let mut x = [0.0f32; 512];
    let mut mu = [0.0f32; 64];
    let mut logvar = [0.0f32; 64];
    let mut z = [0.0f32; 64];
    let mut eps = [0.0f32; 64];
    let mut mean = [0.0f32; 512];
    let buf = Buffers {
        mu: opaque(&mut mu[..]),
        logvar: opaque(&mut logvar[..]),
        z: opaque(&mut z[..]),
        eps: opaque(&mut eps[..]),
        mean: opaque(&mut mean[..]),
    };
    let mut sampler = NormalSampler::new();
    let mut rng: XorShiftRng = tinyvae::default_rng(opaque(1));
    let x = opaque(&mut x[..]);
    keep(tinyvae::score(
        model,
        x,
        kind(),
        buf,
        scratch,
        &mut sampler,
        &mut rng,
    ));
}

#[inline(never)]
fn f32_entry_points() {
    let model = opaque(&F32_MODEL);
    let mut scratch = F32Vae::SCRATCH;
    free_score(model, &mut scratch);

    let mut ws: Workspace<_, X, Z> = Workspace::new(F32Vae::SCRATCH);
    let mut rng = tinyvae::window_rng(opaque(0), opaque(5));
    keep(ws.score(model, &opaque([0.1; X]), kind(), &mut rng));
    keep(ws.decode_mu(model).map(|m| m.len()));

    let mut det: VaeDetector<F32Vae, C, W, X, Z> =
        Detector::new(config(), Workspace::new(F32Vae::SCRATCH));
    drive!(det, model, C, det.attribute(model));

    let mut ring = [[0.0f32; C]; 16];
    let mut input = [0.0f32; 64];
    let (mut mu, mut lv, mut z, mut eps, mut mean) =
        ([0.0; 8], [0.0; 8], [0.0; 8], [0.0; 8], [0.0; 64]);
    let mut scratch = F32Vae::SCRATCH;
    let ws = BorrowedWorkspace::new(
        Buffers {
            mu: opaque(&mut mu[..]),
            logvar: opaque(&mut lv[..]),
            z: opaque(&mut z[..]),
            eps: opaque(&mut eps[..]),
            mean: opaque(&mut mean[..]),
        },
        &mut scratch,
    );
    let mut steps = [0.0f32; 16];
    let steps = opaque(&mut steps[..]);
    if let Ok(mut det) = SliceDetector::<F32Vae, _, C>::with_buffers(
        config(),
        ws,
        opaque(&mut ring[..]),
        opaque(&mut input[..]),
    ) {
        drive!(det, model, C, det.attribute_into(model, steps));
    }
}

#[inline(never)]
fn int8_entry_points() {
    let model = opaque(&MODEL);
    let mut scratch = Model::SCRATCH;
    free_score(model, &mut scratch);

    let mut det: tinyvae_pipeline::run::ModelDetector =
        Detector::new(config(), Workspace::new(Model::SCRATCH));
    drive!(det, model, model::CHANNELS, det.attribute(model));
}

#[inline(never)]
fn int8_slice_detector() {
    let model = opaque(&MODEL);
    let mut ring = [[0.0f32; model::CHANNELS]; model::WINDOW];
    let mut input = [0.0f32; model::INPUT];
    let mut mu = [0.0f32; model::LATENT];
    let mut lv = [0.0f32; model::LATENT];
    let mut z = [0.0f32; model::LATENT];
    let mut eps = [0.0f32; model::LATENT];
    let mut mean = [0.0f32; model::INPUT];
    let mut scratch = Model::SCRATCH;
    let ws = BorrowedWorkspace::new(
        Buffers {
            mu: opaque(&mut mu[..]),
            logvar: opaque(&mut lv[..]),
            z: opaque(&mut z[..]),
            eps: opaque(&mut eps[..]),
            mean: opaque(&mut mean[..]),
        },
        &mut scratch,
    );
    let mut steps = [0.0f32; model::WINDOW];
    let steps = opaque(&mut steps[..]);
    if let Ok(mut det) = SliceDetector::<Model, _, { model::CHANNELS }>::with_buffers(
        config(),
        ws,
        opaque(&mut ring[..]),
        opaque(&mut input[..]),
    ) {
        drive!(
            det,
            model,
            model::CHANNELS,
            det.attribute_into(model, steps)
        );
    }
}

/// The compiled-in model's first int8 layer: the encoder's (the first expert's for a
/// product-of-experts model, `cfg(fw_poe)`, set by `build.rs`).
#[cfg(not(fw_poe))]
fn first_layer() -> &'static QDense<{ model::INPUT }, { model::HIDDEN }> {
    &MODEL.encoder.second
}

#[cfg(fw_poe)]
fn first_layer() -> &'static QDense<{ model::GROUP_INPUT }, { model::HIDDEN }> {
    &MODEL.experts[0].body.second
}

/// The typed forward pass and the check of a layer.
fn typed_forward<const I: usize, const O: usize>(layer: &QDense<I, O>) {
    let x = opaque([3i8; I]);
    let mut y = [0i8; O];
    layer.forward_with(opaque(QKernel::Dsp), &x, &mut y);
    keep(&y);
    keep(layer.validate());
}

#[inline(never)]
fn layers() {
    let layer = opaque(first_layer());
    typed_forward(layer);

    let v = layer.view();
    let view = QDenseView::new(
        opaque(v.in_dim()),
        opaque(v.out_dim()),
        opaque(v.weights()),
        opaque(v.bias()),
        opaque(v.requant()),
        opaque(v.output_zero_point()),
        opaque(-128),
        opaque(127),
        opaque(v.lut()),
    );
    let xs = [0i8; 512];
    let mut ys = [0i8; 128];
    if let Ok(view) = view {
        keep(view.forward_with(
            opaque(QKernel::Portable),
            opaque(&xs[..]),
            opaque(&mut ys[..]),
        ));
        keep(view.forward(opaque(&xs[..]), opaque(&mut ys[..])));
    }

    let d = F32_MODEL.encoder.view();
    let xf = [0.0f32; 64];
    let mut yf = [0.0f32; 64];
    if let Ok(view) = DenseView::new(
        opaque(d.in_dim()),
        opaque(d.out_dim()),
        opaque(d.weights()),
        opaque(d.bias()),
        opaque(Activation::Softplus),
    ) {
        keep(view.forward(opaque(&xf[..]), opaque(&mut yf[..])));
    }
}

#[inline(never)]
fn building_blocks() {
    let mut alarm = Alarm::new(opaque(AlarmConfig::threshold(1.0).with_debounce(3, 5, 2)));
    let mut q = P2Quantile::new(opaque(0.95));
    let mut w = Welford::<4>::new();
    for i in 0..opaque(100u64) {
        let s = opaque(1.5f32);
        keep(alarm.update(i, s));
        keep(q.push(s));
        w.push(&opaque([s; 4]), opaque(ChannelMask::EMPTY));
    }
    alarm.set_thresholds(opaque(2.0), opaque(1.0));
    keep((alarm.level(), q.estimate(), w.variance()));
    keep(w.normalizer(&Normalizer::identity()));
    let raw = opaque(RawScale::<4>::unit());
    keep(raw.convert(&opaque([1i16; 4])));
    keep(opaque(SaturationLimits::<4>::none()).check(&opaque([1.0; 4])));
}

#[inline(never)]
fn scoring_firmware() {
    keep(tinyvae_pipeline::run::run_stream(|pass, report| {
        keep((pass, report));
    }));
    keep(tinyvae_pipeline::soak::soak(opaque(100)));
}

#[cortex_m_rt::entry]
fn main() -> ! {
    loop {
        f32_entry_points();
        int8_entry_points();
        int8_slice_detector();
        layers();
        building_blocks();
        scoring_firmware();
    }
}
