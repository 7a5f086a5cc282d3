//! Compute settings (mirrors `gqa_core::kernels::{threads, cpu, gemm}`): thread count and the
//! SIMD paths chosen at run time.

use napi::Env;
use napi_derive::napi;

use crate::error::guard;

/// Sets the native compute threads for calls that start from now on (`n >= 1`); gqa's own pool,
/// the host's global rayon pool is left alone. Errors: `INVALID_OPTION` naming `threads`.
#[napi(js_name = "setThreads")]
pub fn set_threads(env: Env, n: u32) -> napi::Result<()> {
    guard(&env, || gqa_core::kernels::threads::set_threads(n as usize))
}

/// The compute threads the next call uses (`setThreads`, else env `GQA_THREADS`, else the cores).
#[napi(js_name = "threads")]
pub fn threads() -> u32 {
    gqa_core::kernels::threads::threads() as u32
}

/// The SIMD paths that run on this CPU, `{kernels: "avx512f", gemm: "avx512f"}`
/// (`gqa_core::kernels::simd_info`; kernels: `avx512f`, `avx2+fma`, `portable`; gemm: the `gemm`
/// crate's micro-kernel family).
#[napi(js_name = "simdInfo")]
pub fn simd_info(env: napi::Env) -> napi::Result<serde_json::Value> {
    crate::error::guard(&env, || gqa_core::to_value(&gqa_core::kernels::simd_info()))
}
