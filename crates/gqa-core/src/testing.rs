//! Fault injection for the test suites: a panic forced at a named site inside a call, to prove
//! that the bindings turn a Rust panic into a typed error (`INTERNAL`) and that the process (or
//! the wasm instance) keeps working afterwards. Off unless armed; when off, a site costs one
//! relaxed atomic load per call.
//!
//! Sites: `forward` ([`crate::GqaModel::forward_f32`]), `push` ([`crate::Session::push`]),
//! `step` ([`crate::train::Trainer::step`]). Each is placed before the call reserves or
//! allocates anything, so a panic there leaks nothing even where unwinding does not run
//! destructors (wasm32 aborts on panic).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static ARMED: AtomicBool = AtomicBool::new(false);
static SITE: Mutex<Option<String>> = Mutex::new(None);

/// Arms a forced panic at `site` for every later call that passes it (`None` disarms).
pub fn set_panic_site(site: Option<&str>) {
    let mut s = SITE.lock().unwrap_or_else(|e| e.into_inner());
    *s = site.map(str::to_string);
    ARMED.store(s.is_some(), Ordering::SeqCst);
}

/// Panics with `forced panic at `{site}`` when `site` is armed.
#[inline]
pub fn panic_point(site: &str) {
    if ARMED.load(Ordering::Relaxed) {
        let armed = SITE.lock().unwrap_or_else(|e| e.into_inner()).as_deref() == Some(site);
        if armed {
            panic!("forced panic at `{site}` (gqa_core::testing)");
        }
    }
}
