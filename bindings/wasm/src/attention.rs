//! The standalone attention layer (mirrors `gqa_core::attention`). Shapes: `[B,T,H] -> [B,T,H]`.

use gqa_core::{AttentionConfig, GqaAttention};
use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::tensor::{run, settle, Lengths, Out};
use crate::value::{from_js, to_js};

/// A GQA attention layer (`q_proj`, `k_proj`, `v_proj`, `out_proj`) in wasm memory.
#[wasm_bindgen]
pub struct Attention {
    inner: GqaAttention,
}

#[wasm_bindgen]
impl Attention {
    /// Builds the layer from attention options. Errors: `INVALID_OPTION`.
    pub fn build(options: JsValue) -> JsResult<Attention> {
        wrap(
            from_js(options, "attention options")
                .and_then(AttentionConfig::from_value)
                .and_then(GqaAttention::new)
                .and_then(|a| a.placed(&gqa_core::device::current())),
        )
        .map(|inner| Attention { inner })
    }

    /// Loads the layer from safetensors bytes and the load options
    /// (`{config?, hfConfig?, layer?, strict?, prefix?}`, see `GqaAttention::load_value`): a gqa
    /// file (`q_proj.weight`, ...) or, with `hfConfig` + `layer`, one decoder layer's
    /// `self_attn` of a Hugging Face checkpoint.
    pub fn load(bytes: &[u8], options: JsValue) -> JsResult<Attention> {
        wrap(
            from_js(options, "loadOptions")
                .and_then(|o| GqaAttention::load_value(bytes, o))
                .and_then(|a| a.placed(&gqa_core::device::current())),
        )
        .map(|inner| Attention { inner })
    }

    /// Forward pass. `dims = [B,T,H]`; `position_offset`: absolute position of position 0
    /// (rotary; an integer, default 0).
    pub fn forward(
        &self,
        data: &[f32],
        dims: &[u32],
        lengths: Lengths,
        position_offset: Option<f64>,
    ) -> Out {
        let at = gqa_core::position_offset(position_offset);
        run(
            |x, d, l| self.inner.forward_f32_at(x, d, l, at?),
            data,
            dims,
            lengths,
        )
    }

    /// `forward` as a promise (settled before it returns: wasm has no thread of its own).
    #[wasm_bindgen(js_name = forwardAsync, unchecked_return_type = "Promise<ForwardOutput>")]
    pub fn forward_async(
        &self,
        data: &[f32],
        dims: &[u32],
        lengths: Lengths,
        position_offset: Option<f64>,
    ) -> Promise {
        settle(self.forward(data, dims, lengths, position_offset))
    }

    /// The weights as safetensors bytes.
    pub fn save(&self) -> JsResult<Vec<u8>> {
        wrap(self.inner.to_safetensors())
    }

    /// Every option (TypeScript names).
    pub fn config(&self) -> JsResult<JsValue> {
        to_js(self.inner.config())
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
