//! Type paths follow their calls: `JoinHandle<T>`, `JoinError`, `Interval`,
//! `Sleep`, `Timeout<F>`, `error::Elapsed`, `Instant`, `Handle`.
use std::pin::Pin;
use std::time::Duration;

use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let handle: tokio::task::JoinHandle<u32> = tokio::spawn(async { 1 });
        let joined: Result<u32, tokio::task::JoinError> = handle.await;
        joined?;
        let mut interval: tokio::time::Interval = tokio::time::interval(Duration::from_millis(1));
        interval.tick().await;
        let sleep: Pin<Box<tokio::time::Sleep>> = Box::pin(tokio::time::sleep(Duration::from_millis(1)));
        sleep.await;
        let elapsed: Result<(), tokio::time::error::Elapsed> =
            tokio::time::timeout(Duration::from_millis(1), async {}).await;
        elapsed?;
        let deadline: tokio::time::Instant = tokio::time::Instant::now();
        let _: tokio::time::Timeout<std::future::Ready<()>> =
            tokio::time::timeout_at(deadline, std::future::ready(()));
        let _: tokio::runtime::Handle = tokio::runtime::Handle::current();
        Ok(())
    }
}

fn main() {}
