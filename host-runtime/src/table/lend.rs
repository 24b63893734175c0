//! Lending a handler's payload to the plugin (boundary 4.3,
//! `HostApi::payload_retain` / `payload_release`): while the host calls a
//! plugin handler, the event's buffer is this thread's *lent* buffer, and
//! the plugin may take references to exactly those bytes (each an `Arc`
//! count of the buffer), so that a large payload fanned out to several
//! plugins is not copied once per plugin.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::Arc;

use horizon_plugin_sdk::abi::RStr;

thread_local! {
    /// The buffer of the handler call this thread is making (null: none).
    /// Points to the `Arc` of an event the caller of [`lending`] borrows
    /// for the whole call. No destructor.
    static LENT: Cell<*const Arc<[u8]>> = const { Cell::new(std::ptr::null()) };
}

/// Runs `call` (one plugin handler call) with `wire` lent on this thread;
/// the previous lent buffer (an outer call's) is restored after it, also
/// if `call` unwinds.
pub(crate) fn lending<R>(wire: Option<&Arc<[u8]>>, call: impl FnOnce() -> R) -> R {
    struct Restore(*const Arc<[u8]>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LENT.with(|l| l.set(self.0));
        }
    }
    let now = wire.map_or(std::ptr::null(), std::ptr::from_ref);
    let _restore = Restore(LENT.with(|l| l.replace(now)));
    call()
}

/// `HostApi::payload_retain`: one more count of the lent buffer, if
/// `payload` is exactly its bytes (same address, same length). Works only
/// inside the synchronous `RawHandler::call` the host is making on this
/// thread: elsewhere nothing is lent and it returns false.
pub(super) unsafe extern "C" fn payload_retain(_data: *const c_void, payload: RStr<'_>) -> bool {
    // Only the address and length are read, never the bytes: compared raw,
    // since `RStr::as_bytes` would give `&[]` for any empty string.
    let (addr, len) = (payload.addr(), payload.len());
    if len == 0 {
        // Never lent (the SDK lends from `share_from` bytes, at least 1):
        // `payload_release` takes an empty payload for a contract breach.
        return false;
    }
    LENT.with(|l| {
        let lent = l.get();
        if lent.is_null() {
            return false;
        }
        // SAFETY: non-null only inside `lending`, whose caller borrows the
        // `Arc` (the event's buffer) for the whole synchronous call, and
        // this is a call on the same thread within it.
        let lent = unsafe { &*lent };
        if lent.as_ptr().addr() != addr || lent.len() != len {
            return false;
        }
        // The count the plugin holds, given back by `payload_release`. Its
        // provenance (the whole `Arc` allocation) is exposed so that
        // `payload_release` can rebuild the pointer from the address: the
        // plugin's `RStr` only carries the data bytes' provenance.
        let _ = Arc::into_raw(Arc::clone(lent))
            .cast::<u8>()
            .expose_provenance();
        true
    })
}

/// `HostApi::payload_release`: gives back one count taken by
/// [`payload_retain`]; does not read `data` (callable after unload).
pub(super) unsafe extern "C" fn payload_release(_data: *const c_void, payload: RStr<'_>) {
    debug_assert!(!payload.is_empty(), "an empty payload is never lent");
    let ptr = std::ptr::slice_from_raw_parts(
        std::ptr::with_exposed_provenance::<u8>(payload.addr()),
        payload.len(),
    );
    // SAFETY: the plugin gives back a count `payload_retain` took for these
    // bytes (its contract, kept by the SDK's `Lent`, whose fields only
    // `retain` sets), so address and length are those of the pointer
    // `Arc::into_raw` returned there, whose provenance was exposed there.
    // Dropping an `Arc<[u8]>` does not unwind.
    unsafe { drop(Arc::from_raw(ptr)) };
}
