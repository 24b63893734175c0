//! [`Plugin`], the trait a plugin implements, and [`PluginContext`], what it
//! is given to talk to the host.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;

use crate::abi::{FLAG_CALL_STATUS, RStatus, RStr, RawFuture, STATUS_OK};
use crate::boundary::handlers::{self, status_to_result};
use crate::boundary::injected;
use crate::{CallError, Event, PluginError, Request, TypedEvent, event};

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
        // SAFETY: `api` came from `injected::host()`; `subscribe` is its
        // function taking a `RawHandler`.
        status_to_result(unsafe { handlers::register(api, api.subscribe, event, handler) })
    }

    /// Registers a synchronous handler for events named `event`: it runs to
    /// the end where an async handler's first poll would run (inside the
    /// emitter's call when the emitter is in the host runtime's context,
    /// else in a task), with no future to allocate or poll: the cheapest
    /// way for a plugin to take an event (BENCHMARKS.md, "Synchronous
    /// handlers"). For handlers that update state and return; one that
    /// needs to await belongs in [`on`] (or spawns a task). It must not
    /// block: it holds the thread it runs on, a host worker, as long as it
    /// runs.
    ///
    /// [`on`]: PluginContext::on
    ///
    /// # Errors
    /// As [`PluginContext::on`].
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_sdk::prelude::*;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// static JOINED: AtomicU64 = AtomicU64::new(0);
    ///
    /// #[derive(Default)]
    /// pub struct Counter;
    ///
    /// #[horizon_plugin]
    /// impl Plugin for Counter {
    ///     const NAME: &'static str = "counter";
    ///
    ///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
    ///         ctx.on_sync("player:join", |_event: Event| {
    ///             JOINED.fetch_add(1, Ordering::Relaxed);
    ///             Ok(())
    ///         })
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn on_sync<F>(&self, event: &str, handler: F) -> Result<(), PluginError>
    where
        F: Fn(Event) -> Result<(), PluginError> + Send + Sync + 'static,
    {
        let api = injected::host().ok_or_else(|| no_host("on_sync"))?;
        let handler = move |name: &Arc<str>, wire: &[u8]| {
            handler(Event::from_call(injected::host(), Arc::clone(name), wire))
        };
        // SAFETY: `api` came from `injected::host()`; `subscribe` is its
        // function taking a `RawHandler`.
        status_to_result(unsafe { handlers::register_sync(api, api.subscribe, event, handler) })
    }

    /// Registers a synchronous handler of the [`TypedEvent`] `T`: as
    /// [`PluginContext::on_event`] (a payload that does not decode is
    /// rejected, naming the event, the type and the codec, and the handler
    /// is not called), run as [`PluginContext::on_sync`] runs. The payload
    /// is decoded from the host's buffer in place, never copied.
    ///
    /// # Errors
    /// As [`PluginContext::on`].
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_sdk::prelude::*;
    /// use std::sync::Mutex;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
    /// #[event(name = "player:moved", codec = postcard)]
    /// struct PlayerMoved {
    ///     player: u64,
    ///     x: f32,
    ///     y: f32,
    /// }
    ///
    /// static LAST: Mutex<(f32, f32)> = Mutex::new((0.0, 0.0));
    ///
    /// #[derive(Default)]
    /// pub struct Tracker;
    ///
    /// #[horizon_plugin]
    /// impl Plugin for Tracker {
    ///     const NAME: &'static str = "tracker";
    ///
    ///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
    ///         ctx.on_event_sync(|moved: PlayerMoved| {
    ///             *LAST.lock().unwrap() = (moved.x, moved.y);
    ///             Ok(())
    ///         })
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn on_event_sync<T, F>(&self, handler: F) -> Result<(), PluginError>
    where
        T: TypedEvent,
        F: Fn(T) -> Result<(), PluginError> + Send + Sync + 'static,
    {
        let api = injected::host().ok_or_else(|| no_host("on_event_sync"))?;
        let handler =
            move |name: &Arc<str>, wire: &[u8]| handler(event::decode_wire::<T>(name, wire)?);
        // SAFETY: `api` came from `injected::host()`; `subscribe` is its
        // function taking a `RawHandler`.
        status_to_result(unsafe { handlers::register_sync(api, api.subscribe, T::NAME, handler) })
    }

    /// Registers the handler that answers calls of the [`Request`] `R`
    /// (`PluginHost::call`, or another plugin's [`PluginContext::call`]):
    /// given the request decoded, it returns the answer, sent back in
    /// `R::CODEC`. A request that does not decode is the call's error,
    /// naming the event, the type and the codec. One handler per name in
    /// the whole host. Like event handlers, it is polled inline by the
    /// caller first and continues as a task of the plugin if pending.
    ///
    /// # Errors
    /// When another plugin answers `R::NAME` already, this plugin
    /// registered it already, no host is attached, or the host's boundary
    /// has no calls (older than 4.3).
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_sdk::prelude::*;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
    /// #[event(name = "shop:price", codec = postcard, answer = u64)]
    /// struct Price {
    ///     item: String,
    /// }
    ///
    /// #[derive(Default)]
    /// pub struct Shop;
    ///
    /// #[horizon_plugin]
    /// impl Plugin for Shop {
    ///     const NAME: &'static str = "shop";
    ///
    ///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
    ///         ctx.answer(|price: Price| async move {
    ///             match price.item.as_str() {
    ///                 "sword" => Ok(150),
    ///                 other => Err(PluginError::msg(format!("no such item: {other}"))),
    ///             }
    ///         })
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn answer<R, F, Fut>(&self, handler: F) -> Result<(), PluginError>
    where
        R: Request,
        F: Fn(R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R::Answer, PluginError>> + Send + 'static,
    {
        self.answer_untyped(R::NAME, move |request: Event| {
            let started = request.decode::<R>().map(&handler);
            async move { Event::encode(R::NAME, &started?.await?, R::CODEC) }
        })
    }

    /// Registers the handler that answers calls named `name`, untyped: it
    /// gets the request as an [`Event`] and answers with one (its payload
    /// and codec are the answer; its name is not used). Otherwise as
    /// [`PluginContext::answer`].
    ///
    /// # Errors
    /// As [`PluginContext::answer`].
    pub fn answer_untyped<F, Fut>(&self, name: &str, handler: F) -> Result<(), PluginError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Event, PluginError>> + Send + 'static,
    {
        let api = injected::host().ok_or_else(|| no_host("answer"))?;
        let register = api.answer.ok_or_else(|| no_calls("answer"))?;
        // SAFETY: `api` came from `injected::host()`; `answer` is its
        // function taking a `RawHandler`.
        status_to_result(unsafe { handlers::register(api, register, name, handler) })
    }

    /// Calls the handler answering the [`Request`] `R` (in this plugin or
    /// another, through the host) and returns its answer, decoded.
    ///
    /// # Errors
    /// A [`CallError`] saying why there is no answer: no plugin answers
    /// `R::NAME`, its handler failed, panicked, refused the request or
    /// timed out (the host's handler timeout), its plugin was unloaded
    /// during the call, the request does not encode or the answer does not
    /// decode, or no host with calls is attached. `?` turns it into a
    /// [`PluginError`].
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Answer, CallError> {
        let request = Event::typed(request).map_err(CallError::Encode)?;
        let answer = self.call_untyped(request).await?;
        answer.decode().map_err(CallError::Decode)
    }

    /// Calls the handler answering `request`'s name with its payload, as it
    /// is encoded, and returns the answer as an event of the same name.
    ///
    /// # Errors
    /// As [`PluginContext::call`] (never `Encode` or `Decode`).
    pub async fn call_untyped(&self, request: Event) -> Result<Event, CallError> {
        let unavailable = |e: PluginError| CallError::Unavailable(e.to_string());
        let api = injected::host().ok_or_else(|| unavailable(no_host("call")))?;
        let call = api.call.ok_or_else(|| unavailable(no_calls("call")))?;
        // SAFETY: `api` is the live host table; `call` copies the borrowed
        // strings before it returns and never unwinds.
        let fut = unsafe {
            call(
                api.data,
                RStr::new(request.name()),
                RStr::from_bytes(request.wire_bytes()),
            )
        };
        let name = request.into_name();
        let status = fut.await;
        if status.code == STATUS_OK {
            Ok(Event::from_shared(name, status.message.as_bytes()))
        } else {
            let classified = api.flags & FLAG_CALL_STATUS != 0;
            Err(CallError::from_status(status, classified))
        }
    }

    /// Registers a handler of the [`TypedEvent`] `T`: subscribed to
    /// `T::NAME`, given the payload decoded in the codec the emitter chose
    /// (`T::CODEC` is what `emit_event` sends; any codec decodes). A
    /// payload that does not decode is rejected (the host reports
    /// `FailureKind::Rejected` naming the event, the type and the codec) and
    /// the handler is not called. Typed and untyped handlers of one event
    /// all receive it.
    ///
    /// # Errors
    /// As [`PluginContext::on`].
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_sdk::prelude::*;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
    /// #[event(name = "player:moved", codec = postcard)]
    /// struct PlayerMoved {
    ///     player: u64,
    ///     x: f32,
    ///     y: f32,
    /// }
    ///
    /// #[derive(Default)]
    /// pub struct Radar;
    ///
    /// #[horizon_plugin]
    /// impl Plugin for Radar {
    ///     const NAME: &'static str = "radar";
    ///
    ///     async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
    ///         ctx.on_event(|moved: PlayerMoved| async move {
    ///             if moved.x.abs() > 1000.0 {
    ///                 return Err(PluginError::msg(format!("player {} left the map", moved.player)));
    ///             }
    ///             Ok(())
    ///         })
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn on_event<T, F, Fut>(&self, handler: F) -> Result<(), PluginError>
    where
        T: TypedEvent,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), PluginError>> + Send + 'static,
    {
        self.on(T::NAME, move |event: Event| {
            let started = event.decode::<T>().map(&handler);
            async move { started?.await }
        })
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
        let bytes = serde_json::to_vec(payload)?;
        self.emit_wire(event, bytes).await
    }

    /// Sends the [`TypedEvent`] `payload`: named `T::NAME`, encoded with
    /// `T::CODEC`. Otherwise as [`PluginContext::emit`].
    ///
    /// # Errors
    /// As [`PluginContext::emit`].
    pub async fn emit_event<T: TypedEvent>(&self, payload: &T) -> Result<(), PluginError> {
        self.send(Event::typed(payload)?).await
    }

    /// Sends a prepared event, in whatever codec it was made with
    /// ([`Event::encode`], [`Event::raw`]). Otherwise as [`PluginContext::emit`].
    ///
    /// # Errors
    /// As [`PluginContext::emit`].
    pub async fn send(&self, event: Event) -> Result<(), PluginError> {
        let fut = self.start_emit(event.name(), event.wire_bytes());
        drop(event);
        status_to_result(fut?.await)
    }

    async fn emit_wire(&self, event: &str, wire: Vec<u8>) -> Result<(), PluginError> {
        let fut = self.start_emit(event, &wire);
        drop(wire);
        status_to_result(fut?.await)
    }

    /// Hands one event to the host, which copies it before returning.
    fn start_emit(&self, event: &str, wire: &[u8]) -> Result<RawFuture<RStatus>, PluginError> {
        let api = injected::host().ok_or_else(|| no_host("emit"))?;
        // SAFETY: `api` is the live host table; `emit` copies the borrowed
        // strings before it returns and never unwinds.
        Ok(unsafe { (api.emit)(api.data, RStr::new(event), RStr::from_bytes(wire)) })
    }
}

fn no_calls(what: &str) -> PluginError {
    PluginError::msg(format!(
        "`PluginContext::{what}` needs a host of boundary 4.3 or later: this host has no calls"
    ))
}

fn no_host(what: &str) -> PluginError {
    PluginError::msg(format!(
        "`PluginContext::{what}` needs a Horizon host: this plugin was not loaded by \
         `horizon_plugin_host::PluginHost`"
    ))
}
