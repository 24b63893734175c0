use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        use tokio::runtime;
        tokio::select! {
            () = async { let _ = runtime::Runtime::new(); } => {}
        }
        Ok(())
    }
}

fn main() {}
