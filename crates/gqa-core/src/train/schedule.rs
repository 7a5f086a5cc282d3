//! Learning-rate schedule: linear warmup then cosine decay.

/// Linear warmup over `warmup` steps to `peak`, then cosine decay to `min` at `total` steps
/// (Loshchilov & Hutter, 2017, "SGDR"; the usual transformer recipe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub peak: f64,
    /// Final learning rate.
    pub min: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// Total steps of the run.
    pub total: usize,
}

impl WarmupCosine {
    /// Learning rate for 0-based `step`:
    /// `peak * (step+1)/warmup` during warmup, then
    /// `min + (peak-min) * 0.5 * (1 + cos(pi * progress))`, `progress` in `[0, 1]`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        self.min + (self.peak - self.min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}
