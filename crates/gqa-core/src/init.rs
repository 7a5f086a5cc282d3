//! Deterministic initialisation (SPEC section 3, Axon's defaults).
//!
//! Dense kernels are Glorot-uniform `U(-b, b)`, `b = sqrt(6 / (in + out))` (Glorot & Bengio,
//! 2010; Axon's `glorot_uniform`), biases 0, LayerNorm gamma 1 and beta 0. The random stream is
//! ChaCha8 seeded with the model seed, one stream per parameter (the parameter's index in
//! canonical order), so the values are bitwise identical on every platform and independent of
//! threads or the host RNG.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Glorot-uniform values for a weight of PyTorch layout `[out, inp]`, row-major.
///
/// `seed` is the model seed, `stream` the parameter's index in canonical order. Each value is
/// `-b + 2b*u` with `u = (next_u32() >> 8) * 2^-24` (24 random bits, so `u` in `[0, 1)`) and
/// `b = sqrt(6 / (inp + out))` computed in f32. Returns `out * inp` values.
pub fn glorot_uniform(seed: u64, stream: u64, out: usize, inp: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let b = (6.0f32 / (inp + out) as f32).sqrt();
    let n = out * inp;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let u = (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0);
        v.push(-b + 2.0 * b * u);
    }
    v
}

/// The Glorot bound `b = sqrt(6 / (inp + out))` in f32 (as used by [`glorot_uniform`]).
pub fn glorot_bound(out: usize, inp: usize) -> f32 {
    (6.0f32 / (inp + out) as f32).sqrt()
}
