use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    fn on_load(&mut self, _ctx: PluginContext) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }
}

fn main() {}
