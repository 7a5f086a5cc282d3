//! The compute thread pool of the native CPU path.
//!
//! gqa runs its kernels (fused inference, the GEMMs, and candle's ops during training) on a
//! rayon pool of its own, so a host's global rayon pool is left alone and the thread count is
//! ours to set: [`set_threads`] (the bindings' `GQA.init({ threads })`), else the environment
//! variable `GQA_THREADS`, else the number of available cores
//! (`std::thread::available_parallelism`). The pool is built on first use; changing the count
//! later builds a new pool for the calls that start afterwards (running calls finish on the old
//! one).
//!
//! On wasm32 the single-threaded module (no `+atomics`) runs everything on the calling thread.
//! The threaded module (`+atomics`, `cfg(gqa_threads)`) uses rayon's global pool, whose workers
//! the host starts once (wasm-bindgen-rayon's `initThreadPool(n)`, called by the TypeScript
//! layer when it loads the module); [`set_threads`] then caps the threads a call uses at any
//! count from 1 to that pool's size.
//!
//! Results do not depend on the thread count: every kernel splits work over output rows or
//! (batch, KV head, query range) tiles, never over a reduction, and the GEMM splits over output
//! blocks only, so 1 and N threads give bitwise-identical outputs (tested in
//! `tests/engine.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// 0 = not set (use `GQA_THREADS` or the core count).
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Largest accepted thread count (a guard against absurd values).
pub const MAX_THREADS: usize = 1024;

/// Sets the number of compute threads for calls that start from now on (`n >= 1`).
///
/// On the single-threaded wasm module any valid count is accepted and calls still run on one
/// thread; on the threaded wasm module the count is at most the worker pool's size.
///
/// # Errors
/// [`Error::InvalidOption`] naming `threads` for 0 or more than [`MAX_THREADS`] (threaded wasm:
/// more than the pool's size).
pub fn set_threads(n: usize) -> Result<()> {
    let max = if cfg!(all(target_arch = "wasm32", gqa_threads)) {
        wasm_pool_size()
    } else {
        MAX_THREADS
    };
    if n == 0 || n > max {
        let expected = if max == MAX_THREADS {
            format!("an integer in 1..={MAX_THREADS}")
        } else {
            format!("an integer in 1..={max} (the wasm worker pool's size, fixed when the module was loaded)")
        };
        return Err(Error::option("threads", expected, n));
    }
    REQUESTED.store(n, Ordering::Relaxed);
    Ok(())
}

/// The thread count the next call will use: [`set_threads`], else `GQA_THREADS` (a positive
/// integer), else the available cores. Single-threaded wasm: 1. Threaded wasm: [`set_threads`]
/// capped at the worker pool's size, else the pool's size.
pub fn threads() -> usize {
    #[cfg(all(target_arch = "wasm32", not(gqa_threads)))]
    {
        1
    }
    #[cfg(all(target_arch = "wasm32", gqa_threads))]
    {
        let pool = wasm_pool_size();
        match REQUESTED.load(Ordering::Relaxed) {
            0 => pool,
            n => n.min(pool),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        match REQUESTED.load(Ordering::Relaxed) {
            0 => default_threads(),
            n => n,
        }
    }
}

/// Threaded wasm: the size of rayon's global pool (the workers `initThreadPool` started).
fn wasm_pool_size() -> usize {
    #[cfg(all(target_arch = "wasm32", gqa_threads))]
    {
        rayon::current_num_threads().max(1)
    }
    #[cfg(not(all(target_arch = "wasm32", gqa_threads)))]
    {
        MAX_THREADS
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn default_threads() -> usize {
    use std::sync::OnceLock;
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("GQA_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| (1..=MAX_THREADS).contains(&n))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Runs `f` on gqa's compute pool (sized by [`threads`]); on wasm32 runs it directly (the
/// threaded module's kernels use the global pool, capped at [`threads`]).
///
/// Nested calls (from inside the pool) run directly on the current pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(target_arch = "wasm32")]
    {
        f()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::{Arc, Mutex};
        static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);
        let n = threads();
        // Already on one of our workers: stay on it (rayon would otherwise block this worker).
        if rayon::current_thread_index().is_some() && rayon::current_num_threads() == n {
            return f();
        }
        let pool = {
            let mut guard = POOL.lock().unwrap_or_else(|p| p.into_inner());
            match &*guard {
                Some((m, p)) if *m == n => Some(p.clone()),
                _ => {
                    let built = rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .thread_name(|i| format!("gqa-compute-{i}"))
                        .build()
                        .ok()
                        .map(Arc::new);
                    if let Some(p) = &built {
                        *guard = Some((n, p.clone()));
                    }
                    built
                }
            }
        };
        match pool {
            Some(p) => p.install(f),
            // The OS refused new threads: run on the caller's thread instead of failing.
            None => f(),
        }
    }
}
