//! The KV cache of a sliding-window session (SPEC section 7): constant memory however long the
//! stream.
//!
//! With `slidingWindow = W`, a new position reads at most its `W - 1` predecessors, so a row
//! keeps at most `W - 1` cached positions between pushes. The cache holds `C = W - 1 + S` slots
//! per row (`S = max(W + 1, 64)`, the most new positions one pass computes; fewer when `maxLen`
//! bounds the stream): a push longer than `S` positions runs as passes of at most `S`, and
//! before a pass a row whose slots would overflow moves its last `min(stored, W - 1)` positions
//! to slots `0..` (once every `>= S` new positions, so each pushed position costs O(1) copies,
//! amortised). Slot `s` of a row then holds absolute position `length - stored + s`; the mask
//! reads slots (offsets and key lengths in slots, the window in positions: the same numbers)
//! and rotary reads absolute positions from tables of the pass's span.

use std::ops::Range;

use crate::compute::KvCache;
use crate::error::Result;

/// Fewest new positions per pass of a windowed session: small windows still compute pushes in
/// blocks this large.
const MIN_PASS: usize = 64;

/// The ring policy of a windowed session: window `W` and slots per row `C`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ring {
    /// `W`.
    pub(super) window: usize,
    /// `C`, slots per row.
    pub(super) slots: usize,
}

impl Ring {
    /// The ring of window `window` for a stream of at most `limit` positions per row (`None`:
    /// unbounded): `C = min(W - 1 + max(W + 1, 64), limit)`.
    pub(super) fn new(window: usize, limit: Option<usize>) -> Self {
        let slots = (window - 1).saturating_add(window.saturating_add(1).max(MIN_PASS));
        Ring {
            window,
            slots: limit.map_or(slots, |l| l.min(slots)),
        }
    }

    /// New positions per pass: all of them when the slots hold the whole stream (`C` =
    /// `limit`), else `C - (W - 1)`.
    fn pass_len(&self, limit: Option<usize>) -> usize {
        if limit.is_some_and(|l| l <= self.slots) {
            usize::MAX
        } else {
            self.slots - (self.window - 1)
        }
    }

    /// The passes of a push of `t` positions: chunk ranges `s0..s1`.
    pub(super) fn passes(&self, t: usize, limit: Option<usize>) -> Vec<Range<usize>> {
        let step = self.pass_len(limit).min(t).max(1);
        (0..t)
            .step_by(step)
            .map(|s0| s0..(s0 + step).min(t))
            .collect()
    }

    /// Makes room for `new[b]` positions in each row: a row whose `stored + new` would pass the
    /// slots keeps only its last `min(stored, W - 1)` positions, moved to slots `0..`.
    ///
    /// # Errors
    /// [`crate::error::Error::Backend`] from the cache.
    pub(super) fn make_room(
        &self,
        cache: &mut KvCache,
        stored: &mut [usize],
        new: &[usize],
    ) -> Result<()> {
        for (row, (s, &n)) in stored.iter_mut().zip(new).enumerate() {
            if *s + n > self.slots {
                let keep = (*s).min(self.window - 1);
                cache.shift(row, *s - keep, keep, self.slots)?;
                *s = keep;
            }
        }
        Ok(())
    }
}

/// New positions of each row inside pass `pass` of a push that brings `new[b]` per row.
pub(super) fn pass_counts(new: &[usize], pass: &Range<usize>) -> Vec<usize> {
    new.iter()
        .map(|&n| n.saturating_sub(pass.start).min(pass.len()))
        .collect()
}

/// Rows `pass` of each row of the chunk `x: [B, t, E]`, as `[B, pass.len(), E]`.
pub(super) fn pass_input(x: &[f32], b: usize, t: usize, e: usize, pass: &Range<usize>) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * pass.len() * e);
    for row in 0..b {
        out.extend_from_slice(&x[(row * t + pass.start) * e..(row * t + pass.end) * e]);
    }
    out
}
