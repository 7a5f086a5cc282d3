//! The fused CPU inference engine: the whole forward pass of SPEC section 2 on f32 slices, with
//! no candle tensor per op.
//!
//! Per block, on `M = B*T` rows of width `H` held in one reusable buffer:
//! 1. `a = LayerNorm(h)` (one pass per row);
//! 2. `qkv = a [Wq; Wk; Wv]^T + [bq; bk; bv]`: the three projections write column slices of one
//!    `[M, qDim + 2 kvDim]` buffer (filled with the biases first, the GEMM accumulates onto
//!    them), so q, k and v share one row layout and need no transposes;
//! 3. rotary in place on the q and k columns (rotate_half, SPEC section 5);
//! 4. causal GQA attention ([`super::cpu::attention_cpu_strided`], FlashAttention-style online
//!    softmax, no `[T, T]` scores or mask tensor: the mask is the causal limit, per-sequence key
//!    lengths and the optional sliding window, [`crate::mask::Mask`]) reading q, k, v from the
//!    `qkv` buffer through strides, writing `o: [M, qDim]`;
//! 5. `h += o Wo^T + bo` (bias added to `h`, then the GEMM accumulates onto `h`);
//! 6. `h += GELU(LayerNorm(h) Wup^T + bup) Wdown^T + bdown` (bias + exact GELU fused in one pass).
//!
//! With `last_timestep` output the last block computes K and V for every position but the
//! query, `out_proj`, FFN and final LayerNorm only at each sequence's last valid position (what
//! the output can see). Buffers come from a per-thread workspace reused across calls (no page
//! zeroing on every call); the GEMMs and row kernels run on gqa's thread pool
//! ([`super::threads`]).
//!
//! Reference: the candle-ops path ([`super::reference`], forced with `GQA_REFERENCE_KERNELS=1`)
//! computes the same maths op by op; `tests/engine.rs` compares the two.

use std::cell::RefCell;

use super::cpu::{self, AttentionDims, HeadLayout};
use super::gemm;
use crate::error::{Error, Result};
use crate::mask::Mask;

/// `nn.Linear` parameters: `w: [out, in]` row-major, `b: [out]`.
#[derive(Debug, Clone, Copy)]
pub struct LinearRef<'a> {
    /// Weight `[out, in]`.
    pub w: &'a [f32],
    /// Bias `[out]`.
    pub b: &'a [f32],
}

/// LayerNorm parameters `gamma, beta: [W]`.
#[derive(Debug, Clone, Copy)]
pub struct NormRef<'a> {
    /// gamma `[W]`.
    pub g: &'a [f32],
    /// beta `[W]`.
    pub b: &'a [f32],
}

/// One block's parameters (SPEC section 3 names).
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    /// `attn_norm`.
    pub attn_norm: NormRef<'a>,
    /// `attn.q_proj` `[qDim, H]`.
    pub q: LinearRef<'a>,
    /// `attn.k_proj` `[kvDim, H]`.
    pub k: LinearRef<'a>,
    /// `attn.v_proj` `[kvDim, H]`.
    pub v: LinearRef<'a>,
    /// `attn.out_proj` `[H, qDim]`.
    pub out: LinearRef<'a>,
    /// `ffn_norm`.
    pub ffn_norm: NormRef<'a>,
    /// `ffn_up` `[F, H]`.
    pub up: LinearRef<'a>,
    /// `ffn_down` `[H, F]`.
    pub down: LinearRef<'a>,
}

/// The model's parameters as slices.
#[derive(Debug, Clone)]
pub struct WeightsRef<'a> {
    /// `input_projection` `[H, E]` when `E != H`.
    pub input: Option<LinearRef<'a>>,
    /// The blocks in order.
    pub blocks: Vec<BlockRef<'a>>,
    /// `final_norm`.
    pub final_norm: NormRef<'a>,
}

/// Sizes: `E` embedDim, `H` hiddenSize, `NH`, `NKV`, `D` headDim, `F` FFN inner size (`4H`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineDims {
    /// `E`.
    pub embed: usize,
    /// `H`.
    pub hidden: usize,
    /// `NH`.
    pub heads: usize,
    /// `NKV`.
    pub kv_heads: usize,
    /// `D`.
    pub head_dim: usize,
    /// `F`.
    pub ffn: usize,
    /// Sliding window `W` of the attention mask (`slidingWindow`; `None` = full causal).
    pub window: Option<usize>,
}

/// Rotary tables `cos, sin: [P, D/2]` (row `p` for position `p`).
#[derive(Debug, Clone, Copy)]
pub struct RopeRef<'a> {
    /// cos `[P, D/2]`.
    pub cos: &'a [f32],
    /// sin `[P, D/2]`.
    pub sin: &'a [f32],
}

/// Which positions the caller reads (SPEC section 2, output modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineOutput {
    /// `[B, T, H]`, padded positions zero.
    All,
    /// `[B, H]` at position `len_b - 1`.
    Last,
    /// `[B, H]` mean over the valid positions.
    Mean,
}

/// LayerNorm epsilon (PyTorch / Axon default).
const EPS: f32 = 1e-5;
/// Bytes of workspace a thread keeps between calls; larger buffers are freed after the call.
const KEEP_BYTES: usize = 64 << 20;

thread_local! {
    static WORKSPACE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of exactly `len` values from this thread's workspace. Its contents are unspecified
/// (stale values of an earlier call, or zeros): every user writes it fully before reading.
/// The workspace is borrowed only to pick a buffer, never while allocating, and a workspace
/// left borrowed is bypassed: a failed allocation leaves it usable. Growth is fallible
/// ([`crate::memory::try_grow_f32`]): a refusal is [`Error::OutOfMemory`], not an abort.
fn take(len: usize) -> Result<Vec<f32>> {
    let cached = WORKSPACE.with(|w| {
        let mut w = w.try_borrow_mut().ok()?;
        // Smallest cached buffer that is large enough (else a new one, allocated below).
        let best = w
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(w.swap_remove(best))
    });
    let mut v = cached.unwrap_or_default();
    crate::memory::try_grow_f32("engine workspace", &mut v, len)?;
    Ok(v)
}

/// Returns buffers to this thread's workspace (keeping at most [`KEEP_BYTES`] in all).
fn give(bufs: impl IntoIterator<Item = Vec<f32>>) {
    WORKSPACE.with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            return;
        };
        for b in bufs {
            w.push(b);
        }
        w.sort_unstable_by_key(|v| std::cmp::Reverse(v.capacity()));
        let mut kept = 0usize;
        w.retain(|v| {
            kept += v.capacity() * 4;
            kept <= KEEP_BYTES
        });
    });
}

/// Writes `bias` into columns `col..col+bias.len()` of every row of `y` (row stride `ld`).
pub(super) fn fill_bias(y: &mut [f32], ld: usize, col: usize, bias: &[f32]) {
    for row in y.chunks_mut(ld) {
        row[col..col + bias.len()].copy_from_slice(bias);
    }
}

/// Rotary on `n` heads of width `d` starting at column `col` of each row (row stride `ld`);
/// row `r` is at position `pos(r)`.
pub(super) fn rotary(
    x: &mut [f32],
    ld: usize,
    col: usize,
    n: usize,
    d: usize,
    rope: RopeRef<'_>,
    pos: impl Fn(usize) -> usize + Sync + Send,
) -> Result<()> {
    let half = d / 2;
    let rows = x.len() / ld;
    if let Some(maxp) = (0..rows).map(&pos).max() {
        if (maxp + 1) * half > rope.cos.len() || rope.sin.len() != rope.cos.len() {
            return Err(Error::input(
                "rotary positions",
                format!("at most {} positions", rope.cos.len() / half.max(1)),
                maxp + 1,
            ));
        }
    }
    cpu::par_rows_mut(x, ld, 1 << 14, |r0, chunk| {
        for (i, row) in chunk.chunks_mut(ld).enumerate() {
            let p = pos(r0 + i);
            cpu::rotary_row(
                &mut row[col..col + n * d],
                n,
                d,
                &rope.cos[p * half..(p + 1) * half],
                &rope.sin[p * half..(p + 1) * half],
            );
        }
    });
    Ok(())
}

/// Step 1 of SPEC section 2 on `m` rows: `x [m, E] -> h [m, H]` through `input_projection`
/// (bias first, the GEMM accumulates onto it), or a copy of `x` when `E == H`.
fn project_input(w: &WeightsRef<'_>, x: &[f32], m: usize, e: usize, h: usize) -> Result<Vec<f32>> {
    let mut hs = take(m * h)?;
    match &w.input {
        Some(p) => {
            fill_bias(&mut hs, h, 0, p.b);
            gemm::linear(m, h, e, x, e, p.w, &mut hs, h, true)?;
        }
        None => hs.copy_from_slice(x),
    }
    Ok(hs)
}

/// `qkv = a [Wq; Wk; Wv]^T + [bq; bk; bv]` as one `[m, qDim + 2 kvDim]` buffer, with rotary on
/// the q and k columns, row `r` at position `pos(r)`.
fn qkv_projection(
    blk: &BlockRef<'_>,
    a: &[f32],
    m: usize,
    dims: EngineDims,
    rope: Option<RopeRef<'_>>,
    pos: impl Fn(usize) -> usize + Sync + Send + Copy,
) -> Result<Vec<f32>> {
    let EngineDims {
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ..
    } = dims;
    let (qd, kvd) = (nh * d, nkv * d);
    let wd = qd + 2 * kvd;
    let mut qkv = take(m * wd)?;
    fill_bias(&mut qkv, wd, 0, blk.q.b);
    fill_bias(&mut qkv, wd, qd, blk.k.b);
    fill_bias(&mut qkv, wd, qd + kvd, blk.v.b);
    gemm::linear(m, qd, h, a, h, blk.q.w, &mut qkv, wd, true)?;
    gemm::linear(m, kvd, h, a, h, blk.k.w, &mut qkv[qd..], wd, true)?;
    gemm::linear(m, kvd, h, a, h, blk.v.w, &mut qkv[qd + kvd..], wd, true)?;
    if let Some(r) = rope {
        rotary(&mut qkv, wd, 0, nh, d, r, pos)?;
        rotary(&mut qkv, wd, qd, nkv, d, r, pos)?;
    }
    Ok(qkv)
}

/// The forward pass of SPEC section 2 for `x: [B, T, E]` (row-major) under `mask` (offset 0,
/// key lengths = the per-sequence lengths in `1..=T`; padded input positions are ignored, NaN
/// included).
///
/// # Shapes
/// - `x`: `B*T*E` values; `mask`: [`Mask::padded`] over `T` positions
/// - returns `[B, T, H]` ([`EngineOutput::All`], padded positions 0) or `[B, H]`
///
/// # Errors
/// [`Error::Internal`] for parameter slices of the wrong size; [`Error::InvalidInput`] when the
/// rotary tables are too short.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    dims: EngineDims,
    w: &WeightsRef<'_>,
    rope: Option<RopeRef<'_>>,
    x: &[f32],
    b: usize,
    t: usize,
    mask: &Mask,
    out: EngineOutput,
) -> Result<Vec<f32>> {
    let EngineDims {
        embed: e,
        hidden: h,
        head_dim: d,
        ..
    } = dims;
    let m = b * t;
    if x.len() != m * e {
        return Err(Error::Internal(format!(
            "engine: x has {} values, [{b}, {t}, {e}] needs {}",
            x.len(),
            m * e
        )));
    }
    check_weights(dims, w)?;
    if m == 0 {
        return Ok(Vec::new());
    }
    mask.check(b, t)?;
    let len_of = |bi: usize| mask.key_len(bi);
    let scale = 1.0 / (d as f32).sqrt();
    let mut bufs: Vec<Vec<f32>> = Vec::new();

    // Step 1: input projection (or the input itself); padded rows = projection of zeros.
    let mut hs = project_input(w, x, m, e, h)?;
    {
        for bi in 0..b {
            for r in len_of(bi)..t {
                let row = &mut hs[(bi * t + r) * h..(bi * t + r + 1) * h];
                match &w.input {
                    Some(p) => row.copy_from_slice(p.b),
                    None => row.fill(0.0),
                }
            }
        }
    }

    let mut a = take(m * h)?;
    let nblocks = w.blocks.len();
    let pass = Pass {
        dims,
        rope,
        mask,
        b,
        t,
        scale,
    };
    let mut rows_now = m; // rows of `hs` (M, or B after the last-position block)
    for (li, blk) in w.blocks.iter().enumerate() {
        let last_only = out == EngineOutput::Last && li + 1 == nblocks;
        cpu::layer_norm_rows(
            &hs[..m * h],
            blk.attn_norm.g,
            blk.attn_norm.b,
            EPS,
            &mut a[..m * h],
        )?;
        if !last_only {
            full_block(&pass, blk, &mut a, &mut hs, &mut bufs)?;
        } else {
            last_block(&pass, blk, &a, &mut hs, &mut bufs)?;
            rows_now = b;
        }
    }

    // Step 3: final LayerNorm, then the output mode.
    let mut fin = take(rows_now * h)?;
    cpu::layer_norm_rows(
        &hs[..rows_now * h],
        w.final_norm.g,
        w.final_norm.b,
        EPS,
        &mut fin,
    )?;
    let result = output_rows(&pass, out, &fin, rows_now);
    bufs.extend([hs, a, fin]);
    give(bufs);
    Ok(result)
}

/// What every block of one [`forward`] call shares.
struct Pass<'a> {
    dims: EngineDims,
    rope: Option<RopeRef<'a>>,
    mask: &'a Mask,
    b: usize,
    t: usize,
    scale: f32,
}

/// One block over all `M = B*T` rows: attention (q, k, v from the `qkv` buffer through strides)
/// and the FFN, both added to `hs: [M, H]` in place; `a: [M, H]` holds `attn_norm(hs)`.
fn full_block(
    p: &Pass<'_>,
    blk: &BlockRef<'_>,
    a: &mut [f32],
    hs: &mut [f32],
    bufs: &mut Vec<Vec<f32>>,
) -> Result<()> {
    let EngineDims {
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ffn,
        ..
    } = p.dims;
    let (b, t) = (p.b, p.t);
    let (qd, kvd, m) = (nh * d, nkv * d, b * t);
    let wd = qd + 2 * kvd;
    let qkv = qkv_projection(blk, a, m, p.dims, p.rope, |row| row % t)?;
    let mut o = take(m * qd)?;
    let lay = |off: usize| HeadLayout {
        offset: off,
        batch: t * wd,
        head: d,
        row: wd,
    };
    let adims = AttentionDims {
        batch: b,
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: t,
        k_len: t,
        head_dim: d,
    };
    cpu::attention_cpu_strided(
        &qkv,
        lay(0),
        &qkv,
        lay(qd),
        &qkv,
        lay(qd + kvd),
        &mut o,
        HeadLayout::btnd(nh, t, d),
        adims,
        p.scale,
        p.mask,
    )?;
    bufs.push(qkv);
    cpu::bias_add_rows(&mut hs[..m * h], blk.out.b, None)?;
    gemm::linear(m, h, qd, &o, qd, blk.out.w, hs, h, true)?;
    bufs.push(o);
    ffn_residual(blk, &mut hs[..m * h], &mut a[..m * h], m, h, ffn, bufs)
}

/// The last block under `last_timestep` output: K and V for every position, everything else at
/// the last valid position of each sequence only; leaves `[B, H]` in `hs[..B*H]`.
fn last_block(
    p: &Pass<'_>,
    blk: &BlockRef<'_>,
    a: &[f32],
    hs: &mut [f32],
    bufs: &mut Vec<Vec<f32>>,
) -> Result<()> {
    let EngineDims {
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ffn,
        ..
    } = p.dims;
    let (b, t, mask) = (p.b, p.t, p.mask);
    let (qd, kvd, m) = (nh * d, nkv * d, b * t);
    let len_of = |bi: usize| mask.key_len(bi);
    let wd = 2 * kvd;
    let mut kv = take(m * wd)?;
    fill_bias(&mut kv, wd, 0, blk.k.b);
    fill_bias(&mut kv, wd, kvd, blk.v.b);
    gemm::linear(m, kvd, h, a, h, blk.k.w, &mut kv, wd, true)?;
    gemm::linear(m, kvd, h, a, h, blk.v.w, &mut kv[kvd..], wd, true)?;
    let mut al = take(b * h)?;
    let mut hl = take(b * h)?;
    for bi in 0..b {
        let src = (bi * t + len_of(bi) - 1) * h;
        al[bi * h..(bi + 1) * h].copy_from_slice(&a[src..src + h]);
        hl[bi * h..(bi + 1) * h].copy_from_slice(&hs[src..src + h]);
    }
    let mut q = take(b * qd)?;
    fill_bias(&mut q, qd, 0, blk.q.b);
    gemm::linear(b, qd, h, &al, h, blk.q.w, &mut q, qd, true)?;
    if let Some(r) = p.rope {
        rotary(&mut kv, wd, 0, nkv, d, r, |row| row % t)?;
        rotary(&mut q, qd, 0, nh, d, r, |bi| len_of(bi) - 1)?;
    }
    let offsets: Vec<usize> = (0..b).map(|bi| len_of(bi) - 1).collect();
    let mut o = take(b * qd)?;
    let ql = HeadLayout {
        offset: 0,
        batch: qd,
        head: d,
        row: qd,
    };
    let kl = |off: usize| HeadLayout {
        offset: off,
        batch: t * wd,
        head: d,
        row: wd,
    };
    let adims = AttentionDims {
        batch: b,
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: 1,
        k_len: t,
        head_dim: d,
    };
    cpu::attention_cpu_strided(
        &q,
        ql,
        &kv,
        kl(0),
        &kv,
        kl(kvd),
        &mut o,
        ql,
        adims,
        p.scale,
        &mask.with_offsets(&offsets),
    )?;
    cpu::bias_add_rows(&mut hl, blk.out.b, None)?;
    gemm::linear(b, h, qd, &o, qd, blk.out.w, &mut hl, h, true)?;
    let mut al2 = take(b * h)?;
    ffn_residual(blk, &mut hl, &mut al2, b, h, ffn, bufs)?;
    bufs.extend([kv, al, q, o, al2]);
    hs[..b * h].copy_from_slice(&hl);
    bufs.push(hl);
    Ok(())
}

/// The output mode over the final hidden states `fin` (`rows_now` rows: `B*T`, or `B` after a
/// last-position block): `[B, H]` or `[B, T, H]` (padded positions 0).
fn output_rows(p: &Pass<'_>, out: EngineOutput, fin: &[f32], rows_now: usize) -> Vec<f32> {
    let (b, t, h) = (p.b, p.t, p.dims.hidden);
    let m = b * t;
    let len_of = |bi: usize| p.mask.key_len(bi);
    match out {
        EngineOutput::Last if rows_now == b => fin[..b * h].to_vec(),
        EngineOutput::Last => {
            let mut y = vec![0f32; b * h];
            for bi in 0..b {
                let src = (bi * t + len_of(bi) - 1) * h;
                y[bi * h..(bi + 1) * h].copy_from_slice(&fin[src..src + h]);
            }
            y
        }
        EngineOutput::All => {
            let mut y = fin[..m * h].to_vec();
            for bi in 0..b {
                y[(bi * t + len_of(bi)) * h..(bi + 1) * t * h].fill(0.0);
            }
            y
        }
        EngineOutput::Mean => {
            let mut y = vec![0f32; b * h];
            let mut acc = vec![0f64; h];
            for bi in 0..b {
                let l = len_of(bi);
                acc.iter_mut().for_each(|s| *s = 0.0);
                for r in 0..l {
                    for (s, &v) in acc
                        .iter_mut()
                        .zip(&fin[(bi * t + r) * h..(bi * t + r + 1) * h])
                    {
                        *s += f64::from(v);
                    }
                }
                for (o, s) in y[bi * h..(bi + 1) * h].iter_mut().zip(&acc) {
                    *o = (s / l as f64) as f32;
                }
            }
            y
        }
    }
}

/// The rows of the rotary table `rope` (1 without rotary), after checking that `rope_rows` has
/// one value per row and that each row's new positions `rope_rows[b]..+new[b]` lie inside it.
///
/// # Errors
/// [`Error::Internal`] naming the rows that do not fit.
fn check_rope_rows(
    rope: Option<RopeRef<'_>>,
    rope_rows: &[usize],
    new: &[usize],
    d: usize,
) -> Result<usize> {
    let table_rows = rope.map_or(1, |r| r.cos.len() / (d / 2).max(1)).max(1);
    let outside = |(&r0, &n): (&usize, &usize)| n > 0 && r0 + n > table_rows;
    if rope_rows.len() != new.len() || (rope.is_some() && rope_rows.iter().zip(new).any(outside)) {
        return Err(Error::Internal(format!(
            "engine::cached_step: rotary rows {rope_rows:?} for new {new:?} in a table of \
             {table_rows} rows"
        )));
    }
    Ok(table_rows)
}

/// A KV cache held by the engine: per layer, K (after rotary) and V as `[B, NKV, C, D]` f32
/// (`C` = capacity), row-major.
#[derive(Debug)]
pub struct KvCache<'a> {
    /// K per layer.
    pub k: &'a mut [Vec<f32>],
    /// V per layer.
    pub v: &'a mut [Vec<f32>],
    /// `C`, positions per sequence.
    pub capacity: usize,
}

/// One KV-cache step (prefill chunk or decode step, SPEC section 4): `x: [B, t, E]`, row `b`
/// brings `new[b]` new positions (later ones are ignored) after `cached[b]` cached ones. K and V
/// of the new positions are written into `cache` at `cached[b]..cached[b]+new[b]`; position `i`
/// of row `b` attends to the keys `0..=cached[b]+i` that `dims.window` leaves, and is rotated
/// with row `rope_rows[b] + i` of `rope`. Returns the final-LayerNorm hidden states `[B, t, H]`
/// (rows `i >= new[b]` unspecified).
///
/// # Shapes
/// - `x`: `B*t*E`; `new`, `cached`, `rope_rows`: `B` values with `cached[b] + new[b] <= C`
/// - returns `B*t*H` values
///
/// # Errors
/// [`Error::Internal`] for inconsistent sizes (the session checks the user's input first).
#[allow(clippy::too_many_arguments)]
pub fn cached_step(
    dims: EngineDims,
    w: &WeightsRef<'_>,
    rope: Option<RopeRef<'_>>,
    rope_rows: &[usize],
    x: &[f32],
    b: usize,
    t: usize,
    new: &[usize],
    cached: &[usize],
    cache: KvCache<'_>,
) -> Result<Vec<f32>> {
    let EngineDims {
        embed: e,
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ffn,
        ..
    } = dims;
    let (qd, kvd) = (nh * d, nkv * d);
    let m = b * t;
    let cap = cache.capacity;
    let totals: Vec<usize> = cached.iter().zip(new).map(|(c, n)| c + n).collect();
    check_cached_sizes(dims, w, x, (b, t), (new, cached, &totals), &cache)?;
    let table_rows = check_rope_rows(rope, rope_rows, new, d)?;
    check_weights(dims, w)?;
    if m == 0 {
        return Ok(Vec::new());
    }
    let scale = 1.0 / (d as f32).sqrt();
    let mut bufs: Vec<Vec<f32>> = Vec::new();
    // Input (ignored positions zeroed, as the full forward zeroes padding) and projection.
    let mut xin = take(m * e)?;
    xin.copy_from_slice(x);
    for bi in 0..b {
        xin[(bi * t + new[bi]) * e..(bi + 1) * t * e].fill(0.0);
    }
    let mut hs = project_input(w, &xin, m, e, h)?;
    bufs.push(xin);
    let mut a = take(m * h)?;
    let wd = qd + 2 * kvd;
    // Rows past a row's new positions are ignored: clamp them into the table (the valid ones
    // were checked to lie inside it).
    let pos = |row: usize| (rope_rows[row / t] + row % t).min(table_rows - 1);
    let lmax = totals.iter().copied().max().unwrap_or(0);
    let cl = HeadLayout {
        offset: 0,
        batch: nkv * cap * d,
        head: cap * d,
        row: d,
    };
    for (li, blk) in w.blocks.iter().enumerate() {
        cpu::layer_norm_rows(&hs, blk.attn_norm.g, blk.attn_norm.b, EPS, &mut a)?;
        let qkv = qkv_projection(blk, &a, m, dims, rope, pos)?;
        let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
        store_kv(&qkv, (kc, vc), dims, (t, cap), new, cached);
        let mut o = take(m * qd)?;
        let ql = HeadLayout {
            offset: 0,
            batch: t * wd,
            head: d,
            row: wd,
        };
        let adims = AttentionDims {
            batch: b,
            num_heads: nh,
            num_kv_heads: nkv,
            q_len: t,
            k_len: lmax,
            head_dim: d,
        };
        cpu::attention_cpu_strided(
            &qkv,
            ql,
            kc,
            cl,
            vc,
            cl,
            &mut o,
            HeadLayout::btnd(nh, t, d),
            adims,
            scale,
            &Mask::rows(cached, &totals).with_window(dims.window),
        )?;
        bufs.push(qkv);
        cpu::bias_add_rows(&mut hs, blk.out.b, None)?;
        gemm::linear(m, h, qd, &o, qd, blk.out.w, &mut hs, h, true)?;
        bufs.push(o);
        ffn_residual(blk, &mut hs, &mut a, m, h, ffn, &mut bufs)?;
    }
    let mut fin = vec![0f32; m * h];
    cpu::layer_norm_rows(&hs, w.final_norm.g, w.final_norm.b, EPS, &mut fin)?;
    bufs.extend([hs, a]);
    give(bufs);
    Ok(fin)
}

/// [`cached_step`]'s size checks: `x` is `[B, t, E]`, one `new`/`cached` value per row, every
/// total within the capacity, one `[B, NKV, C, D]` cache layer per block.
fn check_cached_sizes(
    dims: EngineDims,
    w: &WeightsRef<'_>,
    x: &[f32],
    (b, t): (usize, usize),
    (new, cached, totals): (&[usize], &[usize], &[usize]),
    cache: &KvCache<'_>,
) -> Result<()> {
    let cap = cache.capacity;
    if x.len() != b * t * dims.embed
        || new.len() != b
        || cached.len() != b
        || totals.iter().any(|&l| l > cap)
        || cache.k.len() != w.blocks.len()
        || cache.v.len() != w.blocks.len()
    {
        return Err(Error::Internal(format!(
            "engine::cached_step: x {} for [{b}, {t}, {}], new {new:?}, cached {cached:?}, capacity {cap}",
            x.len(),
            dims.embed
        )));
    }
    let layer_len = b * dims.kv_heads * cap * dims.head_dim;
    if cache
        .k
        .iter()
        .chain(cache.v.iter())
        .any(|c| c.len() != layer_len)
    {
        return Err(Error::Internal(
            "engine::cached_step: cache layer of the wrong size".into(),
        ));
    }
    check_weights(dims, w)
}

/// Writes K and V of the new positions (`qkv: [B, t, NH*D + 2*NKV*D]`, row `b`'s first `new[b]`
/// positions) into one layer's cache `[B, NKV, C, D]` at positions `cached[b]..cached[b]+new[b]`.
fn store_kv(
    qkv: &[f32],
    (kc, vc): (&mut [f32], &mut [f32]),
    dims: EngineDims,
    (t, cap): (usize, usize),
    new: &[usize],
    cached: &[usize],
) {
    let (nkv, d) = (dims.kv_heads, dims.head_dim);
    let (qd, kvd) = (dims.heads * d, nkv * d);
    let wd = qd + 2 * kvd;
    for (bi, (&n, &c)) in new.iter().zip(cached).enumerate() {
        for i in 0..n {
            let row = &qkv[(bi * t + i) * wd..(bi * t + i + 1) * wd];
            let p = c + i;
            for kh in 0..nkv {
                let dst = ((bi * nkv + kh) * cap + p) * d;
                kc[dst..dst + d].copy_from_slice(&row[qd + kh * d..qd + (kh + 1) * d]);
                vc[dst..dst + d].copy_from_slice(&row[qd + kvd + kh * d..qd + kvd + (kh + 1) * d]);
            }
        }
    }
}

/// `h += GELU(LayerNorm(h) Wup^T + bup) Wdown^T + bdown` on `rows` rows; `a` is scratch `[rows, H]`.
fn ffn_residual(
    blk: &BlockRef<'_>,
    hs: &mut [f32],
    a: &mut [f32],
    rows: usize,
    h: usize,
    ffn: usize,
    bufs: &mut Vec<Vec<f32>>,
) -> Result<()> {
    cpu::layer_norm_rows(hs, blk.ffn_norm.g, blk.ffn_norm.b, EPS, a)?;
    let mut u = take(rows * ffn)?;
    gemm::linear(rows, ffn, h, a, h, blk.up.w, &mut u, ffn, false)?;
    cpu::bias_gelu_rows(&mut u, blk.up.b)?;
    cpu::bias_add_rows(hs, blk.down.b, None)?;
    gemm::linear(rows, h, ffn, &u, ffn, blk.down.w, hs, h, true)?;
    bufs.push(u);
    Ok(())
}

fn check_weights(dims: EngineDims, w: &WeightsRef<'_>) -> Result<()> {
    let EngineDims {
        embed: e,
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ffn,
        ..
    } = dims;
    let (qd, kvd) = (nh * d, nkv * d);
    let bad = |what: &str, want: usize, got: usize| {
        Error::Internal(format!("engine: {what} has {got} values, expected {want}"))
    };
    let lin = |what: &str, l: &LinearRef<'_>, out: usize, inp: usize| -> Result<()> {
        if l.w.len() != out * inp {
            return Err(bad(&format!("{what}.weight"), out * inp, l.w.len()));
        }
        if l.b.len() != out {
            return Err(bad(&format!("{what}.bias"), out, l.b.len()));
        }
        Ok(())
    };
    let norm = |what: &str, n: &NormRef<'_>| -> Result<()> {
        if n.g.len() != h || n.b.len() != h {
            return Err(bad(what, h, n.g.len().min(n.b.len())));
        }
        Ok(())
    };
    if nkv == 0 || nh % nkv != 0 {
        return Err(Error::Internal(format!(
            "engine: {nh} heads / {nkv} KV heads"
        )));
    }
    match &w.input {
        Some(p) => lin("input_projection", p, h, e)?,
        None if e != h => {
            return Err(Error::Internal(format!(
                "engine: no input projection for E {e} != H {h}"
            )))
        }
        None => {}
    }
    for blk in &w.blocks {
        norm("attn_norm", &blk.attn_norm)?;
        lin("q_proj", &blk.q, qd, h)?;
        lin("k_proj", &blk.k, kvd, h)?;
        lin("v_proj", &blk.v, kvd, h)?;
        lin("out_proj", &blk.out, h, qd)?;
        norm("ffn_norm", &blk.ffn_norm)?;
        lin("ffn_up", &blk.up, ffn, h)?;
        lin("ffn_down", &blk.down, h, ffn)?;
    }
    norm("final_norm", &w.final_norm)
}
