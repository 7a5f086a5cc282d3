//! Options (mirrors `gqa_core::config`): validation and sizes, as pure functions of the
//! options JSON (TypeScript names, SPEC section 1).

use gqa_core::GqaConfig;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};

/// Parses and validates options; returns the normalised options JSON (every option written).
///
/// # Errors
/// `INVALID_OPTION: ...` or `OUT_OF_MEMORY: ...` (see `GqaConfig::validate`).
#[wasm_bindgen(js_name = validateConfig)]
pub fn validate_config(json: &str) -> JsResult<String> {
    wrap(GqaConfig::from_json(json).map(|c| c.to_json()))
}

/// Edifice's `output_size/1` (= `hiddenSize`).
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = outputSize)]
pub fn output_size(json: &str) -> JsResult<u32> {
    wrap(GqaConfig::from_json(json).map(|c| c.output_size() as u32))
}

/// Parameter count: Edifice's approximate formula, or every parameter when `exact`.
/// Returned as a double (exact below 2^53, far above any model that validates).
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = paramCount)]
pub fn param_count(json: &str, exact: bool) -> JsResult<f64> {
    wrap(GqaConfig::from_json(json).map(|c| if exact { c.param_count_exact() } else { c.param_count() } as f64))
}

/// The model's parameter table (`gqa_core::layout::model_layout`) as JSON
/// `[{name, shape, init, stream, matmul, axonName}, ...]`, canonical order.
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = parameterLayout)]
pub fn parameter_layout(json: &str) -> JsResult<String> {
    wrap(gqa_core::layout::model_layout_json(json))
}

/// KV-cache bytes per cached token (F32), SPEC section 4.
///
/// # Errors
/// As [`validate_config`].
#[wasm_bindgen(js_name = kvCacheBytesPerToken)]
pub fn kv_cache_bytes_per_token(json: &str) -> JsResult<f64> {
    wrap(GqaConfig::from_json(json).map(|c| c.kv_cache_bytes_per_token() as f64))
}

/// Rotary frequencies of model or attention options at a sequence length, as JSON
/// `{invFreq, attentionFactor}` (`gqa_core::attention::rope_frequencies_json`).
///
/// # Errors
/// `INVALID_OPTION`.
#[wasm_bindgen(js_name = ropeFrequencies)]
pub fn rope_frequencies(json: &str, seq_len: u32) -> JsResult<String> {
    wrap(gqa_core::attention::rope_frequencies_json(json, seq_len as usize))
}

/// Edifice's `recommended_defaults/0` as JSON.
#[wasm_bindgen(js_name = recommendedDefaults)]
pub fn recommended_defaults() -> String {
    serde_json::to_string(&gqa_core::recommended_defaults()).expect("defaults serialise")
}

/// The error codes of the core with the names of their fields, as JSON
/// `[{"code": "INVALID_OPTION", "fields": ["option", "expected", "found"]}, ...]`
/// (`gqa_core::ERROR_CATALOG`): every error this binding throws carries `code` and those fields as
/// properties. The TypeScript layer's `CORE_ERROR_FIELDS` is checked against it by a test.
#[wasm_bindgen(js_name = errorCatalog)]
pub fn error_catalog() -> String {
    gqa_core::error_catalog_json()
}

/// The JSON field names of every options, config and report struct exchanged with the
/// TypeScript layer, as JSON `{"GqaConfig": ["dropout", "embedDim", ...], ...}`
/// (`gqa_core::schema::api_fields`); the TypeScript interfaces are checked against it by a test.
#[wasm_bindgen(js_name = apiFields)]
pub fn api_fields() -> String {
    gqa_core::schema::api_fields_json()
}

/// The binding's crate version (for diagnostics).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
