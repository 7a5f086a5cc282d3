//! The one place where core errors (and caught panics) become JS errors.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Converts a core error into a napi error whose JS message is `"<CODE>: <message>"`
/// (`CODE` = [`gqa_core::Error::code`]).
pub fn to_napi(e: gqa_core::Error) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("{}: {}", e.code(), e))
}

/// Runs a core call with panics caught (a panic becomes `INTERNAL: ...`) and its error converted.
pub fn guard<T>(f: impl FnOnce() -> gqa_core::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_napi),
        Err(payload) => Err(to_napi(gqa_core::Error::from_panic(payload))),
    }
}
