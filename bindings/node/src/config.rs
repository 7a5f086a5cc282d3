//! Options (mirrors `gqa_core::config`): validation and sizes, as pure functions of the
//! options (a JS object with TypeScript names, SPEC section 1). Objects cross as
//! `serde_json::Value` (napi-rs's `serde-json` conversion) and are read by the core.

use gqa_core::GqaConfig;
use napi::Env;
use napi_derive::napi;
use serde_json::Value;

use crate::error::guard;

/// Parses and validates options; returns the normalised options (every option written).
///
/// Errors: `INVALID_OPTION` or `OUT_OF_MEMORY` (see `GqaConfig::validate`).
#[napi(js_name = "validateConfig")]
pub fn validate_config(env: Env, options: Value) -> napi::Result<Value> {
    guard(&env, || {
        gqa_core::to_value(&GqaConfig::from_value(options)?)
    })
}

/// Edifice's `output_size/1` (= `hiddenSize`). Errors as [`validate_config`].
#[napi(js_name = "outputSize")]
pub fn output_size(env: Env, options: Value) -> napi::Result<u32> {
    guard(&env, || {
        GqaConfig::from_value(options).map(|c| c.output_size() as u32)
    })
}

/// Parameter count: Edifice's approximate formula, or every parameter when `exact`.
/// Returned as a double (exact below 2^53). Errors as [`validate_config`].
#[napi(js_name = "paramCount")]
pub fn param_count(env: Env, options: Value, exact: bool) -> napi::Result<f64> {
    guard(&env, || {
        GqaConfig::from_value(options).map(|c| if exact { c.param_count_exact() } else { c.param_count() } as f64)
    })
}

/// The model's parameter table (`gqa_core::layout::model_layout_of`),
/// `[{name, shape, init, stream, matmul, axonName}, ...]` in canonical order. Errors as
/// [`validate_config`].
#[napi(js_name = "parameterLayout")]
pub fn parameter_layout(env: Env, options: Value) -> napi::Result<Value> {
    guard(&env, || {
        gqa_core::to_value(&gqa_core::layout::model_layout_of(options)?)
    })
}

/// KV-cache bytes per cached token (F32), SPEC section 4. Errors as [`validate_config`].
#[napi(js_name = "kvCacheBytesPerToken")]
pub fn kv_cache_bytes_per_token(env: Env, options: Value) -> napi::Result<f64> {
    guard(&env, || {
        GqaConfig::from_value(options).map(|c| c.kv_cache_bytes_per_token() as f64)
    })
}

/// Rotary frequencies of model or attention options at a sequence length,
/// `{invFreq, attentionFactor}` (`gqa_core::attention::rope_frequencies`).
/// Errors: `INVALID_OPTION`.
#[napi(js_name = "ropeFrequencies")]
pub fn rope_frequencies(env: Env, options: Value, seq_len: u32) -> napi::Result<Value> {
    guard(&env, || {
        gqa_core::to_value(&gqa_core::attention::rope_frequencies(
            options,
            seq_len as usize,
        )?)
    })
}

/// Edifice's `recommended_defaults/0`.
#[napi(js_name = "recommendedDefaults")]
pub fn recommended_defaults(env: Env) -> napi::Result<Value> {
    guard(&env, || {
        gqa_core::to_value(&gqa_core::recommended_defaults())
    })
}

/// The error codes of the core with the names of their fields,
/// `[{"code": "INVALID_OPTION", "fields": ["option", "expected", "found"]}, ...]`
/// (`gqa_core::ERROR_CATALOG`): every error this binding throws carries `code` and those fields as
/// properties. The TypeScript layer's `CORE_ERROR_FIELDS` is checked against it by a test.
#[napi(js_name = "errorCatalog")]
pub fn error_catalog() -> Value {
    gqa_core::error_catalog_value()
}

/// The field names of every options, config and report struct exchanged with the
/// TypeScript layer, `{"GqaConfig": ["dropout", "embedDim", ...], ...}`
/// (`gqa_core::schema::api_fields`); the TypeScript interfaces are checked against it by a test.
#[napi(js_name = "apiFields")]
pub fn api_fields() -> Value {
    gqa_core::schema::api_fields_value()
}

/// The binding's crate version (for diagnostics).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
