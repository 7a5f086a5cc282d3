//! The pre-norm transformer block (SPEC section 2, step 2).
//!
//! `h = h + dropout(attn(LayerNorm(h)))`, `h = h + dropout(ffn_down(GELU(ffn_up(LayerNorm(h)))))`
//! with the exact GELU `x * 0.5 * (1 + erf(x / sqrt(2)))` (Hendrycks & Gimpel, 2016; candle's
//! `gelu_erf`, which has a backward pass) and an FFN inner size of `4 * hiddenSize`.

use candle_core::{Device, Tensor};

use crate::attention::{AttentionConfig, GqaAttention};
use crate::compute::Engine;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::layout::BlockModule;
use crate::mask::Mask;
use crate::nn::{LayerNorm, Linear};
use crate::params::ParamStore;
use crate::rope::Rotary;

/// One pre-norm block: `attn_norm`, `attn`, `ffn_norm`, `ffn_up [4H,H]`, `ffn_down [H,4H]`.
#[derive(Debug, Clone)]
pub struct GqaBlock {
    /// LayerNorm before attention.
    pub attn_norm: LayerNorm,
    /// The grouped-query attention layer.
    pub attn: GqaAttention,
    /// LayerNorm before the FFN.
    pub ffn_norm: LayerNorm,
    /// FFN up projection `[4H, H]`.
    pub ffn_up: Linear,
    /// FFN down projection `[H, 4H]`.
    pub ffn_down: Linear,
}

impl GqaBlock {
    /// The block whose parameters are `{prefix}attn_norm.weight` ... `{prefix}ffn_down.bias`
    /// in `store` (names of [`crate::layout::BlockModule`]), sharing the store's `Var`s.
    ///
    /// # Errors
    /// [`crate::Error::MissingParameter`] when the store lacks one.
    pub(crate) fn from_store(
        cfg: &AttentionConfig,
        store: &ParamStore,
        prefix: &str,
        device: &Device,
        engine: &Engine,
    ) -> Result<Self> {
        let name = |m: BlockModule| format!("{prefix}{}", m.name());
        let norm =
            |m| Ok::<_, crate::Error>(LayerNorm::from_store(store, &name(m))?.with_engine(engine));
        let lin =
            |m| Ok::<_, crate::Error>(Linear::from_store(store, &name(m))?.with_engine(engine));
        Ok(GqaBlock {
            attn_norm: norm(BlockModule::AttnNorm)?,
            attn: GqaAttention::from_store(
                cfg.clone(),
                store.sub(&format!("{prefix}attn."))?,
                device,
                engine,
            )?,
            ffn_norm: norm(BlockModule::FfnNorm)?,
            ffn_up: lin(BlockModule::FfnUp)?,
            ffn_down: lin(BlockModule::FfnDown)?,
        })
    }

    /// `h: [B,T,H]` -> `[B,T,H]`. `dropout` (training) is applied to the attention and FFN
    /// outputs before each residual add; `None` = inference. `track` builds the autograd graph.
    ///
    /// # Shapes
    /// - `h`: `[B, T, H]`; `mask`: [`Mask::padded`] over `T`; output `[B, T, H]`
    ///
    /// # Errors
    /// Backend and rotary errors.
    pub fn forward(
        &self,
        h: &Tensor,
        mask: &Mask,
        rotary: Option<&Rotary>,
        mut dropout: Option<&mut Dropout>,
        track: bool,
    ) -> Result<Tensor> {
        let a = self.attn_norm.forward(h, track)?;
        if dropout.is_none() {
            let h = self.attn.forward_residual(&a, h, mask, rotary, track)?;
            return self.ffn_residual(&h, None, track);
        }
        let mut attn = self.attn.forward_t(&a, mask, rotary, track)?;
        if let Some(d) = dropout.as_deref_mut() {
            attn = d.apply(&attn)?;
        }
        let h = (h + attn)?;
        self.ffn_residual(&h, dropout, track)
    }

    /// Second half of the block: `h + dropout(ffn_down(GELU(ffn_up(LayerNorm(h)))))`,
    /// `h: [B,T,H]`. A KV-cache session runs the attention half itself (with
    /// [`GqaAttention::qkv`] / [`GqaAttention::attend`]) and then calls this.
    ///
    /// # Errors
    /// Backend errors.
    pub fn ffn_residual(
        &self,
        h: &Tensor,
        dropout: Option<&mut Dropout>,
        track: bool,
    ) -> Result<Tensor> {
        let f = self.ffn_norm.forward(h, track)?;
        let f = self.ffn_up.forward_gelu(&f, track)?;
        match dropout {
            Some(d) => Ok((h + d.apply(&self.ffn_down.forward(&f, track)?)?)?),
            None => self.ffn_down.forward_residual(&f, h, track),
        }
    }
}
