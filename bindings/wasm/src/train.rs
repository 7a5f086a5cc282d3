//! Training and evaluation (mirrors `gqa_core::train`): a [`Trainer`] over a model with a head,
//! stepped synchronously (the TypeScript layer yields to the event loop between steps), and
//! [`Model::evaluate_async`].

use std::rc::Rc;

use gqa_core::train::{evaluate, FitOptions, Labels, TaskModel, TrainData, Trainer as CoreTrainer};
use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::error::{wrap, JsResult};
use crate::model::Model;
use crate::tensor::{settle, to_usize};
use crate::value::{from_js, to_js};

/// A dataset `x: [N*T*E]` with `dims = [N,T,E]`, `lengths: [N]` and labels -> [`TrainData`].
fn train_data(
    x: Vec<f32>,
    dims: &[u32],
    lengths: Option<Vec<u32>>,
    classes: Option<Vec<u32>>,
    values: Option<Vec<f32>>,
) -> gqa_core::Result<TrainData> {
    TrainData::new(
        x,
        &to_usize(dims),
        lengths.map(|l| to_usize(&l)),
        Labels::from_parts(classes, values)?,
    )
}

/// One training run over a model with a head (the core's `Trainer`). Holds its own reference to
/// the model, so freeing the JS `Model` does not end the run.
#[wasm_bindgen]
pub struct Trainer {
    model: Rc<TaskModel>,
    inner: CoreTrainer,
}

#[wasm_bindgen]
impl Trainer {
    /// Takes the next step; returns the `StepReport` (camelCase).
    /// Errors: `INVALID_INPUT` once the run is done; `INTERNAL` for a non-finite loss.
    pub fn step(&mut self) -> JsResult<JsValue> {
        to_js(&wrap(self.inner.step(&self.model))?)
    }

    /// `step` as a promise (settled before it returns: wasm has no thread of its own; the
    /// TypeScript layer yields to the event loop before each step).
    #[wasm_bindgen(js_name = stepAsync, unchecked_return_type = "Promise<any>")]
    pub fn step_async(&mut self) -> Promise {
        settle(self.step())
    }

    /// Steps per epoch, `ceil(N / batchSize)`.
    #[wasm_bindgen(getter, js_name = stepsPerEpoch)]
    pub fn steps_per_epoch(&self) -> u32 {
        self.inner.steps_per_epoch() as u32
    }

    /// Steps of the whole run, `stepsPerEpoch * epochs`.
    #[wasm_bindgen(getter, js_name = totalSteps)]
    pub fn total_steps(&self) -> u32 {
        self.inner.total_steps() as u32
    }

    /// Whether every step has been taken.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> bool {
        self.inner.done()
    }
}

#[wasm_bindgen]
impl Model {
    /// Starts a training run on this model (which needs a head). `x: [N*T*E]` row-major with
    /// `dims = [N,T,E]`, sequences left-aligned with `lengths[n]` valid steps (default all `T`);
    /// exactly one of `classLabels` (`[N]`, classification head) or `targets` (`[N*K]`,
    /// regression); `fitOptions` = the core's `FitOptions` (camelCase).
    /// Errors: `INVALID_OPTION` (fit options, no head), `INVALID_INPUT` (sizes, lengths, labels).
    pub fn trainer(
        &self,
        x: Vec<f32>,
        dims: &[u32],
        lengths: Option<Vec<u32>>,
        class_labels: Option<Vec<u32>>,
        targets: Option<Vec<f32>>,
        fit_options: JsValue,
    ) -> JsResult<Trainer> {
        let m = self.inner.clone();
        let r = from_js(fit_options, "fit options")
            .and_then(FitOptions::from_value)
            .and_then(|opts| {
                CoreTrainer::new(
                    &m,
                    train_data(x, dims, lengths, class_labels, targets)?,
                    opts,
                )
            });
        wrap(r).map(|inner| Trainer { model: m, inner })
    }

    /// Evaluates in eval mode (no dropout) in batches of `batchSize`; resolves to the `EvalReport`
    /// (`{loss, accuracy, predictions, count}`), settled before it returns (wasm has no thread of
    /// its own). Arguments as [`Model::trainer`].
    /// Errors: `INVALID_OPTION` (no head, batchSize 0), `INVALID_INPUT`.
    #[wasm_bindgen(js_name = evaluateAsync, unchecked_return_type = "Promise<any>")]
    pub fn evaluate_async(
        &self,
        x: Vec<f32>,
        dims: &[u32],
        lengths: Option<Vec<u32>>,
        class_labels: Option<Vec<u32>>,
        targets: Option<Vec<f32>>,
        batch_size: u32,
    ) -> Promise {
        let r = train_data(x, dims, lengths, class_labels, targets)
            .and_then(|d| evaluate(&self.inner, &d, batch_size as usize));
        settle(wrap(r).and_then(|r| to_js(&r)))
    }
}
