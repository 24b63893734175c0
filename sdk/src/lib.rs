//! # horizon-sdk
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
//! use horizon_sdk::prelude::*;
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

pub mod abi;
mod error;
mod event;
mod plugin;
pub mod rt;

#[doc(hidden)]
#[path = "export.rs"]
pub mod __private;

pub use error::PluginError;
pub use event::Event;
pub use horizon_sdk_macros::horizon_plugin;
pub use plugin::{Plugin, PluginContext};

/// Everything a plugin needs: `use horizon_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{Event, Plugin, PluginContext, PluginError, horizon_plugin};
}
