//! The standalone attention layer (mirrors `gqa_core::attention`). Shapes: `[B,T,H] -> [B,T,H]`.

use gqa_core::{AttentionConfig, GqaAttention};
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::model::load_options;
use crate::tensor::{to_output, to_usize, ForwardOutput};

/// A GQA attention layer (`q_proj`, `k_proj`, `v_proj`, `out_proj`) in wasm memory.
#[wasm_bindgen]
pub struct Attention {
    inner: GqaAttention,
}

/// Attention `LoadOptions` JSON: `{config?: AttentionOptions, strict?, prefix?}` -> the core's
/// `(Option<AttentionConfig>, LoadOptions)`.
fn split_attention_options(json: &str) -> gqa_core::Result<(Option<AttentionConfig>, gqa_core::LoadOptions)> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let mut v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| gqa_core::Error::option("loadOptions", "{config?, strict?, prefix?}", e))?;
    let cfg = match v.as_object_mut().and_then(|o| o.remove("config")) {
        Some(c) if !c.is_null() => Some(AttentionConfig::from_json(&c.to_string())?),
        _ => None,
    };
    Ok((cfg, load_options(&v.to_string())?))
}

#[wasm_bindgen]
impl Attention {
    /// Builds the layer from attention options JSON. Errors: `INVALID_OPTION`.
    pub fn build(json: &str) -> JsResult<Attention> {
        wrap(AttentionConfig::from_json(json).and_then(GqaAttention::new)).map(|inner| Attention { inner })
    }

    /// Loads the layer from safetensors bytes and `LoadOptions` JSON.
    pub fn load(bytes: &[u8], options_json: &str) -> JsResult<Attention> {
        wrap(split_attention_options(options_json).and_then(|(c, o)| GqaAttention::from_safetensors(bytes, c, &o))).map(|inner| Attention { inner })
    }

    /// Forward pass. `dims = [B,T,H]`.
    pub fn forward(&self, data: &[f32], dims: &[u32], lengths: Option<Vec<u32>>) -> JsResult<ForwardOutput> {
        let lengths = lengths.map(|l| to_usize(&l));
        wrap(self.inner.forward_f32(data, &to_usize(dims), lengths.as_deref())).map(to_output)
    }

    /// The weights as safetensors bytes.
    pub fn save(&self) -> JsResult<Vec<u8>> {
        wrap(self.inner.to_safetensors())
    }

    /// Every option as JSON.
    pub fn config(&self) -> String {
        self.inner.config().to_json()
    }

    /// Exact parameter count.
    #[wasm_bindgen(js_name = paramCount)]
    pub fn param_count(&self) -> f64 {
        self.inner.params().total_elements() as f64
    }

    /// FNV-1a 64-bit digest of every weight (16 hex digits).
    #[wasm_bindgen(js_name = weightsDigest)]
    pub fn weights_digest(&self) -> JsResult<String> {
        wrap(self.inner.weights_digest()).map(|d| format!("{d:016x}"))
    }
}
