//! The synchronisation primitives of the hand-written atomic protocols (the
//! task cell in `boundary::cell`, the waker slot registry in `abi::waker`): std's,
//! or loom's when the crate is built with `--cfg horizon_loom` for the
//! models next to each protocol (`scripts/loom` runs them).
//!
//! A custom cfg rather than `loom`: `--cfg loom` would switch tokio's own
//! loom mode on too, which does not build as a dependency.
// Without the `plugin` feature only the waker registry uses this module.
#![cfg_attr(not(feature = "plugin"), allow(unused_imports, dead_code))]

#[cfg(not(horizon_loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering, fence};

#[cfg(horizon_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering, fence};

/// `std::cell::UnsafeCell` with loom's interface (`with`, `with_mut`), so
/// that loom checks every access of the protocol's plain data.
#[cfg(not(horizon_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(horizon_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(horizon_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Locks a std mutex, ignoring poisoning: every critical section in this
/// crate leaves its data consistent, and a panic it caught must not turn
/// into a second one here.
pub(crate) fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
