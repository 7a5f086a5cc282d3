//! The memory budget (mirrors `gqa_core::memory`): one limit per module instance on the bytes
//! live models, sessions, trainers and running calls hold; at most the 4 GiB wasm32 can address.

use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};

/// Sets the limit in bytes (`undefined`: back to the default, 4 GiB; larger values are capped
/// there) and returns the limit now in force. Errors: `INVALID_OPTION` naming `memoryLimit` for
/// 0, a negative, fractional or non-finite number.
#[wasm_bindgen(js_name = setMemoryLimit)]
pub fn set_memory_limit(bytes: Option<f64>) -> JsResult<f64> {
    wrap(gqa_core::memory::set_limit_f64(bytes))
}

/// `[limit, inUse]` in bytes.
#[wasm_bindgen(js_name = memoryUsage)]
pub fn memory_usage() -> Vec<f64> {
    vec![
        gqa_core::memory::limit() as f64,
        gqa_core::memory::in_use() as f64,
    ]
}
