//! The one place where core errors (and caught panics) become JS errors.
//!
//! A core error becomes a JS `Error` whose `message` is the core's message, with `code`
//! ([`gqa_core::Error::code`]) and the variant's fields ([`gqa_core::Error::fields`]: `option`,
//! `expected`, `found`, `name`, `inUse`, ...) as own properties. Building that object needs the
//! JS environment, so the synchronous methods take `env: Env` (napi-rs passes it; it is not a JS
//! argument) and the thread-pool tasks keep the core error until napi calls their `reject` on the
//! JS thread ([`TaskError`]).

use std::panic::{catch_unwind, AssertUnwindSafe};

use gqa_core::ErrorField;
use napi::{Env, JsValue, Status};
use napi_derive::napi;

/// Builds the JS error object for `e` (see the module doc). Falls back to a plain
/// `"<CODE>: <message>"` error if the object cannot be built (a failing JS environment).
pub fn to_js(env: &Env, e: &gqa_core::Error) -> napi::Error {
    let build = || -> napi::Result<napi::Error> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, e.to_string()))?;
        obj.set("code", e.code())?;
        for (name, value) in e.fields() {
            match value {
                ErrorField::Str(s) => obj.set(name, s)?,
                ErrorField::Num(n) => obj.set(name, n as f64)?,
            }
        }
        Ok(napi::Error::from(obj.to_unknown()))
    };
    build().unwrap_or_else(|_| {
        napi::Error::new(Status::GenericFailure, format!("{}: {}", e.code(), e))
    })
}

/// Runs a core call with panics caught (a panic becomes `INTERNAL`) and its error converted.
pub fn guard<T>(env: &Env, f: impl FnOnce() -> gqa_core::Result<T>) -> napi::Result<T> {
    catch(f).map_err(|e| to_js(env, &e))
}

/// Runs a core call with panics caught; the error stays a core error (for thread-pool tasks).
pub fn catch<T>(f: impl FnOnce() -> gqa_core::Result<T>) -> gqa_core::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(gqa_core::Error::from_panic(payload)),
    }
}

/// The core error of a thread-pool task, kept from `compute` (off the JS thread, no `Env`) until
/// `reject` (on the JS thread) turns it into the structured JS error.
#[derive(Default)]
pub struct TaskError(Option<gqa_core::Error>);

impl TaskError {
    /// Runs `f` with panics caught; on error keeps the core error and returns a placeholder that
    /// [`TaskError::reject`] replaces.
    pub fn run<T>(&mut self, f: impl FnOnce() -> gqa_core::Result<T>) -> napi::Result<T> {
        catch(f).map_err(|e| {
            let placeholder =
                napi::Error::new(Status::GenericFailure, format!("{}: {}", e.code(), e));
            self.0 = Some(e);
            placeholder
        })
    }

    /// The rejection value: the kept core error as a structured JS error, else `err` unchanged.
    pub fn reject<T>(&mut self, env: &Env, err: napi::Error) -> napi::Result<T> {
        Err(match self.0.take() {
            Some(e) => to_js(env, &e),
            None => err,
        })
    }
}

/// The message of the last Rust panic not yet reported, as the wasm binding's `takeLastPanic`:
/// always `""` (none) here, where every panic is caught and thrown as an `INTERNAL` error
/// carrying its message (see [`catch`]).
#[napi(js_name = "takeLastPanic")]
pub fn take_last_panic() -> String {
    String::new()
}
