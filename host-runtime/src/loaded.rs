//! A loaded plugin: opening its library, `init` and `on_load`; `on_unload`
//! and the teardown that follows; and what is kept (leaked) when plugin
//! code may still run.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use horizon_plugin_sdk::abi::guard::panic_message;
use horizon_plugin_sdk::abi::{
    HostApi, RStatus, RawFuture, SHUTDOWN_OK, SHUTDOWN_PANICKED, SHUTDOWN_STUCK,
};
use libloading::Library;
use tokio::runtime::Handle;

use crate::bus::Bus;
use crate::declaration::{DeclFns, admit, open_admitted, read_declaration};
use crate::error::{LoadError, UnloadError};
use crate::info::LogSink;
use crate::info::{PluginId, PluginInfo};
use crate::report::{FailureKind, Outcome, status_outcome};
use crate::stats::{PollTimer, Site};
use crate::sync::lock;
use crate::table::{EventBus, Services, new_services};
use crate::trust::{TrustDecision, TrustPolicy};

/// What loading and unloading a plugin needs from its host.
pub(crate) struct Env {
    pub(crate) handle: Handle,
    pub(crate) bus: Arc<Bus>,
    pub(crate) unload_timeout: Duration,
    pub(crate) strict_unload: bool,
    pub(crate) log_sink: Option<LogSink>,
    pub(crate) trust: TrustPolicy,
    pub(crate) poll_timer: PollTimer,
    /// See [`crate::HostBuilder::cooperative_budget`].
    pub(crate) cooperative: bool,
    /// See [`crate::HostBuilder::share_payloads_from`].
    pub(crate) share_from: Option<usize>,
}

impl Env {
    /// The `HostApi::flags` of this host's plugins.
    fn flags(&self) -> u32 {
        use horizon_plugin_sdk::abi::{
            FLAG_CALL_STATUS, FLAG_COOPERATIVE, FLAG_DEFERRED_RELEASE, FLAG_STRICT_UNLOAD,
        };
        let flag = |on: bool, flag: u32| if on { flag } else { 0 };
        // `teardown` always calls `release` after closing the exit gate;
        // `host_call` always says the kind of a failed call.
        flag(self.strict_unload, FLAG_STRICT_UNLOAD)
            | flag(self.cooperative, FLAG_COOPERATIVE)
            | FLAG_DEFERRED_RELEASE
            | FLAG_CALL_STATUS
    }
}

/// A loaded library and what the host must keep alive for it.
pub(crate) struct LoadedPlugin {
    pub(crate) info: PluginInfo,
    /// Holds the plugin's service table too (see `Services`).
    pub(crate) services: Arc<Services>,
    decl: DeclFns,
    /// `None` once closed by `teardown` (or deliberately leaked).
    library: Mutex<Option<Library>>,
    /// Serialises unload and reload of this plugin; true once one of them
    /// has taken it down (the next finds it gone: teardown happens once).
    pub(crate) retired: tokio::sync::Mutex<bool>,
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

impl LoadedPlugin {
    /// Opens the library at `path`, checks its declaration, runs `init` and
    /// `on_load`, keeping the plugin's subscriptions aside until
    /// [`Services::activate`]. On failure, whatever started is torn down.
    pub(crate) async fn open(
        env: &Env,
        path: &Path,
        id: PluginId,
        replaces: Option<PluginId>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let path = path.to_path_buf();
        let admitted = admit(&env.trust, &path)?;
        if admitted.decision == TrustDecision::Unchecked {
            tracing::warn!(
                path = %path.display(),
                "loading a plugin without a trust check (any file is accepted: set `HostBuilder::trust` for production)"
            );
        } else {
            tracing::info!(path = %path.display(), "loading a plugin: {}", admitted.decision);
        }
        let library = open_admitted(admitted, &path)?;
        let (decl, declared) = read_declaration(&library, &path)?;
        let info = PluginInfo {
            id,
            name: declared.name,
            sdk_version: declared.sdk_version,
            rustc_version: declared.rustc_version,
            path: path.clone(),
            quarantined: false,
        };
        let bus: Weak<dyn EventBus> = Arc::downgrade(&env.bus) as Weak<Bus>;
        let services = new_services(
            bus,
            env.handle.clone(),
            (id, info.name.clone(), replaces),
            (env.flags(), env.share_from.unwrap_or(0)),
            env.log_sink.clone(),
            env.poll_timer,
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
        let status = on_own_thread(&env.handle, move || {
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
            let _ = plugin.teardown(env).await;
            return Err(LoadError::Init {
                path: plugin.info.path.clone(),
                name: plugin.info.name.clone(),
                message: kind.message().to_owned(),
            });
        }

        let on_load = decl.on_load;
        // SAFETY: `init` succeeded; `on_load` runs as a task of the plugin.
        let status = run_lifecycle(
            &plugin.services,
            "on_load",
            move || unsafe { on_load() },
            None,
        )
        .await;
        if let Err(kind) = status {
            let (path, name) = (plugin.info.path.clone(), plugin.info.name.clone());
            let _ = plugin.teardown(env).await;
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

    /// `unload` of a plugin already removed from the list.
    pub(crate) async fn unload(&self, env: &Env) -> Result<(), UnloadError> {
        let plugin = self;
        let id = plugin.info.id;
        // No new events while `on_unload` runs, nor subscriptions it makes.
        plugin.services.stop_events();
        let on_unload = plugin.decl.on_unload;
        // SAFETY: the plugin is initialized; `on_unload` runs as its task.
        let status = run_lifecycle(
            &plugin.services,
            "on_unload",
            move || unsafe { on_unload() },
            Some(env.unload_timeout),
        )
        .await;
        let teardown = plugin.teardown(env).await;
        tracing::info!(plugin = %plugin.info.name, id = %id, "plugin unloaded");
        teardown?;
        status.map_err(|kind| UnloadError::OnUnload {
            name: plugin.info.name.clone(),
            panicked: matches!(kind, FailureKind::Panicked(_)),
            message: kind.message().to_owned(),
        })
    }

    /// Stops a plugin for good: no new tasks or events, every task aborted
    /// and dropped, handlers and instance released, library closed. On
    /// every path where plugin code may still run (a task or blocking job
    /// past the deadline, a private runtime that did not stop) the library
    /// stays mapped and the table alive instead. Called once per plugin
    /// (`retired`, or a load that failed before the plugin was listed).
    pub(crate) async fn teardown(&self, env: &Env) -> Result<(), UnloadError> {
        let plugin = self;
        let services = &plugin.services;
        services.close();
        let left = services.abort_all(env.unload_timeout).await;
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
        let code = on_own_thread(&env.handle, move || unsafe { shutdown(api.get()) }).await;
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
        // No code of the plugin runs any more: from here on its
        // thread-local destructors on host threads are forgotten, so no
        // thread's exit calls into the library once it is closed, and none
        // keeps it mapped.
        // `close` waits for destructors running on exiting threads: off
        // the runtime's workers.
        let gate = std::sync::Arc::clone(&services.exit_gate);
        if env
            .handle
            .spawn_blocking(move || gate.close())
            .await
            .is_err()
        {
            // The blocking pool is gone (the runtime shuts down): close here.
            services.exit_gate.close();
        }
        if let Some(release) = plugin.decl.release {
            // SAFETY: `shutdown` returned (not stuck) with this table, which
            // `services` keeps alive; no task, handler or thread-exit
            // destructor of the plugin can run any more (the gate is
            // closed), so nothing reads the state it frees; called once
            // (`teardown` runs once per plugin). It catches its panics.
            unsafe { release(services.api()) };
        }
        if env.strict_unload {
            // Strict mode checks every later entry into the plugin's code,
            // which needs that code mapped.
            plugin.leak();
        } else {
            drop(lock(&plugin.library).take());
        }
        Ok(())
    }
}

/// Runs a lifecycle future of the plugin as one of its tasks; its status
/// is turned into a host-owned value inside that task.
async fn run_lifecycle(
    services: &Arc<Services>,
    which: &'static str,
    start: impl FnOnce() -> RawFuture<RStatus> + Send + 'static,
    deadline: Option<Duration>,
) -> Outcome {
    let Some(task) = services.spawn(Site::Lifecycle(which), async move {
        status_outcome(start().await)
    }) else {
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

/// Runs a plugin entry point (`init`, `shutdown`) on a thread of its own,
/// and waits (on the blocking pool) until that thread has exited.
///
/// Both start or stop the plugin's private runtime, which makes the
/// plugin's copy of std and tokio register thread-exit destructors on the
/// calling thread (std's spawn hooks, tokio's context and parker). Those
/// go to the host (`table::thread_exit`) or, before the plugin attached
/// or after it detached, to glibc, which keeps a library mapped while any
/// are pending; a thread of its own has run them all once it is joined,
/// with the plugin still loaded.
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
