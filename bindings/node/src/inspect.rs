//! Model inspection (mirrors `gqa_core::inspect`): attention probabilities of every layer and
//! query head, `[L,B,NH,T,T]`, for visualisation.

use gqa_core::inspect::attention_maps;
use napi::bindgen_prelude::{Float32Array, Uint32Array};
use napi::Env;
use napi_derive::napi;

use crate::error::guard;
use crate::model::Model;
use crate::tensor::{to_output, to_usize, to_usize_opt, ForwardOutput};

#[napi]
impl Model {
    /// Attention probabilities `[L,B,NH,T,T]` (`gqa_core::inspect::attention_maps`) for input
    /// `dims = [B,T,E]` with optional `lengths`; rows sum to 1, causal and padded keys are 0.
    /// Errors: `INVALID_INPUT`, `OUT_OF_MEMORY`, `DISPOSED`.
    #[napi]
    pub fn attention_maps(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
    ) -> napi::Result<ForwardOutput> {
        let (dims, lengths) = (to_usize(&dims), to_usize_opt(&lengths));
        guard(&env, || {
            attention_maps(&self.get()?.model, &data, &dims, lengths.as_deref())
        })
        .map(to_output)
    }
}
