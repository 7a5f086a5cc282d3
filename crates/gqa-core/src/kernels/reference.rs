//! Reference grouped-query attention core on candle ops (differentiable).
//!
//! Query head `i` reads KV head `i / group` (Ainslie et al., 2023; SPEC section 2): because the
//! query heads of one group are consecutive, `q: [B, NH, Tq, D]` is viewed as
//! `[B, NKV, group*Tq, D]` and multiplied with each KV head once, without repeating K or V.

use candle_core::{Tensor, D};

use crate::error::{Error, Result};

/// `softmax(q k^T * scale + bias) v` per head.
///
/// - `q: [B, NH, Tq, D]` (contiguous or not), `k, v: [B, NKV, Tk, D]`, `NKV` divides `NH`.
/// - `bias: [MB, Tq, Tk]` additive mask (0 or `-inf`), `MB` = 1 or B; every row must keep at
///   least one key (the causal masks of [`crate::attention::AttnMask`] always keep key 0).
/// - `scale`: usually `1/sqrt(D)`.
///
/// Returns `o: [B, NH, Tq, D]` (contiguous). Softmax subtracts the (detached) row maximum.
///
/// # Errors
/// [`Error::Internal`] on inconsistent shapes; [`Error::Backend`] from candle.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, nh, tq, d) = q.dims4()?;
    let (bk, nkv, tk, dk) = k.dims4()?;
    let (mb, mq, mk) = bias.dims3()?;
    if bk != b || dk != d || nkv == 0 || nh % nkv != 0 || v.dims() != k.dims() || mq != tq || mk != tk || (mb != 1 && mb != b) {
        return Err(Error::Internal(format!(
            "attention shapes: q {:?}, k {:?}, v {:?}, bias {:?}",
            q.dims(),
            k.dims(),
            v.dims(),
            bias.dims()
        )));
    }
    let g = nh / nkv;
    let q = q.affine(scale, 0.0)?.reshape((b, nkv, g * tq, d))?;
    let k = k.contiguous()?;
    let v = v.contiguous()?;
    let s = q.matmul(&k.t()?)?.reshape((b, nkv, g, tq, tk))?;
    let s = s.broadcast_add(&bias.reshape((mb, 1, 1, tq, tk))?)?;
    let m = s.max_keepdim(D::Minus1)?.detach();
    let e = s.broadcast_sub(&m)?.exp()?;
    let z = e.sum_keepdim(D::Minus1)?;
    let p = e.broadcast_div(&z)?.reshape((b, nkv, g * tq, tk))?;
    Ok(p.matmul(&v)?.reshape((b, nh, tq, d))?)
}
