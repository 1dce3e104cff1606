#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
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
mod cholesky;
mod dense;
mod error;
mod gaussian;
mod kl;
pub mod math;
mod moe;
mod poe;
mod qdense;
mod quant;
mod sample;
mod layer;
mod score;
mod vae;

pub use activation::*;
pub use cholesky::*;
pub use dense::*;
pub use error::*;
pub use gaussian::*;
pub use kl::*;
pub use layer::*;
pub use moe::*;
pub use poe::*;
pub use qdense::*;
pub use quant::*;
pub use sample::*;
pub use score::*;
pub use vae::*;
