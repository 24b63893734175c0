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
/// use horizon_sdk::Event;
/// let event = Event::new("ping", &21u64).unwrap();
/// assert_eq!(event.name(), "ping");
/// assert_eq!(event.json::<u64>().unwrap(), 21);
/// ```
#[derive(Clone)]
pub struct Event {
    name: Arc<str>,
    payload: Arc<[u8]>,
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
        }
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
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
