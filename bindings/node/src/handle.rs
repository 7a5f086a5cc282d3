//! The native memory behind a JS object (model, attention layer, session), freed explicitly.
//!
//! `free` takes `&self` (the slot is behind a lock), so `dispose()` while an async call of the
//! same object is in flight never meets napi's "cannot be borrowed mutably" error: the handle
//! drops its reference, the running call keeps its own `Arc` and completes, and the memory goes
//! when the last reference does (exactly once). Later calls get `DISPOSED`.

use std::sync::{Arc, Mutex, PoisonError};

/// A freeable shared reference to `T`.
pub(crate) struct Handle<T>(Mutex<Option<Arc<T>>>);

impl<T> Handle<T> {
    /// A handle holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Handle(Mutex::new(Some(Arc::new(value))))
    }

    /// The shared value, or [`gqa_core::Error::Disposed`] naming `what`.
    pub(crate) fn get(&self, what: &str) -> gqa_core::Result<Arc<T>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| gqa_core::Error::disposed(what))
    }

    /// Drops this handle's reference (idempotent).
    pub(crate) fn free(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}
