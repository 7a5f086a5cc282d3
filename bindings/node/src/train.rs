//! Training and evaluation (mirrors `gqa_core::train`): a [`Trainer`] over a model with a head,
//! stepped on the calling thread or on the libuv thread pool, and [`Model::evaluate_async`].
//!
//! Sharing: the trainer holds the model as `Arc<TaskModel>` (the JS `Model` may be freed while
//! the trainer lives) and its state behind a [`Handle`] of `Mutex<Trainer>`, so an async step owns
//! what it needs, concurrent steps of one trainer run one after the other, and `free()` returns
//! the optimiser state and the data copy as soon as the last running step ends (not at GC).

use std::sync::{Arc, Mutex};

use gqa_core::train::{
    evaluate, EvalReport, FitOptions, Labels, StepReport, TaskModel, TrainData,
    Trainer as CoreTrainer,
};
use napi::bindgen_prelude::{AsyncTask, Float32Array, ToNapiValue, TypeName, Uint32Array};
use napi::ValueType;
use napi::{Env, Task};
use napi_derive::napi;
use serde_json::Value;

use crate::error::{guard, TaskError};
use crate::handle::Handle;
use crate::model::Model;
use crate::tensor::{to_usize, to_usize_opt};

/// A dataset `x: [N*T*E]` with `dims = [N,T,E]`, `lengths: [N]` and labels -> [`TrainData`].
fn train_data(
    x: &Float32Array,
    dims: &Uint32Array,
    lengths: &Option<Uint32Array>,
    classes: Option<Uint32Array>,
    values: Option<Float32Array>,
) -> gqa_core::Result<TrainData> {
    TrainData::new(
        x.to_vec(),
        &to_usize(dims),
        to_usize_opt(lengths),
        Labels::from_parts(classes.map(|c| c.to_vec()), values.map(|v| v.to_vec()))?,
    )
}

fn step_value(r: StepReport) -> gqa_core::Result<Value> {
    gqa_core::to_value(&r)
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
    /// Takes the next step on the calling thread; returns the `StepReport` (camelCase).
    /// Errors: `INVALID_INPUT` once the run is done; `INTERNAL` for a non-finite loss.
    #[napi]
    pub fn step(&self, env: Env) -> napi::Result<Value> {
        guard(&env, || {
            let s = self.state.get("trainer")?;
            step_value(step_shared(&s.model, &s.trainer)?)
        })
    }

    /// `step` on the libuv thread pool (the JS thread stays free).
    #[napi(ts_return_type = "Promise<any>")]
    pub fn step_async(&self, env: Env) -> napi::Result<AsyncTask<ValueTask>> {
        let s = guard(&env, || self.state.get("trainer"))?;
        Ok(ValueTask::new(move || {
            step_value(step_shared(&s.model, &s.trainer)?)
        }))
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
        guard(&env, || {
            Ok(lock(&self.state.get("trainer")?.trainer)?.steps_per_epoch() as u32)
        })
    }

    /// Steps of the whole run, `stepsPerEpoch * epochs`.
    #[napi(getter)]
    pub fn total_steps(&self, env: Env) -> napi::Result<u32> {
        guard(&env, || {
            Ok(lock(&self.state.get("trainer")?.trainer)?.total_steps() as u32)
        })
    }

    /// Whether every step has been taken.
    #[napi(getter)]
    pub fn done(&self, env: Env) -> napi::Result<bool> {
        guard(&env, || {
            Ok(lock(&self.state.get("trainer")?.trainer)?.done())
        })
    }
}

fn lock(state: &Mutex<CoreTrainer>) -> gqa_core::Result<std::sync::MutexGuard<'_, CoreTrainer>> {
    state.lock().map_err(|_| {
        gqa_core::Error::Internal("a previous training step panicked; start a new Trainer".into())
    })
}

#[napi]
impl Model {
    /// Starts a training run on this model (which needs a head). `x: [N*T*E]` row-major with
    /// `dims = [N,T,E]`, sequences left-aligned with `lengths[n]` valid steps (default all `T`);
    /// exactly one of `classLabels` (`[N]`, for a classification head) or `targets` (`[N*K]`,
    /// regression); `fitOptions` = the core's `FitOptions` (camelCase). The data is copied.
    /// Errors: `INVALID_OPTION` (fit options, no head), `INVALID_INPUT` (sizes, lengths, labels), `DISPOSED`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn trainer(
        &self,
        env: Env,
        x: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        class_labels: Option<Uint32Array>,
        targets: Option<Float32Array>,
        fit_options: Value,
    ) -> napi::Result<Trainer> {
        guard(&env, || {
            let m = self.get()?;
            let t = CoreTrainer::new(
                &m,
                train_data(&x, &dims, &lengths, class_labels, targets)?,
                FitOptions::from_value(fit_options)?,
            )?;
            Ok(Trainer {
                state: Handle::new(Run {
                    model: m,
                    trainer: Mutex::new(t),
                }),
            })
        })
    }

    /// Evaluates in eval mode (no dropout) in batches of `batchSize` on the libuv thread pool;
    /// resolves to the `EvalReport` (`{loss, accuracy, predictions, count}`). Arguments as
    /// [`Model::trainer`]. Errors: `INVALID_OPTION` (no head, batchSize 0), `INVALID_INPUT`.
    #[napi(ts_return_type = "Promise<any>")]
    // Six JS arguments, the same as the wasm binding's; `&self` and napi's `Env` make eight.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_async(
        &self,
        env: Env,
        x: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        class_labels: Option<Uint32Array>,
        targets: Option<Float32Array>,
        batch_size: u32,
    ) -> napi::Result<AsyncTask<ValueTask>> {
        // Labels and data are checked on the calling thread (cheap); the forward passes run on the pool.
        let (m, data) = guard(&env, || {
            Ok((
                self.get()?,
                train_data(&x, &dims, &lengths, class_labels, targets)?,
            ))
        })?;
        Ok(ValueTask::new(move || eval_value(&m, data, batch_size)))
    }
}

fn eval_value(m: &TaskModel, data: TrainData, batch_size: u32) -> gqa_core::Result<Value> {
    let r: EvalReport = evaluate(m, &data, batch_size as usize)?;
    gqa_core::to_value(&r)
}

/// Work that returns a report (a `serde_json::Value`, which napi-rs turns into a JS object on the
/// JS thread), run by napi on the libuv thread pool; panics are caught (`INTERNAL`), errors reject
/// with the structured JS error ([`TaskError`]).
pub struct ValueTask {
    run: Option<Box<dyn FnOnce() -> gqa_core::Result<Value> + Send>>,
    err: TaskError,
}

impl ValueTask {
    fn new(run: impl FnOnce() -> gqa_core::Result<Value> + Send + 'static) -> AsyncTask<ValueTask> {
        AsyncTask::new(ValueTask {
            run: Some(Box::new(run)),
            err: TaskError::default(),
        })
    }
}

/// A report on its way to JavaScript: napi-rs's `serde_json::Value` conversion, named for the
/// `Task` trait (which wants a [`TypeName`]).
pub struct Report(Value);

impl TypeName for Report {
    fn type_name() -> &'static str {
        "Object"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for Report {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        val: Self,
    ) -> napi::Result<napi::sys::napi_value> {
        // SAFETY: called by napi-rs with a valid env on the JS thread, as Value's own impl is.
        unsafe { Value::to_napi_value(env, val.0) }
    }
}

impl Task for ValueTask {
    type Output = Value;
    type JsValue = Report;

    fn compute(&mut self) -> napi::Result<Value> {
        let run = self.run.take();
        self.err
            .run(|| run.ok_or_else(|| gqa_core::Error::Internal("task ran twice".into()))?())
    }

    fn resolve(&mut self, _env: Env, output: Value) -> napi::Result<Report> {
        Ok(Report(output))
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Report> {
        self.err.reject(&env, err)
    }
}
