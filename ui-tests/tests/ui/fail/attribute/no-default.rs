use horizon_plugin_sdk::prelude::*;

pub struct P {
    _port: u16,
}

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
}

fn main() {}
