//! # gqa-node
//!
//! The Node.js binding of `gqa-core` (napi-rs v3). A thin layer: every function converts its
//! arguments, calls the core inside `std::panic::catch_unwind`, and converts the result or the
//! error. No model logic and no validation live here; the modules mirror the core's modules.
//!
//! Errors cross the boundary as a JS `Error` whose message is `"<CODE>: <message>"`
//! ([`error::to_napi`]); the TypeScript layer (`ts/errors.ts`) turns it into `GqaError`.

#![deny(clippy::all)]

pub mod config;
pub mod error;
mod handle;
pub mod inspect;
pub mod kernels;
pub mod memory;
pub mod attention;
pub mod model;
pub mod tensor;
pub mod train;
pub mod session;
pub mod testing;
