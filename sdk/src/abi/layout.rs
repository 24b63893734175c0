//! The layout fingerprint of the boundary: a hash, computed at compile
//! time, of every boundary type's name, size and alignment and of each
//! field's name, declared type and offset, in order. A plugin's declaration
//! carries the fingerprint of the SDK it was built with; the host refuses a
//! plugin whose fingerprint differs from its own, so a boundary type changed
//! without a version bump is refused at load instead of corrupting memory,
//! and a unit test in `abi/mod.rs` pins the fingerprint of each boundary
//! version.
//!
//! The description of each type is checked against the type itself: the
//! field list is a struct pattern without `..` (a field added or removed is
//! a compile error here) and each field's declared type is checked.

/// FNV-1a over `bytes`, continuing from `h`.
pub(crate) const fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// Mixes a size or offset.
pub(crate) const fn mix_num(h: u64, n: usize) -> u64 {
    mix(h, &(n as u64).to_le_bytes())
}

/// FNV-1a's offset basis.
pub(crate) const START: u64 = 0xcbf2_9ce4_8422_2325;

/// Mixes one type's layout into `$h`: `describe!(h, Name<generics> { field: Type, .. })`.
macro_rules! describe {
    ($h:expr, $name:ident $(<$($gen:tt),*>)? { $($field:ident : $fty:ty),* $(,)? }) => {{
        type Described = $name $(<$($gen),*>)?;
        #[allow(dead_code, clippy::needless_borrow)]
        fn fields(v: &Described) {
            // Every field listed: a struct pattern without `..`.
            let $name { $($field: _),* } = v;
            // With its declared type.
            $( let _: &$fty = &v.$field; )*
        }
        let mut h = $crate::abi::layout::mix($h, stringify!($name $(<$($gen),*>)?).as_bytes());
        h = $crate::abi::layout::mix_num(h, ::core::mem::size_of::<Described>());
        h = $crate::abi::layout::mix_num(h, ::core::mem::align_of::<Described>());
        $(
            h = $crate::abi::layout::mix(h, stringify!($field).as_bytes());
            h = $crate::abi::layout::mix(h, stringify!($fty).as_bytes());
            h = $crate::abi::layout::mix_num(h, ::core::mem::offset_of!(Described, $field));
        )*
        h
    }};
}
pub(crate) use describe;

#[cfg(test)]
mod tests {
    use super::START;

    /// A test-only copy of a boundary type, changed the ways a careless
    /// edit changes one: its fingerprint differs from the original's.
    #[test]
    fn a_changed_type_changes_the_fingerprint() {
        mod original {
            #[repr(C)]
            pub struct Table {
                pub size: u32,
                pub data: *const (),
                pub call: unsafe extern "C" fn(u32) -> u32,
            }
        }
        mod reordered {
            #[repr(C)]
            pub struct Table {
                pub data: *const (),
                pub size: u32,
                pub call: unsafe extern "C" fn(u32) -> u32,
            }
        }
        mod resigned {
            #[repr(C)]
            pub struct Table {
                pub size: u32,
                pub data: *const (),
                pub call: unsafe extern "C" fn(u64) -> u32,
            }
        }
        mod renamed {
            #[repr(C)]
            pub struct Table {
                pub len: u32,
                pub data: *const (),
                pub call: unsafe extern "C" fn(u32) -> u32,
            }
        }
        let original = {
            use original::Table;
            describe!(START, Table { size: u32, data: *const (), call: unsafe extern "C" fn(u32) -> u32 })
        };
        let reordered = {
            use reordered::Table;
            describe!(START, Table { data: *const (), size: u32, call: unsafe extern "C" fn(u32) -> u32 })
        };
        let resigned = {
            use resigned::Table;
            describe!(START, Table { size: u32, data: *const (), call: unsafe extern "C" fn(u64) -> u32 })
        };
        let renamed = {
            use renamed::Table;
            describe!(START, Table { len: u32, data: *const (), call: unsafe extern "C" fn(u32) -> u32 })
        };
        for (what, changed) in [
            ("reordered", reordered),
            ("resigned", resigned),
            ("renamed", renamed),
        ] {
            assert_ne!(
                original, changed,
                "a {what} field must change the fingerprint"
            );
        }
    }
}
