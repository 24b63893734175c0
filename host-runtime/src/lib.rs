//! # horizon-plugin-host
//!
//! Load plugins written with `horizon-plugin-sdk` from dynamic libraries and run
//! them on your tokio runtime.
//!
//! ```no_run
//! use horizon_plugin_host::{Event, LoadError, PluginHost};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let host = PluginHost::new(tokio::runtime::Handle::current());
//! host.on("echo:pong", |event: Event| println!("pong {}", event.json::<u64>().unwrap()));
//! let id = host.load("target/debug/libecho.so").await?;
//! let report = host.emit("ping", &21u64).await?; // once every handler finished
//! host.unload(id).await?; // on_unload, then its tasks aborted, handlers removed
//! host.shutdown().await; // unloads all
//! # Ok(()) }
//! ```
//!
//! A plugin receives a `#[repr(C)]` table of this host's services
//! ([`horizon_plugin_sdk::abi::HostApi`]), never a `tokio::runtime::Handle`: a
//! `Handle` handed to another copy of tokio is undefined behaviour, and a
//! plugin built with other tokio features than its host crashes on it. So a
//! plugin built with another tokio version, other tokio features or another
//! rustc loads and runs; only the boundary version
//! ([`horizon_plugin_sdk::abi::ABI_VERSION`]) and its layout fingerprint
//! ([`horizon_plugin_sdk::abi::LAYOUT_FINGERPRINT`]) have to match.
//!
//! ## What unloading promises
//!
//! After [`PluginHost::unload`] returns, no plugin code runs: its tasks were
//! aborted and their futures dropped, its handlers removed and released, its
//! instance and private runtime dropped, and then the library closed. Where
//! plugin code may still run (a blocking job past the deadline, a private
//! runtime that did not stop), the library stays mapped and the plugin's
//! service table alive instead, and `unload` returns an error saying so.
//! [`HostBuilder::strict_unload`] turns any later entry into an unloaded
//! plugin's code into an abort that names the entry point. Closing
//! does not always unmap: glibc keeps a library mapped while thread-local
//! destructors it registered are pending (plugin code that ran on a host
//! thread registers some), and other platforms may ignore `dlclose`. Load a
//! rebuilt plugin from a fresh path, never over the file of a loaded one.
#![warn(missing_docs)]

// The layers, bottom to top (each uses only those before it): sync; info;
// stats; trust; error, report; declaration; table (a plugin's services); bus; loaded;
// host, builder; testing.
mod builder;
mod bus;
mod declaration;
mod error;
mod host;
mod info;
mod loaded;
mod report;
mod stats;
mod sync;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod trust;

pub use builder::{DEFAULT_HANDLER_TIMEOUT, DEFAULT_SHARE_FROM, HostBuilder};
pub use declaration::{Declaration, ServiceNeed, TABLE_SIZES, TableSizes, inspect, inspect_with};
pub use error::{CallError, EmitError, LoadError, ReloadError, UnloadError};
pub use horizon_plugin_sdk::{Codec, Event, Request, TypedEvent};
pub use host::PluginHost;
pub use info::{PluginId, PluginInfo, PluginLog};
pub use report::{EmitReport, FailureKind, HandlerFailure};
pub use stats::{DEFAULT_SLOW_POLL, PluginStats, PollTiming};
pub use trust::{
    DigestParseError, Sha256, TrustDecision, TrustKey, TrustKeyError, TrustPolicy, TrustRefusal,
};
