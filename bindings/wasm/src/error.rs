//! The one place where core errors become JS errors.
//!
//! A core error becomes a JS `Error` whose `message` is the core's message, with `code`
//! ([`gqa_core::Error::code`]) and the variant's fields ([`gqa_core::Error::fields`]: `option`,
//! `expected`, `found`, `name`, `inUse`, ...) as own properties, as the Node binding builds it.

use gqa_core::ErrorField;
use wasm_bindgen::JsValue;

/// Builds the JS error object for `e` (see the module doc).
pub fn to_js(e: gqa_core::Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // Reflect.set on a fresh, extensible Error object does not fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    for (name, value) in e.fields() {
        let v: JsValue = match value {
            ErrorField::Str(s) => s.into(),
            ErrorField::Num(n) => (n as f64).into(),
        };
        let _ = js_sys::Reflect::set(&err, &name.into(), &v);
    }
    err.into()
}

/// `Result` with the core error converted for JS.
pub type JsResult<T> = Result<T, JsValue>;

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

/// Takes (and clears) the message of the last panic; `""` when there was none.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = takeLastPanic)]
pub fn take_last_panic() -> String {
    LAST_PANIC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default()
}
