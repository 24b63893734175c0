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
//!
//! Past 400 lines for one job: each boundary type is declared, described
//! for its fingerprint and pinned by its tests here, so a type and its
//! description cannot change apart.

use std::ffi::c_void;

mod future;
pub mod guard;
mod layout;
pub mod table;
mod values;
pub mod waker;

pub use future::{FromPanic, PollFn, RawFuture};
pub use table::TableLayout;
pub use values::{
    RStatus, RStr, RString, STATUS_CANCELLED, STATUS_ERROR, STATUS_NO_HANDLER, STATUS_OK,
    STATUS_PANIC, STATUS_REJECTED, STATUS_TIMED_OUT,
};
pub use waker::{BoundaryWaker, WakerFns};

/// First field of every [`PluginDeclaration`]: `"HORIZON\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"HORIZON\0");

/// The boundary's major version. Host and plugin must have the same one.
///
/// Bumped only by a change that is not an append: a field of a frozen type
/// changed, or a field of a growable table ([`HostApi`],
/// [`PluginDeclaration`]) other than appending one at its end (see
/// [`table`]). Within a major version the tables grow and both sides read
/// the prefix the other has, so plugins built with an older SDK of the same
/// major load in newer hosts, and the other way round.
pub const ABI_VERSION: u32 = 4;

/// The layout fingerprint of the frozen boundary types (every type here but
/// the two growable tables: names, sizes, alignments, and each field's
/// name, declared type and offset, in order), computed at compile time. A
/// plugin's declaration carries it and the host refuses a plugin whose
/// fingerprint is not its own: a frozen type changed without a bump of
/// [`ABI_VERSION`] is refused at load rather than misread. The growable
/// tables carry a fingerprint per prefix instead ([`TableLayout`]). A unit
/// test pins both.
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
    let h = describe!(h, TableLayout {
        size: u32,
        fields: u32,
        prefix: *const u64,
    });
    describe!(h, ServiceUse {
        name: RStr<'static>,
        end: u32,
        required: u32,
    })
}

/// The prefix fingerprints of [`HostApi`] as this SDK knows it.
pub const HOST_API_PREFIX: &[u64] = &table::prefixes!(HostApi {
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
    budget: Option<unsafe extern "C" fn(*const c_void, *const BoundaryWaker) -> bool>,
    report_panic: Option<unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>)>,
    answer: Option<unsafe extern "C" fn(*const c_void, RStr<'_>, RawHandler) -> RStatus>,
    call: Option<unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>>,
    share_from: usize,
    payload_retain: Option<unsafe extern "C" fn(*const c_void, RStr<'_>) -> bool>,
    payload_release: Option<unsafe extern "C" fn(*const c_void, RStr<'_>)>,
    thread_exit: Option<unsafe extern "C" fn(*const c_void, ThreadDtor, *mut u8, bool) -> bool>,
});

/// The prefix fingerprints of [`PluginDeclaration`] as this SDK knows it.
pub const DECLARATION_PREFIX: &[u64] = &table::prefixes!(PluginDeclaration {
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
    host_api: TableLayout,
    declaration: TableLayout,
    services: *const ServiceUse,
    services_len: u32,
    release: Option<unsafe extern "C" fn(*const HostApi)>,
});

/// The end of [`HostApi`]'s base (its fields in boundary 4.0, which every
/// host of this major has): a host table shorter than this is refused.
pub const HOST_API_BASE: usize = std::mem::offset_of!(HostApi, log) + size_of::<usize>();
/// How many of [`HOST_API_PREFIX`]'s fields are the base.
pub const HOST_API_BASE_FIELDS: usize = 13;

/// The end of [`PluginDeclaration`]'s base (its fields in boundary 4.0).
pub const DECLARATION_BASE: usize =
    std::mem::offset_of!(PluginDeclaration, services_len) + size_of::<u32>();
/// How many of [`DECLARATION_PREFIX`]'s fields are the base.
pub const DECLARATION_BASE_FIELDS: usize = 15;

/// [`HostApi`]'s layout as this SDK knows it.
pub const HOST_API_LAYOUT: TableLayout = TableLayout::new(size_of::<HostApi>(), HOST_API_PREFIX);
/// [`PluginDeclaration`]'s layout as this SDK knows it.
pub const DECLARATION_LAYOUT: TableLayout =
    TableLayout::new(size_of::<PluginDeclaration>(), DECLARATION_PREFIX);

/// A host service a plugin calls: its name (the [`HostApi`] field) and
/// where its entry ends in the table as the plugin was built, so a host
/// (or `horizon check`) tells whether it provides it without knowing it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ServiceUse {
    /// The field's name in [`HostApi`].
    pub name: RStr<'static>,
    /// Offset plus size of the field in the plugin's [`HostApi`].
    pub end: u32,
    /// 1: the plugin cannot run without it (a host lacking it refuses the
    /// plugin at load); 0: the plugin falls back when the host lacks it.
    pub required: u32,
}

// SAFETY: `name` points to `'static` string data.
unsafe impl Sync for ServiceUse {}

/// The end of a [`HostApi`] field (offset plus size), for [`ServiceUse::end`].
macro_rules! service_end {
    ($field:ident) => {
        (::core::mem::offset_of!($crate::abi::HostApi, $field) + ::core::mem::size_of::<usize>())
            as u32
    };
}

/// Every service this SDK may call, with whether it can do without it.
/// Each plugin's declaration points here: a plugin built with this SDK
/// uses these and no others.
pub const SERVICES_USED: &[ServiceUse] = &[
    ServiceUse {
        name: RStr::new("spawn"),
        end: service_end!(spawn),
        required: 1,
    },
    ServiceUse {
        name: RStr::new("spawn_blocking"),
        end: service_end!(spawn_blocking),
        required: 1,
    },
    ServiceUse {
        name: RStr::new("task_abort"),
        end: service_end!(task_abort),
        required: 1,
    },
    ServiceUse {
        name: RStr::new("sleep"),
        end: service_end!(sleep),
        required: 1,
    },
    ServiceUse {
        name: RStr::new("emit"),
        end: service_end!(emit),
        required: 1,
    },
    ServiceUse {
        name: RStr::new("subscribe"),
        end: service_end!(subscribe),
        required: 1,
    },
    ServiceUse {
        name: RStr::new("log"),
        end: service_end!(log),
        required: 1,
    },
    // Boundary 4.1: optional, `rt::task::consume_budget` goes on without it.
    ServiceUse {
        name: RStr::new("budget"),
        end: service_end!(budget),
        required: 0,
    },
    // Boundary 4.2: optional, panics go to the plugin's own hook without it.
    ServiceUse {
        name: RStr::new("report_panic"),
        end: service_end!(report_panic),
        required: 0,
    },
    // Boundary 4.3: optional, `PluginContext::answer` and `call` return an
    // error naming the host's boundary without them.
    ServiceUse {
        name: RStr::new("answer"),
        end: service_end!(answer),
        required: 0,
    },
    ServiceUse {
        name: RStr::new("call"),
        end: service_end!(call),
        required: 0,
    },
    // Boundary 4.3: optional, a handler copies its payload without it.
    ServiceUse {
        name: RStr::new("payload_retain"),
        end: service_end!(payload_retain),
        required: 0,
    },
    ServiceUse {
        name: RStr::new("payload_release"),
        end: service_end!(payload_release),
        required: 0,
    },
    // Boundary 4.4: optional, thread-local destructors go to the C library
    // (which keeps an unloaded copy mapped) without it.
    ServiceUse {
        name: RStr::new("thread_exit"),
        end: service_end!(thread_exit),
        required: 0,
    },
];

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
    /// Frees `data`, once no call is running and every future a call
    /// returned has been dropped: the SDK's futures point into the handler
    /// (a call's future runs the handler's closure through `data` at its
    /// first poll, and names the handler in panic reports). Never unwinds.
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
///
/// A growable table ([`table`]): a host of a later SDK may have more fields
/// than the plugin knows, or fewer (a field appended after
/// [`HOST_API_BASE`] is an `Option` of a function, `None` where the host
/// lacks it). `size` says how many bytes the host's table has; the plugin
/// copies that prefix ([`table::read_prefix`]) and never reads past it.
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
    // End of the base ([`HOST_API_BASE`]). Fields appended from here on
    // must be valid when zero: `Option<unsafe extern "C" fn ..>`.
    /// Boundary 4.1 (SDK 0.2): consumes one unit of the host task's
    /// cooperative budget (tokio's `coop`, as tokio's own resources do),
    /// with the waker of the current poll. True: go on. False: the budget
    /// is spent and the host has arranged for `waker` to be woken (it keeps
    /// no waker of the plugin's making), so the caller returns `Pending`
    /// and its task yields to the others on its worker. `None` in hosts of
    /// SDK 0.1 (the SDK then never yields for budget).
    pub budget: Option<unsafe extern "C" fn(*const c_void, *const BoundaryWaker) -> bool>,
    /// Boundary 4.2: reports a panic in plugin code as it
    /// happens (called from the plugin's panic hook, before unwinding):
    /// where it happened (`"a task spawned at src/lib.rs:12:5"`, `"its
    /// handler of event `ping`"`) and its message with its location. The
    /// host logs it as one error and counts it; the plugin then prints
    /// nothing itself. Callable from any thread; never unwinds. `None` in
    /// older hosts (the plugin's std prints the panic to stderr as usual).
    pub report_panic: Option<unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>)>,
    /// Boundary 4.3: registers the plugin's answering handler of a call
    /// name (one per name in the host: a name another plugin answers is
    /// refused). Like `subscribe`, except that a call's `RStatus` with
    /// [`STATUS_OK`] carries the answer's payload (an event payload's wire
    /// form, see `Event::wire_bytes`) in its `message`. When the host
    /// refuses, it has already called the handler's `drop`. `None` in older
    /// hosts.
    pub answer: Option<unsafe extern "C" fn(*const c_void, RStr<'_>, RawHandler) -> RStatus>,
    /// Boundary 4.3: calls the handler answering `name` with a payload in
    /// wire form; the future's `RStatus` is [`STATUS_OK`] with the answer's
    /// payload in `message`, or an error whose message says why (no
    /// handler, it failed, panicked, timed out, its plugin was unloaded)
    /// and, with [`FLAG_CALL_STATUS`], whose code says which.
    /// `None` in older hosts.
    pub call: Option<unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>>,
    /// Boundary 4.3: the payload size, in bytes, from which the host lends
    /// a handler's payload (`payload_retain`) rather than have each plugin
    /// copy it; 0: it lends none (and in older hosts).
    pub share_from: usize,
    /// Boundary 4.3: takes one reference to the payload of the handler
    /// call running on this thread (the `payload` the host passed to a
    /// `RawHandler::call` it is inside, compared by address and length),
    /// so the plugin may keep the bytes past the call without a copy.
    /// Works only while that synchronous `call` runs (not from a later
    /// poll of the future it returned, nor from another thread). False, and
    /// nothing taken, for any other bytes or when the host does not lend
    /// this one. Each reference taken is given back once with
    /// `payload_release`. `None` in older hosts.
    pub payload_retain: Option<unsafe extern "C" fn(*const c_void, RStr<'_>) -> bool>,
    /// Boundary 4.3: gives back one reference taken by `payload_retain`
    /// (the same bytes); the host frees the buffer with its last one. Does
    /// not read `data`: callable from any thread, also after the plugin's
    /// unload. `None` in older hosts.
    pub payload_release: Option<unsafe extern "C" fn(*const c_void, RStr<'_>)>,
    /// Boundary 4.4: takes over a thread-exit destructor that plugin code
    /// registers on the calling thread (what the plugin's std would hand
    /// to glibc's `__cxa_thread_atexit_impl`, which keeps the library
    /// mapped until that thread exits): the host runs `dtor(obj)` when the
    /// thread exits if the plugin is still loaded then, and forgets it once
    /// the plugin is unloaded (the value is leaked, never dropped after
    /// unload). `last`: run after every destructor without it (the
    /// plugin's pthread-key destructors, which glibc runs after
    /// thread-locals). False: not taken (the thread is exiting, or the
    /// plugin is unloaded); the plugin registers it with the C library
    /// itself. `None` in older hosts. See `horizon_plugin_sdk`'s
    /// `boundary::thread_exit`.
    pub thread_exit: Option<unsafe extern "C" fn(*const c_void, ThreadDtor, *mut u8, bool) -> bool>,
}

/// A thread-local destructor of plugin code: called once with the value's
/// address, on the thread the value belongs to. Never unwinds (std aborts
/// the process if a thread-local's `Drop` panics).
pub type ThreadDtor = unsafe extern "C" fn(*mut u8);

// SAFETY: the table is immutable, its functions may be called from any
// thread (the host's contract, stated above), and `data` is only passed back
// to them.
unsafe impl Send for HostApi {}
// SAFETY: as above.
unsafe impl Sync for HostApi {}

/// What a plugin exports under [`DECLARATION_SYMBOL`].
///
/// The host reads `magic`, `abi_version`, `size` and `layout` (the header,
/// the same in every boundary version) before anything else and calls no
/// function of a declaration whose header does not match its own. A
/// growable table ([`table`]): the host copies the `size` bytes the plugin
/// has and checks [`PluginDeclaration::declaration`] against its own
/// [`DECLARATION_PREFIX`].
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
    /// Drops the plugin instance and its private runtime (a no-op unless
    /// `host` is the table this library was initialized with). With
    /// [`FLAG_DEFERRED_RELEASE`] set, that is all (`release` does the
    /// rest); otherwise it also stops using `host`'s thread-exit service
    /// and frees the plugin's state (leaks it, for a host with
    /// `thread_exit`: a destructor may be running). Called once, from a
    /// thread that may block, once no plugin task is left. Returns a
    /// `SHUTDOWN_*` code; messages go to the host's log (no
    /// plugin-allocated value outlives the call).
    pub shutdown: unsafe extern "C" fn(host: *const HostApi) -> u32,
    /// [`HostApi`] as the plugin was built to read it: the host checks that
    /// the fields both know agree.
    pub host_api: TableLayout,
    /// This declaration's layout as the plugin was built (its `size` is the
    /// header's): the host checks the fields both know agree, and fills
    /// those it knows and the plugin lacks with zeros.
    pub declaration: TableLayout,
    /// The host services the plugin may call ([`SERVICES_USED`] of its
    /// SDK): `services_len` entries.
    pub services: *const ServiceUse,
    /// How many entries `services` has.
    pub services_len: u32,
    // End of the base ([`DECLARATION_BASE`]). Fields appended from here on
    // must be valid when zero.
    /// Boundary 4.5, with [`FLAG_DEFERRED_RELEASE`] set: stops using the
    /// host's thread-exit service ([`HostApi::thread_exit`]) and frees
    /// what `shutdown` left (the plugin's copy of the host table, its
    /// private runtime's handle). Called once, after `shutdown` returned
    /// without [`SHUTDOWN_STUCK`] and once none of the plugin's thread-exit
    /// destructors can run any more (the host takes no more and runs none),
    /// so a destructor running on an exiting host thread during `shutdown`
    /// never reads freed state. A no-op unless `host` is the table this
    /// library was initialized with. The one entry allowed after
    /// `shutdown` besides `init`. `None` in older plugins (their
    /// `shutdown` frees everything).
    pub release: Option<unsafe extern "C" fn(host: *const HostApi)>,
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

/// [`HostApi::flags`]: give every poll of a plugin task a cooperative
/// budget in the plugin's own copy of tokio (as tokio's schedulers give
/// each task poll), so a plugin task that only awaits ready resources of
/// that copy (its channels, semaphores, sockets) yields its host worker as
/// a native task does (handlers' polls, on the emit path, get none). Costs
/// a `block_on` of the plugin's private runtime per task poll
/// (BENCHMARKS.md); plugins without a private runtime ignore it. Inside
/// such a poll the plugin's tokio copy counts as running a runtime, as
/// inside a native task: its blocking calls (`blocking_lock`,
/// `blocking_recv`, dropping a runtime) panic there as they do in a
/// native task. Hosts of SDK releases before it never set it (the plugin
/// then gives no budget).
pub const FLAG_COOPERATIVE: u32 = 2;

/// [`HostApi::flags`] (boundary 4.5): the host calls
/// [`PluginDeclaration::release`] after `shutdown`, once none of the
/// plugin's thread-exit destructors can run; `shutdown` then leaves the
/// plugin's state for `release` to free. Plugins of older SDKs ignore it
/// (their `shutdown` frees it), hosts of older SDKs never set it.
pub const FLAG_DEFERRED_RELEASE: u32 = 4;

/// [`HostApi::flags`] (boundary 4.6): the status of a call
/// ([`HostApi::call`]) says why it has no answer: [`STATUS_NO_HANDLER`],
/// [`STATUS_ERROR`] (the handler returned an error), [`STATUS_PANIC`],
/// [`STATUS_REJECTED`] (the request did not decode), [`STATUS_TIMED_OUT`]
/// or [`STATUS_CANCELLED`] (its plugin was unloaded). Without it (older
/// hosts) every failure is [`STATUS_ERROR`] with a message; plugins of
/// older SDKs read every code but [`STATUS_OK`] as an error.
pub const FLAG_CALL_STATUS: u32 = 8;

/// A [`PluginDeclaration`] that may be placed in a `static`.
#[repr(transparent)]
pub struct ExportedDeclaration(pub PluginDeclaration);

// SAFETY: the declaration is immutable and its pointers point to `'static`
// string data and functions, which are safe to share between threads.
unsafe impl Sync for ExportedDeclaration {}

// Pinned on 64-bit targets only: the fingerprints mix sizes and offsets.
#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::{
        ABI_VERSION, DECLARATION_BASE, DECLARATION_BASE_FIELDS, DECLARATION_PREFIX, HOST_API_BASE,
        HOST_API_BASE_FIELDS, HOST_API_PREFIX, HostApi, LAYOUT_FINGERPRINT, PluginDeclaration,
    };

    /// The frozen types' fingerprint of each boundary version. A failure
    /// here means a frozen type changed: bump `ABI_VERSION` (a host then
    /// refuses plugins of the old layout by version, with a clear error)
    /// and record the new fingerprint under it.
    #[test]
    fn the_fingerprint_is_pinned_per_boundary_version() {
        let pinned: &[(u32, u64)] = &[(4, PINNED_V4)];
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

    const PINNED_V4: u64 = 0xa652_6dc8_d9d0_a78f;

    /// The prefix fingerprints of the growable tables as boundary 4.0
    /// shipped them. Appending a field adds an entry at the end and
    /// passes; any other change (a field renamed, retyped, moved or
    /// removed) changes an entry here and fails: bump `ABI_VERSION`.
    #[test]
    fn the_tables_only_grow_at_their_end() {
        assert_eq!(
            &HOST_API_PREFIX[..PINNED_HOST_API.len()],
            PINNED_HOST_API,
            "HostApi changed other than by an append: {HOST_API_PREFIX:#x?}"
        );
        assert_eq!(
            &DECLARATION_PREFIX[..PINNED_DECLARATION.len()],
            PINNED_DECLARATION,
            "PluginDeclaration changed other than by an append: {DECLARATION_PREFIX:#x?}"
        );
        assert_eq!(PINNED_HOST_API.len(), HOST_API_BASE_FIELDS);
        assert_eq!(PINNED_DECLARATION.len(), DECLARATION_BASE_FIELDS);
        assert!(HOST_API_BASE <= size_of::<HostApi>());
        assert!(DECLARATION_BASE <= size_of::<PluginDeclaration>());
    }

    /// Each table's size in each boundary minor (64-bit), and every field
    /// appended after it: it must start at or after that size, never in
    /// the trailing padding an older writer leaves uninitialized (a reader
    /// copies `min(writer's size, its own)` bytes).
    #[test]
    fn appended_fields_start_past_the_size_before_them() {
        // Each field appended to `HostApi`, with the table's size in the
        // minor before it.
        let appended = [
            ("budget", std::mem::offset_of!(HostApi, budget), 96),
            (
                "report_panic",
                std::mem::offset_of!(HostApi, report_panic),
                104,
            ),
            ("answer", std::mem::offset_of!(HostApi, answer), 112),
            ("call", std::mem::offset_of!(HostApi, call), 112),
            ("share_from", std::mem::offset_of!(HostApi, share_from), 112),
            (
                "payload_retain",
                std::mem::offset_of!(HostApi, payload_retain),
                112,
            ),
            (
                "payload_release",
                std::mem::offset_of!(HostApi, payload_release),
                112,
            ),
            (
                "thread_exit",
                std::mem::offset_of!(HostApi, thread_exit),
                152,
            ),
        ];
        for (field, offset, size_before) in appended {
            assert!(
                offset >= size_before,
                "HostApi::{field} starts at {offset}, inside the {size_before} bytes before it"
            );
        }
        assert_eq!(HOST_API_BASE, 96, "4.0's HostApi");
        // `PluginDeclaration` did not grow from 4.0 to 4.4 (152 bytes, with
        // 4 of trailing padding after `services_len`): the first field
        // appended to it (4.5) starts at 152.
        assert_eq!(DECLARATION_BASE, 148);
        let release = std::mem::offset_of!(PluginDeclaration, release);
        assert!(
            release >= 152,
            "PluginDeclaration::release starts at {release}, inside the 152 bytes before it"
        );
    }

    const PINNED_HOST_API: &[u64] = &[
        0x0549_e3fb_75b5_db70,
        0xfdea_8841_71a7_3f1d,
        0xb53d_dec1_89ef_9bf8,
        0x87d1_1fd2_b5e6_f58f,
        0xef30_b977_181a_90fd,
        0x3a4c_640f_0763_c83c,
        0x36b4_58e5_8214_f598,
        0x19be_53cf_5179_4cbe,
        0x8d78_c9c3_a605_d2b2,
        0x3edb_351f_9542_0495,
        0x5aa4_729c_bf52_662e,
        0x7dc0_3238_dbd9_b5eb,
        0xb5be_ed9b_f23d_da58,
    ];
    const PINNED_DECLARATION: &[u64] = &[
        0x438e_9f4a_ce4c_32ae,
        0x52e5_869f_3013_77df,
        0xd947_0d6c_2dde_9a4c,
        0x6e00_3de3_ecf3_aacf,
        0x946a_9e0d_581b_12e6,
        0x2d07_2b29_bf8b_e3fa,
        0x66d5_054c_bd0e_34df,
        0xa152_af9a_1553_2bd5,
        0xd68d_47b8_46fc_ced3,
        0x026a_9fc1_2319_94f2,
        0x8a34_94b9_920a_34b8,
        0xcb12_b7c8_08bd_049d,
        0xa6cb_f4e8_38a7_eacf,
        0x3af0_62f5_3b2e_91c0,
        0xad77_9dd3_21ef_9eb2,
    ];
}
