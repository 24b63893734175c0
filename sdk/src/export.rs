//! What `#[horizon_plugin]` expands to calls into; not public API.
//!
//! The attribute emits one `static` of type [`ExportedDeclaration`] under the
//! symbol [`crate::abi::DECLARATION_SYMBOL`], built by [`declare`]. The entry
//! points are generic over the plugin type and keep its instance in one
//! plugin-local static (a plugin library holds exactly one plugin).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_ffi::FfiFuture;

pub use crate::abi::ExportedDeclaration;
use crate::abi::{
    ABI_VERSION, HostApi, MAGIC, PluginDeclaration, RStatus, RStr, RUSTC_VERSION, SDK_VERSION,
};
use crate::plugin::result_to_status;
use crate::rt::injected::{self, Guarded, Injected, catch};
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

type Instance = Arc<tokio::sync::Mutex<Box<dyn ErasedPlugin>>>;

/// The plugin instance, created by `init` and dropped by `shutdown`.
static INSTANCE: Mutex<Option<(Instance, &'static str)>> = Mutex::new(None);

/// The declaration of plugin `T`.
pub const fn declare<T: Plugin>() -> ExportedDeclaration {
    ExportedDeclaration(PluginDeclaration {
        magic: MAGIC,
        abi_version: ABI_VERSION,
        size: size_of::<PluginDeclaration>() as u32,
        sdk_version: RStr::new(SDK_VERSION),
        rustc_version: RStr::new(RUSTC_VERSION),
        name: RStr::new(T::NAME),
        init: init::<T>,
        on_load,
        on_unload,
        shutdown,
    })
}

unsafe extern "C" fn init<T: Plugin>(api: *const HostApi) -> RStatus {
    let outcome = catch(|| {
        // SAFETY: the host passes a table that lives until `shutdown` returns.
        let Some(api) = (unsafe { api.as_ref() }) else {
            return Err("the host passed no service table".to_owned());
        };
        if api.abi_version != ABI_VERSION || (api.size as usize) < size_of::<HostApi>() {
            return Err(format!(
                "host boundary version {} (table of {} bytes) does not match the plugin's {} ({} bytes)",
                api.abi_version,
                api.size,
                ABI_VERSION,
                size_of::<HostApi>()
            ));
        }
        // SAFETY: the host keeps the table alive until `shutdown` returns
        // (the `PluginDeclaration::init` contract), which is as long as
        // `Injected` holds it.
        let api: &'static HostApi = unsafe { &*std::ptr::from_ref(api) };
        let private = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("horizon-plugin-{}", T::NAME))
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the plugin's private tokio runtime: {e}"))?;
        let state = Injected {
            api,
            private_handle: Some(private.handle().clone()),
            private: Mutex::new(Some(private)),
            generation: 0,
        };
        if let Err(state) = injected::install(state) {
            drop(state);
            return Err(
                "this library is already loaded by a host (a library's statics are shared by \
                 every load of the same file): load a copy from another path"
                    .to_owned(),
            );
        }
        crate::log_bridge::install(api.max_level);
        let instance = {
            injected::enter_private();
            catch(T::default)
        };
        match instance {
            Ok(plugin) => {
                let plugin: Box<dyn ErasedPlugin> = Box::new(plugin);
                *INSTANCE.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Arc::new(tokio::sync::Mutex::new(plugin)), T::NAME));
                Ok(())
            }
            Err(panic) => {
                injected::uninstall();
                Err(format!(
                    "`{}::default()` panicked: {panic}",
                    std::any::type_name::<T>()
                ))
            }
        }
    });
    match outcome {
        Ok(Ok(())) => RStatus::ok(),
        Ok(Err(msg)) => RStatus::error(msg),
        Err(panic) => RStatus::panic(panic),
    }
}

fn lifecycle(on_load: bool) -> FfiFuture<RStatus> {
    let Some((instance, name)) = INSTANCE.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return FfiFuture::new(std::future::ready(RStatus::error(
            "the plugin is not initialized",
        )));
    };
    let fut = async move {
        let mut plugin = instance.lock().await;
        let ctx = PluginContext::new(name);
        if on_load {
            plugin.on_load(ctx).await
        } else {
            plugin.on_unload(ctx).await
        }
    };
    FfiFuture::new(async move { result_to_status(Guarded::new(fut).await) })
}

unsafe extern "C" fn on_load() -> FfiFuture<RStatus> {
    match catch(|| lifecycle(true)) {
        Ok(f) => f,
        Err(panic) => FfiFuture::new(std::future::ready(RStatus::panic(panic))),
    }
}

unsafe extern "C" fn on_unload() -> FfiFuture<RStatus> {
    match catch(|| lifecycle(false)) {
        Ok(f) => f,
        Err(panic) => FfiFuture::new(std::future::ready(RStatus::panic(panic))),
    }
}

unsafe extern "C" fn shutdown() -> RStatus {
    let instance = INSTANCE.lock().unwrap_or_else(|e| e.into_inner()).take();
    let dropped = {
        injected::enter_private();
        catch(move || drop(instance))
    };
    let stopped = catch(injected::uninstall);
    match (dropped, stopped) {
        (Ok(()), Ok(())) => RStatus::ok(),
        (Err(panic), _) => RStatus::panic(format!("dropping the plugin panicked: {panic}")),
        (_, Err(panic)) => {
            RStatus::panic(format!("stopping the private runtime panicked: {panic}"))
        }
    }
}
