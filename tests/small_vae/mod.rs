//! Shared by the long-run and fuzz-regression tests (`counters.rs`, `soak.rs`,
//! `fuzz_regressions.rs`): a small typed VAE with fixed random weights (C = 3 channels,
//! W = 8 steps, X = 24, H = 6, Z = 2) and a deterministic generator.
#![allow(dead_code)]

use tinyvae::{decoder_noise, Activation, Chain, Dense, Vae, VaeDetector};

pub const C: usize = 3;
pub const W: usize = 8;
pub const X: usize = W * C;
pub const H: usize = 6;
pub const Z: usize = 2;

pub type Dec = Chain<Dense<Z, H>, Dense<H, X>, H>;
pub type Model = Vae<Dense<X, H>, Dense<H, Z>, Dense<H, Z>, Dec, X, H, Z>;
pub type Det = VaeDetector<Model, C, W, X, Z>;

/// splitmix64 with a Box–Muller normal.
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

pub fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

pub fn dense<const I: usize, const O: usize>(
    rng: &mut TestRng,
    bias: f32,
    act: Activation,
) -> Dense<I, O> {
    let mut w = [[0.0f32; I]; O];
    for v in w.iter_mut().flatten() {
        *v = (rng.normal() / (I as f64).sqrt()) as f32;
    }
    let mut b = [0.0f32; O];
    for v in b.iter_mut() {
        *v = bias + (0.1 * rng.normal()) as f32;
    }
    Dense::new(leak(w), leak(b), act)
}

pub fn model() -> Model {
    let mut rng = TestRng(11);
    let enc = dense::<X, H>(&mut rng, 0.0, Activation::Relu);
    let mu = dense::<H, Z>(&mut rng, 0.0, Activation::Identity);
    let lv = dense::<H, Z>(&mut rng, -1.0, Activation::Identity);
    let dec: Dec = Chain::new(
        dense::<Z, H>(&mut rng, 0.0, Activation::Relu),
        dense::<H, X>(&mut rng, 0.0, Activation::Identity),
    );
    let logvar_x: [f32; X] = std::array::from_fn(|_| (0.2 * rng.normal()) as f32);
    let mut inv_var = [0.0f32; X];
    let log_norm = decoder_noise(&logvar_x, &mut inv_var).unwrap();
    Vae::new(enc, mu, lv, dec, leak(inv_var), log_norm)
}
