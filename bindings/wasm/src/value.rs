//! The one place where structured values cross: a JS object (options) becomes the
//! `serde_json::Value` the core reads, and a value the core returns (configs, reports, tables)
//! becomes a plain JS object, both through `serde-wasm-bindgen` (the Node binding gets the same
//! from napi-rs's `serde-json` conversion). `undefined` and `null` read as no options.

use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::JsValue;

use crate::error::{wrap, JsResult};

/// A JS value -> `serde_json::Value` for the core. Errors: `INVALID_OPTION` naming `what` (a value
/// JSON cannot hold, such as a function or a symbol).
pub fn from_js(v: JsValue, what: &str) -> gqa_core::Result<Value> {
    serde_wasm_bindgen::from_value(v)
        .map_err(|e| gqa_core::Error::option(what, "a plain object of JSON values", e))
}

/// A JS value that may be absent (`undefined` or `null` -> `None`) -> [`from_js`].
pub fn from_js_opt(v: JsValue, what: &str) -> gqa_core::Result<Option<Value>> {
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        from_js(v, what).map(Some)
    }
}

/// A core value -> a plain JS object (JSON-compatible: objects, not `Map`s; `null`, not
/// `undefined`, for a missing value), through [`gqa_core::to_value`] so that both bindings hand
/// over the same object (a non-finite float is `null`, as in JSON).
pub fn to_js<T: Serialize>(t: &T) -> JsResult<JsValue> {
    let v = wrap(gqa_core::to_value(t))?;
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            crate::error::to_js(gqa_core::Error::Internal(format!(
                "a value for JavaScript: {e}"
            )))
        })
}
