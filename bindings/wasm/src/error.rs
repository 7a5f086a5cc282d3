//! The one place where core errors become JS errors.

use wasm_bindgen::JsError;

/// Converts a core error into a JS `Error` with message `"<CODE>: <message>"`
/// (`CODE` = [`gqa_core::Error::code`]).
pub fn to_js(e: gqa_core::Error) -> JsError {
    JsError::new(&format!("{}: {}", e.code(), e))
}

/// `Result` with the core error converted for JS.
pub type JsResult<T> = Result<T, JsError>;

/// Runs a core call and converts its error.
pub fn wrap<T>(r: gqa_core::Result<T>) -> JsResult<T> {
    r.map_err(to_js)
}
