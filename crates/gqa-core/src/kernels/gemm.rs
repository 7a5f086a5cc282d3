//! Dense-layer GEMM on f32 slices through the `gemm` crate (the same GEMM candle's CPU matmul
//! uses, called directly so that the output goes into a caller's buffer, possibly a column
//! slice of a wider one, and can accumulate onto it: bias and residual become free epilogues).
//!
//! The `gemm` crate picks its micro-kernel at run time: AVX-512F where the CPU has it (gqa-core
//! turns on gemm's `x86-v4` feature, which candle leaves off), else AVX2+FMA, else scalar on
//! x86_64; NEON on aarch64; simd128 on wasm32 when built with it (a wasm32 module built with
//! `+relaxed-simd` runs gqa's own GEMM instead, `super::wasm_gemm`). Work is split over output
//! blocks on the current rayon pool (gqa's own, see [`super::threads`]), never over the
//! reduction axis, so the result does not depend on the thread count.

use crate::error::{Error, Result};

/// `y[i, c] (+)= sum_k x[i, k] * w[c, k]` for `i < m`, `c < n`: a PyTorch `nn.Linear` product
/// `x W^T` with `x: [m, k]` (row stride `ldx`), `W: [n, k]` row-major (the parameter layout),
/// `y: [m, n]` (row stride `ldy`, so `y` may be a column slice of a wider buffer). With
/// `accumulate`, `y` is added to (`y = y + x W^T`: bias or residual already in `y`); otherwise it
/// is overwritten.
///
/// # Errors
/// [`Error::Internal`] when a slice is too short for its shape and stride.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    ldx: usize,
    w: &[f32],
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let need = |rows: usize, ld: usize, cols: usize| (rows - 1) * ld + cols;
    if ldx < k
        || ldy < n
        || x.len() < need(m, ldx, k)
        || w.len() < n * k
        || y.len() < need(m, ldy, n)
    {
        return Err(Error::Internal(format!(
            "gemm::linear: m {m}, n {n}, k {k}, x {} (ld {ldx}), w {}, y {} (ld {ldy})",
            x.len(),
            w.len(),
            y.len()
        )));
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                y[r * ldy..r * ldy + n].fill(0.0);
            }
        }
        return Ok(());
    }
    if m <= 4 {
        // A decode step: stream W once (dot products over its contiguous rows).
        super::cpu::gemv_rows(m, n, k, x, ldx, w, y, ldy, accumulate);
        return Ok(());
    }
    // W^T: element (kk, c) at c * k + kk.
    matmul(
        m,
        n,
        k,
        Mat::rows(x, ldx),
        Mat::transposed(w, k),
        y,
        ldy,
        accumulate,
    )
}

/// A matrix operand: `data[i * rs + j * cs]` is element `(i, j)`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `[rows, cols]` with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: ld,
        }
    }

    /// Whether a `[rows, cols]` view fits in `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// General `y[i, j] (+)= sum_k a[i, k] * b[k, j]` for `a: [m, k]`, `b: [k, n]` with any
/// strides, `y: [m, n]` row-major with row stride `ldy`. The backward pass's products
/// (`dX = dY W`, `dW = dY^T X`) are this with transposed views. Split over output blocks on the
/// current rayon pool, never over `k`, so the result does not depend on the thread count.
///
/// # Errors
/// [`Error::Internal`] when an operand is too short for its shape and strides.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if ldy < n || y.len() < (m - 1) * ldy + n || !a.fits(m, k) || !b.fits(k, n) {
        return Err(Error::Internal(format!(
            "gemm::matmul: m {m}, n {n}, k {k}, a {} ({}, {}), b {} ({}, {}), y {} (ld {ldy})",
            a.data.len(),
            a.rs,
            a.cs,
            b.data.len(),
            b.rs,
            b.cs,
            y.len()
        )));
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                y[r * ldy..r * ldy + n].fill(0.0);
            }
        }
        return Ok(());
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    if super::wasm_gemm::accepts(m, n, k, &a) {
        super::wasm_gemm::matmul(m, n, k, a, b, y, ldy, accumulate);
        return Ok(());
    }
    let threads = super::cpu::threads();
    let par = if threads > 1 && m * n * k >= 1 << 15 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element the GEMM reads lies inside a and b (checked by `fits`), y's
    // [m, n] extent at row stride ldy was checked; y does not alias a or b (&mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            ldy as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Input gradient of `y = x W^T`: `dx[m, in] (+)= dy[m, out] W[out, in]` (`dy` row stride
/// `lddy`, `dx` row stride `lddx`).
///
/// # Errors
/// As [`matmul`].
#[allow(clippy::too_many_arguments)]
pub fn linear_dx(
    m: usize,
    out: usize,
    inp: usize,
    dy: &[f32],
    lddy: usize,
    w: &[f32],
    dx: &mut [f32],
    lddx: usize,
    accumulate: bool,
) -> Result<()> {
    matmul(
        m,
        inp,
        out,
        Mat::rows(dy, lddy),
        Mat::rows(w, inp),
        dx,
        lddx,
        accumulate,
    )
}

/// Weight gradient of `y = x W^T`: `dW[out, in] += dy[m, out]^T x[m, in]` (row strides `lddy`,
/// `ldx`), accumulated onto `dw`.
///
/// # Errors
/// As [`matmul`].
#[allow(clippy::too_many_arguments)]
pub fn linear_dw(
    m: usize,
    out: usize,
    inp: usize,
    dy: &[f32],
    lddy: usize,
    x: &[f32],
    ldx: usize,
    dw: &mut [f32],
) -> Result<()> {
    matmul(
        out,
        inp,
        m,
        Mat::transposed(dy, lddy),
        Mat::rows(x, ldx),
        dw,
        inp,
        true,
    )
}

/// The GEMM micro-kernel family the `gemm` crate runs on this CPU (`"avx512f"`, `"avx2+fma"`,
/// `"scalar"` on x86_64; `"neon"`, `"simd128"` or `"scalar"` elsewhere), or `"relaxed-simd"` for
/// gqa's own wasm GEMM ([`super::wasm_gemm`], wasm32 built with `+relaxed-simd`).
pub fn gemm_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2+fma"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(target_arch = "wasm32")]
    {
        if cfg!(target_feature = "relaxed-simd") {
            "relaxed-simd"
        } else if cfg!(target_feature = "simd128") {
            "simd128"
        } else {
            "scalar"
        }
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "wasm32"
    )))]
    {
        "scalar"
    }
}
