//! Options (mirrors `gqa_core::config`): validation and sizes, as pure functions of the
//! options (a JS object with TypeScript names, SPEC section 1; converted by [`crate::value`]).

use gqa_core::GqaConfig;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::value::{from_js, to_js};

/// Options -> a validated [`GqaConfig`].
fn config(options: JsValue) -> gqa_core::Result<GqaConfig> {
    GqaConfig::from_value(from_js(options, "options")?)
}

/// Parses and validates options; returns the normalised options (every option written).
///
/// # Errors
/// `INVALID_OPTION` or `OUT_OF_MEMORY` (see `GqaConfig::validate`).
#[wasm_bindgen(js_name = validateConfig)]
pub fn validate_config(options: JsValue) -> JsResult<JsValue> {
    to_js(&wrap(config(options))?)
}

/// Edifice's `output_size/1` (= `hiddenSize`).
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = outputSize)]
pub fn output_size(options: JsValue) -> JsResult<u32> {
    wrap(config(options).map(|c| c.output_size() as u32))
}

/// Parameter count: Edifice's approximate formula, or every parameter when `exact`.
/// Returned as a double (exact below 2^53, far above any model that validates).
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = paramCount)]
pub fn param_count(options: JsValue, exact: bool) -> JsResult<f64> {
    wrap(config(options).map(|c| if exact { c.param_count_exact() } else { c.param_count() } as f64))
}

/// The model's parameter table (`gqa_core::layout::model_layout_of`),
/// `[{name, shape, init, stream, matmul, axonName}, ...]` in canonical order.
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = parameterLayout)]
pub fn parameter_layout(options: JsValue) -> JsResult<JsValue> {
    to_js(&wrap(
        from_js(options, "options").and_then(gqa_core::layout::model_layout_of),
    )?)
}

/// KV-cache bytes per cached token (F32), SPEC section 4.
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = kvCacheBytesPerToken)]
pub fn kv_cache_bytes_per_token(options: JsValue) -> JsResult<f64> {
    wrap(config(options).map(|c| c.kv_cache_bytes_per_token() as f64))
}

/// Rotary frequencies of model or attention options at a sequence length,
/// `{invFreq, attentionFactor}` (`gqa_core::attention::rope_frequencies`).
///
/// # Errors
/// `INVALID_OPTION`.
#[wasm_bindgen(js_name = ropeFrequencies)]
pub fn rope_frequencies(options: JsValue, seq_len: u32) -> JsResult<JsValue> {
    to_js(&wrap(from_js(options, "options").and_then(|o| {
        gqa_core::attention::rope_frequencies(o, seq_len as usize)
    }))?)
}

/// Edifice's `recommended_defaults/0`.
#[wasm_bindgen(js_name = recommendedDefaults)]
pub fn recommended_defaults() -> JsResult<JsValue> {
    to_js(&gqa_core::recommended_defaults())
}

/// The error codes of the core with the names of their fields,
/// `[{"code": "INVALID_OPTION", "fields": ["option", "expected", "found"]}, ...]`
/// (`gqa_core::ERROR_CATALOG`): every error this binding throws carries `code` and those fields as
/// properties. The TypeScript layer's `CORE_ERROR_FIELDS` is checked against it by a test.
#[wasm_bindgen(js_name = errorCatalog)]
pub fn error_catalog() -> JsResult<JsValue> {
    to_js(&gqa_core::error_catalog_value())
}

/// The field names of every options, config and report struct exchanged with the
/// TypeScript layer, `{"GqaConfig": ["dropout", "embedDim", ...], ...}`
/// (`gqa_core::schema::api_fields`); the TypeScript interfaces are checked against it by a test.
#[wasm_bindgen(js_name = apiFields)]
pub fn api_fields() -> JsResult<JsValue> {
    to_js(&gqa_core::schema::api_fields_value())
}

/// The binding's crate version (for diagnostics).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
