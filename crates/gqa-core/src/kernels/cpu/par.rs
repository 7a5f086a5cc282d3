//! Row parallelism on rayon's pool (sequential where the target has no threads).

#[allow(unused_imports)]
use crate::error::{Error, Result};

/// Runs `f(i)` for `i in 0..n`, on rayon's pool where the target has threads and `parallel`.
///
/// On the threaded wasm module, where the pool cannot be resized, a cap below the pool's size
/// ([`crate::kernels::threads::set_threads`]) runs `threads()` contiguous groups of jobs in parallel.
/// Which thread runs a job never changes its result.
pub(crate) fn par_for(n: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
    #[cfg(gqa_threads)]
    {
        let t = threads();
        if parallel && n > 1 && t > 1 {
            use rayon::prelude::*;
            if cfg!(target_arch = "wasm32") && t < rayon::current_num_threads() && t < n {
                (0..t)
                    .into_par_iter()
                    .for_each(|g| (g * n / t..(g + 1) * n / t).for_each(&f));
            } else {
                (0..n).into_par_iter().for_each(f);
            }
            return;
        }
    }
    let _ = parallel;
    (0..n).for_each(f);
}

/// Number of worker threads the row loops may use (1 where the target has no threads).
pub(crate) fn threads() -> usize {
    #[cfg(all(gqa_threads, not(target_arch = "wasm32")))]
    {
        rayon::current_num_threads().max(1)
    }
    #[cfg(all(gqa_threads, target_arch = "wasm32"))]
    {
        crate::kernels::threads::threads()
    }
    #[cfg(not(gqa_threads))]
    {
        1
    }
}

/// A raw output pointer shared by jobs that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every job writes a disjoint set of elements (documented at each use).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Splits `rows` rows of `width` values into at most `4 * threads` chunks of whole rows (at least
/// `min_rows` rows each) and runs `f(first_row, rows_slice)` on each, in parallel when worth it.
pub(crate) fn par_rows_mut(
    data: &mut [f32],
    width: usize,
    min_values: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if width == 0 || data.is_empty() {
        return;
    }
    let rows = data.len() / width;
    let chunks = (data.len() / min_values.max(1))
        .clamp(1, 4 * threads())
        .min(rows);
    let per = rows.div_ceil(chunks);
    let ptr = OutPtr(data.as_mut_ptr());
    let len = data.len();
    par_for(rows.div_ceil(per), chunks > 1, move |c| {
        let r0 = c * per;
        let r1 = ((c + 1) * per).min(rows);
        let p = ptr;
        // SAFETY: chunk `c` covers rows `r0..r1`, disjoint from every other chunk, inside `data`.
        let s = unsafe {
            std::slice::from_raw_parts_mut(
                p.0.add(r0 * width),
                ((r1 - r0) * width).min(len - r0 * width),
            )
        };
        f(r0, s);
    });
}
