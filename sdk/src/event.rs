//! [`Event`]: a named payload in one of a few codecs (JSON by default, as in
//! Horizon's event system), and [`TypedEvent`], a type that names its event.
//!
//! # The payload on the wire
//!
//! Across the library boundary an event is its name and one byte string,
//! the *wire form*: a JSON payload is its JSON text, unchanged (what every
//! plugin of this boundary major reads); any other payload is a two-byte
//! header, `0x00` (which no JSON text starts with) and the codec's id, then
//! the encoded bytes. So the codec travels with the event and the receiver's
//! [`Event::decode`] needs no knowledge of it, without a change to the
//! boundary's types.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PluginError;

/// How an event's payload is encoded. The emitter picks it per event; it
/// travels with the event ([`Event::codec`]).
///
/// `Postcard` is the compact binary codec: on the payloads a game server
/// sends it is the smallest and the fastest to decode of those measured
/// (`BENCHMARKS.md`, "Codecs for events"). It is not self-describing: the
/// receiver needs the type, which a [`TypedEvent`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// JSON text (the default; readable in `horizon run`).
    Json,
    /// [postcard](https://docs.rs/postcard) 1.x, serde's compact binary format.
    Postcard,
    /// Bytes in the caller's own format; [`Event::payload`] reads them.
    Raw,
    /// A codec this SDK does not know (sent by a newer one).
    Unknown(UnknownCodec),
}

/// The wire id of a codec this SDK does not know ([`Codec::Unknown`]);
/// made only by reading an event, so it never stands for a known codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownCodec(u8);

impl UnknownCodec {
    /// The id in the event's wire header.
    pub fn id(self) -> u8 {
        self.0
    }
}

/// First byte of the wire form of a payload that is not JSON.
const TAGGED: u8 = 0x00;
/// The wire header's length for a tagged payload.
const HEADER: usize = 2;

impl Codec {
    /// The id in the wire header (`Json` has none: 0 is never used).
    const fn id(self) -> u8 {
        match self {
            Codec::Json => 0,
            Codec::Postcard => 1,
            Codec::Raw => 2,
            Codec::Unknown(UnknownCodec(id)) => id,
        }
    }

    /// The codec of a tagged payload's header (JSON is never tagged).
    const fn from_id(id: u8) -> Codec {
        match id {
            1 => Codec::Postcard,
            2 => Codec::Raw,
            id => Codec::Unknown(UnknownCodec(id)),
        }
    }

    /// Serializes `value`, as `name`'s payload (for the error).
    fn encode<T: Serialize + ?Sized>(self, name: &str, value: &T) -> Result<Vec<u8>, PluginError> {
        let failed = |e: &dyn fmt::Display| {
            PluginError::msg(format!(
                "event `{name}`: the payload ({}) does not encode as {self}: {e}",
                std::any::type_name::<T>()
            ))
        };
        match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| failed(&e)),
            Codec::Postcard => {
                let mut wire = vec![TAGGED, self.id()];
                postcard::to_io(value, &mut wire).map_err(|e| failed(&e))?;
                Ok(wire)
            }
            Codec::Raw | Codec::Unknown(_) => Err(failed(
                &"no serializer for this codec (raw bytes: `Event::raw`)",
            )),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Json => f.write_str("JSON"),
            Codec::Postcard => f.write_str("postcard"),
            Codec::Raw => f.write_str("raw bytes"),
            Codec::Unknown(UnknownCodec(id)) => write!(f, "unknown codec {id}"),
        }
    }
}

/// A type that is the payload of one event: it names the event and its
/// codec once, so handlers and emitters of it cannot misspell the name or
/// mismatch the type. Usually derived:
///
/// ```
/// use horizon_plugin_sdk::{Codec, Event, TypedEvent};
///
/// #[derive(serde::Serialize, serde::Deserialize, TypedEvent, Debug, PartialEq)]
/// #[event(name = "player:moved", codec = postcard)]
/// struct PlayerMoved {
///     player: u64,
///     x: f32,
///     y: f32,
/// }
///
/// assert_eq!(PlayerMoved::NAME, "player:moved");
/// assert_eq!(PlayerMoved::CODEC, Codec::Postcard);
/// let moved = PlayerMoved { player: 7, x: 1.5, y: -2.0 };
/// let event = Event::typed(&moved).unwrap();
/// assert_eq!(event.name(), "player:moved");
/// assert_eq!(event.decode::<PlayerMoved>().unwrap(), moved);
/// ```
///
/// Plugins use it through `PluginContext::on_event` and
/// `PluginContext::emit_event`, hosts through `PluginHost::on_event`,
/// `emit_event` and `call`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a typed event",
    label = "not a `TypedEvent`",
    note = "derive it: `#[derive(Serialize, Deserialize, TypedEvent)]` with `#[event(name = \"...\")]` on the type"
)]
pub trait TypedEvent: Serialize + DeserializeOwned + Send + 'static {
    /// The event's name.
    const NAME: &'static str;
    /// The codec its payload is sent in (JSON unless set).
    const CODEC: Codec = Codec::Json;
}

/// A [`TypedEvent`] that is a question: a call of it
/// (`PluginContext::call`, `PluginHost::call`) returns an `Answer`, from the
/// one handler that answers its name (`PluginContext::answer`). Derived
/// with `answer = Type` in `#[event(..)]`; the answer travels in the
/// request's codec.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request: a call needs the type of its answer",
    label = "not a `Request`",
    note = "add `answer = Type` to its `#[event(..)]` attribute"
)]
pub trait Request: TypedEvent {
    /// The type of the answer.
    type Answer: Serialize + DeserializeOwned + Send + 'static;
}

/// An event: a name and a payload in a [`Codec`]. Cheap to clone.
///
/// # Examples
/// ```
/// use horizon_plugin_sdk::{Codec, Event};
/// let event = Event::new("ping", &21u64).unwrap();
/// assert_eq!(event.name(), "ping");
/// assert_eq!(event.json::<u64>().unwrap(), 21);
///
/// let binary = Event::encode("ping", &21u64, Codec::Postcard).unwrap();
/// assert_eq!(binary.decode::<u64>().unwrap(), 21);
/// assert!(binary.json::<u64>().is_err()); // not JSON: `decode` reads every codec
/// ```
#[derive(Clone)]
pub struct Event {
    name: Arc<str>,
    /// The wire form (see the module documentation).
    wire: Wire,
    codec: Codec,
    source: Option<Arc<str>>,
}

/// An event's wire bytes: this side's, or (in a plugin) a host buffer lent
/// for a large payload.
#[derive(Clone)]
enum Wire {
    Owned(Arc<[u8]>),
    #[cfg(feature = "plugin")]
    Lent(Arc<crate::boundary::lent::Lent>),
}

impl Wire {
    fn bytes(&self) -> &[u8] {
        match self {
            Wire::Owned(bytes) => bytes,
            #[cfg(feature = "plugin")]
            Wire::Lent(lent) => lent.bytes(),
        }
    }
}

impl Event {
    /// Serializes `payload` to JSON.
    pub fn new<T: Serialize + ?Sized>(name: &str, payload: &T) -> Result<Event, PluginError> {
        Event::encode(name, payload, Codec::Json)
    }

    /// Serializes `payload` with `codec` (`Json` or `Postcard`; for raw
    /// bytes, [`Event::raw`]).
    ///
    /// # Errors
    /// When the payload does not serialize, or `codec` has no serializer.
    pub fn encode<T: Serialize + ?Sized>(
        name: &str,
        payload: &T,
        codec: Codec,
    ) -> Result<Event, PluginError> {
        Ok(Event::from_wire_bytes(name, codec.encode(name, payload)?))
    }

    /// The event a [`TypedEvent`] value is: its name, in its codec.
    pub fn typed<T: TypedEvent>(payload: &T) -> Result<Event, PluginError> {
        Event::encode(T::NAME, payload, T::CODEC)
    }

    /// An event whose payload is bytes in the caller's own format
    /// ([`Codec::Raw`]), read back by [`Event::payload`].
    pub fn raw(name: &str, bytes: &[u8]) -> Event {
        let mut wire = Vec::with_capacity(HEADER + bytes.len());
        wire.extend_from_slice(&[TAGGED, Codec::Raw.id()]);
        wire.extend_from_slice(bytes);
        Event::from_wire_bytes(name, wire)
    }

    /// An event whose payload is already JSON. The bytes are not validated
    /// here; [`Event::json`] reports malformed JSON. Bytes that start with
    /// `0x00` are no JSON text: they are read as a tagged payload, as on
    /// the wire, so every side sees the same codec ([`Event::from_wire_bytes`]).
    pub fn from_json_bytes(name: &str, payload: impl Into<Arc<[u8]>>) -> Event {
        Event::from_wire_bytes(name, payload)
    }

    /// An event from its wire form ([`Event::wire_bytes`]): JSON text, or a
    /// tagged payload of another codec. What a host reads from a plugin.
    pub fn from_wire_bytes(name: &str, wire: impl Into<Arc<[u8]>>) -> Event {
        Event::from_shared_wire(Arc::from(name), wire.into())
    }

    /// As [`Event::from_wire_bytes`], with a name that is already shared.
    fn from_shared_wire(name: Arc<str>, wire: Arc<[u8]>) -> Event {
        Event::from_parts(name, Wire::Owned(wire))
    }

    fn from_parts(name: Arc<str>, wire: Wire) -> Event {
        let codec = codec_of(wire.bytes());
        Event {
            name,
            wire,
            codec,
            source: None,
        }
    }

    /// An event whose name is already shared (no copy of the name), from
    /// the wire form a host passed.
    #[cfg(feature = "plugin")]
    pub(crate) fn from_shared(name: Arc<str>, wire: &[u8]) -> Event {
        Event::from_shared_wire(name, Arc::from(wire))
    }

    /// As [`Event::from_shared`], for the payload of the handler call the
    /// host is making: kept without a copy if the host lends it
    /// (`boundary::lent`).
    #[cfg(feature = "plugin")]
    pub(crate) fn from_call(
        api: Option<&crate::abi::HostApi>,
        name: Arc<str>,
        wire: &[u8],
    ) -> Event {
        match api.and_then(|api| crate::boundary::lent::Lent::retain(api, wire)) {
            Some(lent) => Event::from_parts(name, Wire::Lent(Arc::new(lent))),
            None => Event::from_shared(name, wire),
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

    /// The event's name as a shared string (no copy).
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// The codec of the payload, as the emitter chose it.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The payload decoded with its codec, whichever it is.
    ///
    /// # Errors
    /// When the payload does not decode as a `T` (the error names the
    /// event, the type and the codec), or is raw bytes or of an unknown
    /// codec. Never panics on malformed input.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        decode_payload(&self.name, self.codec, self.payload())
    }

    /// The payload decoded from JSON.
    ///
    /// # Errors
    /// When the payload is not JSON of a `T`, or not JSON at all (see
    /// [`Event::decode`], which reads every codec).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        match self.codec {
            Codec::Json => {
                serde_json::from_slice(self.payload()).map_err(|e| self.undecodable::<T>(e))
            }
            other => Err(PluginError::rejected(
                format!(
                    "event `{}` is {other}, not JSON: read it with `Event::decode`",
                    self.name
                ),
                NotJson,
            )),
        }
    }

    fn undecodable<T>(&self, e: impl std::error::Error + Send + Sync + 'static) -> PluginError {
        undecodable::<T>(&self.name, self.codec, e)
    }

    /// The payload's bytes in its codec (JSON text, postcard bytes, the raw
    /// bytes), without the wire header. To forward an event as it is, use
    /// [`Event::wire_bytes`] and [`Event::from_wire_bytes`], which keep its
    /// codec.
    pub fn payload(&self) -> &[u8] {
        payload_of(self.wire.bytes(), self.codec)
    }

    /// The wire form: what crosses the library boundary (see the module
    /// documentation), for a host that forwards events elsewhere.
    pub fn wire_bytes(&self) -> &[u8] {
        self.wire.bytes()
    }

    /// The shared buffer of the wire form, when this side owns it (what a
    /// host lends to handlers; `None` for bytes lent by the other side).
    pub fn shared_wire(&self) -> Option<&Arc<[u8]>> {
        match &self.wire {
            Wire::Owned(bytes) => Some(bytes),
            #[cfg(feature = "plugin")]
            Wire::Lent(_) => None,
        }
    }
}

/// The codec of a payload in wire form.
fn codec_of(wire: &[u8]) -> Codec {
    match *wire {
        [TAGGED, id, ..] => Codec::from_id(id),
        // A lone `0x00`: no JSON either; `json` reports it.
        _ => Codec::Json,
    }
}

/// The payload's bytes of `wire`, whose codec is `codec` ([`codec_of`]).
fn payload_of(wire: &[u8], codec: Codec) -> &[u8] {
    match codec {
        Codec::Json => wire,
        _ => &wire[HEADER..],
    }
}

/// [`Event::decode`] for a caller holding only the wire bytes of event
/// `name` (a synchronous handler reading the host's payload in place).
#[cfg(feature = "plugin")]
pub(crate) fn decode_wire<T: DeserializeOwned>(name: &str, wire: &[u8]) -> Result<T, PluginError> {
    let codec = codec_of(wire);
    decode_payload(name, codec, payload_of(wire, codec))
}

/// Decodes `body`, the payload of event `name` in `codec`, as a `T`.
fn decode_payload<T: DeserializeOwned>(
    name: &str,
    codec: Codec,
    body: &[u8],
) -> Result<T, PluginError> {
    match codec {
        Codec::Json => serde_json::from_slice(body).map_err(|e| undecodable::<T>(name, codec, e)),
        Codec::Postcard => match postcard::take_from_bytes(body) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(undecodable::<T>(
                name,
                codec,
                PluginError::msg(format!("{} bytes left over after the value", rest.len())),
            )),
            Err(e) => Err(undecodable::<T>(name, codec, e)),
        },
        Codec::Raw | Codec::Unknown(_) => Err(undecodable::<T>(
            name,
            codec,
            PluginError::msg(
                "no decoder for this codec (raw bytes are read with `Event::payload`)",
            ),
        )),
    }
}

/// A payload of event `name` in `codec` that does not decode as a `T`:
/// rejected, naming the event, the type and the codec.
fn undecodable<T>(
    name: &str,
    codec: Codec,
    e: impl std::error::Error + Send + Sync + 'static,
) -> PluginError {
    PluginError::rejected(
        format!(
            "event `{name}`: the payload does not decode as `{}` ({codec}): {e}",
            std::any::type_name::<T>(),
        ),
        e,
    )
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Event");
        s.field("name", &self.name).field("codec", &self.codec);
        match self.codec {
            Codec::Json => s.field("payload", &String::from_utf8_lossy(self.payload())),
            _ => s.field("payload", &Hex(self.payload())),
        };
        s.finish()
    }
}

/// The source of [`Event::json`]'s error for an event of another codec.
#[derive(Debug)]
struct NotJson;

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the payload is not JSON")
    }
}

impl std::error::Error for NotJson {}

/// Bytes written as hex in groups of four, quoted.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Codec, Event};

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
        /// Every codec round-trips, and its payload is the body without
        /// the wire header; the wire form read back is the same event.
        #[test]
        fn every_codec_round_trips(value in any::<Payload>(), raw in any::<Vec<u8>>()) {
            for codec in [Codec::Json, Codec::Postcard] {
                let event = Event::encode("e", &value, codec).unwrap();
                prop_assert_eq!(event.codec(), codec);
                prop_assert_eq!(event.decode::<Payload>().unwrap(), value.clone());
                let copy = Event::from_wire_bytes("e", event.wire_bytes().to_vec());
                prop_assert_eq!(copy.codec(), codec);
                prop_assert_eq!(copy.payload(), event.payload());
                prop_assert_eq!(copy.decode::<Payload>().unwrap(), value.clone());
            }
            let event = Event::raw("r", &raw);
            prop_assert_eq!(event.codec(), Codec::Raw);
            prop_assert_eq!(event.payload(), raw.as_slice());
            let copy = Event::from_wire_bytes("r", event.wire_bytes().to_vec());
            prop_assert_eq!(copy.payload(), raw.as_slice());
            prop_assert!(copy.decode::<Payload>().is_err());
        }

        /// A postcard payload cut short, extended, or of another type is
        /// an error naming the event, the type and the codec.
        #[test]
        fn malformed_postcard_payloads_are_errors(value in any::<Payload>(), cut in any::<proptest::sample::Index>(), garbage in any::<u8>()) {
            let event = Event::encode("move", &value, Codec::Postcard).unwrap();
            let wire = event.wire_bytes();
            let cut_at = 2 + cut.index(wire.len() - 2);
            let truncated = Event::from_wire_bytes("move", wire[..cut_at].to_vec());
            let err = truncated.decode::<Payload>().unwrap_err().to_string();
            prop_assert!(err.contains("event `move`") && err.contains("postcard") && err.contains("String"), "{}", err);
            let mut extended = wire.to_vec();
            extended.push(garbage);
            let err = Event::from_wire_bytes("move", extended).decode::<Payload>().unwrap_err();
            prop_assert!(err.to_string().contains("left over"), "{}", err);
        }
    }
}

#[test]
fn decoding_the_wrong_codec_names_it() {
    let json = Event::new("hello", &1u32).unwrap();
    let err = json.decode::<String>().unwrap_err().to_string();
    assert!(
        err.contains("`hello`") && err.contains("alloc::string::String") && err.contains("(JSON)"),
        "{err}"
    );
    let binary = Event::encode("hello", &1u32, Codec::Postcard).unwrap();
    let err = binary.json::<u32>().unwrap_err().to_string();
    assert!(err.contains("postcard, not JSON"), "{err}");
    let unknown = Event::from_wire_bytes("hello", vec![0, 9, 1]);
    assert!(matches!(unknown.codec(), Codec::Unknown(c) if c.id() == 9));
    let zero = Event::from_json_bytes("hello", vec![0, 0, 1]);
    assert!(matches!(zero.codec(), Codec::Unknown(c) if c.id() == 0));
    assert!(zero.json::<u8>().is_err() && zero.decode::<u8>().is_err());
    assert!(
        unknown
            .decode::<u8>()
            .unwrap_err()
            .to_string()
            .contains("unknown codec 9")
    );
    assert!(Event::encode("x", &1u8, Codec::Raw).is_err());
    assert_eq!(
        format!("{:?}", Event::raw("r", &[1, 2, 3, 4, 5])),
        "Event { name: \"r\", codec: Raw, payload: \"01020304 05\" }"
    );
}
