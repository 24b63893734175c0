//! The tasks and blocking jobs of a plugin as the host's runtime runs
//! them: counted as the plugin's live work, stopped by unload.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use horizon_plugin_sdk::abi::{BlockingJob, RawFuture};
use tokio::task::JoinHandle;

use super::services::{LIVE, Services};
use crate::stats::Site;
use crate::sync::lock;

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
        self.0.get().stats.job_finished();
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
        // address for host futures (`None` until it first parks).
        key: Option<NonZeroUsize>,
        parked: bool,
        // What the task runs, for stats and slow-poll warnings.
        site: Site,
    }

    impl<F> PinnedDrop for PluginTask<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let services = this.services.get();
            unpark(services, *this.key, this.parked);
            // Plugin code: before the task stops counting as live.
            this.fut.set(None);
            if matches!(this.site, Site::Task) {
                services.stats.task_finished();
            }
            // SAFETY: the task's one release, its last use of `services`.
            unsafe { this.services.release() };
        }
    }
}

/// Removes a task's waker from `parked`, if it registered one. Called
/// before the task's future is dropped: dropping it may free the plugin's
/// cell whose address is the key, and a new task may then reuse the key.
#[inline]
fn unpark(services: &Services, key: Option<NonZeroUsize>, parked: &mut bool) {
    if std::mem::take(parked)
        && let Some(key) = key
    {
        unpark_slow(services, key.get());
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
    fn counted(
        services: CountedRef,
        site: Site,
        fut: F,
        key: Option<NonZeroUsize>,
        cancelled: *const AtomicBool,
    ) -> Self {
        PluginTask {
            fut: Some(fut),
            services,
            cancelled,
            key,
            parked: false,
            site,
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
        match services.timed_poll(this.site.as_ref(), || fut.poll(cx)) {
            Poll::Ready(out) => {
                unpark(services, *this.key, this.parked);
                this.fut.set(None);
                Poll::Ready(Some(out))
            }
            Poll::Pending if *this.parked => Poll::Pending,
            Poll::Pending => {
                let key = *this
                    .key
                    .get_or_insert(NonZeroUsize::new(address).expect("a task's address is not 0"));
                let mut parked = lock(&services.parked);
                if services.closed.load(Ordering::Relaxed) || is_cancelled() {
                    drop(parked);
                    this.fut.set(None);
                    return Poll::Ready(None);
                }
                // The waker of a tokio task's root future is that task's, the
                // same at every poll: registering it once is enough.
                parked.insert(key.get(), cx.waker().clone());
                *this.parked = true;
                Poll::Pending
            }
        }
    }
}

impl Services {
    /// Spawns a host future that calls into the plugin (`site` says
    /// what it runs) on the host runtime as a task of this plugin, or
    /// `None` once the plugin is being unloaded. The task's output is
    /// `None` if unload cancelled it.
    pub(crate) fn spawn<F>(&self, site: Site, fut: F) -> Option<JoinHandle<Option<F::Output>>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_task(site, fut, None, std::ptr::null())
    }

    /// Counts and spawns a task; when refused, the task is dropped at once
    /// (its future with it). A task spawned while `close` runs is still
    /// counted, and drops its future at its first poll.
    fn spawn_task<F>(
        &self,
        site: Site,
        fut: F,
        key: Option<NonZeroUsize>,
        cancelled: *const AtomicBool,
    ) -> Option<JoinHandle<Option<F::Output>>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let open = self.enter(LIVE);
        // SAFETY: counted just above; the task's drop releases that count.
        let services = unsafe { CountedRef::new(self) };
        let task = PluginTask::counted(services, site, fut, key, cancelled);
        open.then(|| self.handle.spawn(task))
    }

    /// Runs a plugin future as a detached task of this plugin; the plugin
    /// keeps its join state. False (and the future dropped) if refused.
    pub(super) fn spawn_raw(&self, fut: RawFuture) -> bool {
        let (key, cancelled) = (NonZeroUsize::new(fut.data() as usize), fut.cancelled());
        self.stats.task_spawned();
        // Dropping the task when refused tells the plugin its task was cancelled.
        self.spawn_task(Site::Task, fut, key, cancelled).is_some()
    }

    pub(super) fn spawn_blocking(&self, job: BlockingJob) -> bool {
        let job = OwnedJob(job);
        self.stats.job_started();
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
    pub(super) fn abort(&self, key: usize) {
        if let Some(waker) = lock(&self.parked).get(&key) {
            waker.wake_by_ref();
        }
    }
}

/// A plugin's blocking job; runs it or, if never run, drops it.
struct OwnedJob(BlockingJob);

// SAFETY: the SDK builds jobs only from `Send` closures
// (`boundary::cell::spawn_blocking_on_host`).
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
