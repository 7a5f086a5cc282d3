//! candle-level wrappers of the fused CPU kernels ([`super::cpu`]) for the inference path.
//!
//! Every function here works on f32 tensors on the CPU device and never builds an autograd
//! graph; [`crate::compute::Fused`] calls them (the engine a model chose, for calls that build
//! no graph).

use candle_core::{CpuStorage, InplaceOp1, Layout, Storage, Tensor};

use super::cpu::{self, AttentionDims, HeadLayout};
use crate::error::{Error, Result};
use crate::mask::Mask;

/// Runs `f` on the contiguous f32 values of each tensor in `ts` (all f32, contiguous, CPU: the
/// model's parameters), all borrowed at once.
///
/// # Errors
/// [`Error::Internal`] when a tensor is not a contiguous f32 CPU tensor.
pub fn with_slices<R>(ts: &[Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(ts.len());
    for ((st, layout), t) in guards.iter().zip(ts) {
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| {
            Error::Internal(format!(
                "fused kernel: parameter {:?} is not contiguous",
                t.dims()
            ))
        })?;
        match &**st {
            Storage::Cpu(CpuStorage::F32(data)) => slices.push(&data[a..b]),
            _ => {
                return Err(Error::Internal(format!(
                    "fused kernel: expected an f32 CPU tensor, found {:?} on {:?}",
                    t.dtype(),
                    t.device()
                )))
            }
        }
    }
    f(&slices)
}

/// Runs `f` on the whole f32 storage slice of `t` and its layout.
fn with_storage<R>(t: &Tensor, f: impl FnOnce(&[f32], &Layout) -> Result<R>) -> Result<R> {
    let (st, layout) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(CpuStorage::F32(data)) => f(data, layout),
        _ => Err(Error::Internal(format!(
            "fused kernel: expected an f32 CPU tensor, found {:?} on {:?}",
            t.dtype(),
            t.device()
        ))),
    }
}

/// Runs `f` on the contiguous f32 values of `t` (copying first when `t` is strided).
fn with_contiguous<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    with_storage(&t, |data, layout| {
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| {
            Error::Internal("fused kernel: contiguous tensor without offsets".into())
        })?;
        f(&data[a..b])
    })
}

/// An in-place row operation on a freshly computed contiguous f32 tensor.
struct RowOp<'a> {
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    gelu: bool,
}

impl InplaceOp1 for RowOp<'_> {
    fn name(&self) -> &'static str {
        if self.gelu {
            "gqa-bias-gelu"
        } else {
            "gqa-bias-add"
        }
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{}: expected f32 storage", self.name());
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: expected a contiguous tensor", self.name());
        };
        let y = &mut data[a..b];
        let r = if self.gelu {
            cpu::bias_gelu_rows(y, self.bias)
        } else {
            cpu::bias_add_rows(y, self.bias, self.residual)
        };
        r.map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

/// Dense layer for inference: `y = x W^T + b` (`x: [..., in]`, `W: [out, in]`, `b: [out]`),
/// with the bias folded into one in-place pass after the matmul, optionally followed by the exact
/// GELU (`gelu`) or added to `residual` (`[..., out]`): `y = residual + (x W^T + b)`.
///
/// # Errors
/// [`Error::Backend`] on shape mismatch; [`Error::Internal`] for non-f32/CPU tensors.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    residual: Option<&Tensor>,
    gelu: bool,
) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let mut dims = x.dims().to_vec();
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, inp))?.matmul(&w.t()?)?;
    *dims.last_mut().expect("rank >= 1") = out;
    let y = if y.is_contiguous() {
        y
    } else {
        y.contiguous()?
    };
    with_contiguous(b, |bias| match residual {
        Some(res) => {
            if res.dims() != dims.as_slice() {
                return Err(Error::Internal(format!(
                    "linear residual {:?}, output {:?}",
                    res.dims(),
                    dims
                )));
            }
            with_contiguous(res, |r| {
                Ok(y.inplace_op1(&RowOp {
                    bias,
                    residual: Some(r),
                    gelu,
                })?)
            })
        }
        None => Ok(y.inplace_op1(&RowOp {
            bias,
            residual: None,
            gelu,
        })?),
    })?;
    Ok(y.reshape(dims)?)
}

/// LayerNorm over the last axis (biased variance, `eps`) for inference: `x: [..., W]`,
/// `gamma, beta: [W]`.
///
/// # Errors
/// [`Error::Internal`] for a width mismatch or non-f32/CPU tensors.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let out = with_contiguous(x, |xs| {
        with_contiguous(gamma, |g| {
            with_contiguous(beta, |bt| {
                let mut out = vec![0f32; xs.len()];
                cpu::layer_norm_rows(xs, g, bt, eps as f32, &mut out)?;
                Ok(out)
            })
        })
    })?;
    Ok(Tensor::from_vec(out, x.dims(), x.device())?)
}

/// Rotary (rotate_half) in place on a contiguous, uniquely owned `x: [B, T, N, D]` for positions
/// `offset..offset+T`, from `cos, sin: [P, D/2]` tables.
struct RotaryOp<'a> {
    dims: (usize, usize, usize, usize),
    cos: &'a [f32],
    sin: &'a [f32],
    offset: usize,
}

impl InplaceOp1 for RotaryOp<'_> {
    fn name(&self) -> &'static str {
        "gqa-rotary"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gqa-rotary: expected f32 storage");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("gqa-rotary: expected a contiguous tensor");
        };
        let (bs, t, n, d) = self.dims;
        cpu::rotary_rows(
            &mut data[a..b],
            bs,
            t,
            n,
            d,
            self.cos,
            self.sin,
            self.offset,
        )
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

/// Applies rotary embeddings in place to the projection output `x: [B, T, N*D]` (viewed as
/// `[B, T, N, D]`), positions `offset..offset+T`; `cos, sin: [P, D/2]` (see
/// [`crate::rope::Rotary`]). `x` must be a fresh tensor (it is modified in place).
///
/// # Errors
/// [`Error::InvalidInput`] when the tables are too short; [`Error::Internal`] otherwise.
pub fn rotary_in_place(
    x: &Tensor,
    n: usize,
    d: usize,
    cos: &Tensor,
    sin: &Tensor,
    offset: usize,
) -> Result<()> {
    let (b, t, w) = x.dims3()?;
    let (p, half) = cos.dims2()?;
    if w != n * d || 2 * half != d {
        return Err(Error::Internal(format!(
            "rotary: x {:?} for {n} heads of {d}, tables [{p},{half}]",
            x.dims()
        )));
    }
    if offset + t > p {
        return Err(Error::input(
            "rotary positions",
            format!("at most {p} positions"),
            offset + t,
        ));
    }
    if !x.is_contiguous() {
        return Err(Error::Internal(
            "rotary_in_place: x must be contiguous".into(),
        ));
    }
    with_contiguous(cos, |c| {
        with_contiguous(sin, |s| {
            Ok(x.inplace_op1(&RotaryOp {
                dims: (b, t, n, d),
                cos: c,
                sin: s,
                offset,
            })?)
        })
    })
}

fn head_layout(t: &Tensor, what: &str) -> Result<HeadLayout> {
    let l = t.layout();
    let s = l.stride();
    if s.len() != 4 || (s[3] != 1 && t.dim(3)? > 1) {
        return Err(Error::Internal(format!(
            "fused attention: {what} strides {s:?} (need a contiguous last axis)"
        )));
    }
    Ok(HeadLayout {
        offset: l.start_offset(),
        batch: s[0],
        head: s[1],
        row: s[2],
    })
}

/// Fused causal grouped-query attention on tensors (inference): `q: [B, NH, Tq, D]`,
/// `k, v: [B, NKV, Tk, D]` (any strides with a contiguous last axis, e.g. narrowed KV-cache
/// views or transposed projections; others are copied), query `i` of sequence `b` reading the
/// keys [`Mask::keys_for`]`(b, i)`. Returns `o: [B, NH, Tq, D]`, or
/// `[B, Tq, NH*D]` (heads concatenated, ready for `out_proj`) when `merge_heads`.
///
/// # Errors
/// [`Error::Internal`] for inconsistent shapes or non-f32/CPU tensors; [`Error::Backend`].
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &Mask,
    merge_heads: bool,
) -> Result<Tensor> {
    let (b, nh, tq, d) = q.dims4()?;
    let (bk, nkv, tk, dk) = k.dims4()?;
    if bk != b || dk != d || v.dims() != k.dims() {
        return Err(Error::Internal(format!(
            "fused attention shapes: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let fix = |t: &Tensor| -> Result<Tensor> {
        let s = t.stride();
        Ok(if s[3] == 1 || d == 1 {
            t.clone()
        } else {
            t.contiguous()?
        })
    };
    let (q, k, v) = (fix(q)?, fix(k)?, fix(v)?);
    let dims = AttentionDims {
        batch: b,
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: tq,
        k_len: tk,
        head_dim: d,
    };
    let mut out = vec![0f32; b * nh * tq * d];
    let ol = if merge_heads {
        HeadLayout::btnd(nh, tq, d)
    } else {
        HeadLayout::bntd(nh, tq, d)
    };
    let (ql, kl, vl) = (
        head_layout(&q, "q")?,
        head_layout(&k, "k")?,
        head_layout(&v, "v")?,
    );
    with_storage(&q, |qs, _| {
        with_storage(&k, |ks, _| {
            with_storage(&v, |vs, _| {
                cpu::attention_cpu_strided(
                    qs,
                    ql,
                    ks,
                    kl,
                    vs,
                    vl,
                    &mut out,
                    ol,
                    dims,
                    scale as f32,
                    mask,
                )
            })
        })
    })?;
    Ok(if merge_heads {
        Tensor::from_vec(out, (b, tq, nh * d), q.device())?
    } else {
        Tensor::from_vec(out, (b, nh, tq, d), q.device())?
    })
}
