//! Rotary position embeddings (SPEC section 5): half-rotation ("rotate_half", GPT-NeoX /
//! Hugging Face) convention, base 10000, with Edifice's YaRN-named frequency scaling.
//!
//! Precision (what PyTorch references do): `inv_freq` is computed in f64 and rounded to f32;
//! the angle `pos * inv_freq` is an f32 product (as in Hugging Face's `torch.outer` on f32
//! tensors); `cos`/`sin` of that f32 angle are evaluated in f64 and rounded to f32.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Rotary base (`theta`), 10000 as in RoFormer (Su et al., 2021) and Edifice.
pub const ROPE_BASE: f64 = 10000.0;

/// Plain RoPE frequencies: `inv_freq[i] = base^(-2i/headDim)`, `i < headDim/2`, in f64.
pub fn rope_inv_freq_f64(head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2).map(|i| ROPE_BASE.powf(-((2 * i) as f64) / head_dim as f64)).collect()
}

/// Edifice's `yarn: true` frequencies (SPEC section 5; not the YaRN paper's formula), in f64:
/// `wavelen = 2*pi/inv_freq`, `lowWav = orig`, `highWav = orig/4`,
/// `ramp = clip((wavelen - highWav)/(lowWav - highWav), 0, 1)`,
/// `inv_freq' = inv_freq * (ramp/scale + (1 - ramp))`; no attention temperature.
pub fn edifice_yarn_inv_freq_f64(head_dim: usize, scale: f64, original_max_position: usize) -> Vec<f64> {
    let low_wav = original_max_position as f64 / 1.0;
    let high_wav = original_max_position as f64 / 4.0;
    rope_inv_freq_f64(head_dim)
        .into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let ramp = ((wavelen - high_wav) / (low_wav - high_wav)).clamp(0.0, 1.0);
            f * (ramp / scale + (1.0 - ramp))
        })
        .collect()
}

/// The f32 `inv_freq` [headDim/2] a config uses: `None` without rotary, Edifice yarn when
/// `yarn` (which implies rotary), else plain RoPE.
pub fn inv_freq_for(head_dim: usize, rope: bool, yarn: bool, yarn_scale: f64, yarn_orig: usize) -> Option<Vec<f32>> {
    if yarn {
        Some(edifice_yarn_inv_freq_f64(head_dim, yarn_scale, yarn_orig).into_iter().map(|f| f as f32).collect())
    } else if rope {
        Some(rope_inv_freq_f64(head_dim).into_iter().map(|f| f as f32).collect())
    } else {
        None
    }
}

/// `cos`/`sin` tables `[P, D/2]` (f32) for positions `0..P`.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    positions: usize,
    half: usize,
}

impl Rotary {
    /// Builds the tables for positions `0..positions` from `inv_freq` (`[D/2]`).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] for tables over the buffer limit; [`Error::Backend`] from candle.
    pub fn new(inv_freq: &[f32], positions: usize, device: &Device) -> Result<Self> {
        let half = inv_freq.len();
        let n = crate::error::check_f32_buffer("rotary tables", &[positions, half])?;
        let mut cos = Vec::with_capacity(n);
        let mut sin = Vec::with_capacity(n);
        for p in 0..positions {
            let pf = p as f32;
            for &f in inv_freq {
                let a = (pf * f) as f64;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            sin: Tensor::from_vec(sin, (positions, half), device)?,
            positions,
            half,
        })
    }

    /// Number of positions the tables cover.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// The cosine table `[P, D/2]`.
    pub fn cos(&self) -> &Tensor {
        &self.cos
    }

    /// The sine table `[P, D/2]`.
    pub fn sin(&self) -> &Tensor {
        &self.sin
    }

    /// Rotates `x: [B, N, T, D]` (N query or KV heads) for positions `offset..offset+T`
    /// (`offset` = KV-cache length): `x1 = x[..., :D/2]`, `x2 = x[..., D/2:]`,
    /// `out = concat(x1*cos - x2*sin, x1*sin + x2*cos)`. Returns a contiguous `[B, N, T, D]`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `D != 2 * inv_freq.len()` or the positions exceed the
    /// tables; [`Error::Backend`] from candle.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_b, _n, t, d) = x.dims4()?;
        if d != 2 * self.half {
            return Err(Error::input("rotary input", format!("head_dim {}", 2 * self.half), d));
        }
        if offset + t > self.positions {
            return Err(Error::input(
                "rotary positions",
                format!("at most {} positions", self.positions),
                offset + t,
            ));
        }
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        let x1 = x.narrow(3, 0, self.half)?;
        let x2 = x.narrow(3, self.half, self.half)?;
        let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let r2 = (x1.broadcast_mul(&sin)? + x2.broadcast_mul(&cos)?)?;
        Ok(Tensor::cat(&[&r1, &r2], 3)?)
    }
}
