use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        static HANDLE: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
        let _ = HANDLE.get();
        Ok(())
    }
}

fn main() {}
