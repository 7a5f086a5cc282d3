//! The memory budget: one process-wide limit on the bytes the crate's live objects and running
//! calls hold, checked *before* anything is allocated.
//!
//! Every model and attention layer reserves its parameters, every [`crate::Session`] its KV
//! cache, every trainer its gradients and AdamW moments, and every forward / push / training
//! step its input and working buffers for as long as the call runs. A reservation that would
//! take [`in_use`] past [`limit`] fails with [`Error::OutOfMemory`] (naming the buffer, the
//! bytes it needs, the limit and the bytes already in use) and allocates nothing; dropping the
//! object (a binding's `dispose()`) returns its bytes, after which the same request succeeds.
//!
//! The default limit is what the machine has: on Linux the smallest of `MemTotal` in
//! `/proc/meminfo`, the cgroup `memory.max` (v2) or `memory.limit_in_bytes` (v1), and what
//! `RLIMIT_AS` / `RLIMIT_DATA` leave past the address space mapped when it is first read; on wasm32 the 4 GiB a 32-bit
//! linear memory can address; elsewhere no limit (`u64::MAX`). [`set_limit`] changes it.
//!
//! The accounting covers the crate's own large buffers (f32 tensors), not small bookkeeping
//! vectors, and it is an estimate of a call's peak working set, not an allocator hook: it exists
//! to turn "this request cannot fit" into an error instead of an abort or a swap storm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// 4 GiB: what a wasm32 linear memory can address, and so the largest limit there.
pub const WASM32_ADDRESS_SPACE: u64 = 1 << 32;

/// The limit set by [`set_limit`]; 0 = the default ([`default_limit`]).
static LIMIT: AtomicU64 = AtomicU64::new(0);
/// Bytes held by live reservations.
static IN_USE: AtomicU64 = AtomicU64::new(0);

/// The default limit in bytes (computed once): Linux `min(MemTotal, cgroup limit, rlimit left)`;
/// wasm32 4 GiB ([`WASM32_ADDRESS_SPACE`]); other targets `u64::MAX`.
pub fn default_limit() -> u64 {
    static DEFAULT: OnceLock<u64> = OnceLock::new();
    *DEFAULT.get_or_init(machine_memory)
}

#[cfg(target_arch = "wasm32")]
fn machine_memory() -> u64 {
    WASM32_ADDRESS_SPACE
}

#[cfg(all(not(target_arch = "wasm32"), target_os = "linux"))]
fn machine_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| kib.saturating_mul(1024))
        .unwrap_or(u64::MAX);
    // cgroup v2: "max" or a byte count.
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    total
        .min(cgroup)
        .min(cgroup_v1_limit())
        .min(address_space_left())
}

/// cgroup v1 `memory.limit_in_bytes` (a huge number, not "max", when unlimited).
#[cfg(all(not(target_arch = "wasm32"), target_os = "linux"))]
fn cgroup_v1_limit() -> u64 {
    std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX)
}

/// What `RLIMIT_AS` / `RLIMIT_DATA` (`ulimit -v`, `ulimit -d`) leave to this process: the
/// smaller soft limit less the address space already mapped (`VmSize`, resp. `VmData`, of
/// `/proc/self/status`); `u64::MAX` when neither is set.
#[cfg(all(not(target_arch = "wasm32"), target_os = "linux"))]
fn address_space_left() -> u64 {
    // `rlim_t` is u64 on 64-bit Linux but `c_ulong` (u32) on 32-bit glibc targets: keep the cast.
    #[allow(clippy::unnecessary_cast)]
    fn soft(resource: libc::__rlimit_resource_t) -> u64 {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
        let ok = unsafe { libc::getrlimit(resource, &mut r) } == 0;
        if ok && r.rlim_cur != libc::RLIM_INFINITY {
            r.rlim_cur as u64
        } else {
            u64::MAX
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let used = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib.saturating_mul(1024))
    };
    let left = |limit: u64, key: &str| {
        if limit == u64::MAX {
            u64::MAX
        } else {
            limit.saturating_sub(used(key))
        }
    };
    left(soft(libc::RLIMIT_AS), "VmSize:").min(left(soft(libc::RLIMIT_DATA), "VmData:"))
}

#[cfg(all(not(target_arch = "wasm32"), not(target_os = "linux")))]
fn machine_memory() -> u64 {
    u64::MAX
}

/// The current limit in bytes.
pub fn limit() -> u64 {
    match LIMIT.load(Ordering::Relaxed) {
        0 => default_limit(),
        l => l,
    }
}

/// [`set_limit`] for a limit that comes as a JavaScript number (what both bindings pass):
/// `None` = back to the default; otherwise a whole number of bytes >= 1 (values past
/// `u64::MAX` saturate). Returns the limit now in force, in bytes.
///
/// # Errors
/// [`Error::InvalidOption`] (`memoryLimit`) for 0, a negative, fractional or non-finite number.
pub fn set_limit_f64(bytes: Option<f64>) -> Result<f64> {
    let bytes = match bytes {
        None => None,
        Some(b) if b.is_finite() && b >= 1.0 && b.fract() == 0.0 => {
            Some(b.min(u64::MAX as f64) as u64)
        }
        Some(b) => {
            return Err(Error::option(
                "memoryLimit",
                "a whole number of bytes >= 1",
                b,
            ))
        }
    };
    set_limit(bytes).map(|l| l as f64)
}

/// Sets the limit in bytes (`None`: back to [`default_limit`]) and returns the limit now in
/// force. On wasm32 a limit above 4 GiB is capped there. Lowering the limit below [`in_use`]
/// frees nothing; it makes the next reservations fail until enough is released.
///
/// # Errors
/// [`Error::InvalidOption`] (`memoryLimit`) for `Some(0)`.
pub fn set_limit(bytes: Option<u64>) -> Result<u64> {
    match bytes {
        Some(0) => Err(Error::option(
            "memoryLimit",
            "a byte count >= 1 (or none for the machine's memory)",
            0,
        )),
        Some(b) => {
            let b = if cfg!(target_arch = "wasm32") {
                b.min(WASM32_ADDRESS_SPACE)
            } else {
                b
            };
            LIMIT.store(b, Ordering::Relaxed);
            Ok(b)
        }
        None => {
            LIMIT.store(0, Ordering::Relaxed);
            Ok(default_limit())
        }
    }
}

/// Bytes held now by live reservations (models, layers, sessions, trainers, running calls).
pub fn in_use() -> u64 {
    IN_USE.load(Ordering::Relaxed)
}

/// Bytes reserved under the budget; released when dropped. Held by the object that owns the
/// memory (shared through an `Arc` by clones that share the memory).
#[derive(Debug)]
pub struct Reservation {
    bytes: u64,
}

impl Reservation {
    /// The bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        IN_USE.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Reserves `bytes` for `what` if `in_use() + bytes <= limit()`.
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what`, with the bytes requested, the limit and the bytes in use.
pub fn reserve(what: &str, bytes: u64) -> Result<Reservation> {
    let limit = limit();
    let mut cur = IN_USE.load(Ordering::Relaxed);
    loop {
        let next = cur.checked_add(bytes).filter(|&n| n <= limit);
        let Some(next) = next else {
            return Err(Error::OutOfMemory {
                what: what.into(),
                requested: bytes,
                limit,
                in_use: cur,
            });
        };
        match IN_USE.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(Reservation { bytes }),
            Err(actual) => cur = actual,
        }
    }
}

/// Bytes of `f32` values with the given dims (saturating), for reservations.
pub fn f32_bytes(dims: &[usize]) -> u64 {
    dims.iter().fold(4u64, |n, &d| n.saturating_mul(d as u64))
}

/// Reserves the sum of several `f32` buffers (each `(dims)`) as one reservation for `what`.
///
/// # Errors
/// As [`reserve`].
pub fn reserve_f32(what: &str, buffers: &[&[usize]]) -> Result<Reservation> {
    let bytes = buffers
        .iter()
        .fold(0u64, |n, dims| n.saturating_add(f32_bytes(dims)));
    reserve(what, bytes)
}

/// A zeroed `Vec<f32>` of `len` values for `what`, allocated fallibly: a refusal by the
/// allocator (an address-space limit, an exhausted wasm memory) is [`Error::OutOfMemory`]
/// naming `what` and its bytes instead of an abort. Callers reserve the bytes first.
///
/// # Errors
/// [`Error::OutOfMemory`] when the size overflows `isize` or the allocator refuses it.
pub fn try_zeroed_f32(what: &str, len: usize) -> Result<Vec<f32>> {
    let refused = || Error::OutOfMemory {
        what: what.into(),
        requested: f32_bytes(&[len]),
        limit: limit(),
        in_use: in_use(),
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(len).map_err(|_| refused())?;
    // SAFETY: `layout` has a non-zero size (len >= 1).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<f32>();
    if ptr.is_null() {
        return Err(refused());
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `len` f32 values (what a
    // `Vec<f32>` of capacity `len` deallocates with), and every value is initialised (zero
    // bits are 0.0). Zeroed pages (calloc) are not touched until written.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// A copy of `data` for `what` (a call's input, copied into a tensor), allocated fallibly as
/// [`try_zeroed_f32`]: candle's `Tensor::from_slice` copies infallibly, which on wasm32 traps
/// (an abort) when the copy does not fit the memory left. Callers reserve the bytes first.
///
/// # Errors
/// As [`try_zeroed_f32`].
pub fn try_copy_f32(what: &str, data: &[f32]) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(data.len())
        .map_err(|_| Error::OutOfMemory {
            what: what.into(),
            requested: f32_bytes(&[data.len()]),
            limit: limit(),
            in_use: in_use(),
        })?;
    v.extend_from_slice(data);
    Ok(v)
}

/// Resizes `v` to `len` values (new ones zero), growing its allocation fallibly as
/// [`try_zeroed_f32`].
///
/// # Errors
/// As [`try_zeroed_f32`].
pub fn try_grow_f32(what: &str, v: &mut Vec<f32>, len: usize) -> Result<()> {
    if v.capacity() == 0 {
        *v = try_zeroed_f32(what, len)?;
    } else if len > v.len() {
        let more = len - v.len();
        if len > v.capacity() {
            v.try_reserve_exact(len - v.len())
                .map_err(|_| Error::OutOfMemory {
                    what: what.into(),
                    requested: f32_bytes(&[len]),
                    limit: limit(),
                    in_use: in_use(),
                })?;
        }
        v.extend(std::iter::repeat_n(0.0, more));
    } else {
        v.truncate(len);
    }
    Ok(())
}

/// The largest buffer one allocation may hold here: `isize::MAX` bytes (2 GiB on wasm32, where
/// index arithmetic past it wraps).
pub const MAX_BUFFER_BYTES: u64 = isize::MAX as u64;

/// Bytes of bookkeeping per parameter tensor (its table row and names, the candle `Var`, the
/// index entry, the layers' and the engine's references, and the binding's layout objects),
/// counted with the parameters so that a huge `numLayers` is refused before anything is built.
pub const PER_TENSOR_BYTES: u64 = 2048;

/// The sizes a call's working set depends on (`B`, `T`, and the model's dimensions).
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkDims {
    /// `B` sequences.
    pub batch: usize,
    /// `T` positions per sequence.
    pub seq: usize,
    /// `E` embedDim.
    pub embed: usize,
    /// `H` hiddenSize.
    pub hidden: usize,
    /// `NH` query heads.
    pub heads: usize,
    /// `NKV` KV heads.
    pub kv_heads: usize,
    /// `D` headDim.
    pub head_dim: usize,
    /// `numLayers`.
    pub layers: usize,
    /// `K` head outputs (0 without a head).
    pub outputs: usize,
    /// Key positions attended to (`T` for a forward, the cached length plus `T` for a push).
    pub keys: usize,
}

/// How a call computes, which decides what it holds at its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkPath {
    /// The fused CPU engine (inference): one block's buffers at a time, no score matrix.
    Engine,
    /// Candle ops without autograd: a block's intermediates (score matrices included) at once.
    Candle,
    /// Candle ops with autograd (training on the candle path): every block's intermediates.
    CandleTracked,
    /// The fused training step: every block's saved activations plus the backward's buffers.
    FusedTraining,
    /// Candle ops on a device other than the CPU (a GPU): the host holds the input copy and the
    /// output; the working set is the device's, whose allocator reports running out itself
    /// ([`crate::Error::Backend`]).
    OffHost,
}

/// The peak working set in bytes of a call on `d` through `path` (u64, saturating), from the
/// buffers each path really allocates: the input copy and the output, the rotary tables,
/// `hidden`-wide rows, the `qkv` rows (`NH*D + 2*NKV*D` wide: with an explicit `headDim` these
/// can be far wider than `H`), the attention output (`NH*D`), the FFN rows (`4H`), and on the
/// candle paths the score matrices (`NH * keys` per position, three live at a time).
pub fn working_set(d: WorkDims, path: WorkPath) -> u64 {
    let m = (d.batch as u64).saturating_mul(d.seq as u64);
    let h = d.hidden as u64;
    let qd = (d.heads as u64).saturating_mul(d.head_dim as u64);
    let kvd = (d.kv_heads as u64).saturating_mul(d.head_dim as u64);
    let qkv = qd.saturating_add(kvd.saturating_mul(2));
    let f = h.saturating_mul(4);
    let e = d.embed as u64;
    let scores = (d.heads as u64).saturating_mul(d.keys as u64);
    let rope = (d.keys as u64).saturating_mul(d.head_dim as u64);
    let layers = d.layers as u64;
    let sum = |xs: &[u64]| xs.iter().fold(0u64, |a, &x| a.saturating_add(x));
    let mul = |a: u64, b: u64| a.saturating_mul(b);
    // Per-position widths (f32 values).
    let width = match d.seq {
        0 => 0,
        _ => match path {
            // The input copy (E) and the output row (H).
            WorkPath::OffHost => sum(&[e, h]),
            // hs, a, fin, output copies (4H), qkv, o, FFN, input (E) and its copy.
            WorkPath::Engine => sum(&[mul(4, h), qkv, qd, f, mul(2, e)]),
            // Input and residual stream, then one block: norms and residual adds (8H),
            // q/k/v with transposed and rotated copies (3 qkv), K/V repeated to NH heads and the
            // context with its transpose (4 qd), the FFN with GELU temporaries (4F), and three
            // score matrices (scores, mask, softmax).
            WorkPath::Candle => sum(&[
                mul(2, e),
                mul(12, h),
                mul(3, qkv),
                mul(4, qd),
                mul(4, f),
                mul(3, scores),
            ]),
            // As `Candle`, but every block's intermediates are kept for the backward.
            WorkPath::CandleTracked => sum(&[
                mul(2, e),
                mul(4, h),
                mul(
                    layers.max(1),
                    sum(&[
                        mul(8, h),
                        mul(3, qkv),
                        mul(4, qd),
                        mul(4, f),
                        mul(3, scores),
                    ]),
                ),
                // Gradients flowing back: one block's worth.
                mul(
                    2,
                    sum(&[
                        mul(8, h),
                        mul(3, qkv),
                        mul(4, qd),
                        mul(4, f),
                        mul(3, scores),
                    ]),
                ),
            ]),
            // Per layer saved h_in, a1, mask1, h_mid, a2, mask2 (6H), qkv, o, lse (NH), the FFN
            // pre- and post-GELU rows (2F) and the norm statistics; then the backward's rows:
            // dh, dfin, dy, da, fin, hout, h (7H), dqkv and dqk (2 qkv), dffn and tmp (2F), x0.
            WorkPath::FusedTraining => sum(&[
                mul(
                    layers.max(1),
                    sum(&[mul(6, h), qkv, qd, d.heads as u64, mul(2, f), 4]),
                ),
                mul(7, h),
                mul(2, qkv),
                mul(2, f),
                mul(2, e),
                d.outputs as u64,
            ]),
        },
    };
    let rows = mul(m, width);
    let per_batch = mul(d.batch as u64, sum(&[mul(4, h), mul(2, d.outputs as u64)]));
    mul(4, sum(&[rows, per_batch, rope]))
}

/// Reserves [`working_set`] of `d` on `path` for `what`, after checking that its largest single
/// buffer can exist at all ([`MAX_BUFFER_BYTES`], and the limit).
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what` (or the single buffer that cannot exist).
pub fn reserve_work(what: &str, d: WorkDims, path: WorkPath) -> Result<Reservation> {
    let m = d.batch.saturating_mul(d.seq);
    let qkv = d
        .heads
        .saturating_add(d.kv_heads.saturating_mul(2))
        .saturating_mul(d.head_dim);
    crate::error::check_f32_buffer("qkv activations", &[m, qkv])?;
    crate::error::check_f32_buffer("ffn activations", &[m, 4, d.hidden])?;
    if matches!(path, WorkPath::Candle | WorkPath::CandleTracked) {
        crate::error::check_f32_buffer("attention scores", &[d.batch, d.heads, d.seq, d.keys])?;
    }
    reserve(what, working_set(d, path))
}
