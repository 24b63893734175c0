//! Reading a plugin's exported declaration: header check first (magic,
//! boundary version, size, and the symbol's size where the loader knows it),
//! then the rest: the prefix the plugin has, whether its view of the two
//! growable tables agrees with the host's on the fields both know, and
//! whether the host provides every service it needs. No plugin function is
//! called here.
//!
//! Past 400 lines for one job: every check a declaration passes before any
//! of its functions is called, with their property tests.

use std::path::Path;

use horizon_plugin_sdk::abi::table::{self, TableLayout};
use horizon_plugin_sdk::abi::{
    ABI_VERSION, DECLARATION_BASE, DECLARATION_BASE_FIELDS, DECLARATION_PREFIX, DECLARATION_SYMBOL,
    HOST_API_BASE_FIELDS, HOST_API_PREFIX, HostApi, LAYOUT_FINGERPRINT, MAGIC, PluginDeclaration,
    RStatus, RStr, RawFuture, SDK_VERSION, ServiceUse,
};
use libloading::Library;

use crate::error::LoadError;
use crate::trust::{Admitted, TrustDecision, TrustPolicy};

/// What a plugin library declares, read without initializing it
/// ([`inspect`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Declaration {
    /// The plugin's name, when its declaration could be read.
    pub name: Option<String>,
    /// The SDK version it was built with, when readable.
    pub sdk_version: Option<String>,
    /// The rustc that built it, when readable.
    pub rustc_version: Option<String>,
    /// Its boundary version, when it has a Horizon header.
    pub abi_version: Option<u32>,
    /// The size of its declaration and of the host table it was built to
    /// read, in bytes (this host's: [`TABLE_SIZES`]), when readable.
    pub table_sizes: Option<TableSizes>,
    /// The host services it may call, and whether this host provides each.
    pub services: Vec<ServiceNeed>,
    /// What the trust policy decided, when it accepted the file (also when
    /// the loader then could not open it).
    pub trust: Option<TrustDecision>,
}

/// The sizes of the two growable tables as one side was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSizes {
    /// `PluginDeclaration`, in bytes.
    pub declaration: u32,
    /// `HostApi`, in bytes.
    pub host_api: u32,
}

/// This host's table sizes.
pub const TABLE_SIZES: TableSizes = TableSizes {
    declaration: size_of::<PluginDeclaration>() as u32,
    host_api: size_of::<HostApi>() as u32,
};

/// A host service a plugin may call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceNeed {
    /// The service's name (a field of the host table).
    pub name: String,
    /// Whether the plugin cannot run without it (else it falls back).
    pub required: bool,
    /// Whether this host provides it.
    pub provided: bool,
}

/// Opens the library at `path` and reads its declaration without calling
/// any of its functions (the dynamic loader still runs its initializers).
/// `Ok` when a host with the default [`TrustPolicy`] would load it;
/// otherwise the [`LoadError`] that `load` would give, with what could be
/// read. [`inspect_with`] applies another policy first.
///
/// # Examples
/// ```
/// let (declaration, verdict) = horizon_plugin_host::inspect("/no/such/libplugin.so");
/// assert!(declaration.name.is_none());
/// assert!(verdict.unwrap_err().to_string().contains("could not open"));
/// ```
pub fn inspect(path: impl AsRef<Path>) -> (Declaration, Result<(), LoadError>) {
    inspect_with(&TrustPolicy::any_file(), path)
}

/// As [`inspect`], after applying `policy`: a file it refuses is not
/// opened (the error is [`LoadError::Untrusted`]), and one it accepts is
/// opened as the host would open it (its checked copy).
pub fn inspect_with(
    policy: &TrustPolicy,
    path: impl AsRef<Path>,
) -> (Declaration, Result<(), LoadError>) {
    let path = path.as_ref();
    let mut found = Declaration {
        name: None,
        sdk_version: None,
        rustc_version: None,
        abi_version: None,
        table_sizes: None,
        services: Vec::new(),
        trust: None,
    };
    let admitted = match admit(policy, path) {
        Ok(admitted) => admitted,
        Err(err) => return (found, Err(err)),
    };
    found.trust = Some(admitted.decision.clone());
    let library = match open_admitted(admitted, path) {
        Ok(library) => library,
        Err(err) => return (found, Err(err)),
    };
    let result = read_declared(&library, path).and_then(|(_, info)| {
        found.name = Some(info.name.clone());
        found.sdk_version = Some(info.sdk_version.clone());
        found.rustc_version = Some(info.rustc_version.clone());
        found.abi_version = Some(ABI_VERSION);
        found.table_sizes = Some(info.sizes);
        found.services = info.services.clone();
        check_services(&info, path)
    });
    if let Err(LoadError::AbiMismatch { plugin, .. }) = &result {
        found.abi_version = Some(*plugin);
    }
    (found, result)
}

/// What `policy` admits of the file at `path`, for [`open_admitted`].
pub(crate) fn admit(policy: &TrustPolicy, path: &Path) -> Result<Admitted, LoadError> {
    policy.admit(path).map_err(|reason| LoadError::Untrusted {
        path: path.to_owned(),
        reason,
    })
}

/// Opens what the policy admitted of `path` (the file itself, or the
/// private copy of the checked bytes, removed once mapped). The one place
/// a plugin library is opened.
pub(crate) fn open_admitted(admitted: Admitted, path: &Path) -> Result<Library, LoadError> {
    // SAFETY: loading a library runs its initializers. That is the point
    // of a plugin host: the host runs what its trust policy admitted (the
    // checked bytes), and checks its declaration before calling in.
    unsafe { Library::new(&admitted.open) }.map_err(|source| LoadError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Magic (8 bytes), boundary version (4), declared size (4) and layout
/// fingerprint (8): the same in every boundary version.
pub(crate) const HEADER_SIZE: usize = 24;

/// A declaration larger than this is not believed (a newer SDK's tables
/// grow by a few words per release, not by pages).
const MAX_DECLARATION: u32 = 4096;

/// The size the dynamic loader records for the symbol at `addr`, where the
/// platform says (glibc's `dladdr1`); `None` elsewhere or when unknown.
fn symbol_size(addr: *const std::ffi::c_void) -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// `RTLD_DL_SYMENT` from glibc's `<dlfcn.h>`.
        const RTLD_DL_SYMENT: std::ffi::c_int = 1;
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::uninit();
        let mut sym: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: `addr` is a symbol address returned by `dlsym`; glibc
        // writes `info` and a pointer to the symbol's `ElfW(Sym)` entry.
        let found = unsafe { libc::dladdr1(addr, info.as_mut_ptr(), &mut sym, RTLD_DL_SYMENT) };
        if found == 0 || sym.is_null() {
            return None;
        }
        #[cfg(target_pointer_width = "64")]
        type ElfSym = libc::Elf64_Sym;
        #[cfg(target_pointer_width = "32")]
        type ElfSym = libc::Elf32_Sym;
        // SAFETY: with `RTLD_DL_SYMENT`, `sym` points to the symbol's
        // `ElfW(Sym)` (the target's word size) in the loaded object's
        // mapped, read-only symbol table; read unaligned to assume nothing.
        let size = unsafe { std::ptr::read_unaligned(sym.cast::<ElfSym>()) }.st_size;
        usize::try_from(size).ok().filter(|n| *n > 0)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = addr;
        None
    }
}

/// Checks a declaration's header (and the symbol's size, where known)
/// against this host's boundary: same magic, same major version, same
/// frozen-type fingerprint, and a size at least the base of this major
/// (a newer SDK's declaration may be larger). Returns that size. Pure, so
/// it can be property-tested.
pub(crate) fn check_header(
    header: [u8; HEADER_SIZE],
    symbol_size: Option<usize>,
    path: &Path,
) -> Result<usize, LoadError> {
    let field = |at: usize, n: usize| {
        let mut bytes = [0u8; 8];
        bytes[..n].copy_from_slice(&header[at..at + n]);
        u64::from_le_bytes(bytes)
    };
    let magic = field(0, 8);
    let abi_version = field(8, 4) as u32;
    let size = field(12, 4) as u32;
    let layout = field(16, 8);
    if magic != MAGIC {
        return Err(LoadError::BadMagic {
            path: path.to_owned(),
            found: magic,
        });
    }
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            path: path.to_owned(),
            plugin: abi_version,
            host: ABI_VERSION,
        });
    }
    if (size as usize) < DECLARATION_BASE || size > MAX_DECLARATION {
        return Err(LoadError::Malformed {
            path: path.to_owned(),
            reason: format!(
                "its declaration says it is {size} bytes; boundary version {ABI_VERSION} declarations are {DECLARATION_BASE} to {MAX_DECLARATION} bytes"
            ),
        });
    }
    if layout != LAYOUT_FINGERPRINT {
        return Err(LoadError::LayoutMismatch {
            path: path.to_owned(),
            plugin: layout,
            host: LAYOUT_FINGERPRINT,
        });
    }
    if let Some(actual) = symbol_size.filter(|n| *n < size as usize) {
        return Err(LoadError::Malformed {
            path: path.to_owned(),
            reason: format!(
                "its declaration is truncated: the symbol is {actual} bytes, the declaration {size} bytes"
            ),
        });
    }
    Ok(size as usize)
}

/// The declaration's entry points, copied out after the header check.
#[derive(Clone, Copy)]
pub(crate) struct DeclFns {
    pub(crate) init: unsafe extern "C" fn(*const HostApi) -> RStatus,
    pub(crate) on_load: unsafe extern "C" fn() -> RawFuture<RStatus>,
    pub(crate) on_unload: unsafe extern "C" fn() -> RawFuture<RStatus>,
    pub(crate) shutdown: unsafe extern "C" fn(*const HostApi) -> u32,
    /// `None` for plugins before boundary 4.5 (zero-filled).
    pub(crate) release: Option<unsafe extern "C" fn(*const HostApi)>,
}

/// What a declaration says about its plugin, checked to be UTF-8.
pub(crate) struct Declared {
    pub(crate) name: String,
    pub(crate) sdk_version: String,
    pub(crate) rustc_version: String,
    pub(crate) sizes: TableSizes,
    pub(crate) services: Vec<ServiceNeed>,
}

/// Checks the library's declaration and copies out what the host needs,
/// refusing a plugin that needs a service this host lacks. Calls none of
/// the plugin's functions.
pub(crate) fn read_declaration(
    library: &Library,
    path: &Path,
) -> Result<(DeclFns, Declared), LoadError> {
    let (fns, info) = read_declared(library, path)?;
    check_services(&info, path)?;
    Ok((fns, info))
}

/// Refuses a plugin that needs a service this host lacks (one it can do
/// without loads, and its SDK falls back where the host lacks it).
fn check_services(info: &Declared, path: &Path) -> Result<(), LoadError> {
    match info.services.iter().find(|s| s.required && !s.provided) {
        Some(missing) => Err(LoadError::MissingService {
            path: path.to_owned(),
            service: missing.name.clone(),
            plugin_sdk: info.sdk_version.clone(),
            host_sdk: SDK_VERSION.to_owned(),
        }),
        None => Ok(()),
    }
}

/// The prefix fingerprints of a table layout read from a plugin.
///
/// # Safety
/// `layout` was read from a declaration whose header was checked, of a
/// library that is loaded.
unsafe fn prefix_of(layout: &TableLayout) -> Vec<u64> {
    if layout.fields > MAX_DECLARATION || layout.prefix.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller's guarantee: the SDK that built the plugin made
    // `prefix` point to `fields` `'static` entries.
    unsafe { layout.prefix() }
}

/// The header check, the copy of the plugin's prefix, and the checks of
/// what it says, but not the services.
fn read_declared(library: &Library, path: &Path) -> Result<(DeclFns, Declared), LoadError> {
    // SAFETY: we only take the symbol's address here; it is read below only
    // after the header check.
    let symbol = unsafe { library.get::<*const PluginDeclaration>(DECLARATION_SYMBOL.as_bytes()) };
    let ptr: *const PluginDeclaration = match symbol {
        Ok(sym) => *sym,
        Err(_) => {
            return Err(LoadError::NotAPlugin {
                path: path.to_owned(),
            });
        }
    };
    if ptr.is_null() {
        return Err(LoadError::NotAPlugin {
            path: path.to_owned(),
        });
    }
    let symbol_size = symbol_size(ptr.cast());
    if let Some(n) = symbol_size.filter(|n| *n < HEADER_SIZE) {
        return Err(LoadError::Malformed {
            path: path.to_owned(),
            reason: format!(
                "its declaration is truncated: the symbol is {n} bytes, shorter than the {HEADER_SIZE}-byte header"
            ),
        });
    }
    let mut header = [0u8; HEADER_SIZE];
    // SAFETY: the symbol is at least `HEADER_SIZE` bytes where the loader
    // knows symbol sizes (checked above). Where it does not, a symbol of
    // this name that is shorter than the header is not a Horizon
    // declaration (every one starts with it) and may be over-read by up to
    // `HEADER_SIZE` bytes of the library's mapped data. Bytes are copied;
    // no alignment is assumed.
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), header.as_mut_ptr(), HEADER_SIZE) };
    let size = check_header(header, symbol_size, path)?;
    // SAFETY: the declaration's first `size` bytes are readable (the
    // symbol's size, where known, covers them). Copied, so its alignment
    // does not matter; not yet taken for a `PluginDeclaration`.
    let raw = unsafe { table::copy_prefix(ptr, size) };
    let layout_at = |offset: usize| {
        // SAFETY: `offset` is that of a `TableLayout` field of the base,
        // which the copy covers (`size` is at least the base, checked with
        // the header); a `TableLayout` is valid for any bytes (two
        // integers and a raw pointer), read unaligned.
        unsafe {
            raw.as_ptr()
                .cast::<u8>()
                .add(offset)
                .cast::<TableLayout>()
                .read_unaligned()
        }
    };
    let declaration = layout_at(std::mem::offset_of!(PluginDeclaration, declaration));
    let host_api = layout_at(std::mem::offset_of!(PluginDeclaration, host_api));
    let mismatch = |table: &'static str| LoadError::TableMismatch {
        path: path.to_owned(),
        table,
    };
    // SAFETY: read from the declaration whose header was checked, of a
    // loaded library.
    let (decl_prefix, api_prefix) = unsafe { (prefix_of(&declaration), prefix_of(&host_api)) };
    if declaration.size as usize != size
        || !table::agree(DECLARATION_PREFIX, &decl_prefix, DECLARATION_BASE_FIELDS)
    {
        return Err(mismatch("declaration"));
    }
    if !table::agree(HOST_API_PREFIX, &api_prefix, HOST_API_BASE_FIELDS) {
        return Err(mismatch("host service"));
    }
    // SAFETY: magic, major version and frozen layout match this host's, and
    // the declaration's fields agree with this host's on every field both
    // know (checked just now), so the copy's first `size` bytes are a valid
    // prefix of a `PluginDeclaration`; fields this host knows and the
    // plugin lacks are zero, which the growth rule makes valid (`Option`s,
    // integers, null pointers, each past the size the table had before it).
    let decl: PluginDeclaration = unsafe { raw.assume_init() };
    let malformed = |what: &str| LoadError::Malformed {
        path: path.to_owned(),
        reason: format!("its {what} is not UTF-8"),
    };
    // SAFETY: the declaration's strings point to `'static` data of the library.
    let text = |s: &RStr<'static>, what: &str| match unsafe { s.to_str() } {
        Some(s) => Ok(s.to_owned()),
        None => Err(malformed(what)),
    };
    if decl.services_len > MAX_DECLARATION || (decl.services.is_null() && decl.services_len > 0) {
        return Err(LoadError::Malformed {
            path: path.to_owned(),
            reason: format!("it lists {} services", decl.services_len),
        });
    }
    let mut services = Vec::with_capacity(decl.services_len as usize);
    for i in 0..decl.services_len as usize {
        // SAFETY: the SDK that built the plugin made `services` point to
        // `services_len` `'static` entries of this frozen type.
        let used: ServiceUse = unsafe { decl.services.add(i).read_unaligned() };
        services.push(ServiceNeed {
            name: text(&used.name, "service name")?,
            required: used.required != 0,
            provided: used.end as usize <= size_of::<HostApi>(),
        });
    }
    let info = Declared {
        name: text(&decl.name, "name")?,
        sdk_version: text(&decl.sdk_version, "SDK version")?,
        rustc_version: text(&decl.rustc_version, "rustc version")?,
        sizes: TableSizes {
            declaration: decl.declaration.size,
            host_api: decl.host_api.size,
        },
        services,
    };
    let fns = DeclFns {
        init: decl.init,
        on_load: decl.on_load,
        on_unload: decl.on_unload,
        shutdown: decl.shutdown,
        release: decl.release,
    };
    Ok((fns, info))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use horizon_plugin_sdk::abi::{
        ABI_VERSION, DECLARATION_BASE, LAYOUT_FINGERPRINT, MAGIC, PluginDeclaration,
    };
    use proptest::prelude::*;

    use super::{HEADER_SIZE, MAX_DECLARATION, check_header};
    use crate::LoadError;

    fn header(magic: u64, version: u32, size: u32) -> [u8; HEADER_SIZE] {
        header_with(magic, version, size, LAYOUT_FINGERPRINT)
    }

    fn header_with(magic: u64, version: u32, size: u32, layout: u64) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[..8].copy_from_slice(&magic.to_le_bytes());
        h[8..12].copy_from_slice(&version.to_le_bytes());
        h[12..16].copy_from_slice(&size.to_le_bytes());
        h[16..].copy_from_slice(&layout.to_le_bytes());
        h
    }

    /// A plugin whose boundary types are laid out differently under the same
    /// version (its SDK changed a type without a bump) is refused, naming
    /// both fingerprints. (The SDK's own tests show a changed type changes
    /// the fingerprint.)
    #[test]
    fn another_layout_under_the_same_version_is_refused() {
        let theirs = LAYOUT_FINGERPRINT ^ 1;
        let err = check_header(
            header_with(MAGIC, ABI_VERSION, DECL, theirs),
            None,
            Path::new("p"),
        )
        .unwrap_err();
        assert!(
            matches!(err, LoadError::LayoutMismatch { plugin, host, .. } if plugin == theirs && host == LAYOUT_FINGERPRINT),
            "{err:?}"
        );
        assert!(err.to_string().contains("laid out differently"), "{err}");
    }

    const DECL: u32 = size_of::<PluginDeclaration>() as u32;

    /// Sizes a plugin of this major may have: from the base (an older SDK)
    /// to larger than this host's (a newer SDK that appended fields).
    fn valid_size(size: u32) -> bool {
        (DECLARATION_BASE as u32..=MAX_DECLARATION).contains(&size)
    }

    #[test]
    fn the_real_header_passes() {
        assert!(check_header(header(MAGIC, ABI_VERSION, DECL), None, Path::new("p")).is_ok());
        // An older SDK's declaration (the base) and a newer one's (larger).
        for size in [DECLARATION_BASE as u32, DECL + 8] {
            assert!(check_header(header(MAGIC, ABI_VERSION, size), None, Path::new("p")).is_ok());
        }
        assert!(
            check_header(
                header(MAGIC, ABI_VERSION, DECL),
                Some(DECL as usize),
                Path::new("p")
            )
            .is_ok()
        );
    }

    proptest! {
        /// Any 24 bytes and any symbol size: an error or success, never a
        /// panic; success exactly for this host's magic, version, size and
        /// layout.
        #[test]
        fn arbitrary_headers_never_panic(bytes in any::<[u8; 24]>(), symbol in proptest::option::of(0usize..4096)) {
            let result = check_header(bytes, symbol, Path::new("p"));
            let size = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
            let valid = bytes[..8] == MAGIC.to_le_bytes()
                && bytes[8..12] == ABI_VERSION.to_le_bytes()
                && valid_size(size)
                && bytes[16..] == LAYOUT_FINGERPRINT.to_le_bytes()
                && symbol.is_none_or(|n| n >= size as usize);
            prop_assert_eq!(result.is_ok(), valid);
        }

        /// A near miss of each field is refused with the matching error.
        #[test]
        fn near_misses_are_refused(version in any::<u32>(), size in any::<u32>(), magic in any::<u64>(), layout in any::<u64>()) {
            if layout != LAYOUT_FINGERPRINT {
                let refused = matches!(check_header(header_with(MAGIC, ABI_VERSION, DECL, layout), None, Path::new("p")), Err(LoadError::LayoutMismatch { .. }));
                prop_assert!(refused);
            }
            if magic != MAGIC {
                let refused = matches!(check_header(header(magic, ABI_VERSION, DECL), None, Path::new("p")), Err(LoadError::BadMagic { .. }));
                prop_assert!(refused);
            }
            if version != ABI_VERSION {
                let refused = matches!(check_header(header(MAGIC, version, DECL), None, Path::new("p")), Err(LoadError::AbiMismatch { .. }));
                prop_assert!(refused);
            }
            if !valid_size(size) {
                let refused = matches!(check_header(header(MAGIC, ABI_VERSION, size), None, Path::new("p")), Err(LoadError::Malformed { .. }));
                prop_assert!(refused);
            }
        }
    }
}
