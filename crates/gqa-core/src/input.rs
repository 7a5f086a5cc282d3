//! Validation and preparation of user inputs shared by the model and the attention layer.

use candle_core::{DType, Device, Tensor};

use crate::error::{check_f32_buffer, Error, Result};

/// Checks `dims = [B, T, F]` against `data.len()` and the expected feature size `feat` (named
/// `feat_name`), `lengths` (`B` values in `1..=T`), and that `data` is finite at valid
/// positions ([`check_finite`], named `input`). Returns `(B, T)`.
pub(crate) fn check_dims(
    data: &[f32],
    dims: &[usize],
    feat: usize,
    feat_name: &str,
    lengths: Option<&[usize]>,
) -> Result<(usize, usize)> {
    if dims.len() != 3 {
        return Err(Error::input(
            "dims",
            "3 dims [batch, seq, features]",
            format!("{} dims {:?}", dims.len(), dims),
        ));
    }
    let (b, t, f) = (dims[0], dims[1], dims[2]);
    if f != feat {
        return Err(Error::input(
            "dims",
            format!("dims[2] = {feat_name} = {feat}"),
            format!("{f} (dims {dims:?})"),
        ));
    }
    if t == 0 && b > 0 {
        return Err(Error::input(
            "dims",
            "a sequence length dims[1] >= 1",
            format!("0 (dims {dims:?})"),
        ));
    }
    let n = check_f32_buffer("input", dims)?;
    if data.len() != n {
        return Err(Error::input(
            "input",
            format!("B*T*{feat_name} = {b}*{t}*{f} = {n} values"),
            format!("{} values", data.len()),
        ));
    }
    check_lengths(b, t, lengths)?;
    check_finite("input", data, b, t, lengths)?;
    Ok((b, t))
}

/// Checks per-sequence lengths: `B` values, each in `1..=T`.
pub(crate) fn check_lengths(b: usize, t: usize, lengths: Option<&[usize]>) -> Result<()> {
    if let Some(ls) = lengths {
        if ls.len() != b {
            return Err(Error::input(
                "lengths",
                format!("{b} lengths (one per sequence)"),
                format!("{} lengths", ls.len()),
            ));
        }
        for (i, &l) in ls.iter().enumerate() {
            if l < 1 || l > t {
                return Err(Error::input(
                    format!("lengths[{i}]"),
                    format!("a length in 1..={t}"),
                    l,
                ));
            }
        }
    }
    Ok(())
}

/// Whether `lengths` leaves any position padded.
pub(crate) fn has_padding(t: usize, lengths: Option<&[usize]>) -> bool {
    lengths.is_some_and(|ls| ls.iter().any(|&l| l < t))
}

/// Replaces `x[b, t, :]` for `t >= L_b` by 0 (`where`, not a product, so NaN there vanishes).
pub(crate) fn zero_padded(x: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
    let (b, t, f) = x.dims3()?;
    let Some(ls) = lengths else {
        return Ok(x.clone());
    };
    if !has_padding(t, lengths) {
        return Ok(x.clone());
    }
    let mut keep = Vec::with_capacity(b * t * f);
    for &l in ls {
        for p in 0..t {
            keep.extend(std::iter::repeat_n(u8::from(p < l), f));
        }
    }
    let keep = Tensor::from_vec(keep, (b, t, f), x.device())?;
    Ok(keep.where_cond(x, &x.zeros_like()?)?)
}

/// `[B, T, 1]` f32 with 1 at valid positions (`t < L_b`) and 0 at padded ones.
pub(crate) fn valid_mask(b: usize, t: usize, lengths: &[usize], device: &Device) -> Result<Tensor> {
    let mut m = Vec::with_capacity(b * t);
    for &l in lengths {
        for p in 0..t {
            m.push(if p < l { 1f32 } else { 0f32 });
        }
    }
    Ok(Tensor::from_vec(m, (b, t, 1), device)?.to_dtype(DType::F32)?)
}

/// The input policy for NaN and infinity (SPEC section 6): every value at a valid position
/// (`t < lengths[b]`, or every position without lengths) must be finite; padded positions are
/// not read, so NaN there is allowed. `x` is `[B, T, F]` row-major; `name` is the tensor's
/// name in errors (`input`, `data`).
///
/// # Errors
/// [`Error::InvalidInput`] naming the first offending element as `name[b, t, f]`, with the
/// value found (`NaN`, `inf`, `-inf`).
pub(crate) fn check_finite(
    name: &str,
    x: &[f32],
    b: usize,
    t: usize,
    lengths: Option<&[usize]>,
) -> Result<()> {
    let Some(f) = x.len().checked_div(b * t) else {
        return Ok(());
    };
    let row_ok = |r: &[f32]| r.iter().fold(true, |ok, v| ok & v.is_finite());
    for bi in 0..b {
        let len = lengths.map_or(t, |ls| ls[bi]);
        let row = &x[bi * t * f..(bi * t + len) * f];
        if !row_ok(row) {
            let i = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(Error::input(
                format!("{name}[{bi}, {}, {}]", i / f.max(1), i % f.max(1)),
                "a finite value (NaN and infinity are refused at valid positions; padded positions are not read)",
                row[i],
            ));
        }
    }
    Ok(())
}

/// A forward's `positionOffset` as the bindings receive it (a JS number, `None` = 0): an integer
/// in `0..=2^53 - 1` that fits `usize`.
///
/// # Errors
/// [`Error::InvalidInput`] naming `positionOffset` for NaN, a fraction, a negative value or one
/// too large.
pub fn position_offset(p: Option<f64>) -> Result<usize> {
    let Some(p) = p else { return Ok(0) };
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if !(p.is_finite() && p.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&p)) {
        return Err(Error::input("positionOffset", "an integer in 0..2^53-1", p));
    }
    usize::try_from(p as u64).map_err(|_| {
        Error::input(
            "positionOffset",
            format!("an integer in 0..={}", usize::MAX),
            p,
        )
    })
}

/// `first + t`, the sequence length a forward at `positionOffset = first` over `t` positions
/// reaches.
///
/// # Errors
/// [`Error::InvalidInput`] naming `positionOffset` when it overflows `usize`.
pub(crate) fn end_position(first: usize, t: usize) -> Result<usize> {
    first.checked_add(t).ok_or_else(|| {
        Error::input(
            "positionOffset",
            format!("at most {} - T", usize::MAX),
            first,
        )
    })
}
