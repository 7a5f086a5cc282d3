//! Conversions of arrays at the wasm edge. Inputs arrive as `&[f32]`/`&[u32]` views copied into
//! wasm memory by the glue (one copy: JS memory and wasm memory are separate); the output
//! values are handed to JS once with [`ForwardOutput::take_data`].

use wasm_bindgen::prelude::*;

/// Output of a forward pass: row-major values and dims (`[B,H]` or `[B,T,H]`).
#[wasm_bindgen]
pub struct ForwardOutput {
    data: Vec<f32>,
    dims: Vec<u32>,
}

#[wasm_bindgen]
impl ForwardOutput {
    /// The values as a `Float32Array` (moved out: a second call returns an empty array).
    #[wasm_bindgen(js_name = takeData)]
    pub fn take_data(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.data)
    }

    /// The dims, outermost first.
    pub fn dims(&self) -> Vec<u32> {
        self.dims.clone()
    }
}

/// Builds the output from the core's `(values, dims)`.
pub fn to_output((data, dims): (Vec<f32>, Vec<usize>)) -> ForwardOutput {
    ForwardOutput {
        data,
        dims: dims.into_iter().map(|d| d as u32).collect(),
    }
}

/// `&[u32]` -> `Vec<usize>`.
pub fn to_usize(xs: &[u32]) -> Vec<usize> {
    xs.iter().map(|&x| x as usize).collect()
}
