//! Payloads the host lends (boundary 4.3): a handler's event keeps the
//! host's buffer, one reference taken with `HostApi::payload_retain` and
//! given back when the last clone of the event is dropped, instead of a
//! copy per plugin. Only for payloads of at least `HostApi::share_from`
//! bytes, the size from which sharing measured faster than copying
//! (BENCHMARKS.md, "Sharing large payloads").

use std::ffi::c_void;

use crate::abi::{HostApi, RStr};

/// One reference to a host buffer: the bytes stay valid and unchanged
/// until it is dropped.
pub(crate) struct Lent {
    ptr: *const u8,
    len: usize,
    release: unsafe extern "C" fn(*const c_void, RStr<'_>),
    data: *const c_void,
}

// SAFETY: the bytes are immutable while referenced, and the host's
// `payload_release` may be called from any thread (its contract).
unsafe impl Send for Lent {}
// SAFETY: as above; `&Lent` only reads the bytes.
unsafe impl Sync for Lent {}

impl Lent {
    /// A reference to `payload`, the payload of the handler call the host
    /// is making on this thread, if the host lends it; `None`: copy it.
    pub(crate) fn retain(api: &HostApi, payload: &[u8]) -> Option<Lent> {
        if api.share_from == 0 || payload.len() < api.share_from {
            return None;
        }
        let (retain, release) = (api.payload_retain?, api.payload_release?);
        // SAFETY: `api` is the live host table; `retain` reads `payload`
        // only to compare its address and length with the call's, and
        // never unwinds.
        let taken = unsafe { retain(api.data, RStr::from_bytes(payload)) };
        taken.then_some(Lent {
            ptr: payload.as_ptr(),
            len: payload.len(),
            release,
            data: api.data,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `retain` took a reference to these `len` bytes at `ptr`;
        // the host keeps them alive and unchanged until `drop` gives it back.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // SAFETY: gives back the one reference `retain` took, with the same
        // bytes; `release` does not read `data` and never unwinds, so this
        // is sound also after the plugin's unload.
        unsafe { (self.release)(self.data, RStr::from_bytes(self.bytes())) }
    }
}
