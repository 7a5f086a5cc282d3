//! # gqa-node
//!
//! The Node.js binding of `gqa-core` (napi-rs v3). A thin layer: every function converts its
//! arguments, calls the core inside `std::panic::catch_unwind`, and converts the result or the
//! error. No model logic and no validation live here; the modules mirror the core's modules.
//!
//! Errors cross the boundary as a JS `Error` carrying `code` and the fields of the core's error
//! (`gqa_core::Error::fields`: `option`, `expected`, `found`, ...) as properties, built in one
//! place ([`error::to_js`]); the TypeScript layer (`ts/errors.ts`) wraps it as a typed `GqaError`.

#![deny(clippy::all)]

pub mod attention;
pub mod config;
pub mod device;
pub mod error;
mod handle;
pub mod inspect;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod session;
pub mod tensor;
pub mod testing;
pub mod train;
