//! Tasks: [`spawn`], [`spawn_blocking`], [`yield_now`], [`JoinHandle`], [`JoinError`].
//!
//! Shaped like `tokio::task` so that code the attribute rewrote still
//! type-checks. The cell a task lives in is `crate::boundary::cell`.

use std::any::Any;
use std::ffi::c_void;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::abi::HostApi;
use crate::boundary::cell::{self, CellRef};
use crate::boundary::injected;
use crate::sync::Ordering;

fn no_runtime(what: &str) -> ! {
    panic!(
        "`horizon_plugin_sdk::rt::{what}` was called with no Horizon host attached and outside a tokio \
         runtime: load the plugin with `horizon_plugin_host::PluginHost`, or run this code \
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
/// let handle = horizon_plugin_sdk::rt::spawn(async { 40 + 2 });
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
        // SAFETY: `api` came from `injected::host()`.
        let (cell, task) = unsafe { cell::spawn_on_host(api, future) };
        JoinHandle(Repr::Host {
            api,
            task: Some(task),
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
/// let sum = horizon_plugin_sdk::rt::spawn_blocking(|| (1..=10).sum::<u32>()).await.unwrap();
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
        // SAFETY: `api` came from `injected::host()`.
        let cell = unsafe { cell::spawn_blocking_on_host(api, f) };
        JoinHandle(Repr::Host {
            api,
            task: None,
            cell,
        })
    } else if tokio::runtime::Handle::try_current().is_ok() {
        JoinHandle(Repr::Native(tokio::task::spawn_blocking(f)))
    } else {
        no_runtime("spawn_blocking")
    }
}

/// Yields execution back to the host's scheduler once.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// horizon_plugin_sdk::rt::yield_now().await;
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

/// Consumes one unit of the running task's cooperative budget, like
/// `tokio::task::consume_budget`, and yields to the other tasks on the
/// worker once it is spent. A plugin's tokio copy keeps no budget for
/// plugin tasks (no scheduler of that copy runs them), so this goes to the
/// host's: a loop that only awaits ready futures and calls this yields as
/// often as a native task would. In a host whose SDK predates the `budget`
/// service (0.1), and with no host attached (the plugin's own tests), it
/// returns at once: tokio's own `consume_budget` is unstable in the oldest
/// tokio the SDK supports (1.38), so there is none to fall back to.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// for _ in 0..1000 {
///     horizon_plugin_sdk::rt::task::consume_budget().await;
/// }
/// # }
/// ```
pub async fn consume_budget() {
    let Some((api, budget)) = injected::host().and_then(|api| Some((api, api.budget?))) else {
        return;
    };
    // As tokio's: every poll until the first that may go on spends a unit
    // (the budget is refilled when the task is polled again).
    std::future::poll_fn(|cx| {
        let waker = crate::abi::waker::lend(cx.waker());
        // SAFETY: `api` is the live host table; the lent waker is valid for
        // this call, which the host does not outlive.
        if unsafe { budget(api.data, &waker) } {
            Poll::Ready(())
        } else {
            // Spent: the host arranged for this task to be woken.
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
/// use horizon_plugin_sdk::rt::{self, time::Duration};
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
        /// The task's `RawFuture::data`, the host's key for it (`None`: a
        /// blocking job, which cannot be aborted once it runs).
        task: Option<NonZeroUsize>,
        cell: CellRef<T>,
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
                if let Some(task) = task
                    && !shared.is_finished()
                {
                    // SAFETY: `api` is the live host table; `task_abort`
                    // never unwinds and ignores tasks that are gone. `cell`
                    // keeps the key's allocation alive, and the host drops
                    // a task's entry before it releases its own reference,
                    // so the key names this task or none.
                    unsafe { (api.task_abort)(api.data, task.get() as *const c_void) }
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
                Some(Err(msg)) => Err(JoinError::panic(msg)),
                None => Err(JoinError::cancelled()),
            }),
            Repr::Native(h) => Pin::new(h).poll(cx).map_err(|e| {
                if e.is_panic() {
                    JoinError::panic(crate::abi::guard::panic_message(&*e.into_panic()))
                } else {
                    JoinError::cancelled()
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
/// let err = horizon_plugin_sdk::rt::spawn(async { panic!("boom") }).await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// # }
/// ```
pub struct JoinError(JoinErrorRepr);

enum JoinErrorRepr {
    Cancelled,
    Panic(String),
}

impl JoinError {
    pub(crate) fn cancelled() -> Self {
        JoinError(JoinErrorRepr::Cancelled)
    }

    pub(crate) fn panic(message: String) -> Self {
        JoinError(JoinErrorRepr::Panic(message))
    }

    /// Whether the task was cancelled (aborted, or dropped because its
    /// plugin was unloaded).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.0, JoinErrorRepr::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.0, JoinErrorRepr::Panic(_))
    }

    /// The panic's message, if the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.0 {
            JoinErrorRepr::Panic(msg) => Some(msg),
            JoinErrorRepr::Cancelled => None,
        }
    }

    /// The panic as a payload (a `String`), like tokio's `JoinError::into_panic`.
    ///
    /// # Panics
    /// If the task was cancelled rather than panicked.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .unwrap_or_else(|_| panic!("`JoinError::into_panic` on a cancelled task"))
    }

    /// The panic as a payload, or the error back if the task was cancelled,
    /// like tokio's `JoinError::try_into_panic`.
    ///
    /// # Errors
    /// `self`, when the task was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.0 {
            JoinErrorRepr::Panic(msg) => Ok(Box::new(msg)),
            JoinErrorRepr::Cancelled => Err(self),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            JoinErrorRepr::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinErrorRepr::Panic(msg) => write!(f, "JoinError::Panic({msg:?})"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            JoinErrorRepr::Cancelled => f.write_str("task was cancelled"),
            JoinErrorRepr::Panic(msg) => write!(f, "task panicked with message {msg:?}"),
        }
    }
}

impl From<JoinError> for crate::PluginError {
    fn from(e: JoinError) -> Self {
        crate::PluginError::new(e)
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> Self {
        std::io::Error::other(e)
    }
}
