//! The host's side of the boundary: the `extern "C"` functions of the
//! [`HostApi`] table each plugin receives, and the registry of tasks a plugin
//! owns.
//!
//! Every function here catches panics (a panic unwinding out of an
//! `extern "C"` function aborts the process), may be called from any thread,
//! including threads outside the runtime, and reports failure in its return
//! value.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use horizon_sdk::Event;
use horizon_sdk::abi::{
    ABI_VERSION, BlockingJob, FfiFuture, HostApi, RStatus, RStr, RawFuture, RawHandler, RawTask,
};
use slab::Slab;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

use crate::host::{Inner, PluginId, Subscriber};
use crate::plugin_log;

/// Locks a mutex, ignoring poisoning (every critical section here leaves
/// the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Everything the host keeps for one loaded plugin; `HostApi::data` points here.
pub(crate) struct Services {
    pub(crate) host: Weak<Inner>,
    pub(crate) handle: Handle,
    pub(crate) id: PluginId,
    pub(crate) name: String,
    registry: Mutex<Registry>,
    /// Tasks whose future has not been dropped yet.
    live: AtomicUsize,
    drained: Notify,
    /// Handlers the plugin registered; their `drop` is called at unload, once
    /// no task of the plugin is left.
    handlers: Mutex<Vec<RawHandler>>,
    /// Until `activate`, subscriptions wait here instead of receiving events
    /// (so a reload can swap old and new in one step). Guarded by `registry`'s lock order.
    pending: Mutex<Option<Vec<(String, Subscriber)>>>,
    /// Handler invocations running now.
    handlers_running: AtomicUsize,
    consecutive_failures: AtomicU32,
    quarantined: AtomicBool,
}

/// Counts one running handler invocation of a plugin.
pub(crate) struct HandlerRunning(Arc<Services>);

impl Drop for HandlerRunning {
    fn drop(&mut self) {
        self.0.handlers_running.fetch_sub(1, Ordering::AcqRel);
    }
}

// SAFETY: `RawHandler` holds plugin pointers to `Send + Sync` closures
// (`PluginContext::on` requires it); everything else is thread-safe.
unsafe impl Send for Services {}
// SAFETY: as above.
unsafe impl Sync for Services {}

/// The tasks of one plugin, so that unload can abort them all.
///
/// A slab rather than a map: a task's key is reserved before it is spawned
/// and its abort handle filled in after, and the generation tells a late
/// fill-in from a reused key (the task may finish, and its key be reused by
/// another spawn, before the first fill-in runs).
#[derive(Default)]
struct Registry {
    closed: bool,
    generation: u64,
    tasks: Slab<(u64, Option<AbortHandle>)>,
}

/// Removes a task from its plugin's registry when its future is dropped
/// (completed or aborted).
struct TaskGuard {
    services: *const Services,
    key: usize,
    generation: u64,
}

// SAFETY: `Services` is `Sync`, and outlives every task (see `services`).
unsafe impl Send for TaskGuard {}

impl TaskGuard {
    fn services(&self) -> &Services {
        // SAFETY: `Services` outlives every task of its plugin: `teardown`
        // waits until no task is left before the `Services` can be dropped,
        // and leaks it when tasks do not stop.
        unsafe { &*self.services }
    }
}

thread_local! {
    /// The `Services` this thread is spawning a task for, under its registry
    /// lock (0: none), and the guards of that plugin dropped meanwhile.
    ///
    /// `spawn` drops the new task's future at once when the runtime is
    /// shutting down; its guard must then not take the lock this thread
    /// holds, so it leaves its key here for `spawn_registered` to remove.
    static SPAWNING: Cell<usize> = const { Cell::new(0) };
    static DROPPED_WHILE_SPAWNING: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let services = self.services();
        if SPAWNING.with(Cell::get) == self.services as usize {
            DROPPED_WHILE_SPAWNING.with(|d| d.borrow_mut().push((self.key, self.generation)));
        } else {
            let mut reg = lock(&services.registry);
            if reg
                .tasks
                .get(self.key)
                .is_some_and(|(g, _)| *g == self.generation)
            {
                reg.tasks.remove(self.key);
            }
        }
        if services.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            services.drained.notify_waiters();
        }
    }
}

impl Services {
    pub(crate) fn new(host: Weak<Inner>, handle: Handle, id: PluginId, name: String) -> Self {
        Services {
            host,
            handle,
            id,
            name,
            registry: Mutex::new(Registry::default()),
            live: AtomicUsize::new(0),
            drained: Notify::new(),
            handlers: Mutex::new(Vec::new()),
            pending: Mutex::new(Some(Vec::new())),
            handlers_running: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            quarantined: AtomicBool::new(false),
        }
    }

    /// Starts delivering events to this plugin's subscriptions; with
    /// `replacing`, removes that plugin's subscriptions in the same step
    /// (under the subscribers' write lock), so every event goes to exactly
    /// one of the two.
    pub(crate) fn activate(&self, inner: &Inner, replacing: Option<PluginId>) {
        let _reg = lock(&self.registry);
        let pending = lock(&self.pending).take().unwrap_or_default();
        inner.swap_subscribers(replacing, pending);
    }

    pub(crate) fn handler_started(self: &Arc<Self>) -> HandlerRunning {
        self.handlers_running.fetch_add(1, Ordering::AcqRel);
        HandlerRunning(Arc::clone(self))
    }

    /// Waits until no handler invocation of this plugin runs, or `deadline`.
    pub(crate) async fn wait_handlers_idle(&self, deadline: Duration) {
        let wait = async {
            while self.handlers_running.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
    }

    /// Records a handler's outcome; true when this failure puts the plugin
    /// in quarantine (once).
    pub(crate) fn record_outcome(&self, failed: bool, quarantine_after: Option<u32>) -> bool {
        if !failed {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        quarantine_after.is_some_and(|limit| failures >= limit)
            && !self.quarantined.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Registers a call into the plugin made outside any task (a handler's
    /// first poll), so unload waits for it; `None` once unloading.
    pub(crate) fn register_inline(&self) -> Option<impl Drop + use<'_>> {
        let mut reg = lock(&self.registry);
        if reg.closed {
            return None;
        }
        reg.generation += 1;
        let generation = reg.generation;
        let key = reg.tasks.insert((generation, None));
        self.live.fetch_add(1, Ordering::AcqRel);
        Some(TaskGuard {
            services: self,
            key,
            generation,
        })
    }

    /// Registers a task and spawns it with `spawn`, under one lock, so the
    /// abort handle is in the registry before the task can finish. `None`
    /// once the plugin is being unloaded.
    fn spawn_registered<T>(
        &self,
        spawn: impl FnOnce(TaskGuard) -> (AbortHandle, T),
    ) -> Option<(RawTask, T)> {
        let mut reg = lock(&self.registry);
        if reg.closed {
            return None;
        }
        reg.generation += 1;
        let generation = reg.generation;
        let key = reg.tasks.vacant_key();
        self.live.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard {
            services: self,
            key,
            generation,
        };
        SPAWNING.with(|s| s.set(std::ptr::from_ref(self) as usize));
        let spawned = catch_unwind(AssertUnwindSafe(|| spawn(guard)));
        SPAWNING.with(|s| s.set(0));
        let dropped = DROPPED_WHILE_SPAWNING.with(|d| std::mem::take(&mut *d.borrow_mut()));
        let (abort, out) = match spawned {
            Ok(spawned) => spawned,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        if !dropped.contains(&(key, generation)) {
            let inserted = reg.tasks.insert((generation, Some(abort)));
            debug_assert_eq!(inserted, key);
        }
        Some((
            RawTask {
                key: key as u64,
                generation,
            },
            out,
        ))
    }

    /// Spawns a future on the host runtime as a task of this plugin, or
    /// `None` once the plugin is being unloaded.
    pub(crate) fn spawn<F>(&self, fut: F) -> Option<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (_, handle) = self.spawn_registered(|guard| {
            let handle = self.handle.spawn(async move {
                let _guard = guard;
                fut.await
            });
            (handle.abort_handle(), handle)
        })?;
        Some(handle)
    }

    /// Runs a plugin future as a detached task of this plugin; the plugin
    /// keeps its join state. Returns how to abort it.
    fn spawn_raw(&self, fut: RawFuture) -> RawTask {
        // Dropping `fut` when refused tells the plugin its task was cancelled.
        let spawned = self.spawn_registered(|guard| {
            let handle = self.handle.spawn(async move {
                let _guard = guard;
                fut.await
            });
            (handle.abort_handle(), ())
        });
        spawned.map_or(RawTask::REFUSED, |(task, ())| task)
    }

    fn spawn_blocking(&self, job: BlockingJob) -> RawTask {
        let job = OwnedJob(job);
        let spawned = self.spawn_registered(|guard| {
            let handle = self.handle.spawn_blocking(move || {
                let _guard = guard;
                job.run();
            });
            (handle.abort_handle(), ())
        });
        spawned.map_or(RawTask::REFUSED, |(task, ())| task)
    }

    /// Aborts one task, if it is still registered.
    fn abort(&self, task: RawTask) {
        let Ok(key) = usize::try_from(task.key) else {
            return;
        };
        if let Some((generation, Some(abort))) = lock(&self.registry).tasks.get(key) {
            if *generation == task.generation {
                abort.abort();
            }
        }
    }

    /// Refuses new tasks and subscriptions and removes this plugin's
    /// subscriptions, under one lock so none slips in between.
    pub(crate) fn close(&self, inner: &Inner) {
        let mut reg = lock(&self.registry);
        reg.closed = true;
        inner.remove_subscribers(self.id);
        // Subscriptions never activated hold `Arc<Services>`: drop them.
        drop(lock(&self.pending).take());
        drop(reg);
    }

    /// Aborts every task of this plugin and waits until their futures are
    /// dropped, or `deadline` passes (a blocking job cannot be aborted once
    /// it runs). Returns how many tasks are still alive.
    pub(crate) async fn abort_all(&self, deadline: Duration) -> usize {
        for (_, (_, abort)) in lock(&self.registry).tasks.iter() {
            if let Some(abort) = abort {
                abort.abort();
            }
        }
        let wait = async {
            loop {
                let notified = self.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.live.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.live.load(Ordering::Acquire)
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

    /// Builds the table handed to the plugin; `self` must outlive it.
    pub(crate) fn api(self: &Arc<Self>) -> HostApi {
        HostApi {
            abi_version: ABI_VERSION,
            size: size_of::<HostApi>() as u32,
            data: Arc::as_ptr(self).cast(),
            spawn: host_spawn,
            spawn_blocking: host_spawn_blocking,
            task_abort: host_task_abort,
            sleep: host_sleep,
            emit: host_emit,
            subscribe: host_subscribe,
            max_level: plugin_log::max_level(),
            log_enabled: plugin_log::enabled,
            log: plugin_log::log,
        }
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
/// `data` must be the `HostApi::data` of a live plugin: an `Arc<Services>`
/// pointer that the plugin's `LoadedPlugin` keeps alive until after the
/// plugin's `shutdown` returned.
pub(crate) unsafe fn services<'a>(data: *const c_void) -> &'a Services {
    // SAFETY: forwarded to the caller.
    unsafe { &*data.cast::<Services>() }
}

/// Rebuilds the `Arc` the table was made from, without taking its count.
///
/// # Safety
/// As [`services`].
unsafe fn services_arc(data: *const c_void) -> Arc<Services> {
    let ptr = data.cast::<Services>();
    // SAFETY: `ptr` came from `Arc::as_ptr` of an `Arc` that is alive (the
    // caller's guarantee); we add one count for the clone we return.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

unsafe extern "C" fn host_spawn(data: *const c_void, fut: RawFuture) -> RawTask {
    // SAFETY: the plugin passes back the `data` of its live table.
    let services = unsafe { services(data) };
    catch_unwind(AssertUnwindSafe(|| services.spawn_raw(fut))).unwrap_or(RawTask::REFUSED)
}

unsafe extern "C" fn host_spawn_blocking(data: *const c_void, job: BlockingJob) -> RawTask {
    // SAFETY: as in `host_spawn`.
    let services = unsafe { services(data) };
    catch_unwind(AssertUnwindSafe(|| services.spawn_blocking(job))).unwrap_or(RawTask::REFUSED)
}

unsafe extern "C" fn host_task_abort(data: *const c_void, task: RawTask) {
    // SAFETY: as in `host_spawn`.
    let services = unsafe { services(data) };
    let _ = catch_unwind(AssertUnwindSafe(|| services.abort(task)));
}

unsafe extern "C" fn host_sleep(data: *const c_void, nanos: u64) -> FfiFuture<()> {
    // SAFETY: the plugin passes back the `data` of its live table.
    let services = unsafe { services(data) };
    // Entering the handle lets this work from threads outside the runtime.
    let made = catch_unwind(AssertUnwindSafe(|| {
        let _enter = services.handle.enter();
        tokio::time::sleep(Duration::from_nanos(nanos))
    }));
    match made {
        Ok(sleep) => FfiFuture::new(sleep),
        Err(payload) => {
            tracing::error!(
                plugin = %services.name,
                "cannot start a timer for the plugin: {} (is the host runtime built with `enable_time`?)",
                panic_message(&*payload)
            );
            FfiFuture::new(std::future::ready(()))
        }
    }
}

unsafe extern "C" fn host_emit(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
) -> FfiFuture<RStatus> {
    // SAFETY: the plugin passes back the `data` of its live table; `name`
    // and `payload` are alive for this call and copied before it returns.
    let (services, name, payload) =
        unsafe { (services(data), name.as_bytes(), payload.as_bytes()) };
    let Some(inner) = services.host.upgrade() else {
        return FfiFuture::new(std::future::ready(RStatus::error("the host has shut down")));
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return FfiFuture::new(std::future::ready(RStatus::error(
            "event name is not UTF-8",
        )));
    };
    let event = Event::from_json_bytes(name, payload).with_source(&services.name);
    let from = services.name.clone();
    FfiFuture::new(async move {
        let report = inner.dispatch(event).await;
        for failure in &report.failures {
            tracing::warn!(from = %from, "{failure}");
        }
        RStatus::ok()
    })
}

unsafe extern "C" fn host_subscribe(
    data: *const c_void,
    name: RStr<'_>,
    handler: RawHandler,
) -> RStatus {
    // SAFETY: the plugin passes back the `data` of its live table; `name` is
    // alive for this call.
    let (services, name) = unsafe { (services_arc(data), name.to_str()) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let Some(name) = name else {
            return Err("event name is not UTF-8");
        };
        let Some(inner) = services.host.upgrade() else {
            return Err("the host has shut down");
        };
        let reg = lock(&services.registry);
        if reg.closed {
            return Err("the plugin is being unloaded");
        }
        let subscriber = Subscriber::plugin(Arc::clone(&services), handler.data, handler.call);
        lock(&services.handlers).push(handler);
        match lock(&services.pending).as_mut() {
            Some(pending) => pending.push((name.to_owned(), subscriber)),
            None if services.is_quarantined() => {}
            None => inner.add_subscriber(name, subscriber),
        }
        drop(reg);
        Ok(())
    }));
    match result {
        Ok(Ok(())) => RStatus::ok(),
        Ok(Err(msg)) => RStatus::error(msg),
        Err(payload) => RStatus::panic(panic_message(&*payload)),
    }
}
