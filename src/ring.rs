//! Sample rings: the last `W` samples of a stream, oldest first, in fixed memory.
//!
//! A ring of capacity `W` holds at most `W` samples `[f32; C]`; pushing into a full ring drops
//! the oldest. Iteration is in arrival order, so after samples `s_0, s_1, ..., s_{n-1}` have been
//! pushed the ring yields
//!
//! ```text
//! s_{n - m}, s_{n - m + 1}, ..., s_{n - 1},      m = min(n, W)
//! ```
//!
//! Two rings implement [`SampleRing`]:
//!
//! * `heapless::Deque<[f32; C], W>`: `W` in the type, the firmware's choice (a
//!   [`Detector`](crate::Detector) owns one);
//! * [`SliceRing`]: `W` at run time, over a caller-owned `&mut [[f32; C]]` (the host tool, whose
//!   window length comes from the checkpoint; see [`SliceDetector`](crate::SliceDetector)).
//!
//! Both give the same sequence for the same pushes (tested against each other in
//! `tests/detector.rs`), so a detector behaves the same over either.

use heapless::Deque;

/// The last `capacity()` samples of a stream (see the module doc).
pub trait SampleRing<const C: usize> {
    /// The window length `W` (samples kept), at least 1 for a usable ring.
    fn capacity(&self) -> usize;

    /// Samples held (`min(pushed, capacity)`).
    fn len(&self) -> usize;

    /// Whether no sample is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a sample, dropping the oldest if the ring is full.
    fn push_evict(&mut self, sample: [f32; C]);

    /// The oldest sample held.
    fn oldest(&self) -> Option<&[f32; C]>;

    /// The newest sample held.
    fn newest(&self) -> Option<&[f32; C]>;

    /// The samples held, oldest first.
    fn samples(&self) -> impl Iterator<Item = &[f32; C]>;
}

impl<const C: usize, const W: usize> SampleRing<C> for Deque<[f32; C], W> {
    fn capacity(&self) -> usize {
        W
    }

    fn len(&self) -> usize {
        Deque::len(self)
    }

    fn push_evict(&mut self, sample: [f32; C]) {
        if self.is_full() {
            let _ = self.pop_front();
        }
        // Cannot fail: the ring has room after the pop (a zero-capacity deque drops the sample).
        let _ = self.push_back(sample);
    }

    fn oldest(&self) -> Option<&[f32; C]> {
        self.front()
    }

    fn newest(&self) -> Option<&[f32; C]> {
        self.back()
    }

    fn samples(&self) -> impl Iterator<Item = &[f32; C]> {
        self.iter()
    }
}

/// A ring over caller-owned storage: capacity `buf.len()`, fixed at construction.
#[derive(Debug)]
pub struct SliceRing<'a, const C: usize> {
    buf: &'a mut [[f32; C]],
    /// Index of the oldest sample.
    head: usize,
    len: usize,
}

impl<'a, const C: usize> SliceRing<'a, C> {
    /// An empty ring over `buf` (its contents are ignored and overwritten).
    pub fn new(buf: &'a mut [[f32; C]]) -> Self {
        Self {
            buf,
            head: 0,
            len: 0,
        }
    }

    /// The stored samples as the two contiguous runs `(oldest .., .. newest)`.
    fn runs(&self) -> (&[[f32; C]], &[[f32; C]]) {
        let cap = self.buf.len();
        let (before, from_head) = self.buf.split_at(self.head.min(cap));
        if self.head + self.len <= cap {
            (from_head.get(..self.len).unwrap_or(from_head), &[])
        } else {
            let (wrapped, _) = before.split_at((self.head + self.len - cap).min(before.len()));
            (from_head, wrapped)
        }
    }
}

impl<const C: usize> SampleRing<C> for SliceRing<'_, C> {
    fn capacity(&self) -> usize {
        self.buf.len()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push_evict(&mut self, sample: [f32; C]) {
        let cap = self.buf.len();
        if cap == 0 {
            return;
        }
        if self.len == cap {
            if let Some(slot) = self.buf.get_mut(self.head) {
                *slot = sample;
            }
            self.head = (self.head + 1) % cap;
        } else {
            if let Some(slot) = self.buf.get_mut((self.head + self.len) % cap) {
                *slot = sample;
            }
            self.len += 1;
        }
    }

    fn oldest(&self) -> Option<&[f32; C]> {
        if self.len == 0 {
            None
        } else {
            self.buf.get(self.head)
        }
    }

    fn newest(&self) -> Option<&[f32; C]> {
        let cap = self.buf.len();
        if self.len == 0 || cap == 0 {
            None
        } else {
            self.buf.get((self.head + self.len - 1) % cap)
        }
    }

    fn samples(&self) -> impl Iterator<Item = &[f32; C]> {
        let (a, b) = self.runs();
        a.iter().chain(b)
    }
}
