//! [`Plugin`], the trait a plugin implements, and [`PluginContext`], what it
//! is given to talk to the host.

use std::future::Future;

use serde::Serialize;

use crate::abi::RStr;
use crate::boundary::handlers::{self, status_to_result};
use crate::boundary::injected;
use crate::{Event, PluginError};

/// A plugin: implement it on a `Default` type and annotate the impl with
/// [`#[horizon_plugin]`](crate::horizon_plugin).
///
/// The lifecycle methods may be written as `async fn`.
///
/// # Examples
/// ```
/// use horizon_plugin_sdk::prelude::*;
///
/// #[derive(Default)]
/// pub struct Hello;
///
/// #[horizon_plugin]
/// impl Plugin for Hello {
///     const NAME: &'static str = "hello";
///
///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
///         ctx.on("greet", |event: Event| async move {
///             let who: String = event.json()?;
///             tokio::time::sleep(std::time::Duration::from_millis(1)).await;
///             println!("hello, {who}");
///             Ok(())
///         })?;
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
pub trait Plugin: Default + Send + 'static {
    /// The plugin's name, shown by the host.
    const NAME: &'static str;

    /// Whether the plugin runs a private runtime of its own tokio copy and
    /// enters it around every poll of its code (the default), so that
    /// tokio calls the attribute cannot see (helper modules, third-party
    /// crates such as an HTTP client) find a reactor and a timer.
    ///
    /// Set it to `false` when every tokio call of the plugin is one the
    /// attribute routes to the host (spawn, timers, blocking jobs): no
    /// thread is started and nothing is entered. That matters to hosts that
    /// reload often: entering makes this copy of tokio register a
    /// thread-local destructor on each host thread that polls the plugin,
    /// and glibc keeps an unloaded library mapped until the threads holding
    /// its destructors exit (tokio's context, and with the host's
    /// cooperative budget on, its thread parker). (Awaiting the plugin's own
    /// tokio types on host threads, a `tokio::sync` channel or `select!`,
    /// registers one too, private runtime or not; see the README's "What a
    /// reload costs".) Without a private runtime the plugin's own tokio
    /// resources get no cooperative budget
    /// (`HostBuilder::cooperative_budget`).
    const PRIVATE_RUNTIME: bool = true;

    /// Called once after the host loaded the plugin: register handlers, start tasks.
    fn on_load(
        &mut self,
        ctx: PluginContext,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// Called once before the host unloads the plugin. The default does nothing.
    fn on_unload(
        &mut self,
        ctx: PluginContext,
    ) -> impl Future<Output = Result<(), PluginError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// What a plugin uses to talk to its host: subscribe to events, emit events.
///
/// `Clone + Send + Sync`; clones are cheap.
#[derive(Clone, Debug)]
pub struct PluginContext {
    name: &'static str,
}

impl PluginContext {
    pub(crate) fn new(name: &'static str) -> Self {
        PluginContext { name }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Registers an async handler for events named `event`. The host runs it
    /// on its runtime for every such event; a handler still pending after
    /// its first poll continues as a task of the plugin.
    ///
    /// # Errors
    /// When no host is attached or the host refuses the subscription.
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_sdk::prelude::*;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Join {
    ///     player: String,
    /// }
    ///
    /// #[derive(Default)]
    /// pub struct Lobby;
    ///
    /// #[horizon_plugin]
    /// impl Plugin for Lobby {
    ///     const NAME: &'static str = "lobby";
    ///
    ///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
    ///         let out = ctx.clone();
    ///         ctx.on("player:join", move |event: Event| {
    ///             let out = out.clone();
    ///             async move {
    ///                 let join: Join = event.json()?;
    ///                 out.emit("lobby:welcome", &format!("welcome, {}", join.player)).await
    ///             }
    ///         })
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn on<F, Fut>(&self, event: &str, handler: F) -> Result<(), PluginError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), PluginError>> + Send + 'static,
    {
        let api = injected::host().ok_or_else(|| no_host("on"))?;
        // SAFETY: `api` came from `injected::host()`.
        status_to_result(unsafe { handlers::subscribe(api, event, handler) })
    }

    /// Sends an event with a JSON payload to the host and every plugin
    /// subscribed to it; completes once every handler has finished.
    ///
    /// # Errors
    /// When the payload does not serialize, no host is attached, or the host
    /// refuses the event. Failures of other plugins' handlers are reported
    /// to the host, not to the sender.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<(), PluginError> {
        let api = injected::host().ok_or_else(|| no_host("emit"))?;
        let bytes = serde_json::to_vec(payload)?;
        // SAFETY: `api` is the live host table; `emit` copies the borrowed
        // strings before it returns and never unwinds.
        let fut = unsafe { (api.emit)(api.data, RStr::new(event), RStr::from_bytes(&bytes)) };
        drop(bytes);
        status_to_result(fut.await)
    }
}

fn no_host(what: &str) -> PluginError {
    PluginError::msg(format!(
        "`PluginContext::{what}` needs a Horizon host: this plugin was not loaded by \
         `horizon_plugin_host::PluginHost`"
    ))
}
