//! Test hooks (mirrors `gqa_core::testing`).

use napi_derive::napi;

/// Test hook (mirrors `gqa_core::testing`): arms a forced Rust panic at `site` (`forward`,
/// `push`, `step`; `null` disarms) so the test suite can prove a panic becomes `INTERNAL`.
#[napi(js_name = "__testPanicSite")]
pub fn test_panic_site(site: Option<String>) {
    gqa_core::testing::set_panic_site(site.as_deref());
}
