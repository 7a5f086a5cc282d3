//! The fused implementation of the seam: the SIMD kernels of [`crate::kernels`] on host f32
//! memory (CPU; wasm32 too). No autograd: its training step is the hand-written backward of
//! [`crate::kernels::training`].

use candle_core::Tensor;

use super::{Compute, Epilogue, LayerOps, Push, StepOutcome, TrainBatch};
use crate::attention::GqaAttention;
use crate::config::OutputMode;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::kernels::engine::{self, EngineDims, EngineOutput, RopeRef, WeightsRef};
use crate::kernels::fused;
use crate::kernels::training::TrainWorkspace;
use crate::mask::Mask;
use crate::model::GqaModel;
use crate::rope::Rotary;
use crate::train::optim::{AdamWConfig, FusedAdamW};
use crate::train::TaskModel;

/// The fused f32 kernels on host memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fused;

impl LayerOps for Fused {
    fn linear(&self, x: &Tensor, w: &Tensor, b: &Tensor, epi: Epilogue<'_>) -> Result<Tensor> {
        match epi {
            Epilogue::None => fused::linear(x, w, b, None, false),
            Epilogue::Gelu => fused::linear(x, w, b, None, true),
            Epilogue::Residual(r) => fused::linear(x, w, b, Some(r), false),
        }
    }

    fn layer_norm(&self, x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        fused::layer_norm(x, g, b, eps)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Mask,
        scale: f64,
    ) -> Result<Tensor> {
        fused::attention(q, k, v, scale, mask, true)
    }

    /// Projections with folded biases, rotary in place on `[B,T,N,D]`, attention reading the
    /// projections through strides and writing `[B,T,qDim]` for `out_proj` (no head
    /// transposes or copies); the residual add is folded into `out_proj`'s bias pass.
    fn self_attention(
        &self,
        layer: &GqaAttention,
        x: &Tensor,
        mask: &Mask,
        rotary: Option<&Rotary>,
        residual: Option<&Tensor>,
        _track: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let cfg = layer.config();
        let (nh, nkv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim());
        let (qp, kp, vp, op) = layer.projections();
        let q = qp.forward(x, false)?;
        let k = kp.forward(x, false)?;
        let v = vp.forward(x, false)?;
        if let Some(r) = rotary {
            fused::rotary_in_place(&q, nh, d, r.cos(), r.sin(), 0)?;
            fused::rotary_in_place(&k, nkv, d, r.cos(), r.sin(), 0)?;
        }
        let heads = |y: &Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?)
        };
        let o = fused::attention(
            &heads(&q, nh)?,
            &heads(&k, nkv)?,
            &heads(&v, nkv)?,
            1.0 / (d as f64).sqrt(),
            mask,
            true,
        )?;
        match residual {
            Some(r) => op.forward_residual(&o, r, false),
            None => op.forward(&o, false),
        }
    }
}

/// The engine's output mode of a model config.
pub(crate) fn engine_output(mode: OutputMode) -> EngineOutput {
    match mode {
        OutputMode::All => EngineOutput::All,
        OutputMode::LastTimestep => EngineOutput::Last,
        OutputMode::MeanPool => EngineOutput::Mean,
    }
}

/// Runs `f` with `model`'s parameters (and `rot`'s tables) as host slices for the fused
/// kernels. Take the weights' read guards on the compute pool, never while waiting for it.
///
/// # Errors
/// [`Error::Internal`] when a parameter is not a contiguous f32 CPU tensor; `f`'s errors.
pub(crate) fn with_weights<R>(
    model: &GqaModel,
    rot: Option<&Rotary>,
    f: impl FnOnce(EngineDims, &WeightsRef<'_>, Option<RopeRef<'_>>) -> Result<R>,
) -> Result<R> {
    use crate::kernels::engine::{BlockRef, LinearRef, NormRef};
    use crate::layout::{BlockModule, PARAMS_PER_BLOCK};
    let cfg = model.config();
    let tensors: Vec<Tensor> = model
        .params()
        .iter()
        .map(|(_, v)| v.as_detached_tensor())
        .collect();
    let rot_t: Vec<Tensor> = rot
        .iter()
        .flat_map(|r| [r.cos().clone(), r.sin().clone()])
        .collect();
    let dims = EngineDims {
        embed: cfg.embed_dim,
        hidden: cfg.hidden_size,
        heads: cfg.num_heads,
        kv_heads: cfg.num_kv_heads,
        head_dim: cfg.head_dim(),
        ffn: 4 * cfg.hidden_size,
        window: cfg.sliding_window,
    };
    let has_input = cfg.has_input_projection();
    fused::with_slices(&tensors, |p| {
        fused::with_slices(&rot_t, |r| {
            let lin = |i: usize| LinearRef {
                w: p[i],
                b: p[i + 1],
            };
            let norm = |i: usize| NormRef {
                g: p[i],
                b: p[i + 1],
            };
            let first = if has_input { 2 } else { 0 };
            let blocks = (0..cfg.num_layers)
                .map(|l| {
                    let at = |m: BlockModule| first + l * PARAMS_PER_BLOCK + m.first_param();
                    BlockRef {
                        attn_norm: norm(at(BlockModule::AttnNorm)),
                        q: lin(at(BlockModule::QProj)),
                        k: lin(at(BlockModule::KProj)),
                        v: lin(at(BlockModule::VProj)),
                        out: lin(at(BlockModule::OutProj)),
                        ffn_norm: norm(at(BlockModule::FfnNorm)),
                        up: lin(at(BlockModule::FfnUp)),
                        down: lin(at(BlockModule::FfnDown)),
                    }
                })
                .collect();
            let w = WeightsRef {
                input: has_input.then(|| lin(0)),
                blocks,
                final_norm: norm(first + cfg.num_layers * PARAMS_PER_BLOCK),
            };
            let rope = (r.len() == 2).then(|| RopeRef {
                cos: r[0],
                sin: r[1],
            });
            f(dims, &w, rope)
        })
    })
}

/// K and V per layer, `[B, NKV, C, D]` f32 each, on the host.
#[derive(Debug)]
pub struct HostCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    nkv: usize,
    d: usize,
}

impl HostCache {
    pub(crate) fn bytes(&self) -> u64 {
        self.k
            .iter()
            .chain(&self.v)
            .map(|c| c.len() as u64 * 4)
            .sum()
    }

    /// See [`crate::compute::KvCache::shift`].
    pub(crate) fn shift(&mut self, row: usize, from: usize, keep: usize, cap: usize) {
        let (nkv, d) = (self.nkv, self.d);
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            for kh in 0..nkv {
                let base = (row * nkv + kh) * cap * d;
                layer.copy_within(base + from * d..base + (from + keep) * d, base);
            }
        }
    }

    pub(crate) fn poison_unused(&mut self, lengths: &[usize], cap: usize) {
        let (nkv, d) = (self.nkv, self.d);
        for (b, &len) in lengths.iter().enumerate() {
            let free = cap - len;
            if free == 0 {
                continue;
            }
            for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
                for kh in 0..nkv {
                    let base = ((b * nkv + kh) * cap + len) * d;
                    layer[base..base + free * d].fill(f32::NAN);
                }
            }
        }
    }
}

/// The fused training state: gradient buffers, AdamW moments, activation workspace.
#[derive(Debug)]
pub struct FusedTrain {
    opt: FusedAdamW,
    grads: Vec<Vec<f32>>,
    ws: TrainWorkspace,
    vars: Vec<candle_core::Var>,
    /// The workspace `ws` (kept between steps) under the memory budget: the largest step's
    /// working set so far ([`crate::memory::WorkPath::FusedTraining`]).
    ws_memory: Option<crate::memory::Reservation>,
}

impl Compute for Fused {
    type Cache = HostCache;
    type TrainState = FusedTrain;

    fn forward(&self, model: &GqaModel, x: &Tensor, mask: &Mask, first: usize) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let x = x.contiguous()?;
        let out = engine_output(model.config().output_mode);
        let rot = model.rotary_at(first, t)?;
        let y = fused::with_slices(std::slice::from_ref(&x), |xs| {
            // The weights' read guards are taken on the compute pool, never while waiting
            // for it: a training step of this model holds a pool worker while it waits for
            // their write guard.
            crate::kernels::threads::install(|| {
                with_weights(model, rot.as_ref(), |dims, w, rope| {
                    engine::forward(dims, w, rope, xs[0], b, t, mask, out)
                })
            })
        })?;
        let h = model.config().hidden_size;
        let shape = if out == EngineOutput::All {
            vec![b, t, h]
        } else {
            vec![b, h]
        };
        Ok(Tensor::from_vec(y, shape, x.device())?)
    }

    fn new_cache(&self, model: &GqaModel, batch: usize, capacity: usize) -> Result<HostCache> {
        let cfg = model.config();
        let n = batch * cfg.num_kv_heads * capacity * cfg.head_dim();
        // Fallible and zeroed (untouched pages): a refusal is `OutOfMemory`, not an abort.
        let zeroed = || {
            (0..cfg.num_layers)
                .map(|_| crate::memory::try_zeroed_f32("kv cache", n))
                .collect::<Result<Vec<_>>>()
        };
        Ok(HostCache {
            k: zeroed()?,
            v: zeroed()?,
            nkv: cfg.num_kv_heads,
            d: cfg.head_dim(),
        })
    }

    /// One push on [`crate::kernels::engine::cached_step`]: no candle tensor per op, K/V
    /// written straight into the host cache.
    fn push(&self, model: &GqaModel, cache: &mut HostCache, p: Push<'_>) -> Result<Vec<f32>> {
        let b = p.new.len();
        let HostCache { k, v, .. } = cache;
        // Guards on the pool, as in `forward`.
        crate::kernels::threads::install(|| {
            with_weights(model, p.rotary, |dims, w, rope| {
                engine::cached_step(
                    dims,
                    w,
                    rope,
                    p.rope_rows,
                    p.x,
                    b,
                    p.t,
                    p.new,
                    p.cached,
                    engine::KvCache {
                        k,
                        v,
                        capacity: p.capacity,
                    },
                )
            })
        })
    }

    fn train_state(&self, task: &TaskModel, cfg: AdamWConfig) -> Result<FusedTrain> {
        let vars: Vec<_> = task.vars().into_iter().map(|(_, v)| v).collect();
        let sizes: Vec<usize> = vars.iter().map(|v| v.elem_count()).collect();
        Ok(FusedTrain {
            opt: FusedAdamW::new(&sizes, cfg)?,
            grads: sizes
                .iter()
                .map(|&n| crate::memory::try_zeroed_f32("gradients", n))
                .collect::<Result<_>>()?,
            ws: TrainWorkspace::default(),
            vars,
            ws_memory: None,
        })
    }

    fn train_step(
        &self,
        task: &TaskModel,
        state: &mut FusedTrain,
        batch: TrainBatch<'_>,
        dropout: &mut Dropout,
        step: usize,
    ) -> Result<StepOutcome> {
        use crate::train::optim::{clip_coefficient, global_norm};
        use crate::train::trainer::{check_loss, fused_gradients_smoothed};
        // The workspace grows to this step's working set and stays: reserve the growth before
        // the step allocates it.
        let need = crate::memory::working_set(
            task.model.work_dims(
                batch.lengths.len(),
                batch.t,
                batch.t,
                task.head("training")?.cfg.out_dim(),
            ),
            crate::memory::WorkPath::FusedTraining,
        );
        if state.ws_memory.as_ref().is_none_or(|r| r.bytes() < need) {
            state.ws_memory = None;
            state.ws_memory = Some(crate::memory::reserve("training activations", need)?);
        }
        let sl = fused_gradients_smoothed(
            task,
            &batch.x,
            batch.t,
            batch.lengths,
            batch.labels,
            Some(dropout),
            &mut state.grads,
            &mut state.ws,
            batch.label_smoothing,
        )?;
        check_loss(sl.loss, step)?;
        let (norm, scale) = match batch.clip_norm {
            Some(c) => {
                let norm = global_norm(&state.grads);
                let coef = clip_coefficient(norm, c);
                (Some(norm), (coef < 1.0).then_some(coef as f32))
            }
            None => (None, None),
        };
        state.opt.step(&state.vars, &state.grads, scale, batch.lr)?;
        Ok(StepOutcome {
            loss: sl.loss,
            correct: sl.correct,
            grad_norm: norm,
        })
    }
}
