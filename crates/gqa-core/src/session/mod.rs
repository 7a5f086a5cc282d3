//! Streaming inference with a grouped-query KV cache (SPEC section 4): prefill and decode.
//!
//! A [`Session`] holds, per layer, K (after rotary) and V of the positions pushed so far that a
//! later position can still read, for the `NKV` KV heads only: `[B, NKV, C, D]` f32 each,
//! preallocated (`C = maxLen` slots; with a sliding window, see [`ring`]: constant memory for an
//! unbounded stream), so a cached token costs `2 * numLayers * numKvHeads * headDim * 4` bytes
//! (`group = NH/NKV` times less than multi-head attention). [`Session::push`] runs only the new
//! positions of a chunk:
//!
//! - rotary positions continue from each row's number of positions pushed (absolute, per row);
//! - new position `i` of row `b` attends to its cached keys and the new keys up to itself (the
//!   causal, and sliding-window, mask of the full sequence, aligned to the cache's slots);
//! - cache slots at or beyond a row's length are never read, so stale or NaN values there
//!   cannot reach an output (a `-inf` score times a NaN value would still give NaN in a
//!   matmul, hence no masking of unused slots is relied on). The push's
//!   [`crate::mask::Mask`] (`Mask::rows(lengths, totals)`) gives per-row query offsets and
//!   key lengths; the model's engine ([`crate::compute`]) keeps the cache and computes the push:
//!   the fused kernels stop at each row's length, the reference ops multiply with views narrowed
//!   to the used length (when rows differ in length, each row over its own length).
//!
//! After each push the outputs equal [`GqaModel::forward`] over the prefix pushed so far
//! (within float rounding: the cached path multiplies smaller matrices than the full pass).
//!
//! A session belongs to the model it was created from: [`Session::push`] takes that model and
//! checks that its config (and device) match; the cache holds K/V computed with the weights at
//! the time of each push, so changing the weights between pushes leaves the cache stale
//! (call [`Session::reset`]).

mod ring;

use candle_core::Device;

use crate::compute::{KvCache, Push};
use crate::config::{GqaConfig, OutputMode};
use crate::error::{check_f32_buffer, Error, Result};
use crate::model::GqaModel;
use crate::rope::Rotary;

/// A batched KV-cache session: `B` sequences (rows) with independent lengths, of up to `maxLen`
/// positions each (a sliding-window model's session may be unbounded, [`Session::streaming`]).
///
/// Not `Clone`: the cache tensors are written in place (a shallow copy would alias them).
#[derive(Debug)]
pub struct Session {
    cfg: GqaConfig,
    device: Device,
    batch: usize,
    /// Cache slots per row (`maxLen`; for a sliding window, see [`ring`]).
    capacity: usize,
    /// Most positions a row may hold in all (`maxLen`), `None` = unbounded.
    limit: Option<usize>,
    /// The slot policy of a sliding-window model (`None`: slot = position).
    ring: Option<ring::Ring>,
    /// Positions pushed per row so far (absolute: the next position of row `b` is
    /// `lengths[b]`).
    lengths: Vec<usize>,
    /// Cache slots in use per row (`lengths` without a sliding window).
    stored: Vec<usize>,
    /// Set when a windowed push failed after some of its passes had run: the cache then holds
    /// positions `lengths` does not count, so every push fails until [`Session::reset`].
    broken: bool,
    /// Per layer K after rotary and V, `[B, NKV, capacity, D]` f32 each, kept by the model's
    /// engine ([`crate::compute`]).
    cache: KvCache,
    /// Rotary tables for positions `0..capacity` (None without rope/yarn, and for a sliding
    /// window, whose pushes build tables of their span).
    rotary: Option<Rotary>,
    /// `[B*H]`: final hidden state (after `final_norm`) at each row's newest position.
    last: Vec<f32>,
    /// `[B*H]`: running sum over all positions of each row of the final hidden states
    /// (`mean_pool`), in f64.
    sum: Vec<f64>,
    /// The cache's bytes under the memory budget ([`crate::memory`]), released on drop.
    _memory: crate::memory::Reservation,
}

impl Session {
    /// Allocates a session for `batch` rows of up to `max_len` positions on `model`'s device:
    /// per layer K and V caches `[batch, numKvHeads, C, headDim]` f32 (zeros) with `C = max_len`
    /// slots and rotary tables for positions `0..C` (for a sliding-window model
    /// `C = min(max_len, W - 1 + max(W + 1, 64))`, memory that stops growing with `maxLen`, and
    /// rotary tables built per push for its positions, see [`ring`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (`maxLen`) when `max_len = 0`; [`Error::OutOfMemory`] (`kv
    /// cache`) when `2 * numLayers * batch * numKvHeads * C * headDim` f32 values (plus the
    /// rotary tables) do not fit under the memory budget next to what is in use
    /// ([`crate::memory`]), checked before anything is allocated; [`Error::Backend`].
    pub fn new(model: &GqaModel, batch: usize, max_len: usize) -> Result<Self> {
        if max_len == 0 {
            return Err(Error::input(
                "maxLen",
                "a capacity of at least 1 position",
                0,
            ));
        }
        Self::with_limit(model, batch, Some(max_len))
    }

    /// A session of a sliding-window model without a length limit: it streams forever at
    /// constant memory (`W - 1 + max(W + 1, 64)` cache slots per row, see [`ring`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (`maxLen`) when the model has no `slidingWindow` (its cache grows
    /// with every position: give `maxLen`); as [`Session::new`].
    pub fn streaming(model: &GqaModel, batch: usize) -> Result<Self> {
        if model.config().sliding_window.is_none() {
            return Err(Error::input(
                "maxLen",
                "a capacity (only a model with slidingWindow streams without one)",
                "none",
            ));
        }
        Self::with_limit(model, batch, None)
    }

    fn with_limit(model: &GqaModel, batch: usize, limit: Option<usize>) -> Result<Self> {
        let cfg = model.config().clone();
        let ring = cfg.sliding_window.map(|w| ring::Ring::new(w, limit));
        let capacity = match (ring, limit) {
            (Some(r), _) => r.slots,
            (None, Some(l)) => l,
            (None, None) => unreachable!("checked by the callers"),
        };
        let (nkv, d, layers) = (cfg.num_kv_heads, cfg.head_dim(), cfg.num_layers);
        check_f32_buffer("kv cache", &[2, layers, batch, nkv, capacity, d])?;
        let half = d / 2;
        let memory = crate::memory::reserve_f32(
            "kv cache",
            &[
                &[2, layers, batch, nkv, capacity, d],
                &[2, capacity, half],
                &[3, batch, cfg.hidden_size],
            ],
        )?;
        let device = model.device().clone();
        // Tables at the base frequencies (a `dynamic` ropeScaling recomputes them per push once
        // the sequence outgrows its threshold, see `push`).
        let rotary = match ring {
            Some(_) => None,
            None => model
                .rope_plan()
                .map(|p| p.rotary(0, capacity, &device))
                .transpose()?,
        };
        let cache = model.engine().new_cache(model, batch, capacity)?;
        let h = cfg.hidden_size;
        Ok(Session {
            cfg,
            device,
            batch,
            capacity,
            limit,
            ring,
            lengths: vec![0; batch],
            stored: vec![0; batch],
            broken: false,
            cache,
            rotary,
            last: vec![0.0; batch * h],
            sum: vec![0.0; batch * h],
            _memory: memory,
        })
    }

    /// Number of rows `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Cache slots per row: `maxLen`, or for a sliding-window model the ring's slots (see
    /// [`Session::new`]).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Most positions a row may hold (`maxLen`), `None` for an unbounded streaming session.
    pub fn max_len(&self) -> Option<usize> {
        self.limit
    }

    /// Positions pushed so far per row (`B` values; absolute, so the next position of row `b`
    /// is `lengths()[b]`, also after a sliding window has dropped old positions).
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The longest row's number of positions pushed (0 for an empty session).
    pub fn len(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// Whether no row has a cached position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The config of the model this session belongs to.
    pub fn config(&self) -> &GqaConfig {
        &self.cfg
    }

    /// Bytes allocated for the K and V caches of all layers (f32 elements of every cache
    /// tensor times 4) = `B * capacity() * kv_cache_bytes_per_token()`: constant for a
    /// sliding-window session, however long the stream.
    pub fn kv_cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// Cache bytes per cached token and row: `2 * numLayers * numKvHeads * headDim * 4`
    /// (SPEC section 4).
    pub fn kv_cache_bytes_per_token(&self) -> u64 {
        self.cfg.kv_cache_bytes_per_token()
    }

    /// Forgets every cached position (lengths, last outputs and running sums to 0); the
    /// allocation is kept.
    pub fn reset(&mut self) {
        self.lengths.iter_mut().for_each(|l| *l = 0);
        self.stored.iter_mut().for_each(|l| *l = 0);
        self.broken = false;
        self.last.iter_mut().for_each(|x| *x = 0.0);
        self.sum.iter_mut().for_each(|x| *x = 0.0);
    }

    /// Benchmark helper: shortens every row to at most `len` cached positions. The
    /// newest-position output and the `mean_pool` running sum are not rolled back, so the
    /// outputs of the next push are only meaningful in `last_timestep`/`all` mode with at least
    /// one new position per row.
    #[doc(hidden)]
    pub fn truncate(&mut self, len: usize) {
        for (l, s) in self.lengths.iter_mut().zip(self.stored.iter_mut()) {
            // Drop the newest `l - len` positions: the slots of a ring hold the last `s` ones.
            let drop = l.saturating_sub(len);
            *l -= drop;
            *s -= drop.min(*s);
        }
    }

    /// Test helper: fills every unused cache slot (positions `>= len_b` of row `b`, every
    /// layer, K and V) with NaN, to show that unused slots never reach an output.
    ///
    /// # Errors
    /// [`Error::Backend`] from candle.
    #[doc(hidden)]
    pub fn poison_unused(&mut self) -> Result<()> {
        self.cache.poison_unused(&self.stored, self.capacity)
    }

    /// Pushes a chunk of new positions for every row and returns the model's output after it.
    ///
    /// - `chunk`: `x: [B, t, E]` row-major f32, `dims = [B, t, E]` (`B` = the session's batch,
    ///   `E = embedDim`, `t >= 1`).
    /// - `row_lengths`: new valid positions per row (`B` values in `0..=t`, default `t`):
    ///   row `b` appends `x[b, 0..n_b]`; positions `>= n_b` of the chunk are ignored (NaN
    ///   allowed there).
    /// - Returns `(values, dims)`:
    ///   - `all_positions = false`: the output mode at each row's newest position, as
    ///     [`GqaModel::forward`] over the whole prefix would give it: `last_timestep` ->
    ///     `[B, H]` final hidden state at the newest position; `mean_pool` -> `[B, H]` mean
    ///     over all cached positions (a running f64 sum per row); `all` -> `[B, t, H]` final
    ///     hidden states of the new positions (zeros at positions `>= n_b`). A row with no
    ///     cached position gives zeros.
    ///   - `all_positions = true`: `[B, t, H]` where `[b, i]` is the output mode at new
    ///     position `i` (what a full forward over the prefix ending there gives: the hidden
    ///     state for `last_timestep`/`all`, the running mean for `mean_pool`), zeros at
    ///     positions `>= n_b`.
    ///
    /// Everything is validated before the session changes; on error the session is unchanged
    /// and usable.
    ///
    /// # Shapes
    /// - `chunk`: `[B, t, E]` (`t` new positions per row, `row_lengths[b] <= t` of them valid)
    /// - output: `[B, H]` (`last_timestep`, `mean_pool`), `[B, t, H]` (`all`, or `all_positions`)
    /// - cache per layer: K and V `[B, NKV, capacity, D]` f32
    ///
    /// # Errors
    /// [`Error::InvalidInput`]: `model` has another config or device (`model`), `dims` not
    /// `[B, t>=1, embedDim]` (`dims`), `chunk.len() != B*t*E` (`input`), `row_lengths` count or
    /// a value above `t` (`row_lengths[i]`); [`Error::CacheFull`] naming the first row whose
    /// cached plus pushed positions exceed the capacity; [`Error::OutOfMemory`] for score or
    /// FFN buffers over the limit; [`Error::Backend`].
    pub fn push(
        &mut self,
        model: &GqaModel,
        chunk: &[f32],
        dims: &[usize],
        row_lengths: Option<&[usize]>,
        all_positions: bool,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        crate::testing::panic_point("push");
        let _use = model.read_use();
        let (t, ns) = self.check_push(model, chunk, dims, row_lengths)?;
        let cfg = self.cfg.clone();
        let cfg = &cfg;
        let b = self.batch;
        let totals: Vec<usize> = self.lengths.iter().zip(&ns).map(|(l, n)| l + n).collect();
        let lmax = totals.iter().copied().max().unwrap_or(0);
        let h_dim = cfg.hidden_size;
        // The working set of the path the cache's engine takes (score matrices materialised on
        // the reference path).
        // One pass computes at most `t_pass` positions over at most `keys` cached keys.
        let (t_pass, keys) = match &self.ring {
            Some(r) => (r.passes(t, self.limit)[0].len(), lmax.min(self.capacity)),
            None => (t, lmax),
        };
        let _working = crate::memory::reserve_work(
            "push activations",
            model.work_dims(b, t_pass, keys, 0),
            model
                .engine()
                .work_path(self.cache.materialises_scores(), false),
        )?;
        if self.cache.materialises_scores() {
            check_f32_buffer("attention scores", &[b, cfg.num_heads, t_pass, keys])?;
        }
        check_f32_buffer("ffn activations", &[b, t_pass, 4 * h_dim])?;
        // The push's hidden states and outputs, `[B, t, H]` each, whatever its passes.
        let _outputs = crate::memory::reserve_f32("push outputs", &[&[2, b, t, h_dim]])?;
        let per_position = all_positions || cfg.output_mode == OutputMode::All;
        let out_dims = if per_position {
            vec![b, t, h_dim]
        } else {
            vec![b, h_dim]
        };
        if b == 0 {
            return Ok((Vec::new(), out_dims));
        }
        let hidden = if !ns.iter().any(|&c| c > 0) {
            Vec::new()
        } else if self.ring.is_some() {
            self.compute_windowed(model, chunk, t, &ns, lmax)?
        } else {
            self.compute(model, chunk, t, &ns, (&totals, lmax))?
        };

        // Outputs on the host (validated above; nothing below can fail).
        let out = self.outputs(&hidden, t, &ns, &totals, per_position, all_positions);
        if self.ring.is_none() {
            self.stored.clone_from(&totals);
        }
        self.lengths = totals;
        Ok((out, out_dims))
    }

    /// One push into a cache whose slot `s` holds position `s` (no sliding window), rows
    /// reaching `totals` (longest `lmax`): the engine's final hidden states `[B, t, H]` of the new positions.
    fn compute(
        &mut self,
        model: &GqaModel,
        chunk: &[f32],
        t: usize,
        ns: &[usize],
        (totals, lmax): (&[usize], usize),
    ) -> Result<Vec<f32>> {
        // Dynamic NTK (transformers' `dynamic_rope_update`): the new positions are rotated with
        // the frequencies of the sequence length after this push, `max(totals)`, once it exceeds
        // the threshold; keys already cached keep theirs. Only the rows the push reads
        // (`min(lengths)..min(max(lengths)+t, capacity)`) are computed.
        let dynamic = match model.rope_plan() {
            Some(p) if p.dynamic_threshold().is_some_and(|th| lmax > th) => {
                let from = self.lengths.iter().copied().min().unwrap_or(0);
                let end = (self.lengths.iter().copied().max().unwrap_or(0) + t).min(self.capacity);
                Some(p.rotary_rows(lmax, end, from, &self.device)?)
            }
            _ => None,
        };
        // (A cheap clone: candle tensors share their storage.)
        let rot = dynamic.or_else(|| self.rotary.clone());
        let p = Push {
            x: chunk,
            t,
            new: ns,
            cached: &self.lengths,
            totals,
            capacity: self.capacity,
            rotary: rot.as_ref(),
            rope_rows: &self.lengths,
        };
        self.cache.push(model, p)
    }

    /// One push of a sliding-window session ([`ring`]): passes of at most the ring's pass
    /// length, each after making room in the slots, with rotary tables of each row's absolute
    /// positions (dynamic NTK at the push's `max(totals)`, as [`Session::compute`]). Returns the
    /// final hidden states `[B, t, H]` of the new positions. An error in the first pass leaves
    /// the session as it was (making room keeps slots and positions consistent); an error in a
    /// later pass marks it broken (its slots hold positions its lengths do not count): every
    /// push then fails until [`Session::reset`].
    fn compute_windowed(
        &mut self,
        model: &GqaModel,
        chunk: &[f32],
        t: usize,
        ns: &[usize],
        lmax: usize,
    ) -> Result<Vec<f32>> {
        let ring = self.ring.expect("a windowed session");
        let (b, e, h) = (self.batch, self.cfg.embed_dim, self.cfg.hidden_size);
        let mut hidden = crate::memory::try_zeroed_f32("push outputs", b * t * h)?;
        for (i, pass) in ring.passes(t, self.limit).into_iter().enumerate() {
            let new = ring::pass_counts(ns, &pass);
            if !new.iter().any(|&n| n > 0) {
                continue;
            }
            let step = self.windowed_pass(model, &ring, chunk, (t, e), &pass, &new, lmax);
            let hs = match step {
                Ok(hs) => hs,
                Err(err) => {
                    self.broken = i > 0;
                    return Err(err);
                }
            };
            let tp = pass.len();
            for row in 0..b {
                let dst = (row * t + pass.start) * h;
                hidden[dst..dst + tp * h].copy_from_slice(&hs[row * tp * h..(row + 1) * tp * h]);
            }
        }
        Ok(hidden)
    }

    /// Pass `pass` of a windowed push (`new[b]` positions of row `b`): makes room, pushes, and
    /// advances the slots in use (not `lengths`: the push does that once all passes ran).
    #[allow(clippy::too_many_arguments)]
    fn windowed_pass(
        &mut self,
        model: &GqaModel,
        ring: &ring::Ring,
        chunk: &[f32],
        (t, e): (usize, usize),
        pass: &std::ops::Range<usize>,
        new: &[usize],
        lmax: usize,
    ) -> Result<Vec<f32>> {
        ring.make_room(&mut self.cache, &mut self.stored, new)?;
        let tp = pass.len();
        let x = ring::pass_input(chunk, self.batch, t, e, pass);
        // Rotary tables of each row's absolute positions in this pass: rows `b*tp..(b+1)*tp`
        // hold positions `lengths[b] + pass.start + i` (B * tp rows, however far apart the
        // rows' streams are).
        let positions: Vec<usize> = self
            .lengths
            .iter()
            .flat_map(|l| (0..tp).map(move |i| l + pass.start + i))
            .collect();
        let rot = model
            .rope_plan()
            .map(|p| p.rotary_positions(lmax, &positions, &self.device))
            .transpose()?;
        let rope_rows: Vec<usize> = (0..self.batch).map(|row| row * tp).collect();
        let totals: Vec<usize> = self.stored.iter().zip(new).map(|(s, n)| s + n).collect();
        let p = Push {
            x: &x,
            t: tp,
            new,
            cached: &self.stored,
            totals: &totals,
            capacity: self.capacity,
            rotary: rot.as_ref(),
            rope_rows: &rope_rows,
        };
        let hs = self.cache.push(model, p)?;
        self.stored = totals;
        Ok(hs)
    }

    /// Validates a push (see [`Session::push`]'s errors) and returns `t` and the new valid
    /// positions per row.
    fn check_push(
        &self,
        model: &GqaModel,
        chunk: &[f32],
        dims: &[usize],
        row_lengths: Option<&[usize]>,
    ) -> Result<(usize, Vec<usize>)> {
        if self.broken {
            return Err(Error::input(
                "session",
                "a session whose last push completed (call reset(): a push failed part-way)",
                "a broken session",
            ));
        }
        let cfg = self.cfg.clone();
        let cfg = &cfg;
        if model.config() != cfg || !model.device().same_device(&self.device) {
            return Err(Error::input(
                "model",
                "the model this session was created from (same config and device)",
                "a model with a different config or device",
            ));
        }
        if dims.len() != 3 {
            return Err(Error::input(
                "dims",
                "3 dims [batch, chunk, embedDim]",
                format!("{} dims {:?}", dims.len(), dims),
            ));
        }
        let (b, t, e) = (dims[0], dims[1], dims[2]);
        if b != self.batch {
            return Err(Error::input(
                "dims",
                format!("dims[0] = session batch = {}", self.batch),
                format!("{b} (dims {dims:?})"),
            ));
        }
        if e != cfg.embed_dim {
            return Err(Error::input(
                "dims",
                format!("dims[2] = embedDim = {}", cfg.embed_dim),
                format!("{e} (dims {dims:?})"),
            ));
        }
        if t == 0 {
            return Err(Error::input(
                "dims",
                "a chunk length dims[1] >= 1",
                format!("0 (dims {dims:?})"),
            ));
        }
        let n = check_f32_buffer("input", dims)?;
        if chunk.len() != n {
            return Err(Error::input(
                "input",
                format!("B*t*embedDim = {b}*{t}*{e} = {n} values"),
                format!("{} values", chunk.len()),
            ));
        }
        let ns: Vec<usize> = match row_lengths {
            None => vec![t; b],
            Some(ls) => {
                if ls.len() != b {
                    return Err(Error::input(
                        "row_lengths",
                        format!("{b} values (one per row)"),
                        format!("{} values", ls.len()),
                    ));
                }
                for (i, &l) in ls.iter().enumerate() {
                    if l > t {
                        return Err(Error::input(
                            format!("row_lengths[{i}]"),
                            format!("a count of new positions in 0..={t}"),
                            l,
                        ));
                    }
                }
                ls.to_vec()
            }
        };
        crate::input::check_finite("input", chunk, b, t, Some(&ns))?;
        let limit = self.limit.unwrap_or(usize::MAX);
        for (row, (&len, &add)) in self.lengths.iter().zip(&ns).enumerate() {
            if len.saturating_add(add) > limit {
                return Err(Error::CacheFull {
                    what: format!("row {row}"),
                    capacity: limit,
                    cached: len,
                    pushed: add,
                });
            }
        }
        Ok((t, ns))
    }

    /// The push's outputs from the final hidden states `hidden: [B, t, H]` (see
    /// [`Session::push`]), updating the newest-position and running-sum state.
    fn outputs(
        &mut self,
        hidden: &[f32],
        t: usize,
        ns: &[usize],
        totals: &[usize],
        per_position: bool,
        all_positions: bool,
    ) -> Vec<f32> {
        let (b, h_dim) = (self.batch, self.cfg.hidden_size);
        let mode = self.cfg.output_mode;
        let mut out = vec![
            0f32;
            if per_position {
                b * t * h_dim
            } else {
                b * h_dim
            }
        ];
        for row in 0..b {
            let last = &mut self.last[row * h_dim..(row + 1) * h_dim];
            let sum = &mut self.sum[row * h_dim..(row + 1) * h_dim];
            for i in 0..ns[row] {
                let hv = &hidden[(row * t + i) * h_dim..(row * t + i + 1) * h_dim];
                last.copy_from_slice(hv);
                for (s, &x) in sum.iter_mut().zip(hv) {
                    *s += f64::from(x);
                }
                if per_position {
                    let o = &mut out[(row * t + i) * h_dim..(row * t + i + 1) * h_dim];
                    if mode == OutputMode::MeanPool && all_positions {
                        let count = (self.lengths[row] + i + 1) as f64;
                        o.iter_mut()
                            .zip(sum.iter())
                            .for_each(|(o, s)| *o = (s / count) as f32);
                    } else {
                        o.copy_from_slice(hv);
                    }
                }
            }
            if !per_position && totals[row] > 0 {
                let o = &mut out[row * h_dim..(row + 1) * h_dim];
                match mode {
                    OutputMode::MeanPool => o
                        .iter_mut()
                        .zip(sum.iter())
                        .for_each(|(o, s)| *o = (s / totals[row] as f64) as f32),
                    _ => o.copy_from_slice(last),
                }
            }
        }
        out
    }
}
