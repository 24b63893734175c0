//! The library boundary: every type that crosses between a host and a plugin.
//!
//! Nothing here is a tokio type. A plugin and its host may be built with
//! different tokio versions, tokio features, global allocators or rustc
//! releases; only [`ABI_VERSION`] has to match. Everything is `#[repr(C)]`
//! or an `extern "C"` function pointer, and each side frees only what it
//! allocated, through the owner's function pointer.
//!
//! Host authors use these types through `horizon-plugin-host`; plugin
//! authors never touch them (the `#[horizon_plugin]` attribute emits the
//! declaration).

use std::ffi::c_void;

mod future;
pub mod guard;
mod layout;
mod values;
pub mod waker;

pub use future::{FromPanic, PollFn, RawFuture};
pub use values::{RStatus, RStr, RString, STATUS_ERROR, STATUS_OK, STATUS_PANIC};
pub use waker::{BoundaryWaker, WakerFns};

/// First field of every [`PluginDeclaration`]: `"HORIZON\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"HORIZON\0");

/// Version of this boundary. Bumped on every change to a type in this module.
pub const ABI_VERSION: u32 = 3;

/// The layout fingerprint of every type in this module (names, sizes,
/// alignments, and each field's name, declared type and offset, in order),
/// computed at compile time. A plugin's declaration carries it and the host
/// refuses a plugin whose fingerprint is not its own: a boundary type
/// changed without a bump of [`ABI_VERSION`] is refused at load rather than
/// misread. A unit test pins the fingerprint of the current version.
pub const LAYOUT_FINGERPRINT: u64 = fingerprint();

const fn fingerprint() -> u64 {
    use layout::describe;
    let h = values::layout(layout::START);
    let h = describe!(h, BoundaryWaker {
        data: *const (),
        vtable: *const c_void,
        fns: *const WakerFns,
    });
    let h = describe!(h, WakerFns {
        clone: unsafe extern "C" fn(BoundaryWaker) -> BoundaryWaker,
        wake: unsafe extern "C" fn(BoundaryWaker),
        wake_by_ref: unsafe extern "C" fn(BoundaryWaker),
        drop: unsafe extern "C" fn(BoundaryWaker),
    });
    let h = future::layout(h);
    let h = describe!(h, BlockingJob {
        data: *mut c_void,
        run: unsafe extern "C" fn(*mut c_void),
        drop: unsafe extern "C" fn(*mut c_void),
    });
    let h = describe!(h, RawHandler {
        data: *const c_void,
        call: unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>,
        drop: unsafe extern "C" fn(*const c_void),
    });
    let h = describe!(h, HostApi {
        abi_version: u32,
        size: u32,
        data: *const c_void,
        flags: u32,
        spawn: unsafe extern "C" fn(*const c_void, RawFuture) -> bool,
        spawn_blocking: unsafe extern "C" fn(*const c_void, BlockingJob) -> bool,
        task_abort: unsafe extern "C" fn(*const c_void, *const c_void),
        sleep: unsafe extern "C" fn(*const c_void, u64) -> RawFuture<()>,
        emit: unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>,
        subscribe: unsafe extern "C" fn(*const c_void, RStr<'_>, RawHandler) -> RStatus,
        max_level: u32,
        log_enabled: unsafe extern "C" fn(*const c_void, u32, RStr<'_>) -> bool,
        log: unsafe extern "C" fn(*const c_void, u32, RStr<'_>, RStr<'_>),
    });
    describe!(h, PluginDeclaration {
        magic: u64,
        abi_version: u32,
        size: u32,
        layout: u64,
        sdk_version: RStr<'static>,
        rustc_version: RStr<'static>,
        name: RStr<'static>,
        init: unsafe extern "C" fn(*const HostApi) -> RStatus,
        on_load: unsafe extern "C" fn() -> RawFuture<RStatus>,
        on_unload: unsafe extern "C" fn() -> RawFuture<RStatus>,
        shutdown: unsafe extern "C" fn(*const HostApi) -> u32,
    })
}

/// Name of the symbol a plugin exports its [`PluginDeclaration`] under.
pub const DECLARATION_SYMBOL: &str = "HORIZON_PLUGIN_DECLARATION";

/// Version of the `horizon-plugin-sdk` crate this binary was built with.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `rustc --version` of the compiler that built this binary.
pub const RUSTC_VERSION: &str = env!("HORIZON_RUSTC_VERSION");

/// A blocking job: `run` consumes `data` and is called at most once; if the
/// job never runs, `drop` is called instead. Both are plugin functions; the
/// job's output stays in plugin memory.
#[repr(C)]
pub struct BlockingJob {
    /// Plugin-owned job state.
    pub data: *mut c_void,
    /// Runs the job and frees `data`. Never unwinds.
    pub run: unsafe extern "C" fn(*mut c_void),
    /// Frees `data` without running it. Never unwinds.
    pub drop: unsafe extern "C" fn(*mut c_void),
}

/// An event handler a plugin registered: `call` starts one invocation and
/// returns its future; `drop` frees `data` once the host will make no more calls.
#[repr(C)]
pub struct RawHandler {
    /// Plugin-owned handler state.
    pub data: *const c_void,
    /// Starts the handler for one event (`name`, JSON `payload`). Never unwinds.
    pub call: unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>,
    /// Frees `data`. Never unwinds.
    pub drop: unsafe extern "C" fn(*const c_void),
}

/// Log levels, ordered like `tracing::Level` (`ERROR` is the most severe).
pub mod level {
    /// Error.
    pub const ERROR: u32 = 1;
    /// Warning.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debug.
    pub const DEBUG: u32 = 4;
    /// Trace.
    pub const TRACE: u32 = 5;
}

/// The table of host services a plugin receives at `init`: everything the
/// plugin needs from a runtime, implemented by host code on the host's tokio
/// runtime. It is never a `tokio::runtime::Handle`.
///
/// Every function is callable from any thread, never unwinds, and reports
/// failure in its return value.
#[repr(C)]
pub struct HostApi {
    /// [`ABI_VERSION`] of the host.
    pub abi_version: u32,
    /// `size_of::<HostApi>()` on the host.
    pub size: u32,
    /// Host-owned state passed back as the first argument of every call.
    pub data: *const c_void,
    /// `FLAG_*` bits: how the host runs this plugin.
    pub flags: u32,
    /// Runs a future on the host runtime as a task owned by this plugin;
    /// false if the host refused (the plugin is being unloaded), after
    /// dropping the future.
    pub spawn: unsafe extern "C" fn(*const c_void, RawFuture) -> bool,
    /// Runs a job on the host's blocking pool as a task owned by this plugin;
    /// false if the host refused, after calling the job's `drop`.
    pub spawn_blocking: unsafe extern "C" fn(*const c_void, BlockingJob) -> bool,
    /// Wakes the task whose [`RawFuture::data`] is the second argument, after
    /// the plugin set its [`RawFuture::cancelled`], so the host drops it even
    /// if nothing else would wake it (no effect on tasks that are gone).
    pub task_abort: unsafe extern "C" fn(*const c_void, *const c_void),
    /// A future that completes `nanos` nanoseconds from now, on the host's timer.
    pub sleep: unsafe extern "C" fn(*const c_void, u64) -> RawFuture<()>,
    /// Sends an event (JSON payload) to the host and every subscribed plugin;
    /// the future completes once every handler has finished.
    pub emit: unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>,
    /// Subscribes a handler to an event name. When the host refuses, it
    /// has already called the handler's `drop`.
    pub subscribe: unsafe extern "C" fn(*const c_void, RStr<'_>, RawHandler) -> RStatus,
    /// The most verbose [`level`] the host records (0: none), read when the
    /// plugin was loaded; the plugin drops more verbose records without a call.
    pub max_level: u32,
    /// Whether a record of this level and target would be recorded by the host.
    pub log_enabled: unsafe extern "C" fn(*const c_void, u32, RStr<'_>) -> bool,
    /// Records a log line (level, target, message) tagged with the plugin's name.
    pub log: unsafe extern "C" fn(*const c_void, u32, RStr<'_>, RStr<'_>),
}

// SAFETY: the table is immutable, its functions may be called from any
// thread (the host's contract, stated above), and `data` is only passed back
// to them.
unsafe impl Send for HostApi {}
// SAFETY: as above.
unsafe impl Sync for HostApi {}

/// What a plugin exports under [`DECLARATION_SYMBOL`].
///
/// The host reads `magic`, `abi_version`, `size` and `layout` (the header)
/// before anything else and calls no function of a declaration whose header
/// does not match its own.
#[repr(C)]
pub struct PluginDeclaration {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`] of the SDK the plugin was built with.
    pub abi_version: u32,
    /// `size_of::<PluginDeclaration>()` in the plugin.
    pub size: u32,
    /// [`LAYOUT_FINGERPRINT`] of the SDK the plugin was built with.
    pub layout: u64,
    /// [`SDK_VERSION`] of the plugin.
    pub sdk_version: RStr<'static>,
    /// [`RUSTC_VERSION`] of the plugin.
    pub rustc_version: RStr<'static>,
    /// The plugin's `Plugin::NAME`.
    pub name: RStr<'static>,
    /// Stores `host`, starts the plugin's private runtime and creates the
    /// plugin instance. The table stays valid for as long as any code of
    /// the plugin can run. Whatever it returns, the host then calls
    /// `shutdown(host)` once every task the plugin spawned is gone (a
    /// plugin may spawn in `init`, e.g. from its `Default`).
    pub init: unsafe extern "C" fn(host: *const HostApi) -> RStatus,
    /// Runs `Plugin::on_load`.
    pub on_load: unsafe extern "C" fn() -> RawFuture<RStatus>,
    /// Runs `Plugin::on_unload`.
    pub on_unload: unsafe extern "C" fn() -> RawFuture<RStatus>,
    /// Drops the plugin instance and its private runtime and forgets `host`
    /// (a no-op unless `host` is the table this library was initialized
    /// with). Called once, from a thread that may block, once no plugin
    /// task is left. Returns a `SHUTDOWN_*` code; messages go to the host's
    /// log (no plugin-allocated value outlives the call).
    pub shutdown: unsafe extern "C" fn(host: *const HostApi) -> u32,
}

/// `shutdown` stopped everything.
pub const SHUTDOWN_OK: u32 = 0;
/// Dropping the plugin instance panicked (logged); everything stopped.
pub const SHUTDOWN_PANICKED: u32 = 1;
/// The plugin's private runtime did not stop in time: its threads may
/// still run plugin code, so the library must stay mapped and the table
/// alive.
pub const SHUTDOWN_STUCK: u32 = 2;

/// [`HostApi::flags`]: strict unload mode. After `shutdown`, every entry
/// into the plugin's code through the boundary aborts the process, naming
/// the entry point, and the host keeps the library mapped so that the
/// check can run (see [`guard::entered`]).
pub const FLAG_STRICT_UNLOAD: u32 = 1;

/// A [`PluginDeclaration`] that may be placed in a `static`.
#[repr(transparent)]
pub struct ExportedDeclaration(pub PluginDeclaration);

// SAFETY: the declaration is immutable and its pointers point to `'static`
// string data and functions, which are safe to share between threads.
unsafe impl Sync for ExportedDeclaration {}

// Pinned on 64-bit targets only: the fingerprint mixes sizes and offsets.
#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::{ABI_VERSION, LAYOUT_FINGERPRINT};

    /// The fingerprint of each boundary version, on 64-bit targets. A
    /// failure here means a boundary type changed: bump `ABI_VERSION` (a
    /// host then refuses plugins of the old layout by version, with a clear
    /// error) and record the new fingerprint under it.
    #[test]
    fn the_fingerprint_is_pinned_per_boundary_version() {
        let pinned: &[(u32, u64)] = &[(3, PINNED_V3)];
        let expected = pinned
            .iter()
            .find(|(version, _)| *version == ABI_VERSION)
            .map(|(_, fingerprint)| *fingerprint);
        assert_eq!(
            Some(LAYOUT_FINGERPRINT),
            expected,
            "boundary version {ABI_VERSION} has layout fingerprint {LAYOUT_FINGERPRINT:#018x}"
        );
    }

    const PINNED_V3: u64 = 0x496d_e0e4_85ae_15a4;
}
