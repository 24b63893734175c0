use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
}

fn main() {}
