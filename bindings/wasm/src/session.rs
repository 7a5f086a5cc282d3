//! Streaming inference with the KV cache (mirrors `gqa_core::session`): [`Model::session`]
//! creates a [`Session`] whose `push` runs new positions (prefill or decode) synchronously.
//!
//! The session holds its own reference (`Rc`) to the model, so freeing the JS `Model` does not
//! affect a live session; the weights are released when both are freed.

use std::rc::Rc;

use gqa_core::session::Session as CoreSession;
use gqa_core::train::TaskModel;
use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::model::Model;
use crate::tensor::{run, settle, Lengths, Out};

/// A batched KV-cache session (`gqa_core::session::Session`): per layer K/V caches
/// `[B, NKV, maxLen, D]` f32 in wasm memory, rows with independent lengths (call `free()`).
#[wasm_bindgen]
pub struct Session {
    model: Rc<TaskModel>,
    inner: CoreSession,
}

#[wasm_bindgen]
impl Model {
    /// Creates a KV-cache session for `batch` rows of up to `maxLen` positions each (a
    /// sliding-window model's session may omit it: unbounded, constant memory).
    /// Errors: `INVALID_INPUT` (`maxLen` 0, or absent without `slidingWindow`), `OUT_OF_MEMORY`
    /// (cache over the buffer limit).
    pub fn session(&self, batch: u32, max_len: Option<u32>) -> JsResult<Session> {
        let model = self.inner.clone();
        wrap(
            model
                .model
                .session_opt(batch as usize, max_len.map(|l| l as usize)),
        )
        .map(|inner| Session { model, inner })
    }
}

#[wasm_bindgen]
impl Session {
    /// Pushes a chunk `data: [B,t,E]` (`dims = [B,t,E]`); `lengths` = new valid positions per
    /// row (default `t`). Returns the output mode at each row's newest position (`[B,H]`, or
    /// `[B,t,H]` for `all`), or at every new position (`[B,t,H]`) when `allPositions`.
    /// Errors: `INVALID_INPUT`, `CACHE_FULL` (the session is unchanged).
    pub fn push(&mut self, data: &[f32], dims: &[u32], lengths: Lengths, all: bool) -> Out {
        let (model, cache) = (&self.model.model, &mut self.inner);
        run(
            |x, d, l| cache.push(model, x, d, l, all),
            data,
            dims,
            lengths,
        )
    }

    /// `push` as a promise (settled before it returns: wasm has no thread of its own).
    #[wasm_bindgen(js_name = pushAsync, unchecked_return_type = "Promise<ForwardOutput>")]
    pub fn push_async(
        &mut self,
        data: &[f32],
        dims: &[u32],
        lengths: Lengths,
        all: bool,
    ) -> Promise {
        settle(self.push(data, dims, lengths, all))
    }

    /// `push`, then the model's head on each row's output: `[B,K]` class probabilities or
    /// regression values. Errors: as `push`; `INVALID_OPTION` (no head, `outputMode` all).
    #[wasm_bindgen(js_name = pushPredict)]
    pub fn push_predict(&mut self, data: &[f32], dims: &[u32], lengths: Lengths) -> Out {
        let (model, cache) = (&self.model, &mut self.inner);
        run(
            |x, d, l| model.push_predict_f32(cache, x, d, l),
            data,
            dims,
            lengths,
        )
    }

    /// `pushPredict` as a promise (settled before it returns: wasm has no thread of its own).
    #[wasm_bindgen(js_name = pushPredictAsync, unchecked_return_type = "Promise<ForwardOutput>")]
    pub fn push_predict_async(&mut self, data: &[f32], dims: &[u32], lengths: Lengths) -> Promise {
        settle(self.push_predict(data, dims, lengths))
    }

    /// Positions pushed so far per row (`B` values; absolute, also after a sliding window
    /// dropped old keys).
    pub fn lengths(&self) -> Vec<u32> {
        self.inner.lengths().iter().map(|&l| l as u32).collect()
    }

    /// Cache slots per row: `maxLen`, or a sliding-window model's ring slots.
    #[wasm_bindgen(getter)]
    pub fn capacity(&self) -> u32 {
        self.inner.capacity() as u32
    }

    /// Most positions per row (`maxLen`), `undefined` for an unbounded sliding-window session.
    #[wasm_bindgen(getter, js_name = maxLen)]
    pub fn max_len(&self) -> Option<u32> {
        self.inner.max_len().map(|l| l as u32)
    }

    /// Number of rows `B`.
    #[wasm_bindgen(getter)]
    pub fn batch(&self) -> u32 {
        self.inner.batch() as u32
    }

    /// Forgets every cached position (the allocation is kept).
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Bytes allocated for the K and V caches of all layers: `B * maxLen * kvCacheBytesPerToken`.
    #[wasm_bindgen(js_name = kvCacheBytes)]
    pub fn kv_cache_bytes(&self) -> f64 {
        self.inner.kv_cache_bytes() as f64
    }

    /// Cache bytes per cached token and row: `2 * numLayers * numKvHeads * headDim * 4` (SPEC section 4).
    #[wasm_bindgen(js_name = kvCacheBytesPerToken)]
    pub fn kv_cache_bytes_per_token(&self) -> f64 {
        self.inner.kv_cache_bytes_per_token() as f64
    }
}
