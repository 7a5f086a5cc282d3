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
//! The default limit is what the machine has: on Linux the smaller of `MemTotal` in
//! `/proc/meminfo` and the cgroup v2 `memory.max` of the process; on wasm32 the 4 GiB a 32-bit
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

/// The default limit in bytes (computed once): Linux `min(MemTotal, cgroup memory.max)`;
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
    total.min(cgroup)
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
