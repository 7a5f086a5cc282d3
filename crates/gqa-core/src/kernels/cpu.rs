//! Fused f32 CPU kernels for the inference path (no autograd).
//!
//! - [`attention_cpu`] / [`attention_cpu_strided`]: causal grouped-query attention in the style
//!   of FlashAttention (Dao et al., 2022): keys are processed in blocks of [`KEY_BLOCK`] with an
//!   online softmax (running max and sum per query row), so the `[Tq, Tk]` score matrix is never
//!   materialised, fully masked key blocks are never visited (causal limit and per-sequence key
//!   lengths), and the query heads of one group are processed together so each K/V row is read
//!   once per group.
//! - [`layer_norm_rows`]: LayerNorm per row (mean, then biased variance of the centred row while
//!   it is in cache).
//! - [`bias_gelu_rows`], [`bias_add_rows`]: bias add fused with the exact GELU
//!   `x * Phi(x) = x * 0.5 * erfc(-x / sqrt(2))`, or alone.
//! - [`rotary_rows`]: rotary embedding (rotate_half, SPEC section 5) in place on `[.., T, N, D]`.
//!
//! The code is portable Rust written for auto-vectorisation (fixed-size lane arrays). On x86_64
//! the same code is also compiled with AVX2+FMA and selected at run time
//! (`is_x86_feature_detected!`); wasm32 builds use the portable code (simd128 when the build
//! enables it). Row loops run on rayon's pool on native targets (rayon is already a dependency
//! of candle), sequentially on wasm32.
//!
//! Numerics: `exp` is Cephes' `expf` range reduction and polynomial (max relative error about
//! 1e-7, inputs below -87.3 flush to 0); `erfc` is the Chebyshev fit of Numerical Recipes
//! (`erfcc`, fractional error < 1.2e-7 everywhere), which keeps GELU accurate in both tails
//! (max abs error vs float64 about 4e-7, i.e. f32 rounding, on `[-12, 12]`).

use crate::error::{Error, Result};

/// Keys per online-softmax block.
pub const KEY_BLOCK: usize = 64;
/// Lanes of the portable reductions.
pub(crate) const LANES: usize = 8;

// ---------------------------------------------------------------------------------------------
// SIMD dispatch

/// Highest SIMD level the kernels may use (see [`SimdLevel`]); `u8::MAX` = whatever the CPU has.
static MAX_LEVEL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// The instruction-set variants of the hot kernels, in increasing order. On x86_64 the
/// portable code is compiled three times (plain, `avx2,fma`, `avx512f,avx2,fma`) and the best
/// one the CPU supports is chosen at run time; elsewhere only `Portable` exists (which is
/// simd128 on a wasm32 build with that feature, NEON on aarch64, by auto-vectorisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable Rust (the target's baseline vector ISA).
    Portable = 0,
    /// x86_64 AVX2 + FMA (256-bit).
    Avx2Fma = 1,
    /// x86_64 AVX-512F (512-bit), with AVX2 and FMA.
    Avx512 = 2,
}

/// Forces the portable kernels (`true`) or allows the run-time selected AVX2+FMA variants
/// (`false`, the default) on x86_64; no effect elsewhere. For tests and benchmarks.
pub fn set_portable_only(on: bool) {
    set_max_simd(if on { Some(SimdLevel::Portable) } else { None });
}

/// Caps the SIMD level of the fused kernels (`None` = the best the CPU supports). For tests and
/// benchmarks (e.g. the AVX2 path on an AVX-512 machine). The GEMM (the `gemm` crate) keeps its
/// own run-time choice.
pub fn set_max_simd(level: Option<SimdLevel>) {
    MAX_LEVEL.store(
        level.map_or(u8::MAX, |l| l as u8),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The SIMD level the fused kernels use now: the best the CPU supports, capped by
/// [`set_max_simd`].
pub fn simd_level() -> SimdLevel {
    let cap = MAX_LEVEL.load(std::sync::atomic::Ordering::Relaxed);
    let hw = detected_level();
    if (hw as u8) <= cap {
        hw
    } else if cap >= SimdLevel::Avx2Fma as u8 {
        SimdLevel::Avx2Fma
    } else {
        SimdLevel::Portable
    }
}

/// A name for [`simd_level`]: `"avx512f"`, `"avx2+fma"`, or on other targets the baseline
/// (`"simd128"` on wasm32 built with it, `"neon"` on aarch64, else `"portable"`).
pub fn simd_name() -> &'static str {
    match simd_level() {
        SimdLevel::Avx512 => "avx512f",
        SimdLevel::Avx2Fma => "avx2+fma",
        SimdLevel::Portable => {
            if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
                "simd128"
            } else if cfg!(target_arch = "aarch64") {
                "neon"
            } else {
                "portable"
            }
        }
    }
}

/// The best level this CPU supports (detected once).
fn detected_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HW: OnceLock<SimdLevel> = OnceLock::new();
        *HW.get_or_init(|| {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2 && is_x86_feature_detected!("avx512f") {
                SimdLevel::Avx512
            } else if avx2 {
                SimdLevel::Avx2Fma
            } else {
                SimdLevel::Portable
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        SimdLevel::Portable
    }
}

/// Defines `$name(args)` that runs `$imp::<true>(args)` compiled with AVX-512F or AVX2+FMA when
/// available and `$imp::<false>(args)` (portable) otherwise.
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident / $avx:ident => $imp:ident ($($a:ident : $t:ty),* $(,)?)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx($($a: $t),*) {
            $imp::<true>($($a),*)
        }
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($a: $t),*) {
                    $imp::<true>($($a),*)
                }
                match simd_level() {
                    // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (detected).
                    SimdLevel::Avx512 => return unsafe { avx512($($a),*) },
                    // SAFETY: the CPU supports AVX2 and FMA (detected).
                    SimdLevel::Avx2Fma => return unsafe { $avx($($a),*) },
                    SimdLevel::Portable => {}
                }
            }
            $imp::<false>($($a),*)
        }
    };
}
pub(crate) use dispatch;

/// `a * b + c`, fused when `FMA` (only instantiated with `true` under the `fma` target feature,
/// where `mul_add` is one instruction; the portable path never calls the libm `fmaf`).
#[inline(always)]
pub(crate) fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

// ---------------------------------------------------------------------------------------------
// Row parallelism

/// Runs `f(i)` for `i in 0..n`, on rayon's pool where the target has threads and `parallel`.
///
/// On the threaded wasm module, where the pool cannot be resized, a cap below the pool's size
/// ([`super::threads::set_threads`]) runs `threads()` contiguous groups of jobs in parallel.
/// Which thread runs a job never changes its result.
pub(crate) fn par_for(n: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
    #[cfg(gqa_threads)]
    {
        let t = threads();
        if parallel && n > 1 && t > 1 {
            use rayon::prelude::*;
            if cfg!(target_arch = "wasm32") && t < rayon::current_num_threads() && t < n {
                (0..t)
                    .into_par_iter()
                    .for_each(|g| (g * n / t..(g + 1) * n / t).for_each(&f));
            } else {
                (0..n).into_par_iter().for_each(f);
            }
            return;
        }
    }
    let _ = parallel;
    (0..n).for_each(f);
}

/// Number of worker threads the row loops may use (1 where the target has no threads).
pub(crate) fn threads() -> usize {
    #[cfg(all(gqa_threads, not(target_arch = "wasm32")))]
    {
        rayon::current_num_threads().max(1)
    }
    #[cfg(all(gqa_threads, target_arch = "wasm32"))]
    {
        super::threads::threads()
    }
    #[cfg(not(gqa_threads))]
    {
        1
    }
}

/// A raw output pointer shared by jobs that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every job writes a disjoint set of elements (documented at each use).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Splits `rows` rows of `width` values into at most `4 * threads` chunks of whole rows (at least
/// `min_rows` rows each) and runs `f(first_row, rows_slice)` on each, in parallel when worth it.
pub(crate) fn par_rows_mut(
    data: &mut [f32],
    width: usize,
    min_values: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if width == 0 || data.is_empty() {
        return;
    }
    let rows = data.len() / width;
    let chunks = (data.len() / min_values.max(1))
        .clamp(1, 4 * threads())
        .min(rows);
    let per = rows.div_ceil(chunks);
    let ptr = OutPtr(data.as_mut_ptr());
    let len = data.len();
    par_for(rows.div_ceil(per), chunks > 1, move |c| {
        let r0 = c * per;
        let r1 = ((c + 1) * per).min(rows);
        let p = ptr;
        // SAFETY: chunk `c` covers rows `r0..r1`, disjoint from every other chunk, inside `data`.
        let s = unsafe {
            std::slice::from_raw_parts_mut(
                p.0.add(r0 * width),
                ((r1 - r0) * width).min(len - r0 * width),
            )
        };
        f(r0, s);
    });
}

// ---------------------------------------------------------------------------------------------
// exp and erfc

/// Cephes `expf` (range reduction by ln 2 split in two, degree-6 polynomial), branch-free so it
/// vectorises; `x < -87.33` returns 0 (`-inf` included), `x > 88.72` saturates. NaN in, garbage
/// out (never called with NaN here).
#[inline(always)]
pub(crate) fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
                                     // An explicit select rather than `f32::clamp` (whose NaN handling is not needed here).
    #[allow(clippy::manual_clamp)]
    let xc = if x < -87.336_54 {
        -87.336_54
    } else if x > 88.722_83 {
        88.722_83
    } else {
        x
    };
    let t = fmadd::<FMA>(xc, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = fmadd::<FMA>(n, -0.693_359_4, xc);
    let r = fmadd::<FMA>(n, 2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4f32;
    p = fmadd::<FMA>(p, r, 1.398_199_9e-3);
    p = fmadd::<FMA>(p, r, 8.333_452e-3);
    p = fmadd::<FMA>(p, r, 4.166_579_6e-2);
    p = fmadd::<FMA>(p, r, 1.666_666_5e-1);
    p = fmadd::<FMA>(p, r, 0.5);
    let y = fmadd::<FMA>(p * r, r, r) + 1.0;
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let res = y * scale;
    if x < -87.336_54 {
        0.0
    } else {
        res
    }
}

/// `erfc(z)` for `z >= 0` (Numerical Recipes `erfcc`, fractional error < 1.2e-7).
#[inline(always)]
pub(crate) fn erfc_pos<const FMA: bool>(a: f32) -> f32 {
    let t = 1.0 / fmadd::<FMA>(0.5, a, 1.0);
    let mut p = 0.170_872_77f32;
    p = fmadd::<FMA>(p, t, -0.822_152_23);
    p = fmadd::<FMA>(p, t, 1.488_515_9);
    p = fmadd::<FMA>(p, t, -1.135_204);
    p = fmadd::<FMA>(p, t, 0.278_868_07);
    p = fmadd::<FMA>(p, t, -0.186_288_06);
    p = fmadd::<FMA>(p, t, 0.096_784_18);
    p = fmadd::<FMA>(p, t, 0.374_091_96);
    p = fmadd::<FMA>(p, t, 1.000_023_7);
    p = fmadd::<FMA>(p, t, -1.265_512_2);
    t * exp_f32::<FMA>(fmadd::<FMA>(-a, a, p))
}

/// Exact GELU `x * Phi(x)`, `Phi(x) = 0.5 * erfc(-x / sqrt(2))` (Hendrycks & Gimpel, 2016).
#[inline(always)]
fn gelu_f32<const FMA: bool>(x: f32) -> f32 {
    x * 0.5 * two_phi::<FMA>(x)
}

/// `2 * Phi(x) = erfc(-x / sqrt(2))`, the standard normal CDF doubled (GELU and its derivative).
#[inline(always)]
pub(crate) fn two_phi<const FMA: bool>(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let e = erfc_pos::<FMA>(z.abs());
    if z >= 0.0 {
        2.0 - e
    } else {
        e
    }
}

#[inline(always)]
fn exp_slice_impl<const FMA: bool>(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = exp_f32::<FMA>(*v);
    }
}

dispatch!(
    /// `x[i] = exp(x[i])` with the kernels' vectorised `exp` (see the module docs for accuracy).
    pub fn exp_in_place / exp_in_place_avx2 => exp_slice_impl(x: &mut [f32])
);

// ---------------------------------------------------------------------------------------------
// Bias, GELU, LayerNorm, rotary

/// Exact GELU through a rational `erf`: `0.5 x (1 + erf(x / sqrt 2))` with `erf(z) = z P(z^2) /
/// Q(z^2)` on `z` clamped to [-4, 4] (degrees 6 and 4; the single-precision `erf` of Eigen,
/// `generic_fast_erf_float`, also XLA's). Max abs error 1.05e-6 against f64 over [-12, 12]
/// (the `erfc` form: 3.8e-7), half its operations and no `exp`: the inference GELU of the wasm
/// modules, where GELU was 8 % of a forward of workload (a) (410-412 -> 385-390 ms per forward,
/// single-threaded simd128, Node 20). Native targets keep [`gelu_f32`]; training keeps the
/// `erfc` form everywhere (its backward pass differentiates that one).
#[inline(always)]
fn gelu_rational(x: f32) -> f32 {
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
fn bias_gelu_impl<const FMA: bool>(y: &mut [f32], bias: &[f32]) {
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
fn bias_add_impl<const FMA: bool>(y: &mut [f32], bias: &[f32], residual: &[f32]) {
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
fn layer_norm_impl<const FMA: bool>(
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
fn rotary_impl<const FMA: bool>(
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
fn rotary_row_impl<const FMA: bool>(x: &mut [f32], n: usize, d: usize, cos: &[f32], sin: &[f32]) {
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
fn gemv_impl<const FMA: bool>(
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
/// the caller ([`super::gemm::linear`]).
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

fn check_rows(what: &str, len: usize, width: usize) -> Result<()> {
    if width == 0 || !len.is_multiple_of(width) {
        return Err(Error::Internal(format!(
            "{what}: {len} values are not rows of width {width}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Attention

/// Strides (in f32 elements) of a `[B, N, T, D]` head tensor whose `D` axis is contiguous:
/// element `(b, n, t, d)` sits at `offset + b*batch + n*head + t*row + d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    /// Offset of element `(0,0,0,0)`.
    pub offset: usize,
    /// Stride of `B`.
    pub batch: usize,
    /// Stride of `N` (heads).
    pub head: usize,
    /// Stride of `T` (positions).
    pub row: usize,
}

impl HeadLayout {
    /// Contiguous `[B, N, T, D]` (heads outermost: `qkv`'s layout).
    pub fn bntd(n: usize, t: usize, d: usize) -> Self {
        HeadLayout {
            offset: 0,
            batch: n * t * d,
            head: t * d,
            row: d,
        }
    }

    /// Contiguous `[B, T, N, D]` (a projection output `[B, T, N*D]` viewed as heads).
    pub fn btnd(n: usize, t: usize, d: usize) -> Self {
        HeadLayout {
            offset: 0,
            batch: t * n * d,
            head: d,
            row: n * d,
        }
    }

    /// One past the largest index used by `[b, n, t, d]` (0 when any dim is 0).
    fn extent(&self, b: usize, n: usize, t: usize, d: usize) -> usize {
        if b == 0 || n == 0 || t == 0 || d == 0 {
            return 0;
        }
        self.offset + (b - 1) * self.batch + (n - 1) * self.head + (t - 1) * self.row + d
    }

    #[inline(always)]
    fn at(&self, b: usize, n: usize, t: usize) -> usize {
        self.offset + b * self.batch + n * self.head + t * self.row
    }
}

/// Sizes of one attention call: `q: [B, NH, Tq, D]`, `k, v: [B, NKV, Tk, D]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// `B`.
    pub batch: usize,
    /// `NH` (query heads).
    pub num_heads: usize,
    /// `NKV` (divides `NH`; query head `i` reads KV head `i / (NH/NKV)`).
    pub num_kv_heads: usize,
    /// `Tq` (new query positions).
    pub q_len: usize,
    /// `Tk` (key positions).
    pub k_len: usize,
    /// `D` (head_dim).
    pub head_dim: usize,
}

/// Query positions and key limits of a causal attention call: query `i` of sequence `b` sits at
/// absolute position `q_offsets[b] + i` (one shared offset when `q_offsets.len() == 1`, e.g. the
/// KV-cache length) and reads keys `j <= q_offsets[b] + i` with `j < key_lengths[b]` (all `Tk`
/// keys when `None`).
#[derive(Debug, Clone, Copy)]
pub struct CausalMask<'a> {
    /// 1 or `B` offsets.
    pub q_offsets: &'a [usize],
    /// `None` or `B` key lengths (each `<= Tk`).
    pub key_lengths: Option<&'a [usize]>,
}

struct AttnArgs<'a> {
    q: &'a [f32],
    ql: HeadLayout,
    k: &'a [f32],
    kl: HeadLayout,
    v: &'a [f32],
    vl: HeadLayout,
    out: OutPtr,
    ol: HeadLayout,
    dims: AttentionDims,
    scale: f32,
    mask: CausalMask<'a>,
}

/// One unit of work: batch `b`, KV head `kvh`, query positions `i0..i1`.
#[derive(Clone, Copy)]
struct AttnJob {
    b: usize,
    kvh: usize,
    i0: usize,
    i1: usize,
}

/// Query-row groups per tile: K/V blocks are read once per `TILE_GROUPS * ROWS` query rows.
const TILE_GROUPS: usize = 8;

#[inline(always)]
fn attn_job_impl<
    const FMA: bool,
    const X512: bool,
    const ROWS: usize,
    const KEY_CHUNK: usize,
    const W: usize,
>(
    a: &AttnArgs<'_>,
    job: AttnJob,
    kt: &mut Vec<f32>,
    o: &mut Vec<f32>,
) {
    let AttnJob { b, kvh, i0, i1 } = job;
    let dims = a.dims;
    let d = dims.head_dim;
    let g = dims.num_heads / dims.num_kv_heads;
    let off = if a.mask.q_offsets.len() == 1 {
        a.mask.q_offsets[0]
    } else {
        a.mask.q_offsets[b]
    };
    let len = a
        .mask
        .key_lengths
        .map_or(dims.k_len, |l| l[b])
        .min(dims.k_len);
    let lim = |i: usize| (off + i + 1).min(len);
    let n_rows = (i1 - i0) * g;
    let write_row = |row: usize, vals: Option<&[f32]>, inv: f32| {
        let i = i0 + row / g;
        let h = kvh * g + row % g;
        let base = a.ol.at(b, h, i);
        // SAFETY: (b, h, i) belongs to this job only (jobs split (b, kvh, query range) and h is
        // in kvh's group), and `attention_cpu_strided` checked the output extent.
        let dst = unsafe { std::slice::from_raw_parts_mut(a.out.0.add(base), d) };
        match vals {
            Some(v) => {
                for (x, &y) in dst.iter_mut().zip(v) {
                    *x = y * inv;
                }
            }
            None => dst.fill(0.0),
        }
    };
    // K transposed once per job into block panels [nblocks][D][KEY_BLOCK] (each 8 KiB at D = 32,
    // contiguous: no cache-set aliasing from a long row stride), zero padded.
    // With few query rows (a decode step) each block is used once: transpose it on the fly into
    // one L1-resident panel instead (K is then read once, never written back).
    let max_lim = if n_rows == 0 { 0 } else { lim(i1 - 1) };
    let on_the_fly = n_rows <= 2 * ROWS;
    let nblocks = if on_the_fly {
        1
    } else {
        max_lim.div_ceil(KEY_BLOCK)
    };
    let panel = d * KEY_BLOCK;
    kt.clear();
    kt.resize(nblocks * panel, 0.0);
    for j in 0..if on_the_fly { 0 } else { max_lim } {
        let src = &a.k[a.kl.at(b, kvh, j)..][..d];
        let dst = &mut kt[(j / KEY_BLOCK) * panel + j % KEY_BLOCK..];
        for (dd, &x) in src.iter().enumerate() {
            dst[dd * KEY_BLOCK] = x;
        }
    }
    let tile_rows = TILE_GROUPS * ROWS;
    o.clear();
    o.resize(tile_rows * d, 0.0);
    let mut qloc = vec![0f32; tile_rows * d];
    let mut s = [[0f32; KEY_BLOCK]; ROWS];
    for t0 in (0..n_rows).step_by(tile_rows) {
        let groups = (n_rows - t0).min(tile_rows).div_ceil(ROWS);
        let mut lims = [[0usize; ROWS]; TILE_GROUPS];
        let mut glim = [0usize; TILE_GROUPS];
        for gi in 0..groups {
            for rr in 0..ROWS {
                let row = (t0 + gi * ROWS + rr).min(n_rows - 1);
                let i = i0 + row / g;
                let h = kvh * g + row % g;
                let src = &a.q[a.ql.at(b, h, i)..][..d];
                let q = &mut qloc[(gi * ROWS + rr) * d..(gi * ROWS + rr + 1) * d];
                for (x, &y) in q.iter_mut().zip(src) {
                    *x = y * a.scale;
                }
                lims[gi][rr] = lim(i);
            }
            glim[gi] = lims[gi].iter().copied().max().unwrap_or(0);
        }
        let tile_lim = glim[..groups].iter().copied().max().unwrap_or(0);
        let mut m = [[f32::NEG_INFINITY; ROWS]; TILE_GROUPS];
        let mut l = [[0f32; ROWS]; TILE_GROUPS];
        o[..groups * ROWS * d].fill(0.0);
        for j0 in (0..tile_lim).step_by(KEY_BLOCK) {
            let bk = KEY_BLOCK.min(tile_lim - j0);
            if on_the_fly {
                for j in 0..bk {
                    let src = &a.k[a.kl.at(b, kvh, j0 + j)..][..d];
                    for (dd, &x) in src.iter().enumerate() {
                        kt[dd * KEY_BLOCK + j] = x;
                    }
                }
                if bk < KEY_BLOCK {
                    for dd in 0..d {
                        kt[dd * KEY_BLOCK + bk..(dd + 1) * KEY_BLOCK].fill(0.0);
                    }
                }
            }
            let kp = if on_the_fly {
                &kt[..panel]
            } else {
                &kt[(j0 / KEY_BLOCK) * panel..][..panel]
            };
            let vb0 = a.vl.at(b, kvh, j0);
            for gi in 0..groups {
                if glim[gi] <= j0 {
                    continue; // every row of the group is past its limit
                }
                let gbk = bk.min(glim[gi] - j0);
                let qg = &qloc[gi * ROWS * d..(gi + 1) * ROWS * d];
                // Scores for the block, KEY_CHUNK keys at a time (accumulators in registers).
                for c0 in (0..gbk).step_by(KEY_CHUNK) {
                    #[cfg(target_arch = "x86_64")]
                    if X512 {
                        // SAFETY: X512 is only instantiated inside an `avx512f` function
                        // (detected); `kp` holds D rows of KEY_BLOCK values and
                        // c0 + 32 <= KEY_BLOCK; `qg` holds ROWS * D values.
                        unsafe { qk_tile_512::<ROWS>(qg, d, kp, KEY_BLOCK, c0, &mut s, c0) };
                        continue;
                    }
                    let mut acc = [[0f32; KEY_CHUNK]; ROWS];
                    for dd in 0..d {
                        let krow: &[f32; KEY_CHUNK] = kp[dd * KEY_BLOCK + c0..][..KEY_CHUNK]
                            .try_into()
                            .expect("chunk");
                        for rr in 0..ROWS {
                            let qv = qg[rr * d + dd];
                            for c in 0..KEY_CHUNK {
                                acc[rr][c] = fmadd::<FMA>(qv, krow[c], acc[rr][c]);
                            }
                        }
                    }
                    for rr in 0..ROWS {
                        s[rr][c0..c0 + KEY_CHUNK].copy_from_slice(&acc[rr]);
                    }
                }
                // Online softmax update per row.
                let mut alpha = [1f32; ROWS];
                for rr in 0..ROWS {
                    let valid = lims[gi][rr].saturating_sub(j0);
                    let row = &mut s[rr];
                    let mut mx = [f32::NEG_INFINITY; LANES];
                    for (ci, chunk) in row.chunks_exact_mut(LANES).enumerate() {
                        for ln in 0..LANES {
                            let x = if ci * LANES + ln < valid {
                                chunk[ln]
                            } else {
                                f32::NEG_INFINITY
                            };
                            chunk[ln] = x;
                            mx[ln] = if x > mx[ln] { x } else { mx[ln] };
                        }
                    }
                    let bm = mx
                        .iter()
                        .fold(f32::NEG_INFINITY, |acc, &v| if v > acc { v } else { acc });
                    let mrow = m[gi][rr];
                    let m_new = if bm > mrow { bm } else { mrow };
                    if m_new == f32::NEG_INFINITY {
                        // Row has no key in this block (only possible past its limit): p = 0.
                        row.fill(0.0);
                        continue;
                    }
                    alpha[rr] = exp_f32::<FMA>(mrow - m_new);
                    m[gi][rr] = m_new;
                    for x in row.iter_mut() {
                        *x = exp_f32::<FMA>(*x - m_new);
                    }
                    l[gi][rr] = l[gi][rr] * alpha[rr] + sum_lanes(row);
                }
                let og = &mut o[gi * ROWS * d..(gi + 1) * ROWS * d];
                for rr in 0..ROWS {
                    if alpha[rr] != 1.0 {
                        for x in &mut og[rr * d..(rr + 1) * d] {
                            *x *= alpha[rr];
                        }
                    }
                }
                // o += P V for the block: all ROWS rows times W-wide slices of D, accumulators
                // in registers across the block's keys (V read once per slice).
                let mut d0 = 0;
                #[cfg(target_arch = "x86_64")]
                if X512 {
                    while d0 + 32 <= d {
                        // SAFETY: avx512f detected (see above); rows vb0 + c * vrs + d0 .. + 32
                        // for c < gbk lie inside V's extent (checked by
                        // `attention_cpu_strided`); `og` holds ROWS * D values.
                        unsafe { pv_tile_512::<ROWS>(og, d, &s, gbk, a.v, vb0, a.vl.row, d0) };
                        d0 += 32;
                    }
                }
                while d0 + W <= d {
                    pv_rows::<FMA, ROWS, W>(og, d, &s, gbk, a.v, vb0, a.vl.row, d0);
                    d0 += W;
                }
                while d0 + 8 <= d {
                    pv_rows::<FMA, ROWS, 8>(og, d, &s, gbk, a.v, vb0, a.vl.row, d0);
                    d0 += 8;
                }
                while d0 < d {
                    pv_rows::<FMA, ROWS, 1>(og, d, &s, gbk, a.v, vb0, a.vl.row, d0);
                    d0 += 1;
                }
            }
        }
        for gi in 0..groups {
            for rr in 0..ROWS {
                let row = t0 + gi * ROWS + rr;
                if row >= n_rows {
                    break;
                }
                if lims[gi][rr] == 0 {
                    write_row(row, None, 0.0);
                } else {
                    write_row(
                        row,
                        Some(&o[(gi * ROWS + rr) * d..(gi * ROWS + rr + 1) * d]),
                        1.0 / l[gi][rr],
                    );
                }
            }
        }
    }
}

/// `o[r, d0..d0+W] += sum_{c < bk} p[r][c] * v[c, d0..d0+W]` for the `R` rows of `o` (row
/// stride `d`), `v` row `c` at `vb0 + c * vrs`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pv_rows<const FMA: bool, const R: usize, const W: usize>(
    o: &mut [f32],
    d: usize,
    p: &[[f32; KEY_BLOCK]; R],
    bk: usize,
    v: &[f32],
    vb0: usize,
    vrs: usize,
    d0: usize,
) {
    let mut acc = [[0f32; W]; R];
    for r in 0..R {
        acc[r].copy_from_slice(&o[r * d + d0..r * d + d0 + W]);
    }
    for c in 0..bk {
        let vv: &[f32; W] = v[vb0 + c * vrs + d0..][..W].try_into().expect("slice");
        for r in 0..R {
            let x = p[r][c];
            for w in 0..W {
                acc[r][w] = fmadd::<FMA>(x, vv[w], acc[r][w]);
            }
        }
    }
    for r in 0..R {
        o[r * d + d0..r * d + d0 + W].copy_from_slice(&acc[r]);
    }
}

/// AVX-512 score tile: `s[r][c0..c0+32] = sum_dd q[r, dd] * kt[dd, col..col+32]` for the `R`
/// rows of `q: [R, D]` (2R zmm accumulators).
///
/// # Safety
/// The CPU must support AVX-512F; `kt.len() >= (d - 1) * ldk + col + 32`, `q.len() >= R * d`,
/// `c0 + 32 <= KEY_BLOCK`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn qk_tile_512<const R: usize>(
    q: &[f32],
    d: usize,
    kt: &[f32],
    ldk: usize,
    col: usize,
    s: &mut [[f32; KEY_BLOCK]; R],
    c0: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(kt.len() >= (d - 1) * ldk + col + 32 && q.len() >= R * d && c0 + 32 <= KEY_BLOCK);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for dd in 0..d {
        let kp = kt.as_ptr().add(dd * ldk + col);
        let k0 = _mm512_loadu_ps(kp);
        let k1 = _mm512_loadu_ps(kp.add(16));
        for r in 0..R {
            let qb = _mm512_set1_ps(*q.get_unchecked(r * d + dd));
            acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(s[r].as_mut_ptr().add(c0), acc[r][0]);
        _mm512_storeu_ps(s[r].as_mut_ptr().add(c0 + 16), acc[r][1]);
    }
}

/// AVX-512 `o[r, d0..d0+32] += sum_{c < bk} p[r][c] * v[vb0 + c*vrs + d0 ..][..32]` for `R` rows
/// of `o` (row stride `d`), 2R zmm accumulators.
///
/// # Safety
/// The CPU must support AVX-512F; `v.len() >= vb0 + (bk - 1) * vrs + d0 + 32` when `bk > 0`,
/// `o.len() >= (R - 1) * d + d0 + 32`, `bk <= KEY_BLOCK`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn pv_tile_512<const R: usize>(
    o: &mut [f32],
    d: usize,
    p: &[[f32; KEY_BLOCK]; R],
    bk: usize,
    v: &[f32],
    vb0: usize,
    vrs: usize,
    d0: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(
        bk <= KEY_BLOCK
            && o.len() >= (R - 1) * d + d0 + 32
            && (bk == 0 || v.len() >= vb0 + (bk - 1) * vrs + d0 + 32)
    );
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for r in 0..R {
        let op = o.as_ptr().add(r * d + d0);
        acc[r][0] = _mm512_loadu_ps(op);
        acc[r][1] = _mm512_loadu_ps(op.add(16));
    }
    for c in 0..bk {
        let vp = v.as_ptr().add(vb0 + c * vrs + d0);
        let v0 = _mm512_loadu_ps(vp);
        let v1 = _mm512_loadu_ps(vp.add(16));
        for r in 0..R {
            let pb = _mm512_set1_ps(*p.get_unchecked(r).get_unchecked(c));
            acc[r][0] = _mm512_fmadd_ps(pb, v0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(pb, v1, acc[r][1]);
        }
    }
    for r in 0..R {
        let op = o.as_mut_ptr().add(r * d + d0);
        _mm512_storeu_ps(op, acc[r][0]);
        _mm512_storeu_ps(op.add(16), acc[r][1]);
    }
}

/// The attention job on the best SIMD level: 8 rows x 32 keys (16 zmm accumulators) with
/// AVX-512, 4 x 16 with AVX2+FMA and in portable code.
fn attn_job(a: &AttnArgs<'_>, job: AttnJob, kt: &mut Vec<f32>, o: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512(a: &AttnArgs<'_>, job: AttnJob, kt: &mut Vec<f32>, o: &mut Vec<f32>) {
            attn_job_impl::<true, true, 8, 32, 32>(a, job, kt, o)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(a: &AttnArgs<'_>, job: AttnJob, kt: &mut Vec<f32>, o: &mut Vec<f32>) {
            attn_job_impl::<true, false, 4, 16, 16>(a, job, kt, o)
        }
        match simd_level() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (detected).
            SimdLevel::Avx512 => return unsafe { avx512(a, job, kt, o) },
            // SAFETY: the CPU supports AVX2 and FMA (detected).
            SimdLevel::Avx2Fma => return unsafe { avx2(a, job, kt, o) },
            SimdLevel::Portable => {}
        }
    }
    attn_job_impl::<false, false, 4, 16, 16>(a, job, kt, o)
}

/// Fused causal grouped-query attention `softmax(q k^T * scale + mask) v` over strided head
/// tensors (see [`HeadLayout`]): `q: [B, NH, Tq, D]`, `k, v: [B, NKV, Tk, D]`, `out: [B, NH, Tq,
/// D]`, query head `h` reading KV head `h / (NH / NKV)` (SPEC section 2), causal mask and key
/// lengths as described by [`CausalMask`]. A query row that sees no key at all (key length 0)
/// gets zeros. Writes every element of `out` that the layout addresses and nothing else.
///
/// Memory: `O(D * Tk)` scratch per worker; the `[Tq, Tk]` scores are never stored.
///
/// # Errors
/// [`Error::Internal`] when `NKV` does not divide `NH`, a slice is too short for its layout, the
/// offsets/lengths counts are wrong or a key length exceeds `Tk`.
#[allow(clippy::too_many_arguments)]
pub fn attention_cpu_strided(
    q: &[f32],
    ql: HeadLayout,
    k: &[f32],
    kl: HeadLayout,
    v: &[f32],
    vl: HeadLayout,
    out: &mut [f32],
    ol: HeadLayout,
    dims: AttentionDims,
    scale: f32,
    mask: CausalMask<'_>,
) -> Result<()> {
    let AttentionDims {
        batch: b,
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: tq,
        k_len: tk,
        head_dim: d,
    } = dims;
    let bad = |m: String| {
        Err(Error::Internal(format!(
            "attention_cpu: {m} (dims {dims:?})"
        )))
    };
    if nkv == 0 || nh % nkv != 0 {
        return bad(format!("num_kv_heads {nkv} must divide num_heads {nh}"));
    }
    for (name, len, ext) in [
        ("q", q.len(), ql.extent(b, nh, tq, d)),
        ("k", k.len(), kl.extent(b, nkv, tk, d)),
        ("v", v.len(), vl.extent(b, nkv, tk, d)),
        ("out", out.len(), ol.extent(b, nh, tq, d)),
    ] {
        if len < ext {
            return bad(format!("{name} has {len} values, its layout needs {ext}"));
        }
    }
    if mask.q_offsets.len() != 1 && mask.q_offsets.len() != b {
        return bad(format!(
            "{} query offsets (expected 1 or B)",
            mask.q_offsets.len()
        ));
    }
    if let Some(ls) = mask.key_lengths {
        if ls.len() != b || ls.iter().any(|&l| l > tk) {
            return bad(format!("key lengths {ls:?} (expected B values <= Tk)"));
        }
    }
    if b == 0 || nh == 0 || tq == 0 || d == 0 {
        return Ok(());
    }
    let args = AttnArgs {
        q,
        ql,
        k,
        kl,
        v,
        vl,
        out: OutPtr(out.as_mut_ptr()),
        ol,
        dims,
        scale,
        mask,
    };
    // Jobs: (b, kvh, query chunk); enough chunks to keep the workers busy (causal rows differ in
    // cost, so over-split by 4).
    let groups = b * nkv;
    let work = (tq as u64) * (tk as u64) * (nh as u64) * (d as u64) * (b as u64);
    let parallel = work >= 1 << 18;
    let want = if parallel { 4 * threads() } else { 1 };
    let per_group = want.div_ceil(groups).min(tq).max(1);
    let chunk = tq.div_ceil(per_group);
    let chunks = tq.div_ceil(chunk);
    let jobs = groups * chunks;
    par_for(jobs, parallel, |jid| {
        let (gi, ci) = (jid / chunks, jid % chunks);
        let job = AttnJob {
            b: gi / nkv,
            kvh: gi % nkv,
            i0: ci * chunk,
            i1: ((ci + 1) * chunk).min(tq),
        };
        let mut kt = Vec::new();
        let mut o = Vec::new();
        attn_job(&args, job, &mut kt, &mut o);
    });
    Ok(())
}

/// [`attention_cpu_strided`] on contiguous tensors: `q, out: [B, NH, Tq, D]`,
/// `k, v: [B, NKV, Tk, D]` row-major, scale `scale` (usually `1/sqrt(D)`), query `i` at absolute
/// position `q_offset + i` (the KV-cache length; 0 for a plain forward) reading keys
/// `j <= q_offset + i` and `j < key_lengths[b]`.
///
/// # Errors
/// As [`attention_cpu_strided`].
#[allow(clippy::too_many_arguments)]
pub fn attention_cpu(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    scale: f32,
    q_offset: usize,
    key_lengths: Option<&[usize]>,
    out: &mut [f32],
) -> Result<()> {
    let AttentionDims {
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: tq,
        k_len: tk,
        head_dim: d,
        ..
    } = dims;
    let ql = HeadLayout::bntd(nh, tq, d);
    let kl = HeadLayout::bntd(nkv, tk, d);
    let offsets = [q_offset];
    attention_cpu_strided(
        q,
        ql,
        k,
        kl,
        v,
        kl,
        out,
        ql,
        dims,
        scale,
        CausalMask {
            q_offsets: &offsets,
            key_lengths,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f64;
        let xs: Vec<f32> = (0..200_000)
            .map(|i| -87.0 + i as f32 * 87.0 / 200_000.0)
            .collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let e = (x as f64).exp();
            worst = worst.max(((y as f64) - e).abs() / e);
        }
        assert!(worst < 3e-7, "exp max relative error {worst}");
        let mut z = [f32::NEG_INFINITY, -100.0, 0.0];
        exp_in_place(&mut z);
        assert_eq!(z, [0.0, 0.0, 1.0]);
    }
}
