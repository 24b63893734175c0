//! The expansion is silent under `deny(warnings)` and clippy's groups
//! (clippy itself checks the `load-error` fixture, which carries the same
//! attribute, in `cargo clippy --all-targets`).
#![deny(warnings, clippy::all, clippy::pedantic)]

use horizon_plugin_sdk::prelude::*;

/// A plugin.
#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        tokio::spawn(async {}).await?;
        Ok(())
    }
}

fn main() {}
