//! Calls inside macro invocations: `tokio::select!`, `tokio::join!`,
//! `tokio::try_join!`, `futures::select!`, `vec![]`, `format!`.
use std::time::Duration;

use futures::FutureExt;
use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let won = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1)) => "sleep",
            v = tokio::spawn(async { 1 }) => { v?; "spawn" }
        };
        let (a, b) = tokio::join!(tokio::spawn(async { 1 }), tokio::time::sleep(Duration::from_millis(1)));
        a?;
        let _ = b;
        let (c, d) = tokio::try_join!(tokio::spawn(async { 2 }), tokio::task::spawn_blocking(|| 3))?;
        futures::select! {
            _ = tokio::time::sleep(Duration::from_millis(1)).fuse() => {},
            _ = tokio::task::yield_now().fuse() => {},
        }
        let handles = vec![tokio::spawn(async { 4 }), ::tokio::spawn(async { 5 })];
        let message = format!("{won} {c} {d} {}", tokio::spawn(async { 6 }).await?);
        for h in handles {
            h.await?;
        }
        assert!(!message.is_empty());
        Ok(())
    }
}

fn main() {}
