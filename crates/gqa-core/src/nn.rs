//! The two parameterised building blocks: `nn.Linear`-style dense layers and LayerNorm.
//!
//! Both hold candle [`Var`]s shared with the model's [`crate::ParamStore`]. Every forward takes
//! `track`: `true` builds the autograd graph through the `Var`s (training), `false` uses
//! detached views of the same storage (inference: no graph, intermediates freed early).

use candle_core::{Tensor, Var, D};

use crate::error::Result;
use crate::kernels::fused;
use crate::params::ParamStore;

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
    /// The layer whose parameters are `{name}.weight` and `{name}.bias` in `store` (the same
    /// `Var`s, so training the store trains the layer); the store is built from the parameter
    /// table ([`crate::layout`], [`ParamStore::init`]).
    ///
    /// # Errors
    /// [`crate::Error::MissingParameter`] when the store lacks either.
    pub fn from_store(store: &ParamStore, name: &str) -> Result<Self> {
        Ok(Linear {
            weight: store.get(&format!("{name}.weight"))?.clone(),
            bias: store.get(&format!("{name}.bias"))?.clone(),
        })
    }

    /// `x: [..., in]` -> `[..., out]`.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] on shape mismatch (a bug) or backend failure.
    pub fn forward(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        let w = value(&self.weight, track);
        let b = value(&self.bias, track);
        if !track && fused::fused_ok(x) {
            return fused::linear(x, &w, &b, None, false);
        }
        let (out, inp) = w.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, inp))?.matmul(&w.t()?)?.broadcast_add(&b)?;
        *dims.last_mut().expect("rank >= 1") = out;
        Ok(y.reshape(dims)?)
    }

    /// `GELU(x W^T + b)` with the exact GELU `x * 0.5 * (1 + erf(x / sqrt(2)))`: candle's
    /// `gelu_erf` when `track`, else (CPU, f32) one fused bias + GELU pass after the matmul.
    ///
    /// # Errors
    /// As [`Linear::forward`].
    pub fn forward_gelu(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        if !track && fused::fused_ok(x) {
            return fused::linear(
                x,
                &value(&self.weight, false),
                &value(&self.bias, false),
                None,
                true,
            );
        }
        Ok(self.forward(x, track)?.gelu_erf()?)
    }

    /// `residual + (x W^T + b)` (`residual: [..., out]`): the bias and the residual add are one
    /// in-place pass after the matmul when not tracking (CPU, f32).
    ///
    /// # Errors
    /// As [`Linear::forward`]; shape mismatch of `residual`.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor, track: bool) -> Result<Tensor> {
        if !track && fused::fused_ok(x) {
            return fused::linear(
                x,
                &value(&self.weight, false),
                &value(&self.bias, false),
                Some(residual),
                false,
            );
        }
        Ok((residual + self.forward(x, track)?)?)
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
    /// The LayerNorm whose gamma and beta are `{name}.weight` and `{name}.bias` in `store` (see
    /// [`Linear::from_store`]).
    ///
    /// # Errors
    /// [`crate::Error::MissingParameter`] when the store lacks either.
    pub fn from_store(store: &ParamStore, name: &str) -> Result<Self> {
        let l = Linear::from_store(store, name)?;
        Ok(LayerNorm {
            weight: l.weight,
            bias: l.bias,
        })
    }

    /// `x: [..., H]` -> `[..., H]`.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] from candle.
    pub fn forward(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        let g = value(&self.weight, track);
        let b = value(&self.bias, track);
        if !track && fused::fused_ok(x) {
            return fused::layer_norm(x, &g, &b, LAYER_NORM_EPS);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (var + LAYER_NORM_EPS)?.sqrt()?.recip()?;
        Ok(xc
            .broadcast_mul(&inv)?
            .broadcast_mul(&g)?
            .broadcast_add(&b)?)
    }
}
