use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => {
                tokio::task::block_in_place(|| ());
            }
        }
        Ok(())
    }
}

fn main() {}
