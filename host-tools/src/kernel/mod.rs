//! The host's int8 dense kernels: which one runs ([`Int8Kernel`], chosen at run time from the
//! CPU and `TINYVAE_KERNEL`), and [`PackedLayer`], an int8 layer whose weights are re-laid out
//! once at model load for the x86 SIMD kernels (`x86.rs`), and [`PackedModel`], a host model's
//! int8 layers packed that way (what `HostModel`'s encode and decode run when a SIMD kernel is
//! active: `tinyvae score`, `eval`, `quantize`'s calibration and every other caller of the
//! host model go through it).
//!
//! # Why the bits cannot change
//!
//! A layer computes `acc[o] = bias[o] + Σ_i w[o][i] x[i]` in wrapping i32 arithmetic, then the
//! output stage `y[o] = lut(clamp(requantize(acc[o], rq[o]) + zp))` (`tinyvae::QDenseView`'s
//! module doc). Wrapping i32 addition is associative and commutative, so any order and any
//! grouping of the products gives the same `acc`, bit for bit; the output stage is integer
//! arithmetic with one exact formula. The SIMD kernels therefore compute exactly what the
//! library's portable kernel (and the chip) computes; the tests check it on random layers
//! (`tests/kernels_x86.rs`) and on the output of `tinyvae score` and `eval`
//! (`tests/kernel_parity.rs`).
//!
//! # Why in the host tool
//!
//! The packed weights are allocated at model load and the kernel is chosen per process from
//! the CPU (std's feature detection); the library stays heap-free and the exported firmware
//! model, the library's kernels and the chips' code are unchanged. Every host path that runs a
//! `HostModel` (`score`, `eval`, `quantize`'s calibration, the fleet engine) gets the SIMD
//! kernel through `HostModel::encode`/`decode`.
//!
//! # Selection
//!
//! [`Int8Kernel::active`] reads `TINYVAE_KERNEL` once per process: `auto` (or unset) takes the
//! best kernel the CPU supports ([`Int8Kernel::detect`], CPUID through `std`'s
//! `is_x86_feature_detected!`), `portable` forces the library's own kernel (`QDenseView::forward`,
//! what the host ran before), `avx2` and `avx512vnni` force one of the SIMD kernels and fail
//! with a message if the CPU lacks it. Off x86_64 only `portable` exists.

mod model;
mod packed;
mod quantize;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use model::*;
pub use packed::*;
pub use quantize::*;

use anyhow::{bail, Result};
use std::sync::OnceLock;

/// The environment variable that forces a kernel: `auto`, `portable`, `avx2` or `avx512vnni`.
pub const KERNEL_ENV: &str = "TINYVAE_KERNEL";

/// An implementation of the host's int8 dense layers; all compute the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Kernel {
    /// The library's own kernel (`tinyvae::QDenseView::forward`) on the row-major weights.
    Portable,
    /// x86_64 AVX2: weights as 8-row blocks of input pairs, `vpmovsxbw` + `vpmaddwd` (16 MACs per
    /// instruction, exact in i16 x i16 -> i32).
    Avx2,
    /// x86_64 AVX-512 with VNNI: weights as 16-row blocks of 4-input groups, the input offset to
    /// `u8` (`x + 128`, with `128 Σ w` folded into the bias), `vpdpbusd` (64 MACs per
    /// instruction).
    Avx512Vnni,
}

impl Int8Kernel {
    /// Every kernel, the portable one first.
    pub const ALL: [Int8Kernel; 3] = [
        Int8Kernel::Portable,
        Int8Kernel::Avx2,
        Int8Kernel::Avx512Vnni,
    ];

    /// The name `TINYVAE_KERNEL` takes for it.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Portable => "portable",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        match self {
            Int8Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel this CPU supports.
    pub fn detect() -> Self {
        [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2]
            .into_iter()
            .find(|k| k.supported())
            .unwrap_or(Int8Kernel::Portable)
    }

    /// The kernel a `TINYVAE_KERNEL` value asks for (`None`, empty or `auto`: [`detect`]).
    ///
    /// [`detect`]: Int8Kernel::detect
    ///
    /// # Errors
    /// An unknown name, or a kernel this CPU cannot run.
    pub fn parse(value: Option<&str>) -> Result<Self> {
        let v = value.map(str::trim).unwrap_or("");
        if v.is_empty() || v == "auto" {
            return Ok(Self::detect());
        }
        let Some(k) = Self::ALL.into_iter().find(|k| k.name() == v) else {
            bail!(
                "{KERNEL_ENV}={v:?} is not a kernel: valid values are auto, {}",
                Self::ALL.map(Int8Kernel::name).join(", ")
            );
        };
        if !k.supported() {
            bail!(
                "{KERNEL_ENV}={v}: this CPU cannot run that kernel (supported: {})",
                Self::ALL
                    .into_iter()
                    .filter(|k| k.supported())
                    .map(Int8Kernel::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(k)
    }

    /// The kernel of this process: `TINYVAE_KERNEL` parsed once ([`Int8Kernel::parse`]).
    ///
    /// # Errors
    /// As [`Int8Kernel::parse`] (every call repeats the error).
    pub fn active() -> Result<Self> {
        static ACTIVE: OnceLock<Result<Int8Kernel, String>> = OnceLock::new();
        ACTIVE
            .get_or_init(|| {
                let v = std::env::var(KERNEL_ENV).ok();
                Self::parse(v.as_deref()).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(anyhow::Error::msg)
    }
}

impl std::fmt::Display for Int8Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
