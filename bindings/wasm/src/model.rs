//! The model (mirrors `gqa_core::model` + `gqa_core::weights` + `gqa_core::train::TaskModel`):
//! build (optionally with a task head), load, forward, predict, save, config, digest. Shapes:
//! input `[B,T,E]`, output `[B,H]` or `[B,T,H]` (`all`), head output `[B,K]`. Training and
//! evaluation live in [`crate::train`].

use std::rc::Rc;

use gqa_core::train::{HeadConfig, TaskModel};
use gqa_core::{GqaConfig, LoadOptions, OnnxOptions};
use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::tensor::{run, settle, Lengths, Out};
use crate::value::{from_js, from_js_opt, to_js};

/// A GQA model (backbone plus optional head: a `gqa_core::train::TaskModel`) in wasm memory
/// (call `free()` to release it; a `Trainer` keeps its own reference).
#[wasm_bindgen]
pub struct Model {
    pub(crate) inner: Rc<TaskModel>,
}

#[wasm_bindgen]
impl Model {
    /// Builds a model from options (weights from `seed`) and an optional head
    /// (`{type: "classification", numClasses: C}` or `{type: "regression", outDim: K, ...}`).
    /// Errors: `INVALID_OPTION`, `OUT_OF_MEMORY`.
    pub fn build(options: JsValue, head: JsValue) -> JsResult<Model> {
        let r = (|| {
            let head = from_js_opt(head, "head")?
                .map(HeadConfig::from_value)
                .transpose()?;
            TaskModel::new(GqaConfig::from_value(from_js(options, "options")?)?, head)?
                .placed(&gqa_core::device::current())
        })();
        wrap(r).map(|m| Model { inner: Rc::new(m) })
    }

    /// Loads a model (and its head, from `gqa_head` metadata) from safetensors bytes and
    /// `LoadOptions`.
    pub fn load(bytes: &[u8], options: JsValue) -> JsResult<Model> {
        wrap(
            from_js(options, "loadOptions")
                .and_then(LoadOptions::from_value)
                .and_then(|o| TaskModel::from_safetensors(bytes, &o))
                .and_then(|m| m.placed(&gqa_core::device::current())),
        )
        .map(|m| Model { inner: Rc::new(m) })
    }

    /// Forward pass. `dims = [B,T,E]`; `lengths` one per batch row; `position_offset`: absolute
    /// position of position 0 (rotary; an integer, default 0).
    pub fn forward(
        &self,
        data: &[f32],
        dims: &[u32],
        lengths: Lengths,
        position_offset: Option<f64>,
    ) -> Out {
        let at = gqa_core::position_offset(position_offset);
        run(
            |x, d, l| self.inner.model.forward_f32_at(x, d, l, at?),
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

    /// Head outputs `[B,K]`: class probabilities (classification) or values (regression).
    /// `dims = [B,T,E]`. Errors: `INVALID_OPTION` (no head), `INVALID_INPUT`.
    pub fn predict(&self, data: &[f32], dims: &[u32], lengths: Lengths) -> Out {
        run(
            |x, d, l| self.inner.predict_f32(x, d, l),
            data,
            dims,
            lengths,
        )
    }

    /// `predict` as a promise (settled before it returns).
    #[wasm_bindgen(js_name = predictAsync, unchecked_return_type = "Promise<ForwardOutput>")]
    pub fn predict_async(&self, data: &[f32], dims: &[u32], lengths: Lengths) -> Promise {
        settle(self.predict(data, dims, lengths))
    }

    /// Whether the model has a task head.
    #[wasm_bindgen(js_name = hasHead)]
    pub fn has_head(&self) -> bool {
        self.inner.head.is_some()
    }

    /// The head's options (what `gqa_head` metadata holds), or `null` without a head.
    #[wasm_bindgen(js_name = headConfig)]
    pub fn head_config(&self) -> JsResult<JsValue> {
        to_js(&self.inner.head.as_ref().map(|h| &h.cfg))
    }

    /// The weights as safetensors bytes (canonical names, F32, `gqa_config` metadata; with a
    /// head also `head.weight`, `head.bias` and `gqa_head` metadata).
    pub fn save(&self) -> JsResult<Vec<u8>> {
        wrap(self.inner.to_safetensors())
    }

    /// The model (and its head) as ONNX bytes (`gqa_core::onnx::export`: opset 17, inputs
    /// `input` `[batch, seq, embedDim]` f32 and `lengths` `[batch]` i64, output `output`, plus
    /// `probabilities` / `values` with a head). `options`: `OnnxOptions` (`{}`).
    /// Errors: `INVALID_OPTION` (options, a model too large for one ONNX file), `OUT_OF_MEMORY`.
    #[wasm_bindgen(js_name = exportOnnx)]
    pub fn export_onnx(&self, options: JsValue) -> JsResult<Vec<u8>> {
        wrap(
            from_js(options, "onnxOptions")
                .and_then(OnnxOptions::from_value)
                .and_then(|o| self.inner.to_onnx(&o)),
        )
    }

    /// Every option (TypeScript names).
    pub fn config(&self) -> JsResult<JsValue> {
        to_js(self.inner.model.config())
    }

    /// Exact parameter count, the head's included.
    #[wasm_bindgen(js_name = paramCount)]
    pub fn param_count(&self) -> f64 {
        self.inner.param_count() as f64
    }

    /// FNV-1a 64-bit digest of every backbone weight (16 hex digits; the head is not included).
    #[wasm_bindgen(js_name = weightsDigest)]
    pub fn weights_digest(&self) -> JsResult<String> {
        wrap(self.inner.model.weights_digest()).map(|d| format!("{d:016x}"))
    }
}
