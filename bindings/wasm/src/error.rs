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

/// The message of the last Rust panic in this module instance (set by the panic hook that
/// [`start`] installs). A panic traps in wasm (`WebAssembly.RuntimeError: unreachable`), which
/// says nothing of the cause: the TypeScript layer reads this to name it in its `INTERNAL` error.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Runs when the module is instantiated (and on each worker of the threaded module): installs
/// the panic hook that records the message for [`take_last_panic`].
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let mut last = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(info.to_string());
    }));
}

/// Takes (and clears) the message of the last panic, if any.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = takeLastPanic)]
pub fn take_last_panic() -> Option<String> {
    LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take()
}
