//! The training loop: seeded shuffling, mini-batches trimmed to their longest sequence,
//! dropout in train mode, AdamW, global-norm clipping, warmup + cosine schedule.

use candle_core::Tensor;
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::compute::{StepOutcome, TrainBatch, TrainState};
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::kernels::engine::LinearRef;
use crate::kernels::training::{train_step, Objective, StepLoss, TrainWorkspace};

use super::head::{HeadConfig, RegressionLoss};
use super::loss::{correct_count, cross_entropy_smoothed, huber, mse, scalar, targets};
use super::optim::AdamWConfig;
use super::schedule::WarmupCosine;
use super::task::TaskModel;

/// The most steps one training run may take: step counts cross the bindings as `u32`, and
/// `usize` is 32 bits on wasm32.
pub const MAX_TOTAL_STEPS: u64 = u32::MAX as u64;

/// The largest magnitude of a regression target: its square (1e30) and sums of such squares over
/// a batch stay finite in f32 (max 3.4e38); larger targets overflow the loss. Standardise them.
pub const MAX_TARGET_MAGNITUDE: f32 = 1e15;

/// Refuses `epochs` whose run (`stepsPerEpoch * epochs`, computed in 64 bits) would take more than
/// [`MAX_TOTAL_STEPS`] steps, naming `epochs` and the largest count allowed.
fn check_total_steps(steps_per_epoch: usize, epochs: usize) -> Result<()> {
    let spe = (steps_per_epoch as u64).max(1);
    match spe.checked_mul(epochs as u64) {
        Some(total) if total <= MAX_TOTAL_STEPS => Ok(()),
        _ => Err(Error::option(
            "epochs",
            format!(
                "at most {} epochs ({spe} steps per epoch; a run takes at most {MAX_TOTAL_STEPS} steps)",
                MAX_TOTAL_STEPS / spe
            ),
            epochs,
        )),
    }
}

/// Labels of a dataset: class indices, or regression targets `[N, K]` (flat, row-major).
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Class index per sequence, `[N]`.
    Classes(Vec<u32>),
    /// Regression targets, `[N * K]`.
    Values(Vec<f32>),
}

impl Labels {
    /// The labels from the two optional arrays the bindings take: exactly one of class indices
    /// `[N]` or regression targets `[N * K]`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `labels` when both or neither are given.
    pub fn from_parts(classes: Option<Vec<u32>>, values: Option<Vec<f32>>) -> Result<Labels> {
        match (classes, values) {
            (Some(c), None) => Ok(Labels::Classes(c)),
            (None, Some(v)) => Ok(Labels::Values(v)),
            (Some(_), Some(_)) => Err(Error::input(
                "labels",
                "class indices or regression targets, not both",
                "both",
            )),
            (None, None) => Err(Error::input(
                "labels",
                "class indices (Uint32Array) or regression targets (Float32Array)",
                "neither",
            )),
        }
    }
}

/// A dataset of padded sequences.
///
/// # Shapes
/// `x: [N * T * E]` (row-major `[N, T, E]`, sequence `n` left-aligned with `lengths[n]` valid
/// positions), `lengths: [N]`, labels `[N]` or `[N, K]`.
#[derive(Debug, Clone)]
pub struct TrainData {
    x: Vec<f32>,
    n: usize,
    t: usize,
    e: usize,
    lengths: Vec<usize>,
    labels: Labels,
}

impl TrainData {
    /// Checks and wraps a dataset.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `dims`, `data`, `lengths`/`lengths[i]` or `labels`
    /// when sizes disagree or a length is outside `1..=T`.
    pub fn new(
        x: Vec<f32>,
        dims: &[usize],
        lengths: Option<Vec<usize>>,
        labels: Labels,
    ) -> Result<Self> {
        let [n, t, e] = <[usize; 3]>::try_from(dims)
            .map_err(|_| Error::input("dims", "[N, T, E] (3 dims)", format!("{dims:?}")))?;
        if t == 0 {
            return Err(Error::input("dims", "T >= 1", format!("{dims:?}")));
        }
        let want = crate::error::check_f32_buffer("data", dims)?;
        if x.len() != want {
            return Err(Error::input(
                "data",
                format!("{want} values (N*T*E for dims {dims:?})"),
                format!("{} values", x.len()),
            ));
        }
        let lengths = lengths.unwrap_or_else(|| vec![t; n]);
        if lengths.len() != n {
            return Err(Error::input(
                "lengths",
                format!("{n} lengths (one per sequence)"),
                format!("{} lengths", lengths.len()),
            ));
        }
        if let Some((i, l)) = lengths.iter().enumerate().find(|(_, &l)| l < 1 || l > t) {
            return Err(Error::input(
                format!("lengths[{i}]"),
                format!("a length in 1..={t}"),
                l,
            ));
        }
        crate::input::check_finite("data", &x, n, t, Some(&lengths))?;
        match &labels {
            Labels::Classes(c) if c.len() != n => {
                return Err(Error::input(
                    "labels",
                    format!("{n} class labels"),
                    format!("{} labels", c.len()),
                ));
            }
            Labels::Values(v) if n > 0 && v.len() % n != 0 => {
                return Err(Error::input(
                    "labels",
                    format!("N*K regression targets with N={n}"),
                    format!("{} values", v.len()),
                ));
            }
            Labels::Values(v) => {
                // NaN, infinity or a huge target makes the loss non-finite: the caller's input.
                if let Some((i, y)) = v.iter().enumerate().find(|(_, y)| {
                    y.abs()
                        .partial_cmp(&MAX_TARGET_MAGNITUDE)
                        .is_none_or(std::cmp::Ordering::is_gt)
                }) {
                    return Err(Error::input(
                        format!("labels[{i}]"),
                        format!(
                            "a finite regression target with magnitude <= {MAX_TARGET_MAGNITUDE:e} (standardise larger targets)"
                        ),
                        y,
                    ));
                }
            }
            _ => {}
        }
        Ok(TrainData {
            x,
            n,
            t,
            e,
            lengths,
            labels,
        })
    }

    /// Number of sequences `N`.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Gathers the rows `idx` into a batch trimmed to its longest sequence.
    /// Returns `x: [b, Tb, E]`, lengths, and the batch's labels.
    fn batch(
        &self,
        idx: &[usize],
        device: &candle_core::Device,
    ) -> Result<(Tensor, Vec<usize>, Labels)> {
        let (x, tb, lengths, labels) = self.batch_values(idx);
        Ok((
            Tensor::from_vec(x, (idx.len(), tb, self.e), device)?,
            lengths,
            labels,
        ))
    }

    /// [`TrainData::batch`] as plain values: `x` (`[b, Tb, E]` row-major), `Tb`, lengths, labels.
    fn batch_values(&self, idx: &[usize]) -> (Vec<f32>, usize, Vec<usize>, Labels) {
        let tb = idx.iter().map(|&i| self.lengths[i]).max().unwrap_or(1);
        let mut x = Vec::with_capacity(idx.len() * tb * self.e);
        for &i in idx {
            let row = &self.x[i * self.t * self.e..][..tb * self.e];
            x.extend_from_slice(row);
        }
        let lengths: Vec<usize> = idx.iter().map(|&i| self.lengths[i]).collect();
        let labels = match &self.labels {
            Labels::Classes(c) => Labels::Classes(idx.iter().map(|&i| c[i]).collect()),
            Labels::Values(v) => {
                let k = v.len() / self.n.max(1);
                Labels::Values(
                    idx.iter()
                        .flat_map(|&i| v[i * k..(i + 1) * k].iter().copied())
                        .collect(),
                )
            }
        };
        (x, tb, lengths, labels)
    }
}

/// Options of a training run (`model.fit(data, opts)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FitOptions {
    /// Passes over the data, default 10.
    pub epochs: usize,
    /// Sequences per step, default 32.
    pub batch_size: usize,
    /// Peak learning rate, default 1e-3.
    pub lr: f64,
    /// Final learning rate of the cosine decay, default 0.
    pub min_lr: f64,
    /// AdamW decoupled weight decay, default 0.01.
    pub weight_decay: f64,
    /// AdamW beta1, default 0.9.
    pub beta1: f64,
    /// AdamW beta2, default 0.999.
    pub beta2: f64,
    /// AdamW eps, default 1e-8.
    pub eps: f64,
    /// Warmup as a fraction of all steps, default 0.1.
    pub warmup_ratio: f64,
    /// Gradient clipping by global L2 norm; `null` disables. Default 1.0.
    pub clip_norm: Option<f64>,
    /// Seed of the shuffling and dropout generators, default 0.
    pub seed: u64,
    /// Shuffle the data every epoch, default true.
    pub shuffle: bool,
    /// Label smoothing `eps` in `[0, 1)` of the classification loss, default 0 (PyTorch
    /// `cross_entropy(label_smoothing=eps)`; Szegedy et al. 2016): the target puts `1 - eps` on the
    /// label and `eps / C` on every class. Step reports give the smoothed loss; `evaluate` (and the
    /// per-epoch validation) the plain cross-entropy. A regression head refuses a nonzero value.
    pub label_smoothing: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            min_lr: 0.0,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_ratio: 0.1,
            clip_norm: Some(1.0),
            seed: 0,
            shuffle: true,
            label_smoothing: 0.0,
        }
    }
}

impl FitOptions {
    /// Parses options from JSON (TypeScript names); missing options take their defaults.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option for unknown names, wrong types or bad values.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_value(crate::config::json_text(json, "fit options")?)
    }

    /// [`FitOptions::from_json`] of options given as a structured value (what the bindings pass;
    /// `Value::Null` = every default).
    ///
    /// # Errors
    /// As [`FitOptions::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        let o: FitOptions = crate::config::parse_value(
            value,
            "fit options",
            "",
            "a known fit option (epochs, batchSize, lr, minLr, weightDecay, beta1, beta2, eps, warmupRatio, clipNorm, seed, shuffle, labelSmoothing)",
        )?;
        o.validate()?;
        Ok(o)
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `epochs`, `batchSize`, `lr`, `minLr`, `warmupRatio`,
    /// `clipNorm` or `labelSmoothing`.
    pub fn validate(&self) -> Result<()> {
        if self.epochs < 1 {
            return Err(Error::option("epochs", "an integer >= 1", self.epochs));
        }
        if self.batch_size < 1 {
            return Err(Error::option(
                "batchSize",
                "an integer >= 1",
                self.batch_size,
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::option("lr", "a finite number > 0", self.lr));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(Error::option(
                "minLr",
                format!("a number in [0, lr={}]", self.lr),
                self.min_lr,
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(Error::option(
                "warmupRatio",
                "a fraction in [0, 1)",
                self.warmup_ratio,
            ));
        }
        if let Some(c) = self.clip_norm {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::option("clipNorm", "a finite number > 0 or null", c));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::option(
                "labelSmoothing",
                "a number in [0, 1)",
                self.label_smoothing,
            ));
        }
        Ok(())
    }
}

/// What one optimisation step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// 0-based epoch of this step.
    pub epoch: usize,
    /// 0-based step within the epoch.
    pub step_in_epoch: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// 0-based global step.
    pub global_step: usize,
    /// Loss of the batch (before the update).
    pub loss: f64,
    /// Correct predictions in the batch (classification; 0 for regression).
    pub correct: usize,
    /// Sequences in the batch.
    pub count: usize,
    /// Valid (unpadded) positions in the batch.
    pub tokens: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient L2 norm before clipping (`torch.nn.utils.clip_grad_norm_`'s return
    /// value); `None` when clipping is off ([`FitOptions::clip_norm`] `None`: the norm is then not
    /// computed). Serialised as `gradNorm`, `null` when absent.
    pub grad_norm: Option<f64>,
}

/// Optimiser state, data order and generators of one training run over a [`TaskModel`].
#[derive(Debug)]
pub struct Trainer {
    opts: FitOptions,
    data: TrainData,
    /// Optimiser state of the model's engine ([`crate::compute`]).
    state: TrainState,
    schedule: WarmupCosine,
    order: Vec<usize>,
    shuffle_rng: ChaCha8Rng,
    dropout: Dropout,
    global_step: usize,
    /// Gradients and AdamW moments (3 x the parameters) under the memory budget.
    _memory: crate::memory::Reservation,
}

impl Trainer {
    /// Starts a run. The same `opts.seed`, data and model give the same loss curve.
    ///
    /// # Errors
    /// Option errors; [`Error::InvalidInput`] naming `labels` when they do not fit the head
    /// (class labels for a regression head, or the wrong `K`); no head; [`Error::OutOfMemory`]
    /// when the gradients and AdamW moments (3 x the parameters, f32) do not fit under the
    /// memory budget ([`crate::memory`]); [`Error::InvalidOption`] naming `dtype` for a model
    /// placed in bf16 (inference only).
    pub fn new(task: &TaskModel, data: TrainData, opts: FitOptions) -> Result<Self> {
        opts.validate()?;
        for (_, v) in task.model.params().iter() {
            crate::device::check_trainable(v.dtype())?;
        }
        let head = task.head("training")?;
        match (&head.cfg, &data.labels) {
            (HeadConfig::Classification { num_classes, .. }, Labels::Classes(c)) => {
                if let Some((i, y)) = c
                    .iter()
                    .enumerate()
                    .find(|(_, &y)| y as usize >= *num_classes)
                {
                    return Err(Error::input(
                        format!("labels[{i}]"),
                        format!("a class index in 0..{num_classes}"),
                        y,
                    ));
                }
            }
            (HeadConfig::Regression { out_dim, .. }, Labels::Values(v)) => {
                if opts.label_smoothing != 0.0 {
                    return Err(Error::option(
                        "labelSmoothing",
                        "0 for a regression head (it smooths class labels)",
                        opts.label_smoothing,
                    ));
                }
                if v.len() != data.n * out_dim {
                    return Err(Error::input(
                        "labels",
                        format!("N*outDim = {} regression targets", data.n * out_dim),
                        v.len(),
                    ));
                }
            }
            (HeadConfig::Classification { .. }, _) => {
                return Err(Error::input(
                    "labels",
                    "class indices for a classification head",
                    "regression targets",
                ))
            }
            (HeadConfig::Regression { .. }, _) => {
                return Err(Error::input(
                    "labels",
                    "regression targets for a regression head",
                    "class indices",
                ))
            }
        }
        if data.is_empty() {
            return Err(Error::input("data", "at least one sequence", 0));
        }
        let steps_per_epoch = data.n.div_ceil(opts.batch_size);
        check_total_steps(steps_per_epoch, opts.epochs)?;
        let vars: Vec<_> = task.vars().into_iter().map(|(_, v)| v).collect();
        let values: u64 = vars.iter().map(|v| v.elem_count() as u64).sum();
        let memory = crate::memory::reserve(
            "optimiser state (gradients and AdamW moments)",
            values.saturating_mul(12),
        )?;
        let acfg = AdamWConfig {
            lr: opts.lr,
            beta1: opts.beta1,
            beta2: opts.beta2,
            eps: opts.eps,
            weight_decay: opts.weight_decay,
        };
        let state = task.model.engine().train_state(task, acfg)?;
        let total = steps_per_epoch * opts.epochs;
        let warmup = (opts.warmup_ratio * total as f64).round() as usize;
        let schedule = WarmupCosine {
            peak: opts.lr,
            min: opts.min_lr,
            warmup,
            total,
        };
        let dropout = Dropout::new(
            task.model.config().dropout as f32,
            opts.seed ^ 0x9E37_79B9_7F4A_7C15,
        )?;
        Ok(Trainer {
            order: (0..data.n).collect(),
            shuffle_rng: ChaCha8Rng::seed_from_u64(opts.seed),
            opts,
            data,
            state,
            schedule,
            dropout,
            global_step: 0,
            _memory: memory,
        })
    }

    /// Steps in one epoch, `ceil(N / batchSize)`.
    pub fn steps_per_epoch(&self) -> usize {
        self.data.n.div_ceil(self.opts.batch_size)
    }

    /// Steps in the whole run.
    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.opts.epochs
    }

    /// Whether every step of the run has been taken.
    pub fn done(&self) -> bool {
        self.global_step >= self.total_steps()
    }

    /// Takes the next step (shuffling at the start of each epoch).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `step` when the run is already done; backend errors.
    pub fn step(&mut self, task: &TaskModel) -> Result<StepReport> {
        crate::testing::panic_point("step");
        // Sole use of the weights (updated in place), taken before entering the pool.
        let _use = task.model.write_use();
        // On gqa's compute pool (GQA.init({ threads })): candle's ops and GEMMs inherit it.
        crate::kernels::threads::install(|| self.step_inner(task))
    }

    fn step_inner(&mut self, task: &TaskModel) -> Result<StepReport> {
        if self.done() {
            return Err(Error::input(
                "step",
                format!("at most {} steps", self.total_steps()),
                self.global_step + 1,
            ));
        }
        let spe = self.steps_per_epoch();
        let epoch = self.global_step / spe;
        let step_in_epoch = self.global_step % spe;
        if step_in_epoch == 0 && self.opts.shuffle {
            self.order.sort_unstable();
            self.order.shuffle(&mut self.shuffle_rng);
        }
        let lo = step_in_epoch * self.opts.batch_size;
        let hi = (lo + self.opts.batch_size).min(self.data.n);
        let idx = self.order[lo..hi].to_vec();
        let lr = self.schedule.lr(self.global_step);
        let (x, tb, lengths, labels) = self.data.batch_values(&idx);
        let batch = TrainBatch {
            x,
            t: tb,
            lengths: &lengths,
            labels: &labels,
            label_smoothing: self.opts.label_smoothing,
            clip_norm: self.opts.clip_norm,
            lr,
        };
        let StepOutcome {
            loss: loss_value,
            correct,
            grad_norm,
        } = self
            .state
            .step(task, batch, &mut self.dropout, self.global_step)?;
        self.global_step += 1;
        Ok(StepReport {
            epoch,
            step_in_epoch,
            steps_per_epoch: spe,
            global_step: self.global_step - 1,
            loss: loss_value,
            correct,
            count: idx.len(),
            tokens: lengths.iter().sum(),
            lr,
            grad_norm,
        })
    }
}

pub(crate) fn check_loss(loss: f64, step: usize) -> Result<()> {
    if !loss.is_finite() {
        return Err(Error::Internal(format!(
            "training loss became {loss} at step {step}"
        )));
    }
    Ok(())
}

/// The fused CPU training step's loss and gradients for one batch (`x: [B, T, E]` row-major,
/// `lengths: [B]`): the gradient of every var of [`TaskModel::vars`] (same order) is written
/// into `grads` (resized as needed). `dropout`: masks drawn exactly as the candle path draws
/// them. Only for a model where [`crate::GqaModel`]'s fused engine applies (CPU, f32).
///
/// # Shapes
/// `x`: `B*T*E`; `lengths`: `B`; labels `[B]` or `[B, K]`.
///
/// # Errors
/// No head; labels of the wrong kind or size; [`Error::InvalidOption`] naming `outputMode` for
/// `all`; kernel errors.
#[allow(clippy::too_many_arguments)]
pub fn fused_gradients(
    task: &TaskModel,
    x: &[f32],
    t: usize,
    lengths: &[usize],
    labels: &Labels,
    dropout: Option<&mut Dropout>,
    grads: &mut Vec<Vec<f32>>,
    ws: &mut TrainWorkspace,
) -> Result<StepLoss> {
    fused_gradients_smoothed(task, x, t, lengths, labels, dropout, grads, ws, 0.0)
}

/// [`fused_gradients`] with label smoothing `eps` in `[0, 1)` on a classification head
/// ([`FitOptions::label_smoothing`]; ignored by a regression head).
///
/// # Errors
/// As [`fused_gradients`].
#[allow(clippy::too_many_arguments)]
pub fn fused_gradients_smoothed(
    task: &TaskModel,
    x: &[f32],
    t: usize,
    lengths: &[usize],
    labels: &Labels,
    dropout: Option<&mut Dropout>,
    grads: &mut Vec<Vec<f32>>,
    ws: &mut TrainWorkspace,
    eps: f64,
) -> Result<StepLoss> {
    let head = task.head("training")?;
    let b = lengths.len();
    let objective = match (&head.cfg, labels) {
        (HeadConfig::Classification { class_weights, .. }, Labels::Classes(y)) => {
            Objective::Classes {
                labels: y,
                weights: class_weights.as_deref(),
                smoothing: eps as f32,
            }
        }
        (
            HeadConfig::Regression {
                loss: RegressionLoss::Mse,
                ..
            },
            Labels::Values(v),
        ) => Objective::Mse { targets: v },
        (
            HeadConfig::Regression {
                loss: RegressionLoss::Huber,
                huber_delta,
                ..
            },
            Labels::Values(v),
        ) => Objective::Huber {
            targets: v,
            delta: *huber_delta as f32,
        },
        _ => {
            return Err(Error::input(
                "labels",
                "labels of the head's kind",
                "labels of the other kind",
            ))
        }
    };
    let out = crate::compute::fused::engine_output(task.model.config().output_mode);
    let vars = task.vars();
    grads.resize_with(vars.len(), Vec::new);
    for (g, (_, v)) in grads.iter_mut().zip(&vars) {
        g.clear();
        g.resize(v.elem_count(), 0.0);
    }
    let rot = task.model.rotary(t)?;
    let head_t = [
        head.weight.as_detached_tensor(),
        head.bias.as_detached_tensor(),
    ];
    let lengths = if lengths.iter().all(|&l| l == t) {
        None
    } else {
        Some(lengths)
    };
    // Guards on the pool, as in the fused forward ([`crate::compute::fused`]).
    crate::kernels::threads::install(|| {
        crate::compute::fused::with_weights(&task.model, rot.as_ref(), |dims, w, rope| {
            crate::kernels::fused::with_slices(&head_t, |hs| {
                train_step(
                    dims,
                    w,
                    LinearRef { w: hs[0], b: hs[1] },
                    rope,
                    x,
                    b,
                    t,
                    lengths,
                    out,
                    objective,
                    dropout,
                    grads,
                    ws,
                )
            })
        })
    })
}

/// Loss of a batch and its correct count (classification), with label smoothing `eps` on a
/// classification head.
pub(crate) fn batch_loss(
    task: &TaskModel,
    out: &Tensor,
    labels: &Labels,
    eps: f64,
) -> Result<(Tensor, usize)> {
    let head = task.head("a loss")?;
    match (&head.cfg, labels) {
        (HeadConfig::Classification { class_weights, .. }, Labels::Classes(y)) => {
            let loss = cross_entropy_smoothed(out, y, class_weights.as_deref(), eps)?;
            Ok((loss, correct_count(out, y)?))
        }
        (
            HeadConfig::Regression {
                out_dim,
                loss,
                huber_delta,
            },
            Labels::Values(v),
        ) => {
            let b = out.dim(0)?;
            let target = targets(v, b, *out_dim, out.device())?;
            let l = match loss {
                RegressionLoss::Mse => mse(out, &target)?,
                RegressionLoss::Huber => huber(out, &target, *huber_delta)?,
            };
            Ok((l, 0))
        }
        _ => Err(Error::input(
            "labels",
            "labels of the head's kind",
            "labels of the other kind",
        )),
    }
}

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    /// Mean loss over the data (the head's loss, class weights applied as in training).
    pub loss: f64,
    /// Fraction correct (classification), else `None`.
    pub accuracy: Option<f64>,
    /// Predicted class per sequence (classification), else empty.
    pub predictions: Vec<u32>,
    /// Sequences evaluated.
    pub count: usize,
}

/// Evaluates in eval mode (no dropout) in batches of `batch_size`.
///
/// # Errors
/// No head; label/head mismatch; backend errors.
pub fn evaluate(task: &TaskModel, data: &TrainData, batch_size: usize) -> Result<EvalReport> {
    let _use = task.model.read_use();
    crate::kernels::threads::install(|| evaluate_inner(task, data, batch_size))
}

fn evaluate_inner(task: &TaskModel, data: &TrainData, batch_size: usize) -> Result<EvalReport> {
    if batch_size == 0 {
        return Err(Error::option("batchSize", "an integer >= 1", 0));
    }
    let mut outs = Vec::new();
    let order: Vec<usize> = (0..data.n).collect();
    for idx in order.chunks(batch_size) {
        let (x, lengths, _) = data.batch(idx, task.model.device())?;
        // Inference forward (the fused engine on the CPU): no autograd graph.
        let h = task.model.forward(&x, Some(&lengths))?;
        outs.push(task.head("evaluation")?.forward(&h)?);
    }
    if outs.is_empty() {
        return Ok(EvalReport {
            loss: f64::NAN,
            accuracy: None,
            predictions: vec![],
            count: 0,
        });
    }
    let out = Tensor::cat(&outs, 0)?;
    let (loss, correct) = batch_loss(task, &out, &data.labels, 0.0)?;
    let (accuracy, predictions) = match data.labels {
        Labels::Classes(_) => (
            Some(correct as f64 / data.n as f64),
            out.argmax(candle_core::D::Minus1)?.to_vec1()?,
        ),
        Labels::Values(_) => (None, vec![]),
    };
    Ok(EvalReport {
        loss: scalar(&loss)?,
        accuracy,
        predictions,
        count: data.n,
    })
}
