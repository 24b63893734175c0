//! Where a plugin's log records land: `tracing` events of this module's
//! target (`horizon_plugin_host::plugin_log`), with the plugin's name in
//! the `plugin` field and the plugin-side target in `target`. The host's
//! subscriber filters them like any other event of this target. A host
//! built with [`crate::HostBuilder::plugin_log_sink`] also hands each record
//! to its sink.

use std::ffi::c_void;

use horizon_plugin_sdk::abi::guard::catch;
use horizon_plugin_sdk::abi::{self, RStr};

use super::services::services;

/// The `tracing` target of plugin log records (stable: hosts filter on it).
const TARGET: &str = "horizon_plugin_host::plugin_log";
use crate::info::PluginLog;

/// Evaluates `$body` with `$lvl` the `tracing::Level` constant of boundary
/// level `$level` (`tracing`'s macros need a constant): the one mapping
/// from boundary levels to `tracing` levels.
macro_rules! at_level {
    ($level:expr, $lvl:ident => $body:expr) => {
        match $level {
            abi::level::ERROR => {
                const $lvl: tracing::Level = tracing::Level::ERROR;
                $body
            }
            abi::level::WARN => {
                const $lvl: tracing::Level = tracing::Level::WARN;
                $body
            }
            abi::level::INFO => {
                const $lvl: tracing::Level = tracing::Level::INFO;
                $body
            }
            abi::level::DEBUG => {
                const $lvl: tracing::Level = tracing::Level::DEBUG;
                $body
            }
            _ => {
                const $lvl: tracing::Level = tracing::Level::TRACE;
                $body
            }
        }
    };
}

/// The host's most verbose enabled level, as a boundary [`abi::level`].
pub(crate) fn max_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => abi::level::ERROR,
        LevelFilter::WARN => abi::level::WARN,
        LevelFilter::INFO => abi::level::INFO,
        LevelFilter::DEBUG => abi::level::DEBUG,
        _ => abi::level::TRACE,
    }
}

pub(super) unsafe extern "C" fn enabled(
    data: *const c_void,
    level: u32,
    _target: RStr<'_>,
) -> bool {
    // SAFETY: the plugin passes back the `data` of its live table.
    if unsafe { services(data) }.log_sink.is_some() {
        return true;
    }
    // A host subscriber that panics must not unwind out of `extern "C"`.
    catch(|| at_level!(level, LEVEL => tracing::enabled!(target: TARGET, LEVEL))).unwrap_or(false)
}

pub(super) unsafe extern "C" fn log(
    data: *const c_void,
    level: u32,
    target: RStr<'_>,
    message: RStr<'_>,
) {
    // SAFETY: the plugin passes back the `data` of its live table; the
    // strings are alive for this call.
    let (services, target, message) =
        unsafe { (services(data), target.as_bytes(), message.as_bytes()) };
    // A host subscriber that panics must not unwind out of `extern "C"`.
    let _ = catch(|| {
        let (target, message) = (
            String::from_utf8_lossy(target),
            String::from_utf8_lossy(message),
        );
        let plugin = services.name.as_str();
        if let Some(sink) = &services.log_sink {
            sink(&PluginLog {
                plugin: plugin.to_owned(),
                level: at_level!(level, LEVEL => LEVEL),
                target: target.clone().into_owned(),
                message: message.clone().into_owned(),
            });
        }
        at_level!(level, LEVEL => tracing::event!(target: TARGET, LEVEL, plugin, target = %target, "{message}"));
    });
}

/// The plugin-side target of panic reports, in [`PluginLog::target`] and
/// the event's `target` field.
const PANIC_TARGET: &str = "panic";

/// A panic the plugin's hook reported (`report_panic`): one error record
/// of this module's target, like the plugin's own log records (so a sink
/// and a filter on the target see it too), naming where it happened; and
/// one count in the plugin's stats.
pub(super) unsafe extern "C" fn report_panic(
    data: *const c_void,
    site: RStr<'_>,
    message: RStr<'_>,
) {
    // SAFETY: the plugin passes back the `data` of its live table; the
    // strings are alive for this call.
    let (services, site, message) =
        unsafe { (services(data), site.as_bytes(), message.as_bytes()) };
    // A subscriber or sink that panics must not unwind into the plugin's hook.
    let _ = catch(|| {
        services.stats.panicked();
        let (site, message) = (
            String::from_utf8_lossy(site),
            String::from_utf8_lossy(message),
        );
        let plugin = services.name.as_str();
        let text = format!("plugin `{plugin}` panicked in {site}: {message}");
        if let Some(sink) = &services.log_sink {
            sink(&PluginLog {
                plugin: plugin.to_owned(),
                level: tracing::Level::ERROR,
                target: PANIC_TARGET.to_owned(),
                message: text.clone(),
            });
        }
        tracing::error!(
            target: TARGET,
            plugin,
            id = %services.id,
            target = PANIC_TARGET,
            site = %site,
            "{text}"
        );
    });
}
