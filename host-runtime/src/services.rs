//! The host's side of the boundary: the `extern "C"` functions of the
//! [`HostApi`] table each plugin receives, how the tasks a plugin owns are
//! counted and stopped ([`PluginTask`]), and the wakers lent to plugins
//! ([`WakerFns`]).
//!
//! Every function here catches panics (a panic unwinding out of an
//! `extern "C"` function aborts the process), may be called from any thread,
//! including threads outside the runtime, and reports failure in its return
//! value.

use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use horizon_plugin_sdk::Event;
use horizon_plugin_sdk::abi::guard::catch;
use horizon_plugin_sdk::abi::{
    ABI_VERSION, BlockingJob, FLAG_STRICT_UNLOAD, HostApi, RStatus, RStr, RawFuture, RawHandler,
};
use rustc_hash::FxHashMap;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::host::{Inner, PluginId, Subscriber};
use crate::plugin_log::{self, LogSink};

/// Locks a mutex, ignoring poisoning (every critical section here leaves
/// the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything the host keeps for one loaded plugin, its service table
/// included (`api`, whose `data` points back here). Whatever keeps the
/// `Services` alive keeps the table alive: a plugin that may still run code
/// (tasks past the deadline, a private runtime that did not stop) is leaked
/// with its `Services`, never left with a dangling table.
pub(crate) struct Services {
    /// The table handed to the plugin at `init`.
    api: HostApi,
    pub(crate) host: Weak<Inner>,
    pub(crate) handle: Handle,
    pub(crate) id: PluginId,
    pub(crate) name: String,
    /// Once set, no task or subscription is accepted and every task drops
    /// its future at its next poll. Set under `parked`'s lock.
    closed: AtomicBool,
    /// The wakers of this plugin's tasks that are waiting (returned
    /// `Pending`), by task key, so that unload can wake them to drop. Also
    /// the lock that orders subscriptions against `close`.
    parked: Mutex<FxHashMap<usize, Waker>>,
    /// Low 32 bits: tasks, blocking jobs and inline calls whose plugin
    /// future is alive ([`LIVE`]); high 32 bits: handler invocations
    /// running ([`HANDLER`]).
    counts: AtomicU64,
    /// Notified by work released once `closed` (see [`CountedRef::release`]),
    /// so `abort_all` need not wait for its next look at `counts`. An `Arc`:
    /// the releaser takes its own before the decrement that may let the
    /// `Services` go.
    drained: Arc<Notify>,
    /// Handlers the plugin registered; their `drop` is called at unload, once
    /// no task of the plugin is left.
    handlers: Mutex<Vec<RawHandler>>,
    /// Until `activate`, subscriptions wait here instead of receiving events
    /// (so a reload can swap old and new in one step). Taken under `parked`'s lock.
    pending: Mutex<Option<Vec<(String, Subscriber)>>>,
    consecutive_failures: AtomicU32,
    quarantined: AtomicBool,
    /// See [`crate::HostBuilder::plugin_log_sink`].
    pub(crate) log_sink: Option<LogSink>,
}

/// Counts one running handler invocation of a plugin.
pub(crate) struct HandlerRunning(Arc<Services>);

impl Drop for HandlerRunning {
    fn drop(&mut self) {
        self.0.leave(HANDLER);
    }
}

/// One unit of [`Services::counts`] for a live task or inline call.
const LIVE: u64 = 1;
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

/// How a task or blocking job of a plugin reaches its `Services`: a plain
/// pointer, no `Arc` (a locked increment and decrement per task on a line
/// every worker touches; see BENCHMARKS.md).
///
/// Invariant: a `CountedRef` is made only for work just counted as
/// [`LIVE`] (`Services::enter`, in `spawn_task` and `spawn_blocking`), is
/// neither copied nor cloned, and is used until [`CountedRef::release`]
/// takes that count off, which is its last access: it touches only the
/// counter, through the pointer, so no reference to the `Services` is
/// alive once the count is gone. The `Services` is freed when its last
/// `Arc` goes; the `Arc` in `LoadedPlugin` goes only once `teardown`'s
/// `abort_all` saw no live work with the plugin closed, and on every other
/// path it is leaked (`LoadedPlugin::leak`: tasks past the deadline, a
/// stuck private runtime, a host dropped without `shutdown`). So the
/// pointer is valid for as long as it is used.
struct CountedRef(NonNull<Services>);

impl CountedRef {
    /// # Safety
    /// `services` has a count just taken for the work this is made for,
    /// which releases it through this `CountedRef`.
    unsafe fn new(services: &Services) -> Self {
        CountedRef(NonNull::from(services))
    }

    fn get(&self) -> &Services {
        // SAFETY: see the invariant on `CountedRef`: the count is still held.
        unsafe { self.0.as_ref() }
    }

    /// Takes the work's count off: the last use of `self`. During unload,
    /// also wakes `abort_all` (through a `Notify` taken before the
    /// decrement); a wake missed because `closed` was set just after this
    /// looked is caught by `abort_all`'s own periodic look.
    ///
    /// # Safety
    /// Called once, and `self` is not used afterwards.
    unsafe fn release(&self) {
        let services = self.0.as_ptr();
        // SAFETY: the count is still held until the decrement below (the
        // invariant on `CountedRef`). Each place expression borrows one
        // field only, and none is used after the decrement, which may let
        // `teardown` free the `Services`.
        let drained = unsafe {
            let drained = (*services)
                .closed
                .load(Ordering::SeqCst)
                .then(|| Arc::clone(&(*services).drained));
            (*services).counts.fetch_sub(LIVE, Ordering::SeqCst);
            drained
        };
        if let Some(drained) = drained {
            drained.notify_waiters();
        }
    }
}

// SAFETY: `Services` is `Sync`; the pointer is only read through `get`
// and `release`.
unsafe impl Send for CountedRef {}

/// Keeps a plugin's `Services` counted as in use by a blocking job.
struct LiveGuard(CountedRef);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        // SAFETY: the guard's one release; it is dropped once.
        unsafe { self.0.release() };
    }
}

/// A plugin's blocking job and its count; the job is dropped (through the
/// plugin) before the count is released: fields drop in order.
struct CountedJob {
    job: OwnedJob,
    guard: LiveGuard,
}

pin_project_lite::pin_project! {
    /// A task of a plugin as the host's runtime runs it: the plugin's future
    /// (or a host future calling into the plugin) plus what unload needs.
    ///
    /// Spawning takes no lock: a task is counted in [`Services::counts`] (one
    /// atomic), and only a task that returns `Pending` registers its waker in
    /// [`Services::parked`] (most tasks finish on their first poll and never
    /// do). Before each poll it checks `closed` and its `cancelled` flag, so
    /// unload (which sets `closed`, then wakes every parked task) and
    /// `JoinHandle::abort` (which sets the flag, then wakes the task if
    /// parked) make it drop its future. A task registers under the `parked`
    /// lock and checks both flags again there, so an abort or unload that
    /// looked for it a moment before it registered is not missed.
    ///
    /// The task reaches its `Services` through a [`CountedRef`]: its drop
    /// releases its count last.
    ///
    /// The output is `None` when the task was cancelled this way.
    pub(crate) struct PluginTask<F> {
        #[pin]
        fut: Option<F>,
        services: CountedRef,
        // The plugin's `RawFuture::cancelled` (null for host futures).
        cancelled: *const AtomicBool,
        // Key in `parked`: the plugin's `RawFuture::data`, or this task's
        // address for host futures (0 until registered).
        key: usize,
        parked: bool,
    }

    impl<F> PinnedDrop for PluginTask<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let services = this.services.get();
            unpark(services, *this.key, this.parked);
            // Plugin code: before the task stops counting as live.
            this.fut.set(None);
            // SAFETY: the task's one release, its last use of `services`.
            unsafe { this.services.release() };
        }
    }
}

/// Removes a task's waker from `parked`, if it registered one. Called
/// before the task's future is dropped: dropping it may free the plugin's
/// cell whose address is the key, and a new task may then reuse the key.
#[inline]
fn unpark(services: &Services, key: usize, parked: &mut bool) {
    if std::mem::take(parked) {
        unpark_slow(services, key);
    }
}

#[cold]
fn unpark_slow(services: &Services, key: usize) {
    let waker = lock(&services.parked).remove(&key);
    drop(waker);
}

// SAFETY: `services` is `Send`; `cancelled` points to an atomic in the
// plugin's task cell; `F: Send` moves the future.
unsafe impl<F: Send> Send for PluginTask<F> {}

impl<F> PluginTask<F> {
    /// A task of `services`, already counted as live there (see
    /// [`Services::enter`]); its drop takes the count off.
    fn counted(services: CountedRef, fut: F, key: usize, cancelled: *const AtomicBool) -> Self {
        PluginTask {
            fut: Some(fut),
            services,
            cancelled,
            key,
            parked: false,
        }
    }
}

impl<F: Future> Future for PluginTask<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let address = std::ptr::from_ref::<Self>(&self) as usize;
        let mut this = self.project();
        let services = this.services.get();
        let cancelled = *this.cancelled;
        // SAFETY: `cancelled` is in the plugin's task cell, alive while the
        // plugin's `RawFuture` (our `fut`) is; read only while `fut` is `Some`.
        let is_cancelled = || !cancelled.is_null() && unsafe { &*cancelled }.load(Ordering::SeqCst);
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        if services.closed.load(Ordering::Acquire) || is_cancelled() {
            unpark(services, *this.key, this.parked);
            this.fut.set(None);
            return Poll::Ready(None);
        }
        match fut.poll(cx) {
            Poll::Ready(out) => {
                unpark(services, *this.key, this.parked);
                this.fut.set(None);
                Poll::Ready(Some(out))
            }
            Poll::Pending if *this.parked => Poll::Pending,
            Poll::Pending => {
                if *this.key == 0 {
                    *this.key = address;
                }
                let mut parked = lock(&services.parked);
                if services.closed.load(Ordering::Relaxed) || is_cancelled() {
                    drop(parked);
                    this.fut.set(None);
                    return Poll::Ready(None);
                }
                // The waker of a tokio task's root future is that task's, the
                // same at every poll: registering it once is enough.
                parked.insert(*this.key, cx.waker().clone());
                *this.parked = true;
                Poll::Pending
            }
        }
    }
}

impl Services {
    pub(crate) fn new(
        host: Weak<Inner>,
        handle: Handle,
        id: PluginId,
        name: String,
        strict: bool,
        log_sink: Option<LogSink>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Services>| Services {
            api: HostApi {
                abi_version: ABI_VERSION,
                size: size_of::<HostApi>() as u32,
                // Only stored here: dereferenced by the table's functions,
                // which the plugin calls after `init`, once the `Arc` is built.
                data: me.as_ptr().cast(),
                flags: if strict { FLAG_STRICT_UNLOAD } else { 0 },
                spawn: host_spawn,
                spawn_blocking: host_spawn_blocking,
                task_abort: host_task_abort,
                sleep: host_sleep,
                emit: host_emit,
                subscribe: host_subscribe,
                max_level: if log_sink.is_some() {
                    horizon_plugin_sdk::abi::level::TRACE
                } else {
                    plugin_log::max_level()
                },
                log_enabled: plugin_log::enabled,
                log: plugin_log::log,
            },
            host,
            handle,
            id,
            name,
            closed: AtomicBool::new(false),
            parked: Mutex::new(FxHashMap::default()),
            counts: AtomicU64::new(0),
            drained: Arc::new(Notify::new()),
            handlers: Mutex::new(Vec::new()),
            pending: Mutex::new(Some(Vec::new())),
            consecutive_failures: AtomicU32::new(0),
            quarantined: AtomicBool::new(false),
            log_sink,
        })
    }

    /// The table handed to the plugin; lives as long as `self`.
    pub(crate) fn api(&self) -> &HostApi {
        &self.api
    }

    /// Starts delivering events to this plugin's subscriptions; with
    /// `replacing`, removes that plugin's subscriptions in the same step
    /// (under the subscribers' write lock), so every event goes to exactly
    /// one of the two.
    pub(crate) fn activate(&self, inner: &Inner, replacing: Option<PluginId>) {
        let _order = lock(&self.parked);
        let pending = lock(&self.pending).take().unwrap_or_default();
        inner.swap_subscribers(replacing, pending);
    }

    pub(crate) fn handler_started(self: &Arc<Self>) -> HandlerRunning {
        self.counts.fetch_add(HANDLER, Ordering::AcqRel);
        HandlerRunning(Arc::clone(self))
    }

    /// Tasks and inline calls whose plugin future is alive.
    fn live(&self) -> u64 {
        self.counts.load(Ordering::SeqCst) & (HANDLER - 1)
    }

    /// Takes `amount` off [`Services::counts`], waking `abort_all` during
    /// unload. For callers that keep `self` alive past the decrement (an
    /// `Arc` or a borrow of one); work holding a [`CountedRef`] uses
    /// [`CountedRef::release`] instead.
    fn leave(&self, amount: u64) {
        self.counts.fetch_sub(amount, Ordering::SeqCst);
        if amount & (HANDLER - 1) != 0 && self.closed.load(Ordering::SeqCst) {
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
    fn enter(&self, amount: u64) -> bool {
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

    /// Spawns a future on the host runtime as a task of this plugin, or
    /// `None` once the plugin is being unloaded. The task's output is `None`
    /// if unload cancelled it.
    pub(crate) fn spawn<F>(&self, fut: F) -> Option<JoinHandle<Option<F::Output>>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_task(fut, 0, std::ptr::null())
    }

    /// Counts and spawns a task; when refused, the task is dropped at once
    /// (its future with it). A task spawned while `close` runs is still
    /// counted, and drops its future at its first poll.
    fn spawn_task<F>(
        &self,
        fut: F,
        key: usize,
        cancelled: *const AtomicBool,
    ) -> Option<JoinHandle<Option<F::Output>>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let open = self.enter(LIVE);
        // SAFETY: counted just above; the task's drop releases that count.
        let services = unsafe { CountedRef::new(self) };
        let task = PluginTask::counted(services, fut, key, cancelled);
        open.then(|| self.handle.spawn(task))
    }

    /// Runs a plugin future as a detached task of this plugin; the plugin
    /// keeps its join state. False (and the future dropped) if refused.
    fn spawn_raw(&self, fut: RawFuture) -> bool {
        let (key, cancelled) = (fut.data() as usize, fut.cancelled());
        // Dropping the task when refused tells the plugin its task was cancelled.
        self.spawn_task(fut, key, cancelled).is_some()
    }

    fn spawn_blocking(&self, job: BlockingJob) -> bool {
        let job = OwnedJob(job);
        let open = self.enter(LIVE);
        let counted = CountedJob {
            job,
            // SAFETY: counted just above; `LiveGuard`'s drop releases it.
            guard: LiveGuard(unsafe { CountedRef::new(self) }),
        };
        if !open {
            return false;
        }
        // If tokio drops the closure without running it (its runtime shuts
        // down), `CountedJob` drops the job before releasing the count.
        drop(self.handle.spawn_blocking(move || {
            let CountedJob { job, guard } = counted;
            if guard.0.get().closed.load(Ordering::Acquire) {
                // Unloading before it started: dropped, like an aborted blocking task.
                drop(job);
            } else {
                job.run();
            }
            drop(guard);
        }));
        true
    }

    /// Wakes a task the plugin marked cancelled, if it is parked; it then
    /// drops its future. (A task not parked checks the flag itself.)
    fn abort(&self, key: usize) {
        if let Some(waker) = lock(&self.parked).get(&key) {
            waker.wake_by_ref();
        }
    }

    /// Refuses new tasks and subscriptions and removes this plugin's
    /// subscriptions, under one lock so none slips in between.
    pub(crate) fn close(&self, inner: &Inner) {
        let parked = lock(&self.parked);
        self.closed.store(true, Ordering::SeqCst);
        inner.remove_subscribers(self.id);
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
        for raw in std::mem::take(&mut *lock(&self.handlers)) {
            // SAFETY: `raw` came from this plugin's `subscribe`; the registry
            // is closed and drained, so no `call` is running or will run, and
            // `drop` is called exactly once (the list was taken).
            unsafe { (raw.drop)(raw.data) };
        }
    }
}

pin_project_lite::pin_project! {
    /// A host future a plugin polls (a timer, an emit). When the plugin
    /// polls it with a waker of its own making (its private runtime's, a
    /// combinator's), that waker's code lives in the plugin, and the host
    /// (tokio's timer, a join handle) may call it from another thread at
    /// any time, even while the plugin is being unloaded. So such a waker
    /// is only called while counted as the plugin's live work (unload waits
    /// for it), and not at all once the plugin is closed (a drop is then
    /// leaked rather than run). Host wakers lent through the plugin come
    /// back as host wakers and are used as they are.
    struct Counted<F> {
        #[pin]
        inner: F,
        services: Arc<Services>,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !horizon_plugin_sdk::abi::waker::is_foreign(cx.waker()) {
            return this.inner.poll(cx);
        }
        let waker = Waker::from(Arc::new(CountedWaker {
            waker: std::mem::ManuallyDrop::new(cx.waker().clone()),
            services: Arc::clone(this.services),
        }));
        this.inner.poll(&mut Context::from_waker(&waker))
    }
}

/// A plugin-made waker held by the host, called only while counted.
struct CountedWaker {
    waker: std::mem::ManuallyDrop<Waker>,
    services: Arc<Services>,
}

impl std::task::Wake for CountedWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.services.enter(LIVE) {
            self.waker.wake_by_ref();
        }
        self.services.leave(LIVE);
    }
}

impl Drop for CountedWaker {
    fn drop(&mut self) {
        if self.services.enter(LIVE) {
            // SAFETY: dropped once, here.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.waker) };
        }
        // Closed: the plugin's code may be unmapped by the time this runs;
        // its waker is leaked instead.
        self.services.leave(LIVE);
    }
}

/// A plugin's blocking job; runs it or, if never run, drops it.
struct OwnedJob(BlockingJob);

// SAFETY: `spawn_blocking` in the SDK only builds jobs from `Send` closures.
unsafe impl Send for OwnedJob {}

impl OwnedJob {
    fn run(self) {
        let job = std::mem::ManuallyDrop::new(self);
        // SAFETY: `run` is called at most once (we consumed `self` and skip
        // its `Drop`); the plugin's `run` never unwinds.
        unsafe { (job.0.run)(job.0.data) }
    }
}

impl Drop for OwnedJob {
    fn drop(&mut self) {
        // SAFETY: the job did not run (`run` skips this `Drop`); the plugin's
        // `drop` never unwinds.
        unsafe { (self.0.drop)(self.0.data) }
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
unsafe fn services_arc(data: *const c_void) -> Arc<Services> {
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

unsafe extern "C" fn host_spawn(data: *const c_void, fut: RawFuture) -> bool {
    // SAFETY: the plugin passes back the `data` of its table.
    let services = unsafe { services(data) };
    catch(|| services.spawn_raw(fut)).unwrap_or(false)
}

unsafe extern "C" fn host_spawn_blocking(data: *const c_void, job: BlockingJob) -> bool {
    // SAFETY: as in `host_spawn`.
    let services = unsafe { services(data) };
    catch(|| services.spawn_blocking(job)).unwrap_or(false)
}

unsafe extern "C" fn host_task_abort(data: *const c_void, task: *const c_void) {
    // SAFETY: as in `host_spawn`.
    let services = unsafe { services(data) };
    let _ = catch(|| services.abort(task as usize));
}

unsafe extern "C" fn host_sleep(data: *const c_void, nanos: u64) -> RawFuture<()> {
    // SAFETY: the plugin passes back the `data` of its table.
    let services = unsafe { services_arc(data) };
    // Entering the handle lets this work from threads outside the runtime.
    let made = catch(|| {
        let _enter = services.handle.enter();
        tokio::time::sleep(Duration::from_nanos(nanos))
    });
    match made {
        Ok(sleep) => RawFuture::new(Counted {
            inner: sleep,
            services,
        }),
        Err(panic) => {
            let _ = catch(|| {
                tracing::error!(
                    plugin = %services.name,
                    "cannot start a timer for the plugin: {panic} (is the host runtime built with `enable_time`?)",
                );
            });
            RawFuture::new(std::future::ready(()))
        }
    }
}

unsafe extern "C" fn host_emit(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RawFuture<RStatus> {
    // SAFETY: the plugin passes back the `data` of its table; `name` and
    // `payload` are alive for this call and copied before it returns.
    let (services, name, payload) =
        unsafe { (services_arc(data), name.as_bytes(), payload.as_bytes()) };
    let started = catch(|| {
        let Some(inner) = services.host.upgrade() else {
            return Err("the host has shut down");
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return Err("event name is not UTF-8");
        };
        let event = Event::from_json_bytes(name, payload).with_source(&services.name);
        let from = services.name.clone();
        Ok(Counted {
            inner: async move {
                let report = inner.dispatch(event).await;
                for failure in &report.failures {
                    tracing::warn!(from = %from, "{failure}");
                }
                RStatus::ok()
            },
            services,
        })
    });
    match started {
        Ok(Ok(fut)) => RawFuture::new(fut),
        Ok(Err(msg)) => RawFuture::new(std::future::ready(RStatus::error(msg))),
        Err(panic) => RawFuture::new(std::future::ready(RStatus::panic(panic))),
    }
}

unsafe extern "C" fn host_subscribe(
    data: *const c_void,
    name: RStr<'_>,
    handler: RawHandler,
) -> RStatus {
    // SAFETY: the plugin passes back the `data` of its table; `name` is
    // alive for this call.
    let (services, name) = unsafe { (services_arc(data), name.to_str()) };
    let (handler_data, handler_drop) = (handler.data, handler.drop);
    let mut handler = Some(handler);
    let result = catch(|| {
        let Some(name) = name else {
            return Err("event name is not UTF-8");
        };
        let Some(inner) = services.host.upgrade() else {
            return Err("the host has shut down");
        };
        let order = lock(&services.parked);
        if services.closed.load(Ordering::SeqCst) {
            return Err("the plugin is being unloaded");
        }
        let handler = handler.take().expect("taken once");
        let subscriber = Subscriber::plugin(Arc::clone(&services), handler.data, handler.call);
        lock(&services.handlers).push(handler);
        match lock(&services.pending).as_mut() {
            Some(pending) => pending.push((name.to_owned(), subscriber)),
            None if services.is_quarantined() => {}
            None => inner.add_subscriber(name, subscriber),
        }
        drop(order);
        Ok(())
    });
    if handler.is_some() {
        // Refused: the handler goes back to the plugin, which is running
        // (this is its call), and is dropped by the plugin's own code.
        // SAFETY: the plugin gave us `handler` with this call; it was not
        // stored, so this is its one `drop`.
        unsafe { handler_drop(handler_data) };
    }
    match result {
        Ok(Ok(())) => RStatus::ok(),
        Ok(Err(msg)) => RStatus::error(msg),
        Err(panic) => RStatus::panic(panic),
    }
}
