//! Conversions of arrays at the napi edge: dims/lengths (`Uint32Array` -> `Vec<usize>`) and the
//! forward output (`(Vec<f32>, Vec<usize>)` -> `{ data: Float32Array, dims: number[] }`).
//!
//! Inputs are owned by the call: synchronous calls read an input `Float32Array` in place (the JS
//! thread is blocked meanwhile); calls that return a promise copy it into a `Vec` before
//! returning, so thread-pool work never reads the caller's buffer. The output `Float32Array`
//! takes ownership of the core's `Vec<f32>` (no copy). Every forward-like method (forward,
//! predict, attention maps, a session's push) goes through [`run`], its `...Async` twin through
//! [`spawn`].

use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array};
use napi::Env;
use napi_derive::napi;

use crate::error::guard;
use crate::model::ForwardTask;

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

/// What a forward-like core call returns: `(values, dims)`.
pub type Values = gqa_core::Result<(Vec<f32>, Vec<usize>)>;

/// Runs the forward-like core call `f(object, data, dims, lengths)` on the calling thread,
/// reading `data` in place (the JS thread is blocked meanwhile).
pub fn run<S>(
    env: &Env,
    object: gqa_core::Result<Arc<S>>,
    (data, dims, lengths): (&[f32], &Uint32Array, &Option<Uint32Array>),
    f: impl FnOnce(&S, &[f32], &[usize], Option<&[usize]>) -> Values,
) -> napi::Result<ForwardOutput> {
    let (dims, lengths) = (to_usize(dims), to_usize_opt(lengths));
    guard(env, || f(&*object?, data, &dims, lengths.as_deref())).map(to_output)
}

/// Runs `f` on the libuv thread pool. The inputs are owned by the call: copied here, on the JS
/// thread, so the pool never reads the caller's buffer (which may be resized, detached or
/// rewritten after this returns).
pub fn spawn<S: Send + Sync + 'static>(
    env: &Env,
    object: gqa_core::Result<Arc<S>>,
    (data, dims, lengths): (&[f32], &Uint32Array, &Option<Uint32Array>),
    f: impl FnOnce(&S, &[f32], &[usize], Option<&[usize]>) -> Values + Send + 'static,
) -> napi::Result<AsyncTask<ForwardTask>> {
    let object = guard(env, || object)?;
    let (data, dims, lengths) = (data.to_vec(), to_usize(dims), to_usize_opt(lengths));
    Ok(ForwardTask::new(move || {
        f(&object, &data, &dims, lengths.as_deref())
    }))
}
