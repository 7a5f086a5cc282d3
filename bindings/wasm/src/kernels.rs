//! Compute settings (mirrors `gqa_core::kernels::{threads, cpu, gemm}`): thread count and the
//! SIMD paths of this build.

use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};

/// Sets the compute threads (`n >= 1`). The single-threaded module runs everything on the
/// calling thread whatever the count; the threaded module caps each call at `n` of its pool's
/// workers. Errors: `INVALID_OPTION` naming `threads` (threaded module: above the pool's size).
#[wasm_bindgen(js_name = setThreads)]
pub fn set_threads(n: u32) -> JsResult<()> {
    wrap(gqa_core::kernels::threads::set_threads(n as usize))
}

/// The compute threads calls use (1 in the single-threaded module).
#[wasm_bindgen(js_name = threads)]
pub fn threads() -> u32 {
    gqa_core::kernels::threads::threads() as u32
}

/// The SIMD paths of this module, `{kernels: "simd128", gemm: "simd128"}`
/// (`gqa_core::kernels::simd_info`).
#[wasm_bindgen(js_name = simdInfo)]
pub fn simd_info() -> JsResult<JsValue> {
    crate::value::to_js(&gqa_core::kernels::simd_info())
}

/// Threaded module only: `initThreadPool(n)` (async in JS) starts rayon's global pool of `n`
/// workers on Web Workers / worker_threads. Call once per module instance, before any model
/// call; the TypeScript layer does it when it loads this module (`GQA.init`).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threaded module only: one `rayon::join` from the calling thread onto the pool, returning the
/// pool's size. The module's worker starter (bindings/wasm/js/start-workers.js) calls it once,
/// right after building the pool: it proves the workers answer, and it makes sure the calling
/// thread has decided how rayon's locks wait (wasm_sync: `Atomics.wait` where no `Window` global
/// is seen, else a busy spin; decided once per thread), which the starter arranges for Deno.
#[cfg(feature = "threads")]
#[wasm_bindgen(js_name = poolHandshake)]
pub fn pool_handshake() -> u32 {
    let (a, b) = rayon::join(rayon::current_num_threads, rayon::current_num_threads);
    a.max(b) as u32
}
