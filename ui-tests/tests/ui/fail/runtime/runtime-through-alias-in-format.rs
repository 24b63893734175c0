use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        // A module alias, used inside a macro argument: refused like outside.
        use tokio::runtime;
        println!("{}", format!("{}", runtime::Runtime::new().is_ok()));
        Ok(())
    }
}

fn main() {}
