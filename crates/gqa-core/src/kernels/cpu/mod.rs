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

mod attention;
mod math;
mod par;
mod rows;
mod simd;

pub use attention::*;
pub use math::*;
pub(crate) use par::*;
pub use rows::*;
pub use simd::*;

/// Keys per online-softmax block.
pub const KEY_BLOCK: usize = 64;
/// Lanes of the portable reductions.
pub(crate) const LANES: usize = 8;

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
