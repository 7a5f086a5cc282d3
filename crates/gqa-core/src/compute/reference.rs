//! The reference implementation of the seam: candle ops on any candle device, differentiable
//! (candle autograd). The dense mask bias exists only here ([`crate::kernels::reference`]).

use candle_core::{DType, Tensor, D};

use super::{Compute, Epilogue, LayerOps, Push, StepOutcome, TrainBatch};
use crate::attention::GqaAttention;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::input::zero_padded;
use crate::mask::Mask;
use crate::model::GqaModel;
use crate::rope::Rotary;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::TaskModel;

/// candle ops on the parameters' device.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference;

impl LayerOps for Reference {
    fn linear(&self, x: &Tensor, w: &Tensor, b: &Tensor, epi: Epilogue<'_>) -> Result<Tensor> {
        let (out, inp) = w.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        // bf16 weights (crate::device::Precision::Bf16): the product in the weights' dtype,
        // everything around it in f32 (`to_dtype` to the same dtype is free).
        let y = x
            .reshape((rows, inp))?
            .to_dtype(w.dtype())?
            .matmul(&w.t()?)?
            .broadcast_add(b)?
            .to_dtype(x.dtype())?;
        *dims.last_mut().expect("rank >= 1") = out;
        let y = y.reshape(dims)?;
        Ok(match epi {
            Epilogue::None => y,
            Epilogue::Gelu => y.gelu_erf()?,
            Epilogue::Residual(r) => (r + y)?,
        })
    }

    fn layer_norm(&self, x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (var + eps)?.sqrt()?.recip()?;
        let (g, b) = (g.to_dtype(x.dtype())?, b.to_dtype(x.dtype())?);
        Ok(xc
            .broadcast_mul(&inv)?
            .broadcast_mul(&g)?
            .broadcast_add(&b)?)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Mask,
        scale: f64,
    ) -> Result<Tensor> {
        let (b, nh, tq, d) = q.dims4()?;
        let o = crate::kernels::reference::attention(q, k, v, mask, scale)?;
        Ok(o.transpose(1, 2)?.contiguous()?.reshape((b, tq, nh * d))?)
    }

    fn self_attention(
        &self,
        layer: &GqaAttention,
        x: &Tensor,
        mask: &Mask,
        rotary: Option<&Rotary>,
        residual: Option<&Tensor>,
        track: bool,
    ) -> Result<Tensor> {
        let (q, k, v) = layer.qkv(x, rotary, 0, track)?;
        let scale = 1.0 / (layer.config().head_dim() as f64).sqrt();
        let o = self.attention(&q, &k, &v, mask, scale)?;
        let y = layer.project_output(&o, track)?;
        Ok(match residual {
            Some(r) => (r + y)?,
            None => y,
        })
    }
}

/// Per layer K (after rotary) and V, `[B, NKV, capacity, D]` f32 tensors on the device.
#[derive(Debug)]
pub struct TensorCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl TensorCache {
    pub(crate) fn bytes(&self) -> u64 {
        self.k
            .iter()
            .chain(&self.v)
            .map(|t| t.elem_count() as u64 * 4)
            .sum()
    }

    /// See [`crate::compute::KvCache::shift`].
    pub(crate) fn shift(&mut self, row: usize, from: usize, keep: usize) -> Result<()> {
        if keep == 0 || from == 0 {
            return Ok(());
        }
        for t in self.k.iter().chain(&self.v) {
            let r = t.narrow(0, row, 1)?;
            // A contiguous copy of the moved slots first: source and destination may overlap.
            let src = r.narrow(2, from, keep)?.force_contiguous()?;
            r.slice_set(&src, 2, 0)?;
        }
        Ok(())
    }

    pub(crate) fn poison_unused(&mut self, lengths: &[usize], capacity: usize) -> Result<()> {
        let Some(first) = self.k.first() else {
            return Ok(());
        };
        let (_, nkv, _, d) = first.dims4()?;
        let device = first.device().clone();
        for (b, &len) in lengths.iter().enumerate() {
            let free = capacity - len;
            if free == 0 {
                continue;
            }
            let nan = Tensor::full(f32::NAN, (1, nkv, free, d), &device)?;
            for t in self.k.iter().chain(&self.v) {
                t.narrow(0, b, 1)?.slice_set(&nan, 2, len)?;
            }
        }
        Ok(())
    }
}

/// Per-row rotary tables `[B, 1, t, D/2]`: table rows `rope_rows[b] + i` (clamped for the
/// ignored positions `i >= new[b]`, whose rows may lie past the table).
fn row_rotary(model: &GqaModel, r: &Rotary, p: &Push<'_>) -> Result<(Tensor, Tensor)> {
    let (b, t) = (p.new.len(), p.t);
    let device = model.device();
    let mut idx = Vec::with_capacity(b * t);
    let last = r.positions().max(1) - 1;
    for &first in p.rope_rows {
        idx.extend((0..t).map(|i| (first + i).min(last) as u32));
    }
    let idx = Tensor::from_vec(idx, b * t, device)?;
    let half = model.config().head_dim() / 2;
    let cos = r.cos().index_select(&idx, 0)?.reshape((b, 1, t, half))?;
    let sin = r.sin().index_select(&idx, 0)?.reshape((b, 1, t, half))?;
    Ok((cos, sin))
}

/// The attention of one push over layer `layer`'s cache: `q: [B, NH, t, D]` -> `[B, t, NH*D]`.
/// Rows of equal totals are attended together over views narrowed to the used length; when
/// the totals differ, each row separately over its own length (never reading a key at or past
/// a row's length).
fn cached_attention(
    model: &GqaModel,
    cache: &TensorCache,
    layer: usize,
    q: &Tensor,
    p: &Push<'_>,
) -> Result<Tensor> {
    let cfg = model.config();
    let (b, t) = (p.new.len(), p.t);
    let scale = 1.0 / (cfg.head_dim() as f64).sqrt();
    let totals = p.totals;
    if totals.iter().all(|&l| l == totals[0]) {
        let l = totals[0];
        let kc = cache.k[layer].narrow(2, 0, l)?;
        let vc = cache.v[layer].narrow(2, 0, l)?;
        let mask = Mask::rows(p.cached, totals).with_window(cfg.sliding_window);
        return attention_over_cache(q, &kc, &vc, &mask, scale);
    }
    let mut rows = Vec::with_capacity(b);
    for row in 0..b {
        let l = totals[row];
        if l == 0 {
            rows.push(Tensor::zeros(
                (1, t, cfg.q_dim()),
                DType::F32,
                model.device(),
            )?);
            continue;
        }
        let kc = cache.k[layer].narrow(0, row, 1)?.narrow(2, 0, l)?;
        let vc = cache.v[layer].narrow(0, row, 1)?.narrow(2, 0, l)?;
        let mask =
            Mask::rows(&p.cached[row..=row], &totals[row..=row]).with_window(cfg.sliding_window);
        rows.push(attention_over_cache(
            &q.narrow(0, row, 1)?,
            &kc,
            &vc,
            &mask,
            scale,
        )?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

/// `softmax(q k^T * scale + mask) v` with query head `i` reading KV head `i / group`, as in
/// [`crate::kernels::reference::attention`], but over cache views `k, v: [B, NKV, L, D]` that
/// are narrowed (strided) and multiplied in place, without a contiguous copy of the cache.
/// `q: [B, NH, t, D]`, `mask` over `L` keys. Returns `o: [B, t, NH*D]`.
fn attention_over_cache(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Mask,
    scale: f64,
) -> Result<Tensor> {
    let (b, nh, t, d) = q.dims4()?;
    let p = crate::kernels::reference::attention_probs(q, k, mask, scale)?;
    let o = p.matmul(v)?.reshape((b, nh, t, d))?;
    Ok(o.transpose(1, 2)?.contiguous()?.reshape((b, t, nh * d))?)
}

/// The reference training state: candle's AdamW over the task's variables.
#[derive(Debug)]
pub struct ReferenceTrain {
    opt: AdamW,
    vars: Vec<candle_core::Var>,
}

impl Compute for Reference {
    type Cache = TensorCache;
    type TrainState = ReferenceTrain;

    fn forward(&self, model: &GqaModel, x: &Tensor, mask: &Mask, first: usize) -> Result<Tensor> {
        model.forward_layers(x, (mask, first), None, false)
    }

    fn new_cache(&self, model: &GqaModel, batch: usize, capacity: usize) -> Result<TensorCache> {
        let cfg = model.config();
        let (nkv, d) = (cfg.num_kv_heads, cfg.head_dim());
        let zeros = || Tensor::zeros((batch, nkv, capacity, d), DType::F32, model.device());
        let mut k = Vec::with_capacity(cfg.num_layers);
        let mut v = Vec::with_capacity(cfg.num_layers);
        for _ in 0..cfg.num_layers {
            k.push(zeros()?);
            v.push(zeros()?);
        }
        Ok(TensorCache { k, v })
    }

    fn push(&self, model: &GqaModel, cache: &mut TensorCache, p: Push<'_>) -> Result<Vec<f32>> {
        let cfg = model.config();
        let (b, t, e) = (p.new.len(), p.t, cfg.embed_dim);
        let x = Tensor::from_vec(
            crate::memory::try_copy_f32("input", p.x)?,
            (b, t, e),
            model.device(),
        )?;
        let x = if p.new.iter().any(|&c| c < t) {
            zero_padded(&x, Some(p.new))?
        } else {
            x
        };
        let mut h = model.project_input(&x, false)?;
        let rot = p.rotary.map(|r| row_rotary(model, r, &p)).transpose()?;
        for (layer, block) in model.blocks().iter().enumerate() {
            let a = block.attn_norm.forward(&h, false)?;
            let (q, k, v) = block.attn.qkv(&a, None, 0, false)?;
            let (q, k) = match &rot {
                Some((cos, sin)) => (
                    crate::rope::rotate_half(&q, cos, sin)?,
                    crate::rope::rotate_half(&k, cos, sin)?,
                ),
                None => (q, k),
            };
            for (row, (&n, &len)) in p.new.iter().zip(p.cached).enumerate() {
                if n == 0 {
                    continue;
                }
                for (src, c) in [(&k, &cache.k[layer]), (&v, &cache.v[layer])] {
                    let s = src.narrow(0, row, 1)?.narrow(2, 0, n)?.contiguous()?;
                    c.narrow(0, row, 1)?.slice_set(&s, 2, len)?;
                }
            }
            let o = cached_attention(model, cache, layer, &q, &p)?;
            let attn = block.attn.project_output(&o, false)?;
            h = (h + attn)?;
            h = block.ffn_residual(&h, None, false)?;
        }
        let h = model.final_norm(&h, false)?;
        Ok(h.flatten_all()?.to_vec1::<f32>()?)
    }

    fn train_state(&self, task: &TaskModel, cfg: AdamWConfig) -> Result<ReferenceTrain> {
        let vars: Vec<_> = task.vars().into_iter().map(|(_, v)| v).collect();
        Ok(ReferenceTrain {
            opt: AdamW::new(vars.clone(), cfg)?,
            vars,
        })
    }

    fn train_step(
        &self,
        task: &TaskModel,
        state: &mut ReferenceTrain,
        batch: TrainBatch<'_>,
        dropout: &mut Dropout,
        step: usize,
    ) -> Result<StepOutcome> {
        use crate::train::{
            loss::scalar, optim::clip_grad_norm, trainer::batch_loss, trainer::check_loss,
        };
        let (b, e) = (batch.lengths.len(), task.model.config().embed_dim);
        let x = Tensor::from_vec(batch.x, (b, batch.t, e), task.model.device())?;
        let out = task.head_forward(&x, Some(batch.lengths), Some(dropout))?;
        let (loss, correct) = batch_loss(task, &out, batch.labels, batch.label_smoothing)?;
        let loss_value = scalar(&loss)?;
        check_loss(loss_value, step)?;
        let mut grads = loss.backward()?;
        let grad_norm = match batch.clip_norm {
            Some(c) => Some(clip_grad_norm(&state.vars, &mut grads, c)?),
            None => None,
        };
        state.opt.step(&grads, batch.lr)?;
        Ok(StepOutcome {
            loss: loss_value,
            correct,
            grad_norm,
        })
    }
}
