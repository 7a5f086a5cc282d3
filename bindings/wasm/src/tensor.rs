//! Arrays at the wasm edge. Inputs arrive as `&[f32]`/`&[u32]` views copied into wasm memory by
//! the glue (one copy: JS memory and wasm memory are separate). A result crosses as the same
//! plain object the Node binding returns, `{ data: Float32Array, dims: number[] }`, its values
//! copied out of wasm memory once (nothing on the JS side to free).
//!
//! Every forward-like call (forward, predict, attention maps, a session's push) goes through
//! [`run`], and its `...Async` twin through [`settle`]: the module has no thread of its own to
//! run on, so the promise is settled with the synchronous result.

use js_sys::{Array, Float32Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::{wrap, JsResult};

#[wasm_bindgen(typescript_custom_section)]
const FORWARD_OUTPUT: &str = r#"
/** Output of a forward pass: row-major values and their dims (`[B,H]` or `[B,T,H]`). */
export interface ForwardOutput {
  /** Row-major f32 values. */
  data: Float32Array;
  /** Shape, outermost first. */
  dims: Array<number>;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// `{ data: Float32Array, dims: number[] }` (see the module doc).
    #[wasm_bindgen(typescript_type = "ForwardOutput")]
    pub type ForwardOutput;
}

/// Builds the JS object from the core's `(values, dims)`.
pub fn to_output((data, dims): (Vec<f32>, Vec<usize>)) -> ForwardOutput {
    let obj = Object::new();
    let dims: Array = dims.into_iter().map(|d| JsValue::from(d as u32)).collect();
    // Reflect.set on a fresh, extensible object does not fail.
    let _ = Reflect::set(&obj, &"data".into(), &Float32Array::from(&data[..]));
    let _ = Reflect::set(&obj, &"dims".into(), &dims);
    obj.unchecked_into()
}

/// `&[u32]` -> `Vec<usize>`.
pub fn to_usize(xs: &[u32]) -> Vec<usize> {
    xs.iter().map(|&x| x as usize).collect()
}

/// Runs a forward-like core call, `f(data, dims, lengths) -> (values, dims)`, on the binding's
/// arrays and converts its result or error.
pub fn run(
    f: impl FnOnce(&[f32], &[usize], Option<&[usize]>) -> gqa_core::Result<(Vec<f32>, Vec<usize>)>,
    data: &[f32],
    dims: &[u32],
    lengths: Option<Vec<u32>>,
) -> JsResult<ForwardOutput> {
    let lengths = lengths.map(|l| to_usize(&l));
    wrap(f(data, &to_usize(dims), lengths.as_deref())).map(to_output)
}

/// A promise settled with `r` (resolved with its value, rejected with its error): the
/// `...Async` methods, so that both bindings have the same surface.
pub fn settle<T: Into<JsValue>>(r: JsResult<T>) -> Promise {
    match r {
        Ok(v) => Promise::resolve(&v.into()),
        Err(e) => Promise::reject(&e),
    }
}

/// The optional `lengths` argument of a forward-like call (one per batch row).
pub type Lengths = Option<Vec<u32>>;

/// The result of a forward-like call.
pub type Out = JsResult<ForwardOutput>;
