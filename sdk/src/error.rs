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
