//! Tasks: [`spawn`], [`spawn_blocking`], [`yield_now`], [`JoinHandle`], [`JoinError`].
//!
//! Shaped like `tokio::task` so that code the attribute rewrote still
//! type-checks.

use std::any::Any;
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use super::injected::{self, catch};
use super::waker;
use crate::abi::{self, BlockingJob, HostApi, HostWaker, RawFuture};

/// What a task's [`JoinHandle`] waits on: the output, whether the task has
/// finished, and the waker of whoever awaits it; and whether it was aborted.
/// Lives in plugin memory, so awaiting a task never crosses the boundary.
///
/// One writer (`finish`, called once) and one reader (the `JoinHandle`):
/// the writer stores the output, then publishes `finished` (release); the
/// reader takes the output only after seeing `finished` (acquire).
struct Shared<T> {
    output: UnsafeCell<Option<Result<T, String>>>,
    finished: AtomicBool,
    waker: AtomicWaker,
    /// Set by `JoinHandle::abort`; read by the host before each poll (it is
    /// [`RawFuture::cancelled`]) and by a blocking job before it starts.
    cancelled: AtomicBool,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            output: UnsafeCell::new(None),
            finished: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            cancelled: AtomicBool::new(false),
        }
    }
}

// SAFETY: `output` is written once before `finished` is published and read
// only after, by the single `JoinHandle`; `T: Send` moves between threads.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Records the outcome (`None`: cancelled) and wakes the joiner. Called
    /// at most once per task.
    fn finish(&self, output: Option<Result<T, String>>) {
        // SAFETY: the single writer, before `finished` is published; the
        // reader does not touch `output` until it sees `finished`.
        unsafe { *self.output.get() = output };
        self.finished.store(true, Ordering::Release);
        if let Some(waker) = self.waker.take() {
            // The joiner's waker may be plugin-made: it must not unwind here.
            injected::wake_caught(&waker);
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Takes the outcome once finished, else registers `cx`'s waker.
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Option<Result<T, String>>> {
        if !self.is_finished() {
            self.waker.register(cx.waker());
            if !self.is_finished() {
                return Poll::Pending;
            }
        }
        // SAFETY: `finished` was published (acquire), so the writer is done;
        // the `JoinHandle` is the only reader and holds `&mut self`.
        Poll::Ready(unsafe { (*self.output.get()).take() })
    }
}

/// The join side of a task cell, with the future's type erased.
trait JoinCell<T>: Send + Sync {
    fn shared(&self) -> &Shared<T>;
}

impl<T: Send> JoinCell<T> for Shared<T> {
    fn shared(&self) -> &Shared<T> {
        self
    }
}

/// One refcounted allocation per spawned task: the future (polled and
/// dropped only by the host's task, through [`RawFuture`]) and the join
/// state (read by the [`JoinHandle`]).
struct TaskCell<F: Future> {
    future: UnsafeCell<Option<F>>,
    shared: Shared<F::Output>,
}

// SAFETY: `future` is touched only by the host task's `poll`/`drop`, which
// tokio never runs concurrently; it moves between threads, so `F: Send`.
// `shared` is `Sync` for `Send` outputs.
unsafe impl<F: Future + Send> Send for TaskCell<F> where F::Output: Send {}
// SAFETY: as above: shared access goes through `shared` only.
unsafe impl<F: Future + Send> Sync for TaskCell<F> where F::Output: Send {}

impl<F: Future + Send> JoinCell<F::Output> for TaskCell<F>
where
    F::Output: Send,
{
    fn shared(&self) -> &Shared<F::Output> {
        &self.shared
    }
}

/// Drops the future in place (it is pinned inside the cell), inside the
/// private runtime's context and a panic guard.
fn drop_future<F>(slot: &mut Option<F>) {
    injected::enter_private();
    if let Err(msg) = catch(|| *slot = None) {
        injected::host_log(
            abi::level::ERROR,
            "horizon_sdk::rt",
            &format!("a plugin future panicked while being dropped: {msg}"),
        );
    }
}

unsafe extern "C" fn poll_task<F>(
    data: *const c_void,
    waker: *const HostWaker,
    _out: *mut (),
) -> bool
where
    F: Future + Send,
    F::Output: Send,
{
    // SAFETY: `data` is the `Arc<TaskCell<F>>` leaked in `spawn`, alive until
    // `drop_task`; the host polls its task from one thread at a time, so the
    // access to `future` is exclusive; `waker` is valid for this call.
    let (cell, slot, waker) = unsafe {
        let cell = &*data.cast::<TaskCell<F>>();
        (cell, &mut *cell.future.get(), &*waker)
    };
    let Some(fut) = slot.as_mut() else {
        return true;
    };
    injected::enter_private();
    // SAFETY: the host's waker is alive for this call.
    let polled = unsafe {
        waker::with_context(waker, |cx| {
            // SAFETY: the future is pinned in the cell: never moved, dropped in place.
            catch(|| Pin::new_unchecked(fut).poll(cx))
        })
    };
    let output = match polled {
        Ok(Poll::Pending) => return false,
        Ok(Poll::Ready(v)) => Ok(v),
        Err(msg) => {
            injected::host_log(
                abi::level::ERROR,
                "horizon_sdk::rt",
                &format!("a spawned task panicked: {msg}"),
            );
            Err(msg)
        }
    };
    drop_future(slot);
    cell.shared.finish(Some(output));
    // The output is `()`: nothing to write.
    true
}

unsafe extern "C" fn drop_task<F>(data: *const c_void)
where
    F: Future + Send,
    F::Output: Send,
{
    // SAFETY: `data` is the leaked `Arc<TaskCell<F>>`; the host calls this
    // once, after its last poll.
    let cell = unsafe { Arc::from_raw(data.cast::<TaskCell<F>>()) };
    // SAFETY: the host no longer polls, so the access to `future` is exclusive.
    let slot = unsafe { &mut *cell.future.get() };
    if slot.is_some() {
        // Aborted, or dropped by a runtime shutting down, before completing.
        drop_future(slot);
        cell.shared.finish(None);
    }
    // The last reference may drop an unread output, which is plugin code.
    let _ = catch(move || drop(cell));
}

fn no_runtime(what: &str) -> ! {
    panic!(
        "`horizon_sdk::rt::{what}` was called with no Horizon host attached and outside a tokio \
         runtime: load the plugin with `horizon_host_runtime::PluginHost`, or run this code \
         inside a tokio runtime (for example a `#[tokio::test]`)"
    )
}

/// Spawns a future as a task on the host's runtime, owned by this plugin.
///
/// Inside a loaded plugin the task runs on the host's tokio runtime through
/// the injected handle; without a host it falls back to the ambient tokio
/// runtime of this crate's own tokio (for a plugin's own `#[tokio::test]`s).
///
/// # Panics
/// With neither a host nor a tokio runtime.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handle = horizon_sdk::rt::spawn(async { 40 + 2 });
/// assert_eq!(handle.await.unwrap(), 42);
/// # }
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if let Some(api) = injected::host() {
        let cell = Arc::new(TaskCell {
            future: UnsafeCell::new(Some(future)),
            shared: Shared::default(),
        });
        let data: *const c_void = Arc::into_raw(Arc::clone(&cell)).cast();
        let raw = RawFuture {
            data,
            poll: poll_task::<F>,
            drop: drop_task::<F>,
            cancelled: &raw const cell.shared.cancelled,
        };
        // SAFETY: `api` is the live host table; `spawn` never unwinds and
        // owns `raw` from here on (dropping it if it refuses the task, which
        // then reads as cancelled).
        unsafe { (api.spawn)(api.data, raw) };
        JoinHandle(Repr::Host {
            api,
            task: data as usize,
            cell,
        })
    } else if tokio::runtime::Handle::try_current().is_ok() {
        JoinHandle(Repr::Native(tokio::spawn(future)))
    } else {
        no_runtime("spawn")
    }
}

/// Runs a blocking closure on the host's blocking thread pool.
///
/// # Panics
/// With neither a host nor a tokio runtime.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sum = horizon_sdk::rt::spawn_blocking(|| (1..=10).sum::<u32>()).await.unwrap();
/// assert_eq!(sum, 55);
/// # }
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if let Some(api) = injected::host() {
        let cell: Arc<Shared<R>> = Arc::default();
        let job = Box::new(Job {
            f,
            out: Arc::clone(&cell),
        });
        let job = BlockingJob {
            data: Box::into_raw(job).cast(),
            run: run_job::<F, R>,
            drop: drop_job::<F, R>,
        };
        // SAFETY: `api` is the live host table; `spawn_blocking` never unwinds
        // and calls the job's `run` or `drop` exactly once.
        unsafe { (api.spawn_blocking)(api.data, job) };
        JoinHandle(Repr::Host { api, task: 0, cell })
    } else if tokio::runtime::Handle::try_current().is_ok() {
        JoinHandle(Repr::Native(tokio::task::spawn_blocking(f)))
    } else {
        no_runtime("spawn_blocking")
    }
}

struct Job<F, R> {
    f: F,
    out: Arc<Shared<R>>,
}

unsafe extern "C" fn run_job<F: FnOnce() -> R, R: Send>(data: *mut c_void) {
    // SAFETY: `data` is the `Box<Job>` made in `spawn_blocking`; the host
    // calls `run` or `drop` exactly once.
    let job = unsafe { Box::from_raw(data.cast::<Job<F, R>>()) };
    let Job { f, out } = *job;
    if out.cancelled.load(Ordering::Acquire) {
        // Aborted before it started, like tokio's blocking tasks.
        let _ = catch(move || drop(f));
        out.finish(None);
        return;
    }
    let result = {
        injected::enter_private();
        catch(f)
    };
    if let Err(msg) = &result {
        injected::host_log(
            abi::level::ERROR,
            "horizon_sdk::rt",
            &format!("a blocking job panicked: {msg}"),
        );
    }
    out.finish(Some(result));
}

unsafe extern "C" fn drop_job<F, R: Send>(data: *mut c_void) {
    // SAFETY: as in `run_job`.
    let job = unsafe { Box::from_raw(data.cast::<Job<F, R>>()) };
    let Job { f, out } = *job;
    let _ = catch(move || drop(f));
    out.finish(None);
}

/// Yields execution back to the host's scheduler once.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// horizon_sdk::rt::yield_now().await;
/// # }
/// ```
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// An owned permission to await a spawned task, like `tokio::task::JoinHandle`.
///
/// Dropping it detaches the task, which keeps running (until the plugin is unloaded).
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_sdk::rt::{self, time::Duration};
///
/// let slow = rt::spawn(rt::sleep(Duration::from_secs(60)));
/// slow.abort();
/// let err = slow.await.unwrap_err();
/// assert!(err.is_cancelled());
///
/// let quick = rt::spawn(async { 1 });
/// rt::sleep(Duration::from_millis(5)).await;
/// assert!(quick.is_finished());
/// assert_eq!(quick.await.unwrap(), 1);
/// # }
/// ```
pub struct JoinHandle<T>(Repr<T>);

enum Repr<T> {
    Host {
        api: &'static HostApi,
        /// The task's `RawFuture::data`, the host's key for it (0: a blocking job).
        task: usize,
        cell: Arc<dyn JoinCell<T>>,
    },
    Native(tokio::task::JoinHandle<T>),
}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// Cancels the task. Awaiting the handle then gives a cancelled [`JoinError`]
    /// (unless the task finished first).
    pub fn abort(&self) {
        match &self.0 {
            Repr::Host { api, task, cell } => {
                let shared = cell.shared();
                // Before the host is asked to wake it: the host reads the flag
                // under the lock its `task_abort` takes (see `PluginTask`).
                shared.cancelled.store(true, Ordering::SeqCst);
                if *task != 0 && !shared.is_finished() {
                    // SAFETY: `api` is the live host table; `task_abort`
                    // never unwinds and ignores tasks that are gone. `cell`
                    // keeps the key's allocation alive, so it names no other task.
                    unsafe { (api.task_abort)(api.data, *task as *const c_void) }
                }
            }
            Repr::Native(h) => h.abort(),
        }
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        match &self.0 {
            Repr::Host { cell, .. } => cell.shared().is_finished(),
            Repr::Native(h) => h.is_finished(),
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Repr::Host { cell, .. } => cell.shared().poll_join(cx).map(|out| match out {
                Some(Ok(v)) => Ok(v),
                Some(Err(msg)) => Err(JoinError::Panic(msg)),
                None => Err(JoinError::Cancelled),
            }),
            Repr::Native(h) => Pin::new(h).poll(cx).map_err(|e| {
                if e.is_panic() {
                    JoinError::Panic(injected::panic_message(&*e.into_panic()))
                } else {
                    JoinError::Cancelled
                }
            }),
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Why a task did not produce its output, like `tokio::task::JoinError`.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let err = horizon_sdk::rt::spawn(async { panic!("boom") }).await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// # }
/// ```
#[derive(Debug)]
pub enum JoinError {
    /// The task was aborted, or dropped because its plugin was unloaded.
    Cancelled,
    /// The task panicked; the message is the panic's.
    Panic(String),
}

impl JoinError {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// The panic's message, if the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panic(msg) => Some(msg),
            JoinError::Cancelled => None,
        }
    }

    /// The panic as a payload (a `String`), like tokio's `JoinError::into_panic`.
    ///
    /// # Panics
    /// If the task was cancelled rather than panicked.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self {
            JoinError::Panic(msg) => Box::new(msg),
            JoinError::Cancelled => panic!("`JoinError::into_panic` on a cancelled task"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panic(msg) => write!(f, "task panicked with message {msg:?}"),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> Self {
        std::io::Error::other(e)
    }
}
