use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P<T>(T);

#[horizon_plugin]
impl<T: Default + Send + 'static> Plugin for P<T> {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
}

fn main() {}
