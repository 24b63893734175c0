//! [`PluginError`], the error type of plugin lifecycle methods and handlers.

use std::fmt;

/// An error a plugin reports to the host: from `on_load`, `on_unload` or an
/// event handler. The host shows its message.
///
/// # Examples
/// ```
/// use horizon_plugin_sdk::PluginError;
/// let e = PluginError::msg("database unreachable");
/// assert_eq!(e.to_string(), "database unreachable");
/// let e: PluginError = serde_json::from_str::<u64>("\"x\"").unwrap_err().into();
/// assert!(e.to_string().contains("invalid type"));
/// ```
pub struct PluginError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// The payload a handler was given did not decode: the sender's
    /// mistake, reported to the host as such (it does not count toward the
    /// handler's quarantine).
    rejected: bool,
}

impl PluginError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        PluginError {
            message: message.to_string(),
            source: None,
            rejected: false,
        }
    }

    /// A payload that did not decode: this message, `source` as its
    /// source, and marked as the sender's mistake.
    pub(crate) fn rejected(
        message: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PluginError {
            message: message.to_string(),
            source: Some(Box::new(source)),
            rejected: true,
        }
    }

    /// Whether this error says that a payload did not decode (an
    /// [`Event::decode`](crate::Event::decode) or `json` error, kept
    /// through `?`): a handler returning it tells the host the event was
    /// malformed, not that the handler failed.
    pub fn is_rejected(&self) -> bool {
        self.rejected
    }

    /// Wraps another error, keeping it as the source.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        PluginError {
            message: error.to_string(),
            source: Some(Box::new(error)),
            rejected: false,
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PluginError").field(&self.message).finish()
    }
}

impl std::error::Error for PluginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        PluginError::new(e)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::new(e)
    }
}

/// Why a plugin's call ([`PluginContext::call`](crate::PluginContext::call),
/// `call_untyped`) has no answer. Each variant's message is the host's
/// description (naming the call, and the answering plugin when one ran).
/// `?` turns it into a [`PluginError`] that keeps it as its source.
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
/// /// The shop's price, or a default when no shop plugin is loaded.
/// async fn price(ctx: &PluginContext, item: &str) -> Result<u64, PluginError> {
///     match ctx.call(&Price { item: item.into() }).await {
///         Ok(price) => Ok(price),
///         Err(CallError::NoHandler(_)) => Ok(100),
///         Err(other) => Err(other.into()),
///     }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin answers the name: none registered it, its plugin is not
    /// loaded, quarantined or being unloaded, or the host has shut down.
    NoHandler(String),
    /// The answering handler returned an error.
    Failed(String),
    /// The answering handler panicked.
    Panicked(String),
    /// The answering handler refused the request: it did not decode as
    /// its type (the message names the call, the type and the codec).
    Rejected(String),
    /// The answering handler was still running at the host's handler
    /// timeout, and was aborted.
    TimedOut(String),
    /// The answering plugin was unloaded during the call.
    Cancelled(String),
    /// The request does not encode in its codec.
    Encode(PluginError),
    /// The answer does not decode as the expected type (the message names
    /// the call, the type and the codec).
    Decode(PluginError),
    /// The call was not made: no Horizon host is attached, or the host's
    /// boundary has no calls (older than 4.3).
    Unavailable(String),
    /// The host said the call failed without saying how: hosts of
    /// boundary 4.3 to 4.5 report every failure so (boundary 4.6,
    /// `FLAG_CALL_STATUS`, tells the kinds apart).
    Unclassified(String),
}

impl CallError {
    /// The error a call's non-OK `status` stands for; `classified`: the
    /// host sets `FLAG_CALL_STATUS` (its codes say the kind).
    #[cfg(feature = "plugin")]
    pub(crate) fn from_status(status: crate::abi::RStatus, classified: bool) -> Self {
        use crate::abi::{
            STATUS_CANCELLED, STATUS_ERROR, STATUS_NO_HANDLER, STATUS_PANIC, STATUS_REJECTED,
            STATUS_TIMED_OUT,
        };
        let message = status.message.to_string_lossy();
        if !classified {
            return CallError::Unclassified(message);
        }
        match status.code {
            STATUS_NO_HANDLER => CallError::NoHandler(message),
            STATUS_ERROR => CallError::Failed(message),
            STATUS_PANIC => CallError::Panicked(message),
            STATUS_REJECTED => CallError::Rejected(message),
            STATUS_TIMED_OUT => CallError::TimedOut(message),
            STATUS_CANCELLED => CallError::Cancelled(message),
            _ => CallError::Unclassified(message),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoHandler(m)
            | CallError::Failed(m)
            | CallError::Panicked(m)
            | CallError::Rejected(m)
            | CallError::TimedOut(m)
            | CallError::Cancelled(m)
            | CallError::Unavailable(m)
            | CallError::Unclassified(m) => f.write_str(m),
            CallError::Encode(e) => fmt::Display::fmt(e, f),
            CallError::Decode(e) => write!(f, "the answer does not decode: {e}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Encode(e) | CallError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

/// Keeps the call's error as the source. Never marked rejected: the caller's
/// own payload was fine, whatever the callee refused.
impl From<CallError> for PluginError {
    fn from(e: CallError) -> Self {
        PluginError::new(e)
    }
}

#[cfg(all(test, feature = "plugin"))]
mod tests {
    use super::CallError;
    use crate::abi::{
        RStatus, RString, STATUS_CANCELLED, STATUS_ERROR, STATUS_NO_HANDLER, STATUS_PANIC,
        STATUS_REJECTED, STATUS_TIMED_OUT,
    };

    fn status(code: u32) -> RStatus {
        RStatus {
            code,
            message: RString::from(format!("code {code}")),
        }
    }

    /// With `FLAG_CALL_STATUS` each code is its kind, the message kept;
    /// without it (hosts before 4.6) nothing is guessed from the code.
    #[test]
    fn a_call_status_is_its_kind_only_when_the_host_classifies() {
        let kind = |code, classified| {
            let e = CallError::from_status(status(code), classified);
            assert_eq!(e.to_string(), format!("code {code}"));
            match e {
                CallError::NoHandler(_) => "no handler",
                CallError::Failed(_) => "failed",
                CallError::Panicked(_) => "panicked",
                CallError::Rejected(_) => "rejected",
                CallError::TimedOut(_) => "timed out",
                CallError::Cancelled(_) => "cancelled",
                CallError::Unclassified(_) => "unclassified",
                other => panic!("{other:?}"),
            }
        };
        for (code, want) in [
            (STATUS_NO_HANDLER, "no handler"),
            (STATUS_ERROR, "failed"),
            (STATUS_PANIC, "panicked"),
            (STATUS_REJECTED, "rejected"),
            (STATUS_TIMED_OUT, "timed out"),
            (STATUS_CANCELLED, "cancelled"),
            (99, "unclassified"),
        ] {
            assert_eq!(kind(code, true), want, "code {code}");
            assert_eq!(kind(code, false), "unclassified", "code {code}");
        }
    }

    /// `?` in a handler keeps the call's error as the source, and does not
    /// mark the caller's error as a rejected payload.
    #[test]
    fn a_call_error_becomes_a_plugin_error_with_its_source() {
        use std::error::Error as _;
        let e = crate::PluginError::from(CallError::TimedOut("too slow".into()));
        assert_eq!(e.to_string(), "too slow");
        assert!(!e.is_rejected());
        let source = e.source().unwrap().downcast_ref::<CallError>();
        assert!(matches!(source, Some(CallError::TimedOut(_))));
    }
}
