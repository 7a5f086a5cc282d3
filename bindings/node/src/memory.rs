//! The memory budget (mirrors `gqa_core::memory`): one process-wide limit on the bytes live
//! models, sessions, trainers and running calls hold; shared by every worker thread of the process.

use napi::bindgen_prelude::Float64Array;
use napi::Env;
use napi_derive::napi;

use crate::error::guard;

/// Sets the limit in bytes (`null`/`undefined`: back to the default, the machine's memory) and
/// returns the limit now in force. Errors: `INVALID_OPTION` naming `memoryLimit` for 0, a
/// negative, fractional or non-finite number.
#[napi(js_name = "setMemoryLimit")]
pub fn set_memory_limit(env: Env, bytes: Option<f64>) -> napi::Result<f64> {
    guard(&env, || gqa_core::memory::set_limit_f64(bytes))
}

/// `[limit, inUse]` in bytes (f64; `u64::MAX` reads as 2^64 where no limit applies).
#[napi(js_name = "memoryUsage")]
pub fn memory_usage() -> Float64Array {
    Float64Array::new(vec![
        gqa_core::memory::limit() as f64,
        gqa_core::memory::in_use() as f64,
    ])
}
