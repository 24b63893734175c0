//! The plugin-local static that holds what the host injected, and the guard
//! that every plugin future crossing the boundary is wrapped in.
//!
//! The handle lives in a `static` (never a `thread_local!`: a thread-local
//! would be set only on the thread that ran `init`, and host tasks move
//! between worker threads).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use crate::abi::guard::catch;
use crate::abi::{HostApi, RStr};
use crate::boundary::panics::{self, Site};

/// What `init` stored: the host's table and this plugin's private runtime.
pub(crate) struct Injected {
    /// The host's table as this SDK reads it: the prefix the host has,
    /// copied, with the services it lacks `None` (`abi::table`).
    pub(crate) api: HostApi,
    /// The host's own table: its address identifies this load
    /// (`uninstall`, `installed_with`); only read through `api`.
    origin: *const HostApi,
    /// A private runtime of this plugin's own tokio copy. It is entered
    /// around every poll of plugin code so that tokio calls the attribute
    /// cannot see (helper modules, third-party crates) find a reactor and a
    /// timer. Sound: this copy of tokio only ever touches its own data.
    /// `None` once shut down, or for a plugin that declined it
    /// (`Plugin::PRIVATE_RUNTIME`).
    private: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    /// Handle of `private`, entered around polls (`None`: no private runtime).
    private_handle: Option<tokio::runtime::Handle>,
    /// Whether the host set [`crate::abi::FLAG_COOPERATIVE`]: task polls
    /// get a budget of this copy of tokio ([`budgeted`]) if there is also
    /// a private runtime.
    cooperative: bool,
    /// Threads of `private` that have not finished (`on_thread_start` and
    /// `on_thread_stop`), so `uninstall` can tell whether they stopped.
    private_threads: Arc<AtomicUsize>,
}

impl Injected {
    /// The state for host table `api`, with a new private runtime (one
    /// worker thread, named after the plugin) if `private_runtime`.
    pub(crate) fn start(
        origin: *const HostApi,
        api: HostApi,
        name: &str,
        private_runtime: bool,
    ) -> std::io::Result<Box<Self>> {
        let threads = Arc::new(AtomicUsize::new(0));
        let (started, stopped) = (Arc::clone(&threads), Arc::clone(&threads));
        let private = private_runtime
            .then(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("horizon-plugin-{name}"))
                    .on_thread_start(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        // Plugin code polled here (none is, today) must not
                        // start a `block_on` inside this runtime's worker.
                        BUDGETED.set(true);
                    })
                    .on_thread_stop(move || {
                        stopped.fetch_sub(1, Ordering::SeqCst);
                    })
                    .enable_all()
                    .build()
            })
            .transpose()?;
        Ok(Box::new(Injected {
            cooperative: api.flags & crate::abi::FLAG_COOPERATIVE != 0,
            api,
            origin,
            private_handle: private.as_ref().map(|rt| rt.handle().clone()),
            private: std::sync::Mutex::new(private),
            private_threads: threads,
        }))
    }
}

static INJECTED: AtomicPtr<Injected> = AtomicPtr::new(ptr::null_mut());

/// The injected state, if a host loaded this library.
///
/// The `'static` lifetime is upheld by the host's contract (see
/// [`crate::abi::PluginDeclaration::shutdown`] and `release`): the state
/// is freed (`free`) only once no code of the plugin that may read it can
/// run: no task, handler or private runtime thread, and no thread-exit
/// destructor that the host runs.
pub(crate) fn injected() -> Option<&'static Injected> {
    let p = INJECTED.load(Ordering::Acquire);
    // SAFETY: non-null pointers stored in `INJECTED` come from `Box::into_raw`
    // in `install` and stay valid until `free`, whose contract is that no
    // code that may read them runs any more (upheld by its callers).
    unsafe { p.as_ref() }
}

/// The host's table, if a host loaded this library.
pub(crate) fn host() -> Option<&'static HostApi> {
    injected().map(|i| &i.api)
}

/// Stores the injected state; fails if this copy of the library was already
/// initialized (the same file loaded twice shares its statics).
pub(crate) fn install(state: Box<Injected>) -> Result<(), Box<Injected>> {
    let boxed = Box::into_raw(state);
    match INJECTED.compare_exchange(ptr::null_mut(), boxed, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        // SAFETY: `boxed` was not published, so we still own it.
        Err(_) => Err(unsafe { Box::from_raw(boxed) }),
    }
}

/// How long `uninstall` waits for the private runtime's threads.
const PRIVATE_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// Shuts the private runtime down (joining its threads), if `api` is the
/// table this library was installed with (a failed second load of the
/// same mapping must not tear down the first). For a host that set
/// [`crate::abi::FLAG_DEFERRED_RELEASE`], that is all: [`release`] does
/// the rest. Otherwise it detaches the host's thread-exit service and
/// frees the state, if the host runs no thread-exit destructor of the
/// plugin (before boundary 4.4); a 4.4 host runs them but calls no
/// `release` (one may be running now, on an exiting thread): the state
/// is then leaked.
/// False when the private runtime's threads did not stop in time: the
/// state is then left installed (leaked), since they may still use it.
///
/// # Safety
/// The `PluginDeclaration::shutdown` contract: no task or handler of the
/// plugin is left, and none starts.
pub(crate) unsafe fn uninstall(api: *const HostApi) -> bool {
    let Some(state) = installed(api) else {
        return true;
    };
    // Shut the private runtime down first, while `INJECTED` is still valid
    // for anything its tasks call. Tokio joins its threads unless the
    // timeout passes; then they may still run plugin code (even with the
    // thread count at 0: a thread runs on after `on_thread_stop`), so a
    // shutdown that took the whole timeout counts as stuck.
    let rt = crate::sync::lock(&state.private).take();
    if let Some(rt) = rt {
        let started = std::time::Instant::now();
        rt.shutdown_timeout(PRIVATE_SHUTDOWN);
        if started.elapsed() >= PRIVATE_SHUTDOWN {
            return false;
        }
    }
    if state.private_threads.load(Ordering::SeqCst) != 0 {
        return false;
    }
    if state.api.flags & crate::abi::FLAG_DEFERRED_RELEASE != 0 {
        // Thread-exit destructors still go to the host until `release`:
        // one registered now (by a destructor running on an exiting
        // thread) runs under the plugin's exit gate, not after it.
        return true;
    }
    // No code of the plugin runs on a thread of its own any more.
    crate::boundary::thread_exit::detach(state.api.data);
    if state.api.thread_exit.is_none() {
        // SAFETY: no task, handler (the caller's contract) or private
        // runtime thread (stopped above) is left, and this host runs no
        // thread-exit destructor of the plugin: nothing can read the state.
        unsafe { free() };
    }
    true
}

/// `PluginDeclaration::release`: detaches the host's thread-exit service
/// and frees the state that `uninstall` left installed for a host that
/// set [`crate::abi::FLAG_DEFERRED_RELEASE`], if `api` is the table it was
/// installed with.
///
/// Until then a thread-local destructor of the plugin that the host runs
/// on an exiting thread (it may log, or reach any other service) still
/// finds the state. Freed in `shutdown` instead, a destructor running
/// during it could load the pointer just before the swap and read the
/// state after the free.
///
/// # Safety
/// The `PluginDeclaration::release` contract: `shutdown` returned (not
/// stuck) with `api`, and no thread-exit destructor of the plugin can run
/// any more (the host closed the plugin's exit gate).
pub(crate) unsafe fn release(api: *const HostApi) {
    if let Some(state) = installed(api) {
        // Later destructors go to the C library: the host takes none any
        // more (the gate is closed).
        crate::boundary::thread_exit::detach(state.api.data);
        // SAFETY: `shutdown` left no task, handler or private runtime
        // thread, and the caller's contract rules out thread-exit
        // destructors: nothing can read the state.
        unsafe { free() };
    }
}

/// Unpublishes and frees the installed state.
///
/// # Safety
/// No code of the plugin that may read the state runs now or later (each
/// caller says why).
unsafe fn free() {
    let p = INJECTED.swap(ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in `install` and was just
        // unpublished; by the caller's contract nothing reads it any more.
        drop(unsafe { Box::from_raw(p) });
    }
}

thread_local! {
    /// Set while this thread polls plugin code inside [`budgeted`], so a
    /// nested poll (a handler of this plugin that its own emit polls
    /// inline) does not start a second `block_on`, which tokio refuses.
    static BUDGETED: Cell<bool> = const { Cell::new(false) };
}

/// Runs one poll of a plugin task (`poll`, given the host's context `cx`)
/// with a fresh cooperative budget in this library's copy of tokio, as
/// tokio's schedulers give every task poll: the plugin's own tokio
/// resources (channels, semaphores, its sockets) then return `Pending`
/// after 128 ready operations in one poll, waking `cx`'s waker (the host
/// task's) at once, so a plugin task that only awaits ready resources
/// yields its host worker like a native task. Only tasks' polls
/// (`cell::poll_task`): a handler's poll is on the emit path, where the
/// cost of this (BENCHMARKS.md) would fall on every event.
///
/// Tokio sets that budget only in its schedulers and in `block_on`, and no
/// scheduler of this copy runs plugin tasks; so the poll runs inside a
/// `block_on` of the private runtime whose future polls `poll` once, with
/// `cx`, and completes at once (its own waker is never used: no scheduler
/// context is set there, so tokio wakes `cx`'s waker directly). Without a
/// private runtime (`Plugin::PRIVATE_RUNTIME = false`), or nested inside
/// another such poll on this thread, it only polls.
#[inline]
pub(crate) fn budgeted<R>(cx: &mut Context<'_>, poll: impl FnOnce(&mut Context<'_>) -> R) -> R {
    match injected() {
        Some(Injected {
            cooperative: true,
            private_handle: Some(handle),
            ..
        }) if !BUDGETED.get() => poll_in_block_on(handle, cx, poll),
        _ => in_private(|| poll(cx)),
    }
}

// Out of line: the path without a budget stays as short as before.
#[inline(never)]
fn poll_in_block_on<R>(
    handle: &tokio::runtime::Handle,
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> R,
) -> R {
    /// Clears `BUDGETED`, also when `poll` unwinds.
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            BUDGETED.set(false);
        }
    }
    BUDGETED.set(true);
    let _leave = Leave;
    let mut poll = Some(poll);
    handle.block_on(std::future::poll_fn(move |_own| {
        let poll = poll
            .take()
            .expect("polled once: it completes at its first poll");
        Poll::Ready(poll(&mut *cx))
    }))
}

/// Runs `f` with the private runtime, if any, as the current runtime of
/// this plugin's tokio copy on this thread (a `block_on` of it, as in
/// [`budgeted`], enters it too).
///
/// Entered around each call into plugin code and left after it, never
/// left entered: a thread that stays entered keeps a clone of the
/// runtime's handle (its I/O driver's epoll and event descriptors, its
/// timer) in this copy's thread-local, and on a host thread that
/// thread-local outlives the plugin (the host forgets its destructor at
/// unload, `thread_exit`): two descriptors and the timer leaked per
/// reload, for each host thread. Entering costs a clone of the handle and
/// a thread-local write per call (BENCHMARKS.md).
#[inline]
pub(crate) fn in_private<R>(f: impl FnOnce() -> R) -> R {
    match injected().and_then(|state| state.private_handle.as_ref()) {
        Some(handle) => {
            let _entered = handle.enter();
            f()
        }
        None => f(),
    }
}

/// Sends a log line to the host, if one is attached and wants it.
pub(crate) fn host_log(level: u32, target: &str, message: &str) {
    if let Some(api) = host() {
        // SAFETY: `api` is the live host table (see `injected`); the string
        // outlives the call.
        if unsafe { (api.log_enabled)(api.data, level, RStr::new(target)) } {
            send_log(level, target, message);
        }
    }
}

/// Sends a log line the caller already knows the host wants (the logging
/// bridge asked `log_enabled` in its own `enabled`), if a host is attached.
pub(crate) fn send_log(level: u32, target: &str, message: &str) {
    if let Some(api) = host() {
        // SAFETY: `api` is the live host table (see `injected`); the strings
        // outlive the call.
        unsafe { (api.log)(api.data, level, RStr::new(target), RStr::new(message)) };
    }
}

/// Runs a wake, turning a panic of the waker into a log line.
pub(crate) fn wake_caught(wake: impl FnOnce()) {
    if let Err(msg) = catch(wake) {
        panics::log_unreported(
            "horizon_plugin_sdk::rt",
            "a waker panicked when woken",
            &msg,
        );
    }
}

pin_project_lite::pin_project! {
    /// Wraps a plugin future before it crosses the boundary: enters the
    /// private runtime around each poll and turns a panic in `poll` or in
    /// `drop` into a value, so that no unwind ever reaches an `extern "C"`
    /// function (which would abort the host). The future is dropped in
    /// place as soon as it completes, inside the same guard.
    pub(crate) struct Guarded<F> {
        #[pin]
        fut: Option<F>,
        // Where a panic of it is reported to have happened.
        site: Site,
    }

    impl<F> PinnedDrop for Guarded<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            panics::at(*this.site, || drop_guarded(this.fut));
        }
    }
}

impl<F: Future> Guarded<F> {
    /// `fut`, guarded; `site` names it in panic reports (see `panics`):
    /// it must stay valid for as long as the future is polled or dropped.
    pub(crate) fn new(fut: F, site: Site) -> Self {
        Guarded {
            fut: Some(fut),
            site,
        }
    }
}

/// Drops a guarded future in place, with the private runtime entered and
/// a panic turned into a log line.
fn drop_guarded<F>(fut: Pin<&mut Option<F>>) {
    if fut.is_some() {
        drop_pinned(fut);
    }
}

/// Drops a plugin future in place (spawned tasks' and `Guarded`'s): inside
/// a panic guard, a panic turned into a log line, and inside the private
/// runtime's context.
pub(crate) fn drop_pinned<F>(fut: Pin<&mut Option<F>>) {
    in_private(|| drop_entered(fut));
}

/// [`drop_pinned`] for a caller already inside the private runtime's
/// context (the poll that just finished the future): one entry fewer on
/// the path every completed task and handler takes.
pub(crate) fn drop_entered<F>(mut fut: Pin<&mut Option<F>>) {
    if let Err(msg) = catch(|| fut.set(None)) {
        panics::log_unreported(
            "horizon_plugin_sdk",
            "a plugin future panicked while being dropped",
            &msg,
        );
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut fut = this.fut;
        assert!(fut.is_some(), "`Guarded` polled after completion");
        // Handler and lifecycle futures get no budget of the plugin's tokio
        // (only its tasks do, see `budgeted`): the emit path stays as cheap
        // as it was; a handler that loops on the plugin's own channels
        // belongs in a task.
        let polled = panics::at(*this.site, || {
            catch(|| {
                in_private(|| {
                    let Some(inner) = fut.as_mut().as_pin_mut() else {
                        unreachable!("checked above");
                    };
                    let polled = inner.poll(cx);
                    if polled.is_ready() {
                        // Dropped now, in the runtime context entered for
                        // the poll and inside the panic guard, rather than
                        // whenever the host drops the task.
                        drop_entered(fut.as_mut());
                    }
                    polled
                })
            })
        });
        let out = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(msg) => Err(msg),
        };
        // After a panic in `poll`, the future is still there.
        panics::at(*this.site, || drop_guarded(fut));
        Poll::Ready(out)
    }
}

/// Whether this library's state was installed with host table `api`.
pub(crate) fn installed_with(api: *const HostApi) -> bool {
    installed(api).is_some()
}

/// The injected state, if this library's state was installed with host
/// table `api`.
fn installed(api: *const HostApi) -> Option<&'static Injected> {
    injected().filter(|state| ptr::eq(state.origin, api))
}
