use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let n = tokio::task::block_in_place(|| 1 + 1);
        assert_eq!(n, 2);
        Ok(())
    }
}

fn main() {}
