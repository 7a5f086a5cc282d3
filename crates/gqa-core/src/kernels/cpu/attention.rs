//! Fused causal grouped-query attention (online softmax over key blocks, FlashAttention style)
//! under a [`Mask`].

use super::*;
#[allow(unused_imports)]
use crate::error::{Error, Result};
use crate::mask::Mask;

/// Strides (in f32 elements) of a `[B, N, T, D]` head tensor whose `D` axis is contiguous:
/// element `(b, n, t, d)` sits at `offset + b*batch + n*head + t*row + d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    /// Offset of element `(0,0,0,0)`.
    pub offset: usize,
    /// Stride of `B`.
    pub batch: usize,
    /// Stride of `N` (heads).
    pub head: usize,
    /// Stride of `T` (positions).
    pub row: usize,
}

impl HeadLayout {
    /// Contiguous `[B, N, T, D]` (heads outermost: `qkv`'s layout).
    pub fn bntd(n: usize, t: usize, d: usize) -> Self {
        HeadLayout {
            offset: 0,
            batch: n * t * d,
            head: t * d,
            row: d,
        }
    }

    /// Contiguous `[B, T, N, D]` (a projection output `[B, T, N*D]` viewed as heads).
    pub fn btnd(n: usize, t: usize, d: usize) -> Self {
        HeadLayout {
            offset: 0,
            batch: t * n * d,
            head: d,
            row: n * d,
        }
    }

    /// One past the largest index used by `[b, n, t, d]` (0 when any dim is 0).
    fn extent(&self, b: usize, n: usize, t: usize, d: usize) -> usize {
        if b == 0 || n == 0 || t == 0 || d == 0 {
            return 0;
        }
        self.offset + (b - 1) * self.batch + (n - 1) * self.head + (t - 1) * self.row + d
    }

    #[inline(always)]
    fn at(&self, b: usize, n: usize, t: usize) -> usize {
        self.offset + b * self.batch + n * self.head + t * self.row
    }
}

/// Sizes of one attention call: `q: [B, NH, Tq, D]`, `k, v: [B, NKV, Tk, D]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// `B`.
    pub batch: usize,
    /// `NH` (query heads).
    pub num_heads: usize,
    /// `NKV` (divides `NH`; query head `i` reads KV head `i / (NH/NKV)`).
    pub num_kv_heads: usize,
    /// `Tq` (new query positions).
    pub q_len: usize,
    /// `Tk` (key positions).
    pub k_len: usize,
    /// `D` (head_dim).
    pub head_dim: usize,
}

pub(super) struct AttnArgs<'a> {
    q: &'a [f32],
    ql: HeadLayout,
    k: &'a [f32],
    kl: HeadLayout,
    v: &'a [f32],
    vl: HeadLayout,
    out: OutPtr,
    ol: HeadLayout,
    dims: AttentionDims,
    scale: f32,
    mask: &'a Mask,
}

/// One unit of work: batch `b`, KV head `kvh`, query positions `i0..i1`.
#[derive(Clone, Copy)]
pub(super) struct AttnJob {
    b: usize,
    kvh: usize,
    i0: usize,
    i1: usize,
}

/// Query-row groups per tile: K/V blocks are read once per `TILE_GROUPS * ROWS` query rows.
pub(super) const TILE_GROUPS: usize = 8;

/// One tile of up to `TILE_GROUPS * ROWS` query rows: the scaled queries, each row's visible
/// keys `starts..lims` and each group's smallest start and largest limit.
struct QTile<const ROWS: usize> {
    /// `[TILE_GROUPS * ROWS, D]` queries times the scale.
    q: Vec<f32>,
    /// Start of each row's visible keys (0 without a sliding window).
    starts: [[usize; ROWS]; TILE_GROUPS],
    /// End of each row's visible keys.
    lims: [[usize; ROWS]; TILE_GROUPS],
    /// The smallest start of each group.
    gstart: [usize; TILE_GROUPS],
    /// The largest limit of each group.
    glim: [usize; TILE_GROUPS],
}

#[inline(always)]
pub(super) fn attn_job_impl<
    const FMA: bool,
    const X512: bool,
    const ROWS: usize,
    const KEY_CHUNK: usize,
    const W: usize,
>(
    a: &AttnArgs<'_>,
    job: AttnJob,
    kt: &mut Vec<f32>,
    o: &mut Vec<f32>,
) {
    let AttnJob { b, kvh, i0, i1 } = job;
    let d = a.dims.head_dim;
    let g = a.dims.num_heads / a.dims.num_kv_heads;
    let n_rows = (i1 - i0) * g;
    // K transposed once per job into block panels [nblocks][D][KEY_BLOCK] (each 8 KiB at D = 32,
    // contiguous: no cache-set aliasing from a long row stride), zero padded.
    // With few query rows (a decode step) each block is used once: transpose it on the fly into
    // one L1-resident panel instead (K is then read once, never written back).
    // Starts and limits grow with the position, so the job's keys are first_block.. max_lim
    // (blocks wholly before a sliding window are never read: O(T * W) work and panels).
    let (first_block, max_lim) = if n_rows == 0 {
        (0, 0)
    } else {
        (
            key_range(a, b, i0).start / KEY_BLOCK,
            key_range(a, b, i1 - 1).end,
        )
    };
    let on_the_fly = n_rows <= 2 * ROWS;
    let nblocks = if on_the_fly {
        1
    } else {
        max_lim.div_ceil(KEY_BLOCK).saturating_sub(first_block)
    };
    let panel = d * KEY_BLOCK;
    kt.clear();
    kt.resize(nblocks * panel, 0.0);
    if !on_the_fly {
        k_panels(a, b, kvh, first_block * KEY_BLOCK..max_lim, kt);
    }
    let tile_rows = TILE_GROUPS * ROWS;
    o.clear();
    o.resize(tile_rows * d, 0.0);
    let mut tile = QTile::<ROWS> {
        q: vec![0f32; tile_rows * d],
        starts: [[0usize; ROWS]; TILE_GROUPS],
        lims: [[0usize; ROWS]; TILE_GROUPS],
        gstart: [0usize; TILE_GROUPS],
        glim: [0usize; TILE_GROUPS],
    };
    let mut s = [[0f32; KEY_BLOCK]; ROWS];
    for t0 in (0..n_rows).step_by(tile_rows) {
        let groups = (n_rows - t0).min(tile_rows).div_ceil(ROWS);
        load_q_tile(a, job, t0, groups, &mut tile);
        let tile_lim = tile.glim[..groups].iter().copied().max().unwrap_or(0);
        let tile_start = tile.gstart[..groups].iter().copied().min().unwrap_or(0);
        let mut m = [[f32::NEG_INFINITY; ROWS]; TILE_GROUPS];
        let mut l = [[0f32; ROWS]; TILE_GROUPS];
        o[..groups * ROWS * d].fill(0.0);
        let from = (tile_start / KEY_BLOCK).max(first_block) * KEY_BLOCK;
        for j0 in (from..tile_lim).step_by(KEY_BLOCK) {
            let bk = KEY_BLOCK.min(tile_lim - j0);
            if on_the_fly {
                k_panel_on_the_fly(a, b, kvh, j0, bk, kt);
            }
            let kp = if on_the_fly {
                &kt[..panel]
            } else {
                &kt[(j0 / KEY_BLOCK - first_block) * panel..][..panel]
            };
            let vb0 = a.vl.at(b, kvh, j0);
            for gi in 0..groups {
                if tile.glim[gi] <= j0 || tile.gstart[gi] >= j0 + bk {
                    continue; // no row of the group reads a key of this block
                }
                let gbk = bk.min(tile.glim[gi] - j0);
                let qg = &tile.q[gi * ROWS * d..(gi + 1) * ROWS * d];
                qk_scores::<FMA, X512, ROWS, KEY_CHUNK>(qg, d, kp, gbk, &mut s);
                // Online softmax update per row.
                let keys = (&tile.starts[gi], &tile.lims[gi]);
                let alpha = softmax_block::<FMA, ROWS>(&mut s, &mut m[gi], &mut l[gi], keys, j0);
                let og = &mut o[gi * ROWS * d..(gi + 1) * ROWS * d];
                for rr in 0..ROWS {
                    if alpha[rr] != 1.0 {
                        for x in &mut og[rr * d..(rr + 1) * d] {
                            *x *= alpha[rr];
                        }
                    }
                }
                pv_block::<FMA, X512, ROWS, W>(og, d, &s, gbk, a.v, vb0, a.vl.row);
            }
        }
        write_tile::<ROWS>(a, job, t0, groups, o, (&tile.starts, &tile.lims), &l);
    }
}

/// Query row `i`'s visible keys in sequence `b` ([`Mask::keys_for`]), within `0..Tk`.
#[inline(always)]
fn key_range(a: &AttnArgs<'_>, b: usize, i: usize) -> std::ops::Range<usize> {
    let r = a.mask.keys_for(b, i);
    let end = r.end.min(a.dims.k_len);
    r.start.min(end)..end
}

/// Keys `keys` (starting on a block boundary) of KV head `kvh` transposed into `kt`'s block
/// panels `[nblocks][D][KEY_BLOCK]`, panel 0 holding the block of `keys.start`.
#[inline(always)]
fn k_panels(a: &AttnArgs<'_>, b: usize, kvh: usize, keys: std::ops::Range<usize>, kt: &mut [f32]) {
    let d = a.dims.head_dim;
    let panel = d * KEY_BLOCK;
    let first = keys.start;
    for j in keys {
        let src = &a.k[a.kl.at(b, kvh, j)..][..d];
        let dst = &mut kt[((j - first) / KEY_BLOCK) * panel + j % KEY_BLOCK..];
        for (dd, &x) in src.iter().enumerate() {
            dst[dd * KEY_BLOCK] = x;
        }
    }
}

/// Keys `j0..j0 + bk` transposed into the one panel `kt[..D * KEY_BLOCK]`, zero padded.
#[inline(always)]
fn k_panel_on_the_fly(
    a: &AttnArgs<'_>,
    b: usize,
    kvh: usize,
    j0: usize,
    bk: usize,
    kt: &mut [f32],
) {
    let d = a.dims.head_dim;
    for j in 0..bk {
        let src = &a.k[a.kl.at(b, kvh, j0 + j)..][..d];
        for (dd, &x) in src.iter().enumerate() {
            kt[dd * KEY_BLOCK + j] = x;
        }
    }
    if bk < KEY_BLOCK {
        for dd in 0..d {
            kt[dd * KEY_BLOCK + bk..(dd + 1) * KEY_BLOCK].fill(0.0);
        }
    }
}

/// Loads the `groups * ROWS` query rows of the tile starting at job row `t0` (row `r` is query
/// position `i0 + r / G` of head `kvh * G + r % G`; rows past the job repeat its last row).
#[inline(always)]
fn load_q_tile<const ROWS: usize>(
    a: &AttnArgs<'_>,
    job: AttnJob,
    t0: usize,
    groups: usize,
    tile: &mut QTile<ROWS>,
) {
    let AttnJob { b, kvh, i0, i1 } = job;
    let d = a.dims.head_dim;
    let g = a.dims.num_heads / a.dims.num_kv_heads;
    let n_rows = (i1 - i0) * g;
    for gi in 0..groups {
        for rr in 0..ROWS {
            let row = (t0 + gi * ROWS + rr).min(n_rows - 1);
            let i = i0 + row / g;
            let h = kvh * g + row % g;
            let src = &a.q[a.ql.at(b, h, i)..][..d];
            let q = &mut tile.q[(gi * ROWS + rr) * d..(gi * ROWS + rr + 1) * d];
            for (x, &y) in q.iter_mut().zip(src) {
                *x = y * a.scale;
            }
            let keys = key_range(a, b, i);
            (tile.starts[gi][rr], tile.lims[gi][rr]) = (keys.start, keys.end);
        }
        tile.gstart[gi] = tile.starts[gi].iter().copied().min().unwrap_or(0);
        tile.glim[gi] = tile.lims[gi].iter().copied().max().unwrap_or(0);
    }
}

/// Scores `s[r][c] = q_r . k_c` of one group's `ROWS` rows against the first `gbk` keys of the
/// panel `kp` (`[D][KEY_BLOCK]`), `KEY_CHUNK` keys at a time with the accumulators in registers.
#[inline(always)]
fn qk_scores<const FMA: bool, const X512: bool, const ROWS: usize, const KEY_CHUNK: usize>(
    qg: &[f32],
    d: usize,
    kp: &[f32],
    gbk: usize,
    s: &mut [[f32; KEY_BLOCK]; ROWS],
) {
    for c0 in (0..gbk).step_by(KEY_CHUNK) {
        #[cfg(target_arch = "x86_64")]
        if X512 {
            // SAFETY: X512 is only instantiated inside an `avx512f` function (detected); `kp`
            // holds D rows of KEY_BLOCK values and c0 + 32 <= KEY_BLOCK; `qg` holds ROWS * D
            // values.
            unsafe { qk_tile_512::<ROWS>(qg, d, kp, KEY_BLOCK, c0, s, c0) };
            continue;
        }
        let mut acc = [[0f32; KEY_CHUNK]; ROWS];
        for dd in 0..d {
            let krow: &[f32; KEY_CHUNK] = kp[dd * KEY_BLOCK + c0..][..KEY_CHUNK]
                .try_into()
                .expect("chunk");
            for rr in 0..ROWS {
                let qv = qg[rr * d + dd];
                for c in 0..KEY_CHUNK {
                    acc[rr][c] = fmadd::<FMA>(qv, krow[c], acc[rr][c]);
                }
            }
        }
        for rr in 0..ROWS {
            s[rr][c0..c0 + KEY_CHUNK].copy_from_slice(&acc[rr]);
        }
    }
}

/// Writes the tile's finished rows to the output: `o / l` per row, zeros for a row that sees no
/// key.
#[inline(always)]
fn write_tile<const ROWS: usize>(
    a: &AttnArgs<'_>,
    job: AttnJob,
    t0: usize,
    groups: usize,
    o: &[f32],
    (starts, lims): (&[[usize; ROWS]; TILE_GROUPS], &[[usize; ROWS]; TILE_GROUPS]),
    l: &[[f32; ROWS]; TILE_GROUPS],
) {
    let AttnJob { b, kvh, i0, i1 } = job;
    let d = a.dims.head_dim;
    let g = a.dims.num_heads / a.dims.num_kv_heads;
    let n_rows = (i1 - i0) * g;
    for gi in 0..groups {
        for rr in 0..ROWS {
            let row = t0 + gi * ROWS + rr;
            if row >= n_rows {
                return;
            }
            let i = i0 + row / g;
            let h = kvh * g + row % g;
            let base = a.ol.at(b, h, i);
            // SAFETY: (b, h, i) belongs to this job only (jobs split (b, kvh, query range) and h
            // is in kvh's group), and `attention_cpu_strided` checked the output extent.
            let dst = unsafe { std::slice::from_raw_parts_mut(a.out.0.add(base), d) };
            if lims[gi][rr] <= starts[gi][rr] {
                dst.fill(0.0);
                continue;
            }
            let inv = 1.0 / l[gi][rr];
            for (x, &y) in dst
                .iter_mut()
                .zip(&o[(gi * ROWS + rr) * d..(gi * ROWS + rr + 1) * d])
            {
                *x = y * inv;
            }
        }
    }
}

/// `o += P V` for one key block: all `R` rows times `W`-wide slices of `D`, accumulators in
/// registers across the block's `bk` keys (V read once per slice); V row `c` at `vb0 + c * vrs`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn pv_block<const FMA: bool, const X512: bool, const R: usize, const W: usize>(
    og: &mut [f32],
    d: usize,
    s: &[[f32; KEY_BLOCK]; R],
    bk: usize,
    v: &[f32],
    vb0: usize,
    vrs: usize,
) {
    let mut d0 = 0;
    #[cfg(target_arch = "x86_64")]
    if X512 {
        while d0 + 32 <= d {
            // SAFETY: X512 is only instantiated inside an `avx512f` function (detected); rows
            // vb0 + c * vrs + d0 .. + 32 for c < bk lie inside V's extent (checked by
            // `attention_cpu_strided`); `og` holds R * D values.
            unsafe { pv_tile_512::<R>(og, d, s, bk, v, vb0, vrs, d0) };
            d0 += 32;
        }
    }
    while d0 + W <= d {
        pv_rows::<FMA, R, W>(og, d, s, bk, v, vb0, vrs, d0);
        d0 += W;
    }
    while d0 + 8 <= d {
        pv_rows::<FMA, R, 8>(og, d, s, bk, v, vb0, vrs, d0);
        d0 += 8;
    }
    while d0 < d {
        pv_rows::<FMA, R, 1>(og, d, s, bk, v, vb0, vrs, d0);
        d0 += 1;
    }
}

/// The online-softmax update of one key block (keys `j0..`) for `R` query rows: scores `s[r]`
/// outside the row's keys `starts[r]..lims[r]` become `-inf`, the running max `m` and sum `l` are
/// updated, `s[r]` becomes `exp(s - m_new)`, and the factor `alpha[r] = exp(m_old - m_new)`
/// for the row's accumulated output is returned (1 when the row has no key in the block).
#[inline(always)]
pub(super) fn softmax_block<const FMA: bool, const R: usize>(
    s: &mut [[f32; KEY_BLOCK]; R],
    m: &mut [f32; R],
    l: &mut [f32; R],
    (starts, lims): (&[usize; R], &[usize; R]),
    j0: usize,
) -> [f32; R] {
    let mut alpha = [1f32; R];
    for rr in 0..R {
        let valid = lims[rr].saturating_sub(j0);
        let skip = starts[rr].saturating_sub(j0);
        let row = &mut s[rr];
        let mut mx = [f32::NEG_INFINITY; LANES];
        for (ci, chunk) in row.chunks_exact_mut(LANES).enumerate() {
            for ln in 0..LANES {
                let c = ci * LANES + ln;
                let x = if c < valid && c >= skip {
                    chunk[ln]
                } else {
                    f32::NEG_INFINITY
                };
                chunk[ln] = x;
                mx[ln] = if x > mx[ln] { x } else { mx[ln] };
            }
        }
        let bm = mx
            .iter()
            .fold(f32::NEG_INFINITY, |acc, &v| if v > acc { v } else { acc });
        let mrow = m[rr];
        let m_new = if bm > mrow { bm } else { mrow };
        if m_new == f32::NEG_INFINITY {
            // Row has no key in this block (past its limit or before its window): p = 0.
            row.fill(0.0);
            continue;
        }
        alpha[rr] = exp_f32::<FMA>(mrow - m_new);
        m[rr] = m_new;
        for x in row.iter_mut() {
            *x = exp_f32::<FMA>(*x - m_new);
        }
        l[rr] = l[rr] * alpha[rr] + sum_lanes(row);
    }
    alpha
}

/// `o[r, d0..d0+W] += sum_{c < bk} p[r][c] * v[c, d0..d0+W]` for the `R` rows of `o` (row
/// stride `d`), `v` row `c` at `vb0 + c * vrs`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn pv_rows<const FMA: bool, const R: usize, const W: usize>(
    o: &mut [f32],
    d: usize,
    p: &[[f32; KEY_BLOCK]; R],
    bk: usize,
    v: &[f32],
    vb0: usize,
    vrs: usize,
    d0: usize,
) {
    let mut acc = [[0f32; W]; R];
    for r in 0..R {
        acc[r].copy_from_slice(&o[r * d + d0..r * d + d0 + W]);
    }
    for c in 0..bk {
        let vv: &[f32; W] = v[vb0 + c * vrs + d0..][..W].try_into().expect("slice");
        for r in 0..R {
            let x = p[r][c];
            for w in 0..W {
                acc[r][w] = fmadd::<FMA>(x, vv[w], acc[r][w]);
            }
        }
    }
    for r in 0..R {
        o[r * d + d0..r * d + d0 + W].copy_from_slice(&acc[r]);
    }
}

/// AVX-512 score tile: `s[r][c0..c0+32] = sum_dd q[r, dd] * kt[dd, col..col+32]` for the `R`
/// rows of `q: [R, D]` (2R zmm accumulators).
///
/// # Safety
/// The CPU must support AVX-512F; `kt.len() >= (d - 1) * ldk + col + 32`, `q.len() >= R * d`,
/// `c0 + 32 <= KEY_BLOCK`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn qk_tile_512<const R: usize>(
    q: &[f32],
    d: usize,
    kt: &[f32],
    ldk: usize,
    col: usize,
    s: &mut [[f32; KEY_BLOCK]; R],
    c0: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(kt.len() >= (d - 1) * ldk + col + 32 && q.len() >= R * d && c0 + 32 <= KEY_BLOCK);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for dd in 0..d {
        let kp = kt.as_ptr().add(dd * ldk + col);
        let k0 = _mm512_loadu_ps(kp);
        let k1 = _mm512_loadu_ps(kp.add(16));
        for r in 0..R {
            let qb = _mm512_set1_ps(*q.get_unchecked(r * d + dd));
            acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(s[r].as_mut_ptr().add(c0), acc[r][0]);
        _mm512_storeu_ps(s[r].as_mut_ptr().add(c0 + 16), acc[r][1]);
    }
}

/// AVX-512 `o[r, d0..d0+32] += sum_{c < bk} p[r][c] * v[vb0 + c*vrs + d0 ..][..32]` for `R` rows
/// of `o` (row stride `d`), 2R zmm accumulators.
///
/// # Safety
/// The CPU must support AVX-512F; `v.len() >= vb0 + (bk - 1) * vrs + d0 + 32` when `bk > 0`,
/// `o.len() >= (R - 1) * d + d0 + 32`, `bk <= KEY_BLOCK`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(super) unsafe fn pv_tile_512<const R: usize>(
    o: &mut [f32],
    d: usize,
    p: &[[f32; KEY_BLOCK]; R],
    bk: usize,
    v: &[f32],
    vb0: usize,
    vrs: usize,
    d0: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(
        bk <= KEY_BLOCK
            && o.len() >= (R - 1) * d + d0 + 32
            && (bk == 0 || v.len() >= vb0 + (bk - 1) * vrs + d0 + 32)
    );
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for r in 0..R {
        let op = o.as_ptr().add(r * d + d0);
        acc[r][0] = _mm512_loadu_ps(op);
        acc[r][1] = _mm512_loadu_ps(op.add(16));
    }
    for c in 0..bk {
        let vp = v.as_ptr().add(vb0 + c * vrs + d0);
        let v0 = _mm512_loadu_ps(vp);
        let v1 = _mm512_loadu_ps(vp.add(16));
        for r in 0..R {
            let pb = _mm512_set1_ps(*p.get_unchecked(r).get_unchecked(c));
            acc[r][0] = _mm512_fmadd_ps(pb, v0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(pb, v1, acc[r][1]);
        }
    }
    for r in 0..R {
        let op = o.as_mut_ptr().add(r * d + d0);
        _mm512_storeu_ps(op, acc[r][0]);
        _mm512_storeu_ps(op.add(16), acc[r][1]);
    }
}

/// The attention job on the best SIMD level: 8 rows x 32 keys (16 zmm accumulators) with
/// AVX-512, 4 x 16 with AVX2+FMA and in portable code.
pub(super) fn attn_job(a: &AttnArgs<'_>, job: AttnJob, kt: &mut Vec<f32>, o: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512(a: &AttnArgs<'_>, job: AttnJob, kt: &mut Vec<f32>, o: &mut Vec<f32>) {
            attn_job_impl::<true, true, 8, 32, 32>(a, job, kt, o)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(a: &AttnArgs<'_>, job: AttnJob, kt: &mut Vec<f32>, o: &mut Vec<f32>) {
            attn_job_impl::<true, false, 4, 16, 16>(a, job, kt, o)
        }
        match simd_level() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (detected).
            SimdLevel::Avx512 => return unsafe { avx512(a, job, kt, o) },
            // SAFETY: the CPU supports AVX2 and FMA (detected).
            SimdLevel::Avx2Fma => return unsafe { avx2(a, job, kt, o) },
            SimdLevel::Portable => {}
        }
    }
    attn_job_impl::<false, false, 4, 16, 16>(a, job, kt, o)
}

/// Fused causal grouped-query attention `softmax(q k^T * scale + mask) v` over strided head
/// tensors (see [`HeadLayout`]): `q: [B, NH, Tq, D]`, `k, v: [B, NKV, Tk, D]`, `out: [B, NH, Tq,
/// D]`, query head `h` reading KV head `h / (NH / NKV)` (SPEC section 2), causal mask and key
/// lengths and sliding window as described by [`Mask`] (key blocks outside a row's keys are
/// skipped). A query row that sees no key at all (key length 0) gets zeros. Writes every
/// element of `out` that the layout addresses and nothing else.
///
/// Memory: `O(D * Tk)` scratch per worker; the `[Tq, Tk]` scores are never stored.
///
/// # Errors
/// [`Error::Internal`] when `NKV` does not divide `NH`, a slice is too short for its layout, the
/// offsets/lengths counts are wrong or a key length exceeds `Tk`.
#[allow(clippy::too_many_arguments)]
pub fn attention_cpu_strided(
    q: &[f32],
    ql: HeadLayout,
    k: &[f32],
    kl: HeadLayout,
    v: &[f32],
    vl: HeadLayout,
    out: &mut [f32],
    ol: HeadLayout,
    dims: AttentionDims,
    scale: f32,
    mask: &Mask,
) -> Result<()> {
    let AttentionDims {
        batch: b,
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: tq,
        k_len: tk,
        head_dim: d,
    } = dims;
    let bad = |m: String| {
        Err(Error::Internal(format!(
            "attention_cpu: {m} (dims {dims:?})"
        )))
    };
    if nkv == 0 || nh % nkv != 0 {
        return bad(format!("num_kv_heads {nkv} must divide num_heads {nh}"));
    }
    for (name, len, ext) in [
        ("q", q.len(), ql.extent(b, nh, tq, d)),
        ("k", k.len(), kl.extent(b, nkv, tk, d)),
        ("v", v.len(), vl.extent(b, nkv, tk, d)),
        ("out", out.len(), ol.extent(b, nh, tq, d)),
    ] {
        if len < ext {
            return bad(format!("{name} has {len} values, its layout needs {ext}"));
        }
    }
    mask.check(b, tk)?;
    if b == 0 || nh == 0 || tq == 0 || d == 0 {
        return Ok(());
    }
    let args = AttnArgs {
        q,
        ql,
        k,
        kl,
        v,
        vl,
        out: OutPtr(out.as_mut_ptr()),
        ol,
        dims,
        scale,
        mask,
    };
    // Jobs: (b, kvh, query chunk); enough chunks to keep the workers busy (causal rows differ in
    // cost, so over-split by 4).
    let groups = b * nkv;
    let work = (tq as u64) * (tk as u64) * (nh as u64) * (d as u64) * (b as u64);
    let parallel = work >= 1 << 18;
    let want = if parallel { 4 * threads() } else { 1 };
    let per_group = want.div_ceil(groups).min(tq).max(1);
    let chunk = tq.div_ceil(per_group);
    let chunks = tq.div_ceil(chunk);
    let jobs = groups * chunks;
    par_for(jobs, parallel, |jid| {
        let (gi, ci) = (jid / chunks, jid % chunks);
        let job = AttnJob {
            b: gi / nkv,
            kvh: gi % nkv,
            i0: ci * chunk,
            i1: ((ci + 1) * chunk).min(tq),
        };
        let mut kt = Vec::new();
        let mut o = Vec::new();
        attn_job(&args, job, &mut kt, &mut o);
    });
    Ok(())
}

/// [`attention_cpu_strided`] on contiguous tensors: `q, out: [B, NH, Tq, D]`,
/// `k, v: [B, NKV, Tk, D]` row-major, scale `scale` (usually `1/sqrt(D)`), query `i` at absolute
/// position `q_offset + i` (the KV-cache length; 0 for a plain forward) reading keys
/// `j <= q_offset + i` and `j < key_lengths[b]`.
///
/// # Errors
/// As [`attention_cpu_strided`].
#[allow(clippy::too_many_arguments)]
pub fn attention_cpu(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    scale: f32,
    q_offset: usize,
    key_lengths: Option<&[usize]>,
    out: &mut [f32],
) -> Result<()> {
    let AttentionDims {
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: tq,
        k_len: tk,
        head_dim: d,
        ..
    } = dims;
    let ql = HeadLayout::bntd(nh, tq, d);
    let kl = HeadLayout::bntd(nkv, tk, d);
    let mask = Mask::causal(q_offset, tk, key_lengths);
    attention_cpu_strided(q, ql, k, kl, v, kl, out, ql, dims, scale, &mask)
}
