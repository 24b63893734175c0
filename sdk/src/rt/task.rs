//! Tasks: [`spawn`], [`spawn_blocking`], [`yield_now`], [`JoinHandle`], [`JoinError`].
//!
//! Shaped like `tokio::task` so that code the attribute rewrote still
//! type-checks.

use std::any::Any;
use std::ffi::c_void;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_ffi::{ContextExt, FfiFuture};

use super::injected::{self, Guarded, catch};
use crate::abi::{self, BlockingJob, HostApi, RawTask};

/// Where the task's output waits for its [`JoinHandle`].
type OutputCell<T> = Arc<Mutex<Option<Result<T, String>>>>;

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
        let cell: OutputCell<F::Output> = Arc::new(Mutex::new(None));
        let out = Arc::clone(&cell);
        let task = FfiFuture::new(async move {
            let result = Guarded::new(future).await;
            if let Err(msg) = &result {
                injected::host_log(
                    abi::level::ERROR,
                    "horizon_sdk::rt",
                    &format!("a spawned task panicked: {msg}"),
                );
            }
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        });
        // SAFETY: `api` is the live host table; `spawn` never unwinds.
        let raw = unsafe { (api.spawn)(api.data, task) };
        JoinHandle(Repr::Host { api, raw, cell })
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
        let cell: OutputCell<R> = Arc::new(Mutex::new(None));
        let job = Box::new(Job {
            f,
            out: Arc::clone(&cell),
        });
        let job = BlockingJob {
            data: Box::into_raw(job).cast(),
            run: run_job::<F, R>,
            drop: drop_job::<F, R>,
        };
        // SAFETY: `api` is the live host table; `spawn_blocking` never unwinds.
        let raw = unsafe { (api.spawn_blocking)(api.data, job) };
        JoinHandle(Repr::Host { api, raw, cell })
    } else if tokio::runtime::Handle::try_current().is_ok() {
        JoinHandle(Repr::Native(tokio::task::spawn_blocking(f)))
    } else {
        no_runtime("spawn_blocking")
    }
}

struct Job<F, R> {
    f: F,
    out: OutputCell<R>,
}

unsafe extern "C" fn run_job<F: FnOnce() -> R, R>(data: *mut c_void) {
    // SAFETY: `data` is the `Box<Job>` made in `spawn_blocking`; the host
    // calls `run` or `drop` exactly once.
    let job = unsafe { Box::from_raw(data.cast::<Job<F, R>>()) };
    let Job { f, out } = *job;
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
    *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
}

unsafe extern "C" fn drop_job<F, R>(data: *mut c_void) {
    // SAFETY: as in `run_job`.
    let job = unsafe { Box::from_raw(data.cast::<Job<F, R>>()) };
    let _ = catch(move || drop(job));
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
pub struct JoinHandle<T>(Repr<T>);

enum Repr<T> {
    Host {
        api: &'static HostApi,
        raw: RawTask,
        cell: OutputCell<T>,
    },
    Native(tokio::task::JoinHandle<T>),
}

// SAFETY: the host's task object behind `raw` is thread-safe (host functions
// may be called from any thread) and only reached through `&mut self` or
// thread-safe host functions; `T: Send` travels through the mutex-protected cell.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only allows `is_finished`, a thread-safe host call.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// Cancels the task. Awaiting the handle then gives a cancelled [`JoinError`]
    /// (unless the task finished first).
    pub fn abort(&self) {
        match &self.0 {
            // SAFETY: `raw` is a live task of this host (released only in `drop`).
            Repr::Host { api, raw, .. } => unsafe { (api.task_abort)(api.data, raw.ptr) },
            Repr::Native(h) => h.abort(),
        }
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        match &self.0 {
            // SAFETY: as in `abort`.
            Repr::Host { api, raw, .. } => unsafe { (api.task_is_finished)(api.data, raw.ptr) },
            Repr::Native(h) => h.is_finished(),
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Repr::Host { api, raw, cell } => {
                // SAFETY: `raw` is a live task; `task_poll_join` never unwinds
                // and only borrows the context for the call.
                let state = cx.with_ffi_context(|fcx| unsafe {
                    (api.task_poll_join)(api.data, raw.ptr, fcx)
                });
                match state {
                    abi::JOIN_PENDING => Poll::Pending,
                    abi::JOIN_DONE => Poll::Ready(
                        match cell.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            Some(Ok(v)) => Ok(v),
                            Some(Err(msg)) => Err(JoinError::Panic(msg)),
                            None => Err(JoinError::Cancelled),
                        },
                    ),
                    abi::JOIN_PANICKED => Poll::Ready(Err(JoinError::Panic(
                        "the host failed while running the task".to_owned(),
                    ))),
                    _ => Poll::Ready(Err(JoinError::Cancelled)),
                }
            }
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

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Repr::Host { api, raw, .. } = &self.0 {
            // SAFETY: `raw` is live and released exactly once, here.
            unsafe { (api.task_release)(api.data, raw.ptr) }
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
