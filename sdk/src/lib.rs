//! # horizon-plugin-sdk
//!
//! Write async plugins that a tokio host loads as dynamic libraries, with
//! ordinary tokio code.
//!
//! A `cdylib` links its own copy of tokio, whose "current runtime" is an
//! empty thread-local on every host thread, so `tokio::spawn` in plugin code
//! panics with "there is no reactor running". The
//! [`#[horizon_plugin]`](horizon_plugin) attribute rewrites those calls to
//! [`rt`], which routes them through a `#[repr(C)]` table of host services
//! ([`abi::HostApi`]) injected when the host loads the plugin.
//!
//! ```
//! use horizon_plugin_sdk::prelude::*;
//! use std::time::Duration;
//!
//! #[derive(Default)]
//! pub struct Echo;
//!
//! #[horizon_plugin]
//! impl Plugin for Echo {
//!     const NAME: &'static str = "echo";
//!
//!     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
//!         let out = ctx.clone();
//!         ctx.on("ping", move |event: Event| {
//!             let out = out.clone();
//!             async move {
//!                 let n: u64 = event.json()?;
//!                 tokio::time::sleep(Duration::from_millis(2)).await;
//!                 let doubled = tokio::spawn(async move { n * 2 }).await.map_err(PluginError::msg)?;
//!                 out.emit("echo:pong", &doubled).await
//!             }
//!         })?;
//!         Ok(())
//!     }
//! }
//! # fn main() {}
//! ```
#![warn(missing_docs)]

// The layers, bottom to top: `sync` and `abi` (the boundary types), `error`
// and `event`; then, with the `plugin` feature, `boundary` (this side's
// machinery), `rt` (the runtime facade the attribute routes to), `plugin`
// (`Plugin`, `PluginContext`) and `export` (what the attribute's expansion
// calls, re-exported as `__private`).
#[cfg(feature = "abi")]
pub mod abi;
#[cfg(feature = "plugin")]
mod boundary;
#[cfg(feature = "abi")]
mod error;
#[cfg(feature = "abi")]
mod event;
#[cfg(feature = "plugin")]
mod export;
#[cfg(feature = "plugin")]
mod plugin;
#[cfg(feature = "plugin")]
pub mod rt;
#[cfg(feature = "abi")]
mod sync;

/// What `#[horizon_plugin]`'s expansion names; not an API.
#[cfg(feature = "plugin")]
#[doc(hidden)]
pub mod __private {
    pub use crate::__horizon_thread_exit_hook as thread_exit_hook;
    pub use crate::export::*;
    /// What `thread_exit_hook!` jumps to.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub mod thread_exit {
        pub use crate::boundary::thread_exit::{
            key_create, key_delete, register, set_specific, unmapped,
        };
    }
}

#[cfg(feature = "abi")]
pub use error::{CallError, PluginError};
#[cfg(feature = "abi")]
pub use event::{Codec, Event, Request, TypedEvent, UnknownCodec};
/// Derives [`TypedEvent`]: `#[event(name = "..")]` names the event,
/// `codec = postcard` (or `json`, the default) picks its codec, and
/// `answer = Type` also makes it a [`Request`] answered with a `Type`.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, horizon_plugin_sdk::TypedEvent)]
/// #[event(name = "door:open?", codec = postcard)]
/// struct MayOpen {
///     player: u64,
///     door: u32,
/// }
/// # use horizon_plugin_sdk::TypedEvent as _;
/// assert_eq!(MayOpen::NAME, "door:open?");
/// ```
#[cfg(feature = "derive")]
pub use horizon_plugin_sdk_macros::TypedEvent;
/// Turns `impl Plugin for T` into a loadable plugin.
///
/// Put it on the one `impl Plugin for YourType` of a `cdylib` crate. It
///
/// 1. rewrites, in every method body (closures, nested `async` blocks and
///    macro arguments included), `tokio::spawn`, `tokio::task::{spawn,
///    spawn_blocking, yield_now}`, `tokio::time::{sleep, sleep_until,
///    interval, interval_at, timeout, timeout_at}` and
///    `tokio::runtime::Handle`, and the types that go with them
///    (`JoinHandle`, `JoinError`, `Sleep`, `Interval`, `Timeout`,
///    `error::Elapsed`), to their [`rt`] counterparts, which go through the
///    handle the host injects. Written `tokio::…`, `::tokio::…`, or brought
///    in by a `use tokio::…` inside the bodies;
/// 2. refuses, with a message that names the fix, code that can only work
///    through tokio's thread-local runtime context or that would block a
///    host worker: `Runtime::new`, `runtime::Builder`, `#[tokio::main]` and
///    `#[tokio::test]` on plugin methods, `tokio::task::block_in_place`,
///    `spawn_local`, `LocalSet`, `futures::executor::block_on`,
///    `.block_on(..)` on any receiver, `Handle::enter`, and a runtime handle stored in a
///    `thread_local!` or `static`;
/// 3. emits the exported declaration the host looks up.
///
/// It takes no arguments.
///
/// # Example
///
/// ```
/// use horizon_plugin_sdk::prelude::*;
/// use std::time::Duration;
///
/// #[derive(Default)]
/// pub struct Echo;
///
/// #[horizon_plugin]
/// impl Plugin for Echo {
///     const NAME: &'static str = "echo";
///
///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
///         let out = ctx.clone();
///         ctx.on("ping", move |event: Event| {
///             let out = out.clone();
///             async move {
///                 let n: u64 = event.json()?;
///                 tokio::time::sleep(Duration::from_millis(2)).await;
///                 let doubled = tokio::spawn(async move { n * 2 }).await?;
///                 out.emit("echo:pong", &doubled).await
///             }
///         })?;
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
///
/// # Equivalent code without the attribute
///
/// ```
/// use horizon_plugin_sdk::prelude::*;
/// use std::time::Duration;
///
/// #[derive(Default)]
/// pub struct Echo;
///
/// impl Plugin for Echo {
///     const NAME: &'static str = "echo";
///
///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
///         let out = ctx.clone();
///         ctx.on("ping", move |event: Event| {
///             let out = out.clone();
///             async move {
///                 let n: u64 = event.json()?;
///                 ::horizon_plugin_sdk::rt::time::sleep(Duration::from_millis(2)).await;
///                 let doubled = ::horizon_plugin_sdk::rt::spawn(async move { n * 2 }).await?;
///                 out.emit("echo:pong", &doubled).await
///             }
///         })?;
///         Ok(())
///     }
/// }
///
/// const _: () = {
///     // The host reads this symbol with `dlsym`; its layout is
///     // `horizon_plugin_sdk::abi::PluginDeclaration`.
///     #[unsafe(no_mangle)]
///     pub static HORIZON_PLUGIN_DECLARATION: ::horizon_plugin_sdk::__private::ExportedDeclaration =
///         ::horizon_plugin_sdk::__private::declare::<Echo>();
/// };
/// // Thread-exit destructors of the plugin's code go to the host, so that
/// // host threads do not keep the library mapped, nor call into it, after
/// // unload (README, "What a reload costs").
/// ::horizon_plugin_sdk::__private::thread_exit_hook!();
/// # fn main() {}
/// ```
///
/// The expansions of a few representative plugins are committed under
/// `sdk-macros/tests/expand/` and checked by a test.
///
/// # What it cannot see
///
/// Tokio calls in other modules or crates, in nested items, or through a
/// `use tokio::…` at module level are not rewritten. They still work inside
/// plugin tasks: the plugin runs a private runtime of its own tokio copy and
/// enters it around every poll, so such code finds a reactor and a timer
/// (`tokio::spawn` there runs on that private runtime's thread).
#[cfg(feature = "plugin")]
#[doc(inline)]
pub use horizon_plugin_sdk_macros::horizon_plugin;
#[cfg(feature = "plugin")]
pub use plugin::{Plugin, PluginContext};

/// Everything a plugin needs: `use horizon_plugin_sdk::prelude::*;`.
#[cfg(feature = "plugin")]
pub mod prelude {
    pub use crate::{
        CallError, Codec, Event, Plugin, PluginContext, PluginError, Request, TypedEvent,
        horizon_plugin,
    };
}
