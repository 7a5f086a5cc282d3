//! The model (mirrors `gqa_core::model` + `gqa_core::weights` + `gqa_core::train::TaskModel`):
//! build (optionally with a task head), load, forward and predict (sync and off the main thread),
//! save, config, digest. Training and evaluation live in [`crate::train`].

use std::sync::Arc;

use crate::handle::Handle;

use gqa_core::train::{HeadConfig, TaskModel};
use gqa_core::{GqaConfig, GqaModel, LoadOptions, OnnxOptions};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use serde_json::Value;

use crate::error::{guard, TaskError};
use crate::tensor::{run, spawn, to_output, ForwardOutput};

/// A GQA model (a `gqa_core::train::TaskModel`: the backbone plus an optional classification or
/// regression head) in native memory. Shapes: input `[B,T,E]`, output `[B,H]` or `[B,T,H]`
/// (`all`); head output `[B,K]`.
#[napi]
pub struct Model {
    inner: Handle<TaskModel>,
}

impl Model {
    /// The shared model, or `DISPOSED`.
    pub(crate) fn get(&self) -> gqa_core::Result<Arc<TaskModel>> {
        self.inner.get("model")
    }
}

#[napi]
impl Model {
    /// Builds a model from options (weights from `seed`) and an optional head
    /// (`{type: "classification", numClasses: C}` or `{type: "regression", outDim: K, ...}`).
    /// Errors: `INVALID_OPTION`, `OUT_OF_MEMORY`.
    #[napi(factory)]
    pub fn build(env: Env, options: Value, head: Option<Value>) -> napi::Result<Model> {
        guard(&env, || {
            let head = head.map(HeadConfig::from_value).transpose()?;
            TaskModel::new(GqaConfig::from_value(options)?, head)?
                .placed(&gqa_core::device::current())
        })
        .map(|m| Model {
            inner: Handle::new(m),
        })
    }

    /// Loads a model (and its head, from `gqa_head` metadata) from safetensors bytes and
    /// `LoadOptions`. Errors: `MALFORMED_FILE`, `MISSING_CONFIG`, `TENSOR_MISMATCH`,
    /// `MISSING_PARAMETER`, `UNEXPECTED_PARAMETER`, `NON_FINITE_WEIGHT`.
    #[napi(factory)]
    pub fn load(env: Env, bytes: Uint8Array, options: Value) -> napi::Result<Model> {
        guard(&env, || {
            TaskModel::from_safetensors(&bytes, &LoadOptions::from_value(options)?)?
                .placed(&gqa_core::device::current())
        })
        .map(|m| Model {
            inner: Handle::new(m),
        })
    }

    /// Forward pass on the calling thread. `dims = [B,T,E]`; `lengths` one per batch row;
    /// `positionOffset`: absolute position of position 0 (rotary; an integer, default 0).
    #[napi]
    pub fn forward(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        position_offset: Option<f64>,
    ) -> napi::Result<ForwardOutput> {
        let at = gqa_core::position_offset(position_offset);
        run(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            move |m: &TaskModel, x, d, l| m.model.forward_f32_at(x, d, l, at?),
        )
    }

    /// Forward pass on the libuv thread pool (same arguments and result as `forward`).
    /// `data`, `dims` and `lengths` are copied before this returns: the caller may change or
    /// shrink its buffers at once.
    #[napi(ts_return_type = "Promise<ForwardOutput>")]
    pub fn forward_async(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        position_offset: Option<f64>,
    ) -> napi::Result<AsyncTask<ForwardTask>> {
        let at = gqa_core::position_offset(position_offset);
        spawn(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            move |m: &TaskModel, x, d, l| m.model.forward_f32_at(x, d, l, at?),
        )
    }

    /// Head outputs `[B,K]`: class probabilities (classification) or values (regression), on
    /// the calling thread. `dims = [B,T,E]`. Errors: `INVALID_OPTION` (no head), `INVALID_INPUT`.
    #[napi]
    pub fn predict(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
    ) -> napi::Result<ForwardOutput> {
        run(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            TaskModel::predict_f32,
        )
    }

    /// `predict` on the libuv thread pool; the inputs are copied before this returns.
    #[napi(ts_return_type = "Promise<ForwardOutput>")]
    pub fn predict_async(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
    ) -> napi::Result<AsyncTask<ForwardTask>> {
        spawn(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            TaskModel::predict_f32,
        )
    }

    /// Whether the model has a task head.
    #[napi]
    pub fn has_head(&self, env: Env) -> napi::Result<bool> {
        guard(&env, || Ok(self.get()?.head.is_some()))
    }

    /// The head's options (what `gqa_head` metadata holds), or `null` without a head.
    #[napi]
    pub fn head_config(&self, env: Env) -> napi::Result<Option<Value>> {
        guard(&env, || {
            self.get()?
                .head
                .as_ref()
                .map(|h| gqa_core::to_value(&h.cfg))
                .transpose()
        })
    }

    /// The weights as safetensors bytes (canonical names, F32, `gqa_config` metadata; with a
    /// head also `head.weight`, `head.bias` and `gqa_head` metadata).
    #[napi]
    pub fn save(&self, env: Env) -> napi::Result<Uint8Array> {
        guard(&env, || self.get()?.to_safetensors()).map(Uint8Array::new)
    }

    /// The model (and its head) as ONNX bytes (`gqa_core::onnx::export`: opset 17, inputs
    /// `input` `[batch, seq, embedDim]` f32 and `lengths` `[batch]` i64, output `output`, plus
    /// `probabilities` / `values` with a head). `options`: `OnnxOptions` (`{}`).
    /// Errors: `INVALID_OPTION` (options, a model too large for one ONNX file), `OUT_OF_MEMORY`.
    #[napi]
    pub fn export_onnx(&self, env: Env, options: Value) -> napi::Result<Uint8Array> {
        guard(&env, || {
            self.get()?.to_onnx(&OnnxOptions::from_value(options)?)
        })
        .map(Uint8Array::new)
    }

    /// Every option (TypeScript names).
    #[napi]
    pub fn config(&self, env: Env) -> napi::Result<Value> {
        guard(&env, || gqa_core::to_value(self.get()?.model.config()))
    }

    /// Exact parameter count, the head's included.
    #[napi]
    pub fn param_count(&self, env: Env) -> napi::Result<f64> {
        guard(&env, || Ok(self.get()?.param_count() as f64))
    }

    /// FNV-1a 64-bit digest of every backbone weight (16 hex digits; the head is not included).
    #[napi]
    pub fn weights_digest(&self, env: Env) -> napi::Result<String> {
        guard(&env, || self.get()?.model.weights_digest()).map(|d| format!("{d:016x}"))
    }

    /// Drops this handle's reference to the weights (running async forwards keep theirs).
    #[napi]
    pub fn free(&self) {
        self.inner.free();
    }
}

/// Work that produces `(values, dims)`, sent to the thread pool.
pub(crate) type ForwardFn = Box<dyn FnOnce() -> gqa_core::Result<(Vec<f32>, Vec<usize>)> + Send>;

/// A forward pass run by napi on the libuv thread pool; panics are caught (`INTERNAL`), errors
/// reject with the structured JS error ([`TaskError`]).
pub struct ForwardTask {
    run: Option<ForwardFn>,
    err: TaskError,
}

impl ForwardTask {
    /// The task running `run` on the pool.
    pub(crate) fn new(
        run: impl FnOnce() -> gqa_core::Result<(Vec<f32>, Vec<usize>)> + Send + 'static,
    ) -> AsyncTask<ForwardTask> {
        AsyncTask::new(ForwardTask {
            run: Some(Box::new(run)),
            err: TaskError::default(),
        })
    }
}

impl Task for ForwardTask {
    type Output = (Vec<f32>, Vec<usize>);
    type JsValue = ForwardOutput;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let run = self.run.take();
        self.err.run(|| {
            run.ok_or_else(|| gqa_core::Error::Internal("forward task ran twice".into()))?()
        })
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> napi::Result<ForwardOutput> {
        Ok(to_output(output))
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<ForwardOutput> {
        self.err.reject(&env, err)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<GqaModel>();
    is::<TaskModel>();
}
