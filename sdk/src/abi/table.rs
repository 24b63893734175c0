//! Growable tables: the two boundary structs that may gain fields within a
//! boundary version ([`super::HostApi`], the host's services, and
//! [`super::PluginDeclaration`], what a plugin exports), the way Vulkan's
//! and Win32's size-tagged structs and abi_stable's prefix types grow.
//!
//! The rules, checked by the tests in `abi/mod.rs`:
//!
//! - A table only grows at its end, and an appended field starts at or
//!   after the size the table had before it (never in its trailing
//!   padding, which an older writer leaves uninitialized), so a reader that
//!   copies `min(the writer's size, its own)` bytes never reads padding
//!   as a field (pinned per version by the tests in `abi/mod.rs`).
//! - Its fields up to the end of the first
//!   table of a boundary version (its *base*, `HOST_API_BASE`,
//!   `DECLARATION_BASE`) are always there; a field appended later must be
//!   valid when all its bytes are zero (an `Option` of a function pointer,
//!   an integer, a null pointer), since a reader built against a newer SDK
//!   fills what an older writer lacks with zeros.
//! - Each side describes its view of a table with a [`TableLayout`]: its
//!   size and the fingerprint of each prefix of its fields (name, declared
//!   type, offset, size). Host and plugin agree when their fingerprints of
//!   the fields both know are equal ([`agree`]): an append passes, any
//!   other change fails.
//! - A reader copies the prefix the writer has ([`read_prefix`]) and never
//!   holds a reference to the writer's table, which may be shorter than its
//!   own type.

use std::mem::MaybeUninit;

/// One side's view of a growable table.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TableLayout {
    /// `size_of` the table on this side.
    pub size: u32,
    /// How many fields this side knows (the length of `prefix`).
    pub fields: u32,
    /// `prefix[i]`: the fingerprint of fields `0..=i`. Points to `'static`
    /// data of the side that made it.
    pub prefix: *const u64,
}

// SAFETY: `prefix` points to immutable `'static` data.
unsafe impl Sync for TableLayout {}
// SAFETY: as above.
unsafe impl Send for TableLayout {}

impl TableLayout {
    /// The layout of a table of `size` bytes whose prefix fingerprints are
    /// `prefix` (`'static`: a layout may be read for as long as its library
    /// is loaded).
    pub const fn new(size: usize, prefix: &'static [u64]) -> Self {
        TableLayout {
            size: size as u32,
            fields: prefix.len() as u32,
            prefix: prefix.as_ptr(),
        }
    }

    /// The prefix fingerprints.
    ///
    /// # Safety
    /// `prefix` points to `fields` readable `u64`s (true of a layout made
    /// by [`TableLayout::new`], and of one read from a declaration whose
    /// header was checked, for as long as its library is loaded).
    pub unsafe fn prefix(&self) -> Vec<u64> {
        (0..self.fields as usize)
            // SAFETY: the caller's guarantee; read unaligned to assume nothing.
            .map(|i| unsafe { self.prefix.add(i).read_unaligned() })
            .collect()
    }
}

/// Whether two views of one table agree on the fields both know: equal
/// fingerprints of their common prefix. Either may know more fields (an
/// older or a newer SDK); neither may know fewer than the base.
pub fn agree(ours: &[u64], theirs: &[u64], base_fields: usize) -> bool {
    let common = ours.len().min(theirs.len());
    common > 0 && common >= base_fields && ours[common - 1] == theirs[common - 1]
}

/// Copies a table of another side into one of this side's type: the
/// `size` bytes the writer has (at most this side's size), every byte past
/// them zero.
///
/// # Safety
/// `table` is readable for `size` bytes, which cover at least the table's
/// base (every field that is not valid when zero), and its fields up to
/// `size` have `T`'s layout (checked with [`agree`]). No alignment is
/// assumed.
pub unsafe fn read_prefix<T>(table: *const T, size: usize) -> T {
    // SAFETY: forwarded: the caller's guarantee.
    let out = unsafe { copy_prefix(table, size) };
    // SAFETY: the first `size` bytes are a valid prefix of a `T` (the
    // caller's guarantee), and every field past them is valid when zero
    // (the growth rule above).
    unsafe { out.assume_init() }
}

/// The bytes of [`read_prefix`], not yet taken for a `T`: for a reader
/// that checks what the writer says of its layout (read from these bytes
/// with `read_unaligned`) before it trusts the rest.
///
/// # Safety
/// `table` is readable for `size` bytes. No alignment is assumed.
pub unsafe fn copy_prefix<T>(table: *const T, size: usize) -> MaybeUninit<T> {
    let mut out = MaybeUninit::<T>::zeroed();
    let n = size.min(size_of::<T>());
    // SAFETY: the caller's guarantee for the source; `out` has
    // `size_of::<T>()` bytes; the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(table.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), n);
    }
    out
}

/// Mixes one table's fields into prefix fingerprints:
/// `prefixes!(Name { field: Type, .. })` is a `[u64; N]`, entry `i` the
/// fingerprint of fields `0..=i` (name, declared type, offset, size). The
/// field list is checked against the type as in `describe!`.
macro_rules! prefixes {
    ($name:ident { $($field:ident : $fty:ty),* $(,)? }) => {{
        #[allow(dead_code, clippy::needless_borrow)]
        fn fields(v: &$name) {
            let $name { $($field: _),* } = v;
            $( let _: &$fty = &v.$field; )*
        }
        let mut out = [0u64; [$(stringify!($field)),*].len()];
        let mut h = $crate::abi::layout::mix($crate::abi::layout::START, stringify!($name).as_bytes());
        h = $crate::abi::layout::mix_num(h, ::core::mem::align_of::<$name>());
        let mut i = 0;
        $(
            h = $crate::abi::layout::mix(h, stringify!($field).as_bytes());
            h = $crate::abi::layout::mix(h, stringify!($fty).as_bytes());
            h = $crate::abi::layout::mix_num(h, ::core::mem::offset_of!($name, $field));
            h = $crate::abi::layout::mix_num(h, ::core::mem::size_of::<$fty>());
            out[i] = h;
            i += 1;
        )*
        let _ = i;
        out
    }};
}
pub(crate) use prefixes;

#[cfg(test)]
mod tests {
    use super::{agree, read_prefix};

    // Test-only copies of one table, changed the ways an SDK release might.
    mod v0 {
        #[repr(C)]
        pub struct T {
            pub size: u32,
            pub a: unsafe extern "C" fn(u32) -> u32,
        }
    }
    mod appended {
        #[repr(C)]
        pub struct T {
            pub size: u32,
            pub a: unsafe extern "C" fn(u32) -> u32,
            pub b: Option<unsafe extern "C" fn() -> u32>,
        }
    }
    mod retyped {
        #[repr(C)]
        pub struct T {
            pub size: u32,
            pub a: unsafe extern "C" fn(u64) -> u32,
        }
    }
    mod inserted {
        #[repr(C)]
        pub struct T {
            pub size: u32,
            pub b: Option<unsafe extern "C" fn() -> u32>,
            pub a: unsafe extern "C" fn(u32) -> u32,
        }
    }

    #[test]
    fn an_append_agrees_and_any_other_change_does_not() {
        let v0 = {
            use v0::T;
            prefixes!(T { size: u32, a: unsafe extern "C" fn(u32) -> u32 })
        };
        let appended = {
            use appended::T;
            prefixes!(T {
                size: u32,
                a: unsafe extern "C" fn(u32) -> u32,
                b: Option<unsafe extern "C" fn() -> u32>,
            })
        };
        let retyped = {
            use retyped::T;
            prefixes!(T { size: u32, a: unsafe extern "C" fn(u64) -> u32 })
        };
        let inserted = {
            use inserted::T;
            prefixes!(T {
                size: u32,
                b: Option<unsafe extern "C" fn() -> u32>,
                a: unsafe extern "C" fn(u32) -> u32,
            })
        };
        // An older and a newer side agree, whichever is which.
        assert!(agree(&v0, &appended, 2));
        assert!(agree(&appended, &v0, 2));
        assert!(agree(&v0, &v0, 2));
        // Any other change is refused.
        assert!(!agree(&v0, &retyped, 2), "a retyped field");
        assert!(!agree(&v0, &inserted, 2), "a field inserted before the end");
        assert!(
            !agree(&appended, &inserted, 2),
            "the same fields, reordered"
        );
        // A side that knows less than the base is refused too.
        assert!(!agree(&v0[..1], &appended, 2));
    }

    unsafe extern "C" fn one(x: u32) -> u32 {
        x + 1
    }

    #[test]
    fn a_newer_reader_fills_what_an_older_writer_lacks_with_none() {
        let old = v0::T {
            size: size_of::<v0::T>() as u32,
            a: one,
        };
        // SAFETY: `old` is readable for its size, which covers the base of
        // `appended::T` (every field but `b`), laid out alike.
        let read: appended::T =
            unsafe { read_prefix(std::ptr::from_ref(&old).cast(), old.size as usize) };
        assert_eq!(read.size, old.size);
        // SAFETY: `one` is a plain function.
        assert_eq!(unsafe { (read.a)(1) }, 2);
        assert!(read.b.is_none(), "the field the writer lacks reads as None");
        // And an older reader takes the prefix it knows of a newer table.
        let new = appended::T {
            size: size_of::<appended::T>() as u32,
            a: one,
            b: None,
        };
        // SAFETY: `new` is readable for its size; `v0::T` is its prefix.
        let read: v0::T =
            unsafe { read_prefix(std::ptr::from_ref(&new).cast(), new.size as usize) };
        // SAFETY: as above.
        assert_eq!(unsafe { (read.a)(2) }, 3);
    }
}
