//! Helpers shared by integration tests and benches (`mod common;`, or
//! `#[path = "../tests/common/mod.rs"] mod common;` from a bench).

#![allow(dead_code)]

/// `n` deterministic values in [-1, 1) from `seed` (xorshift64; the top 24 bits of each state).
pub fn pseudo(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The relative error of a whole tensor, `max |a - b| / max |b|` (`max |a - b|` when `b` is
/// zero to within 1e-6).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
    let den = b.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
    if den < 1e-6 {
        num
    } else {
        num / den
    }
}
