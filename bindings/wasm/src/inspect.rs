//! Model inspection (mirrors `gqa_core::inspect`): attention probabilities of every layer and
//! query head, `[L,B,NH,T,T]`, for visualisation.

use gqa_core::inspect::attention_maps;
use wasm_bindgen::prelude::*;

use crate::model::Model;
use crate::tensor::{run, Lengths, Out};

#[wasm_bindgen]
impl Model {
    /// Attention probabilities `[L,B,NH,T,T]` (`gqa_core::inspect::attention_maps`) for input
    /// `dims = [B,T,E]` with optional `lengths`; rows sum to 1, causal and padded keys are 0.
    /// Errors: `INVALID_INPUT`, `OUT_OF_MEMORY`.
    #[wasm_bindgen(js_name = attentionMaps)]
    pub fn attention_maps(&self, data: &[f32], dims: &[u32], lengths: Lengths) -> Out {
        run(
            |x, d, l| attention_maps(&self.inner.model, x, d, l),
            data,
            dims,
            lengths,
        )
    }
}
