//! Model inspection (mirrors `gqa_core::inspect`): attention probabilities of every layer and
//! query head, `[L,B,NH,T,T]`, for visualisation.

use gqa_core::inspect::attention_maps;
use gqa_core::train::TaskModel;
use napi::bindgen_prelude::{Float32Array, Uint32Array};
use napi::Env;
use napi_derive::napi;

use crate::model::Model;
use crate::tensor::{run, ForwardOutput};

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
        run(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            |m: &TaskModel, x, d, l| attention_maps(&m.model, x, d, l),
        )
    }
}
