//! Every routed call, written `tokio::…`, `::tokio::…` and through `tokio::task`.
use std::time::Duration;

use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let a = tokio::spawn(async { 1 });
        let b = ::tokio::spawn(async { 2 });
        let c = tokio::task::spawn(async { 3 });
        let d = ::tokio::task::spawn_blocking(|| 4);
        let e = tokio::task::spawn_blocking(|| 5);
        tokio::task::yield_now().await;
        ::tokio::task::yield_now().await;
        tokio::task::consume_budget().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        ::tokio::time::sleep_until(tokio::time::Instant::now()).await;
        let mut i = tokio::time::interval(Duration::from_millis(1));
        i.tick().await;
        let mut j = ::tokio::time::interval_at(::tokio::time::Instant::now(), Duration::from_millis(1));
        j.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        j.tick().await;
        let _ = tokio::time::timeout(Duration::from_millis(1), async {}).await;
        let _ = ::tokio::time::timeout_at(tokio::time::Instant::now(), async {}).await;
        let h = tokio::runtime::Handle::current();
        let f = h.spawn(async { 6 });
        let g = ::tokio::runtime::Handle::try_current().unwrap().spawn_blocking(|| 7);
        let sum = a.await? + b.await? + c.await? + d.await? + e.await? + f.await? + g.await?;
        assert_eq!(sum, 28);
        Ok(())
    }
}

fn main() {}
