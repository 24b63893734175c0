//! [`EmitReport`]: what happened to one emitted event.

use std::fmt;
use std::sync::Arc;

use crate::PluginId;

/// The outcome of one [`PluginHost::emit`](crate::PluginHost::emit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmitReport {
    /// The event's name.
    pub event: Arc<str>,
    /// How many handlers finished successfully.
    pub delivered: usize,
    /// The handlers that failed, panicked or were cancelled.
    pub failures: Vec<HandlerFailure>,
    /// Plugins this event's failures put in quarantine (see
    /// [`HostBuilder::quarantine_after`](crate::HostBuilder::quarantine_after)).
    pub quarantined: Vec<PluginId>,
}

/// An [`EmitReport`] being filled in, before it takes the event's name.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) delivered: usize,
    pub(crate) failures: Vec<HandlerFailure>,
    pub(crate) quarantined: Vec<PluginId>,
}

impl Tally {
    pub(crate) fn into_report(self, event: Arc<str>) -> EmitReport {
        EmitReport {
            event,
            delivered: self.delivered,
            failures: self.failures,
            quarantined: self.quarantined,
        }
    }
}

impl EmitReport {
    /// Whether every handler succeeded.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One handler that did not succeed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandlerFailure {
    /// The plugin the handler belongs to; `None` for a host handler.
    pub plugin: Option<PluginId>,
    /// The plugin's name, or `"host"`.
    pub subscriber: String,
    /// The event's name.
    pub event: String,
    /// What went wrong.
    pub kind: FailureKind,
}

/// How a handler failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// It returned an error with this message.
    Failed(String),
    /// It panicked with this message.
    Panicked(String),
    /// It did not run to the end (its plugin was unloaded).
    Cancelled(String),
    /// It was still running at the host's handler deadline
    /// ([`HostBuilder::handler_timeout`](crate::HostBuilder::handler_timeout)),
    /// and was aborted.
    TimedOut(String),
    /// It refused the event: the payload did not decode as the handler's
    /// type (the message names the event, the type and the codec). The
    /// sender's mistake: it does not count toward the handler's quarantine.
    Rejected(String),
}

impl FailureKind {
    /// The message: the handler's error, the panic's, or why it was cancelled.
    pub fn message(&self) -> &str {
        match self {
            FailureKind::Failed(m)
            | FailureKind::Panicked(m)
            | FailureKind::Cancelled(m)
            | FailureKind::TimedOut(m)
            | FailureKind::Rejected(m) => m,
        }
    }
}

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.plugin {
            Some(id) => format!("plugin `{}` ({id})", self.subscriber),
            None => "a host handler".to_owned(),
        };
        match &self.kind {
            FailureKind::Failed(m) => write!(f, "{who} failed on event `{}`: {m}", self.event),
            FailureKind::Panicked(m) => write!(f, "{who} panicked on event `{}`: {m}", self.event),
            FailureKind::Cancelled(m) => {
                write!(f, "{who} did not finish event `{}`: {m}", self.event)
            }
            FailureKind::TimedOut(m) => {
                write!(f, "{who} timed out on event `{}`: {m}", self.event)
            }
            FailureKind::Rejected(m) => write!(f, "{who} rejected event `{}`: {m}", self.event),
        }
    }
}

/// A plugin's status turned into a host-owned value, so the plugin's string
/// is freed (by the plugin's own `free`) while the plugin is still counted
/// as running, never after it was unloaded.
pub(crate) fn status_outcome(status: horizon_plugin_sdk::abi::RStatus) -> Result<(), FailureKind> {
    use horizon_plugin_sdk::abi::{STATUS_OK, STATUS_PANIC, STATUS_REJECTED};
    match status.code {
        STATUS_OK => Ok(()),
        STATUS_PANIC => Err(FailureKind::Panicked(status.message.to_string_lossy())),
        STATUS_REJECTED => Err(FailureKind::Rejected(status.message.to_string_lossy())),
        _ => Err(FailureKind::Failed(status.message.to_string_lossy())),
    }
}

/// A plugin call's outcome, host-owned (see [`status_outcome`]).
pub(crate) type Outcome = Result<(), FailureKind>;
