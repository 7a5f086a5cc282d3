//! # gqa-wasm
//!
//! The WebAssembly binding of `gqa-core` (wasm-bindgen, `--target web`). A thin layer: every
//! function converts its arguments, calls the core, and converts the result or the error.
//! No model logic and no validation live here; the modules mirror the core's modules.
//!
//! Options, configs and reports cross as plain JS objects, converted in one place
//! ([`value`], serde-wasm-bindgen); the core parses and validates them.
//! Errors cross the boundary as a JS `Error` carrying `code` and the fields of the core's error
//! (`gqa_core::Error::fields`) as properties, built in one place ([`error::to_js`]); the
//! TypeScript layer (`ts/errors.ts`) wraps it as a typed `GqaError`.
//! A panic inside wasm traps (`WebAssembly.RuntimeError`); the TypeScript layer maps that to
//! code `INTERNAL`.

pub mod attention;
pub mod config;
pub mod device;
pub mod error;
pub mod inspect;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod session;
pub mod tensor;
pub mod testing;
pub mod train;
pub mod value;
