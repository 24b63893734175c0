//! What identifies and describes a loaded plugin, and what it logs.

use std::fmt;
use std::path::PathBuf;

/// Identifies a loaded plugin for as long as the host runs (ids are never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginId(pub(crate) u64);

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What [`PluginHost::plugins`](crate::PluginHost::plugins) says about a loaded plugin.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

/// One log record of a plugin, as handed to a
/// [`plugin_log_sink`](crate::HostBuilder::plugin_log_sink).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PluginLog {
    /// The plugin's name.
    pub plugin: String,
    /// The record's level.
    pub level: tracing::Level,
    /// The plugin-side target (usually the module path).
    pub target: String,
    /// The formatted message.
    pub message: String,
}

/// Where a host hands its plugins' log records (see `HostBuilder::plugin_log_sink`).
pub(crate) type LogSink = std::sync::Arc<dyn Fn(&PluginLog) + Send + Sync>;
