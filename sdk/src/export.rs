//! What `#[horizon_plugin]` expands to calls into; not public API.
//!
//! The attribute emits one `static` of type [`ExportedDeclaration`] under the
//! symbol [`crate::abi::DECLARATION_SYMBOL`], built by [`declare`]. The entry
//! points are generic over the plugin type and keep its instance in one
//! plugin-local static (a plugin library holds exactly one plugin).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

pub use crate::abi::ExportedDeclaration;
use crate::abi::guard::{self, catch, entered};
use crate::abi::{
    ABI_VERSION, DECLARATION_LAYOUT, FLAG_STRICT_UNLOAD, HOST_API_BASE, HOST_API_LAYOUT, HostApi,
    LAYOUT_FINGERPRINT, MAGIC, PluginDeclaration, RStatus, RStr, RUSTC_VERSION, RawFuture,
    SDK_VERSION, SERVICES_USED, SHUTDOWN_OK, SHUTDOWN_PANICKED, SHUTDOWN_STUCK,
};
use crate::boundary::handlers::result_to_status;
use crate::boundary::injected::{self, Guarded, Injected};
use crate::boundary::panics::{self, Site};
use crate::boundary::thread_exit;
use crate::{Plugin, PluginContext, PluginError};

/// What `#[horizon_plugin]` replaces a refused `x.block_on(fut)` call with,
/// after reporting the error: the call's type, so no other error follows.
/// Never runs (the crate does not compile).
pub fn refused_block_on<R: ?Sized, F: Future>(_receiver: &R, _future: F) -> F::Output {
    unreachable!("`block_on` is refused by `#[horizon_plugin]`")
}

/// Re-exported so that generated code needs no dependency of the plugin crate.
pub use tokio;

type LifecycleFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PluginError>> + Send + 'a>>;

/// `Plugin` with its lifecycle futures boxed, so one static can hold any plugin.
trait ErasedPlugin: Send {
    fn on_load(&mut self, ctx: PluginContext) -> LifecycleFuture<'_>;
    fn on_unload(&mut self, ctx: PluginContext) -> LifecycleFuture<'_>;
}

impl<T: Plugin> ErasedPlugin for T {
    fn on_load(&mut self, ctx: PluginContext) -> LifecycleFuture<'_> {
        Box::pin(Plugin::on_load(self, ctx))
    }
    fn on_unload(&mut self, ctx: PluginContext) -> LifecycleFuture<'_> {
        Box::pin(Plugin::on_unload(self, ctx))
    }
}

/// The instance and its name. The instance is taken out while a lifecycle
/// call runs (the host makes one at a time) and put back when it ends; a
/// lifecycle call dropped before its end drops the instance with it.
/// A std mutex, held only to take or put: a tokio lock would touch this
/// plugin's tokio thread-locals on host threads, which registers a
/// thread-local destructor there and so keeps the library mapped after
/// unload until the host thread exits (glibc).
type Instance = (Option<Box<dyn ErasedPlugin>>, &'static str);

/// The plugin instance, created by `init` and dropped by `shutdown`.
static INSTANCE: Mutex<Option<Instance>> = Mutex::new(None);

/// The declaration of plugin `T`.
pub const fn declare<T: Plugin>() -> ExportedDeclaration {
    ExportedDeclaration(PluginDeclaration {
        magic: MAGIC,
        abi_version: ABI_VERSION,
        size: size_of::<PluginDeclaration>() as u32,
        layout: LAYOUT_FINGERPRINT,
        sdk_version: RStr::new(SDK_VERSION),
        rustc_version: RStr::new(RUSTC_VERSION),
        name: RStr::new(T::NAME),
        init: init::<T>,
        on_load,
        on_unload,
        shutdown,
        host_api: HOST_API_LAYOUT,
        declaration: DECLARATION_LAYOUT,
        services: SERVICES_USED.as_ptr(),
        services_len: SERVICES_USED.len() as u32,
        release: Some(release),
    })
}

unsafe extern "C" fn init<T: Plugin>(api: *const HostApi) -> RStatus {
    // The one entry allowed after `shutdown`: the host may load the same
    // mapping again. The strict flag is cleared once this load owns the
    // mapping's statics (`install` below).
    let outcome = catch(|| {
        if api.is_null() {
            return Err("the host passed no service table".to_owned());
        }
        // SAFETY: the host passes a table of its boundary version that
        // stays valid for as long as any code of this plugin can run (the
        // `PluginDeclaration::init` contract); every version starts with
        // these two fields. Read through the pointer: the host's table may
        // be shorter than this SDK's `HostApi`.
        let (version, size) = unsafe {
            (
                std::ptr::addr_of!((*api).abi_version).read_unaligned(),
                std::ptr::addr_of!((*api).size).read_unaligned(),
            )
        };
        if version != ABI_VERSION || (size as usize) < HOST_API_BASE {
            return Err(format!(
                "host boundary version {version} (a table of {size} bytes) does not match the \
                 plugin's {ABI_VERSION} (at least {HOST_API_BASE} bytes)"
            ));
        }
        // SAFETY: the table is readable for its `size` bytes, which cover
        // the base; the host checked that the fields both know agree
        // (`PluginDeclaration::host_api`). What the host lacks reads as `None`.
        let table = unsafe { crate::abi::table::read_prefix(api, size as usize) };
        let max_level = table.max_level;
        // Before the private runtime starts: its threads' thread-exit
        // destructors go to the host too. Detached again if this load does
        // not install (an error, or a panic caught below), while the
        // table is still alive.
        struct Attached(*const std::ffi::c_void, bool);
        impl Drop for Attached {
            fn drop(&mut self) {
                if self.1 {
                    thread_exit::detach(self.0);
                }
            }
        }
        let mut attached = Attached(table.data, thread_exit::attach(&table));
        let state = Injected::start(api, table, T::NAME, T::PRIVATE_RUNTIME)
            .map_err(|e| format!("could not start the plugin's private tokio runtime: {e}"))?;
        if let Err(state) = injected::install(state) {
            drop(state);
            return Err(
                "this library is already loaded by a host (a library's statics are shared by \
                 every load of the same file): load a copy from another path"
                    .to_owned(),
            );
        }
        // Installed: from here `release` (or `shutdown`, `uninstall`)
        // detaches. Take the service if another load of this mapping held
        // it at the start (it has detached since, or failed to install and
        // will not).
        if !attached.1
            && let Some(installed) = injected::host()
        {
            thread_exit::attach_installed(installed);
        }
        attached.1 = false;
        guard::mark_loaded();
        crate::boundary::log_bridge::install(max_level);
        panics::install_hook();
        // From here on the host calls `shutdown`, whatever `init` returns:
        // `Default` may have spawned tasks before it failed.
        let instance = catch(|| {
            panics::at(Site::Named("the plugin's `Default::default`"), || {
                injected::in_private(T::default)
            })
        })
        .map_err(|panic| {
            format!(
                "`{}::default()` panicked: {panic}",
                std::any::type_name::<T>()
            )
        })?;
        let plugin: Box<dyn ErasedPlugin> = Box::new(instance);
        *crate::sync::lock(&INSTANCE) = Some((Some(plugin), T::NAME));
        Ok(())
    });
    match outcome {
        Ok(Ok(())) => RStatus::ok(),
        Ok(Err(msg)) => RStatus::error(msg),
        Err(panic) => RStatus::panic(panic),
    }
}

/// Which lifecycle call of the instance.
#[derive(Clone, Copy)]
enum Lifecycle {
    Load,
    Unload,
}

/// The body of the `on_load` and `on_unload` entry points.
fn lifecycle(which: Lifecycle) -> RawFuture<RStatus> {
    entered(match which {
        Lifecycle::Load => "on_load",
        Lifecycle::Unload => "on_unload",
    });
    catch(|| run_lifecycle(which))
        .unwrap_or_else(|panic| RawFuture::new(std::future::ready(RStatus::panic(panic))))
}

/// Runs `on_load` or `on_unload` of the instance.
fn run_lifecycle(which: Lifecycle) -> RawFuture<RStatus> {
    let taken = match &mut *crate::sync::lock(&INSTANCE) {
        None => Err("the plugin is not initialized"),
        Some((instance, name)) => instance
            .take()
            .map(|plugin| (plugin, *name))
            .ok_or("another lifecycle call of the plugin is running, or one was cancelled"),
    };
    let (mut plugin, name) = match taken {
        Ok(taken) => taken,
        Err(msg) => return RawFuture::new(std::future::ready(RStatus::error(msg))),
    };
    let fut = async move {
        let ctx = PluginContext::new(name);
        let result = match which {
            Lifecycle::Load => plugin.on_load(ctx).await,
            Lifecycle::Unload => plugin.on_unload(ctx).await,
        };
        if let Some((slot, _)) = &mut *crate::sync::lock(&INSTANCE) {
            *slot = Some(plugin);
        }
        result
    };
    let site = Site::Named(match which {
        Lifecycle::Load => "on_load",
        Lifecycle::Unload => "on_unload",
    });
    RawFuture::new(async move { result_to_status(Guarded::new(fut, site).await) })
}

unsafe extern "C" fn on_load() -> RawFuture<RStatus> {
    lifecycle(Lifecycle::Load)
}

unsafe extern "C" fn on_unload() -> RawFuture<RStatus> {
    lifecycle(Lifecycle::Unload)
}

unsafe extern "C" fn shutdown(api: *const HostApi) -> u32 {
    entered("shutdown");
    if !injected::installed_with(api) {
        // `init` failed before installing (another load owns this mapping's
        // statics): nothing of ours to stop.
        return SHUTDOWN_OK;
    }
    // SAFETY: `api` is the table this library was installed with, still
    // valid (the host keeps it until after `shutdown`).
    let strict = unsafe { (*api).flags } & FLAG_STRICT_UNLOAD != 0;
    let instance = crate::sync::lock(&INSTANCE).take();
    let mut code = SHUTDOWN_OK;
    if let Err(panic) = catch(move || {
        panics::at(Site::Named("the drop of the plugin"), || {
            injected::in_private(|| drop(instance));
        });
    }) {
        panics::log_unreported("horizon_plugin_sdk", "dropping the plugin panicked", &panic);
        code = SHUTDOWN_PANICKED;
    }
    if strict {
        // Before the state is released: once it is, another load of this
        // mapping may start and clear the flag for its own life.
        guard::mark_unloaded();
    }
    // SAFETY: the host calls `shutdown` once no task or handler of the
    // plugin is left (the `PluginDeclaration::shutdown` contract).
    match catch(|| unsafe { injected::uninstall(api) }) {
        Ok(true) => {}
        Ok(false) => {
            injected::host_log(
                crate::abi::level::ERROR,
                "horizon_plugin_sdk",
                "the plugin's private runtime did not stop within 5 s; its threads may still run",
            );
            return SHUTDOWN_STUCK;
        }
        Err(panic) => {
            panics::log_unreported(
                "horizon_plugin_sdk",
                "stopping the private runtime panicked",
                &panic,
            );
            return SHUTDOWN_STUCK;
        }
    }
    code
}

/// `PluginDeclaration::release`. No `entered` check: strict mode marked
/// the plugin unloaded in `shutdown`, and this is the last step of that
/// unload (`init` is the only other entry allowed after it).
unsafe extern "C" fn release(api: *const HostApi) {
    // SAFETY: the `PluginDeclaration::release` contract is the host's.
    if let Err(panic) = catch(|| unsafe { injected::release(api) }) {
        panics::log_unreported(
            "horizon_plugin_sdk",
            "freeing the plugin's state panicked",
            &panic,
        );
    }
}
