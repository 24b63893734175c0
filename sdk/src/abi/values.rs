//! The plain values that cross the boundary: borrowed strings ([`RStr`]),
//! owned strings freed by their owner ([`RString`]), and call outcomes
//! ([`RStatus`]).

use std::marker::PhantomData;

use super::guard;

/// A borrowed UTF-8 string, valid for the duration of the call it is passed to
/// (or for `'static` when it points into a declaration).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RStr<'a> {
    ptr: *const u8,
    len: usize,
    _marker: PhantomData<&'a str>,
}

// SAFETY: an `RStr` is a `&str` in another shape; `&str` is `Send + Sync`.
unsafe impl Send for RStr<'_> {}
// SAFETY: as above.
unsafe impl Sync for RStr<'_> {}

impl<'a> RStr<'a> {
    /// Borrows `s`.
    pub const fn new(s: &'a str) -> Self {
        RStr {
            ptr: s.as_ptr(),
            len: s.len(),
            _marker: PhantomData,
        }
    }

    /// Borrows raw bytes (payloads are JSON, so UTF-8, but are treated as bytes).
    pub const fn from_bytes(b: &'a [u8]) -> Self {
        RStr {
            ptr: b.as_ptr(),
            len: b.len(),
            _marker: PhantomData,
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `self` must have been built by [`RStr::new`] or [`RStr::from_bytes`]
    /// (possibly on the other side of the boundary) from memory that is still
    /// alive: the other side guarantees this for the duration of a call.
    pub unsafe fn as_bytes(&self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr..ptr+len` is a live allocation.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The address the bytes start at, as the other side passed it (also
    /// for an empty string, where [`RStr::as_bytes`] gives `&[]`).
    pub fn addr(&self) -> usize {
        self.ptr.addr()
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The string, or `None` if the bytes are not UTF-8.
    ///
    /// # Safety
    /// As [`RStr::as_bytes`].
    pub unsafe fn to_str(&self) -> Option<&'a str> {
        // SAFETY: forwarded to the caller.
        std::str::from_utf8(unsafe { self.as_bytes() }).ok()
    }
}

/// An owned byte string allocated by one side and freed by that side's
/// `free`. One without capacity owns no buffer: its `free` is not called
/// (since boundary 4.6; calling it was a no-op).
#[repr(C)]
pub struct RString {
    ptr: *mut u8,
    len: usize,
    cap: usize,
    free: unsafe extern "C" fn(*mut u8, usize, usize),
}

// SAFETY: `RString` owns its buffer exclusively, like `Vec<u8>`.
unsafe impl Send for RString {}
// SAFETY: shared access is read-only.
unsafe impl Sync for RString {}

unsafe extern "C" fn free_vec(ptr: *mut u8, len: usize, cap: usize) {
    guard::entered("RString::free");
    // SAFETY: `ptr, len, cap` come from a `Vec<u8>` of this side's allocator
    // that `RString::from` took apart; `RString::drop` calls us exactly once.
    // Dropping a `Vec<u8>` cannot panic.
    drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
}

impl From<String> for RString {
    fn from(s: String) -> Self {
        RString::from(s.into_bytes())
    }
}

impl From<Vec<u8>> for RString {
    fn from(v: Vec<u8>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        RString {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
            free: free_vec,
        }
    }
}

impl RString {
    /// The bytes (an `RString` is UTF-8 text, or an answer's payload in a
    /// [`RStatus`] with [`STATUS_OK`]).
    pub fn as_bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr..ptr+len` is the live buffer this `RString` owns:
        // made by `From<Vec<u8>>` of this side's SDK or of the other side's
        // (whose code stays loaded while a value it made is alive: the
        // boundary's ownership rule), freed only by `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// An empty string (no allocation).
    pub fn empty() -> Self {
        RString::from(String::new())
    }

    /// Copies the contents into this side's allocator; invalid UTF-8 is replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl Drop for RString {
    fn drop(&mut self) {
        // No buffer (an `RString` is only made from a `Vec<u8>`, which
        // allocates nothing without capacity): no call across the boundary,
        // on the path of every successful status.
        if self.cap == 0 {
            return;
        }
        // SAFETY: `free` is the allocating side's own deallocator for exactly
        // this buffer, and `drop` runs once.
        unsafe { (self.free)(self.ptr, self.len, self.cap) }
    }
}

impl std::fmt::Debug for RString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.to_string_lossy(), f)
    }
}

/// Outcome of a call that can fail: a code and a message owned by the side that wrote it.
#[repr(C)]
#[derive(Debug)]
pub struct RStatus {
    /// One of the `STATUS_*` codes.
    pub code: u32,
    /// When `code == STATUS_OK`: empty, or an answering handler's answer
    /// (`HostApi::answer`, `HostApi::call`); otherwise what went wrong.
    pub message: RString,
}

/// The call succeeded.
pub const STATUS_OK: u32 = 0;
/// The call returned an error; the message says which.
pub const STATUS_ERROR: u32 = 1;
/// The call panicked; the message is the panic's.
pub const STATUS_PANIC: u32 = 2;
/// Boundary 4.3: the handler refused its payload, which did not decode as
/// its type (the sender's mistake, not the handler's; hosts before 4.3
/// read it as [`STATUS_ERROR`]).
pub const STATUS_REJECTED: u32 = 3;
/// Boundary 4.6, a call's status (`HostApi::call`, with
/// [`FLAG_CALL_STATUS`](super::FLAG_CALL_STATUS)): no plugin answers the
/// name. Older SDKs read any code but [`STATUS_OK`] as an error.
pub const STATUS_NO_HANDLER: u32 = 4;
/// Boundary 4.6, a call's status: the answering handler was still running
/// at the host's handler timeout, and was aborted.
pub const STATUS_TIMED_OUT: u32 = 5;
/// Boundary 4.6, a call's status: the answering plugin was unloaded during
/// the call.
pub const STATUS_CANCELLED: u32 = 6;

impl RStatus {
    /// Success.
    pub fn ok() -> Self {
        RStatus {
            code: STATUS_OK,
            message: RString::empty(),
        }
    }

    /// An error with `message`.
    pub fn error(message: impl Into<String>) -> Self {
        RStatus {
            code: STATUS_ERROR,
            message: RString::from(message.into()),
        }
    }

    /// A panic with `message`.
    pub fn panic(message: impl Into<String>) -> Self {
        RStatus {
            code: STATUS_PANIC,
            message: RString::from(message.into()),
        }
    }
}

/// Mixes the layouts of [`RStr`], [`RString`] and [`RStatus`] into a
/// fingerprint, in this order (their fields are private to this module).
pub(super) const fn layout(h: u64) -> u64 {
    use super::layout::describe;
    let h = describe!(h, RStr<'static> {
        ptr: *const u8,
        len: usize,
        _marker: PhantomData<&'static str>,
    });
    let h = describe!(h, RString {
        ptr: *mut u8,
        len: usize,
        cap: usize,
        free: unsafe extern "C" fn(*mut u8, usize, usize),
    });
    describe!(
        h,
        RStatus {
            code: u32,
            message: RString,
        }
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{RStatus, RStr, RString, STATUS_ERROR, STATUS_OK, STATUS_PANIC};

    proptest! {
        /// A string crossing as an `RStr` comes back as exactly that string,
        /// borrowed in place.
        #[test]
        fn utf8_strings_come_back_unchanged(s in any::<String>()) {
            for r in [RStr::new(&s), RStr::from_bytes(s.as_bytes())] {
                // SAFETY: `s` outlives `r` and is not changed.
                let back = unsafe { r.to_str() };
                prop_assert_eq!(back, Some(s.as_str()));
                prop_assert!(s.is_empty() || back.is_some_and(|b| b.as_ptr() == s.as_ptr()));
            }
        }

        /// Bytes that are not UTF-8 are refused as a string, without a
        /// panic, and still come back byte for byte.
        #[test]
        fn invalid_utf8_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64), at in any::<proptest::sample::Index>()) {
            let mut bytes = bytes;
            // 0xFF starts no UTF-8 sequence and continues none.
            bytes.insert(at.index(bytes.len() + 1), 0xFF);
            let r = RStr::from_bytes(&bytes);
            // SAFETY: `bytes` outlives `r` and is not changed.
            let (text, raw) = unsafe { (r.to_str(), r.as_bytes()) };
            prop_assert!(text.is_none(), "{:?} read as {:?}", bytes, text);
            prop_assert_eq!(raw, &bytes[..]);
        }

        /// An owned string taken apart into an `RString` (and freed by its
        /// owner's function on drop) reads back unchanged, alone or as a
        /// status message.
        #[test]
        fn rstrings_read_back_unchanged(s in any::<String>()) {
            prop_assert_eq!(RString::from(s.clone()).to_string_lossy(), s.as_str());
            let error = RStatus::error(s.clone());
            prop_assert_eq!(error.code, STATUS_ERROR);
            prop_assert_eq!(error.message.to_string_lossy(), s.as_str());
            let panic = RStatus::panic(s.clone());
            prop_assert_eq!(panic.code, STATUS_PANIC);
            prop_assert_eq!(panic.message.to_string_lossy(), s.as_str());
        }
    }

    #[test]
    fn ok_has_no_message() {
        let ok = RStatus::ok();
        assert_eq!(ok.code, STATUS_OK);
        assert_eq!(ok.message.to_string_lossy(), "");
    }
}
