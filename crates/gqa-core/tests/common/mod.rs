//! Helpers shared by integration tests and benches (`mod common;`, or
//! `#[path = "../tests/common/mod.rs"] mod common;` from a bench).
//!
//! [`Rng`] is the one seeded generator of the Rust tests and benches (inputs, weights, random
//! shapes). The PyTorch fixtures (`scripts/gen_fixtures.py`) draw from torch's own seeded
//! generator instead and store every value they use, so nothing outside Rust has to reproduce
//! this stream.

#![allow(dead_code)]

/// Marsaglia's xorshift64 (shifts 13, 7, 17), seeded through a Fibonacci-hash multiply so that
/// small consecutive seeds give unrelated streams. Deterministic, not cryptographic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator for `seed` (any value; the state is `seed * 0x9E3779B97F4A7C15 | 1`, never 0).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64-bit state.
    pub fn next_u64(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    /// A value in `[-1, 1)` on the grid `k * 2^-23` from the top 24 bits of the next state
    /// (exact in f32: `(s >> 40) / 2^24 * 2 - 1`).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// An index in `0..n` (`n >= 1`; from the top 32 bits, modulo bias below 2^-32 * n).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n >= 1);
        ((self.next_u64() >> 32) % n as u64) as usize
    }
}

/// `n` deterministic values in [-1, 1) from `seed` ([`Rng::uniform`]).
pub fn pseudo(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.uniform()).collect()
}

/// `n` deterministic values in [-amp, amp) from `seed` ([`pseudo`] times `amp`).
pub fn pseudo_amp(n: usize, seed: u64, amp: f32) -> Vec<f32> {
    pseudo(n, seed).into_iter().map(|v| v * amp).collect()
}

/// The relative error of a whole tensor, `max |a - b| / max |b|` (`max |a - b|` when `b` is
/// zero to within 1e-6).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    let den = b.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
    if den < 1e-6 {
        num
    } else {
        num / den
    }
}

/// The largest absolute difference of two equally long slices; infinite when a difference is
/// NaN (a NaN on either side must not vanish the way `f32::max` drops it).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// Tensor `name` of a fixture file as f32 values (stored little-endian F32) and its shape.
pub fn st_f32(st: &safetensors::SafeTensors<'_>, name: &str) -> (Vec<f32>, Vec<usize>) {
    let v = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    assert_eq!(v.dtype(), safetensors::Dtype::F32, "fixture tensor {name}");
    (
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        v.shape().to_vec(),
    )
}
