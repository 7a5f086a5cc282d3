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
use super::engine::{fill_bias, rotary, EngineDims, EngineOutput, LinearRef, RopeRef, WeightsRef};
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
    dy: Vec<f32>,
    da: Vec<f32>,
    dqkv: Vec<f32>,
    dqk: Vec<f32>,
    dffn: Vec<f32>,
    tmp: Vec<f32>,
    neg_sin: Vec<f32>,
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
    let EngineDims {
        embed: e,
        hidden: h,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        ffn,
    } = dims;
    let (qd, kvd) = (nh * d, nkv * d);
    let wd = qd + 2 * kvd;
    let m = b * t;
    let nl = w.blocks.len();
    let kout = head.b.len();
    let first = usize::from(w.input.is_some()) * 2;
    let n_params = first + nl * PER_BLOCK + 4;
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
    let mask = Mask::padded(t, lengths);
    let len_of = |bi: usize| mask.key_len(bi);
    let scale = 1.0 / (d as f32).sqrt();
    let sh = AttnShape {
        batch: b,
        seq: t,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
        mask: &mask,
        last_only: false,
    };
    if ws.layers.len() < nl {
        ws.layers.resize_with(nl, LayerSaves::default);
    }
    // The inverse rotation (rotary's backward) is rotary with sin negated.
    if let Some(r) = rope {
        let ns = sized(&mut ws.neg_sin, r.sin.len());
        for (o, &s) in ns.iter_mut().zip(r.sin) {
            *o = -s;
        }
    }

    // ---- forward ------------------------------------------------------------------------
    // Under `last_timestep` output the last block needs K and V at every position but
    // everything else only at each sequence's last valid row (`last_rows`): its query,
    // attention, out_proj, FFN and the final LayerNorm run on those B rows alone, compacted.
    let last_rows: Vec<usize> = (0..b).map(|bi| bi * t + len_of(bi) - 1).collect();
    let x0 = sized(&mut ws.x0, m * e);
    x0.copy_from_slice(x);
    for bi in 0..b {
        x0[(bi * t + len_of(bi)) * e..(bi + 1) * t * e].fill(0.0);
    }
    let hs = sized(&mut ws.h, m * h);
    match &w.input {
        Some(p) => linear_bias(m, *p, x0, e, hs, h, 0)?,
        None => hs.copy_from_slice(x0),
    }
    for (li, (blk, s)) in w.blocks.iter().zip(ws.layers.iter_mut()).enumerate() {
        let sel = (out == EngineOutput::Last && li + 1 == nl).then_some(&last_rows[..]);
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
        let qkv = sized(&mut s.qkv, m * wd);
        linear_bias(m, blk.k, &s.a1, h, qkv, wd, qd)?;
        linear_bias(m, blk.v, &s.a1, h, qkv, wd, qd + kvd)?;
        if let Some(r) = rope {
            rotary(qkv, wd, qd, nkv, d, r, |row| row % t)?;
        }
        match sel {
            None => {
                linear_bias(m, blk.q, &s.a1, h, qkv, wd, 0)?;
                if let Some(r) = rope {
                    rotary(qkv, wd, 0, nh, d, r, |row| row % t)?;
                }
            }
            Some(rows) => {
                let al = gather(&s.a1, h, rows, &mut ws.tmp);
                let ql = sized(&mut ws.dqk, mr * qd);
                linear_bias(mr, blk.q, al, h, ql, qd, 0)?;
                if let Some(r) = rope {
                    rotary(ql, qd, 0, nh, d, r, |i| rows[i] % t)?;
                }
                for (i, &r) in rows.iter().enumerate() {
                    qkv[r * wd..r * wd + qd].copy_from_slice(&ql[i * qd..(i + 1) * qd]);
                }
            }
        }
        let shl = AttnShape {
            last_only: sel.is_some(),
            ..sh
        };
        backward::attention_forward(
            &s.qkv,
            shl,
            scale,
            sized(&mut s.o, m * qd),
            sized(&mut s.lse, m * nh),
        )?;
        s.dropout = match dropout.as_deref_mut() {
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
        let hs = &mut hs[..mr * h];
        residual_linear(
            mr,
            blk.out,
            o_post,
            qd,
            hs,
            s.dropout.then(|| &s.mask1[..mr * h]),
            &mut ws.tmp,
        )?;
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
            if let Some(dr) = dropout.as_deref_mut() {
                dr.fill_mask(sized(&mut s.mask2, m * h));
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
            &mut ws.tmp,
        )?;
    }

    // Final LayerNorm on the rows the output reads (already compacted to B rows under
    // `last_timestep`), then the output mode.
    let nr = if out == EngineOutput::Last { b } else { m };
    backward::layer_norm_forward(
        &hs[..nr * h],
        w.final_norm.g,
        w.final_norm.b,
        EPS,
        sized(&mut ws.fin, nr * h),
        sized(&mut ws.fin_st, 2 * nr),
    )?;
    let hout = sized(&mut ws.hout, b * h);
    if out == EngineOutput::Last {
        hout.copy_from_slice(&ws.fin);
    } else {
        for bi in 0..b {
            let l = len_of(bi);
            let o = &mut hout[bi * h..(bi + 1) * h];
            o.fill(0.0);
            for r in 0..l {
                for (a, &v) in o
                    .iter_mut()
                    .zip(&ws.fin[(bi * t + r) * h..(bi * t + r + 1) * h])
                {
                    *a += v;
                }
            }
            let inv = 1.0 / l as f32;
            o.iter_mut().for_each(|v| *v *= inv);
        }
    }
    let logits = sized(&mut ws.logits, b * kout);
    linear_bias(b, head, &ws.hout, h, logits, kout, 0)?;

    // ---- loss and its gradient (written over the logits) -----------------------------------
    let result = loss_and_grad(logits, b, kout, objective)?;
    let dlogits = &ws.logits;

    // ---- backward -----------------------------------------------------------------------
    let hi = n_params - 2;
    {
        let (gw, gb) = pair(grads, hi);
        gemm::linear_dw(b, kout, h, dlogits, kout, &ws.hout, h, gw)?;
        backward::column_sums(dlogits, b, kout, 0, gb)?;
    }
    // dhout = dlogits W_head, then back through the output mode into the final LayerNorm rows.
    let dfin = zeroed(&mut ws.dfin, nr * h);
    if out == EngineOutput::Last {
        gemm::linear_dx(b, kout, h, dlogits, kout, head.w, dfin, h, false)?;
    } else {
        let dhout = sized(&mut ws.dy, b * h);
        gemm::linear_dx(b, kout, h, dlogits, kout, head.w, dhout, h, false)?;
        for bi in 0..b {
            let l = len_of(bi);
            let inv = 1.0 / l as f32;
            for r in 0..l {
                for (o, &g) in dfin[(bi * t + r) * h..(bi * t + r + 1) * h]
                    .iter_mut()
                    .zip(&dhout[bi * h..(bi + 1) * h])
                {
                    *o = g * inv;
                }
            }
        }
    }
    // dh: [B, H] (compacted last rows) under `last_timestep`, else [M, H].
    let dh = zeroed(&mut ws.dh, m * h);
    {
        let fi = n_params - 4;
        let (gg, gb) = pair(grads, fi);
        backward::layer_norm_backward(
            &ws.dfin,
            &ws.h[..nr * h],
            &ws.fin_st,
            w.final_norm.g,
            &mut dh[..nr * h],
            gg,
            gb,
        )?;
    }
    for (li, (blk, s)) in w.blocks.iter().zip(ws.layers.iter()).enumerate().rev() {
        let gi = first + li * PER_BLOCK;
        let sel = (out == EngineOutput::Last && li + 1 == nl).then_some(&last_rows[..]);
        let mr = sel.map_or(m, <[usize]>::len);
        let dhp = &mut dh[..mr * h];
        // FFN half: h_out = h_mid + mask2 * (g Wdown^T + bdown).
        let dy = sized(&mut ws.dy, mr * h);
        dy.copy_from_slice(dhp);
        if s.dropout {
            dy.iter_mut().zip(&s.mask2).for_each(|(a, &k)| *a *= k);
        }
        {
            let (gw, gb) = pair(grads, gi + DOWN);
            gemm::linear_dw(mr, h, ffn, dy, h, &s.g, ffn, gw)?;
            backward::column_sums(dy, mr, h, 0, gb)?;
        }
        let du = sized(&mut ws.dffn, mr * ffn);
        gemm::linear_dx(mr, h, ffn, dy, h, blk.down.w, du, ffn, false)?;
        backward::gelu_backward(du, &s.u)?;
        {
            let (gw, gb) = pair(grads, gi + UP);
            gemm::linear_dw(mr, ffn, h, du, ffn, &s.a2, h, gw)?;
            backward::column_sums(du, mr, ffn, 0, gb)?;
        }
        let da = sized(&mut ws.da, mr * h);
        gemm::linear_dx(mr, ffn, h, du, ffn, blk.up.w, da, h, false)?;
        {
            let (gg, gb) = pair(grads, gi + FFN_NORM);
            backward::layer_norm_backward(da, &s.h_mid, &s.st2, blk.ffn_norm.g, dhp, gg, gb)?;
        }
        // Attention half: h_mid = h_in + mask1 * (o Wo^T + bo).
        dy.copy_from_slice(dhp);
        if s.dropout {
            dy.iter_mut().zip(&s.mask1).for_each(|(a, &k)| *a *= k);
        }
        let o_post: &[f32] = if sel.is_some() { &s.oc } else { &s.o };
        {
            let (gw, gb) = pair(grads, gi + OUT);
            gemm::linear_dw(mr, h, qd, dy, h, o_post, qd, gw)?;
            backward::column_sums(dy, mr, h, 0, gb)?;
        }
        let dout = sized(&mut ws.dqk, m * qd);
        match sel {
            None => gemm::linear_dx(m, h, qd, dy, h, blk.out.w, dout, qd, false)?,
            Some(rows) => {
                let dl = sized(&mut ws.tmp, mr * qd);
                gemm::linear_dx(mr, h, qd, dy, h, blk.out.w, dl, qd, false)?;
                for (i, &r) in rows.iter().enumerate() {
                    dout[r * qd..(r + 1) * qd].copy_from_slice(&dl[i * qd..(i + 1) * qd]);
                }
            }
        }
        let dqkv = sized(&mut ws.dqkv, m * wd);
        backward::attention_backward(
            &s.qkv,
            &s.o,
            &s.lse,
            dout,
            AttnShape {
                last_only: sel.is_some(),
                ..sh
            },
            scale,
            dqkv,
        )?;
        if let Some(r) = rope {
            rotary(
                dqkv,
                wd,
                qd,
                nkv,
                d,
                RopeRef {
                    cos: r.cos,
                    sin: &ws.neg_sin,
                },
                |row| row % t,
            )?;
        }
        let da = sized(&mut ws.da, m * h);
        // K and V: every row.
        for (j, col, n) in [(K, qd, kvd), (V, qd + kvd, kvd)] {
            let (gw, gb) = pair(grads, gi + j);
            gemm::linear_dw(m, n, h, &dqkv[col..], wd, &s.a1, h, gw)?;
            backward::column_sums(dqkv, m, wd, col, gb)?;
        }
        gemm::linear_dx(m, kvd, h, &dqkv[qd..], wd, blk.k.w, da, h, false)?;
        gemm::linear_dx(m, kvd, h, &dqkv[qd + kvd..], wd, blk.v.w, da, h, true)?;
        // Q: every row, or the last rows alone; dh back to [M, H] for the LayerNorm.
        let (gw, gb) = pair(grads, gi + Q);
        match sel {
            None => {
                if let Some(r) = rope {
                    rotary(
                        dqkv,
                        wd,
                        0,
                        nh,
                        d,
                        RopeRef {
                            cos: r.cos,
                            sin: &ws.neg_sin,
                        },
                        |row| row % t,
                    )?;
                }
                gemm::linear_dw(m, qd, h, dqkv, wd, &s.a1, h, gw)?;
                backward::column_sums(dqkv, m, wd, 0, gb)?;
                gemm::linear_dx(m, qd, h, dqkv, wd, blk.q.w, da, h, true)?;
            }
            Some(rows) => {
                let dql = sized(&mut ws.dffn, mr * qd);
                for (i, &r) in rows.iter().enumerate() {
                    dql[i * qd..(i + 1) * qd].copy_from_slice(&dqkv[r * wd..r * wd + qd]);
                }
                if let Some(rp) = rope {
                    rotary(
                        dql,
                        qd,
                        0,
                        nh,
                        d,
                        RopeRef {
                            cos: rp.cos,
                            sin: &ws.neg_sin,
                        },
                        |i| rows[i] % t,
                    )?;
                }
                let al = gather(&s.a1, h, rows, &mut ws.tmp);
                gemm::linear_dw(mr, qd, h, dql, qd, al, h, gw)?;
                backward::column_sums(dql, mr, qd, 0, gb)?;
                let dal = sized(&mut ws.dy, mr * h);
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
            }
        }
        let (gg, gb) = pair(grads, gi + ATTN_NORM);
        backward::layer_norm_backward(da, &s.h_in, &s.st1, blk.attn_norm.g, dh, gg, gb)?;
    }
    if w.input.is_some() {
        let (gw, gb) = pair(grads, 0);
        gemm::linear_dw(m, h, e, dh, h, &ws.x0, e, gw)?;
        backward::column_sums(dh, m, h, 0, gb)?;
    }
    Ok(result)
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
