//! [`PluginHost`]: loads plugins, dispatches events, unloads.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use horizon_plugin_sdk::{Event, Request, TypedEvent};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::bus::HostHandler;
use crate::error::{CallError, EmitError, LoadError, ReloadError, UnloadError};
use crate::info::{PluginId, PluginInfo};
use crate::loaded::{Env, LoadedPlugin};
use crate::report::EmitReport;
use crate::stats::PluginStats;
use crate::sync::lock;

/// State shared by every clone of a [`PluginHost`].
pub(crate) struct Inner {
    env: Env,
    plugins: Mutex<HashMap<PluginId, Arc<LoadedPlugin>>>,
    next_id: AtomicU64,
    /// Bumped (under `plugins`' lock) when a `shutdown` begins: a load that
    /// started before does not list its plugin, it unloads it again.
    shutdowns: AtomicU64,
}

/// Loads plugins and runs them on a tokio runtime.
///
/// Cheap to clone and share: every clone is the same host.
///
/// # Examples
/// ```no_run
/// use horizon_plugin_host::{Event, PluginHost};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let host = PluginHost::new(tokio::runtime::Handle::current());
/// host.on("echo:pong", |event: Event| println!("pong {}", event.json::<u64>().unwrap()));
/// let id = host.load("target/debug/libecho.so").await?;
/// let report = host.emit("ping", &21u64).await?;
/// assert!(report.is_ok());
/// host.unload(id).await?;
/// host.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.plugins())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Registers a host handler for events named `event`. It runs on the task
    /// that emits the event; a panic in it is caught and reported.
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_host::{Event, FailureKind, PluginHost};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::new(tokio::runtime::Handle::current());
    /// host.on("score", |event: Event| assert_eq!(event.json::<u32>().unwrap(), 7));
    /// host.on("boom", |_| panic!("host handler failed"));
    ///
    /// let report = host.emit("score", &7u32).await.unwrap();
    /// assert_eq!((report.delivered, report.is_ok()), (1, true));
    ///
    /// let report = host.emit("boom", &()).await.unwrap();
    /// assert!(matches!(&report.failures[0].kind, FailureKind::Panicked(m) if m.contains("failed")));
    /// # }
    /// ```
    pub fn on<F>(&self, event: &str, handler: F)
    where
        F: Fn(Event) + Send + Sync + 'static,
    {
        self.inner.env.bus.on(
            event,
            Arc::new(move |event| {
                handler(event);
                Ok(())
            }),
        );
    }

    /// Registers a host handler of the [`TypedEvent`] `T` (subscribed to
    /// `T::NAME`), given the payload decoded, whatever codec the emitter
    /// chose. A payload that does not decode is a
    /// [`FailureKind::Failed`](crate::FailureKind::Failed) in the emit's
    /// report naming the event, the type and the codec, and the handler is
    /// not called.
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_host::{PluginHost, TypedEvent};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
    /// #[event(name = "score", codec = postcard)]
    /// struct Score(u32);
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::new(tokio::runtime::Handle::current());
    /// host.on_event(|score: Score| assert_eq!(score.0, 7));
    /// let report = host.emit_event(&Score(7)).await.unwrap();
    /// assert_eq!(report.delivered, 1);
    /// // The same name with a payload of another type: a failure, not a panic.
    /// let report = host.emit("score", &"seven").await.unwrap();
    /// assert!(report.failures[0].to_string().contains("does not decode"));
    /// # }
    /// ```
    pub fn on_event<T, F>(&self, handler: F)
    where
        T: TypedEvent,
        F: Fn(T) + Send + Sync + 'static,
    {
        self.inner.env.bus.on(
            T::NAME,
            Arc::new(move |event: Event| {
                handler(event.decode::<T>()?);
                Ok(())
            }),
        );
    }

    /// Registers a host handler for every event, whatever its name (for
    /// example to print them all). Runs like [`PluginHost::on`] handlers.
    /// [`Event::source`] says which plugin sent an event.
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use horizon_plugin_host::{Event, PluginHost};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::new(tokio::runtime::Handle::current());
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// host.on_any(move |event: Event| log.lock().unwrap().push(event.name().to_owned()));
    /// host.emit("a", &1).await.unwrap();
    /// host.emit("b", &2).await.unwrap();
    /// assert_eq!(*seen.lock().unwrap(), ["a", "b"]);
    /// # }
    /// ```
    pub fn on_any<F>(&self, handler: F)
    where
        F: Fn(Event) + Send + Sync + 'static,
    {
        let handler: HostHandler = Arc::new(move |event| {
            handler(event);
            Ok(())
        });
        self.inner.env.bus.on_any(handler);
    }

    /// Loads the plugin library at `path`: checks its declaration, injects the
    /// host's service table, and runs its `on_load`.
    ///
    /// # Errors
    /// See [`LoadError`]; the host is unaffected by a failed load.
    ///
    /// A [`PluginHost::shutdown`] that begins while the plugin loads
    /// unloads it again ([`LoadError::ShutDown`]).
    ///
    /// # Cancellation
    /// The load runs as a task of its own: dropping this future does not
    /// stop it. The plugin then ends up loaded and listed in
    /// [`PluginHost::plugins`], or not loaded at all, never running
    /// unlisted.
    ///
    /// # Panics
    /// If the host's runtime shuts down during the load (as `unload` and
    /// `reload`).
    ///
    /// ```
    /// use horizon_plugin_host::{LoadError, PluginHost};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::new(tokio::runtime::Handle::current());
    /// let err = host.load("/no/such/libplugin.so").await.unwrap_err();
    /// assert!(matches!(err, LoadError::Open { .. }));
    /// assert!(err.to_string().contains("/no/such/libplugin.so"));
    /// # }
    /// ```
    pub async fn load(&self, path: impl AsRef<Path>) -> Result<PluginId, LoadError> {
        let (host, path) = (self.clone(), path.as_ref().to_owned());
        // The load begins here, at the first poll: a shutdown from now on
        // unloads its plugin.
        let shutdowns = self.inner.shutdowns.load(Ordering::SeqCst);
        // A task of its own: dropping the caller's future during `init` or
        // `on_load` must not leave a plugin running but unlisted.
        run_to_end(&self.inner.env.handle, async move {
            host.load_now(&path, shutdowns).await
        })
        .await
    }

    /// `shutdowns`: [`Inner::shutdowns`] when the load began.
    async fn load_now(&self, path: &Path, shutdowns: u64) -> Result<PluginId, LoadError> {
        let plugin = self.open(path, None).await?;
        let id = plugin.info.id;
        {
            let mut plugins = lock(&self.inner.plugins);
            if self.inner.shutdowns.load(Ordering::SeqCst) == shutdowns {
                // Activated and listed in one step (under the list's lock,
                // which nothing takes while holding a subscription lock):
                // whoever finds it listed (an unload, a reload, a
                // shutdown) finds its subscriptions in place, and no
                // activation can follow the unload that removes them.
                plugin.services.activate(None);
                plugins.insert(id, Arc::clone(&plugin));
                return Ok(id);
            }
        }
        // A shutdown began during the load and may be done already.
        let (path, name) = (plugin.info.path.clone(), plugin.info.name.clone());
        if let Err(e) = plugin.unload(&self.inner.env).await {
            tracing::warn!("{e}");
        }
        Err(LoadError::ShutDown { path, name })
    }

    /// Replaces a loaded plugin by a new build at `path`, without losing or
    /// duplicating an event: the new plugin is loaded beside the old one,
    /// then the old one's subscriptions are swapped for the new one's in one
    /// step (every event goes to exactly one of them), the old one's
    /// in-flight handlers finish (within the unload deadline), and the old
    /// one is unloaded. If the new build fails to load, the old one keeps
    /// serving.
    ///
    /// Load the new build from a fresh path, never over the old one's file.
    ///
    /// Reloads and unloads of one plugin are serialised: of two reloads of
    /// the same id racing, the first replaces it and the second finds it
    /// gone ([`ReloadError::NotLoaded`]); exactly one copy serves.
    ///
    /// # Errors
    /// If `id` is not loaded, the new build does not load (the old one is
    /// untouched), or unloading the old one reported a problem (the new one
    /// is serving).
    pub async fn reload(
        &self,
        id: PluginId,
        path: impl AsRef<Path>,
    ) -> Result<PluginId, ReloadError> {
        let (host, path) = (self.clone(), path.as_ref().to_owned());
        // A task of its own: dropping the caller's future mid-way must not
        // leave a plugin half swapped (see `run_to_end`).
        run_to_end(&self.inner.env.handle, async move {
            host.reload_now(id, &path).await
        })
        .await
    }

    async fn reload_now(&self, id: PluginId, path: &Path) -> Result<PluginId, ReloadError> {
        let old = lock(&self.inner.plugins)
            .get(&id)
            .cloned()
            .ok_or(ReloadError::NotLoaded(id))?;
        let mut retired = old.retired.lock().await;
        if *retired {
            return Err(ReloadError::NotLoaded(id));
        }
        let new = self.open(path, Some(id)).await.map_err(ReloadError::Load)?;
        let new_id = new.info.id;
        // The old copy's later subscriptions (from a task or handler still
        // running) are kept from the bus, so they cannot land beside the
        // new copy's; its current ones go in the swap below.
        old.services.hold_subscriptions();
        // Swapped in and listed in one step: a reload or unload of the new
        // id (which needs it listed) then finds it serving and the old
        // one's subscriptions gone. Listed first, a second reload could
        // replace the new copy before this activation, which would then
        // bring its subscriptions back beside its replacement's: every
        // event delivered twice while it unloads.
        {
            let mut plugins = lock(&self.inner.plugins);
            new.services.activate(Some(id));
            plugins.remove(&id);
            plugins.insert(new_id, Arc::clone(&new));
        }
        tracing::info!(plugin = %new.info.name, old = %id, new = %new_id, "plugin reloaded");
        old.services
            .wait_handlers_idle(self.inner.env.unload_timeout)
            .await;
        *retired = true;
        old.unload(&self.inner.env)
            .await
            .map_err(|source| ReloadError::Unload {
                new: new_id,
                source,
            })?;
        Ok(new_id)
    }

    /// Sends an event to every host handler and every plugin handler
    /// subscribed to `event`, and returns once all of them have finished.
    ///
    /// # Errors
    /// If `payload` does not serialize to JSON. Handler failures are in the
    /// report, not an error.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<EmitReport, EmitError> {
        let payload = serde_json::to_vec(payload).map_err(EmitError::Serialize)?;
        Ok(self.send(Event::from_json_bytes(event, payload)).await)
    }

    /// Sends the [`TypedEvent`] `payload`: named `T::NAME`, encoded with
    /// `T::CODEC`. Otherwise as [`PluginHost::emit`].
    ///
    /// # Errors
    /// If `payload` does not serialize.
    pub async fn emit_event<T: TypedEvent>(&self, payload: &T) -> Result<EmitReport, EmitError> {
        let event = Event::typed(payload).map_err(EmitError::Encode)?;
        Ok(self.send(event).await)
    }

    /// Sends a prepared event, in whatever codec it was made with
    /// ([`Event::encode`], [`Event::raw`]), to every handler of its name.
    /// Otherwise as [`PluginHost::emit`].
    pub async fn send(&self, event: Event) -> EmitReport {
        self.inner.env.bus.dispatch(event).await
    }

    /// Asks the plugin that answers the [`Request`] `R`
    /// (`PluginContext::answer`) and returns its answer, decoded. The
    /// handler runs as an event handler does (its first poll inline, then
    /// as a task of its plugin), within the handler timeout.
    ///
    /// # Errors
    /// [`CallError`]: no plugin answers `R::NAME`, the handler failed (a
    /// request that does not decode included), panicked or timed out, its
    /// plugin was unloaded during the call, or the answer does not decode.
    ///
    /// # Examples
    /// ```no_run
    /// use horizon_plugin_host::{CallError, PluginHost, TypedEvent};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
    /// #[event(name = "door:may-open", codec = postcard, answer = bool)]
    /// struct MayOpen {
    ///     player: u64,
    ///     door: u32,
    /// }
    ///
    /// # async fn run(host: PluginHost) -> Result<(), CallError> {
    /// if host.call(&MayOpen { player: 7, door: 3 }).await? {
    ///     println!("open");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Answer, CallError> {
        let request = Event::typed(request).map_err(CallError::Encode)?;
        let answer = self.call_untyped(request).await?;
        answer.decode().map_err(CallError::Decode)
    }

    /// Calls the handler answering `request`'s name with its payload, as it
    /// is encoded; the answer is an event of the same name.
    ///
    /// # Errors
    /// As [`PluginHost::call`], but for decoding the answer.
    pub async fn call_untyped(&self, request: Event) -> Result<Event, CallError> {
        self.inner.env.bus.call(request).await
    }

    /// Unloads a plugin: stops sending it events, runs its `on_unload` (with
    /// the unload deadline), aborts every task it spawned and waits until
    /// their futures are dropped, releases its handlers and instance, and
    /// closes the library. After it returns no code of the plugin runs.
    ///
    /// # Errors
    /// If no plugin has this id, if `on_unload` failed (the plugin is
    /// unloaded all the same), or if a blocking job of the plugin did not
    /// stop in time (the library is then kept mapped, never closed).
    ///
    /// Unloads and reloads of one plugin are serialised; a second unload of
    /// the same id (or an unload after a reload replaced it) is
    /// [`UnloadError::NotLoaded`] and does nothing.
    pub async fn unload(&self, id: PluginId) -> Result<(), UnloadError> {
        let host = self.clone();
        // A task of its own: dropping the caller's future mid-way must not
        // leave a plugin half torn down (see `run_to_end`).
        run_to_end(
            &self.inner.env.handle,
            async move { host.unload_now(id).await },
        )
        .await
    }

    async fn unload_now(&self, id: PluginId) -> Result<(), UnloadError> {
        let plugin = lock(&self.inner.plugins)
            .get(&id)
            .cloned()
            .ok_or(UnloadError::NotLoaded(id))?;
        let mut retired = plugin.retired.lock().await;
        if *retired {
            return Err(UnloadError::NotLoaded(id));
        }
        *retired = true;
        lock(&self.inner.plugins).remove(&id);
        plugin.unload(&self.inner.env).await
    }

    /// Unloads every plugin, until none is left (a reload racing it
    /// replaces a plugin by another, which is unloaded too; a load begun
    /// before it unloads its plugin again, see [`LoadError::ShutDown`]).
    /// Errors are logged. The host can load plugins again afterwards.
    pub async fn shutdown(&self) {
        {
            let _plugins = lock(&self.inner.plugins);
            self.inner.shutdowns.fetch_add(1, Ordering::SeqCst);
        }
        loop {
            let ids: Vec<PluginId> = lock(&self.inner.plugins).keys().copied().collect();
            if ids.is_empty() {
                return;
            }
            for id in ids {
                match self.unload(id).await {
                    Ok(()) | Err(UnloadError::NotLoaded(_)) => {}
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let mut list: Vec<PluginInfo> = lock(&self.inner.plugins)
            .values()
            .map(|p| PluginInfo {
                quarantined: p.services.is_quarantined(),
                ..p.info.clone()
            })
            .collect();
        list.sort_by_key(|p| p.id);
        list
    }

    /// What each loaded plugin has cost so far (see [`PluginStats`]),
    /// ordered by id. Reading them takes the plugin list's lock and one
    /// relaxed load per counter.
    ///
    /// # Examples
    /// ```
    /// use horizon_plugin_host::PluginHost;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::new(tokio::runtime::Handle::current());
    /// assert!(host.stats().is_empty()); // no plugin loaded
    /// # }
    /// ```
    pub fn stats(&self) -> Vec<PluginStats> {
        let mut list: Vec<PluginStats> = lock(&self.inner.plugins)
            .values()
            .map(|p| p.services.stats.snapshot(p.info.id, &p.info.name))
            .collect();
        list.sort_by_key(|s| s.id);
        list
    }

    /// What plugin `id` has cost so far; `None` if it is not loaded.
    pub fn plugin_stats(&self, id: PluginId) -> Option<PluginStats> {
        lock(&self.inner.plugins)
            .get(&id)
            .map(|p| p.services.stats.snapshot(id, &p.info.name))
    }
}

/// Runs `work` (an unload or a reload) as a task of the host's runtime and
/// awaits it, so that it finishes even if the caller's future is dropped:
/// teardown happens once and completely. A panic in it is resumed here.
async fn run_to_end<T: Send + 'static>(
    handle: &Handle,
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    match handle.spawn(work).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the host's runtime is shutting down: {e}"),
    }
}

impl PluginHost {
    /// Loads a plugin under a new id (see `LoadedPlugin::open`).
    /// Opens a new copy; `replaces`: the plugin a reload replaces.
    async fn open(
        &self,
        path: &Path,
        replaces: Option<PluginId>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let id = PluginId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        LoadedPlugin::open(&self.inner.env, path, id, replaces).await
    }
}

impl PluginHost {
    /// A host over `env`, with no plugin loaded (see `HostBuilder::build`).
    pub(crate) fn from_env(env: Env) -> PluginHost {
        PluginHost {
            inner: Arc::new(Inner {
                env,
                plugins: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                shutdowns: AtomicU64::new(0),
            }),
        }
    }
}
