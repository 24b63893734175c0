//! The expansion names only absolute paths through `::horizon_plugin_sdk`: local
//! modules called `tokio`, `core` and `std` beside the plugin change nothing,
//! and rewritten calls do not resolve through the local `tokio`.
#![allow(dead_code)]

mod tokio {}
mod core {}
mod std {}

use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let n = tokio::spawn(async { 1 }).await?;
        tokio::time::sleep(tokio::time::Duration::from_millis(n)).await;
        Ok(())
    }
}

fn main() {}
