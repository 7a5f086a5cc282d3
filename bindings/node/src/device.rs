//! Where new models live (mirrors `gqa_core::device`): the CPU addon places them on the CPU; the
//! CUDA addon (`npm run build:cuda`, feature `cuda`) can place them on a GPU.

use napi::Env;
use napi_derive::napi;
use serde_json::Value;

use crate::error::guard;

/// Opens a device for the models built and loaded after this call (`{device?: "cpu" | "cuda",
/// ordinal?, dtype?: "f32" | "bf16"}`) and returns its description (`cpu`, `cuda:0`,
/// `cuda:0 bf16`). Errors: `INVALID_OPTION` (a bad field), `BACKEND` (the device cannot be
/// opened: an addon built without CUDA, no GPU at `ordinal`, a driver error).
#[napi(js_name = "initDevice")]
pub fn init_device(env: Env, options: Value) -> napi::Result<String> {
    guard(&env, || {
        gqa_core::device::set_current(&gqa_core::PlacementOptions::from_value(options)?)
    })
}

/// Whether this addon was built with CUDA (the `cuda` feature).
#[napi(js_name = "cudaBuild")]
pub fn cuda_build() -> bool {
    cfg!(feature = "cuda")
}
