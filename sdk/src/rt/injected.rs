//! The plugin-local static that holds what the host injected, and the guard
//! that every plugin future crossing the boundary is wrapped in.
//!
//! The handle lives in a `static` (never a `thread_local!`: a thread-local
//! would be set only on the thread that ran `init`, and host tasks move
//! between worker threads).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, RawWakerVTable, Wake, Waker};

use async_ffi::ContextExt;

use crate::abi::{HostApi, RStr};

/// What `init` stored: the host's table and this plugin's private runtime.
pub(crate) struct Injected {
    pub(crate) api: &'static HostApi,
    /// A private runtime of this plugin's own tokio copy. It is entered
    /// around every poll of plugin code so that tokio calls the attribute
    /// cannot see (helper modules, third-party crates) find a reactor and a
    /// timer. Sound: this copy of tokio only ever touches its own data.
    pub(crate) private: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    /// Handle of `private`, entered around polls.
    pub(crate) private_handle: Option<tokio::runtime::Handle>,
    /// Which `install` this is (see `enter_private`).
    pub(crate) generation: u64,
}

static INJECTED: AtomicPtr<Injected> = AtomicPtr::new(ptr::null_mut());

/// The injected state, if a host loaded this library.
///
/// The `'static` lifetime is upheld by the host's contract (see
/// [`crate::abi::PluginDeclaration::shutdown`]): `shutdown`, the only place
/// that frees the state, runs once no plugin task is left.
pub(crate) fn injected() -> Option<&'static Injected> {
    let p = INJECTED.load(Ordering::Acquire);
    // SAFETY: non-null pointers stored in `INJECTED` come from `Box::into_raw`
    // in `install` and stay valid until `uninstall`, which the host calls only
    // after every plugin task and handler is gone (the contract above).
    unsafe { p.as_ref() }
}

/// The host's table, if a host loaded this library.
pub(crate) fn host() -> Option<&'static HostApi> {
    injected().map(|i| i.api)
}

/// Stores the injected state; fails if this copy of the library was already
/// initialized (the same file loaded twice shares its statics).
pub(crate) fn install(mut state: Injected) -> Result<(), Injected> {
    state.generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    let boxed = Box::into_raw(Box::new(state));
    match INJECTED.compare_exchange(ptr::null_mut(), boxed, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        // SAFETY: `boxed` was not published, so we still own it.
        Err(_) => Err(*unsafe { Box::from_raw(boxed) }),
    }
}

/// Shuts the private runtime down (joining its threads) and forgets the host.
pub(crate) fn uninstall() {
    // Shut the private runtime down first, while `INJECTED` is still valid
    // for anything its tasks call. This waits for its worker thread, so the
    // library is not unmapped under a running thread.
    if let Some(state) = injected() {
        let rt = state
            .private
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = rt {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
    let p = INJECTED.swap(ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in `install` and was just
        // unpublished; the host's contract says nothing uses it any more.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Bumped by every `install`, so a thread can tell which load's private
/// runtime it entered (the same mapping may be loaded again after an unload).
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The guard of the private runtime this thread has entered, with the
    /// `install` generation it belongs to. `ManuallyDrop`: at thread exit
    /// tokio's own thread-local may already be gone, and dropping the guard
    /// then would panic inside a thread-local destructor; it is dropped
    /// explicitly only when a later load's runtime replaces it.
    static ENTERED: RefCell<Option<(u64, ManuallyDrop<tokio::runtime::EnterGuard<'static>>)>> =
        const { RefCell::new(None) };
    /// The generation in `ENTERED` (0: none), read first: the check on
    /// every poll is then one thread-local load.
    static ENTERED_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Makes the private runtime, if any, the current runtime of this plugin's
/// tokio copy on this thread.
///
/// Entered once per thread and left entered, rather than entered and left
/// around every poll: entering clones the runtime handle and writes tokio's
/// thread-local, which cost more than the rest of a poll crossing. Leaving
/// it entered is harmless: only this plugin's code reads this copy's
/// thread-local, and it only runs inside plugin calls. A later load of the
/// same mapping has another generation: its runtime replaces the old one
/// (dropping the old guard, so the old runtime's handle is released).
#[inline]
pub(crate) fn enter_private() {
    let Some(state) = injected() else { return };
    if ENTERED_GENERATION.get() != state.generation {
        enter_private_slow(state);
    }
}

#[cold]
fn enter_private_slow(state: &'static Injected) {
    let Some(handle) = state.private_handle.as_ref() else {
        return;
    };
    ENTERED.with(|entered| {
        let Ok(mut entered) = entered.try_borrow_mut() else {
            return;
        };
        if entered
            .as_ref()
            .is_some_and(|(generation, _)| *generation == state.generation)
        {
            return;
        }
        if let Some((_, mut old)) = entered.take() {
            // SAFETY: taken out of the slot, dropped once. Guards are dropped
            // in order: polls enter at their start, when no guard of user
            // code is alive on this thread.
            unsafe { ManuallyDrop::drop(&mut old) };
        }
        *entered = Some((state.generation, ManuallyDrop::new(handle.enter())));
        ENTERED_GENERATION.set(state.generation);
    });
}

/// Sends a log line to the host, if one is attached and wants it.
pub(crate) fn host_log(level: u32, target: &str, message: &str) {
    if let Some(api) = host() {
        // SAFETY: `api` is the live host table (see `injected`); the strings
        // outlive the calls.
        unsafe {
            if (api.log_enabled)(api.data, level, RStr::new(target)) {
                (api.log)(api.data, level, RStr::new(target), RStr::new(message));
            }
        }
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Runs `f`, turning a panic into its message. The payload is dropped under
/// a second guard because a payload's own `Drop` may panic
/// (rust-lang/rust#86027).
#[inline]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(caught)
}

/// The message of a caught panic; the payload is dropped under a second guard.
#[cold]
fn caught(payload: Box<dyn Any + Send>) -> String {
    let msg = panic_message(&*payload);
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // The payload's drop panicked; that panic's payload is leaked
        // rather than dropped, since its drop could panic again.
        std::mem::forget(second);
    }
    msg
}

/// A waker that catches a panic of the waker it wraps: async-ffi aborts the
/// process when a waker panics inside its `extern "C"` vtable, and the SDK
/// wakes joiners itself.
struct CatchingWaker(Waker);

impl Wake for CatchingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake_caught(|| self.0.wake_by_ref());
    }
}

/// Runs a wake, turning a panic of the waker into a log line.
pub(crate) fn wake_caught(wake: impl FnOnce()) {
    if let Err(msg) = catch(wake) {
        host_log(
            crate::abi::level::ERROR,
            "horizon_sdk::rt",
            &format!("a waker panicked when woken: {msg}"),
        );
    }
}

/// The vtable of the wakers async-ffi makes for plugin code out of a host
/// waker (lifecycle futures are async-ffi futures): those call only host
/// (tokio) code and never panic.
fn bridged_waker_vtable() -> *const RawWakerVTable {
    static VTABLE: OnceLock<usize> = OnceLock::new();
    let addr = *VTABLE.get_or_init(|| {
        let mut cx = Context::from_waker(Waker::noop());
        cx.with_ffi_context(|fcx| {
            fcx.with_context(|cx| std::ptr::from_ref(cx.waker().vtable()) as usize)
        })
    });
    addr as *const RawWakerVTable
}

/// Polls a host future (an async-ffi future) from plugin code. When the
/// context's waker is not a host waker (plugin code built its own),
/// it is wrapped so that the host calling it can never see a panic.
pub(crate) fn poll_host<F: Future + Unpin>(fut: &mut F, cx: &mut Context<'_>) -> Poll<F::Output> {
    if super::waker::is_host_waker(cx.waker())
        || std::ptr::eq(cx.waker().vtable(), bridged_waker_vtable())
    {
        return Pin::new(fut).poll(cx);
    }
    let waker = Waker::from(Arc::new(CatchingWaker(cx.waker().clone())));
    Pin::new(fut).poll(&mut Context::from_waker(&waker))
}

/// Wraps a plugin future before it crosses the boundary: enters the private
/// runtime around each poll and turns a panic in `poll` or in `drop` into a
/// value, so that no unwind ever reaches an `extern "C"` function (which
/// would abort the host).
pub(crate) struct Guarded<F: Future> {
    fut: ManuallyDrop<F>,
    /// `fut` has been dropped in place.
    dropped: bool,
}

impl<F: Future> Guarded<F> {
    pub(crate) fn new(fut: F) -> Self {
        Guarded {
            fut: ManuallyDrop::new(fut),
            dropped: false,
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out, only
        // polled through this pinned reference and dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        if this.dropped {
            panic!("`Guarded` polled after completion");
        }
        enter_private();
        // SAFETY: see above; `dropped` is false so `fut` is initialized.
        let fut = unsafe { Pin::new_unchecked(&mut *this.fut) };
        let out = match catch(|| fut.poll(cx)) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(msg) => Err(msg),
        };
        // Drop the finished future now, inside the runtime context (entered
        // above) and the panic guard, rather than whenever the host drops
        // the task.
        this.drop_entered();
        Poll::Ready(out)
    }
}

impl<F: Future> Guarded<F> {
    fn drop_inner(&mut self) {
        if !self.dropped {
            enter_private();
            self.drop_entered();
        }
    }

    /// Drops the future in place, with the private runtime entered.
    fn drop_entered(&mut self) {
        if !self.dropped {
            self.dropped = true;
            // SAFETY: `fut` is initialized (`dropped` was false) and is
            // dropped exactly once, in place, as pinning requires.
            if let Err(msg) = catch(|| unsafe { ManuallyDrop::drop(&mut self.fut) }) {
                host_log(
                    crate::abi::level::ERROR,
                    "horizon_sdk",
                    &format!("a plugin future panicked while being dropped: {msg}"),
                );
            }
        }
    }
}

impl<F: Future> Drop for Guarded<F> {
    fn drop(&mut self) {
        self.drop_inner();
    }
}
