//! The fused CPU training step: forward with saved activations, loss, and the backward pass of
//! SPEC section 2 plus a task head, on f32 slices, with no candle op and no autograd graph.
//!
//! Forward per block (`M = B*T` rows), saving what the backward pass reads:
//! `h_in`, LayerNorm statistics and output `a1`, the projection buffer `qkv` (after rotary), the
//! attention output `o` and its log-sum-exp, the dropout masks, `h_mid`, `a2`, the FFN
//! pre-activation `u` and `GELU(u)`. The backward pass runs the blocks in reverse:
//!
//! ```text
//! dy2 = dh * mask2;  dWdown += dy2^T g;  dg = dy2 Wdown;  du = dg * GELU'(u);  dWup += du^T a2
//! dh += LayerNorm'(du Wup);  dy1 = dh * mask1;  dWo += dy1^T o;  do = dy1 Wo
//! dq, dk, dv = attention'(do)  (flash-style, [`super::backward::attention_backward`]);
//! rotary' (rotation by -angle);  dWq,k,v += d{q,k,v}^T a1;  dh += LayerNorm'(dq Wq + dk Wk + dv Wv)
//! ```
//!
//! Every product goes through the `gemm` crate ([`super::gemm`]); every reduction over rows runs
//! in fixed chunks, so gradients do not depend on the thread count. Buffers live in a
//! [`TrainWorkspace`] the trainer keeps between steps (no page faults after the first step).
//!
//! Reference: candle's autograd over the differentiable forward ([`crate::GqaModel::forward_t`]),
//! still used for other devices and with `GQA_REFERENCE_KERNELS=1`; `tests/train_fused.rs`
//! compares the two, and `tests/fixtures.rs` compares both with PyTorch's autograd.

use super::backward::{self, AttnShape};
use super::engine::{
    fill_bias, rotary, BlockRef, EngineDims, EngineOutput, LinearRef, RopeRef, WeightsRef,
};
use super::{cpu, gemm};
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::layout::BlockModule;
use crate::mask::Mask;
use crate::train::loss::{check_targets, label_weight_total, smoothed_targets};

/// LayerNorm epsilon (PyTorch / Axon default).
const EPS: f32 = 1e-5;

/// Parameters per block, and each module's first parameter within a block (canonical order,
/// the table of [`crate::layout`]).
const PER_BLOCK: usize = crate::layout::PARAMS_PER_BLOCK;
const ATTN_NORM: usize = BlockModule::AttnNorm.first_param();
const Q: usize = BlockModule::QProj.first_param();
const K: usize = BlockModule::KProj.first_param();
const V: usize = BlockModule::VProj.first_param();
const OUT: usize = BlockModule::OutProj.first_param();
const FFN_NORM: usize = BlockModule::FfnNorm.first_param();
const UP: usize = BlockModule::FfnUp.first_param();
const DOWN: usize = BlockModule::FfnDown.first_param();

/// What the head's output is scored against.
#[derive(Debug, Clone, Copy)]
pub enum Objective<'a> {
    /// Softmax cross-entropy with optional class weights and label smoothing (PyTorch
    /// `F.cross_entropy(weight=, label_smoothing=)`).
    Classes {
        /// Class index per sequence, `[B]`.
        labels: &'a [u32],
        /// Per-class weights `[K]`.
        weights: Option<&'a [f32]>,
        /// Label smoothing `eps` in `[0, 1)` (0: plain cross-entropy).
        smoothing: f32,
    },
    /// Mean squared error over every element (`F.mse_loss`).
    Mse {
        /// Targets `[B, K]`.
        targets: &'a [f32],
    },
    /// Huber loss, mean over every element (`F.huber_loss(delta=)`).
    Huber {
        /// Targets `[B, K]`.
        targets: &'a [f32],
        /// `delta > 0`.
        delta: f32,
    },
}

/// What a training step's forward pass scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    /// The batch loss.
    pub loss: f64,
    /// Rows whose argmax equals the label (classification), else 0.
    pub correct: usize,
}

/// Saved activations of one block.
#[derive(Debug, Default)]
struct LayerSaves {
    h_in: Vec<f32>,
    st1: Vec<f32>,
    a1: Vec<f32>,
    qkv: Vec<f32>,
    lse: Vec<f32>,
    o: Vec<f32>,
    /// `o` at the last rows (the compacted last block).
    oc: Vec<f32>,
    mask1: Vec<f32>,
    h_mid: Vec<f32>,
    st2: Vec<f32>,
    a2: Vec<f32>,
    u: Vec<f32>,
    g: Vec<f32>,
    mask2: Vec<f32>,
    dropout: bool,
}

/// Buffers of the fused training step, kept between steps (sized on use).
#[derive(Debug, Default)]
pub struct TrainWorkspace {
    layers: Vec<LayerSaves>,
    x0: Vec<f32>,
    h: Vec<f32>,
    fin: Vec<f32>,
    fin_st: Vec<f32>,
    hout: Vec<f32>,
    logits: Vec<f32>,
    dh: Vec<f32>,
    dfin: Vec<f32>,
    neg_sin: Vec<f32>,
    sc: Scratch,
}

impl TrainWorkspace {
    /// Saves for `nl` blocks, and rotary's backward tables: the inverse rotation is rotary with
    /// sin negated.
    fn prepare(&mut self, nl: usize, rope: Option<RopeRef<'_>>) {
        if self.layers.len() < nl {
            self.layers.resize_with(nl, LayerSaves::default);
        }
        if let Some(r) = rope {
            let ns = sized(&mut self.neg_sin, r.sin.len());
            for (o, &s) in ns.iter_mut().zip(r.sin) {
                *o = -s;
            }
        }
    }
}

/// `v` resized to exactly `n` values (contents unspecified: callers write before reading).
fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// `v` resized to `n` zeros.
fn zeroed(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.clear();
    v.resize(n, 0.0);
    &mut v[..]
}

/// Two distinct gradient buffers at `i` and `i + 1` (weight and bias, gamma and beta).
fn pair(g: &mut [Vec<f32>], i: usize) -> (&mut [f32], &mut [f32]) {
    let (a, b) = g[i..i + 2].split_at_mut(1);
    (&mut a[0][..], &mut b[0][..])
}

/// `y (+)= x W^T + b` with the bias written first (`accumulate = false`) or added.
fn linear_bias(
    m: usize,
    lin: LinearRef<'_>,
    x: &[f32],
    inp: usize,
    y: &mut [f32],
    ldy: usize,
    col: usize,
) -> Result<()> {
    fill_bias(&mut y[..m * ldy], ldy, col, lin.b);
    gemm::linear(m, lin.b.len(), inp, x, inp, lin.w, &mut y[col..], ldy, true)
}

/// `h += mask * (x W^T + b)` (dropout on a dense layer's output before a residual add), or
/// `h += x W^T + b` without a mask.
#[allow(clippy::too_many_arguments)]
fn residual_linear(
    m: usize,
    lin: LinearRef<'_>,
    x: &[f32],
    inp: usize,
    h: &mut [f32],
    mask: Option<&[f32]>,
    tmp: &mut Vec<f32>,
) -> Result<()> {
    let out = lin.b.len();
    match mask {
        None => {
            cpu::bias_add_rows(h, lin.b, None)?;
            gemm::linear(m, out, inp, x, inp, lin.w, h, out, true)
        }
        Some(mask) => {
            let y = sized(tmp, m * out);
            linear_bias(m, lin, x, inp, y, out, 0)?;
            for ((hv, &yv), &mv) in h.iter_mut().zip(y.iter()).zip(mask) {
                *hv += yv * mv;
            }
            Ok(())
        }
    }
}

/// The sizes and shared inputs of one training step, derived once from [`EngineDims`], the batch
/// and the mask.
#[derive(Clone, Copy)]
struct Geom<'a> {
    b: usize,
    t: usize,
    e: usize,
    h: usize,
    nh: usize,
    nkv: usize,
    d: usize,
    ffn: usize,
    /// `NH*D`, `NKV*D` and the projection buffer's row width `NH*D + 2*NKV*D`.
    qd: usize,
    kvd: usize,
    wd: usize,
    /// `M = B*T` rows.
    m: usize,
    nl: usize,
    /// Head outputs `K`.
    kout: usize,
    /// Index of the first block parameter (after `input_proj`'s two, when present).
    first: usize,
    out: EngineOutput,
    scale: f32,
    sh: AttnShape<'a>,
    rope: Option<RopeRef<'a>>,
    /// Rotary's backward: the rotation by `-angle` (`sin` negated).
    rope_back: Option<RopeRef<'a>>,
    /// Row `b*T + L_b - 1` of each sequence.
    last_rows: &'a [usize],
}

/// What [`Geom::new`] reads besides the batch: sizes, weights, head, rotary tables and their
/// negated sines, and the output mode.
#[derive(Clone, Copy)]
struct StepCtx<'a> {
    dims: EngineDims,
    w: &'a WeightsRef<'a>,
    head: LinearRef<'a>,
    rope: Option<RopeRef<'a>>,
    neg_sin: &'a [f32],
    out: EngineOutput,
}

impl<'a> Geom<'a> {
    /// The step's sizes for a batch of `b` sequences of `t` positions under `mask`.
    fn new(c: StepCtx<'a>, b: usize, t: usize, mask: &'a Mask, last_rows: &'a [usize]) -> Self {
        let EngineDims {
            embed: e,
            hidden: h,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
            ffn,
            ..
        } = c.dims;
        Geom {
            b,
            t,
            e,
            h,
            nh,
            nkv,
            d,
            ffn,
            qd: nh * d,
            kvd: nkv * d,
            wd: nh * d + 2 * nkv * d,
            m: b * t,
            nl: c.w.blocks.len(),
            kout: c.head.b.len(),
            first: usize::from(c.w.input.is_some()) * 2,
            out: c.out,
            scale: 1.0 / (d as f32).sqrt(),
            sh: AttnShape {
                batch: b,
                seq: t,
                heads: nh,
                kv_heads: nkv,
                head_dim: d,
                mask,
                last_only: false,
            },
            rope: c.rope,
            rope_back: c.rope.map(|r| RopeRef {
                cos: r.cos,
                sin: c.neg_sin,
            }),
            last_rows,
        }
    }
    /// Under `last_timestep`, the last block computes everything after K and V on the last rows
    /// alone: `Some(rows)` for that block, `None` otherwise.
    fn sel(&self, li: usize) -> Option<&'a [usize]> {
        (self.out == EngineOutput::Last && li + 1 == self.nl).then_some(self.last_rows)
    }

    /// Valid positions `L_b` of sequence `bi`.
    fn len_of(&self, bi: usize) -> usize {
        self.sh.mask.key_len(bi)
    }
}

/// Parameters of the model plus head: `input_proj` (0 or 2), the blocks, the final LayerNorm and
/// the head (2 each).
fn param_count(w: &WeightsRef<'_>) -> usize {
    usize::from(w.input.is_some()) * 2 + w.blocks.len() * PER_BLOCK + 4
}

/// The step's preconditions (see [`train_step`]'s errors).
fn check_step(
    dims: EngineDims,
    w: &WeightsRef<'_>,
    head: LinearRef<'_>,
    x: &[f32],
    (b, t): (usize, usize),
    out: EngineOutput,
    grads: &[Vec<f32>],
) -> Result<()> {
    let EngineDims {
        embed: e,
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ffn,
        ..
    } = dims;
    let (qd, wd) = (nh * d, nh * d + 2 * nkv * d);
    let (m, nl, kout, n_params) = (b * t, w.blocks.len(), head.b.len(), param_count(w));
    if out == EngineOutput::All {
        return Err(Error::option(
            "outputMode",
            "\"last_timestep\" or \"mean_pool\" when a head is attached",
            "\"all\"",
        ));
    }
    if x.len() != m * e
        || b == 0
        || t == 0
        || nl == 0
        || head.w.len() != kout * h
        || grads.len() != n_params
    {
        return Err(Error::Internal(format!("train_step: x {} for [{b}, {t}, {e}], head {}x{h}, {} gradient buffers for {n_params} parameters", x.len(), head.w.len(), grads.len())));
    }
    crate::error::check_f32_buffer(
        "training activations",
        &[nl.max(1), m, 6 * h + wd + 2 * qd + 2 * ffn],
    )?;
    Ok(())
}

/// One training step's forward and backward pass: the head's loss on `x: [B, T, E]` and the
/// gradient of every parameter, added onto `grads` (canonical order, SPEC section 3, then
/// `head.weight`, `head.bias`; each buffer the size of its parameter; callers zero them).
///
/// `out` is the model's output mode ([`EngineOutput::Last`] or [`EngineOutput::Mean`]: a head
/// reads `[B, H]`). `dropout`: masks drawn in the order and with the values of the candle path
/// (per block: after attention, then after the FFN, each over `[B, T, H]`). Padded positions
/// (`lengths`) are zeroed on input and get no gradient.
///
/// # Shapes
/// - `x`: `B*T*E`; `lengths`: `B` values in `1..=T`; `head.w`: `[K, H]`
/// - objective: labels `[B]` or targets `[B, K]`
///
/// # Errors
/// [`Error::InvalidInput`] naming `labels[i]` (a class `>= K`), `labels`/`targets` (wrong
/// count) or `classWeights` (zero total weight in the batch); [`Error::InvalidOption`] naming
/// `outputMode` for `All`; [`Error::OutOfMemory`] for activations over the buffer limit;
/// [`Error::Internal`] for inconsistent parameter sizes.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    dims: EngineDims,
    w: &WeightsRef<'_>,
    head: LinearRef<'_>,
    rope: Option<RopeRef<'_>>,
    x: &[f32],
    b: usize,
    t: usize,
    lengths: Option<&[usize]>,
    out: EngineOutput,
    objective: Objective<'_>,
    mut dropout: Option<&mut Dropout>,
    grads: &mut [Vec<f32>],
    ws: &mut TrainWorkspace,
) -> Result<StepLoss> {
    check_step(dims, w, head, x, (b, t), out, grads)?;
    let mask = Mask::padded(t, lengths).with_window(dims.window);
    let last_rows: Vec<usize> = (0..b).map(|bi| bi * t + mask.key_len(bi) - 1).collect();
    ws.prepare(w.blocks.len(), rope);
    let (h, e) = (dims.hidden, dims.embed);
    let neg_sin = &ws.neg_sin[..];
    let ctx = StepCtx {
        dims,
        w,
        head,
        rope,
        neg_sin,
        out,
    };
    let g = Geom::new(ctx, b, t, &mask, &last_rows);

    // ---- forward ------------------------------------------------------------------------
    // Under `last_timestep` output the last block needs K and V at every position but
    // everything else only at each sequence's last valid row (`last_rows`): its query,
    // attention, out_proj, FFN and the final LayerNorm run on those B rows alone, compacted.
    embed(&g, w, x, &mut ws.x0, &mut ws.h)?;
    let sc = &mut ws.sc;
    for (li, (blk, s)) in w.blocks.iter().zip(ws.layers.iter_mut()).enumerate() {
        let sel = g.sel(li);
        attention_half_forward(&g, sel, blk, s, &mut ws.h, sc, dropout.as_deref_mut())?;
        let mr = sel.map_or(g.m, <[usize]>::len);
        let hs = &mut ws.h[..mr * h];
        ffn_half_forward(&g, sel, blk, s, hs, &mut sc.tmp, dropout.as_deref_mut())?;
    }
    output_forward(&g, w, &ws.h, &mut ws.fin, &mut ws.fin_st, &mut ws.hout)?;
    let logits = sized(&mut ws.logits, b * g.kout);
    linear_bias(b, head, &ws.hout, h, logits, g.kout, 0)?;

    // ---- loss and its gradient (written over the logits) -----------------------------------
    let result = loss_and_grad(logits, b, g.kout, objective)?;

    // ---- backward -----------------------------------------------------------------------
    let saved = (&ws.logits[..], &ws.hout[..], &ws.h[..], &ws.fin_st[..]);
    output_backward(&g, w, head, saved, (&mut ws.dfin, &mut ws.dh), sc, grads)?;
    for (li, (blk, s)) in w.blocks.iter().zip(ws.layers.iter()).enumerate().rev() {
        block_backward(&g, li, blk, s, &mut ws.dh, sc, grads)?;
    }
    if w.input.is_some() {
        let (gw, gb) = pair(grads, 0);
        gemm::linear_dw(g.m, h, e, &ws.dh, h, &ws.x0, e, gw)?;
        backward::column_sums(&ws.dh, g.m, h, 0, gb)?;
    }
    Ok(result)
}

/// `x0 = x` with padded positions zeroed, and the first hidden state `h = input_proj(x0)` (or
/// `x0` itself without `input_proj`).
fn embed(
    g: &Geom<'_>,
    w: &WeightsRef<'_>,
    x: &[f32],
    x0: &mut Vec<f32>,
    hs: &mut Vec<f32>,
) -> Result<()> {
    let (t, e, m, h) = (g.t, g.e, g.m, g.h);
    let x0 = sized(x0, m * e);
    x0.copy_from_slice(x);
    for bi in 0..g.b {
        x0[(bi * t + g.len_of(bi)) * e..(bi + 1) * t * e].fill(0.0);
    }
    let hs = sized(hs, m * h);
    match &w.input {
        Some(p) => linear_bias(m, *p, x0, e, hs, h, 0),
        None => {
            hs.copy_from_slice(x0);
            Ok(())
        }
    }
}

/// The attention half of a block, saving what its backward reads:
/// `h = h + mask1 * out_proj(attention(LayerNorm(h)))`, with `h` compacted to the last rows
/// when `sel` is `Some`.
#[allow(clippy::too_many_arguments)]
fn attention_half_forward(
    g: &Geom<'_>,
    sel: Option<&[usize]>,
    blk: &BlockRef<'_>,
    s: &mut LayerSaves,
    hs: &mut [f32],
    sc: &mut Scratch,
    dropout: Option<&mut Dropout>,
) -> Result<()> {
    let (m, h, qd) = (g.m, g.h, g.qd);
    let mr = sel.map_or(m, <[usize]>::len);
    sized(&mut s.h_in, m * h).copy_from_slice(hs);
    backward::layer_norm_forward(
        hs,
        blk.attn_norm.g,
        blk.attn_norm.b,
        EPS,
        sized(&mut s.a1, m * h),
        sized(&mut s.st1, 2 * m),
    )?;
    project_qkv(g, sel, blk, s, &mut sc.tmp, &mut sc.dqk)?;
    let shl = AttnShape {
        last_only: sel.is_some(),
        ..g.sh
    };
    backward::attention_forward(
        &s.qkv,
        shl,
        g.scale,
        sized(&mut s.o, m * qd),
        sized(&mut s.lse, m * g.nh),
    )?;
    s.dropout = match dropout {
        Some(dr) => dr.fill_mask(sized(&mut s.mask1, m * h)),
        None => false,
    };
    if let Some(rows) = sel {
        compact(hs, h, rows);
        if s.dropout {
            compact(&mut s.mask1, h, rows);
        }
        gather(&s.o, qd, rows, &mut s.oc);
    }
    let o_post: &[f32] = if sel.is_some() { &s.oc } else { &s.o };
    residual_linear(
        mr,
        blk.out,
        o_post,
        qd,
        &mut hs[..mr * h],
        s.dropout.then(|| &s.mask1[..mr * h]),
        &mut sc.tmp,
    )
}

/// `s.qkv = [q | k | v]` from `s.a1`, rotated when rotary is on: K and V at every row, Q at every
/// row or (`sel`) at the last rows alone.
fn project_qkv(
    g: &Geom<'_>,
    sel: Option<&[usize]>,
    blk: &BlockRef<'_>,
    s: &mut LayerSaves,
    tmp: &mut Vec<f32>,
    dqk: &mut Vec<f32>,
) -> Result<()> {
    let (m, h, t, wd, qd, kvd, d) = (g.m, g.h, g.t, g.wd, g.qd, g.kvd, g.d);
    let qkv = sized(&mut s.qkv, m * wd);
    linear_bias(m, blk.k, &s.a1, h, qkv, wd, qd)?;
    linear_bias(m, blk.v, &s.a1, h, qkv, wd, qd + kvd)?;
    if let Some(r) = g.rope {
        rotary(qkv, wd, qd, g.nkv, d, r, |row| row % t)?;
    }
    match sel {
        None => {
            linear_bias(m, blk.q, &s.a1, h, qkv, wd, 0)?;
            if let Some(r) = g.rope {
                rotary(qkv, wd, 0, g.nh, d, r, |row| row % t)?;
            }
        }
        Some(rows) => {
            let mr = rows.len();
            let al = gather(&s.a1, h, rows, tmp);
            let ql = sized(dqk, mr * qd);
            linear_bias(mr, blk.q, al, h, ql, qd, 0)?;
            if let Some(r) = g.rope {
                rotary(ql, qd, 0, g.nh, d, r, |i| rows[i] % t)?;
            }
            for (i, &r) in rows.iter().enumerate() {
                qkv[r * wd..r * wd + qd].copy_from_slice(&ql[i * qd..(i + 1) * qd]);
            }
        }
    }
    Ok(())
}

/// The FFN half of a block on `mr` rows: `h = h + mask2 * down(GELU(up(LayerNorm(h))))`.
fn ffn_half_forward(
    g: &Geom<'_>,
    sel: Option<&[usize]>,
    blk: &BlockRef<'_>,
    s: &mut LayerSaves,
    hs: &mut [f32],
    tmp: &mut Vec<f32>,
    dropout: Option<&mut Dropout>,
) -> Result<()> {
    let (h, ffn) = (g.h, g.ffn);
    let mr = sel.map_or(g.m, <[usize]>::len);
    sized(&mut s.h_mid, mr * h).copy_from_slice(hs);
    backward::layer_norm_forward(
        hs,
        blk.ffn_norm.g,
        blk.ffn_norm.b,
        EPS,
        sized(&mut s.a2, mr * h),
        sized(&mut s.st2, 2 * mr),
    )?;
    let u = sized(&mut s.u, mr * ffn);
    gemm::linear(mr, ffn, h, &s.a2, h, blk.up.w, u, ffn, false)?;
    backward::bias_gelu_save(u, blk.up.b, sized(&mut s.g, mr * ffn))?;
    if s.dropout {
        if let Some(dr) = dropout {
            dr.fill_mask(sized(&mut s.mask2, g.m * h));
        }
        if let Some(rows) = sel {
            compact(&mut s.mask2, h, rows);
        }
    }
    residual_linear(
        mr,
        blk.down,
        &s.g,
        ffn,
        hs,
        s.dropout.then(|| &s.mask2[..mr * h]),
        tmp,
    )
}

/// The final LayerNorm on the rows the output reads (already compacted to `B` rows under
/// `last_timestep`), then the output mode: `hout: [B, H]`.
fn output_forward(
    g: &Geom<'_>,
    w: &WeightsRef<'_>,
    hs: &[f32],
    fin: &mut Vec<f32>,
    fin_st: &mut Vec<f32>,
    hout: &mut Vec<f32>,
) -> Result<()> {
    let (b, t, h) = (g.b, g.t, g.h);
    let nr = if g.out == EngineOutput::Last { b } else { g.m };
    backward::layer_norm_forward(
        &hs[..nr * h],
        w.final_norm.g,
        w.final_norm.b,
        EPS,
        sized(fin, nr * h),
        sized(fin_st, 2 * nr),
    )?;
    let hout = sized(hout, b * h);
    if g.out == EngineOutput::Last {
        hout.copy_from_slice(fin);
        return Ok(());
    }
    for bi in 0..b {
        let l = g.len_of(bi);
        let o = &mut hout[bi * h..(bi + 1) * h];
        o.fill(0.0);
        for r in 0..l {
            for (a, &v) in o
                .iter_mut()
                .zip(&fin[(bi * t + r) * h..(bi * t + r + 1) * h])
            {
                *a += v;
            }
        }
        let inv = 1.0 / l as f32;
        o.iter_mut().for_each(|v| *v *= inv);
    }
    Ok(())
}

/// Scratch buffers of one step (contents never carried from one use to the next).
#[derive(Debug, Default)]
struct Scratch {
    dy: Vec<f32>,
    da: Vec<f32>,
    dqkv: Vec<f32>,
    dqk: Vec<f32>,
    dffn: Vec<f32>,
    tmp: Vec<f32>,
}

/// The head's and the final LayerNorm's gradients, and `dh` (`[B, H]` compacted last rows under
/// `last_timestep`, else `[M, H]`) for the last block. `dlogits`/`hout`: the head's input and
/// output gradient; `hs`/`fin_st`: the final LayerNorm's input and statistics.
#[allow(clippy::too_many_arguments)]
fn output_backward(
    g: &Geom<'_>,
    w: &WeightsRef<'_>,
    head: LinearRef<'_>,
    (dlogits, hout, hs, fin_st): (&[f32], &[f32], &[f32], &[f32]),
    (dfin, dh): (&mut Vec<f32>, &mut Vec<f32>),
    sc: &mut Scratch,
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let (b, t, h, kout) = (g.b, g.t, g.h, g.kout);
    let n_params = param_count(w);
    let nr = if g.out == EngineOutput::Last { b } else { g.m };
    {
        let (gw, gb) = pair(grads, n_params - 2);
        gemm::linear_dw(b, kout, h, dlogits, kout, hout, h, gw)?;
        backward::column_sums(dlogits, b, kout, 0, gb)?;
    }
    // dhout = dlogits W_head, then back through the output mode into the final LayerNorm rows.
    let dfin = zeroed(dfin, nr * h);
    if g.out == EngineOutput::Last {
        gemm::linear_dx(b, kout, h, dlogits, kout, head.w, dfin, h, false)?;
    } else {
        let dhout = sized(&mut sc.dy, b * h);
        gemm::linear_dx(b, kout, h, dlogits, kout, head.w, dhout, h, false)?;
        for bi in 0..b {
            let l = g.len_of(bi);
            let inv = 1.0 / l as f32;
            for r in 0..l {
                for (o, &gv) in dfin[(bi * t + r) * h..(bi * t + r + 1) * h]
                    .iter_mut()
                    .zip(&dhout[bi * h..(bi + 1) * h])
                {
                    *o = gv * inv;
                }
            }
        }
    }
    let dh = zeroed(dh, g.m * h);
    let (gg, gb) = pair(grads, n_params - 4);
    backward::layer_norm_backward(
        dfin,
        &hs[..nr * h],
        fin_st,
        w.final_norm.g,
        &mut dh[..nr * h],
        gg,
        gb,
    )
}

/// One block's backward pass: its parameters' gradients added onto `grads`, and `dh` replaced by
/// the gradient at the block's input (`[M, H]`).
fn block_backward(
    g: &Geom<'_>,
    li: usize,
    blk: &BlockRef<'_>,
    s: &LayerSaves,
    dh: &mut [f32],
    sc: &mut Scratch,
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let gi = g.first + li * PER_BLOCK;
    let sel = g.sel(li);
    let mr = sel.map_or(g.m, <[usize]>::len);
    ffn_half_backward(
        g,
        mr,
        blk,
        s,
        &mut dh[..mr * g.h],
        sc,
        &mut grads[gi..gi + PER_BLOCK],
    )?;
    attention_half_backward(g, sel, blk, s, dh, sc, &mut grads[gi..gi + PER_BLOCK])
}

/// The FFN half's backward on `mr` rows: `h_out = h_mid + mask2 * (g Wdown^T + bdown)`, `dhp`
/// (the gradient at `h_out`) gets the LayerNorm path added. `grads`: the block's own buffers.
fn ffn_half_backward(
    g: &Geom<'_>,
    mr: usize,
    blk: &BlockRef<'_>,
    s: &LayerSaves,
    dhp: &mut [f32],
    sc: &mut Scratch,
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let (h, ffn) = (g.h, g.ffn);
    let dy = sized(&mut sc.dy, mr * h);
    dy.copy_from_slice(dhp);
    if s.dropout {
        dy.iter_mut().zip(&s.mask2).for_each(|(a, &k)| *a *= k);
    }
    {
        let (gw, gb) = pair(grads, DOWN);
        gemm::linear_dw(mr, h, ffn, dy, h, &s.g, ffn, gw)?;
        backward::column_sums(dy, mr, h, 0, gb)?;
    }
    let du = sized(&mut sc.dffn, mr * ffn);
    gemm::linear_dx(mr, h, ffn, dy, h, blk.down.w, du, ffn, false)?;
    backward::gelu_backward(du, &s.u)?;
    {
        let (gw, gb) = pair(grads, UP);
        gemm::linear_dw(mr, ffn, h, du, ffn, &s.a2, h, gw)?;
        backward::column_sums(du, mr, ffn, 0, gb)?;
    }
    let da = sized(&mut sc.da, mr * h);
    gemm::linear_dx(mr, ffn, h, du, ffn, blk.up.w, da, h, false)?;
    let (gg, gb) = pair(grads, FFN_NORM);
    backward::layer_norm_backward(da, &s.h_mid, &s.st2, blk.ffn_norm.g, dhp, gg, gb)
}

/// The attention half's backward: `h_mid = h_in + mask1 * (o Wo^T + bo)` back through out_proj,
/// attention, rotary, the projections and the LayerNorm; `dh` (the gradient at `h_mid`, `mr`
/// rows) becomes the gradient at `h_in` (`[M, H]`).
fn attention_half_backward(
    g: &Geom<'_>,
    sel: Option<&[usize]>,
    blk: &BlockRef<'_>,
    s: &LayerSaves,
    dh: &mut [f32],
    sc: &mut Scratch,
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let (m, h, qd, kvd, wd, t) = (g.m, g.h, g.qd, g.kvd, g.wd, g.t);
    let mr = sel.map_or(m, <[usize]>::len);
    let dy = sized(&mut sc.dy, mr * h);
    dy.copy_from_slice(&dh[..mr * h]);
    if s.dropout {
        dy.iter_mut().zip(&s.mask1).for_each(|(a, &k)| *a *= k);
    }
    let o_post: &[f32] = if sel.is_some() { &s.oc } else { &s.o };
    {
        let (gw, gb) = pair(grads, OUT);
        gemm::linear_dw(mr, h, qd, dy, h, o_post, qd, gw)?;
        backward::column_sums(dy, mr, h, 0, gb)?;
    }
    let dout = sized(&mut sc.dqk, m * qd);
    match sel {
        None => gemm::linear_dx(m, h, qd, dy, h, blk.out.w, dout, qd, false)?,
        Some(rows) => {
            let dl = sized(&mut sc.tmp, mr * qd);
            gemm::linear_dx(mr, h, qd, dy, h, blk.out.w, dl, qd, false)?;
            for (i, &r) in rows.iter().enumerate() {
                dout[r * qd..(r + 1) * qd].copy_from_slice(&dl[i * qd..(i + 1) * qd]);
            }
        }
    }
    let dqkv = sized(&mut sc.dqkv, m * wd);
    let shl = AttnShape {
        last_only: sel.is_some(),
        ..g.sh
    };
    backward::attention_backward(&s.qkv, &s.o, &s.lse, dout, shl, g.scale, dqkv)?;
    if let Some(r) = g.rope_back {
        rotary(dqkv, wd, qd, g.nkv, g.d, r, |row| row % t)?;
    }
    let da = sized(&mut sc.da, m * h);
    // K and V: every row.
    for (j, col, n) in [(K, qd, kvd), (V, qd + kvd, kvd)] {
        let (gw, gb) = pair(grads, j);
        gemm::linear_dw(m, n, h, &dqkv[col..], wd, &s.a1, h, gw)?;
        backward::column_sums(dqkv, m, wd, col, gb)?;
    }
    gemm::linear_dx(m, kvd, h, &dqkv[qd..], wd, blk.k.w, da, h, false)?;
    gemm::linear_dx(m, kvd, h, &dqkv[qd + kvd..], wd, blk.v.w, da, h, true)?;
    let bufs = (&mut sc.dffn, &mut sc.tmp, &mut sc.dy);
    q_backward(g, sel, blk, s, (dqkv, da), dh, bufs, grads)?;
    let (gg, gb) = pair(grads, ATTN_NORM);
    backward::layer_norm_backward(da, &s.h_in, &s.st1, blk.attn_norm.g, dh, gg, gb)
}

/// Q's share of the attention backward: its gradients, and `dq Wq` added onto `da`; every row, or
/// (`sel`) the last rows alone, after which `dh` is expanded back to `[M, H]`.
#[allow(clippy::too_many_arguments)]
fn q_backward(
    g: &Geom<'_>,
    sel: Option<&[usize]>,
    blk: &BlockRef<'_>,
    s: &LayerSaves,
    (dqkv, da): (&mut [f32], &mut [f32]),
    dh: &mut [f32],
    (dql, tmp, dy): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let (m, h, qd, wd, t) = (g.m, g.h, g.qd, g.wd, g.t);
    let (gw, gb) = pair(grads, Q);
    let Some(rows) = sel else {
        if let Some(r) = g.rope_back {
            rotary(dqkv, wd, 0, g.nh, g.d, r, |row| row % t)?;
        }
        gemm::linear_dw(m, qd, h, dqkv, wd, &s.a1, h, gw)?;
        backward::column_sums(dqkv, m, wd, 0, gb)?;
        return gemm::linear_dx(m, qd, h, dqkv, wd, blk.q.w, da, h, true);
    };
    let mr = rows.len();
    let dql = sized(dql, mr * qd);
    for (i, &r) in rows.iter().enumerate() {
        dql[i * qd..(i + 1) * qd].copy_from_slice(&dqkv[r * wd..r * wd + qd]);
    }
    if let Some(rp) = g.rope_back {
        rotary(dql, qd, 0, g.nh, g.d, rp, |i| rows[i] % t)?;
    }
    let al = gather(&s.a1, h, rows, tmp);
    gemm::linear_dw(mr, qd, h, dql, qd, al, h, gw)?;
    backward::column_sums(dql, mr, qd, 0, gb)?;
    let dal = sized(dy, mr * h);
    gemm::linear_dx(mr, qd, h, dql, qd, blk.q.w, dal, h, false)?;
    for (i, &r) in rows.iter().enumerate() {
        for (a, &v) in da[r * h..(r + 1) * h]
            .iter_mut()
            .zip(&dal[i * h..(i + 1) * h])
        {
            *a += v;
        }
    }
    expand(dh, h, rows);
    Ok(())
}

/// Rows `rows` of `src` (row width `w`) gathered into `buf`, returned as `[rows.len(), w]`.
fn gather<'a>(src: &[f32], w: usize, rows: &[usize], buf: &'a mut Vec<f32>) -> &'a [f32] {
    let out = sized(buf, rows.len() * w);
    for (i, &r) in rows.iter().enumerate() {
        out[i * w..(i + 1) * w].copy_from_slice(&src[r * w..(r + 1) * w]);
    }
    out
}

/// In place: row `rows[i]` moves to row `i` (`rows` increasing with `rows[i] >= i`, so no
/// source is overwritten before it is read).
fn compact(x: &mut [f32], w: usize, rows: &[usize]) {
    for (i, &r) in rows.iter().enumerate() {
        if r != i {
            x.copy_within(r * w..(r + 1) * w, i * w);
        }
    }
}

/// The inverse of [`compact`] on a buffer of `M` rows: row `i` moves to row `rows[i]`, every
/// other row becomes 0.
fn expand(x: &mut [f32], w: usize, rows: &[usize]) {
    for (i, &r) in rows.iter().enumerate().rev() {
        if r != i {
            x.copy_within(i * w..(i + 1) * w, r * w);
        }
    }
    let mut next = 0;
    for &r in rows {
        x[next * w..r * w].fill(0.0);
        next = r + 1;
    }
    x[next * w..].fill(0.0);
}

/// The objective's loss on `y: [B, K]`, and `dL/dy` written over `y`.
fn loss_and_grad(y: &mut [f32], b: usize, k: usize, objective: Objective<'_>) -> Result<StepLoss> {
    match objective {
        Objective::Classes {
            labels,
            weights,
            smoothing,
        } => {
            let total_w = label_weight_total(labels, b, k, weights)?;
            // d(-log p_j)/dz_i = p_i - [i == j]: with target weights t_j (sum T), the row's
            // gradient is (T p_i - t_i) / total_w and its loss sum_j t_j (lse - z_j) / total_w.
            let target = if smoothing == 0.0 {
                Vec::new()
            } else {
                smoothed_targets(labels, k, weights, smoothing)
            };
            let mut loss = 0f64;
            let mut correct = 0;
            for (r, (row, &c)) in y.chunks_exact_mut(k).zip(labels).enumerate() {
                let c = c as usize;
                let mut best = 0;
                for j in 1..k {
                    if row[j] > row[best] {
                        best = j;
                    }
                }
                correct += usize::from(best == c);
                let mx = row[best];
                let sum: f32 = row.iter().map(|&v| (v - mx).exp()).sum();
                let lse = mx + sum.ln();
                if smoothing == 0.0 {
                    // Plain cross-entropy (the same arithmetic as before smoothing existed).
                    let wy = weights.map_or(1.0, |w| w[c]);
                    loss += f64::from(wy) * f64::from(lse - row[c]);
                    let coef = (f64::from(wy) / total_w) as f32;
                    for (j, v) in row.iter_mut().enumerate() {
                        let p = (*v - lse).exp();
                        *v = coef * (p - if j == c { 1.0 } else { 0.0 });
                    }
                    continue;
                }
                let t = &target[r * k..(r + 1) * k];
                let t_sum: f32 = t.iter().sum();
                loss += t
                    .iter()
                    .zip(row.iter())
                    .map(|(&tj, &zj)| f64::from(tj) * f64::from(lse - zj))
                    .sum::<f64>();
                let inv = (1.0 / total_w) as f32;
                for (v, &tj) in row.iter_mut().zip(t) {
                    let p = (*v - lse).exp();
                    *v = inv * (t_sum * p - tj);
                }
            }
            Ok(StepLoss {
                loss: loss / total_w,
                correct,
            })
        }
        Objective::Mse { targets } | Objective::Huber { targets, .. } => {
            check_targets(targets, b, k)?;
            let n = (b * k) as f32;
            let mut loss = 0f64;
            for (v, &tg) in y.iter_mut().zip(targets) {
                let diff = *v - tg;
                let (l, g) = match objective {
                    Objective::Huber { delta, .. } if diff.abs() > delta => {
                        (delta * (diff.abs() - 0.5 * delta), delta * diff.signum())
                    }
                    Objective::Huber { .. } => (0.5 * diff * diff, diff),
                    _ => (diff * diff, 2.0 * diff),
                };
                loss += f64::from(l);
                *v = g / n;
            }
            Ok(StepLoss {
                loss: loss / f64::from(n),
                correct: 0,
            })
        }
    }
}
