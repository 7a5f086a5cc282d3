//! Conversions of arrays at the napi edge: dims/lengths (`Uint32Array` -> `Vec<usize>`) and the
//! forward output (`(Vec<f32>, Vec<usize>)` -> `{ data: Float32Array, dims: number[] }`).
//!
//! Inputs are owned by the call: synchronous calls read an input `Float32Array` in place (the JS
//! thread is blocked meanwhile); calls that return a promise copy it into a `Vec` before
//! returning, so thread-pool work never reads the caller's buffer. The output `Float32Array`
//! takes ownership of the core's `Vec<f32>` (no copy).

use napi::bindgen_prelude::{Float32Array, Uint32Array};
use napi_derive::napi;

/// Output of a forward pass: row-major values and their dims (`[B,H]` or `[B,T,H]`).
#[napi(object)]
pub struct ForwardOutput {
    /// Row-major f32 values.
    pub data: Float32Array,
    /// Shape, outermost first.
    pub dims: Vec<u32>,
}

/// Builds the JS object from the core's `(values, dims)`.
pub fn to_output((data, dims): (Vec<f32>, Vec<usize>)) -> ForwardOutput {
    ForwardOutput {
        data: Float32Array::new(data),
        dims: dims.into_iter().map(|d| d as u32).collect(),
    }
}

/// `Uint32Array` -> `Vec<usize>`.
pub fn to_usize(xs: &Uint32Array) -> Vec<usize> {
    xs.iter().map(|&x| x as usize).collect()
}

/// Optional `Uint32Array` -> optional `Vec<usize>`.
pub fn to_usize_opt(xs: &Option<Uint32Array>) -> Option<Vec<usize>> {
    xs.as_ref().map(to_usize)
}
