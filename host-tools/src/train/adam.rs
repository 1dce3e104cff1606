//! Adam (Kingma & Ba 2015), in the form PyTorch's `torch.optim.Adam` computes it:
//!
//! ```text
//! m ← β1 m + (1 - β1) g,   v ← β2 v + (1 - β2) g²
//! θ ← θ - (lr / (1 - β1^t)) · m / (sqrt(v) / sqrt(1 - β2^t) + ε)
//! ```
//!
//! The bias corrections are computed in f64 once per step, the element updates in f32 (one
//! vectorizable pass over the flat parameter vector). No weight decay, no AMSGrad.

/// Optimizer state for a flat parameter vector.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    t: u64,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// Zeroed state for `n` parameters.
    pub fn new(n: usize, lr: f64, beta1: f64, beta2: f64, eps: f64) -> Self {
        Self {
            lr,
            beta1,
            beta2,
            eps,
            t: 0,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One update of `theta` with gradient `grad` (same length as the state).
    pub fn step(&mut self, theta: &mut [f32], grad: &[f32]) {
        assert_eq!(theta.len(), self.m.len(), "Adam: parameter count changed");
        assert_eq!(grad.len(), self.m.len(), "Adam: gradient length");
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step = (self.lr / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        let (c1, c2) = ((1.0 - self.beta1) as f32, (1.0 - self.beta2) as f32);
        for (((p, &g), m), v) in theta
            .iter_mut()
            .zip(grad)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            *m = b1 * *m + c1 * g;
            *v = b2 * *v + c2 * g * g;
            *p -= step * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        // After one step m̂ = g and v̂ = g², so the update is lr * g / (|g| + eps) ≈ lr sign(g).
        let mut a = Adam::new(3, 1e-3, 0.9, 0.999, 1e-8);
        let mut p = [1.0f32, -2.0, 0.5];
        a.step(&mut p, &[0.3, -4.0, 0.0]);
        let want = [1.0 - 1e-3, -2.0 + 1e-3, 0.5];
        for (x, w) in p.iter().zip(want) {
            assert!((x - w).abs() < 1e-6, "got {p:?}, want {want:?}");
        }
    }

    #[test]
    fn minimizes_a_quadratic() {
        let mut a = Adam::new(2, 0.05, 0.9, 0.999, 1e-8);
        let mut p = [3.0f32, -5.0];
        for _ in 0..2000 {
            let g = [2.0 * (p[0] - 1.0), 2.0 * (p[1] + 2.0)];
            a.step(&mut p, &g);
        }
        assert!(
            (p[0] - 1.0).abs() < 1e-2 && (p[1] + 2.0).abs() < 1e-2,
            "{p:?}"
        );
    }
}
