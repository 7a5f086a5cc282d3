//! Training and evaluation (mirrors `gqa_core::train`): a [`Trainer`] over a model with a head,
//! stepped on the calling thread or on the libuv thread pool, and [`Model::evaluate`].
//!
//! Sharing: the trainer holds the model as `Arc<TaskModel>` (the JS `Model` may be freed while
//! the trainer lives) and its state behind a [`Handle`] of `Mutex<Trainer>`, so an async step owns
//! what it needs, concurrent steps of one trainer run one after the other, and `free()` returns
//! the optimiser state and the data copy as soon as the last running step ends (not at GC).

use std::sync::{Arc, Mutex};

use gqa_core::train::{evaluate, EvalReport, FitOptions, Labels, StepReport, TaskModel, TrainData, Trainer as CoreTrainer};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::error::{guard, TaskError};
use crate::handle::Handle;
use crate::model::Model;
use crate::tensor::{to_usize, to_usize_opt};

/// A dataset `x: [N*T*E]` with `dims = [N,T,E]`, `lengths: [N]` and labels -> [`TrainData`].
fn train_data(x: &Float32Array, dims: &Uint32Array, lengths: &Option<Uint32Array>, classes: Option<Uint32Array>, values: Option<Float32Array>) -> gqa_core::Result<TrainData> {
    TrainData::new(x.to_vec(), &to_usize(dims), to_usize_opt(lengths), Labels::from_parts(classes.map(|c| c.to_vec()), values.map(|v| v.to_vec()))?)
}

fn ser_err(e: serde_json::Error) -> gqa_core::Error {
    gqa_core::Error::Internal(format!("report serialisation: {e}"))
}

fn step_json(r: StepReport) -> gqa_core::Result<String> {
    serde_json::to_string(&r).map_err(ser_err)
}

/// One training run over a model with a head (the core's `Trainer`).
#[napi]
pub struct Trainer {
    state: Handle<Run>,
}

/// What a trainer frees: its model reference, optimiser state and data copy.
struct Run {
    model: Arc<TaskModel>,
    trainer: Mutex<CoreTrainer>,
}

fn step_shared(model: &TaskModel, state: &Mutex<CoreTrainer>) -> gqa_core::Result<StepReport> {
    lock(state)?.step(model)
}

#[napi]
impl Trainer {
    /// Starts a run on `model`. `x: [N*T*E]` row-major with `dims = [N,T,E]`, sequences
    /// left-aligned with `lengths[n]` valid steps (default all `T`); exactly one of `classLabels`
    /// (`[N]`, for a classification head) or `targets` (`[N*K]`, regression); `fitOptionsJson` =
    /// the core's `FitOptions` (camelCase). The data is copied.
    /// Errors: `INVALID_OPTION` (fit options, no head), `INVALID_INPUT` (sizes, lengths, labels), `DISPOSED`.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        model: &Model,
        x: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        class_labels: Option<Uint32Array>,
        targets: Option<Float32Array>,
        fit_options_json: String,
    ) -> napi::Result<Trainer> {
        guard(&env, || {
            let m = model.get()?;
            let t = CoreTrainer::new(&m, train_data(&x, &dims, &lengths, class_labels, targets)?, FitOptions::from_json(&fit_options_json)?)?;
            Ok(Trainer { state: Handle::new(Run { model: m, trainer: Mutex::new(t) }) })
        })
    }

    /// Takes the next step on the calling thread; returns the `StepReport` as JSON (camelCase).
    /// Errors: `INVALID_INPUT` once the run is done; `INTERNAL` for a non-finite loss.
    #[napi]
    pub fn step(&self, env: Env) -> napi::Result<String> {
        guard(&env, || {
            let s = self.state.get("trainer")?;
            step_json(step_shared(&s.model, &s.trainer)?)
        })
    }

    /// `step` on the libuv thread pool (the JS thread stays free).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn step_async(&self, env: Env) -> napi::Result<AsyncTask<JsonTask>> {
        let s = guard(&env, || self.state.get("trainer"))?;
        Ok(JsonTask::new(move || step_json(step_shared(&s.model, &s.trainer)?)))
    }

    /// Frees the run's optimiser state and data copy (when a running step ends, if one is in
    /// flight); idempotent. Later calls fail with `DISPOSED`.
    #[napi]
    pub fn free(&self) {
        self.state.free();
    }

    /// Steps per epoch, `ceil(N / batchSize)`.
    #[napi(getter)]
    pub fn steps_per_epoch(&self, env: Env) -> napi::Result<u32> {
        guard(&env, || Ok(lock(&self.state.get("trainer")?.trainer)?.steps_per_epoch() as u32))
    }

    /// Steps of the whole run, `stepsPerEpoch * epochs`.
    #[napi(getter)]
    pub fn total_steps(&self, env: Env) -> napi::Result<u32> {
        guard(&env, || Ok(lock(&self.state.get("trainer")?.trainer)?.total_steps() as u32))
    }

    /// Whether every step has been taken.
    #[napi(getter)]
    pub fn done(&self, env: Env) -> napi::Result<bool> {
        guard(&env, || Ok(lock(&self.state.get("trainer")?.trainer)?.done()))
    }
}

fn lock(state: &Mutex<CoreTrainer>) -> gqa_core::Result<std::sync::MutexGuard<'_, CoreTrainer>> {
    state.lock().map_err(|_| gqa_core::Error::Internal("a previous training step panicked; start a new Trainer".into()))
}

#[napi]
impl Model {
    /// Evaluates in eval mode (no dropout) in batches of `batchSize` on the calling thread;
    /// returns the `EvalReport` as JSON (`{loss, accuracy, predictions, count}`). Arguments as
    /// [`Trainer::new`]. Errors: `INVALID_OPTION` (no head, batchSize 0), `INVALID_INPUT`.
    #[napi]
    pub fn evaluate(&self, env: Env, x: Float32Array, dims: Uint32Array, lengths: Option<Uint32Array>, class_labels: Option<Uint32Array>, targets: Option<Float32Array>, batch_size: u32) -> napi::Result<String> {
        guard(&env, || eval_json(&*self.get()?, train_data(&x, &dims, &lengths, class_labels, targets)?, batch_size))
    }

    /// `evaluate` on the libuv thread pool.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn evaluate_async(&self, env: Env, x: Float32Array, dims: Uint32Array, lengths: Option<Uint32Array>, class_labels: Option<Uint32Array>, targets: Option<Float32Array>, batch_size: u32) -> napi::Result<AsyncTask<JsonTask>> {
        // Labels and data are checked on the calling thread (cheap); the forward passes run on the pool.
        let (m, data) = guard(&env, || Ok((self.get()?, train_data(&x, &dims, &lengths, class_labels, targets)?)))?;
        Ok(JsonTask::new(move || eval_json(&m, data, batch_size)))
    }
}

fn eval_json(m: &TaskModel, data: TrainData, batch_size: u32) -> gqa_core::Result<String> {
    let r: EvalReport = evaluate(m, &data, batch_size as usize)?;
    serde_json::to_string(&r).map_err(ser_err)
}

/// Work that returns JSON, run by napi on the libuv thread pool; panics are caught (`INTERNAL`),
/// errors reject with the structured JS error ([`TaskError`]).
pub struct JsonTask {
    run: Option<Box<dyn FnOnce() -> gqa_core::Result<String> + Send>>,
    err: TaskError,
}

impl JsonTask {
    fn new(run: impl FnOnce() -> gqa_core::Result<String> + Send + 'static) -> AsyncTask<JsonTask> {
        AsyncTask::new(JsonTask { run: Some(Box::new(run)), err: TaskError::default() })
    }
}

impl Task for JsonTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        let run = self.run.take();
        self.err.run(|| run.ok_or_else(|| gqa_core::Error::Internal("task ran twice".into()))?())
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<String> {
        self.err.reject(&env, err)
    }
}
