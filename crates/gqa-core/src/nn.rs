//! The two parameterised building blocks: `nn.Linear`-style dense layers and LayerNorm.
//!
//! Both hold candle [`Var`]s shared with the model's [`crate::ParamStore`] and the
//! [`Engine`] that computes them (chosen once with the model, [`crate::compute`]). Every forward
//! takes `track`: `true` builds the autograd graph through the `Var`s (training), `false` uses
//! detached views of the same storage (inference: no graph, intermediates freed early).

use candle_core::{Tensor, Var};

use crate::compute::{Engine, Epilogue};
use crate::error::Result;
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
    engine: Engine,
}

impl Linear {
    /// The layer over `weight: [out, in]` and `bias: [out]`, computed by
    /// [`Engine::select`] for their device.
    pub fn new(weight: Var, bias: Var) -> Self {
        let engine = engine_of(&weight, &bias);
        Linear {
            weight,
            bias,
            engine,
        }
    }

    /// This layer computed by `engine`.
    pub fn with_engine(mut self, engine: &Engine) -> Self {
        self.engine = engine.clone();
        self
    }

    /// The layer whose parameters are `{name}.weight` and `{name}.bias` in `store` (the same
    /// `Var`s, so training the store trains the layer); the store is built from the parameter
    /// table ([`crate::layout`], [`ParamStore::init`]).
    ///
    /// # Errors
    /// [`crate::Error::MissingParameter`] when the store lacks either.
    pub fn from_store(store: &ParamStore, name: &str) -> Result<Self> {
        Ok(Linear::new(
            store.get(&format!("{name}.weight"))?.clone(),
            store.get(&format!("{name}.bias"))?.clone(),
        ))
    }

    /// `x: [..., in]` -> `[..., out]`.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] on shape mismatch (a bug) or backend failure.
    pub fn forward(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        self.apply(x, Epilogue::None, track)
    }

    fn apply(&self, x: &Tensor, epi: Epilogue<'_>, track: bool) -> Result<Tensor> {
        let w = value(&self.weight, track);
        let b = value(&self.bias, track);
        self.engine.layer(track).linear(x, &w, &b, epi)
    }

    /// `GELU(x W^T + b)` with the exact GELU `x * 0.5 * (1 + erf(x / sqrt(2)))`: candle's
    /// `gelu_erf` when `track`, else (CPU, f32) one fused bias + GELU pass after the matmul.
    ///
    /// # Errors
    /// As [`Linear::forward`].
    pub fn forward_gelu(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        self.apply(x, Epilogue::Gelu, track)
    }

    /// `residual + (x W^T + b)` (`residual: [..., out]`): the bias and the residual add are one
    /// in-place pass after the matmul when not tracking (CPU, f32).
    ///
    /// # Errors
    /// As [`Linear::forward`]; shape mismatch of `residual`.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor, track: bool) -> Result<Tensor> {
        self.apply(x, Epilogue::Residual(residual), track)
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
    engine: Engine,
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
        Ok(LayerNorm::new(l.weight, l.bias))
    }

    /// The LayerNorm of gamma and beta (`[H]` each), computed by [`Engine::select`] for their
    /// device.
    pub fn new(weight: Var, bias: Var) -> Self {
        let engine = engine_of(&weight, &bias);
        LayerNorm {
            weight,
            bias,
            engine,
        }
    }

    /// This LayerNorm computed by `engine`.
    pub fn with_engine(mut self, engine: &Engine) -> Self {
        self.engine = engine.clone();
        self
    }

    /// `x: [..., H]` -> `[..., H]`.
    ///
    /// # Errors
    /// [`crate::Error::Backend`] from candle.
    pub fn forward(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        let g = value(&self.weight, track);
        let b = value(&self.bias, track);
        self.engine
            .layer(track)
            .layer_norm(x, &g, &b, LAYER_NORM_EPS)
    }
}

/// The engine of a layer built from two parameters alone (see [`Engine::select`]).
fn engine_of(weight: &Var, bias: &Var) -> Engine {
    Engine::select(weight.device(), [weight.dtype(), bias.dtype()])
}
