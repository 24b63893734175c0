use horizon_plugin_sdk::prelude::*;

#[horizon_plugin]
async fn on_load() {}

fn main() {}
