use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let handle = tokio::runtime::Handle::current();
        let n = handle.block_on(async { 1 });
        assert_eq!(n, 1);
        Ok(())
    }
}

fn main() {}
