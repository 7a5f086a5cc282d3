//! Model inspection (mirrors `gqa_core::inspect`): attention probabilities of every layer and
//! query head, `[L,B,NH,T,T]`, for visualisation.

use gqa_core::inspect::attention_maps;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::model::Model;
use crate::tensor::{to_output, to_usize, ForwardOutput};

#[wasm_bindgen]
impl Model {
    /// Attention probabilities `[L,B,NH,T,T]` (`gqa_core::inspect::attention_maps`) for input
    /// `dims = [B,T,E]` with optional `lengths`; rows sum to 1, causal and padded keys are 0.
    /// Errors: `INVALID_INPUT`, `OUT_OF_MEMORY`.
    #[wasm_bindgen(js_name = attentionMaps)]
    pub fn attention_maps(
        &self,
        data: &[f32],
        dims: &[u32],
        lengths: Option<Vec<u32>>,
    ) -> JsResult<ForwardOutput> {
        let lengths = lengths.map(|l| to_usize(&l));
        wrap(attention_maps(
            &self.inner.model,
            data,
            &to_usize(dims),
            lengths.as_deref(),
        ))
        .map(to_output)
    }
}
