//! The f32 GEMM of the wasm32 modules built with `+relaxed-simd`, in place of the `gemm` crate's
//! simd128 micro-kernel (which has no fused multiply-add) where the left operand's rows are
//! contiguous: every inference product and the training step's `dX`; `dW` keeps the `gemm`
//! crate, which packs its transposed left side. The TypeScript layer loads a relaxed-SIMD module
//! only where `WebAssembly.validate` accepts relaxed SIMD.
//!
//! `y[i, j] (+)= sum_k a[i, k] * b[k, j]`: `b` is packed per call into panels of [`NR`] = 12
//! columns over a block of at most [`KC`] rows of `k` (zero-padded past `n`), and a register tile
//! of [`MR`] = 4 rows x 12 columns (12 `f32x4` accumulators) runs over the block: per `k`, three
//! 16-byte loads of the panel, four `v128.load32_splat` of `a` and twelve `f32x4.relaxed_madd`
//! (a fused multiply-add where the engine has one: x86 FMA, Arm NEON; else multiply then add).
//! Measured on workload (a) (Node 20 with `--experimental-wasm-relaxed-simd`, 1 thread, Xeon
//! with AVX-512): 338 ms against 412 ms for the plain module on the `gemm` crate; tiles of 5 x 8
//! and 6 x 8 ran 356 and 370-380 ms, and this tile with `f32x4.mul` + `f32x4.add` (no relaxed
//! SIMD) 458 ms, slower than the `gemm` crate, which the plain modules therefore keep.
//! Sums run over `k` in order within a block, blocks in order; each block's sum is
//! added onto `y` (which holds the bias or residual when `accumulate`). Work is split over
//! (row block, column chunk) tiles on the threaded module's pool, never over `k`, so the result
//! does not depend on the thread count; it differs from the `gemm` crate's in the last bits
//! (another summation order), within the 1e-5 the wasm backend is held to against native.
//!
//! Layout: the classic Goto/BLIS blocking (K. Goto, R. van de Geijn, "Anatomy of
//! high-performance matrix multiplication", ACM TOMS 34(3), 2008), with the register tile sized
//! for wasm's 16 vector registers as V8 and SpiderMonkey allocate them on x86_64.

use core::arch::wasm32::*;

use super::cpu::{par_for, threads, OutPtr};
use super::gemm::Mat;

/// `f32x4` vectors per packed panel row.
const V: usize = 3;
/// Columns of a packed panel.
const NR: usize = 4 * V;
/// Rows of the register tile.
const MR: usize = 4;
/// Rows of `k` per packed block.
const KC: usize = 384;
/// Rows of `y` per job (a multiple of `MR`).
const MC: usize = 64;

/// Whether [`matmul`] takes this product: `a`'s rows contiguous, and enough work to pay for
/// packing `b`.
pub(super) fn accepts(m: usize, n: usize, k: usize, a: &Mat<'_>) -> bool {
    a.cs == 1 && n >= 8 && m >= 2 && m * n * k >= 1 << 12
}

/// `R` rows (`R <= MR`) of `y` += `a[R, kc]` (row stride `ars`) times one packed panel
/// `bp[kc, NR]`, into the first `cols` columns at `c` (row stride `ldc`).
///
/// # Safety
/// `a` is valid for `R` rows of `kc` values at stride `ars`, `bp` for `kc * NR` values, `c` for
/// `R` rows of `cols` values at stride `ldc`, and no other thread writes those `y` elements.
#[inline(always)]
unsafe fn tile<const R: usize>(
    kc: usize,
    a: *const f32,
    ars: usize,
    bp: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let zero = f32x4_splat(0.0);
    let mut acc = [[zero; V]; R];
    for kk in 0..kc {
        let p = bp.add(kk * NR);
        let mut b = [zero; V];
        for (v, b) in b.iter_mut().enumerate() {
            *b = v128_load(p.add(4 * v) as *const v128);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let s = v128_load32_splat(a.add(r * ars + kk) as *const u32);
            for (acc, &b) in acc.iter_mut().zip(&b) {
                *acc = f32x4_relaxed_madd(s, b, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = c.add(r * ldc);
        if cols == NR {
            for (v, &sum) in acc.iter().enumerate() {
                let q = row.add(4 * v) as *mut v128;
                v128_store(q, f32x4_add(v128_load(q), sum));
            }
        } else {
            let mut tmp = [0f32; NR];
            for (v, &sum) in acc.iter().enumerate() {
                v128_store(tmp.as_mut_ptr().add(4 * v) as *mut v128, sum);
            }
            for (j, &t) in tmp.iter().enumerate().take(cols) {
                *row.add(j) += t;
            }
        }
    }
}

/// `y[i, j] (+)= sum_k a[i, k] * b[k, j]` (see the module docs); the caller checked the shapes
/// ([`super::gemm::matmul`]) and [`accepts`].
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
) {
    if !accumulate {
        for r in 0..m {
            y[r * ldy..r * ldy + n].fill(0.0);
        }
    }
    let panels = n.div_ceil(NR);
    let kc_max = k.min(KC);
    let mut packed = vec![0f32; panels * kc_max * NR];
    let row_blocks = m.div_ceil(MC);
    // Column chunks (groups of panels) so that small-m products still split over threads.
    let want = 4 * threads();
    let col_chunks = if row_blocks >= want {
        1
    } else {
        want.div_ceil(row_blocks).min(panels)
    };
    let per_chunk = panels.div_ceil(col_chunks);
    let jobs = row_blocks * panels.div_ceil(per_chunk);
    let out = OutPtr(y.as_mut_ptr());
    for k0 in (0..k).step_by(KC) {
        let kc = (k - k0).min(KC);
        // Pack b[k0..k0+kc, ..] into panels [panel][kk][NR], zero past n.
        for p in 0..panels {
            let dst = &mut packed[p * kc * NR..(p + 1) * kc * NR];
            for j in 0..NR {
                let col = p * NR + j;
                if col < n {
                    for kk in 0..kc {
                        dst[kk * NR + j] = b.data[(k0 + kk) * b.rs + col * b.cs];
                    }
                } else {
                    for kk in 0..kc {
                        dst[kk * NR + j] = 0.0;
                    }
                }
            }
        }
        let packed = &packed[..];
        let a_data = a.data;
        par_for(jobs, jobs > 1 && m * n * kc >= 1 << 15, move |job| {
            let out = out;
            let (rb, cb) = (job % row_blocks, job / row_blocks);
            let (r_lo, r_hi) = (rb * MC, ((rb + 1) * MC).min(m));
            let (p_lo, p_hi) = (cb * per_chunk, ((cb + 1) * per_chunk).min(panels));
            for p in p_lo..p_hi {
                let cols = (n - p * NR).min(NR);
                let bp = packed[p * kc * NR..].as_ptr();
                let mut r = r_lo;
                while r < r_hi {
                    let rows = (r_hi - r).min(MR);
                    // SAFETY: rows r..r+rows < m of a (k0 + kc <= k columns, checked by matmul's
                    // `fits`), one panel of kc * NR packed values, and y's rows r.. at columns
                    // p*NR..p*NR+cols < n: this job's own tile, written by no other job.
                    unsafe {
                        let ap = a_data.as_ptr().add(r * a.rs + k0);
                        let cp = out.0.add(r * ldy + p * NR);
                        match rows {
                            4 => tile::<4>(kc, ap, a.rs, bp, cp, ldy, cols),
                            3 => tile::<3>(kc, ap, a.rs, bp, cp, ldy, cols),
                            2 => tile::<2>(kc, ap, a.rs, bp, cp, ldy, cols),
                            _ => tile::<1>(kc, ap, a.rs, bp, cp, ldy, cols),
                        }
                    }
                    r += rows;
                }
            }
        });
    }
}
