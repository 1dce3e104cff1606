//! On-chip check of the int8 dense kernels against each other: random layers of random shapes
//! (1..=300 inputs, odd widths and whole groups of four up to 128 included, 1..=24 rows so that every remainder of the 5- and
//! 7-row blocks occurs, at most 2,048 weights), the whole int8 range with extremes, biases up
//! to the i32 limits (wrapping sums), valid per-row requantization constants with every shift
//! (those outside `-31..=-2` take the general output stage), zero points over `-128..=127`, the
//! clamps of every fused activation (none, ReLU, ReLU6, arbitrary) and output tables.
//!
//! Each case runs [`QKernel::Reference`], [`QKernel::Portable`], [`QKernel::Dsp`] and
//! [`QKernel::Multirow`] through [`QDenseView::forward_with`] and compares every output bit for
//! bit: on the chip this checks the `asm!` kernels (`Multirow` on M0/M3, `Dsp` on M4/M7/M33)
//! against the portable reference, which the host tests cannot.

use tinyvae::{QDenseView, QKernel, Requant};

/// Most weights of one case (on the stack: the micro:bit has 16 KB of RAM).
const MAX_WEIGHTS: usize = 2048;
/// Most rows of one case.
const MAX_OUT: usize = 24;
/// Most inputs of one case.
const MAX_IN: usize = 300;

/// xorshift32.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Uniform in `lo..=hi` (`hi - lo < 2^32`).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::from(self.next()) % (hi - lo + 1)
    }

    /// An int8, forced to -128 or 127 `extreme` times in 256.
    fn int8(&mut self, extreme: u32) -> i8 {
        match self.next() % 256 {
            r if r < extreme => -128,
            r if r < 2 * extreme => 127,
            _ => self.next() as i8,
        }
    }
}

/// What [`check`] found.
pub struct Checked {
    /// Layers run.
    pub cases: u32,
    /// Outputs compared (per kernel pair).
    pub outputs: u32,
    /// Layers where some kernel differed from the reference.
    pub mismatches: u32,
    /// The first mismatch: (case, kernel, output index, in, out).
    pub first: Option<(u32, QKernel, usize, usize, usize)>,
}

/// Runs `cases` random layers through every kernel (see the module doc).
pub fn check(cases: u32, seed: u32) -> Checked {
    let mut rng = Rng(seed | 1);
    let mut w = [0i8; MAX_WEIGHTS];
    let mut bias = [0i32; MAX_OUT];
    let mut rq = [Requant::new(0, 0); MAX_OUT];
    let mut x = [0i8; MAX_IN];
    let mut lut = [0i8; 256];
    let mut res = Checked {
        cases: 0,
        outputs: 0,
        mismatches: 0,
        first: None,
    };
    for case in 0..cases {
        let in_dim = match rng.next() % 5 {
            0 => rng.range(1, 8) as usize,
            1 => rng.range(9, 40) as usize,
            // Whole groups of four up to 128 inputs: the M3's narrow kernel.
            2 => 4 * rng.range(2, 32) as usize,
            _ => rng.range(1, MAX_IN as i64) as usize,
        };
        let out_dim = rng.range(1, (MAX_WEIGHTS / in_dim).min(MAX_OUT) as i64) as usize;
        let extreme = [0, 8, 64][(rng.next() % 3) as usize];
        let n = in_dim * out_dim;
        for v in w.iter_mut().take(n) {
            *v = rng.int8(extreme);
        }
        for v in x.iter_mut().take(in_dim) {
            *v = rng.int8(extreme);
        }
        let span = [1i64 << 12, 1 << 20, i64::from(i32::MAX)][(rng.next() % 3) as usize];
        for b in bias.iter_mut().take(out_dim) {
            *b = rng.range(-span - 1, span) as i32;
        }
        let per_row = rng.next().is_multiple_of(2);
        let shared = requant(&mut rng);
        for r in rq.iter_mut().take(out_dim) {
            *r = if per_row { requant(&mut rng) } else { shared };
        }
        let zp = rng.range(-128, 127) as i32;
        let (lo, hi) = match rng.next() % 5 {
            0 | 1 => (-128, 127),
            2 => (zp as i8, 127),
            3 => (zp as i8, (zp + 30).min(127) as i8),
            _ => {
                let (a, b) = (rng.int8(0), rng.int8(0));
                (a.min(b), a.max(b))
            }
        };
        let table = if rng.next().is_multiple_of(4) {
            for v in lut.iter_mut() {
                *v = rng.next() as i8;
            }
            Some(&lut)
        } else {
            None
        };
        let Ok(view) = QDenseView::new(
            in_dim,
            out_dim,
            &w[..n],
            &bias[..out_dim],
            &rq[..out_dim],
            zp,
            lo,
            hi,
            table,
        ) else {
            continue;
        };
        let mut want = [0i8; MAX_OUT];
        if view
            .forward_with(QKernel::Reference, &x[..in_dim], &mut want[..out_dim])
            .is_err()
        {
            continue;
        }
        res.cases += 1;
        let mut bad = false;
        for kernel in [QKernel::Portable, QKernel::Dsp, QKernel::Multirow] {
            let mut got = [0x55i8; MAX_OUT];
            if view
                .forward_with(kernel, &x[..in_dim], &mut got[..out_dim])
                .is_err()
            {
                continue;
            }
            res.outputs += out_dim as u32;
            if let Some(o) = (0..out_dim).find(|&o| got[o] != want[o]) {
                bad = true;
                if res.first.is_none() {
                    res.first = Some((case, kernel, o, in_dim, out_dim));
                }
            }
        }
        res.mismatches += u32::from(bad);
    }
    res
}

/// A valid requantization constant: multiplier 0 or in `[2^30, 2^31)`, shift in `-31..=30`
/// (mostly the `-20..=-2` of real layers; `-1..=30` and `-31` take other paths).
fn requant(rng: &mut Rng) -> Requant {
    let m = match rng.next() % 8 {
        0 => 0,
        1 => 1 << 30,
        2 => i32::MAX,
        _ => rng.range(1 << 30, (1 << 31) - 1) as i32,
    };
    let shift = match rng.next() % 8 {
        0 => rng.range(-31, 30) as i32,
        1 => -31,
        2 => -1,
        _ => rng.range(-20, -2) as i32,
    };
    Requant::new(m, shift)
}
