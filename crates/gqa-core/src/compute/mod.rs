//! The compute seam: the one place that decides how a model is computed.
//!
//! ```text
//!   GqaModel / GqaBlock / GqaAttention / Linear / LayerNorm / Session / Trainer
//!        |  (hold an Engine, chosen once when the model or layer is built)
//!        v
//!   Engine ──┬── Reference(Device)  compute/reference.rs  candle ops, autograd, any device
//!            └── Fused              compute/fused.rs      SIMD kernels on host f32 (CPU, wasm)
//! ```
//!
//! Each implementation provides the same two levels ([`Compute`]):
//!
//! - whole-model calls: `forward` (`x: [B,T,E]` -> `[B,H]` or `[B,T,H]`), a KV cache and
//!   `push` (prefill and decode, SPEC section 4), and a training state with `train_step`;
//! - layer ops ([`LayerOps`]): `linear`, `layer_norm`, `attention` and the attention layer's
//!   `self_attention`, which the layers call (so a standalone [`crate::GqaAttention`], the
//!   attention maps and a forward with dropout run on the same implementation).
//!
//! Inputs and outputs are candle [`Tensor`]s (any device) and associated types
//! ([`Compute::Cache`], [`Compute::TrainState`]) that an implementation keeps where it computes:
//! host vectors for the fused kernels, device tensors for candle; a WebGPU or CUDA
//! implementation adds a variant here with its own buffers and touches nothing else.
//! Calls that build an autograd graph (`track`) always use the reference ops: candle's
//! autograd is the only differentiation besides the fused training step.
//!
//! Dimensions: `B` batch, `T` positions, `E` embedDim, `H` hiddenSize, `NH` query heads,
//! `NKV` KV heads, `D` headDim.

use candle_core::{DType, Device, Tensor};

use crate::attention::GqaAttention;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::mask::Mask;
use crate::model::GqaModel;
use crate::params::ParamStore;
use crate::rope::Rotary;
use crate::train::optim::AdamWConfig;
use crate::train::TaskModel;

pub mod fused;
pub mod reference;

pub use fused::Fused;
pub use reference::Reference;

/// How a model (or a standalone layer) is computed; chosen once, when it is built.
#[derive(Debug, Clone)]
pub enum Engine {
    /// candle ops on the parameters' device (differentiable; CPU, CUDA, Metal...).
    Reference(Device),
    /// The fused f32 kernels on host memory (CPU; also compiled for wasm32).
    Fused,
}

impl Engine {
    /// The engine for parameters on `device`: [`Engine::Fused`] when they are all f32 on the
    /// CPU and [`crate::kernels::reference_kernels`] is off, else [`Engine::Reference`]. The
    /// only place that reads the device, the dtypes and `GQA_REFERENCE_KERNELS`.
    pub fn select(device: &Device, dtypes: impl IntoIterator<Item = DType>) -> Self {
        if device.is_cpu()
            && !crate::kernels::reference_kernels()
            && dtypes.into_iter().all(|d| d == DType::F32)
        {
            Engine::Fused
        } else {
            Engine::Reference(device.clone())
        }
    }

    /// [`Engine::select`] for the parameters of `params` on `device`.
    pub fn for_params(device: &Device, params: &ParamStore) -> Self {
        Self::select(device, params.iter().map(|(_, v)| v.dtype()))
    }

    /// The name (`reference`, `fused`).
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Reference(_) => "reference",
            Engine::Fused => "fused",
        }
    }

    /// The layer ops of one call: the reference ops when the call builds an autograd graph.
    pub(crate) fn layer(&self, track: bool) -> &'static dyn LayerOps {
        match (self, track) {
            (Engine::Fused, false) => &Fused,
            _ => &Reference,
        }
    }

    /// Whether a forward on this engine materialises the `[B, NH, T, T]` scores (for the
    /// memory budget): the reference ops do, and so does any forward that builds a graph.
    pub(crate) fn materialises_scores(&self, graph: bool) -> bool {
        graph || matches!(self, Engine::Reference(_))
    }

    /// Which working set a call on this engine holds in host memory ([`crate::memory`]): the
    /// fused buffers, candle's intermediates (`graph`: with score matrices; `track`: every
    /// block's, for autograd), or only the input and output when candle runs on a GPU.
    pub(crate) fn work_path(&self, graph: bool, track: bool) -> crate::memory::WorkPath {
        use crate::memory::WorkPath;
        match self {
            Engine::Reference(d) if !d.is_cpu() => WorkPath::OffHost,
            _ if !self.materialises_scores(graph) => WorkPath::Engine,
            _ if track => WorkPath::CandleTracked,
            _ => WorkPath::Candle,
        }
    }

    /// Model forward (SPEC section 2) of `x: [B,T,E]` (f32, finite at valid positions) under
    /// `mask` ([`Mask::padded`]), position `t` of each sequence at absolute position
    /// `first + t` (rotary; 0 for a plain forward); `dropout`/`track`: training (always the
    /// reference ops). Returns `[B,H]` or `[B,T,H]` (`all`).
    pub(crate) fn forward(
        &self,
        model: &GqaModel,
        x: &Tensor,
        (mask, first): (&Mask, usize),
        dropout: Option<&mut Dropout>,
        track: bool,
    ) -> Result<Tensor> {
        match self {
            Engine::Fused if !track && dropout.is_none() => Fused.forward(model, x, mask, first),
            _ => model.forward_layers(x, (mask, first), dropout, track),
        }
    }

    /// An empty KV cache for `batch` rows of `capacity` positions of `model`.
    pub(crate) fn new_cache(
        &self,
        model: &GqaModel,
        batch: usize,
        capacity: usize,
    ) -> Result<KvCache> {
        Ok(match self {
            Engine::Reference(_) => {
                KvCache::Reference(Reference.new_cache(model, batch, capacity)?)
            }
            Engine::Fused => KvCache::Fused(Fused.new_cache(model, batch, capacity)?),
        })
    }

    /// A training state (optimiser moments, gradient buffers) over `vars` of `task`.
    pub(crate) fn train_state(&self, task: &TaskModel, cfg: AdamWConfig) -> Result<TrainState> {
        Ok(match self {
            Engine::Reference(_) => TrainState::Reference(Reference.train_state(task, cfg)?),
            Engine::Fused => TrainState::Fused(Box::new(Fused.train_state(task, cfg)?)),
        })
    }
}

/// What [`Compute::push`] appends: row `b` of the chunk `x: [B, t, E]` adds `new[b]`
/// positions after its `cached[b]` cached ones (`totals[b] = cached[b] + new[b]`).
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// The chunk `[B, t, E]` f32 (row-major host values).
    pub x: &'a [f32],
    /// `t`.
    pub t: usize,
    /// New valid positions per row (`B` values in `0..=t`).
    pub new: &'a [usize],
    /// Cached positions per row before the push.
    pub cached: &'a [usize],
    /// `cached + new` per row.
    pub totals: &'a [usize],
    /// The cache capacity per row.
    pub capacity: usize,
    /// Rotary tables covering the positions the push reads (`None` without rotary).
    pub rotary: Option<&'a Rotary>,
    /// Row of `rotary` that holds each row's first new position (`B` values): `cached` when
    /// the tables start at position 0; `b * t` for a windowed session's per-row tables.
    pub rope_rows: &'a [usize],
}

/// One batch of a training step: `x: [B, T, E]` row-major with `lengths` and labels.
#[derive(Debug)]
pub struct TrainBatch<'a> {
    /// The batch values `[B, T, E]`.
    pub x: Vec<f32>,
    /// `T`.
    pub t: usize,
    /// Valid positions per sequence.
    pub lengths: &'a [usize],
    /// The labels of the batch.
    pub labels: &'a crate::train::Labels,
    /// Label smoothing of a classification head.
    pub label_smoothing: f64,
    /// Gradient clipping by global norm.
    pub clip_norm: Option<f64>,
    /// The learning rate of this step.
    pub lr: f64,
}

/// What a training step reports: loss, correct count, global gradient norm before clipping.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// Mean loss of the batch.
    pub loss: f64,
    /// Correct predictions (classification).
    pub correct: usize,
    /// Gradient norm before clipping (with `clip_norm`).
    pub grad_norm: Option<f64>,
}

/// One implementation of the model's maths (see the module docs).
pub trait Compute {
    /// Per layer K (after rotary) and V, `[B, NKV, capacity, D]` each, where this
    /// implementation keeps them.
    type Cache;
    /// Optimiser state and gradient buffers of a training run.
    type TrainState;

    /// Inference forward: `x: [B,T,E]` -> `[B,H]` or `[B,T,H]` (`all`), padded positions of
    /// `mask` ignored (NaN allowed there), padded outputs 0; position `t` at absolute position
    /// `first + t` (rotary).
    ///
    /// # Errors
    /// Backend and memory errors.
    fn forward(&self, model: &GqaModel, x: &Tensor, mask: &Mask, first: usize) -> Result<Tensor>;

    /// An empty cache (zeros) for `batch` rows of `capacity` positions.
    ///
    /// # Errors
    /// Backend errors.
    fn new_cache(&self, model: &GqaModel, batch: usize, capacity: usize) -> Result<Self::Cache>;

    /// Prefill or decode: runs the new positions through every layer, writing their K/V into
    /// `cache` at `cached[b]..totals[b]`; returns the final hidden states `[B, t, H]` (after
    /// `final_norm`) row-major (entries at positions `>= new[b]` are meaningless).
    ///
    /// # Errors
    /// Backend errors.
    fn push(&self, model: &GqaModel, cache: &mut Self::Cache, p: Push<'_>) -> Result<Vec<f32>>;

    /// A fresh training state for `task`'s variables ([`TaskModel::vars`]).
    ///
    /// # Errors
    /// Option errors of the optimiser.
    fn train_state(&self, task: &TaskModel, cfg: AdamWConfig) -> Result<Self::TrainState>;

    /// One optimiser step on `batch` (forward, loss, gradients, clipping, AdamW update).
    ///
    /// # Errors
    /// Backend errors; a non-finite loss.
    fn train_step(
        &self,
        task: &TaskModel,
        state: &mut Self::TrainState,
        batch: TrainBatch<'_>,
        dropout: &mut Dropout,
        step: usize,
    ) -> Result<StepOutcome>;
}

/// How [`LayerOps::linear`] finishes `x W^T + b`.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    /// `x W^T + b`.
    None,
    /// `GELU(x W^T + b)` (exact GELU).
    Gelu,
    /// `residual + (x W^T + b)` (`residual: [..., out]`).
    Residual(&'a Tensor),
}

/// The layer-level ops of an implementation (no graph when fused; see [`Engine::layer`]).
pub trait LayerOps: Sync {
    /// Dense layer `x: [..., in]`, `w: [out, in]`, `b: [out]` -> `[..., out]` with `epi`.
    ///
    /// # Errors
    /// Shape mismatch; backend errors.
    fn linear(&self, x: &Tensor, w: &Tensor, b: &Tensor, epi: Epilogue<'_>) -> Result<Tensor>;

    /// LayerNorm over the last axis (biased variance, `eps`): `x: [..., W]`, `g, b: [W]`.
    ///
    /// # Errors
    /// Backend errors.
    fn layer_norm(&self, x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor>;

    /// Attention core `q: [B,NH,Tq,D]`, `k, v: [B,NKV,Tk,D]` under `mask` -> `[B,Tq,NH*D]`
    /// (heads concatenated), `softmax(q k^T * scale + mask) v`.
    ///
    /// # Errors
    /// Shape mismatch; backend errors.
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Mask,
        scale: f64,
    ) -> Result<Tensor>;

    /// The whole attention layer `x: [B,T,H]` -> `[B,T,H]` at positions `0..T` (rotary, when
    /// given, covering `T` positions), plus `residual` when given.
    ///
    /// # Errors
    /// Backend and rotary errors.
    fn self_attention(
        &self,
        layer: &GqaAttention,
        x: &Tensor,
        mask: &Mask,
        rotary: Option<&Rotary>,
        residual: Option<&Tensor>,
        track: bool,
    ) -> Result<Tensor>;
}

/// A session's KV cache, kept by the engine that computes it.
#[derive(Debug)]
pub enum KvCache {
    /// Device tensors (candle).
    Reference(<Reference as Compute>::Cache),
    /// Host vectors (fused kernels).
    Fused(<Fused as Compute>::Cache),
}

impl KvCache {
    /// Runs one push (see [`Compute::push`]).
    pub(crate) fn push(&mut self, model: &GqaModel, p: Push<'_>) -> Result<Vec<f32>> {
        match self {
            KvCache::Reference(c) => Reference.push(model, c, p),
            KvCache::Fused(c) => Fused.push(model, c, p),
        }
    }

    /// Whether pushes materialise `[B, NH, t, L]` scores (the reference ops).
    pub(crate) fn materialises_scores(&self) -> bool {
        matches!(self, KvCache::Reference(_))
    }

    /// Bytes of every K and V buffer.
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            KvCache::Reference(c) => c.bytes(),
            KvCache::Fused(c) => c.bytes(),
        }
    }

    /// Moves `keep` slots of row `row`, starting at slot `from`, to slots `0..keep` (every layer,
    /// K and V; `capacity` slots per row): a windowed session drops the slots its window has
    /// passed.
    ///
    /// # Errors
    /// [`Error::Backend`] from candle.
    pub(crate) fn shift(
        &mut self,
        row: usize,
        from: usize,
        keep: usize,
        capacity: usize,
    ) -> Result<()> {
        match self {
            KvCache::Reference(c) => c.shift(row, from, keep),
            KvCache::Fused(c) => {
                c.shift(row, from, keep, capacity);
                Ok(())
            }
        }
    }

    /// Fills the slots at or past each row's length with NaN (tests).
    pub(crate) fn poison_unused(&mut self, lengths: &[usize], capacity: usize) -> Result<()> {
        match self {
            KvCache::Reference(c) => c.poison_unused(lengths, capacity),
            KvCache::Fused(c) => {
                c.poison_unused(lengths, capacity);
                Ok(())
            }
        }
    }
}

/// A training run's optimiser state, kept by the engine that computes it.
#[derive(Debug)]
pub enum TrainState {
    /// candle autograd and [`crate::train::optim::AdamW`].
    Reference(<Reference as Compute>::TrainState),
    /// The fused training step and its AdamW.
    Fused(Box<<Fused as Compute>::TrainState>),
}

impl TrainState {
    /// One step (see [`Compute::train_step`]).
    pub(crate) fn step(
        &mut self,
        task: &TaskModel,
        batch: TrainBatch<'_>,
        dropout: &mut Dropout,
        step: usize,
    ) -> Result<StepOutcome> {
        match self {
            TrainState::Reference(s) => Reference.train_step(task, s, batch, dropout, step),
            TrainState::Fused(s) => Fused.train_step(task, s, batch, dropout, step),
        }
    }
}
