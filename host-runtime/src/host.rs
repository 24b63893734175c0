//! [`PluginHost`]: loads plugins, dispatches events, unloads.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use horizon_plugin_sdk::Event;
use horizon_plugin_sdk::abi::guard::{catch, panic_message};
use horizon_plugin_sdk::abi::{
    HostApi, RStatus, RStr, RawFuture, SHUTDOWN_OK, SHUTDOWN_PANICKED, SHUTDOWN_STUCK,
};
use libloading::Library;
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::runtime::Handle;

use crate::declaration::read_declaration;
use crate::error::{EmitError, LoadError, ReloadError, UnloadError};
use crate::plugin_log::{LogSink, PluginLog};
use crate::report::{EmitReport, FailureKind, HandlerFailure, Tally, status_outcome};
use crate::services::{Services, lock};

/// Identifies a loaded plugin for as long as the host runs (ids are never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginId(pub(crate) u64);

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What [`PluginHost::plugins`] says about a loaded plugin.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    /// The plugin's id in this host.
    pub id: PluginId,
    /// `Plugin::NAME`.
    pub name: String,
    /// Version of `horizon-plugin-sdk` the plugin was built with.
    pub sdk_version: String,
    /// `rustc --version` of the compiler that built the plugin.
    pub rustc_version: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Whether the quarantine policy unsubscribed it.
    pub quarantined: bool,
}

type HostHandler = Arc<dyn Fn(Event) + Send + Sync>;

/// One subscription to an event name.
#[derive(Clone)]
pub(crate) enum Subscriber {
    Host(HostHandler),
    Plugin(Arc<PluginHandler>),
}

/// A plugin's handler as the host sees it: only `call` is used here; the
/// handler's `drop` belongs to the plugin's `Services` (see `drop_handlers`).
pub(crate) struct PluginHandler {
    services: Arc<Services>,
    data: *const c_void,
    call: unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>,
}

// SAFETY: `data` is a plugin `Box<dyn Fn + Send + Sync>`; `call` is a plain function.
unsafe impl Send for PluginHandler {}
// SAFETY: as above.
unsafe impl Sync for PluginHandler {}

impl Subscriber {
    pub(crate) fn plugin(
        services: Arc<Services>,
        data: *const c_void,
        call: unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>,
    ) -> Self {
        Subscriber::Plugin(Arc::new(PluginHandler {
            services,
            data,
            call,
        }))
    }

    fn plugin_id(&self) -> Option<PluginId> {
        match self {
            Subscriber::Host(_) => None,
            Subscriber::Plugin(h) => Some(h.services.id),
        }
    }
}

/// Every subscription, read by each dispatch under one read lock.
#[derive(Default)]
struct Subscriptions {
    /// Per event name, an immutable list replaced on every change, so a
    /// dispatch takes a snapshot by cloning one `Arc`.
    named: FxHashMap<String, Arc<[Subscriber]>>,
    /// Host handlers of every event (`on_any`), replaced the same way.
    any: Option<Arc<[HostHandler]>>,
}

/// Removes every subscription of plugin `id`.
fn remove_plugin(subs: &mut FxHashMap<String, Arc<[Subscriber]>>, id: PluginId) {
    for list in subs.values_mut() {
        if list.iter().any(|s| s.plugin_id() == Some(id)) {
            *list = list
                .iter()
                .filter(|s| s.plugin_id() != Some(id))
                .cloned()
                .collect();
        }
    }
    subs.retain(|_, list| !list.is_empty());
}

/// Calls a host handler, turning a panic into a failure in `report`.
fn call_host_handler(handler: &HostHandler, event: &Event, report: &mut Tally) {
    match catch(|| handler(event.clone())) {
        Ok(()) => report.delivered += 1,
        Err(message) => report.failures.push(HandlerFailure {
            plugin: None,
            subscriber: "host".to_owned(),
            event: event.name().to_owned(),
            kind: FailureKind::Panicked(message),
        }),
    }
}

/// How many handler polls may nest inline on one thread (see `start_handler`).
const MAX_INLINE_DEPTH: u32 = 16;

thread_local! {
    /// Handler polls nested inline on this thread right now.
    static INLINE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// A plugin call's outcome, host-owned (see [`status_outcome`]).
type Outcome = Result<(), FailureKind>;

/// How a plugin handler's run for one event went, or is going.
enum HandlerRun {
    /// The plugin is being unloaded; the handler did not run.
    Refused,
    /// It finished on its first poll.
    Done(Outcome),
    /// It runs as a task of its plugin (`None`: cancelled by unload).
    Task(tokio::task::JoinHandle<Option<Outcome>>),
}

/// State shared by every clone of a [`PluginHost`].
pub(crate) struct Inner {
    handle: Handle,
    plugins: Mutex<HashMap<PluginId, Arc<LoadedPlugin>>>,
    subscribers: RwLock<Subscriptions>,
    next_id: AtomicU64,
    /// Bumped (under `plugins`' lock) when a `shutdown` begins: a load that
    /// started before does not list its plugin, it unloads it again.
    shutdowns: AtomicU64,
    unload_timeout: Duration,
    quarantine_after: Option<u32>,
    strict_unload: bool,
    log_sink: Option<LogSink>,
}

/// A loaded library and what the host must keep alive for it.
struct LoadedPlugin {
    info: PluginInfo,
    /// Holds the plugin's service table too (see `Services`).
    services: Arc<Services>,
    decl: DeclFns,
    /// `None` once closed by `teardown` (or deliberately leaked).
    library: Mutex<Option<Library>>,
    /// Serialises unload and reload of this plugin; true once one of them
    /// has taken it down (the next finds it gone: teardown happens once).
    retired: tokio::sync::Mutex<bool>,
}

impl LoadedPlugin {
    /// Keeps the library mapped and the plugin's `Services` (and so its
    /// table) alive for good: code of the plugin may still run.
    fn leak(&self) {
        if let Some(library) = lock(&self.library).take() {
            std::mem::forget(library);
            std::mem::forget(Arc::clone(&self.services));
        }
    }
}

impl Drop for LoadedPlugin {
    /// A plugin dropped without `unload` (its host dropped without
    /// `shutdown`) may still have tasks on the runtime, which call into its
    /// code and into the host state: keep both alive for good rather than
    /// unmap code or free memory under them.
    fn drop(&mut self) {
        if lock(&self.library).is_some() {
            tracing::warn!(
                plugin = %self.info.name,
                "plugin host dropped without `shutdown`: the plugin stays loaded (leaked) because its tasks may still run"
            );
            self.leak();
        }
    }
}

/// The declaration's entry points, copied out after the header check.
#[derive(Clone, Copy)]
pub(crate) struct DeclFns {
    pub(crate) init: unsafe extern "C" fn(*const HostApi) -> RStatus,
    pub(crate) on_load: unsafe extern "C" fn() -> RawFuture<RStatus>,
    pub(crate) on_unload: unsafe extern "C" fn() -> RawFuture<RStatus>,
    pub(crate) shutdown: unsafe extern "C" fn(*const HostApi) -> u32,
}

/// Settings of a [`PluginHost`], from [`PluginHost::builder`].
#[must_use = "call `build` to get the host"]
pub struct HostBuilder {
    handle: Handle,
    unload_timeout: Duration,
    quarantine_after: Option<u32>,
    strict_unload: bool,
    log_sink: Option<LogSink>,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("unload_timeout", &self.unload_timeout)
            .field("quarantine_after", &self.quarantine_after)
            .field("strict_unload", &self.strict_unload)
            .field("log_sink", &self.log_sink.is_some())
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// Strict unload mode: every later entry into an unloaded plugin's code
    /// through the boundary (a poll, a drop, a waker, a free function, a
    /// handler call) aborts the process with a message naming the entry
    /// point, and unloaded libraries stay mapped so that the check can run.
    /// For tests: it turns "no plugin code runs after unload" into a crash
    /// when broken. Off by default; `HORIZON_STRICT_UNLOAD=1` in the
    /// environment turns it on. Off, it costs one relaxed load per entry.
    pub fn strict_unload(mut self, strict: bool) -> Self {
        self.strict_unload = strict;
        self
    }

    /// How long `on_unload`, and then the plugin's tasks, get to stop when a
    /// plugin is unloaded (default 5 s).
    pub fn unload_timeout(mut self, timeout: Duration) -> Self {
        self.unload_timeout = timeout;
        self
    }

    /// Quarantine a plugin whose handlers fail or panic this many times in a
    /// row: its subscriptions are removed (it stays loaded until unloaded),
    /// the host logs it, and [`EmitReport::quarantined`] names it.
    /// Off by default.
    pub fn quarantine_after(mut self, consecutive_failures: u32) -> Self {
        self.quarantine_after = Some(consecutive_failures.max(1));
        self
    }

    /// Also hands every log record of this host's plugins, of every level,
    /// to `sink` (besides the host's `tracing` subscriber, which filters
    /// them as usual). For tests and consoles that show a plugin's log
    /// ([`crate::testing`] uses it). `sink` runs on the plugin's thread,
    /// inside the plugin's log call: keep it short; a panic in it is caught.
    pub fn plugin_log_sink<F>(mut self, sink: F) -> Self
    where
        F: Fn(&PluginLog) + Send + Sync + 'static,
    {
        self.log_sink = Some(Arc::new(sink));
        self
    }

    /// The host.
    pub fn build(self) -> PluginHost {
        PluginHost {
            inner: Arc::new(Inner {
                handle: self.handle,
                plugins: Mutex::new(HashMap::new()),
                subscribers: RwLock::default(),
                next_id: AtomicU64::new(1),
                shutdowns: AtomicU64::new(0),
                unload_timeout: self.unload_timeout,
                quarantine_after: self.quarantine_after,
                strict_unload: self.strict_unload,
                log_sink: self.log_sink,
            }),
        }
    }
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
    /// A host whose plugins run on the runtime of `handle` (multi-thread or
    /// current-thread; it needs timers enabled), with the default settings
    /// of [`HostBuilder`].
    pub fn new(handle: Handle) -> Self {
        PluginHost::builder(handle).build()
    }

    /// Configures a host: unload deadline, quarantine policy.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use horizon_plugin_host::PluginHost;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::builder(tokio::runtime::Handle::current())
    ///     .unload_timeout(Duration::from_secs(2))
    ///     .quarantine_after(5)
    ///     .build();
    /// assert!(host.plugins().is_empty());
    /// # }
    /// ```
    pub fn builder(handle: Handle) -> HostBuilder {
        HostBuilder {
            handle,
            unload_timeout: Duration::from_secs(5),
            quarantine_after: None,
            strict_unload: std::env::var_os("HORIZON_STRICT_UNLOAD").is_some_and(|v| v == "1"),
            log_sink: None,
        }
    }

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
        self.inner
            .add_subscriber(event, Subscriber::Host(Arc::new(handler)));
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
        let mut subs = self.inner.subscribers_mut();
        let handler: HostHandler = Arc::new(handler);
        subs.any = Some(
            subs.any
                .iter()
                .flat_map(|any| any.iter().cloned())
                .chain(std::iter::once(handler))
                .collect(),
        );
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
        run_to_end(&self.inner.handle, async move {
            host.load_now(&path, shutdowns).await
        })
        .await
    }

    /// `shutdowns`: [`Inner::shutdowns`] when the load began.
    async fn load_now(&self, path: &Path, shutdowns: u64) -> Result<PluginId, LoadError> {
        let plugin = self.load_inactive(path).await?;
        let id = plugin.info.id;
        {
            let mut plugins = lock(&self.inner.plugins);
            if self.inner.shutdowns.load(Ordering::SeqCst) == shutdowns {
                plugins.insert(id, Arc::clone(&plugin));
                drop(plugins);
                // A shutdown from now on finds the plugin listed; if it
                // closes it first, `activate` finds nothing pending.
                plugin.services.activate(&self.inner, None);
                return Ok(id);
            }
        }
        // A shutdown began during the load and may be done already.
        let (path, name) = (plugin.info.path.clone(), plugin.info.name.clone());
        if let Err(e) = self.inner.unload_loaded(&plugin).await {
            tracing::warn!("{e}");
        }
        Err(LoadError::ShutDown { path, name })
    }

    /// Loads and runs `on_load`, keeping the plugin's subscriptions aside
    /// until [`Services::activate`].
    async fn load_inactive(&self, path: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
        let path = path.to_path_buf();
        // SAFETY: loading a library runs its initializers. That is the point
        // of a plugin host: the host trusts the file it is told to load as
        // far as running it, and checks its declaration before calling in.
        let library = unsafe { Library::new(&path) }.map_err(|source| LoadError::Open {
            path: path.clone(),
            source,
        })?;
        let (decl, info) = read_declaration(&library, &path)?;
        let id = PluginId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let info = PluginInfo { id, ..info };
        let services = Services::new(
            Arc::downgrade(&self.inner),
            self.inner.handle.clone(),
            id,
            info.name.clone(),
            self.inner.strict_unload,
            self.inner.log_sink.clone(),
        );
        let plugin = Arc::new(LoadedPlugin {
            info,
            services,
            decl,
            library: Mutex::new(Some(library)),
            retired: tokio::sync::Mutex::new(false),
        });

        let init = decl.init;
        let api = SendPtr(std::ptr::from_ref(plugin.services.api()));
        // The status is made host-owned while the plugin is loaded.
        let status = on_own_thread(&self.inner.handle, move || {
            // SAFETY: the header matched, so `init` has the declared
            // signature; the table lives in `plugin.services`, which
            // outlives any code of the plugin (`teardown` leaks it when code
            // may still run).
            status_outcome(unsafe { init(api.get()) })
        })
        .await
        .unwrap_or_else(|| {
            Err(FailureKind::Failed(
                "could not start a thread for `init`".to_owned(),
            ))
        });
        if let Err(kind) = status {
            // `Default` may have spawned tasks before failing: stop them
            // and call `shutdown` as after any other load.
            let _ = self.inner.teardown(&plugin).await;
            return Err(LoadError::Init {
                path: plugin.info.path.clone(),
                name: plugin.info.name.clone(),
                message: kind.message().to_owned(),
            });
        }

        let on_load = decl.on_load;
        // SAFETY: `init` succeeded; `on_load` runs as a task of the plugin.
        let status = run_lifecycle(&plugin.services, move || unsafe { on_load() }, None).await;
        if let Err(kind) = status {
            let (path, name) = (plugin.info.path.clone(), plugin.info.name.clone());
            let _ = self.inner.teardown(&plugin).await;
            return Err(match kind {
                FailureKind::Panicked(message) => LoadError::OnLoadPanicked {
                    path,
                    name,
                    message,
                },
                other => LoadError::OnLoad {
                    path,
                    name,
                    message: other.message().to_owned(),
                },
            });
        }
        tracing::info!(plugin = %plugin.info.name, id = %id, path = %plugin.info.path.display(), "plugin loaded");
        Ok(plugin)
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
        run_to_end(&self.inner.handle, async move {
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
        let new = self.load_inactive(path).await.map_err(ReloadError::Load)?;
        let new_id = new.info.id;
        {
            let mut plugins = lock(&self.inner.plugins);
            plugins.remove(&id);
            plugins.insert(new_id, Arc::clone(&new));
        }
        new.services.activate(&self.inner, Some(id));
        tracing::info!(plugin = %new.info.name, old = %id, new = %new_id, "plugin reloaded");
        old.services
            .wait_handlers_idle(self.inner.unload_timeout)
            .await;
        *retired = true;
        self.inner
            .unload_loaded(&old)
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
        Ok(self
            .inner
            .dispatch(Event::from_json_bytes(event, payload))
            .await)
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
        run_to_end(&self.inner.handle, async move { host.unload_now(id).await }).await
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
        self.inner.unload_loaded(&plugin).await
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

/// Runs a lifecycle future of the plugin as one of its tasks; its status
/// is turned into a host-owned value inside that task.
async fn run_lifecycle(
    services: &Arc<Services>,
    start: impl FnOnce() -> RawFuture<RStatus> + Send + 'static,
    deadline: Option<Duration>,
) -> Outcome {
    let Some(task) = services.spawn(async move { status_outcome(start().await) }) else {
        return Err(FailureKind::Cancelled(
            "the plugin is being unloaded".to_owned(),
        ));
    };
    let abort = task.abort_handle();
    let joined = match deadline {
        Some(d) => match tokio::time::timeout(d, task).await {
            Ok(joined) => joined,
            Err(_) => {
                abort.abort();
                return Err(FailureKind::Failed(format!("did not finish within {d:?}")));
            }
        },
        None => task.await,
    };
    match joined {
        Ok(Some(outcome)) => outcome,
        Err(e) if e.is_panic() => Err(FailureKind::Panicked(panic_message(&*e.into_panic()))),
        Ok(None) | Err(_) => Err(FailureKind::Cancelled("cancelled".to_owned())),
    }
}

impl Inner {
    /// `unload` of a plugin already removed from the list.
    async fn unload_loaded(&self, plugin: &LoadedPlugin) -> Result<(), UnloadError> {
        let id = plugin.info.id;
        // No new events while `on_unload` runs.
        self.remove_subscribers(id);
        let on_unload = plugin.decl.on_unload;
        // SAFETY: the plugin is initialized; `on_unload` runs as its task.
        let status = run_lifecycle(
            &plugin.services,
            move || unsafe { on_unload() },
            Some(self.unload_timeout),
        )
        .await;
        let teardown = self.teardown(plugin).await;
        tracing::info!(plugin = %plugin.info.name, id = %id, "plugin unloaded");
        teardown?;
        status.map_err(|kind| UnloadError::OnUnload {
            name: plugin.info.name.clone(),
            panicked: matches!(kind, FailureKind::Panicked(_)),
            message: kind.message().to_owned(),
        })
    }

    pub(crate) fn add_subscriber(&self, event: &str, subscriber: Subscriber) {
        self.swap_subscribers(None, vec![(event.to_owned(), subscriber)]);
    }

    /// Removes `old`'s subscriptions and adds `new` ones under one write lock.
    fn subscribers_mut(&self) -> std::sync::RwLockWriteGuard<'_, Subscriptions> {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn swap_subscribers(&self, old: Option<PluginId>, new: Vec<(String, Subscriber)>) {
        let mut subs = self.subscribers_mut();
        if let Some(old) = old {
            remove_plugin(&mut subs.named, old);
        }
        for (event, subscriber) in new {
            let list = subs.named.entry(event).or_default();
            *list = list
                .iter()
                .cloned()
                .chain(std::iter::once(subscriber))
                .collect();
        }
    }

    pub(crate) fn remove_subscribers(&self, id: PluginId) {
        remove_plugin(&mut self.subscribers_mut().named, id);
    }

    /// Delivers one event to every subscriber and waits for all of them.
    pub(crate) async fn dispatch(&self, event: Event) -> EmitReport {
        let (any, named) = {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            (subs.any.clone(), subs.named.get(event.name()).cloned())
        };
        let mut report = Tally::default();
        for handler in any.iter().flat_map(|any| any.iter()) {
            call_host_handler(handler, &event, &mut report);
        }
        // Handlers still running after their first poll, awaited once every
        // handler has started.
        let mut running = Vec::new();
        if let Some(list) = &named {
            // Every handler is started (and plugin handlers polled once)
            // before any is awaited.
            {
                for subscriber in list.iter() {
                    match subscriber {
                        Subscriber::Host(handler) => {
                            call_host_handler(handler, &event, &mut report);
                        }
                        Subscriber::Plugin(handler) => match self.start_handler(handler, &event) {
                            HandlerRun::Task(task) => running.push((handler, task)),
                            HandlerRun::Done(outcome) => {
                                self.record(handler, outcome, &event, &mut report);
                            }
                            HandlerRun::Refused => self.record(
                                handler,
                                Err(FailureKind::Cancelled(
                                    "the plugin is being unloaded".to_owned(),
                                )),
                                &event,
                                &mut report,
                            ),
                        },
                    }
                }
            }
        }
        for (handler, task) in running {
            let status = match task.await {
                Ok(Some(outcome)) => outcome,
                Err(e) if e.is_panic() => {
                    Err(FailureKind::Panicked(panic_message(&*e.into_panic())))
                }
                Ok(None) | Err(_) => {
                    Err(FailureKind::Cancelled("the plugin was unloaded".to_owned()))
                }
            };
            self.record(handler, status, &event, &mut report);
        }
        report.into_report(event.into_name())
    }

    /// Adds one plugin handler's outcome to `report`, and quarantines its
    /// plugin if that was one failure too many.
    fn record(&self, handler: &PluginHandler, outcome: Outcome, event: &Event, report: &mut Tally) {
        let services = &handler.services;
        let kind = match outcome {
            Ok(()) => None,
            // Unloading cancels the plugin's tasks, and a handler that was
            // running then sees its own work cancelled: the unload is the
            // cause (and must not count toward quarantine).
            Err(FailureKind::Failed(message)) if services.is_closed() => {
                Some(FailureKind::Cancelled(format!(
                    "the plugin was unloaded while the handler ran ({message})"
                )))
            }
            Err(kind) => Some(kind),
        };
        let counts = matches!(
            kind,
            Some(FailureKind::Failed(_) | FailureKind::Panicked(_))
        );
        if services.record_outcome(counts, self.quarantine_after) {
            self.remove_subscribers(services.id);
            tracing::warn!(
                plugin = %services.name,
                id = %services.id,
                "plugin quarantined: its handlers failed {} times in a row; it gets no more events",
                self.quarantine_after.unwrap_or_default()
            );
            report.quarantined.push(services.id);
        }
        match kind {
            None => report.delivered += 1,
            Some(kind) => report.failures.push(HandlerFailure {
                plugin: Some(services.id),
                subscriber: services.name.clone(),
                event: event.name().to_owned(),
                kind,
            }),
        }
    }

    /// Starts one plugin handler for `event`.
    ///
    /// From a task of the runtime, the handler is polled once right here:
    /// most handlers finish on their first poll, and then no task is needed
    /// (a task per handler costs more than the rest of the dispatch). That
    /// poll uses a host-owned no-op waker, never the emitter's: the emitter
    /// may be another plugin, whose waker must not end up stored in this
    /// plugin's structures beyond its own lifetime. A handler still pending
    /// after that poll moves into a task of its plugin, whose first poll
    /// registers the task's waker (a future registers the waker of its
    /// latest poll), so unload can abort it. From a plain thread, the
    /// handler runs as a task from the start, so plugin code only runs on
    /// runtime threads. Either way the call is registered with the plugin,
    /// so unload waits for it before releasing the handler.
    fn start_handler(&self, handler: &Arc<PluginHandler>, event: &Event) -> HandlerRun {
        let services = &handler.services;
        // A handler that emits polls the next handlers inline too; past a
        // bounded depth (a chain, or a cycle, of events) handlers run as
        // tasks instead, so a plugin cannot overflow the emitter's stack.
        let depth = INLINE_DEPTH.with(Cell::get);
        if tokio::task::try_id().is_none() || depth >= MAX_INLINE_DEPTH {
            let ev = event.clone();
            let h = Arc::clone(handler);
            let running = services.handler_started();
            let task = services.spawn(async move {
                let _running = running;
                // SAFETY: the handler is alive: its `drop` runs only after
                // every task of its plugin is gone, and this is one. `ev`
                // outlives the call (the plugin copies what it needs).
                let fut = unsafe {
                    (h.call)(h.data, RStr::new(ev.name()), RStr::from_bytes(ev.payload()))
                };
                status_outcome(fut.await)
            });
            return task.map_or(HandlerRun::Refused, HandlerRun::Task);
        }
        let Some(inline) = services.register_inline() else {
            return HandlerRun::Refused;
        };
        // SAFETY: `inline` registers this call with the plugin, so the
        // handler is not released (nor the library closed) until it is
        // dropped, after the future below is polled and moved or dropped.
        let mut fut = unsafe {
            (handler.call)(
                handler.data,
                RStr::new(event.name()),
                RStr::from_bytes(event.payload()),
            )
        };
        INLINE_DEPTH.with(|d| d.set(depth + 1));
        let first = Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()));
        INLINE_DEPTH.with(|d| d.set(depth));
        let run = match first {
            Poll::Ready(status) => {
                drop(fut);
                HandlerRun::Done(status_outcome(status))
            }
            Poll::Pending => {
                let running = services.handler_started();
                let task = services.spawn(async move {
                    let _running = running;
                    status_outcome(fut.await)
                });
                task.map_or(HandlerRun::Refused, HandlerRun::Task)
            }
        };
        drop(inline);
        run
    }

    /// Stops a plugin for good: no new tasks or events, every task aborted
    /// and dropped, handlers and instance released, library closed. On
    /// every path where plugin code may still run (a task or blocking job
    /// past the deadline, a private runtime that did not stop) the library
    /// stays mapped and the table alive instead. Called once per plugin
    /// (`retired`, or a load that failed before the plugin was listed).
    async fn teardown(&self, plugin: &LoadedPlugin) -> Result<(), UnloadError> {
        let services = &plugin.services;
        services.close(self);
        let left = services.abort_all(self.unload_timeout).await;
        if left > 0 {
            // A blocking job is still running plugin code: closing the
            // library would unmap code under it, and it may reach the table.
            tracing::error!(plugin = %plugin.info.name, left, "tasks did not stop; the library stays mapped");
            plugin.leak();
            return Err(UnloadError::TasksStillRunning {
                name: plugin.info.name.clone(),
                left,
            });
        }
        services.drop_handlers();
        let shutdown = plugin.decl.shutdown;
        let api = SendPtr(std::ptr::from_ref(services.api()));
        // `shutdown` joins the plugin's private runtime: run it where blocking is allowed.
        // SAFETY: no task of the plugin is left; `shutdown` is called once,
        // with the table `init` got, which `services` keeps alive.
        let code = on_own_thread(&self.handle, move || unsafe { shutdown(api.get()) }).await;
        match code {
            Some(SHUTDOWN_OK) => {}
            Some(SHUTDOWN_PANICKED) => {
                tracing::warn!(plugin = %plugin.info.name, "dropping the plugin instance panicked");
            }
            Some(SHUTDOWN_STUCK) | Some(_) | None => {
                tracing::error!(plugin = %plugin.info.name, "the plugin's private runtime did not stop; the library stays mapped");
                plugin.leak();
                return Err(UnloadError::PrivateRuntimeStuck {
                    name: plugin.info.name.clone(),
                });
            }
        }
        if self.strict_unload {
            // Strict mode checks every later entry into the plugin's code,
            // which needs that code mapped.
            plugin.leak();
        } else {
            drop(lock(&plugin.library).take());
        }
        Ok(())
    }
}

/// Runs a plugin entry point (`init`, `shutdown`) on a thread of its own,
/// and waits (on the blocking pool) until that thread has exited.
///
/// Both start or stop the plugin's private runtime, which makes the
/// plugin's copy of std and tokio register thread-local destructors on the
/// calling thread (std's spawn hooks, tokio's context and parker). glibc
/// keeps a library mapped while any thread holds destructors it registered
/// (until that thread exits), so doing this on a host worker would pin
/// every unloaded copy for the life of the worker. A thread of its own has
/// run those destructors once it is joined.
async fn on_own_thread<T: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let joined = handle.spawn_blocking(move || {
        std::thread::Builder::new()
            .name("horizon-plugin-entry".to_owned())
            .spawn(f)
            .ok()
            .and_then(|thread| thread.join().ok())
    });
    joined.await.ok().flatten()
}

/// The table pointer, sent to the thread that calls `init` or `shutdown`.
struct SendPtr(*const HostApi);

// SAFETY: `HostApi` is `Sync`; the pointer is only passed to `init` or `shutdown`.
unsafe impl Send for SendPtr {}

impl SendPtr {
    fn get(&self) -> *const HostApi {
        self.0
    }
}
