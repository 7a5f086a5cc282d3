//! The attention mask: one value that every compute path reads (SPEC section 2).
//!
//! Query row `i` of sequence `b` sits at absolute position `offset(b) + i` (the KV-cache length
//! for a session push, 0 for a full forward) and may read key `j` when
//!
//! - `j <= offset(b) + i` (causal),
//! - `j < key_len(b)` (per-sequence valid keys: padding via `lengths`, or a row's cache length),
//! - and, with a sliding `window` `W` (the model's `slidingWindow`), `j > p - W` where
//!   `p = min(offset(b) + i, key_len(b) - 1)`: a valid row reads its last `W` positions
//!   (Hugging Face's `sliding_window_overlay`: `p - W < j <= p`); a padded row (past the
//!   sequence's length, whose output nothing reads) reads the last `W` valid keys, so every row
//!   of a sequence with at least one key reads at least one.
//!
//! Readers: the reference attention ([`crate::kernels::reference`], the only place that builds
//! the dense additive bias with [`Mask::dense_bias`]), the fused forward and decode kernels
//! ([`crate::kernels::cpu::attention_cpu_strided`], which skip key blocks past
//! [`Mask::keys_for`]), the fused training forward/backward ([`crate::kernels::backward`]) and
//! the ONNX export ([`crate::onnx`], which writes the same rule as graph nodes).
//!
//! Shapes: `B` sequences, `Tq` query rows, `Tk` keys. Offsets and key lengths hold 1 value
//! (shared by every sequence) or `B` values.

use std::ops::Range;

use candle_core::{Device, Tensor};

use crate::error::{check_f32_buffer, Error, Result};

/// Which keys each query row may read (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Position of query row 0 relative to key 0: 1 value (shared) or `B` values.
    offsets: Vec<usize>,
    /// Valid keys per sequence: 1 value (shared) or `B` values.
    key_lens: Vec<usize>,
    /// Sliding window `W` (see the module docs), `None` = full causal.
    window: Option<usize>,
}

impl Mask {
    /// Causal mask of a full pass over `t` positions (offset 0) with optional per-sequence
    /// lengths (`B` values in `1..=t`; `None` = every sequence has all `t` keys).
    pub fn padded(t: usize, lengths: Option<&[usize]>) -> Self {
        Mask {
            offsets: vec![0],
            key_lens: lengths.map_or_else(|| vec![t], <[usize]>::to_vec),
            window: None,
        }
    }

    /// Causal mask of query rows at positions `offset..` over `k_len` keys with optional
    /// per-sequence key lengths (each `<= k_len`).
    pub fn causal(offset: usize, k_len: usize, lengths: Option<&[usize]>) -> Self {
        Mask {
            offsets: vec![offset],
            key_lens: lengths.map_or_else(|| vec![k_len], <[usize]>::to_vec),
            window: None,
        }
    }

    /// Per-sequence offsets and key lengths (a KV-cache push: row `b`'s new positions start at
    /// its cache length `offsets[b]`, and it reads `key_lens[b]` keys). Each slice holds 1 or
    /// `B` values.
    pub fn rows(offsets: &[usize], key_lens: &[usize]) -> Self {
        Mask {
            offsets: offsets.to_vec(),
            key_lens: key_lens.to_vec(),
            window: None,
        }
    }

    /// This mask with other query offsets (1 or `B` values), the same key lengths and window:
    /// e.g. only the last valid row of each sequence (`offsets[b] = L_b - 1`).
    pub fn with_offsets(&self, offsets: &[usize]) -> Self {
        Mask {
            offsets: offsets.to_vec(),
            key_lens: self.key_lens.clone(),
            window: self.window,
        }
    }

    /// This mask with a sliding window of `window` keys per query (`None` = full causal; a
    /// model's `slidingWindow`, so every constructor above composes with it).
    pub fn with_window(mut self, window: Option<usize>) -> Self {
        self.window = window;
        self
    }

    /// The sliding window (`None`: none).
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// The number of sequences this mask distinguishes (1 when every value is shared).
    pub fn sequences(&self) -> usize {
        self.offsets.len().max(self.key_lens.len())
    }

    /// Position of query row 0 of sequence `b`.
    #[inline]
    pub fn offset(&self, b: usize) -> usize {
        pick(&self.offsets, b)
    }

    /// Valid keys of sequence `b`.
    #[inline]
    pub fn key_len(&self, b: usize) -> usize {
        pick(&self.key_lens, b)
    }

    /// The keys query row `q` of sequence `b` reads: `start..end`, empty when it reads none.
    /// Kernels visit only these (whole key blocks past `end` are skipped).
    #[inline]
    pub fn keys_for(&self, b: usize, q: usize) -> Range<usize> {
        let end = (self.offset(b) + q + 1).min(self.key_len(b));
        let start = self.window.map_or(0, |w| end.saturating_sub(w));
        start..end
    }

    /// Whether query row `q` of sequence `b` reads key `k`.
    #[inline]
    pub fn visible(&self, b: usize, q: usize, k: usize) -> bool {
        self.keys_for(b, q).contains(&k)
    }

    /// Checks the mask against a call of `batch` sequences over `k_len` keys: 1 or `batch`
    /// offsets and key lengths, key lengths `<= k_len`.
    ///
    /// # Errors
    /// [`Error::Internal`] naming what does not fit.
    pub fn check(&self, batch: usize, k_len: usize) -> Result<()> {
        let n_ok = |n: usize| n == 1 || n == batch;
        if !n_ok(self.offsets.len()) || !n_ok(self.key_lens.len()) {
            return Err(Error::Internal(format!(
                "attention mask: {} offsets and {} key lengths for {batch} sequences",
                self.offsets.len(),
                self.key_lens.len()
            )));
        }
        if let Some(&l) = self.key_lens.iter().find(|&&l| l > k_len) {
            return Err(Error::Internal(format!(
                "attention mask: key length {l} > {k_len} keys"
            )));
        }
        Ok(())
    }

    /// The additive bias `[MB, Tq, Tk]` (0 = read, `-inf` = masked; `MB` = 1 when every
    /// sequence shares its offset and key length, else `B`), or `None` when nothing is masked.
    /// Only the reference (candle ops) attention builds it.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when `[MB, Tq, Tk]` is over the buffer limit; candle errors.
    pub(crate) fn dense_bias(
        &self,
        batch: usize,
        q_len: usize,
        k_len: usize,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        let mb = if self.sequences() == 1 { 1 } else { batch };
        let n = check_f32_buffer("attention mask", &[mb, q_len, k_len])?;
        let mut m = Vec::with_capacity(n);
        let mut any = false;
        for b in 0..mb {
            for i in 0..q_len {
                let keys = self.keys_for(b, i);
                for j in 0..k_len {
                    let keep = keys.contains(&j);
                    any |= !keep;
                    m.push(if keep { 0f32 } else { f32::NEG_INFINITY });
                }
            }
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(Tensor::from_vec(m, (mb, q_len, k_len), device)?))
    }
}

/// `v[b]`, or the one shared value.
#[inline]
fn pick(v: &[usize], b: usize) -> usize {
    if v.len() == 1 {
        v[0]
    } else {
        v[b]
    }
}

#[cfg(test)]
mod tests {
    use super::Mask;

    /// Hugging Face's rule (`transformers.masking_utils`: `causal_mask_function` and
    /// `sliding_window_overlay`): query `p` reads key `j` iff `j <= p` and `p - W < j`.
    fn hf_visible(p: usize, j: usize, w: usize) -> bool {
        j <= p && (p as i64 - w as i64) < j as i64
    }

    #[test]
    fn window_keys_follow_hugging_face_for_valid_rows() {
        for w in [1usize, 2, 3, 7, 64, 100] {
            for offset in [0usize, 5] {
                let t = 40;
                let m = Mask::causal(offset, offset + t, None).with_window(Some(w));
                for q in 0..t {
                    let p = offset + q;
                    for j in 0..offset + t {
                        assert_eq!(m.visible(0, q, j), hf_visible(p, j, w), "W {w} p {p} j {j}");
                    }
                    assert_eq!(m.keys_for(0, q).len(), w.min(p + 1));
                }
            }
        }
    }

    #[test]
    fn padded_rows_read_the_last_window_of_valid_keys() {
        let m = Mask::padded(10, Some(&[4])).with_window(Some(3));
        assert_eq!(m.keys_for(0, 3), 1..4);
        assert_eq!(m.keys_for(0, 9), 1..4);
        let m = Mask::padded(10, None).with_window(None);
        assert_eq!(m.keys_for(0, 9), 0..10);
    }
}
