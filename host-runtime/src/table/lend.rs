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
/// `payload` is exactly its bytes.
pub(super) unsafe extern "C" fn payload_retain(_data: *const c_void, payload: RStr<'_>) -> bool {
    // SAFETY: the plugin passes bytes alive for this call (the `payload`
    // of the handler call it is in); only their address and length are read.
    let payload = unsafe { payload.as_bytes() };
    LENT.with(|l| {
        let lent = l.get();
        if lent.is_null() {
            return false;
        }
        // SAFETY: non-null only inside `lending`, whose caller borrows the
        // `Arc` for the whole call, and this is a call on the same thread.
        let lent = unsafe { &*lent };
        if lent.as_ptr() != payload.as_ptr() || lent.len() != payload.len() {
            return false;
        }
        // The count the plugin holds, given back by `payload_release`.
        let _ = Arc::into_raw(Arc::clone(lent));
        true
    })
}

/// `HostApi::payload_release`: gives back one count taken by
/// [`payload_retain`]; does not read `data` (callable after unload).
pub(super) unsafe extern "C" fn payload_release(_data: *const c_void, payload: RStr<'_>) {
    // SAFETY: the plugin gives back a count `payload_retain` took for these
    // bytes (its contract, kept by the SDK's `Lent`, whose fields only
    // `retain` sets), so they are an `Arc<[u8]>`'s, and the pointer
    // rebuilt from their address and length is the one `Arc::into_raw`
    // returned. Dropping an `Arc<[u8]>` does not unwind.
    unsafe {
        let bytes = payload.as_bytes();
        drop(Arc::from_raw(std::ptr::slice_from_raw_parts(
            bytes.as_ptr(),
            bytes.len(),
        )));
    }
}
