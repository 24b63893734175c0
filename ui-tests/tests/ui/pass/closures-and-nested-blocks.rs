//! Calls inside closures, nested async blocks, and `async move` blocks
//! passed to other functions.
use std::future::Future;
use std::time::Duration;

use horizon_plugin_sdk::prelude::*;

fn run_later<F: Future<Output = ()> + Send + 'static>(f: F) -> F {
    f
}

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
        let make = |n: u64| tokio::spawn(async move { n });
        make(1).await?;
        let nested = async {
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            .await;
        };
        nested.await;
        run_later(async move {
            let _ = tokio::spawn(async {}).await;
        })
        .await;
        ctx.on("e", |_event: Event| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let n = tokio::task::spawn_blocking(|| 2).await?;
            assert_eq!(n, 2);
            Ok(())
        })?;
        // A plain thread of the plugin may use the routed calls too: they go
        // through the host's table, which works from any thread.
        std::thread::spawn(|| {
            drop(tokio::spawn(async {}));
        });
        Ok(())
    }

    async fn on_unload(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

fn main() {}
