//! Errors of [`PluginHost`](crate::PluginHost).

use std::path::PathBuf;

use crate::PluginId;
use crate::trust::TrustRefusal;

/// Why [`PluginHost::load`](crate::PluginHost::load) refused or failed to load a file.
/// The host is unaffected either way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The host's [`TrustPolicy`](crate::TrustPolicy) refused the file
    /// before opening it: nothing of it ran.
    #[error("refused to load {}: {reason}", path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: TrustRefusal,
    },
    /// The file could not be opened as a shared library.
    #[error("could not open plugin library {}: {}", path.display(), loader_reason(.source))]
    Open {
        /// The file.
        path: PathBuf,
        /// What the dynamic loader said.
        source: libloading::Error,
    },
    /// The library exports no Horizon declaration.
    #[error(
        "{} is not a Horizon plugin: it exports no `HORIZON_PLUGIN_DECLARATION` (is it built from an `impl Plugin` annotated with `#[horizon_plugin]`?)",
        path.display()
    )]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The declaration does not start with Horizon's magic number.
    #[error("{} is not a Horizon plugin: its declaration starts with {found:#018x}, not Horizon's magic number", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What the declaration starts with.
        found: u64,
    },
    /// The plugin was built against another boundary version.
    #[error(
        "{} was built against Horizon boundary version {plugin}, this host speaks version {host}: rebuild the plugin with a horizon-plugin-sdk of boundary version {host}",
        path.display()
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's boundary version.
        plugin: u32,
        /// The host's boundary version.
        host: u32,
    },
    /// The plugin's boundary types are laid out differently from the host's
    /// under the same boundary version: one of the two SDKs changed a
    /// boundary type without bumping the version. Refused before any call.
    #[error(
        "{} was built against a boundary laid out differently from this host's (layout fingerprint {plugin:#018x}, the host's {host:#018x}) under the same boundary version: rebuild the plugin with this host's SDK",
        path.display()
    )]
    LayoutMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's layout fingerprint.
        plugin: u64,
        /// The host's layout fingerprint.
        host: u64,
    },
    /// The plugin's view of a growable table (its declaration, or the
    /// host's service table) differs from the host's in fields both know:
    /// not an append, so one of the two SDKs changed the table without
    /// bumping the boundary version. Refused before any call.
    #[error(
        "{} was built against a {table} table that differs from this host's in the fields both know (not an append) under the same boundary version: rebuild the plugin with this host's SDK",
        path.display()
    )]
    TableMismatch {
        /// The file.
        path: PathBuf,
        /// Which table: `"declaration"` or `"host service"`.
        table: &'static str,
    },
    /// The plugin needs a host service this host does not have: it was
    /// built with a newer SDK than the host's. Refused before any call.
    #[error(
        "{} needs the host service `{service}`, which this host lacks: the plugin was built with horizon-plugin-sdk {plugin_sdk}, the host with {host_sdk}; upgrade the host, or build the plugin with an SDK of the host's version",
        path.display()
    )]
    MissingService {
        /// The file.
        path: PathBuf,
        /// The service's name.
        service: String,
        /// The plugin's SDK version.
        plugin_sdk: String,
        /// The host's SDK version.
        host_sdk: String,
    },
    /// The declaration is not well-formed.
    #[error("{} has a malformed Horizon declaration: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The plugin's initialization failed (before `on_load`).
    #[error("plugin `{name}` ({}) failed to initialize: {message}", path.display())]
    Init {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The plugin's message.
        message: String,
    },
    /// `on_load` returned an error.
    #[error("plugin `{name}` ({}) failed in on_load: {message}", path.display())]
    OnLoad {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The error's message.
        message: String,
    },
    /// `on_load` panicked.
    #[error("plugin `{name}` ({}) panicked in on_load: {message}", path.display())]
    OnLoadPanicked {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The panic's message.
        message: String,
    },
    /// [`PluginHost::shutdown`](crate::PluginHost::shutdown) began while
    /// the plugin was loading: it was unloaded again, as shutdown unloads
    /// every plugin.
    #[error("plugin `{name}` ({}) was unloaded again: the host shut down while it was loading", path.display())]
    ShutDown {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
    },
}

/// Why [`PluginHost::unload`](crate::PluginHost::unload) reported a problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnloadError {
    /// No plugin with this id is loaded.
    #[error("no plugin {0} is loaded")]
    NotLoaded(PluginId),
    /// `on_unload` failed or panicked; the plugin was unloaded all the same.
    #[error("plugin `{name}` {} in on_unload: {message} (it was unloaded all the same)", if *panicked { "panicked" } else { "failed" })]
    OnUnload {
        /// The plugin's name.
        name: String,
        /// The message.
        message: String,
        /// Whether it panicked (rather than returned an error).
        panicked: bool,
    },
    /// Some of the plugin's tasks (blocking jobs) did not stop by the unload
    /// deadline; the library was kept mapped rather than closed under them.
    #[error(
        "plugin `{name}` left {left} task(s) running past the unload deadline; its library stays mapped"
    )]
    TasksStillRunning {
        /// The plugin's name.
        name: String,
        /// How many tasks were still alive.
        left: usize,
    },
    /// The plugin's private runtime did not stop within its deadline: its
    /// threads may still run plugin code, so the library was kept mapped.
    #[error("plugin `{name}`: its private tokio runtime did not stop; its library stays mapped")]
    PrivateRuntimeStuck {
        /// The plugin's name.
        name: String,
    },
}

/// Why [`PluginHost::emit`](crate::PluginHost::emit) could not send an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The payload does not serialize to JSON.
    #[error("event payload does not serialize to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The payload does not encode in its event's codec (the message names
    /// the event, the type and the codec).
    #[error(transparent)]
    Encode(horizon_plugin_sdk::PluginError),
}

/// Why [`PluginHost::reload`](crate::PluginHost::reload) did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// No plugin with this id is loaded.
    #[error("no plugin {0} is loaded")]
    NotLoaded(PluginId),
    /// The new build did not load; the old plugin keeps serving.
    #[error("the new build did not load, the old plugin keeps serving: {0}")]
    Load(#[source] LoadError),
    /// The new build serves (as `new`); unloading the old one reported a problem.
    #[error("plugin reloaded as {new}, but unloading the old one reported: {source}")]
    Unload {
        /// The new plugin's id.
        new: PluginId,
        /// What unloading the old one said.
        #[source]
        source: UnloadError,
    },
}

/// libloading's error with the dynamic loader's own words: its `Display`
/// says only "dlopen failed" and keeps `dlerror`'s text as its source.
fn loader_reason(error: &libloading::Error) -> String {
    use std::error::Error as _;
    match error.source() {
        Some(reason) => format!("{error}: {reason}"),
        None => error.to_string(),
    }
}

/// Why a call ([`PluginHost::call`](crate::PluginHost::call),
/// [`call_untyped`](crate::PluginHost::call_untyped), or a plugin's
/// `PluginContext::call`) has no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin answers this name (none registered it, or its plugin is
    /// not loaded, quarantined, or being unloaded).
    #[error("no plugin answers `{0}`")]
    NoHandler(String),
    /// The answering handler failed ([`FailureKind::Failed`]), rejected a
    /// request that did not decode as its type ([`FailureKind::Rejected`],
    /// naming event, type and codec), panicked, timed out (the host's
    /// handler timeout; it was aborted), or its plugin was unloaded during
    /// the call ([`FailureKind::Cancelled`]).
    ///
    /// [`FailureKind::Failed`]: crate::FailureKind::Failed
    /// [`FailureKind::Rejected`]: crate::FailureKind::Rejected
    /// [`FailureKind::Cancelled`]: crate::FailureKind::Cancelled
    #[error("{0}")]
    Handler(crate::HandlerFailure),
    /// The request does not encode in its codec.
    #[error(transparent)]
    Encode(horizon_plugin_sdk::PluginError),
    /// The answer does not decode as the expected type (the message names
    /// the call, the type and the codec).
    #[error("the answer does not decode: {0}")]
    Decode(horizon_plugin_sdk::PluginError),
}
