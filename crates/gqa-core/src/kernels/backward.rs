//! Row and attention kernels of the fused training path ([`super::training`]): forwards that
//! save what the backward pass needs, and the backward passes themselves, on f32 slices.
//!
//! - LayerNorm forward saving `(mean, rstd)` per row, and its backward
//!   `dx = rstd * (g*dy - mean(g*dy) - xhat * mean(g*dy*xhat))`, `dgamma = sum dy*xhat`,
//!   `dbeta = sum dy` (the standard derivation, as in PyTorch's `native_layer_norm_backward`).
//! - Exact GELU forward saving its input, and its derivative
//!   `GELU'(u) = Phi(u) + u * phi(u)`, `phi(u) = exp(-u^2/2) / sqrt(2 pi)`.
//! - Causal GQA attention forward saving the log-sum-exp of each query row, and its backward
//!   FlashAttention-2 style (Dao, 2023, "FlashAttention-2", Algorithm 2): the probabilities are
//!   recomputed per query row from the saved log-sum-exp, `dS = P * (dP - rowsum(dO * O))`, and
//!   dK, dV are summed over the query heads of each KV group inside one job, so no
//!   `[B, NH, T, T]` tensor and no repeated K/V ever exist.
//!
//! Every parameter-gradient reduction (over rows) runs in fixed chunks of [`ROW_CHUNK`] rows whose
//! partial sums are added in order, and attention jobs are whole (batch, KV head) pairs, so the
//! gradients do not depend on the thread count.

use super::cpu::{dispatch, exp_f32, fmadd, layer_norm_seq, par_for, two_phi, OutPtr};
// The dispatch macro's run-time selection (x86_64 only).
#[cfg(target_arch = "x86_64")]
use super::cpu::{simd_level, SimdLevel};
use crate::error::{Error, Result};
use crate::mask::Mask;

/// Rows per partial sum of a parameter-gradient reduction.
pub const ROW_CHUNK: usize = 32;

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// LayerNorm over rows of width `W = gamma.len()` (the kernel of
/// [`super::cpu::layer_norm_rows`]) that also writes `stats[2r] = mean`, `stats[2r+1] = rstd`
/// of each row for [`layer_norm_backward`].
///
/// # Shapes
/// `x, out: [rows, W]`, `stats: [rows, 2]`.
///
/// # Errors
/// [`Error::Internal`] when the lengths do not fit.
pub fn layer_norm_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    stats: &mut [f32],
) -> Result<()> {
    let w = gamma.len();
    if w == 0
        || beta.len() != w
        || !x.len().is_multiple_of(w)
        || out.len() != x.len()
        || stats.len() != 2 * (x.len() / w)
    {
        return Err(Error::Internal(format!(
            "layer_norm_forward: gamma {w}, beta {}, x {}, out {}, stats {}",
            beta.len(),
            x.len(),
            out.len(),
            stats.len()
        )));
    }
    let rows = x.len() / w;
    let (op, sp) = (OutPtr(out.as_mut_ptr()), OutPtr(stats.as_mut_ptr()));
    par_for(rows.div_ceil(ROW_CHUNK), rows * w >= 1 << 14, move |c| {
        let (r0, r1) = (c * ROW_CHUNK, ((c + 1) * ROW_CHUNK).min(rows));
        let (op, sp) = (op, sp);
        // SAFETY: chunk c writes rows r0..r1 of out and stats only (disjoint across chunks,
        // inside the buffers checked above).
        let (o, s) = unsafe {
            (
                std::slice::from_raw_parts_mut(op.0.add(r0 * w), (r1 - r0) * w),
                std::slice::from_raw_parts_mut(sp.0.add(2 * r0), 2 * (r1 - r0)),
            )
        };
        layer_norm_seq(&x[r0 * w..r1 * w], gamma, beta, eps, o, s);
    });
    Ok(())
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_bwd_impl<const FMA: bool>(
    dy: &[f32],
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    xhat: &mut [f32],
) {
    let w = gamma.len();
    let inv_w = 1.0 / w as f32;
    for (((dyr, xr), st), dxr) in dy
        .chunks_exact(w)
        .zip(x.chunks_exact(w))
        .zip(stats.chunks_exact(2))
        .zip(dx.chunks_exact_mut(w))
    {
        let (mean, rstd) = (st[0], st[1]);
        let mut s1 = 0f32;
        let mut s2 = 0f32;
        for ((xh, &xv), (&d, &g)) in xhat.iter_mut().zip(xr).zip(dyr.iter().zip(gamma)) {
            *xh = (xv - mean) * rstd;
            let gy = d * g;
            s1 += gy;
            s2 = fmadd::<FMA>(gy, *xh, s2);
        }
        let (c1, c2) = (s1 * inv_w, s2 * inv_w);
        for (((o, &xh), &d), &g) in dxr.iter_mut().zip(xhat.iter()).zip(dyr).zip(gamma) {
            *o += rstd * (d * g - c1 - xh * c2);
        }
        for (((a, b), &d), &xh) in dg.iter_mut().zip(db.iter_mut()).zip(dyr).zip(xhat.iter()) {
            *a = fmadd::<FMA>(d, xh, *a);
            *b += d;
        }
    }
}
dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn ln_bwd_seq / ln_bwd_avx2 => ln_bwd_impl(dy: &[f32], x: &[f32], stats: &[f32], gamma: &[f32], dx: &mut [f32], dg: &mut [f32], db: &mut [f32], xhat: &mut [f32])
);

/// LayerNorm backward over rows of width `W`: `dx += rstd * (g*dy - mean(g*dy) - xhat *
/// mean(g*dy*xhat))` with `xhat = (x - mean) * rstd` from the saved `stats`, and
/// `dgamma += sum_rows dy * xhat`, `dbeta += sum_rows dy`.
///
/// # Shapes
/// `dy, x, dx: [rows, W]`, `stats: [rows, 2]` (from [`layer_norm_forward`]), `dgamma, dbeta: [W]`.
///
/// # Errors
/// [`Error::Internal`] when the lengths do not fit.
pub fn layer_norm_backward(
    dy: &[f32],
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<()> {
    let w = gamma.len();
    if w == 0
        || !dy.len().is_multiple_of(w)
        || x.len() != dy.len()
        || dx.len() != dy.len()
        || stats.len() != 2 * (dy.len() / w)
        || dgamma.len() != w
        || dbeta.len() != w
    {
        return Err(Error::Internal(format!(
            "layer_norm_backward: W {w}, dy {}, x {}, dx {}, stats {}",
            dy.len(),
            x.len(),
            dx.len(),
            stats.len()
        )));
    }
    let rows = dy.len() / w;
    let chunks = rows.div_ceil(ROW_CHUNK);
    let mut partial = vec![0f32; chunks * 2 * w];
    let (xp, pp) = (OutPtr(dx.as_mut_ptr()), OutPtr(partial.as_mut_ptr()));
    par_for(chunks, rows * w >= 1 << 14, move |c| {
        let (r0, r1) = (c * ROW_CHUNK, ((c + 1) * ROW_CHUNK).min(rows));
        let (xp, pp) = (xp, pp);
        // SAFETY: chunk c writes rows r0..r1 of dx and its own 2W partial sums (disjoint).
        let (d, p) = unsafe {
            (
                std::slice::from_raw_parts_mut(xp.0.add(r0 * w), (r1 - r0) * w),
                std::slice::from_raw_parts_mut(pp.0.add(c * 2 * w), 2 * w),
            )
        };
        let (pg, pb) = p.split_at_mut(w);
        let mut xhat = vec![0f32; w];
        ln_bwd_seq(
            &dy[r0 * w..r1 * w],
            &x[r0 * w..r1 * w],
            &stats[2 * r0..2 * r1],
            gamma,
            d,
            pg,
            pb,
            &mut xhat,
        );
    });
    for p in partial.chunks_exact(2 * w) {
        for (a, v) in dgamma.iter_mut().zip(&p[..w]) {
            *a += v;
        }
        for (a, v) in dbeta.iter_mut().zip(&p[w..]) {
            *a += v;
        }
    }
    Ok(())
}

/// `out[c] += sum_r y[r * ld + col + c]` for `c < width`, `r < rows` (a bias gradient), in fixed
/// row chunks.
///
/// # Errors
/// [`Error::Internal`] when `y` is too short.
pub fn column_sums(y: &[f32], rows: usize, ld: usize, col: usize, out: &mut [f32]) -> Result<()> {
    let w = out.len();
    if rows == 0 || w == 0 {
        return Ok(());
    }
    if col + w > ld || y.len() < (rows - 1) * ld + col + w {
        return Err(Error::Internal(format!(
            "column_sums: rows {rows}, ld {ld}, col {col}, width {w}, y {}",
            y.len()
        )));
    }
    let chunks = rows.div_ceil(ROW_CHUNK);
    let mut partial = vec![0f32; chunks * w];
    let pp = OutPtr(partial.as_mut_ptr());
    par_for(chunks, rows * w >= 1 << 15, move |c| {
        let pp = pp;
        // SAFETY: chunk c writes its own w partial sums.
        let p = unsafe { std::slice::from_raw_parts_mut(pp.0.add(c * w), w) };
        for r in c * ROW_CHUNK..((c + 1) * ROW_CHUNK).min(rows) {
            for (a, v) in p.iter_mut().zip(&y[r * ld + col..r * ld + col + w]) {
                *a += v;
            }
        }
    });
    for p in partial.chunks_exact(w) {
        for (a, v) in out.iter_mut().zip(p) {
            *a += v;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// GELU

#[inline(always)]
fn bias_gelu_save_impl<const FMA: bool>(u: &mut [f32], bias: &[f32], g: &mut [f32]) {
    for (ur, gr) in u
        .chunks_exact_mut(bias.len())
        .zip(g.chunks_exact_mut(bias.len()))
    {
        for ((v, o), &b) in ur.iter_mut().zip(gr.iter_mut()).zip(bias) {
            let x = *v + b;
            *v = x;
            *o = x * 0.5 * two_phi::<FMA>(x);
        }
    }
}
dispatch!(fn bias_gelu_save_seq / bias_gelu_save_avx2 => bias_gelu_save_impl(u: &mut [f32], bias: &[f32], g: &mut [f32]));

/// `u += bias` (the pre-activation, kept for the backward pass) and `g = GELU(u)` (exact GELU,
/// same maths as [`super::cpu::bias_gelu_rows`]), over rows of width `bias.len()`.
///
/// # Errors
/// [`Error::Internal`] when the lengths do not fit.
pub fn bias_gelu_save(u: &mut [f32], bias: &[f32], g: &mut [f32]) -> Result<()> {
    let w = bias.len();
    if w == 0 || !u.len().is_multiple_of(w) || g.len() != u.len() {
        return Err(Error::Internal(format!(
            "bias_gelu_save: bias {w}, u {}, g {}",
            u.len(),
            g.len()
        )));
    }
    let gp = OutPtr(g.as_mut_ptr());
    super::cpu::par_rows_mut(u, w, 1 << 14, move |r0, rows| {
        let gp = gp;
        // SAFETY: the rows r0.. of g matching this chunk of u (disjoint across chunks).
        let g = unsafe { std::slice::from_raw_parts_mut(gp.0.add(r0 * w), rows.len()) };
        bias_gelu_save_seq(rows, bias, g);
    });
    Ok(())
}

#[inline(always)]
fn gelu_bwd_impl<const FMA: bool>(dg: &mut [f32], u: &[f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (d, &x) in dg.iter_mut().zip(u) {
        let pdf = INV_SQRT_2PI * exp_f32::<FMA>(-0.5 * x * x);
        *d *= fmadd::<FMA>(x, pdf, 0.5 * two_phi::<FMA>(x));
    }
}
dispatch!(fn gelu_bwd_seq / gelu_bwd_avx2 => gelu_bwd_impl(dg: &mut [f32], u: &[f32]));

/// `dg *= GELU'(u)` elementwise: `GELU'(u) = Phi(u) + u * phi(u)`.
///
/// # Errors
/// [`Error::Internal`] when the lengths differ.
pub fn gelu_backward(dg: &mut [f32], u: &[f32]) -> Result<()> {
    if dg.len() != u.len() {
        return Err(Error::Internal(format!(
            "gelu_backward: dg {}, u {}",
            dg.len(),
            u.len()
        )));
    }
    super::cpu::par_rows_mut(dg, 1, 1 << 14, move |r0, d| {
        gelu_bwd_seq(d, &u[r0..r0 + d.len()])
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Attention

/// Sizes and layout of the attention of one block on the `[M, qDim + 2 kvDim]` projection
/// buffer (`M = B*T` rows; q heads at columns `h*D`, K head `kh` at `qDim + kh*D`, V head `kh`
/// at `qDim + kvDim + kh*D`).
#[derive(Debug, Clone, Copy)]
pub struct AttnShape<'a> {
    /// `B`.
    pub batch: usize,
    /// `T`.
    pub seq: usize,
    /// `NH`.
    pub heads: usize,
    /// `NKV`.
    pub kv_heads: usize,
    /// `D`.
    pub head_dim: usize,
    /// Which keys each query row reads: [`Mask::padded`] over `T` (offset 0, valid positions
    /// per sequence in `1..=T`; query rows past a sequence's length are padding).
    pub mask: &'a Mask,
    /// Only the last valid query row of each sequence (`i = L_b - 1`) is computed (the last
    /// block under `last_timestep` output): the forward writes `o` and `lse` of those rows only,
    /// the backward reads `dout` of those rows only and writes `dq = 0` elsewhere.
    pub last_only: bool,
}

impl AttnShape<'_> {
    fn qd(&self) -> usize {
        self.heads * self.head_dim
    }
    fn kvd(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    fn wd(&self) -> usize {
        self.qd() + 2 * self.kvd()
    }
    fn len(&self, b: usize) -> usize {
        self.mask.key_len(b)
    }
    fn check(&self, qkv: usize, o: usize, lse: usize) -> Result<()> {
        let m = self.batch * self.seq;
        if self.kv_heads == 0
            || !self.heads.is_multiple_of(self.kv_heads)
            || qkv != m * self.wd()
            || o != m * self.qd()
            || lse != m * self.heads
            || self.mask.check(self.batch, self.seq).is_err()
            || (0..self.batch).any(|b| self.mask.offset(b) != 0 || self.len(b) < 1)
        {
            return Err(Error::Internal(format!(
                "attention (training): {self:?}, qkv {qkv}, o {o}, lse {lse}"
            )));
        }
        Ok(())
    }
}

/// Key-axis vector width of the attention kernels: score rows are padded to a multiple of it
/// (zeros in the transposed K/V panels, masked scores), so every loop runs whole vectors.
const W: usize = 16;

/// `kt[dd * ldt + j] = src[(row0 + j) * ld + col + dd]` for `j < n`, `dd < d`, zeros for
/// `n <= j < ldt` (`ldt = n` rounded up to [`W`]). Returns `ldt`.
fn transpose_into(
    kt: &mut Vec<f32>,
    src: &[f32],
    row0: usize,
    n: usize,
    ld: usize,
    col: usize,
    d: usize,
) -> usize {
    let ldt = n.next_multiple_of(W);
    kt.clear();
    kt.resize(d * ldt, 0.0);
    for j in 0..n {
        let r = &src[(row0 + j) * ld + col..(row0 + j) * ld + col + d];
        for (dd, &v) in r.iter().enumerate() {
            kt[dd * ldt + j] = v;
        }
    }
    ldt
}

/// Query rows per attention tile: the (position, query head) pairs of one KV group, position
/// major, so the rows of a tile share their causal limit up to a few keys.
const R: usize = 8;

type Lanes = [f32; W];

/// The rows of one attention job: `(position i, query head h)` pairs over the job's query
/// positions and the `group` query heads of its KV head (from `h0`), position-major, in tiles of
/// [`R`] rows.
struct TileRows {
    pos: Vec<usize>,
    /// Start of the visible keys of each position ([`Mask::keys_for`]; 0 without a window).
    starts: Vec<usize>,
    /// End of the visible keys of each position ([`Mask::keys_for`]).
    ends: Vec<usize>,
    group: usize,
    h0: usize,
}

impl TileRows {
    /// The rows of job (sequence `b` of length `l`, KV head `kh`): positions `0..l`, or `l - 1`
    /// alone under `last_only`.
    fn new(sh: &AttnShape<'_>, b: usize, kh: usize) -> Self {
        let group = sh.heads / sh.kv_heads;
        let l = sh.len(b);
        let pos: Vec<usize> = if sh.last_only {
            vec![l - 1]
        } else {
            (0..l).collect()
        };
        let starts = pos.iter().map(|&i| sh.mask.keys_for(b, i).start).collect();
        let ends = pos.iter().map(|&i| sh.mask.keys_for(b, i).end).collect();
        TileRows {
            pos,
            starts,
            ends,
            group,
            h0: kh * group,
        }
    }

    /// Row `p` as `(i, h)`.
    fn row(&self, p: usize) -> (usize, usize) {
        (self.pos[p / self.group], self.h0 + p % self.group)
    }

    /// Row `p`'s visible keys.
    fn keys(&self, p: usize) -> (usize, usize) {
        (self.starts[p / self.group], self.ends[p / self.group])
    }

    /// Tiles as `(first row, rows, first chunk, key span)`: the key span covers the tile's last
    /// (largest) causal limit, rounded up to whole [`W`]-vectors; chunks before the first
    /// (before the tile's first, smallest, sliding-window start) are never read, their
    /// probabilities and score gradients stay 0.
    fn tiles(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        let pairs = self.pos.len() * self.group;
        (0..pairs).step_by(R).map(move |p0| {
            let nr = R.min(pairs - p0);
            let c0 = self.keys(p0).0 / W;
            (p0, nr, c0, self.keys(p0 + nr - 1).1.next_multiple_of(W))
        })
    }
}

/// `acc + a * x` lane by lane.
#[inline(always)]
fn fma_lanes<const FMA: bool>(a: f32, x: &Lanes, acc: Lanes) -> Lanes {
    let mut out = [0f32; W];
    for l in 0..W {
        out[l] = fmadd::<FMA>(a, x[l], acc[l]);
    }
    out
}

/// `acc + a * x` lane by lane, `a` a vector.
#[inline(always)]
fn mul_add_lanes<const FMA: bool>(a: &Lanes, x: &Lanes, acc: Lanes) -> Lanes {
    let mut out = [0f32; W];
    for l in 0..W {
        out[l] = fmadd::<FMA>(a[l], x[l], acc[l]);
    }
    out
}

/// `acc[r][x] = sum_dd a[r * d + dd] * bt[dd * ldt + c * W + x]` for the `R` rows of a tile,
/// one [`W`]-chunk `c` of the key axis (register-blocked: each chunk of `bt` is loaded once for
/// all rows).
#[inline(always)]
fn tile_chunk<const FMA: bool>(
    a: &[f32],
    d: usize,
    bt: &[f32],
    ldt: usize,
    c: usize,
) -> [Lanes; R] {
    let mut acc = [[0f32; W]; R];
    for dd in 0..d {
        let kc: &Lanes = bt[dd * ldt + c * W..dd * ldt + (c + 1) * W]
            .try_into()
            .expect("W lanes");
        for r in 0..R {
            acc[r] = fma_lanes::<FMA>(a[r * d + dd], kc, acc[r]);
        }
    }
    acc
}

/// `out[r * d + dd] = sum_j p[r * np + j] * bt[dd * ldt + j]` over whole chunks `c0..np / W`
/// (`np` a multiple of [`W`]; `p` is 0 in the chunks before `c0`).
#[inline(always)]
fn tile_dots<const FMA: bool>(
    p: &[f32],
    (c0, np): (usize, usize),
    bt: &[f32],
    ldt: usize,
    d: usize,
    out: &mut [f32],
) {
    for dd in 0..d {
        let mut acc = [[0f32; W]; R];
        for c in c0..np / W {
            let kc: &Lanes = bt[dd * ldt + c * W..dd * ldt + (c + 1) * W]
                .try_into()
                .expect("W lanes");
            for r in 0..R {
                let pc: &Lanes = p[r * np + c * W..r * np + (c + 1) * W]
                    .try_into()
                    .expect("W lanes");
                acc[r] = mul_add_lanes::<FMA>(pc, kc, acc[r]);
            }
        }
        for (r, ar) in acc.iter().enumerate() {
            out[r * d + dd] = ar.iter().sum();
        }
    }
}

/// Scratch of one attention job.
#[derive(Default)]
struct AttnScratch {
    kt: Vec<f32>,
    vt: Vec<f32>,
    dkt: Vec<f32>,
    dvt: Vec<f32>,
    /// `[R, np]` probabilities.
    p: Vec<f32>,
    /// `[R, np]` score gradients.
    ds: Vec<f32>,
    /// `[R, D]` tile rows: scaled q, raw q, dO, dQ or O.
    qs: Vec<f32>,
    qr: Vec<f32>,
    gr: Vec<f32>,
    out: Vec<f32>,
}

impl AttnScratch {
    fn rows(&mut self, d: usize, np: usize) {
        for v in [&mut self.qs, &mut self.qr, &mut self.gr, &mut self.out] {
            v.clear();
            v.resize(R * d, 0.0);
        }
        for v in [&mut self.p, &mut self.ds] {
            v.clear();
            v.resize(R * np, 0.0);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attn_fwd_job_impl<const FMA: bool>(
    qkv: &[f32],
    sh: &AttnShape<'_>,
    b: usize,
    kh: usize,
    scale: f32,
    o: OutPtr,
    lse: OutPtr,
    sc: &mut AttnScratch,
) {
    let (t, d, wd, qd, kvd) = (sh.seq, sh.head_dim, sh.wd(), sh.qd(), sh.kvd());
    let group = sh.heads / sh.kv_heads;
    let l = sh.len(b);
    let base = b * t;
    let ldt = transpose_into(&mut sc.kt, qkv, base, l, wd, qd + kh * d, d);
    transpose_into(&mut sc.vt, qkv, base, l, wd, qd + kvd + kh * d, d);
    // SAFETY (every write below): this job's own elements (see `attention_forward`), inside
    // the checked buffers.
    let orow = |i: usize, h: usize| unsafe {
        std::slice::from_raw_parts_mut(o.0.add((base + i) * qd + h * d), d)
    };
    let lse_at = |i: usize, h: usize| unsafe { &mut *lse.0.add((b * sh.heads + h) * t + i) };
    if !sh.last_only {
        for i in l..t {
            for h in kh * group..(kh + 1) * group {
                orow(i, h).fill(0.0);
                *lse_at(i, h) = 0.0;
            }
        }
    }
    let rows = TileRows::new(sh, b, kh);
    for (p0, nr, c0, np) in rows.tiles() {
        sc.rows(d, np);
        let mut lim = [(0usize, 0usize); R];
        for (r, lr) in lim.iter_mut().enumerate().take(nr) {
            let (i, h) = rows.row(p0 + r);
            *lr = rows.keys(p0 + r);
            let q = &qkv[(base + i) * wd + h * d..(base + i) * wd + (h + 1) * d];
            for (a, &v) in sc.qs[r * d..(r + 1) * d].iter_mut().zip(q) {
                *a = v * scale;
            }
        }
        for c in c0..np / W {
            let acc = tile_chunk::<FMA>(&sc.qs, d, &sc.kt, ldt, c);
            for (r, ar) in acc.iter().enumerate() {
                for (x, &v) in ar.iter().enumerate() {
                    let j = c * W + x;
                    sc.p[r * np + j] = if j >= lim[r].0 && j < lim[r].1 {
                        v
                    } else {
                        f32::NEG_INFINITY
                    };
                }
            }
        }
        let mut sums = [1f32; R];
        let mut maxs = [0f32; R];
        for r in 0..nr {
            let row = &mut sc.p[r * np + c0 * W..(r + 1) * np];
            let mx = row[lim[r].0 - c0 * W..lim[r].1 - c0 * W]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mut part = [0f32; W];
            for cv in row.chunks_exact_mut(W) {
                for x in 0..W {
                    cv[x] = exp_f32::<FMA>(cv[x] - mx);
                    part[x] += cv[x];
                }
            }
            sums[r] = part.iter().sum();
            maxs[r] = mx;
        }
        for r in nr..R {
            sc.p[r * np..(r + 1) * np].fill(0.0);
        }
        tile_dots::<FMA>(&sc.p, (c0, np), &sc.vt, ldt, d, &mut sc.out);
        for r in 0..nr {
            let (i, h) = rows.row(p0 + r);
            let inv = 1.0 / sums[r];
            for (ov, &a) in orow(i, h).iter_mut().zip(&sc.out[r * d..(r + 1) * d]) {
                *ov = a * inv;
            }
            *lse_at(i, h) = maxs[r] + sums[r].ln();
        }
    }
}
dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn attn_fwd_job / attn_fwd_job_avx2 => attn_fwd_job_impl(qkv: &[f32], sh: &AttnShape<'_>, b: usize, kh: usize, scale: f32, o: OutPtr, lse: OutPtr, sc: &mut AttnScratch)
);

/// Causal GQA attention (SPEC section 2) on the projection buffer, saving the log-sum-exp of
/// every query row: `o[r, h*D..] = softmax(scale * q k^T) v` over keys `j <= i`, `j < L_b`
/// and, with a sliding window `W`, `j > i - W` (the mask's [`Mask::keys_for`]; key chunks before
/// a tile's window are skipped) (query head `h` reads KV head `h / (NH/NKV)`),
/// `lse[(b*NH + h)*T + i] = log sum_j exp(s_ij)`.
/// Padded query rows (`i >= L_b`) get `o = 0`, `lse = 0`: nothing valid reads them.
///
/// # Shapes
/// `qkv: [B*T, qDim + 2 kvDim]`, `o: [B*T, qDim]`, `lse: [B, NH, T]`.
///
/// # Errors
/// [`Error::Internal`] when the sizes do not fit `sh`.
pub fn attention_forward(
    qkv: &[f32],
    sh: AttnShape<'_>,
    scale: f32,
    o: &mut [f32],
    lse: &mut [f32],
) -> Result<()> {
    sh.check(qkv.len(), o.len(), lse.len())?;
    // Job (b, kh) writes only the o columns of the query heads of KV head kh in rows of
    // sequence b, and the lse entries of those heads and sequence: disjoint across jobs.
    let (op, lp) = (OutPtr(o.as_mut_ptr()), OutPtr(lse.as_mut_ptr()));
    let jobs = sh.batch * sh.kv_heads;
    par_for(jobs, jobs > 1, move |job| {
        let mut sc = AttnScratch::default();
        attn_fwd_job(
            qkv,
            &sh,
            job / sh.kv_heads,
            job % sh.kv_heads,
            scale,
            op,
            lp,
            &mut sc,
        );
    });
    Ok(())
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attn_bwd_job_impl<const FMA: bool>(
    qkv: &[f32],
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    sh: &AttnShape<'_>,
    b: usize,
    kh: usize,
    scale: f32,
    dqkv: OutPtr,
    sc: &mut AttnScratch,
) {
    let (t, d, wd, qd, kvd) = (sh.seq, sh.head_dim, sh.wd(), sh.qd(), sh.kvd());
    let group = sh.heads / sh.kv_heads;
    let l = sh.len(b);
    let base = b * t;
    let (kcol, vcol) = (qd + kh * d, qd + kvd + kh * d);
    let ldt = transpose_into(&mut sc.kt, qkv, base, l, wd, kcol, d);
    transpose_into(&mut sc.vt, qkv, base, l, wd, vcol, d);
    for buf in [&mut sc.dkt, &mut sc.dvt] {
        buf.clear();
        buf.resize(d * ldt, 0.0);
    }
    // SAFETY (every write below): this job's own dq, dk, dv columns (see
    // `attention_backward`), inside the buffer.
    let dq_row = |row: usize, h: usize| unsafe {
        std::slice::from_raw_parts_mut(dqkv.0.add(row * wd + h * d), d)
    };
    for i in 0..t {
        for h in kh * group..(kh + 1) * group {
            dq_row(base + i, h).fill(0.0);
        }
    }
    let rows = TileRows::new(sh, b, kh);
    for (p0, nr, c0, np) in rows.tiles() {
        sc.rows(d, np);
        let (lim, lse_r, di) =
            load_bwd_rows::<FMA>((qkv, o, lse, dout), sh, b, &rows, (p0, nr), scale, sc);
        // P recomputed from the saved log-sum-exp; dS = P (dO V^T - D_i) * scale. Masked keys
        // and the tile's unused rows have P = 0, hence dS = 0.
        for c in c0..np / W {
            let sacc = tile_chunk::<FMA>(&sc.qs, d, &sc.kt, ldt, c);
            let gacc = tile_chunk::<FMA>(&sc.gr, d, &sc.vt, ldt, c);
            for r in 0..R {
                for x in 0..W {
                    let j = c * W + x;
                    let p = if r < nr && j >= lim[r].0 && j < lim[r].1 {
                        exp_f32::<FMA>(sacc[r][x] - lse_r[r])
                    } else {
                        0.0
                    };
                    sc.p[r * np + j] = p;
                    sc.ds[r * np + j] = p * (gacc[r][x] - di[r]) * scale;
                }
            }
        }
        tile_dots::<FMA>(&sc.ds, (c0, np), &sc.kt, ldt, d, &mut sc.out);
        for r in 0..nr {
            let (i, h) = rows.row(p0 + r);
            dq_row(base + i, h).copy_from_slice(&sc.out[r * d..(r + 1) * d]);
        }
        accumulate_dk_dv::<FMA>(sc, d, ldt, (c0, np));
    }
    store_dk_dv(sc, dqkv, (base, t, l, wd, d), (kcol, vcol), ldt);
}

/// Loads tile rows `p0..p0 + nr` (of `rows`) for the backward: `q`, `dO` and `q * scale` into
/// the scratch, and per row its visible keys `(start, end)`, saved log-sum-exp and
/// `D_i = dO_i . O_i`.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn load_bwd_rows<const FMA: bool>(
    (qkv, o, lse, dout): (&[f32], &[f32], &[f32], &[f32]),
    sh: &AttnShape<'_>,
    b: usize,
    rows: &TileRows,
    (p0, nr): (usize, usize),
    scale: f32,
    sc: &mut AttnScratch,
) -> ([(usize, usize); R], [f32; R], [f32; R]) {
    let (t, d, wd, qd) = (sh.seq, sh.head_dim, sh.wd(), sh.qd());
    let base = b * t;
    let mut lim = [(0usize, 0usize); R];
    let mut lse_r = [0f32; R];
    let mut di = [0f32; R];
    for r in 0..nr {
        let (i, h) = rows.row(p0 + r);
        let row = base + i;
        lim[r] = rows.keys(p0 + r);
        lse_r[r] = lse[(b * sh.heads + h) * t + i];
        let q = &qkv[row * wd + h * d..row * wd + (h + 1) * d];
        let g = &dout[row * qd + h * d..row * qd + (h + 1) * d];
        let orow = &o[row * qd + h * d..row * qd + (h + 1) * d];
        sc.qr[r * d..(r + 1) * d].copy_from_slice(q);
        sc.gr[r * d..(r + 1) * d].copy_from_slice(g);
        for (a, &v) in sc.qs[r * d..(r + 1) * d].iter_mut().zip(q) {
            *a = v * scale;
        }
        di[r] = g
            .iter()
            .zip(orow)
            .fold(0f32, |s, (&a, &c)| fmadd::<FMA>(a, c, s));
    }
    (lim, lse_r, di)
}

/// `dK^T += Q^T dS` and `dV^T += dO^T P` for one tile (key chunks `c0..np / W`, transposed
/// accumulators of leading dimension `ldt`).
#[inline(always)]
fn accumulate_dk_dv<const FMA: bool>(
    sc: &mut AttnScratch,
    d: usize,
    ldt: usize,
    (c0, np): (usize, usize),
) {
    for dd in 0..d {
        for c in c0..np / W {
            let off = dd * ldt + c * W;
            let mut ak: Lanes = sc.dkt[off..off + W].try_into().expect("W lanes");
            let mut av: Lanes = sc.dvt[off..off + W].try_into().expect("W lanes");
            for r in 0..R {
                let dsr: &Lanes = sc.ds[r * np + c * W..r * np + (c + 1) * W]
                    .try_into()
                    .expect("W lanes");
                let pr: &Lanes = sc.p[r * np + c * W..r * np + (c + 1) * W]
                    .try_into()
                    .expect("W lanes");
                ak = fma_lanes::<FMA>(sc.qr[r * d + dd], dsr, ak);
                av = fma_lanes::<FMA>(sc.gr[r * d + dd], pr, av);
            }
            sc.dkt[off..off + W].copy_from_slice(&ak);
            sc.dvt[off..off + W].copy_from_slice(&av);
        }
    }
}

/// Writes the job's dK and dV (transposed accumulators) into `dqkv` rows `base..base + T` at
/// columns `kcol`/`vcol`; positions `>= l` (padding) get 0.
#[inline(always)]
fn store_dk_dv(
    sc: &AttnScratch,
    dqkv: OutPtr,
    (base, t, l, wd, d): (usize, usize, usize, usize, usize),
    (kcol, vcol): (usize, usize),
    ldt: usize,
) {
    for j in 0..t {
        let row = base + j;
        // SAFETY: this job's own dk and dv columns (disjoint ranges), inside the buffer.
        let dk = unsafe { std::slice::from_raw_parts_mut(dqkv.0.add(row * wd + kcol), d) };
        let dv = unsafe { std::slice::from_raw_parts_mut(dqkv.0.add(row * wd + vcol), d) };
        for dd in 0..d {
            dk[dd] = if j < l { sc.dkt[dd * ldt + j] } else { 0.0 };
            dv[dd] = if j < l { sc.dvt[dd * ldt + j] } else { 0.0 };
        }
    }
}
dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn attn_bwd_job / attn_bwd_job_avx2 => attn_bwd_job_impl(qkv: &[f32], o: &[f32], lse: &[f32], dout: &[f32], sh: &AttnShape<'_>, b: usize, kh: usize, scale: f32, dqkv: OutPtr, sc: &mut AttnScratch)
);

/// Backward of [`attention_forward`]: from `dout = dL/do` writes `dqkv = dL/d(q, k, v)` (the
/// gradients with respect to the rotated q and k and to v, in the projection buffer's layout;
/// padded rows 0). One job per (sequence, KV head) owns the dK, dV of that head and the dQ of
/// its query heads.
///
/// # Shapes
/// `qkv, dqkv: [B*T, qDim + 2 kvDim]`, `o, dout: [B*T, qDim]`, `lse: [B, NH, T]`.
///
/// # Errors
/// [`Error::Internal`] when the sizes do not fit `sh`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    qkv: &[f32],
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    sh: AttnShape<'_>,
    scale: f32,
    dqkv: &mut [f32],
) -> Result<()> {
    sh.check(qkv.len(), o.len(), lse.len())?;
    if dout.len() != o.len() || dqkv.len() != qkv.len() {
        return Err(Error::Internal(format!(
            "attention_backward: dout {}, dqkv {}",
            dout.len(),
            dqkv.len()
        )));
    }
    // Job (b, kh) writes only the dq columns of the query heads of KV head kh and the dk/dv
    // columns of kh, in rows of sequence b: disjoint across jobs.
    let dp = OutPtr(dqkv.as_mut_ptr());
    let jobs = sh.batch * sh.kv_heads;
    par_for(jobs, jobs > 1, move |job| {
        let mut sc = AttnScratch::default();
        attn_bwd_job(
            qkv,
            o,
            lse,
            dout,
            &sh,
            job / sh.kv_heads,
            job % sh.kv_heads,
            scale,
            dp,
            &mut sc,
        );
    });
    Ok(())
}
