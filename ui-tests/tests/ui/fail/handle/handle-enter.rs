use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let handle = tokio::runtime::Handle::current();
        let _guard = handle.enter();
        Ok(())
    }
}

fn main() {}
