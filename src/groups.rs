//! Sensor groups: which channels belong to which sensor ([`SensorGroups`]) and which groups a
//! window was scored with ([`GroupSet`]).
//!
//! A multi-sensor model ([`PoeVae`](crate::PoeVae)) has one encoder per group of channels (e.g.
//! `acc = ax, ay, az` and `gyro = wx, wy, wz`); at most [`MAX_GROUPS`] = 4 groups, so at most
//! 15 non-empty subsets. A single-group model (every [`Vae`](crate::Vae)) has
//! [`SensorGroups::SINGLE`]: one group holding every channel.
//!
//! # Healthy groups of a window
//!
//! For a window with faults `f` ([`Faults`]), group `g` with channels `M_g` is *present* unless
//!
//! ```text
//! f.gap                                   (a dropped sample concerns every channel)
//! or M_g ∩ f.non_finite ≠ ∅               (a NaN or infinity in one of its channels)
//! or drop_flagged and M_g ∩ (f.stuck ∪ f.saturated) ≠ ∅
//! ```
//!
//! The detector skips a window only when no group is present; otherwise it scores the window with
//! the present groups `S` and reports `S` in [`WindowReport::groups`](crate::WindowReport::groups).
//! For the single-group model this is exactly the single-sensor rule (any non-finite channel or a
//! gap skips the window).

use crate::{ChannelMask, Error, Faults};

/// Most sensor groups a model can have.
pub const MAX_GROUPS: usize = 4;

/// A set of sensor groups: bit `g` = group `g` (groups `0..4`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GroupSet(pub u8);

impl GroupSet {
    /// No group.
    pub const EMPTY: Self = Self(0);

    /// Groups `0..count` (`count` is capped at [`MAX_GROUPS`]).
    pub const fn first(count: usize) -> Self {
        let n = if count > MAX_GROUPS {
            MAX_GROUPS
        } else {
            count
        };
        Self(((1u32 << n) - 1) as u8)
    }

    /// Whether no group is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether group `g` is set (false for `g >= 4`).
    pub const fn contains(self, g: usize) -> bool {
        g < MAX_GROUPS && self.0 & (1 << g) != 0
    }

    /// Sets group `g` (ignored for `g >= 4`).
    pub fn insert(&mut self, g: usize) {
        if g < MAX_GROUPS {
            self.0 |= 1 << g;
        }
    }

    /// Removes group `g`.
    pub fn remove(&mut self, g: usize) {
        if g < MAX_GROUPS {
            self.0 &= !(1 << g);
        }
    }

    /// Number of groups set.
    pub const fn len(self) -> u32 {
        (self.0 & 0x0F).count_ones()
    }

    /// The groups set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_GROUPS).filter(move |&g| self.contains(g))
    }

    /// The index of this subset in a 16-entry table (`bits & 15`).
    pub const fn index(self) -> usize {
        (self.0 & 0x0F) as usize
    }
}

/// The channels of each sensor group of a model (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SensorGroups {
    count: u8,
    channels: [ChannelMask; MAX_GROUPS],
}

impl SensorGroups {
    /// One group with every channel: the single-sensor model.
    pub const SINGLE: Self = Self {
        count: 1,
        channels: [
            ChannelMask(u32::MAX),
            ChannelMask::EMPTY,
            ChannelMask::EMPTY,
            ChannelMask::EMPTY,
        ],
    };

    /// Groups with the given channel sets, in group order.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for no group, more than [`MAX_GROUPS`], an empty group or two
    /// groups sharing a channel.
    pub const fn new(groups: &[ChannelMask]) -> Result<Self, Error> {
        const E: ChannelMask = ChannelMask::EMPTY;
        let channels = match groups {
            [a] => [*a, E, E, E],
            [a, b] => [*a, *b, E, E],
            [a, b, c] => [*a, *b, *c, E],
            [a, b, c, d] => [*a, *b, *c, *d],
            _ => return Err(Error::InvalidParameter),
        };
        let mut seen = 0u32;
        let mut rest = groups;
        while let [first, tail @ ..] = rest {
            if first.0 == 0 || first.0 & seen != 0 {
                return Err(Error::InvalidParameter);
            }
            seen |= first.0;
            rest = tail;
        }
        Ok(Self {
            count: groups.len() as u8,
            channels,
        })
    }

    /// Number of groups.
    pub const fn count(&self) -> usize {
        self.count as usize
    }

    /// Every group.
    pub const fn all(&self) -> GroupSet {
        GroupSet::first(self.count as usize)
    }

    /// The channels of group `g` (empty for a group the model does not have).
    pub fn channels(&self, g: usize) -> ChannelMask {
        if g < self.count() {
            self.channels.get(g).copied().unwrap_or(ChannelMask::EMPTY)
        } else {
            ChannelMask::EMPTY
        }
    }

    /// The union of the channels of the groups in `set`.
    pub fn channels_of(&self, set: GroupSet) -> ChannelMask {
        set.iter()
            .fold(ChannelMask::EMPTY, |m, g| m | self.channels(g))
    }

    /// The groups that are healthy in a window with faults `faults` (see the module doc).
    pub fn healthy(&self, faults: &Faults, drop_flagged: bool) -> GroupSet {
        if faults.gap {
            return GroupSet::EMPTY;
        }
        let mut bad = faults.non_finite;
        if drop_flagged {
            bad = bad | faults.stuck | faults.saturated;
        }
        let mut set = GroupSet::EMPTY;
        for g in 0..self.count() {
            if self.channels(g).0 & bad.0 == 0 {
                set.insert(g);
            }
        }
        set
    }
}
