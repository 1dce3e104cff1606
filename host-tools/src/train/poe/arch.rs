//! The shape of a product-of-experts model ([`PoeArch`]) and where its weights live in the flat
//! training vector ([`PoeLayout`]).
//!
//! Group `g` (channels `M_g`, ascending) has its own encoder over its sub-window
//! `x_g[t |M_g| + j] = x[t C + M_g[j]]` (the hidden widths of `encoder_hidden`), heads
//! `mu_g`, `s_g` (Z each), `lv_g = clamp(s_g, -10, 10)`, `T_g = exp(-lv_g)`. One decoder (as in
//! the single VAE) maps z to all X features, with the learned decoder variance `lx`; or, with
//! [`DecoderLayout::PerGroup`], one decoder per group maps z to its group's features.
//!
//! Per-group decoders are trained in the shared decoder's layout, widths `G` times the
//! per-group widths, held block-diagonal ([`PoeLayout::off_block`]): hidden unit block `g`
//! (units `g h..(g + 1) h` of every layer) takes only block `g` of the layer before (every `z`
//! for the first layer) and only block `g` of the last hidden layer feeds group `g`'s features.
//! The weights outside the blocks start at 0 and are set back to 0 after every step, so the
//! blocks are the `G` decoders exactly (each initialised with its own fan-in) and
//! [`PoeParams::decoders`](super::PoeParams::decoders) cuts them out; the cost is the zero
//! blocks' arithmetic in training.

use super::super::arch::{NoiseKind, DECODER_LOGVAR_MAX, DECODER_LOGVAR_MIN};
use super::super::model::{DenseSlot, SlotAlloc};
use super::super::params::Linear;
use super::super::rng;
use super::{ExpertParams, PoeParams};
use rand_xorshift::XorShiftRng;
use std::ops::Range;
use tinyvae::GroupSet;

/// How a product-of-experts model decodes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DecoderLayout {
    /// One decoder for all X features.
    #[default]
    Shared,
    /// One decoder per group, for its `W |M_g|` features (the hidden widths are each decoder's).
    PerGroup,
}

/// The shape of a product-of-experts model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoeArch {
    /// W: samples per window.
    pub window: usize,
    /// C: channels per sample.
    pub channels: usize,
    /// The channels of each group (ascending, disjoint, covering `0..C`), 1 to 4 groups.
    pub groups: Vec<Vec<usize>>,
    /// Widths of each expert's hidden ReLU layers.
    pub encoder_hidden: Vec<usize>,
    /// Z.
    pub latent: usize,
    /// Widths of the decoder's hidden ReLU layers (of each group's decoder with
    /// [`DecoderLayout::PerGroup`]).
    pub decoder_hidden: Vec<usize>,
    /// The decoder's variance model.
    pub noise: NoiseKind,
    /// One shared decoder or one per group.
    pub decoder: DecoderLayout,
}

impl PoeArch {
    /// X = W C.
    pub fn input(&self) -> usize {
        self.window * self.channels
    }

    /// Number of decoders: 1, or G with [`DecoderLayout::PerGroup`].
    pub fn decoder_count(&self) -> usize {
        match self.decoder {
            DecoderLayout::Shared => 1,
            DecoderLayout::PerGroup => self.groups.len(),
        }
    }

    /// The group of feature `j` (of X).
    fn group_of(&self, j: usize) -> Option<usize> {
        let c = j % self.channels;
        self.groups.iter().position(|m| m.contains(&c))
    }

    /// Checks the groups and widths.
    ///
    /// # Errors
    /// Names what is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=tinyvae::MAX_GROUPS).contains(&self.groups.len()),
            "1 to {} sensor groups, found {}",
            tinyvae::MAX_GROUPS,
            self.groups.len()
        );
        let mut seen = vec![false; self.channels];
        for g in &self.groups {
            anyhow::ensure!(!g.is_empty(), "a sensor group has no channel");
            for &c in g {
                anyhow::ensure!(c < self.channels, "channel {c} out of range");
                anyhow::ensure!(!seen[c], "channel {c} is in two groups");
                seen[c] = true;
            }
        }
        anyhow::ensure!(seen.iter().all(|&s| s), "every channel must be in a group");
        anyhow::ensure!(
            self.window > 0 && self.latent > 0,
            "window and latent must be > 0"
        );
        anyhow::ensure!(
            (1..=3).contains(&self.encoder_hidden.len())
                && (1..=3).contains(&self.decoder_hidden.len())
                && self
                    .encoder_hidden
                    .iter()
                    .chain(&self.decoder_hidden)
                    .all(|&w| w > 0),
            "1 to 3 hidden layers of positive width on each side"
        );
        Ok(())
    }

    /// The subsets trained: the full set, then each single group (only the full set for one
    /// group).
    pub fn trained_subsets(&self) -> Vec<GroupSet> {
        let g = self.groups.len();
        let mut v = vec![GroupSet::first(g)];
        if g > 1 {
            v.extend((0..g).map(|i| GroupSet(1 << i)));
        }
        v
    }

    /// Whether feature `j` (of X) belongs to a group of `s`.
    pub(super) fn present(&self, s: GroupSet, j: usize) -> bool {
        let c = j % self.channels;
        s.iter().any(|g| self.groups[g].contains(&c))
    }
}

/// Where one expert lives in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpertSlots {
    /// Hidden layers.
    pub enc: Vec<DenseSlot>,
    /// `mu` and `logvar` heads stacked (`out = 2Z`).
    pub heads: DenseSlot,
}

/// The flat layout: experts in group order, then decoder hidden layers, the output, the noise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoeLayout {
    /// The architecture.
    pub arch: PoeArch,
    /// One per group.
    pub experts: Vec<ExpertSlots>,
    /// Decoder hidden layers.
    pub dec: Vec<DenseSlot>,
    /// Decoder output.
    pub out: DenseSlot,
    /// Trained decoder log-variances (X, C or 0 values).
    pub noise: Range<usize>,
    /// Number of parameters.
    pub total: usize,
}

impl PoeLayout {
    /// The layout of a validated architecture.
    ///
    /// # Errors
    /// An invalid architecture.
    pub fn new(arch: &PoeArch) -> anyhow::Result<Self> {
        arch.validate()?;
        let mut a = SlotAlloc::default();
        let experts = arch
            .groups
            .iter()
            .map(|g| {
                let (enc, h) = a.stack(arch.window * g.len(), &arch.encoder_hidden);
                let heads = a.dense(h, 2 * arch.latent);
                ExpertSlots { enc, heads }
            })
            .collect();
        let widths: Vec<usize> = arch
            .decoder_hidden
            .iter()
            .map(|&w| w * arch.decoder_count())
            .collect();
        let (dec, h) = a.stack(arch.latent, &widths);
        let out = a.dense(h, arch.input());
        let n_noise = match arch.noise {
            NoiseKind::PerFeature => arch.input(),
            NoiseKind::PerChannel => arch.channels,
            NoiseKind::Unit => 0,
        };
        let noise = a.off..a.off + n_noise;
        Ok(Self {
            arch: arch.clone(),
            experts,
            dec,
            out,
            total: noise.end,
            noise,
        })
    }

    /// Fresh weights like `nn.Linear` (uniform ±1/sqrt(fan_in), weight then bias, slot by slot;
    /// for per-group decoders the fan-in of a decoder layer after the first is one block's, and
    /// the weights outside the blocks are 0), decoder log-variances 0.
    pub fn init(&self, rng: &mut XorShiftRng) -> Vec<f32> {
        let mut theta = vec![0.0f32; self.total];
        let enc = self
            .experts
            .iter()
            .flat_map(|e| e.enc.iter().chain([&e.heads]))
            .map(|s| (s, s.inp));
        let d = self.arch.decoder_count();
        let dec = self
            .dec
            .iter()
            .chain([&self.out])
            .enumerate()
            .map(|(i, s)| (s, if i == 0 { s.inp } else { s.inp / d }));
        for (s, fan_in) in enc.chain(dec) {
            let a = 1.0 / (fan_in as f32).sqrt();
            for v in &mut theta[s.w..s.b + s.out] {
                *v = rng::uniform_sym(rng, a);
            }
        }
        for i in self.off_block() {
            theta[i] = 0.0;
        }
        theta
    }

    /// Indices into the flat vector of the decoder weights that per-group decoders hold at 0
    /// (none for a shared decoder): in every decoder layer after the first, the weight from
    /// input unit `i` to output `o` when `i`'s block is not `o`'s (a hidden unit's block is
    /// `unit * G / width`, an output feature's its group).
    pub fn off_block(&self) -> Vec<usize> {
        let a = &self.arch;
        let d = a.decoder_count();
        let mut idx = Vec::new();
        if d == 1 {
            return idx;
        }
        let block = |unit: usize, width: usize| Some(unit * d / width);
        for (li, s) in self.dec.iter().chain([&self.out]).enumerate().skip(1) {
            let last = li == self.dec.len();
            for o in 0..s.out {
                let bo = if last { a.group_of(o) } else { block(o, s.out) };
                for i in 0..s.inp {
                    if block(i, s.inp) != bo {
                        idx.push(s.w + o * s.inp + i);
                    }
                }
            }
        }
        idx
    }

    /// The trained weights of a flat vector.
    pub fn unflatten(&self, theta: &[f32]) -> PoeParams {
        let get = |r: Range<usize>| theta[r].to_vec();
        let lin = |s: &DenseSlot| Linear {
            in_features: s.inp,
            out_features: s.out,
            weight: get(s.w..s.w + s.inp * s.out),
            bias: get(s.b..s.b + s.out),
        };
        let z = self.arch.latent;
        let experts = self
            .experts
            .iter()
            .map(|e| {
                let h = e.heads;
                let head = |k: usize| Linear {
                    in_features: h.inp,
                    out_features: z,
                    weight: get(h.w + k * z * h.inp..h.w + (k + 1) * z * h.inp),
                    bias: get(h.b + k * z..h.b + (k + 1) * z),
                };
                ExpertParams {
                    encoder: e.enc.iter().map(lin).collect(),
                    mu: head(0),
                    logvar: head(1),
                }
            })
            .collect();
        let c = self.arch.channels;
        let noise = get(self.noise.clone());
        let decoder_logvar = (0..self.arch.input())
            .map(|j| {
                let v = match self.arch.noise {
                    NoiseKind::PerFeature => noise[j],
                    NoiseKind::PerChannel => noise[j % c],
                    NoiseKind::Unit => 0.0,
                };
                v.clamp(DECODER_LOGVAR_MIN, DECODER_LOGVAR_MAX)
            })
            .collect();
        PoeParams {
            arch: self.arch.clone(),
            experts,
            decoder: self.dec.iter().map(lin).collect(),
            decoder_out: lin(&self.out),
            decoder_logvar,
            noise: None,
        }
    }
}
