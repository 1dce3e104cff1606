#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::todo,
    clippy::unimplemented
)]

mod activation;
mod alarm;
mod ar_noise;
#[allow(unsafe_code)]
mod arch;
mod cholesky;
mod dense;
mod detector;
mod detector_config;
mod error;
mod fault;
mod gate;
mod gaussian;
mod groups;
mod kl;
mod layer;
pub mod math;
mod moe;
mod moe_vae;
mod normalize;
mod poe;
mod poe_vae;
mod precision;
mod qdense;
mod qkernel;
mod quant;
mod quant_fast;
mod quantile;
mod report;
mod ring;
mod sample;
mod score;
mod scorer;
mod vae;

pub use activation::*;
pub use alarm::*;
pub use ar_noise::*;
pub use cholesky::*;
pub use dense::*;
pub use detector::*;
pub use detector_config::*;
pub use error::*;
pub use fault::*;
pub use gate::*;
pub use gaussian::*;
pub use groups::*;
pub use kl::*;
pub use layer::*;
pub use moe::*;
pub use moe_vae::*;
pub use normalize::*;
pub use poe::*;
pub use poe_vae::*;
pub use precision::*;
pub use qdense::*;
pub use qkernel::*;
pub use quant::*;
pub use quantile::*;
pub use report::*;
pub use ring::*;
pub use sample::*;
pub use score::*;
pub use scorer::*;
pub use vae::*;
