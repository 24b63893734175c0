use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct A;

#[horizon_plugin]
impl Plugin for A {
    const NAME: &'static str = "a";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct B;

#[horizon_plugin]
impl Plugin for B {
    const NAME: &'static str = "b";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
}

fn main() {}
