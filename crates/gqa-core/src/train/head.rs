//! Task heads on top of the model output (`[B, H]`): classification and regression.

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::glorot_uniform;

/// Loss used by a regression head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegressionLoss {
    /// Mean squared error (PyTorch `F.mse_loss`, mean over every element).
    #[default]
    Mse,
    /// Huber loss with `huberDelta` (PyTorch `F.huber_loss`, mean over every element).
    Huber,
}

/// What a head predicts. Stored as JSON in the safetensors metadata key `gqa_head`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadConfig {
    /// `logits = out W^T + b : [B, numClasses]`, softmax cross-entropy.
    #[serde(rename_all = "camelCase")]
    Classification {
        /// Number of classes `C` (>= 2).
        num_classes: usize,
        /// Optional per-class loss weights `[C]` (PyTorch `cross_entropy(weight=...)` semantics).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "crate::config::ser_f32s_decimal"
        )]
        class_weights: Option<Vec<f32>>,
    },
    /// `y = out W^T + b : [B, outDim]`, MSE or Huber.
    #[serde(rename_all = "camelCase")]
    Regression {
        /// Output width `K` (>= 1).
        out_dim: usize,
        /// Loss, default `mse`.
        #[serde(default)]
        loss: RegressionLoss,
        /// Huber threshold `delta` (> 0), default 1.0.
        #[serde(default = "one")]
        huber_delta: f64,
    },
}

fn one() -> f64 {
    1.0
}

impl HeadConfig {
    /// Parses and validates a head from JSON (`{"type":"classification","numClasses":9}`).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `head` or the bad field.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_value(crate::config::json_text(json, "head")?)
    }

    /// [`HeadConfig::from_json`] of a head given as a structured value (what the bindings pass).
    ///
    /// # Errors
    /// As [`HeadConfig::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        let cfg: HeadConfig = crate::config::parse_value(
            value,
            "head",
            "head.",
            "a head field: {type: \"classification\", numClasses, classWeights?} or {type: \"regression\", outDim, loss?, huberDelta?}",
        )?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The head as JSON (what `gqa_head` metadata holds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("head config serialises")
    }

    /// Number of outputs `C` or `K`.
    pub fn out_dim(&self) -> usize {
        match self {
            HeadConfig::Classification { num_classes, .. } => *num_classes,
            HeadConfig::Regression { out_dim, .. } => *out_dim,
        }
    }

    /// Checks the head's rules.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for `numClasses < 2`, `outDim < 1`, class weights of the wrong
    /// length or negative/non-finite, `huberDelta <= 0`.
    pub fn validate(&self) -> Result<()> {
        match self {
            HeadConfig::Classification {
                num_classes,
                class_weights,
            } => {
                if *num_classes < 2 {
                    return Err(Error::option(
                        "head.numClasses",
                        "an integer >= 2",
                        num_classes,
                    ));
                }
                if let Some(w) = class_weights {
                    if w.len() != *num_classes {
                        return Err(Error::option(
                            "head.classWeights",
                            format!("{num_classes} weights (one per class)"),
                            format!("{} weights", w.len()),
                        ));
                    }
                    if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                        return Err(Error::option(
                            "head.classWeights",
                            "finite weights >= 0",
                            bad,
                        ));
                    }
                }
            }
            HeadConfig::Regression {
                out_dim,
                huber_delta,
                ..
            } => {
                if *out_dim < 1 {
                    return Err(Error::option("head.outDim", "an integer >= 1", out_dim));
                }
                if !(*huber_delta > 0.0 && huber_delta.is_finite()) {
                    return Err(Error::option(
                        "head.huberDelta",
                        "a finite number > 0",
                        huber_delta,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A linear head: `y = x W^T + b`, `W: [K, H]` (`head.weight`), `b: [K]` (`head.bias`).
#[derive(Debug)]
pub struct Head {
    /// The head's options.
    pub cfg: HeadConfig,
    /// `head.weight`, `[K, H]`, F32.
    pub weight: Var,
    /// `head.bias`, `[K]`, F32.
    pub bias: Var,
    /// The head's bytes under the memory budget ([`crate::memory`]), reserved before its
    /// weights are allocated.
    _memory: std::sync::Arc<crate::memory::Reservation>,
}

/// Parameter names of a head in safetensors files.
pub const HEAD_WEIGHT: &str = "head.weight";
/// See [`HEAD_WEIGHT`].
pub const HEAD_BIAS: &str = "head.bias";
/// Metadata key holding [`HeadConfig::to_json`].
pub const HEAD_METADATA_KEY: &str = "gqa_head";

impl Head {
    /// A new head on `hidden` inputs: Glorot-uniform weight (Axon's dense default) from
    /// `(seed, stream)`, zero bias.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] from [`HeadConfig::validate`]; backend errors.
    pub fn new(
        cfg: HeadConfig,
        hidden: usize,
        seed: u64,
        stream: u64,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let k = cfg.out_dim();
        let memory = Self::reserve(k, hidden)?;
        let w = glorot_uniform(seed, stream, k, hidden);
        let weight = Var::from_vec(w, (k, hidden), device)?;
        let bias = Var::zeros(k, DType::F32, device)?;
        Ok(Head {
            cfg,
            weight,
            bias,
            _memory: memory,
        })
    }

    /// Reserves a head of `k` outputs on `hidden` inputs under the memory budget, before
    /// anything is allocated: `head.weight [K, H]` must be a buffer that can exist, and the
    /// weight and the bias must fit next to what is in use.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] naming `head.weight` (a buffer too large to exist) or `head
    /// parameters` (no room under the budget).
    pub fn reserve(k: usize, hidden: usize) -> Result<std::sync::Arc<crate::memory::Reservation>> {
        crate::error::check_f32_buffer(HEAD_WEIGHT, &[k, hidden])?;
        let bytes = crate::memory::f32_bytes(&[k, hidden.saturating_add(1)]);
        Ok(std::sync::Arc::new(crate::memory::reserve(
            "head parameters",
            bytes,
        )?))
    }

    /// A head from given tensors, shapes checked.
    ///
    /// # Errors
    /// [`Error::TensorMismatch`] naming `head.weight`/`head.bias` with expected and found shapes.
    pub fn from_tensors(
        cfg: HeadConfig,
        hidden: usize,
        weight: &Tensor,
        bias: &Tensor,
    ) -> Result<Self> {
        cfg.validate()?;
        let k = cfg.out_dim();
        for (name, t, want) in [
            (HEAD_WEIGHT, weight, vec![k, hidden]),
            (HEAD_BIAS, bias, vec![k]),
        ] {
            if t.dims() != want.as_slice() {
                return Err(Error::TensorMismatch {
                    name: name.into(),
                    field: "shape".into(),
                    expected: format!("{want:?}"),
                    found: format!("{:?}", t.dims()),
                });
            }
        }
        let memory = Self::reserve(k, hidden)?;
        Ok(Head {
            cfg,
            weight: Var::from_tensor(&weight.to_dtype(DType::F32)?)?,
            bias: Var::from_tensor(&bias.to_dtype(DType::F32)?)?,
            _memory: memory,
        })
    }

    /// A copy of this head on `device` (f32 there: the head is small and its outputs are what
    /// callers read).
    ///
    /// # Errors
    /// [`Error::Backend`] from the device.
    pub fn placed(&self, device: &Device) -> Result<Self> {
        let copy =
            |v: &Var| -> Result<Var> { Ok(Var::from_tensor(&v.as_tensor().to_device(device)?)?) };
        Ok(Head {
            cfg: self.cfg.clone(),
            weight: copy(&self.weight)?,
            bias: copy(&self.bias)?,
            _memory: self._memory.clone(),
        })
    }

    /// Applies the head.
    ///
    /// # Shapes
    /// `x: [B, H]` -> `[B, K]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }

    /// `(name, var)` pairs in a fixed order (weight, bias).
    pub fn vars(&self) -> Vec<(String, Var)> {
        vec![
            (HEAD_WEIGHT.into(), self.weight.clone()),
            (HEAD_BIAS.into(), self.bias.clone()),
        ]
    }
}
