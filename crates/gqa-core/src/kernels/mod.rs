//! The kernels behind the compute seam ([`crate::compute`]), which is the only caller that
//! chooses among them:
//!
//! - [`reference`]: differentiable candle ops (training, every device).
//! - [`cpu`]: fused f32 slice kernels (inference on the CPU; also compiled for wasm32).
//! - [`fused`]: candle-level wrappers of [`cpu`] (the layer ops of [`crate::compute::Fused`]).
//! - [`engine`]: the fused whole-model forward and cached step; [`training`] (with
//!   [`backward`]): the fused training step (forward with saved activations, backward, on the
//!   same GEMM).
//!
//! A model is built on the fused kernels unless [`reference_kernels`] is true when it is built
//! ([`crate::compute::Engine::select`]): set the environment variable
//! `GQA_REFERENCE_KERNELS=1` (read once) or call [`set_reference_kernels`]; to compare the two
//! on the same weights, use [`crate::GqaModel::with_engine`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

pub mod backward;
pub mod cpu;
pub mod engine;
pub mod fused;
pub mod gemm;
pub mod reference;
pub mod threads;
pub mod training;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub mod wasm_gemm;

/// 0 = follow the environment, 1 = reference forced, 2 = fused forced.
static FORCE: AtomicU8 = AtomicU8::new(0);

/// The SIMD paths that run on this CPU, as the bindings' `simdInfo()` return them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimdInfo {
    /// gqa's own kernels: [`cpu::simd_name`] (`avx512f`, `avx2+fma`, `simd128`, `portable`...).
    pub kernels: &'static str,
    /// The GEMM micro-kernel family: [`gemm::gemm_path`] (`avx512f`, `relaxed-simd`...).
    pub gemm: &'static str,
}

/// [`SimdInfo`] of this CPU (and build).
pub fn simd_info() -> SimdInfo {
    SimdInfo {
        kernels: cpu::simd_name(),
        gemm: gemm::gemm_path(),
    }
}

/// Forces the reference (`true`) or fused (`false`) inference kernels for the whole process,
/// overriding `GQA_REFERENCE_KERNELS`.
pub fn set_reference_kernels(on: bool) {
    FORCE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether the inference path uses the reference candle ops instead of the fused kernels:
/// [`set_reference_kernels`] if called, else `GQA_REFERENCE_KERNELS` is `1` or `true`.
pub fn reference_kernels() -> bool {
    match FORCE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            static ENV: OnceLock<bool> = OnceLock::new();
            *ENV.get_or_init(|| {
                std::env::var("GQA_REFERENCE_KERNELS")
                    .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            })
        }
    }
}
