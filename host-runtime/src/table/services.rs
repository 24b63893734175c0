//! [`Services`]: what the host keeps for one loaded plugin, and how its
//! live work is counted so that unload knows when no plugin code runs.

use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::time::Duration;

use horizon_plugin_sdk::Event;
use horizon_plugin_sdk::abi::{HostApi, RStatus, RStr, RawFuture, RawHandler};
use rustc_hash::FxHashMap;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::thread_exit::ExitGate;
use crate::error::CallError;
use crate::info::{LogSink, PluginId};
use crate::report::EmitReport;
use crate::stats::{Counters, PollTimer, SiteRef};
use crate::sync::lock;

/// What a plugin's table needs from the host's event bus.
pub(crate) trait EventBus: Send + Sync {
    /// Delivers `event` to its subscribers; completes once each handled it.
    fn dispatch(&self, event: Event) -> Pin<Box<dyn Future<Output = EmitReport> + Send + '_>>;
    /// Calls the handler answering `event`'s name; the answer's payload in
    /// wire form, or why there is none.
    fn call(
        &self,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Result<Event, CallError>> + Send + '_>>;
    /// Claims the call name `name` for `services`' plugin (one answering
    /// handler per name), or says who holds it. A name its predecessor
    /// (`Services::replaces`) holds is reserved for it while it is not
    /// `activated`: the swap hands it over.
    fn claim(&self, name: &str, services: &Services, activated: bool) -> Result<(), String>;
    /// Removes `replacing`'s handlers (if any) and adds `handlers`, in one
    /// step: every event goes to exactly one of the two sets.
    fn swap(&self, replacing: Option<PluginId>, handlers: Vec<NamedHandler>);
    /// Removes every handler of `plugin`.
    fn remove(&self, plugin: PluginId);
}

/// A plugin handler and the event it is for.
pub(crate) type NamedHandler = (String, Arc<PluginHandler>);

/// The signature of a plugin handler's `call`.
pub(crate) type HandlerCall =
    unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>;

/// A plugin's handler as the bus sees it: only `call` is used there; the
/// handler's `drop` belongs to the plugin's `Services` (see `drop_handlers`).
pub(crate) struct PluginHandler {
    pub(crate) services: Arc<Services>,
    pub(crate) data: *const c_void,
    pub(crate) call: HandlerCall,
    /// An answering handler (`HostApi::answer`), not an event handler.
    pub(crate) answers: bool,
}

// SAFETY: `data` is the plugin's boxed handler, a `Send + Sync` closure
// (`PluginContext::on` and `answer` require it; boxed by the SDK's
// `boundary::handlers::register`); `call` is a plain function.
unsafe impl Send for PluginHandler {}
// SAFETY: as above.
unsafe impl Sync for PluginHandler {}

/// Everything the host keeps for one loaded plugin, its service table
/// included (`api`, whose `data` points back here). Whatever keeps the
/// `Services` alive keeps the table alive: a plugin that may still run code
/// (tasks past the deadline, a private runtime that did not stop) is leaked
/// with its `Services`, never left with a dangling table.
pub(crate) struct Services {
    /// The table handed to the plugin at `init`.
    pub(super) api: HostApi,
    /// The host's event bus (weak: the bus holds this plugin's handlers).
    pub(crate) bus: Weak<dyn EventBus>,
    pub(crate) handle: Handle,
    pub(crate) id: PluginId,
    pub(crate) name: String,
    /// The plugin this copy replaces (a reload's new copy): its call names
    /// pass to this one at the swap.
    pub(crate) replaces: Option<PluginId>,
    /// Once set, no task or subscription is accepted and every task drops
    /// its future at its next poll. Set under `parked`'s lock.
    pub(super) closed: AtomicBool,
    /// The wakers of this plugin's tasks that are waiting (returned
    /// `Pending`), by task key, so that unload can wake them to drop. Also
    /// the lock that orders subscriptions against `close`.
    pub(super) parked: Mutex<FxHashMap<usize, Waker>>,
    /// Low 32 bits: tasks, blocking jobs and inline calls whose plugin
    /// future is alive ([`LIVE`]); high 32 bits: handler invocations
    /// running ([`HANDLER`]).
    pub(super) counts: AtomicU64,
    /// Notified by work released once `closed` (see [`CountedRef::release`]),
    /// so `abort_all` need not wait for its next look at `counts`. An `Arc`:
    /// the releaser takes its own before the decrement that may let the
    /// `Services` go.
    pub(super) drained: Arc<Notify>,
    /// Handlers the plugin registered; their `drop` is called at unload, once
    /// no task of the plugin is left.
    pub(super) handlers: Mutex<Vec<RawHandler>>,
    /// Until `activate`, subscriptions wait here instead of receiving events
    /// (so a reload can swap old and new in one step). Taken under `parked`'s lock.
    pub(super) pending: Mutex<Option<Vec<NamedHandler>>>,
    /// Set (under `parked`) once the plugin's subscriptions are held for
    /// good (it is replaced, unloading or quarantined): it takes no new
    /// answering handler, whose claim would keep the name from others.
    pub(super) held: AtomicBool,
    pub(super) consecutive_failures: AtomicU32,
    pub(super) quarantined: AtomicBool,
    /// See [`crate::HostBuilder::plugin_log_sink`].
    pub(crate) log_sink: Option<LogSink>,
    /// What the plugin has cost (`PluginHost::stats`).
    pub(crate) stats: Counters,
    /// How its polls are timed.
    pub(crate) timer: PollTimer,
    /// Whether its thread-local destructors may still run
    /// (`table::thread_exit`); closed by `teardown`.
    pub(crate) exit_gate: Arc<ExitGate>,
}

/// Counts one running handler invocation of a plugin.
pub(crate) struct HandlerRunning(Arc<Services>);

impl Drop for HandlerRunning {
    fn drop(&mut self) {
        self.0.leave(HANDLER);
    }
}

/// One unit of [`Services::counts`] for a live task or inline call.
pub(super) const LIVE: u64 = 1;
/// One unit of [`Services::counts`] for a running handler invocation.
const HANDLER: u64 = 1 << 32;

/// A handler's first poll, made by the emitter outside any task: counted as
/// live (so unload waits for it) and as a running handler.
pub(crate) struct InlineCall<'a>(&'a Services);

impl Drop for InlineCall<'_> {
    fn drop(&mut self) {
        self.0.leave(LIVE | HANDLER);
    }
}

// SAFETY: `RawHandler` holds plugin pointers to `Send + Sync` closures
// (`PluginContext::on` requires it); everything else is thread-safe.
unsafe impl Send for Services {}
// SAFETY: as above.
unsafe impl Sync for Services {}

impl Services {
    pub(super) fn new(
        bus: Weak<dyn EventBus>,
        handle: Handle,
        (id, name, replaces): (PluginId, String, Option<PluginId>),
        log_sink: Option<LogSink>,
        timer: PollTimer,
        make_api: impl FnOnce(*const c_void) -> HostApi,
    ) -> Arc<Self> {
        let stats = Counters::new(&name, id);
        Arc::new_cyclic(|me: &Weak<Services>| Services {
            api: make_api(me.as_ptr().cast()),
            bus,
            handle,
            id,
            name,
            replaces,
            closed: AtomicBool::new(false),
            parked: Mutex::new(FxHashMap::default()),
            counts: AtomicU64::new(0),
            drained: Arc::new(Notify::new()),
            handlers: Mutex::new(Vec::new()),
            pending: Mutex::new(Some(Vec::new())),
            held: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            quarantined: AtomicBool::new(false),
            log_sink,
            stats,
            timer,
            exit_gate: ExitGate::new(),
        })
    }

    /// Runs one poll of this plugin's code, timed as the host set
    /// (`HostBuilder::poll_timing`); a slow one is logged naming `site`.
    #[inline]
    pub(crate) fn timed_poll<R>(&self, site: SiteRef<'_>, poll: impl FnOnce() -> R) -> R {
        self.timer
            .time(&self.stats, (&self.name, self.id), site, poll)
    }

    /// The table handed to the plugin; lives as long as `self`.
    pub(crate) fn api(&self) -> &HostApi {
        &self.api
    }

    /// Starts delivering events to this plugin's subscriptions; with
    /// `replacing`, removes that plugin's subscriptions in the same step
    /// (under the subscribers' write lock), so every event goes to exactly
    /// one of the two. Called under the host's plugin list lock, in the
    /// step that lists the plugin (`host.rs`), so no unload or reload of it
    /// can come first: an unload that removed its subscriptions is never
    /// followed by an activation that adds them back.
    pub(crate) fn activate(&self, replacing: Option<PluginId>) {
        let _order = lock(&self.parked);
        let pending = lock(&self.pending).take().unwrap_or_default();
        if let Some(bus) = self.bus.upgrade() {
            bus.swap(replacing, pending);
        }
    }

    /// Keeps this plugin's subscriptions made from now on off the bus
    /// (they wait, never activated, and are dropped by `close`), under the
    /// lock `host_subscribe` takes. For a plugin on its way out: reload
    /// calls it on the old copy before the swap, unload before `on_unload`.
    pub(crate) fn hold_subscriptions(&self) {
        let _order = lock(&self.parked);
        self.hold_pending();
    }

    /// Stops events to this plugin: its subscriptions leave the bus, and
    /// later ones are held ([`Services::hold_subscriptions`]), in one step
    /// under the subscription lock.
    pub(crate) fn stop_events(&self) {
        let _order = lock(&self.parked);
        self.hold_pending();
        if let Some(bus) = self.bus.upgrade() {
            bus.remove(self.id);
        }
    }

    /// Makes `pending` a list again (it is `None` once activated), so that
    /// `host_subscribe` holds new subscriptions there. Under `parked`.
    fn hold_pending(&self) {
        self.held.store(true, Ordering::Relaxed);
        lock(&self.pending).get_or_insert_with(Vec::new);
    }

    pub(crate) fn handler_started(self: &Arc<Self>) -> HandlerRunning {
        self.counts.fetch_add(HANDLER, Ordering::AcqRel);
        HandlerRunning(Arc::clone(self))
    }

    /// Tasks and inline calls whose plugin future is alive.
    pub(super) fn live(&self) -> u64 {
        self.counts.load(Ordering::SeqCst) & (HANDLER - 1)
    }

    /// Takes `amount` off [`Services::counts`], waking `abort_all` during
    /// unload. For callers that keep `self` alive past the decrement (an
    /// `Arc` or a borrow of one); work holding a [`CountedRef`] uses
    /// [`CountedRef::release`] instead.
    pub(super) fn leave(&self, amount: u64) {
        let before = self.counts.fetch_sub(amount, Ordering::SeqCst);
        let live = amount & (HANDLER - 1);
        // Only the decrement that takes the live count to 0 can be the one
        // `abort_all` waits for: the others need not read `closed`.
        if live != 0 && (before & (HANDLER - 1)) == live && self.closed.load(Ordering::SeqCst) {
            self.drained.notify_waiters();
        }
    }

    /// Waits until no handler invocation of this plugin runs, or `deadline`.
    pub(crate) async fn wait_handlers_idle(&self, deadline: Duration) {
        let wait = async {
            while self.counts.load(Ordering::Acquire) >= HANDLER {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
    }

    /// Records a handler's outcome; true when this failure puts the plugin
    /// in quarantine (once).
    pub(crate) fn record_outcome(&self, failed: bool, quarantine_after: Option<u32>) -> bool {
        if !failed {
            // Read first: a store on every success would bounce the cache
            // line between the threads emitting to this plugin.
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        quarantine_after.is_some_and(|limit| failures >= limit)
            && !self.quarantined.swap(true, Ordering::AcqRel)
    }

    /// Whether unload has begun (no new work is accepted).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Adds `amount` to [`Services::counts`], then tells whether the plugin
    /// still accepts work. `close` stores `closed` before `abort_all` reads
    /// the count, and this adds before it reads `closed`, all SeqCst: either
    /// `abort_all` sees the new work, or this sees `closed`. The caller
    /// takes `amount` off again, accepted or not.
    pub(super) fn enter(&self, amount: u64) -> bool {
        self.counts.fetch_add(amount, Ordering::SeqCst);
        !self.closed.load(Ordering::SeqCst)
    }

    /// Counts a call into the plugin made outside any task (a handler's
    /// first poll), so unload waits for it; `None` once unloading.
    pub(crate) fn register_inline(&self) -> Option<InlineCall<'_>> {
        let open = self.enter(LIVE | HANDLER);
        let call = InlineCall(self);
        open.then_some(call)
    }

    /// Refuses new tasks and subscriptions and removes this plugin's
    /// subscriptions, under one lock so none slips in between.
    pub(crate) fn close(&self) {
        let parked = lock(&self.parked);
        self.closed.store(true, Ordering::SeqCst);
        if let Some(bus) = self.bus.upgrade() {
            bus.remove(self.id);
        }
        // Subscriptions never activated hold `Arc<Services>`: drop them.
        drop(lock(&self.pending).take());
        drop(parked);
    }

    /// Aborts every task of this plugin and waits until their futures are
    /// dropped, or `deadline` passes (a blocking job cannot be aborted once
    /// it runs). Returns how many tasks are still alive.
    /// Only after `close`.
    pub(crate) async fn abort_all(&self, deadline: Duration) -> usize {
        debug_assert!(self.closed.load(Ordering::SeqCst));
        // Tasks not parked are running or scheduled, and see `closed` at
        // their next poll (or when they try to park).
        for waker in lock(&self.parked).values() {
            waker.wake_by_ref();
        }
        // Woken by the releases (`CountedRef::release`), and every
        // millisecond for a release that did not see `closed` yet.
        let wait = async {
            loop {
                let notified = self.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.live() == 0 {
                    return;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            // Once `closed` is stored and 0 seen, every later `enter` is
            // refused: a count it adds for a moment is no live task (reading
            // the count again here took it for one, and leaked the plugin).
            Ok(()) => 0,
            Err(_) => usize::try_from(self.live()).unwrap_or(usize::MAX),
        }
    }

    /// Calls the plugin's `drop` for every handler it registered. Only once no
    /// task of the plugin is left (no call can be in flight).
    pub(crate) fn drop_handlers(&self) {
        // Taken first: the plugin's `drop`s run with no lock held (the lock
        // order in `table/mod.rs`).
        let handlers = std::mem::take(&mut *lock(&self.handlers));
        for raw in handlers {
            // SAFETY: `raw` came from this plugin's `subscribe` or `answer`; the registry
            // is closed and drained, so no `call` is running or will run, and
            // `drop` is called exactly once (the list was taken).
            unsafe { (raw.drop)(raw.data) };
        }
    }
}

/// # Safety
/// `data` must be the `HostApi::data` of a plugin's table: a pointer to its
/// `Services`, which is alive for as long as any code of the plugin can run
/// (it holds the table; see `Services`).
pub(crate) unsafe fn services<'a>(data: *const c_void) -> &'a Services {
    // SAFETY: forwarded to the caller.
    unsafe { &*data.cast::<Services>() }
}

/// A new `Arc` (one more strong count) of the `Services` a table belongs to.
///
/// # Safety
/// As [`services`].
pub(crate) unsafe fn services_arc(data: *const c_void) -> Arc<Services> {
    let ptr = data.cast::<Services>();
    // SAFETY: `ptr` is what `Weak::as_ptr` gave inside `Arc::new_cyclic`
    // (`Services::new`): the address of the value in an `Arc` allocation,
    // the same pointer `Arc::into_raw` returns. That `Arc` is alive (the
    // caller's guarantee); we add one count for the one we return.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}
