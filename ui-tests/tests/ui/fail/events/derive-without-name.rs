// `#[derive(TypedEvent)]` needs the event's name.
#[derive(serde::Serialize, serde::Deserialize, horizon_plugin_sdk::TypedEvent)]
struct Moved {
    x: f32,
}

#[derive(serde::Serialize, serde::Deserialize, horizon_plugin_sdk::TypedEvent)]
#[event(name = "moved", codec = cbor)]
struct UnknownCodec {
    x: f32,
}

fn main() {}
