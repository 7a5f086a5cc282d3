//! The pre-norm transformer block (SPEC section 2, step 2).
//!
//! `h = h + dropout(attn(LayerNorm(h)))`, `h = h + dropout(ffn_down(GELU(ffn_up(LayerNorm(h)))))`
//! with the exact GELU `x * 0.5 * (1 + erf(x / sqrt(2)))` (Hendrycks & Gimpel, 2016; candle's
//! `gelu_erf`, which has a backward pass) and an FFN inner size of `4 * hiddenSize`.

use candle_core::{Device, Tensor};

use crate::attention::{AttentionConfig, AttnMask, GqaAttention};
use crate::dropout::Dropout;
use crate::error::Result;
use crate::nn::{LayerNorm, Linear};
use crate::params::ParamStore;
use crate::rope::Rotary;

/// Parameters per block (canonical order within `blocks.{l}.`).
pub const BLOCK_PARAM_NAMES: [&str; 16] = [
    "attn_norm.weight",
    "attn_norm.bias",
    "attn.q_proj.weight",
    "attn.q_proj.bias",
    "attn.k_proj.weight",
    "attn.k_proj.bias",
    "attn.v_proj.weight",
    "attn.v_proj.bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ffn_norm.weight",
    "ffn_norm.bias",
    "ffn_up.weight",
    "ffn_up.bias",
    "ffn_down.weight",
    "ffn_down.bias",
];

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
    /// Initialises a block whose first parameter has stream `first_stream`, pushing its 16
    /// parameters (named `{prefix}{BLOCK_PARAM_NAMES[i]}`) into `store`.
    pub(crate) fn init(cfg: &AttentionConfig, first_stream: u64, prefix: &str, store: &mut ParamStore, device: &Device) -> Result<Self> {
        let h = cfg.hidden_size;
        let s = first_stream;
        let attn_norm = LayerNorm::init(h, device)?;
        let attn = GqaAttention::init(cfg.clone(), s + 2, device)?;
        let ffn_norm = LayerNorm::init(h, device)?;
        let ffn_up = Linear::init(cfg.seed, s + 12, 4 * h, h, device)?;
        let ffn_down = Linear::init(cfg.seed, s + 14, h, 4 * h, device)?;
        let block = GqaBlock { attn_norm, attn, ffn_norm, ffn_up, ffn_down };
        for (name, var) in BLOCK_PARAM_NAMES.iter().zip(block.vars()) {
            store.push(format!("{prefix}{name}"), var)?;
        }
        Ok(block)
    }

    /// The 16 parameter `Var`s in the order of [`BLOCK_PARAM_NAMES`].
    fn vars(&self) -> Vec<candle_core::Var> {
        let mut v = vec![self.attn_norm.weight.clone(), self.attn_norm.bias.clone()];
        v.extend(self.attn.params().iter().map(|(_, var)| var.clone()));
        v.extend([
            self.ffn_norm.weight.clone(),
            self.ffn_norm.bias.clone(),
            self.ffn_up.weight.clone(),
            self.ffn_up.bias.clone(),
            self.ffn_down.weight.clone(),
            self.ffn_down.bias.clone(),
        ]);
        v
    }

    /// `h: [B,T,H]` -> `[B,T,H]`. `dropout` (training) is applied to the attention and FFN
    /// outputs before each residual add; `None` = inference. `track` builds the autograd graph.
    ///
    /// # Shapes
    /// - `h`: `[B, T, H]`; `mask`: `[1|B, T, T]`; output `[B, T, H]`
    ///
    /// # Errors
    /// Backend and rotary errors.
    pub fn forward(&self, h: &Tensor, mask: &AttnMask, rotary: Option<&Rotary>, mut dropout: Option<&mut Dropout>, track: bool) -> Result<Tensor> {
        let a = self.attn_norm.forward(h, track)?;
        if !track && dropout.is_none() {
            if let Some(h) = self.attn.forward_fused_residual(&a, h, mask, rotary)? {
                return self.ffn_residual(&h, None, false);
            }
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
    pub fn ffn_residual(&self, h: &Tensor, dropout: Option<&mut Dropout>, track: bool) -> Result<Tensor> {
        let f = self.ffn_norm.forward(h, track)?;
        let f = self.ffn_up.forward_gelu(&f, track)?;
        match dropout {
            Some(d) => Ok((h + d.apply(&self.ffn_down.forward(&f, track)?)?)?),
            None => self.ffn_down.forward_residual(&f, h, track),
        }
    }
}
