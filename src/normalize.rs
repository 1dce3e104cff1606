//! Per-channel input handling: standardization, raw register counts, saturation limits and
//! running statistics.
//!
//! **Standardization** ([`Normalizer`]) with the statistics exported from the training data
//! (mean `m_c` and precision `1/s_c` per channel, `s_c` the population standard deviation):
//!
//! ```text
//! x'_c = clamp((x_c - m_c) * inv_std_c, -NORM_LIMIT, NORM_LIMIT)
//! ```
//!
//! The clamp ([`NORM_LIMIT`] = 1e6 standard deviations, far outside anything a model has seen)
//! keeps a finite sample finite after scaling, so a huge but finite value gives a huge score
//! (or [`Score::overflow`](crate::Score)) instead of an error. One subtraction and one
//! multiplication per value, in channel order: the host and the chip round identically.
//!
//! **Raw counts** ([`RawScale`]) from ADC or IMU registers: `x_c = raw_c * scale_c + offset_c`
//! in f32 (physical units, the units of the exported statistics). A raw value at or beyond the
//! configured rail (`raw_c <= lo_c` or `raw_c >= hi_c`; by default `i16::MIN`/`i16::MAX`) is
//! saturated. [`SaturationLimits`] is the same check for samples already in physical units
//! (`x_c <= lo_c` or `x_c >= hi_c`; by default infinite, i.e. off).
//!
//! **Running statistics** ([`Welford`]) in fixed memory (Welford, 1962), per channel:
//!
//! ```text
//! n += 1;  delta = x - mean;  mean += delta / n;  M2 += delta * (x - mean)
//! variance = M2 / n   (population variance, as the exported statistics)
//! ```
//!
//! in f32, each of the two sums (`mean`, `M2`) with Kahan's compensation. Without it, `M2` stops
//! growing once its increments (about the variance) fall under half an ulp of `M2` (about `n`
//! times the variance): after 10^7 unit-variance samples the standard deviation was 0.8 % low,
//! after 10^8 15 % low; with it, 10^8 samples of a stationary stream stay within 2e-6 of an f64
//! Welford on the same values (`tests/drift.rs`, README "Long runs"). Measured against an f64
//! two-pass reference (tests/detector.rs, `welford_matches_f64_two_pass`), 10 000 values: mean 5,
//! standard deviation 0.1 gave relative errors 3.7e-8 (mean) and 3.2e-8 (standard deviation);
//! mean -300, standard deviation 20 gave 2.6e-8 and 2.5e-9 (test tolerances 1e-4 and 1e-3;
//! before the compensation 3.8e-6, 6.3e-7, 7.4e-7 and 4.2e-7).

use crate::{math, ChannelMask, Error};

/// Largest magnitude of a standardized value; larger ones are clamped to it.
pub const NORM_LIMIT: f32 = 1.0e6;

/// Per-channel standardization `x' = (x - mean) * inv_std`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Normalizer<const C: usize> {
    mean: [f32; C],
    inv_std: [f32; C],
}

impl<const C: usize> Normalizer<C> {
    /// From exported means and precisions `1/std` (not validated: use [`Normalizer::from_std`]
    /// for checked construction); usable in `static` initialisers.
    pub const fn new(mean: [f32; C], inv_std: [f32; C]) -> Self {
        Self { mean, inv_std }
    }

    /// The identity: mean 0, standard deviation 1.
    pub const fn identity() -> Self {
        Self::new([0.0; C], [1.0; C])
    }

    /// From means and standard deviations, checked.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a non-finite mean (index = channel),
    /// [`Error::InvalidParameter`] for a standard deviation that is not finite and positive or
    /// whose reciprocal overflows.
    pub fn from_std(mean: [f32; C], std: [f32; C]) -> Result<Self, Error> {
        crate::check_finite(&mean)?;
        let mut inv_std = [0.0; C];
        for (inv, &s) in inv_std.iter_mut().zip(&std) {
            let v = 1.0 / s;
            if !(s.is_finite() && s > 0.0 && v.is_finite()) {
                return Err(Error::InvalidParameter);
            }
            *inv = v;
        }
        Ok(Self { mean, inv_std })
    }

    /// The same with every parameter that cannot standardize replaced: a non-finite mean by 0,
    /// a precision that is not finite or is 0 by 1 (with those, a finite sample could become
    /// NaN). A normalizer from [`Normalizer::from_std`] is returned unchanged.
    pub const fn sanitized(self) -> Self {
        let mut out = self;
        let mut rest: &mut [f32] = &mut out.mean;
        while let Some((m, tail)) = rest.split_first_mut() {
            if !m.is_finite() {
                *m = 0.0;
            }
            rest = tail;
        }
        let mut rest: &mut [f32] = &mut out.inv_std;
        while let Some((p, tail)) = rest.split_first_mut() {
            if !p.is_finite() || *p == 0.0 {
                *p = 1.0;
            }
            rest = tail;
        }
        out
    }

    /// Whether [`Normalizer::sanitized`] would change nothing.
    pub const fn is_valid(&self) -> bool {
        let mut rest: &[f32] = &self.mean;
        while let Some((m, tail)) = rest.split_first() {
            if !m.is_finite() {
                return false;
            }
            rest = tail;
        }
        let mut rest: &[f32] = &self.inv_std;
        while let Some((p, tail)) = rest.split_first() {
            if !p.is_finite() || *p == 0.0 {
                return false;
            }
            rest = tail;
        }
        true
    }

    /// Per-channel means.
    pub const fn mean(&self) -> &[f32; C] {
        &self.mean
    }

    /// Per-channel precisions `1/std`.
    pub const fn inv_std(&self) -> &[f32; C] {
        &self.inv_std
    }

    /// Standardizes one sample (finite in, finite out; see the module doc).
    pub fn normalize(&self, x: &[f32; C]) -> [f32; C] {
        let mut out = [0.0; C];
        self.normalize_into(x, &mut out);
        out
    }

    /// Standardizes one sample into `out` (its first `C` values; a shorter `out` gets only
    /// the first channels), e.g. one time step of a flattened window.
    pub fn normalize_into(&self, x: &[f32; C], out: &mut [f32]) {
        for (((o, &v), &m), &p) in out.iter_mut().zip(x).zip(&self.mean).zip(&self.inv_std) {
            *o = ((v - m) * p).clamp(-NORM_LIMIT, NORM_LIMIT);
        }
    }
}

/// Conversion of raw `i16` register counts to physical units, with the saturation rails.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RawScale<const C: usize> {
    /// Physical units per count.
    pub scale: [f32; C],
    /// Physical value of count 0.
    pub offset: [f32; C],
    /// A count `<= lo` is saturated.
    pub lo: [i16; C],
    /// A count `>= hi` is saturated.
    pub hi: [i16; C],
}

impl<const C: usize> RawScale<C> {
    /// `x = raw * scale + offset`, saturated at the `i16` rails; usable in `static`s.
    pub const fn new(scale: [f32; C], offset: [f32; C]) -> Self {
        Self {
            scale,
            offset,
            lo: [i16::MIN; C],
            hi: [i16::MAX; C],
        }
    }

    /// One count per unit, no offset, saturated at the `i16` rails.
    pub const fn unit() -> Self {
        Self::new([1.0; C], [0.0; C])
    }

    /// The same conversion with other saturation rails (e.g. `0` and `4095` for a 12-bit ADC).
    pub const fn with_saturation(self, lo: [i16; C], hi: [i16; C]) -> Self {
        Self { lo, hi, ..self }
    }

    /// Converts one raw sample; returns the physical values and the saturated channels.
    pub fn convert(&self, raw: &[i16; C]) -> ([f32; C], ChannelMask) {
        let mut x = [0.0; C];
        let mut sat = ChannelMask::EMPTY;
        let params = self
            .scale
            .iter()
            .zip(&self.offset)
            .zip(&self.lo)
            .zip(&self.hi);
        for (c, ((o, &r), (((&s, &off), &lo), &hi))) in
            x.iter_mut().zip(raw).zip(params).enumerate()
        {
            *o = f32::from(r) * s + off;
            if r <= lo || r >= hi {
                sat.insert(c);
            }
        }
        (x, sat)
    }
}

/// Saturation limits for samples in physical units: `x <= lo` or `x >= hi` is saturated.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SaturationLimits<const C: usize> {
    /// Lower limit per channel.
    pub lo: [f32; C],
    /// Upper limit per channel.
    pub hi: [f32; C],
}

impl<const C: usize> SaturationLimits<C> {
    /// No limits (no finite value is saturated).
    pub const fn none() -> Self {
        Self {
            lo: [f32::NEG_INFINITY; C],
            hi: [f32::INFINITY; C],
        }
    }

    /// Limits per channel; usable in `static`s.
    pub const fn new(lo: [f32; C], hi: [f32; C]) -> Self {
        Self { lo, hi }
    }

    /// The channels of `x` at or beyond their limits.
    pub fn check(&self, x: &[f32; C]) -> ChannelMask {
        let mut sat = ChannelMask::EMPTY;
        for (c, ((&v, &lo), &hi)) in x.iter().zip(&self.lo).zip(&self.hi).enumerate() {
            if v <= lo || v >= hi {
                sat.insert(c);
            }
        }
        sat
    }
}

/// Per-channel running mean and variance (Welford), in fixed memory.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Welford<const C: usize> {
    count: [u32; C],
    mean: [f32; C],
    m2: [f32; C],
    /// Kahan compensations of `mean` and `m2`: the low-order parts their last sums dropped.
    mean_c: [f32; C],
    m2_c: [f32; C],
}

impl<const C: usize> Default for Welford<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const C: usize> Welford<C> {
    /// No values yet; usable in `static`s.
    pub const fn new() -> Self {
        Self {
            count: [0; C],
            mean: [0.0; C],
            m2: [0.0; C],
            mean_c: [0.0; C],
            m2_c: [0.0; C],
        }
    }

    /// Adds one sample, except the channels in `skip`, any non-finite value, and any value of a
    /// channel that already has `u32::MAX` values (its statistics then stay as they are).
    pub fn push(&mut self, x: &[f32; C], skip: ChannelMask) {
        let state = self.count.iter_mut().zip(&mut self.mean).zip(&mut self.m2);
        let comp = self.mean_c.iter_mut().zip(&mut self.m2_c);
        for (c, ((((n, mean), m2), (mean_c, m2_c)), &v)) in state.zip(comp).zip(x).enumerate() {
            if skip.contains(c) || !v.is_finite() || *n == u32::MAX {
                continue;
            }
            *n += 1;
            let delta = v - *mean;
            kahan_add(mean, mean_c, delta / *n as f32);
            kahan_add(m2, m2_c, delta * (v - *mean));
        }
    }

    /// The state after `count` values equal to 0 in every channel (mean 0, variance 0): a valid
    /// state for running tests across the count's limit without pushing 2^32 values.
    #[doc(hidden)]
    pub const fn at_count(count: u32) -> Self {
        Self {
            count: [count; C],
            mean: [0.0; C],
            m2: [0.0; C],
            mean_c: [0.0; C],
            m2_c: [0.0; C],
        }
    }

    /// Values used per channel (`u32`; stops at `u32::MAX`, see [`Welford::push`]).
    pub const fn count(&self) -> &[u32; C] {
        &self.count
    }

    /// Running means.
    pub const fn mean(&self) -> &[f32; C] {
        &self.mean
    }

    /// Population variances `M2 / n` (0 for a channel without values).
    pub fn variance(&self) -> [f32; C] {
        let mut v = [0.0; C];
        for ((o, &m2), &n) in v.iter_mut().zip(&self.m2).zip(&self.count) {
            *o = if n == 0 { 0.0 } else { m2 / n as f32 };
        }
        v
    }

    /// A normalizer from the running statistics: per channel, the running mean and
    /// `1/sqrt(variance)` if at least two values were seen and the variance is positive with a
    /// finite, non-zero reciprocal square root (an infinite variance, from values near
    /// `f32::MAX`, would give precision 0); otherwise that channel of `fallback`.
    pub fn normalizer(&self, fallback: &Normalizer<C>) -> Normalizer<C> {
        let mut out = *fallback;
        let var = self.variance();
        let stats = self.count.iter().zip(&self.mean).zip(&var);
        for ((om, op), ((&n, &m), &v)) in out.mean.iter_mut().zip(&mut out.inv_std).zip(stats) {
            let p = 1.0 / math::sqrt(v);
            if n >= 2 && v > 0.0 && p.is_finite() && p > 0.0 && m.is_finite() {
                *om = m;
                *op = p;
            }
        }
        out
    }
}

/// `sum += term` with Kahan's compensation `c` (the low-order part lost so far): the sum's error
/// stays within a few ulps however many terms are added (Kahan, 1965). Plain IEEE operations in
/// a fixed order, so the host and the chip round identically.
#[inline(always)]
fn kahan_add(sum: &mut f32, c: &mut f32, term: f32) {
    let y = term - *c;
    let t = *sum + y;
    *c = (t - *sum) - y;
    *sum = t;
}
