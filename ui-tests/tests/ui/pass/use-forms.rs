//! `use` forms inside the bodies: plain, `self` with a group, renamed, glob.
use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        use std::time::Duration;
        use tokio::spawn;
        use tokio::time::sleep as nap;
        use tokio::time::{self, sleep};
        use tokio::{sync::oneshot, task::JoinHandle};

        let handle: JoinHandle<u8> = spawn(async { 1 });
        nap(Duration::from_millis(1)).await;
        sleep(Duration::from_millis(1)).await;
        time::sleep(Duration::from_millis(1)).await;
        let (tx, rx) = oneshot::channel();
        tx.send(handle.await?).unwrap();
        assert_eq!(rx.await.unwrap(), 1);
        {
            use tokio::time::*;
            let _: Interval = interval(Duration::from_millis(1));
            let _: Result<(), error::Elapsed> = timeout(Duration::from_millis(1), async {}).await;
        }
        Ok(())
    }
}

fn main() {}
