//! Scalar maths written to vectorise: Cephes `expf`, `erfc`, the exact GELU.

use super::*;
#[allow(unused_imports)]
use crate::error::{Error, Result};

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
pub(super) fn gelu_f32<const FMA: bool>(x: f32) -> f32 {
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
pub(super) fn exp_slice_impl<const FMA: bool>(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = exp_f32::<FMA>(*v);
    }
}

dispatch!(
    /// `x[i] = exp(x[i])` with the kernels' vectorised `exp` (see the module docs for accuracy).
    pub fn exp_in_place / exp_in_place_avx2 => exp_slice_impl(x: &mut [f32])
);
