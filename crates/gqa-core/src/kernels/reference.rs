//! Reference grouped-query attention core on candle ops (differentiable).
//!
//! Query head `i` reads KV head `i / group` (Ainslie et al., 2023; SPEC section 2): because the
//! query heads of one group are consecutive, `q: [B, NH, Tq, D]` is viewed as
//! `[B, NKV, group*Tq, D]` and multiplied with each KV head once, without repeating K or V.

use candle_core::{Tensor, D};

use crate::error::{Error, Result};
use crate::mask::Mask;

/// `softmax(q k^T * scale + bias) v` per head.
///
/// - `q: [B, NH, Tq, D]` (contiguous or not), `k, v: [B, NKV, Tk, D]`, `NKV` divides `NH`.
/// - `mask`: which keys each query row reads ([`Mask`]; its dense additive bias `[MB, Tq, Tk]`
///   is built here, the one place it exists); every row must keep at least one key.
/// - `scale`: usually `1/sqrt(D)`.
///
/// Returns `o: [B, NH, Tq, D]` (contiguous). Softmax subtracts the (detached) row maximum.
///
/// # Errors
/// [`Error::Internal`] on inconsistent shapes; [`Error::Backend`] from candle.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Mask, scale: f64) -> Result<Tensor> {
    let (b, nh, tq, d) = q.dims4()?;
    let (bk, nkv, tk, dk) = k.dims4()?;
    if bk != b || dk != d || nkv == 0 || nh % nkv != 0 || v.dims() != k.dims() {
        return Err(Error::Internal(format!(
            "attention shapes: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims(),
        )));
    }
    mask.check(b, tk)?;
    let p = attention_probs(q, &k.contiguous()?, mask, scale)?;
    Ok(p.matmul(&v.contiguous()?)?.reshape((b, nh, tq, d))?)
}

/// The attention probabilities `softmax(q k^T * scale + bias)`, the one implementation on candle
/// ops that [`attention`] (training and the reference forward), the KV-cache session (over
/// strided cache views) and [`crate::inspect::attention_maps`] share.
///
/// Shapes: `q: [B, NH, Tq, D]`, `k: [B, NKV, Tk, D]` (used as given: a strided view whose last
/// two dims are dense multiplies in place), `mask` read as its dense bias `[MB, Tq, Tk]`
/// (`MB` = 1 or B; not added when it masks nothing).
/// Returns `p: [B, NKV, G*Tq, Tk]` with `G = NH/NKV`: row `(j*Tq + t)` of KV head `kv` is query
/// head `kv*G + j` at position `t` (query head `i` reads KV head `i / G`; Ainslie et al., 2023),
/// so `p.matmul(v)` is `[B, NKV, G*Tq, D]` = `[B, NH, Tq, D]` and `p` reshaped is
/// `[B, NH, Tq, Tk]`. Softmax subtracts the (detached) row maximum.
///
/// # Errors
/// [`Error::Backend`] from candle on shapes that do not fit.
pub fn attention_probs(q: &Tensor, k: &Tensor, mask: &Mask, scale: f64) -> Result<Tensor> {
    let (b, nh, tq, d) = q.dims4()?;
    let (_, nkv, tk, _) = k.dims4()?;
    let bias = mask.dense_bias(b, tq, tk, q.device())?;
    let g = nh / nkv;
    let q = q.affine(scale, 0.0)?.reshape((b, nkv, g * tq, d))?;
    let mut s = q.matmul(&k.t()?)?;
    if let Some(bias) = &bias {
        let mb = bias.dim(0)?;
        s = s
            .reshape((b, nkv, g, tq, tk))?
            .broadcast_add(&bias.reshape((mb, 1, 1, tq, tk))?)?;
    }
    let m = s.max_keepdim(D::Minus1)?.detach();
    let e = s.broadcast_sub(&m)?.exp()?;
    let z = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&z)?.reshape((b, nkv, g * tq, tk))?)
}
