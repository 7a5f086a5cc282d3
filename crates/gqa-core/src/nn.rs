//! The two parameterised building blocks: `nn.Linear`-style dense layers and LayerNorm.
//!
//! Both hold candle [`Var`]s shared with the model's [`crate::ParamStore`]. Every forward takes
//! `track`: `true` builds the autograd graph through the `Var`s (training), `false` uses
//! detached views of the same storage (inference: no graph, intermediates freed early).

use candle_core::{DType, Device, Tensor, Var, D};

use crate::error::Result;
use crate::init::glorot_uniform;

/// The tensor of a `Var`, attached to the graph (`track`) or detached.
pub(crate) fn value(v: &Var, track: bool) -> Tensor {
    if track {
        v.as_tensor().clone()
    } else {
        v.as_detached_tensor()
    }
}

/// Dense layer `y = x W^T + b`, `W: [out, in]` (PyTorch layout), `b: [out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Var,
    /// `[out]`.
    pub bias: Var,
}

impl Linear {
    /// Glorot-uniform weight from (`seed`, `stream`), zero bias.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] from candle.
    pub fn init(seed: u64, stream: u64, out: usize, inp: usize, device: &Device) -> Result<Self> {
        let w = glorot_uniform(seed, stream, out, inp);
        Ok(Linear {
            weight: Var::from_vec(w, (out, inp), device)?,
            bias: Var::zeros(out, DType::F32, device)?,
        })
    }

    /// `x: [..., in]` -> `[..., out]`.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] on shape mismatch (a bug) or backend failure.
    pub fn forward(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        let w = value(&self.weight, track);
        let b = value(&self.bias, track);
        let (out, inp) = w.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, inp))?.matmul(&w.t()?)?.broadcast_add(&b)?;
        *dims.last_mut().expect("rank >= 1") = out;
        Ok(y.reshape(dims)?)
    }
}

/// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta`, biased
/// variance, `eps = 1e-5` (PyTorch `nn.LayerNorm` / Axon `layer_norm` defaults).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// gamma `[H]`.
    pub weight: Var,
    /// beta `[H]`.
    pub bias: Var,
}

/// LayerNorm epsilon.
pub const LAYER_NORM_EPS: f64 = 1e-5;

impl LayerNorm {
    /// gamma = 1, beta = 0.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] from candle.
    pub fn init(h: usize, device: &Device) -> Result<Self> {
        Ok(LayerNorm { weight: Var::ones(h, DType::F32, device)?, bias: Var::zeros(h, DType::F32, device)? })
    }

    /// `x: [..., H]` -> `[..., H]`.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] from candle.
    pub fn forward(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        let g = value(&self.weight, track);
        let b = value(&self.bias, track);
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (var + LAYER_NORM_EPS)?.sqrt()?.recip()?;
        Ok(xc.broadcast_mul(&inv)?.broadcast_mul(&g)?.broadcast_add(&b)?)
    }
}
