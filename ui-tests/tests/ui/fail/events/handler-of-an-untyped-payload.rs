// `on_event` takes a handler of a typed event; a plain serde type is not
// one, and `call` needs a request (a typed event with an answer).
use horizon_plugin_sdk::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Moved {
    x: f32,
}

#[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
#[event(name = "tick")]
struct Tick;

async fn register(ctx: PluginContext) -> Result<(), PluginError> {
    ctx.on_event(|moved: Moved| async move {
        let _ = moved.x;
        Ok(())
    })?;
    let _answer = ctx.call(&Tick).await?;
    Ok(())
}

fn main() {
    let _ = register;
}
