//! The plugin's side of the boundary, internal to the SDK: what the host
//! injected and the private runtime (`injected`), the cells spawned tasks
//! live in (`cell`), the `extern "C"` functions of handlers (`handlers`),
//! the logging bridge (`log_bridge`), the panic reports (`panics`),
//! payloads the host lends (`lent`), and the thread-local destructors
//! handed to the host (`thread_exit`). Plugin authors use `rt` and
//! `PluginContext`, which sit on top of this.

pub(crate) mod cell;
pub(crate) mod handlers;
pub(crate) mod injected;
pub(crate) mod lent;
pub(crate) mod log_bridge;
pub(crate) mod panics;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) mod thread_exit;
/// Elsewhere the C library's behaviour stays: nothing to attach, no hook.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) mod thread_exit {
    pub(crate) fn attach(_: &crate::abi::HostApi) -> bool {
        false
    }
    pub(crate) fn detach(_: *const std::ffi::c_void) {}
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __horizon_thread_exit_hook {
        () => {};
    }
}
