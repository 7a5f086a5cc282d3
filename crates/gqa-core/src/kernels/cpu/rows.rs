//! Row kernels: bias (+ GELU or residual), LayerNorm, rotary, GEMV.

use super::*;
#[allow(unused_imports)]
use crate::error::{Error, Result};

/// Exact GELU through a rational `erf`: `0.5 x (1 + erf(x / sqrt 2))` with `erf(z) = z P(z^2) /
/// Q(z^2)` on `z` clamped to [-4, 4] (degrees 6 and 4; the single-precision `erf` of Eigen,
/// `generic_fast_erf_float`, also XLA's). Max abs error 1.05e-6 against f64 over [-12, 12]
/// (the `erfc` form: 3.8e-7), half its operations and no `exp`: the inference GELU of the wasm
/// modules, where GELU was 8 % of a forward of workload (a) (410-412 -> 385-390 ms per forward,
/// single-threaded simd128, Node 20). Native targets keep [`gelu_f32`]; training keeps the
/// `erfc` form everywhere (its backward pass differentiates that one).
#[inline(always)]
pub(super) fn gelu_rational(x: f32) -> f32 {
    #[allow(clippy::manual_clamp)]
    let z = {
        let z = x * std::f32::consts::FRAC_1_SQRT_2;
        if z < -4.0 {
            -4.0
        } else if z > 4.0 {
            4.0
        } else {
            z
        }
    };
    let z2 = z * z;
    let mut p = -2.726_142_4e-10f32;
    p = p * z2 + 2.770_681_5e-8;
    p = p * z2 - 2.101_024e-6;
    p = p * z2 - 5.692_506_2e-5;
    p = p * z2 - 7.349_906_4e-4;
    p = p * z2 - 2.954_6e-3;
    p = p * z2 - 1.609_603_3e-2;
    let mut q = -1.456_607_15e-5f32;
    q = q * z2 - 2.133_740_5e-4;
    q = q * z2 - 1.682_827e-3;
    q = q * z2 - 7.373_329_3e-3;
    q = q * z2 - 1.426_473_9e-2;
    0.5 * x * (1.0 + z * p / q)
}

#[inline(always)]
pub(super) fn bias_gelu_impl<const FMA: bool>(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = if cfg!(target_arch = "wasm32") {
                gelu_rational(*v + b)
            } else {
                gelu_f32::<FMA>(*v + b)
            };
        }
    }
}
dispatch!(fn bias_gelu_seq / bias_gelu_avx2 => bias_gelu_impl(y: &mut [f32], bias: &[f32]));

/// In place over rows of width `bias.len()`: `y = GELU(y + bias)` (exact, erf-based GELU).
///
/// # Errors
/// [`Error::Internal`] when `y.len()` is not a multiple of `bias.len()` (or the bias is empty).
pub fn bias_gelu_rows(y: &mut [f32], bias: &[f32]) -> Result<()> {
    check_rows("bias_gelu", y.len(), bias.len())?;
    par_rows_mut(y, bias.len(), 1 << 14, |_, rows| bias_gelu_seq(rows, bias));
    Ok(())
}

#[inline(always)]
pub(super) fn bias_add_impl<const FMA: bool>(y: &mut [f32], bias: &[f32], residual: &[f32]) {
    let w = bias.len();
    if residual.is_empty() {
        for row in y.chunks_exact_mut(w) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    } else {
        for (row, res) in y.chunks_exact_mut(w).zip(residual.chunks_exact(w)) {
            for ((v, &b), &r) in row.iter_mut().zip(bias).zip(res) {
                *v = r + (*v + b);
            }
        }
    }
}
dispatch!(fn bias_add_seq / bias_add_avx2 => bias_add_impl(y: &mut [f32], bias: &[f32], residual: &[f32]));

/// In place over rows of width `bias.len()`: `y = y + bias`, or `y = residual + (y + bias)` when
/// `residual` (same length as `y`) is given (a dense layer's bias folded with a residual add).
///
/// # Errors
/// [`Error::Internal`] when the lengths do not fit.
pub fn bias_add_rows(y: &mut [f32], bias: &[f32], residual: Option<&[f32]>) -> Result<()> {
    check_rows("bias_add", y.len(), bias.len())?;
    let res = residual.unwrap_or(&[]);
    if residual.is_some() && res.len() != y.len() {
        return Err(Error::Internal(format!(
            "bias_add: residual has {} values, output {}",
            res.len(),
            y.len()
        )));
    }
    let w = bias.len();
    par_rows_mut(y, w, 1 << 15, |r0, rows| {
        let r = if res.is_empty() {
            res
        } else {
            &res[r0 * w..r0 * w + rows.len()]
        };
        bias_add_seq(rows, bias, r)
    });
    Ok(())
}

#[inline(always)]
pub(crate) fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut s = it.remainder().iter().sum::<f32>();
    for a in acc {
        s += a;
    }
    s
}

/// LayerNorm of the rows of `x` into `out`; when `stats` is not empty it receives each row's
/// `(mean, rstd)` (the training path's saved statistics).
#[inline(always)]
pub(super) fn layer_norm_impl<const FMA: bool>(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    stats: &mut [f32],
) {
    let w = gamma.len();
    for (r, (row, o)) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)).enumerate() {
        let mean = sum_lanes(row) / w as f32;
        let mut acc = [0f32; LANES];
        let mut it = row.chunks_exact(LANES);
        for c in &mut it {
            for l in 0..LANES {
                let d = c[l] - mean;
                acc[l] = fmadd::<FMA>(d, d, acc[l]);
            }
        }
        let mut ss: f32 = it.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for a in acc {
            ss += a;
        }
        let inv = 1.0 / (ss / w as f32 + eps).sqrt();
        for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(gamma).zip(beta) {
            *o = fmadd::<FMA>((v - mean) * inv, g, b);
        }
        if let Some(st) = stats.get_mut(2 * r..2 * r + 2) {
            st[0] = mean;
            st[1] = inv;
        }
    }
}
dispatch!(pub(crate) fn layer_norm_seq / layer_norm_avx2 => layer_norm_impl(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32], stats: &mut [f32]));

/// LayerNorm over rows of width `W = gamma.len()`: `out = (x - mean) / sqrt(var + eps) * gamma +
/// beta` with the biased variance (PyTorch `nn.LayerNorm`). `x, out: [rows, W]`.
///
/// # Errors
/// [`Error::Internal`] when the lengths do not fit.
pub fn layer_norm_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<()> {
    check_rows("layer_norm", x.len(), gamma.len())?;
    if beta.len() != gamma.len() || out.len() != x.len() {
        return Err(Error::Internal(format!(
            "layer_norm: gamma {}, beta {}, x {}, out {}",
            gamma.len(),
            beta.len(),
            x.len(),
            out.len()
        )));
    }
    let w = gamma.len();
    par_rows_mut(out, w, 1 << 14, |r0, o| {
        layer_norm_seq(&x[r0 * w..r0 * w + o.len()], gamma, beta, eps, o, &mut [])
    });
    Ok(())
}

#[inline(always)]
pub(super) fn rotary_impl<const FMA: bool>(
    x: &mut [f32],
    n: usize,
    d: usize,
    cos: &[f32],
    sin: &[f32],
    t0: usize,
) {
    let half = d / 2;
    for (r, tok) in x.chunks_exact_mut(n * d).enumerate() {
        let p = t0 + r;
        rotary_row_impl::<FMA>(
            tok,
            n,
            d,
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
    }
}
dispatch!(fn rotary_seq / rotary_avx2 => rotary_impl(x: &mut [f32], n: usize, d: usize, cos: &[f32], sin: &[f32], t0: usize));

#[inline(always)]
pub(super) fn rotary_row_impl<const FMA: bool>(
    x: &mut [f32],
    n: usize,
    d: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let half = d / 2;
    for head in x.chunks_exact_mut(d).take(n) {
        let (x1, x2) = head.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            x1[i] = a * cos[i] - b * sin[i];
            x2[i] = a * sin[i] + b * cos[i];
        }
    }
}
dispatch!(
    /// Rotary (rotate_half) on one position's `n` heads of width `d` (`x: [n*d]`), with that
    /// position's `cos, sin: [d/2]` (same maths as [`rotary_rows`]).
    pub(crate) fn rotary_row / rotary_row_avx2 => rotary_row_impl(x: &mut [f32], n: usize, d: usize, cos: &[f32], sin: &[f32])
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv_impl<const FMA: bool>(
    m: usize,
    k: usize,
    x: &[f32],
    ldx: usize,
    w: &[f32],
    n0: usize,
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
) {
    const L: usize = 16;
    for i in 0..m {
        let xr = &x[i * ldx..i * ldx + k];
        for (c, wr) in w[n0 * k..].chunks_exact(k).take(ldy).enumerate() {
            let mut acc = [0f32; L];
            let mut xc = xr.chunks_exact(L);
            let mut wc = wr.chunks_exact(L);
            for (a, b) in (&mut xc).zip(&mut wc) {
                for l in 0..L {
                    acc[l] = fmadd::<FMA>(a[l], b[l], acc[l]);
                }
            }
            let mut sum = 0f32;
            for (a, b) in xc.remainder().iter().zip(wc.remainder()) {
                sum = fmadd::<FMA>(*a, *b, sum);
            }
            for a in acc {
                sum += a;
            }
            let dst = &mut y[i * ldy + c];
            *dst = if accumulate { *dst + sum } else { sum };
        }
    }
}
dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn gemv_seq / gemv_avx2 => gemv_impl(m: usize, k: usize, x: &[f32], ldx: usize, w: &[f32], n0: usize, y: &mut [f32], ldy: usize, accumulate: bool)
);

/// `y[i, c] (+)= x[i, :] . w[c, :]` for a few rows `i < m` (a decode step): a dot product per
/// output against the contiguous rows of `w: [n, k]` (the `nn.Linear` layout), which streams the
/// weights once instead of packing them as a GEMM would; outputs split over threads in column
/// ranges. `x: [m, k]` (row stride `ldx`), `y: [m, n]` (row stride `ldy`); sizes are checked by
/// the caller ([`crate::kernels::gemm::linear`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv_rows(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    ldx: usize,
    w: &[f32],
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
) {
    let chunk = if n * k >= 1 << 16 {
        n.div_ceil(4 * threads()).max(16)
    } else {
        n
    };
    let jobs = n.div_ceil(chunk);
    let ptr = OutPtr(y.as_mut_ptr());
    let ylen = y.len();
    par_for(jobs, jobs > 1, move |j| {
        let n0 = j * chunk;
        let n1 = ((j + 1) * chunk).min(n);
        let p = ptr;
        let cols = n1 - n0;
        let mut tmp = vec![0f32; m * cols];
        // SAFETY: job j owns columns n0..n1 of each of the m rows (disjoint from every other
        // job); row i's columns lie inside y (the caller checked (m-1)*ldy + n <= y.len()).
        let row = |i: usize| unsafe { std::slice::from_raw_parts_mut(p.0.add(i * ldy + n0), cols) };
        debug_assert!(m == 0 || (m - 1) * ldy + n1 <= ylen);
        if accumulate {
            for i in 0..m {
                tmp[i * cols..(i + 1) * cols].copy_from_slice(row(i));
            }
        }
        gemv_seq(m, k, x, ldx, &w[..n1 * k], n0, &mut tmp, cols, accumulate);
        for i in 0..m {
            row(i).copy_from_slice(&tmp[i * cols..(i + 1) * cols]);
        }
    });
}

/// Rotary embedding (rotate_half, SPEC section 5) in place on `x: [B, T, N, D]` (contiguous,
/// N heads), position of token `t` = `offset + t`: `x1 = x[..D/2]`, `x2 = x[D/2..]`,
/// `x1' = x1*cos - x2*sin`, `x2' = x1*sin + x2*cos`. `cos, sin: [P, D/2]` tables (row `p` for
/// position `p`).
///
/// # Errors
/// [`Error::Internal`] when the sizes do not fit (odd `D`, tables too short).
#[allow(clippy::too_many_arguments)]
pub fn rotary_rows(
    x: &mut [f32],
    b: usize,
    t: usize,
    n: usize,
    d: usize,
    cos: &[f32],
    sin: &[f32],
    offset: usize,
) -> Result<()> {
    let half = d / 2;
    if !d.is_multiple_of(2)
        || x.len() != b * t * n * d
        || cos.len() < (offset + t) * half
        || sin.len() != cos.len()
    {
        return Err(Error::Internal(format!(
            "rotary: x {} for [{b},{t},{n},{d}], tables {}/{} for {} positions",
            x.len(),
            cos.len(),
            sin.len(),
            offset + t
        )));
    }
    if x.is_empty() {
        return Ok(());
    }
    // Rows of one sequence position each; a chunk never straddles two sequences when split at
    // multiples of T, so split per (batch, position) row and compute the position from the index.
    let w = n * d;
    par_rows_mut(x, w, 1 << 14, |r0, rows| {
        // rows cover global token rows r0..; positions restart every T rows.
        let mut done = 0;
        let total = rows.len() / w;
        while done < total {
            let g = r0 + done;
            let p = g % t;
            let run = (t - p).min(total - done);
            rotary_seq(
                &mut rows[done * w..(done + run) * w],
                n,
                d,
                cos,
                sin,
                offset + p,
            );
            done += run;
        }
    });
    Ok(())
}

pub(super) fn check_rows(what: &str, len: usize, width: usize) -> Result<()> {
    if width == 0 || !len.is_multiple_of(width) {
        return Err(Error::Internal(format!(
            "{what}: {len} values are not rows of width {width}"
        )));
    }
    Ok(())
}
