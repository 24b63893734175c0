//! The runtime facade: what `tokio::spawn`, `tokio::time::sleep` and the
//! related calls in a `#[horizon_plugin]` impl are rewritten to.
//!
//! Inside a loaded plugin every call goes through the host's table of
//! services ([`crate::abi::HostApi`]), so plugin tasks and timers run on the
//! host's tokio runtime. Where no host injected a table (a plugin crate's own
//! `#[tokio::test]`s, or a plugin linked statically into a host) the calls
//! use the ambient tokio runtime of this crate's own tokio; with neither they
//! panic with a message that says so.
//!
//! The modules mirror tokio's (`rt::time` for `tokio::time`, `rt::task` for
//! `tokio::task`, `rt::runtime` for `tokio::runtime`) so the rewrite is a
//! path substitution.

pub mod task;
pub mod time;

pub use task::{JoinError, JoinHandle, spawn, spawn_blocking, yield_now};
pub use time::{
    Instant, Interval, Sleep, Timeout, interval, interval_at, sleep, sleep_until, timeout,
    timeout_at,
};

/// Runtime handles, like `tokio::runtime`.
pub mod runtime {
    use std::fmt;
    use std::future::Future;

    use super::task::JoinHandle;
    use crate::boundary::injected;

    /// A handle to the runtime plugin code runs on: the host's, reached
    /// through the injected table. What `tokio::runtime::Handle` in a
    /// `#[horizon_plugin]` impl is rewritten to. It offers `spawn` and
    /// `spawn_blocking`; it cannot `block_on` (that would block a host
    /// worker thread) and cannot be `enter`ed.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use horizon_plugin_sdk::rt::runtime::Handle;
    /// let handle = Handle::current();
    /// let a = handle.spawn(async { 20 });
    /// let b = handle.spawn_blocking(|| 22);
    /// assert_eq!(a.await.unwrap() + b.await.unwrap(), 42);
    /// # }
    /// ```
    ///
    /// Outside a host and a runtime, `try_current` says so:
    /// ```
    /// assert!(horizon_plugin_sdk::rt::runtime::Handle::try_current().is_err());
    /// ```
    #[derive(Clone, Copy)]
    pub struct Handle {
        _private: (),
    }

    impl Handle {
        /// The handle of the current plugin.
        ///
        /// # Panics
        /// With neither a host attached nor a tokio runtime running.
        #[track_caller]
        pub fn current() -> Handle {
            match Handle::try_current() {
                Ok(h) => h,
                Err(e) => panic!("{e}"),
            }
        }

        /// The handle of the current plugin, or an error outside a host and a tokio runtime.
        pub fn try_current() -> Result<Handle, TryCurrentError> {
            if injected::host().is_some() || tokio::runtime::Handle::try_current().is_ok() {
                Ok(Handle { _private: () })
            } else {
                Err(TryCurrentError(()))
            }
        }

        /// Spawns a task, like [`super::spawn`].
        #[track_caller]
        pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
        where
            F: Future + Send + 'static,
            F::Output: Send + 'static,
        {
            super::spawn(future)
        }

        /// Runs a blocking job, like [`super::spawn_blocking`].
        #[track_caller]
        pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
        where
            F: FnOnce() -> R + Send + 'static,
            R: Send + 'static,
        {
            super::spawn_blocking(f)
        }
    }

    impl Handle {
        /// Refused at compile time: blocking on a future inside a plugin
        /// blocks a host worker thread (and needs tokio's thread-local
        /// runtime context, which a plugin does not share with its host).
        /// `.await` the future instead.
        pub fn block_on<F>(&self, future: F) -> F::Output
        where
            F: Future + BlockOnIsRefused,
        {
            drop(future);
            unreachable!("`BlockOnIsRefused` has no implementations")
        }

        /// Refused at compile time: plugin code already runs in the host's
        /// runtime context through the injected handle; there is nothing to enter.
        pub fn enter<'a>(&'a self)
        where
            &'a Self: EnterIsRefused,
        {
        }
    }

    /// Never implemented: makes [`Handle::block_on`] a compile error that names the fix.
    #[diagnostic::on_unimplemented(
        message = "`Handle::block_on` blocks a host worker thread inside a plugin; `.await` the future instead",
        label = "`.await` this future instead of blocking on it"
    )]
    pub trait BlockOnIsRefused: sealed::Sealed {}

    /// Never implemented: makes [`Handle::enter`] a compile error that names the fix.
    #[diagnostic::on_unimplemented(
        message = "`Handle::enter` is not needed in a plugin: `tokio::spawn` and `tokio::time` already run on the host's runtime",
        label = "remove the `enter` guard"
    )]
    pub trait EnterIsRefused: sealed::Sealed {}

    /// Seals the refusal traits: no crate outside the SDK can implement
    /// them and so turn a refused call into one that compiles.
    mod sealed {
        pub trait Sealed {}
    }

    impl fmt::Debug for Handle {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Handle { .. }")
        }
    }

    /// Returned by [`Handle::try_current`] with no host and no tokio runtime.
    #[derive(Debug)]
    pub struct TryCurrentError(());

    impl fmt::Display for TryCurrentError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "no Horizon host is attached and no tokio runtime is running: load the plugin \
                 with `horizon_plugin_host::PluginHost`, or run inside a tokio runtime",
            )
        }
    }

    impl std::error::Error for TryCurrentError {}
}
