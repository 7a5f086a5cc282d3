//! Where new models live (mirrors `gqa_core::device`): the CPU of this module instance, in f32 or
//! (for inference) bf16; a build without CUDA cannot open a GPU.

use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::value::from_js;

/// Opens a device for the models built and loaded after this call (`{device?: "cpu" | "cuda",
/// ordinal?, dtype?: "f32" | "bf16"}`) and returns its description (`cpu`, `cpu bf16`).
/// Errors: `INVALID_OPTION` (a bad field), `BACKEND` (`cuda`: this module has no CUDA).
#[wasm_bindgen(js_name = initDevice)]
pub fn init_device(options: JsValue) -> JsResult<String> {
    wrap(
        from_js(options, "placement")
            .and_then(gqa_core::PlacementOptions::from_value)
            .and_then(|o| gqa_core::device::set_current(&o)),
    )
}

/// Whether this module was built with CUDA: never (the CUDA addon is a Node addon).
#[wasm_bindgen(js_name = cudaBuild)]
pub fn cuda_build() -> bool {
    false
}
