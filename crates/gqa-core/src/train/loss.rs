//! Losses, with PyTorch's reduction semantics (the reference the fixtures use).

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};

/// Row-wise log-softmax, `x - max - log(sum(exp(x - max)))` (differentiable).
///
/// # Shapes
/// `logits: [B, C]` -> `[B, C]`.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Softmax cross-entropy as `torch.nn.functional.cross_entropy(logits, labels, weight=w)`:
/// `sum_b w[y_b] * -log p[b, y_b] / sum_b w[y_b]` (plain mean when `w` is `None`).
///
/// # Shapes
/// `logits: [B, C]`, `labels: [B]` (class indices) -> scalar `[]`.
///
/// # Errors
/// [`Error::InvalidInput`] naming `labels[i]` when a label is `>= C`, or `labels` when its
/// length is not `B`.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[u32],
    class_weights: Option<&[f32]>,
) -> Result<Tensor> {
    cross_entropy_smoothed(logits, labels, class_weights, 0.0)
}

/// [`cross_entropy`] with label smoothing `eps` in `[0, 1)`, as PyTorch's
/// `cross_entropy(logits, labels, weight=w, label_smoothing=eps)` (Szegedy et al. 2016, "Rethinking
/// the Inception Architecture", section 7):
/// `sum_b [(1 - eps) w[y_b] (-log p[b, y_b]) + eps/C sum_j w[j] (-log p[b, j])] / sum_b w[y_b]`.
///
/// # Shapes
/// `logits: [B, C]`, `labels: [B]` -> scalar `[]`.
///
/// # Errors
/// As [`cross_entropy`].
pub fn cross_entropy_smoothed(
    logits: &Tensor,
    labels: &[u32],
    class_weights: Option<&[f32]>,
    eps: f64,
) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    let total_w = label_weight_total(labels, b, c, class_weights)?;
    let target = smoothed_targets(labels, c, class_weights, eps as f32);
    let target = Tensor::from_vec(target, (b, c), logits.device())?;
    let nll = (log_softmax(logits)? * target)?.sum_all()?.neg()?;
    Ok(nll.affine(1.0 / total_w, 0.0)?)
}

/// The weight of `-log p[b, j]` in the (unnormalised) smoothed loss, row-major `[B, C]`:
/// `(1 - eps) w[y_b] [j == y_b] + eps/C w[j]` (`w = 1` without class weights). Labels must be
/// checked first ([`label_weight_total`]).
pub(crate) fn smoothed_targets(
    labels: &[u32],
    c: usize,
    class_weights: Option<&[f32]>,
    eps: f32,
) -> Vec<f32> {
    let w = |j: usize| class_weights.map_or(1.0, |w| w[j]);
    let mut t = vec![0f32; labels.len() * c];
    for (row, &y) in t.chunks_exact_mut(c).zip(labels) {
        if eps > 0.0 {
            for (j, v) in row.iter_mut().enumerate() {
                *v = eps / c as f32 * w(j);
            }
        }
        row[y as usize] += (1.0 - eps) * w(y as usize);
    }
    t
}

/// Checks `B` class labels against `C` classes and returns the batch's total label weight
/// `sum_b w[y_b]` (`B` without class weights), the denominator of [`cross_entropy`].
///
/// # Errors
/// [`Error::InvalidInput`] naming `labels` (not `B` of them), `labels[i]` (a class `>= C`) or
/// `classWeights` (a total weight that is not positive).
pub fn label_weight_total(
    labels: &[u32],
    b: usize,
    c: usize,
    class_weights: Option<&[f32]>,
) -> Result<f64> {
    if labels.len() != b {
        return Err(Error::input(
            "labels",
            format!("{b} labels (one per sequence)"),
            format!("{} labels", labels.len()),
        ));
    }
    let mut total_w = 0f64;
    for (i, &y) in labels.iter().enumerate() {
        if y as usize >= c {
            return Err(Error::input(
                format!("labels[{i}]"),
                format!("a class index in 0..{c}"),
                y,
            ));
        }
        total_w += f64::from(class_weights.map_or(1.0, |w| w[y as usize]));
    }
    if total_w <= 0.0 {
        return Err(Error::input(
            "classWeights",
            "a positive total weight over the batch's labels",
            total_w,
        ));
    }
    Ok(total_w)
}

/// Checks that `values` holds `[B, K]` regression targets.
///
/// # Errors
/// [`Error::InvalidInput`] naming `targets`.
pub fn check_targets(values: &[f32], b: usize, k: usize) -> Result<()> {
    if values.len() != b * k {
        return Err(Error::input(
            "targets",
            format!("{} values ([{b}, {k}])", b * k),
            format!("{} values", values.len()),
        ));
    }
    Ok(())
}

/// Mean squared error, `mean((pred - target)^2)` over every element (`F.mse_loss`).
///
/// # Shapes
/// `pred, target: [B, K]` -> scalar.
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((pred - target)?.sqr()?.mean_all()?)
}

/// Huber loss (`F.huber_loss(pred, target, delta=delta)`, mean reduction):
/// `0.5 d^2` where `|d| <= delta`, else `delta (|d| - 0.5 delta)`, written as
/// `0.5 q^2 + delta (|d| - q)` with `q = min(|d|, delta)`.
///
/// # Shapes
/// `pred, target: [B, K]` -> scalar.
pub fn huber(pred: &Tensor, target: &Tensor, delta: f64) -> Result<Tensor> {
    let a = (pred - target)?.abs()?;
    let q = a.clamp(0f64, delta)?;
    let quad = q.sqr()?.affine(0.5, 0.0)?;
    let lin = (a - &q)?.affine(delta, 0.0)?;
    Ok((quad + lin)?.mean_all()?)
}

/// Count of rows whose argmax equals the label.
///
/// # Shapes
/// `logits: [B, C]`, `labels: [B]`.
pub fn correct_count(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    Ok(pred.iter().zip(labels).filter(|(p, y)| p == y).count())
}

/// A scalar tensor's value as f64.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// A `[B, K]` F32 target tensor from a flat slice.
pub(crate) fn targets(values: &[f32], b: usize, k: usize, device: &Device) -> Result<Tensor> {
    check_targets(values, b, k)?;
    Ok(Tensor::from_slice(values, (b, k), device)?)
}
