//! What every `extern "C"` entry point of this crate runs under: a panic
//! guard (a panic unwinding out of an `extern "C"` function aborts the
//! process) and, in strict unload mode, a check that the library it belongs
//! to has not been unloaded.
//!
//! Both sides of the boundary link their own copy of this module, so each
//! copy's "unloaded" flag speaks for its own library only.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when this copy of the SDK (a plugin library) has been shut down by a
/// host in strict unload mode ([`crate::abi::FLAG_STRICT_UNLOAD`]). Never
/// set in a host's copy.
static UNLOADED: AtomicBool = AtomicBool::new(false);

/// Called first by every entry point into plugin code through the boundary.
/// Costs one relaxed load; aborts the process, naming `entry`, if strict
/// unload mode saw this library shut down.
#[inline]
pub fn entered(entry: &'static str) {
    if UNLOADED.load(Ordering::Relaxed) {
        entered_after_unload(entry);
    }
}

#[cold]
#[inline(never)]
fn entered_after_unload(entry: &'static str) -> ! {
    eprintln!(
        "horizon strict unload: `{entry}` of an unloaded plugin was called; \
         plugin code ran after `unload` returned (aborting)"
    );
    std::process::abort()
}

/// Marks this library unloaded, for [`entered`]. Only the plugin's
/// `shutdown`, in strict mode, calls this: afterwards any entry aborts,
/// until `init` starts a new load of the same mapping ([`mark_loaded`]).
#[cfg(feature = "plugin")]
pub(crate) fn mark_unloaded() {
    UNLOADED.store(true, Ordering::Relaxed);
}

/// A new load of this mapping starts (`init`): a library kept mapped by a
/// strict host, or by the loader, may be loaded again from the same path.
#[cfg(feature = "plugin")]
pub(crate) fn mark_loaded() {
    UNLOADED.store(false, Ordering::Relaxed);
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Runs `f`, turning a panic into its message. The payload is dropped under
/// a second guard because a payload's own `Drop` may panic
/// (rust-lang/rust#86027).
#[inline]
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(caught)
}

/// The message of a caught panic; the payload is dropped under a second guard.
#[cold]
pub fn caught(payload: Box<dyn Any + Send>) -> String {
    let msg = panic_message(&*payload);
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // The payload's drop panicked; that panic's payload is leaked
        // rather than dropped, since its drop could panic again.
        std::mem::forget(second);
    }
    msg
}
