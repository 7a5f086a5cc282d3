//! Inverted dropout with a caller-seeded generator (SPEC section 3: reproducible training).

use candle_core::Tensor;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Inverted dropout: each element is kept with probability `1 - p` and scaled by `1/(1-p)`,
/// else set to 0 (Srivastava et al., 2014). The mask comes from ChaCha8 seeded by the caller:
/// element `i` is dropped when `u_i < p`, `u_i = (next_u32() >> 8) * 2^-24`, drawn in row-major
/// order, so a training run is reproducible on one backend.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f32,
    rng: ChaCha8Rng,
}

impl Dropout {
    /// A dropout layer with probability `p` (`0 <= p < 1`) and generator seed `seed`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] (`dropout`) when `p` is outside `[0, 1)` or not finite.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::option("dropout", "a probability 0 <= p < 1", p));
        }
        Ok(Dropout {
            p,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The drop probability `p`.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Draws the next `out.len()` mask values into `out` (`0` or `1/(1-p)`, the same values, in
    /// the same order, as [`Dropout::apply`] on a tensor of that many elements), or returns
    /// `false` and draws nothing when `p == 0`. The fused training path uses this.
    pub fn fill_mask(&mut self, out: &mut [f32]) -> bool {
        if self.p == 0.0 {
            return false;
        }
        let scale = 1.0 / (1.0 - self.p);
        for m in out.iter_mut() {
            let u = (self.rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0);
            *m = if u < self.p { 0.0 } else { scale };
        }
        true
    }

    /// Applies dropout to `x` (any shape, f32). With `p == 0` returns `x` unchanged (and draws
    /// nothing). Differentiable in `x` (a multiplication by a constant mask).
    ///
    /// # Errors
    /// [`Error::Backend`] from candle.
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(x.clone());
        }
        let n = x.elem_count();
        let scale = 1.0 / (1.0 - self.p);
        let mut mask = Vec::with_capacity(n);
        for _ in 0..n {
            let u = (self.rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0);
            mask.push(if u < self.p { 0.0 } else { scale });
        }
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok(x.mul(&mask)?)
    }
}
