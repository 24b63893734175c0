use horizon_plugin_sdk::prelude::*;

/// A tokio handle that reaches plugin code some other way than the SDK.
fn handle_from_somewhere() -> tokio::runtime::Handle {
    unimplemented!()
}

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let n = handle_from_somewhere().block_on(async { 1 });
        assert_eq!(n, 1);
        Ok(())
    }
}

fn main() {}
