//! SIMD levels: detection, the cap for tests, and the `dispatch!` macro that compiles a kernel
//! once per instruction set and picks one at run time.

#[allow(unused_imports)]
use crate::error::{Error, Result};

/// Highest SIMD level the kernels may use (see [`SimdLevel`]); `u8::MAX` = whatever the CPU has.
pub(super) static MAX_LEVEL: std::sync::atomic::AtomicU8 =
    std::sync::atomic::AtomicU8::new(u8::MAX);

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
pub(super) fn detected_level() -> SimdLevel {
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
