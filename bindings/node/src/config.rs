//! Options (mirrors `gqa_core::config`): validation and sizes, as pure functions of the
//! options JSON (TypeScript names, SPEC section 1).

use gqa_core::GqaConfig;
use napi::Env;
use napi_derive::napi;

use crate::error::guard;

/// Parses and validates options; returns the normalised options JSON (every option written).
///
/// Errors: `INVALID_OPTION: ...` or `OUT_OF_MEMORY: ...` (see `GqaConfig::validate`).
#[napi(js_name = "validateConfig")]
pub fn validate_config(env: Env, json: String) -> napi::Result<String> {
    guard(&env, || GqaConfig::from_json(&json).map(|c| c.to_json()))
}

/// Edifice's `output_size/1` (= `hiddenSize`). Errors as [`validate_config`].
#[napi(js_name = "outputSize")]
pub fn output_size(env: Env, json: String) -> napi::Result<u32> {
    guard(&env, || GqaConfig::from_json(&json).map(|c| c.output_size() as u32))
}

/// Parameter count: Edifice's approximate formula, or every parameter when `exact`.
/// Returned as a double (exact below 2^53). Errors as [`validate_config`].
#[napi(js_name = "paramCount")]
pub fn param_count(env: Env, json: String, exact: bool) -> napi::Result<f64> {
    guard(&env, || GqaConfig::from_json(&json).map(|c| if exact { c.param_count_exact() } else { c.param_count() } as f64))
}

/// The model's parameter table (`gqa_core::layout::model_layout`) as JSON
/// `[{name, shape, init, stream, matmul, axonName}, ...]`, canonical order. Errors as
/// [`validate_config`].
#[napi(js_name = "parameterLayout")]
pub fn parameter_layout(env: Env, json: String) -> napi::Result<String> {
    guard(&env, || gqa_core::layout::model_layout_json(&json))
}

/// KV-cache bytes per cached token (F32), SPEC section 4. Errors as [`validate_config`].
#[napi(js_name = "kvCacheBytesPerToken")]
pub fn kv_cache_bytes_per_token(env: Env, json: String) -> napi::Result<f64> {
    guard(&env, || GqaConfig::from_json(&json).map(|c| c.kv_cache_bytes_per_token() as f64))
}

/// Rotary frequencies of model or attention options at a sequence length, as JSON
/// `{invFreq, attentionFactor}` (`gqa_core::attention::rope_frequencies_json`).
/// Errors: `INVALID_OPTION`.
#[napi(js_name = "ropeFrequencies")]
pub fn rope_frequencies(env: Env, json: String, seq_len: u32) -> napi::Result<String> {
    guard(&env, || gqa_core::attention::rope_frequencies_json(&json, seq_len as usize))
}

/// Edifice's `recommended_defaults/0` as JSON.
#[napi(js_name = "recommendedDefaults")]
pub fn recommended_defaults() -> String {
    serde_json::to_string(&gqa_core::recommended_defaults()).expect("defaults serialise")
}

/// The error codes of the core with the names of their fields, as JSON
/// `[{"code": "INVALID_OPTION", "fields": ["option", "expected", "found"]}, ...]`
/// (`gqa_core::ERROR_CATALOG`): every error this binding throws carries `code` and those fields as
/// properties. The TypeScript layer's `CORE_ERROR_FIELDS` is checked against it by a test.
#[napi(js_name = "errorCatalog")]
pub fn error_catalog() -> String {
    gqa_core::error_catalog_json()
}

/// The JSON field names of every options, config and report struct exchanged with the
/// TypeScript layer, as JSON `{"GqaConfig": ["dropout", "embedDim", ...], ...}`
/// (`gqa_core::schema::api_fields`); the TypeScript interfaces are checked against it by a test.
#[napi(js_name = "apiFields")]
pub fn api_fields() -> String {
    gqa_core::schema::api_fields_json()
}

/// The binding's crate version (for diagnostics).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
