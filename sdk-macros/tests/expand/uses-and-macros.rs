use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Timers;

#[horizon_plugin]
impl Plugin for Timers {
    const NAME: &'static str = "timers";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        use std::time::Duration;
        use tokio::time::{self, sleep as nap};
        use tokio::{spawn, sync::mpsc};

        let (tx, mut rx) = mpsc::channel::<u64>(1);
        let handle: tokio::task::JoinHandle<()> = spawn(async move {
            let mut ticks = time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = ticks.tick() => { let _ = tx.send(1).await; }
                    _ = ::tokio::time::sleep(Duration::from_secs(1)) => break,
                }
            }
        });
        nap(Duration::from_millis(1)).await;
        // Aliases of routed `use`s, inside a macro's arguments.
        let _ = tokio::join!(spawn(async {}), nap(Duration::from_millis(1)));
        println!("{:?}", time::Instant::now());
        let _ = rx.recv().await;
        handle.abort();
        Ok(())
    }

    async fn on_unload(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let sum = tokio::task::spawn_blocking(|| (1..=10u64).sum::<u64>()).await?;
        println!("{}", format!("{sum} {:?}", tokio::time::timeout(std::time::Duration::ZERO, async {}).await));
        Ok(())
    }
}
