//! The model (mirrors `gqa_core::model` + `gqa_core::weights`): build, load, forward, save,
//! config, digest. Shapes: input `[B,T,E]`, output `[B,H]` or `[B,T,H]` (`all`).

use gqa_core::{GqaConfig, GqaModel, LoadOptions};
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::tensor::{to_output, to_usize, ForwardOutput};

/// Parses `LoadOptions` JSON (`{config?, strict?, prefix?}`, TypeScript names).
pub(crate) fn load_options(json: &str) -> gqa_core::Result<LoadOptions> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| gqa_core::Error::option("loadOptions", "{config?, strict?, prefix?}", e))
}

/// A GQA model in wasm memory (call `free()` to release it).
#[wasm_bindgen]
pub struct Model {
    inner: GqaModel,
}

#[wasm_bindgen]
impl Model {
    /// Builds a model from options JSON (weights from `seed`). Errors: `INVALID_OPTION`, `OUT_OF_MEMORY`.
    pub fn build(json: &str) -> JsResult<Model> {
        wrap(GqaConfig::from_json(json).and_then(GqaModel::new)).map(|inner| Model { inner })
    }

    /// Loads a model from safetensors bytes and `LoadOptions` JSON.
    pub fn load(bytes: &[u8], options_json: &str) -> JsResult<Model> {
        wrap(load_options(options_json).and_then(|o| GqaModel::from_safetensors(bytes, &o))).map(|inner| Model { inner })
    }

    /// Forward pass. `dims = [B,T,E]`; `lengths` one per batch row.
    pub fn forward(&self, data: &[f32], dims: &[u32], lengths: Option<Vec<u32>>) -> JsResult<ForwardOutput> {
        let lengths = lengths.map(|l| to_usize(&l));
        wrap(self.inner.forward_f32(data, &to_usize(dims), lengths.as_deref())).map(to_output)
    }

    /// The weights as safetensors bytes (canonical names, F32, `gqa_config` metadata).
    pub fn save(&self) -> JsResult<Vec<u8>> {
        wrap(self.inner.to_safetensors())
    }

    /// Every option as JSON (TypeScript names).
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
