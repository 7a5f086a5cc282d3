//! Test hooks (mirrors `gqa_core::testing`).

use wasm_bindgen::prelude::*;

/// Test hook (mirrors `gqa_core::testing`): arms a forced Rust panic at `site` (`forward`,
/// `push`, `step`; `undefined` disarms). In wasm a panic traps; the test suite proves the
/// TypeScript layer reports it as `INTERNAL` and the module keeps working.
#[wasm_bindgen(js_name = __testPanicSite)]
pub fn test_panic_site(site: Option<String>) {
    gqa_core::testing::set_panic_site(site.as_deref());
}
