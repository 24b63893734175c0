//! [`Event`]: a named JSON payload, as in Horizon's event system.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PluginError;

/// An event: a name and a JSON payload. Cheap to clone.
///
/// # Examples
/// ```
/// use horizon_plugin_sdk::Event;
/// let event = Event::new("ping", &21u64).unwrap();
/// assert_eq!(event.name(), "ping");
/// assert_eq!(event.json::<u64>().unwrap(), 21);
/// ```
#[derive(Clone)]
pub struct Event {
    name: Arc<str>,
    payload: Arc<[u8]>,
    source: Option<Arc<str>>,
}

impl Event {
    /// Serializes `payload` to JSON.
    pub fn new<T: Serialize + ?Sized>(name: &str, payload: &T) -> Result<Event, PluginError> {
        Ok(Event::from_json_bytes(name, serde_json::to_vec(payload)?))
    }

    /// An event whose payload is already JSON. The bytes are not validated
    /// here; [`Event::json`] reports malformed JSON.
    pub fn from_json_bytes(name: &str, payload: impl Into<Arc<[u8]>>) -> Event {
        Event {
            name: Arc::from(name),
            payload: payload.into(),
            source: None,
        }
    }

    /// An event whose name is already shared (no copy of the name).
    #[cfg(feature = "plugin")]
    pub(crate) fn from_shared(name: Arc<str>, payload: &[u8]) -> Event {
        Event {
            name,
            payload: Arc::from(payload),
            source: None,
        }
    }

    /// The same event, marked as sent by `source` (the host marks events
    /// plugins emit with the plugin's name).
    pub fn with_source(mut self, source: &str) -> Event {
        self.source = Some(Arc::from(source));
        self
    }

    /// Who sent the event: a plugin's name, or `None` for the host.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event's name as a shared string, consuming the event (no copy).
    pub fn into_name(self) -> Arc<str> {
        self.name
    }

    /// The payload decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// The raw JSON payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name)
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Event;

    /// A payload shaped like a handler's argument (no floats: JSON does
    /// not carry every `f64` exactly).
    type Payload = (u64, String, Vec<i32>, Option<bool>);

    proptest! {
        /// A serialized value decodes back to the equal value, under its
        /// name, also from a copy of its bytes.
        #[test]
        fn payloads_round_trip(name in any::<String>(), value in any::<Payload>()) {
            let event = Event::new(&name, &value).unwrap();
            prop_assert_eq!(event.name(), name.as_str());
            prop_assert_eq!(event.json::<Payload>().unwrap(), value.clone());
            let copy = Event::from_json_bytes(&name, event.payload().to_vec());
            prop_assert_eq!(copy.json::<Payload>().unwrap(), value);
        }

        /// A payload cut short (a JSON array is incomplete before its last
        /// byte) or followed by garbage is an error that keeps serde's as
        /// its source, never a panic or a value.
        #[test]
        fn truncated_or_extended_payloads_are_errors(value in any::<Payload>(), cut in any::<proptest::sample::Index>(), garbage in b'!'..=b'~') {
            let json = serde_json::to_vec(&value).unwrap();
            let truncated = Event::from_json_bytes("e", json[..cut.index(json.len())].to_vec());
            let err = truncated.json::<Payload>().unwrap_err();
            prop_assert!(
                std::error::Error::source(&err).is_some_and(|s| s.is::<serde_json::Error>()),
                "{}", err
            );
            let mut extended = json;
            extended.push(garbage);
            prop_assert!(Event::from_json_bytes("e", extended).json::<Payload>().is_err());
        }
    }
}
