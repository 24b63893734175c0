use horizon_plugin_sdk::prelude::*;
#[derive(Default)]
pub struct Timers;
impl Plugin for Timers {
    const NAME: &'static str = "timers";
    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        use std::time::Duration;
        use ::horizon_plugin_sdk::rt::time;
        use ::horizon_plugin_sdk::rt::time::sleep as nap;
        use ::horizon_plugin_sdk::rt::spawn;
        use tokio::sync::mpsc;
        let (tx, mut rx) = mpsc::channel::<u64>(1);
        let handle: ::horizon_plugin_sdk::rt::task::JoinHandle<()> = spawn(async move {
            let mut ticks = time::interval(Duration::from_millis(10));
            loop {
                ::horizon_plugin_sdk::__private::tokio::select! {
                    _ = ticks.tick() => { let _ = tx.send(1). await; } _ =
                    ::horizon_plugin_sdk::rt::time::sleep(Duration::from_secs(1)) =>
                    break,
                }
            }
        });
        nap(Duration::from_millis(1)).await;
        let _ = ::horizon_plugin_sdk::__private::tokio::join!(
            spawn(async {}), nap(Duration::from_millis(1))
        );
        println!("{:?}", time::Instant::now());
        let _ = rx.recv().await;
        handle.abort();
        Ok(())
    }
    async fn on_unload(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let sum = ::horizon_plugin_sdk::rt::task::spawn_blocking(|| {
                (1..=10u64).sum::<u64>()
            })
            .await?;
        println!(
            "{}", format!("{sum} {:?}",
            ::horizon_plugin_sdk::rt::time::timeout(std::time::Duration::ZERO, async {}).
            await)
        );
        Ok(())
    }
}
const _: () = {
    #[unsafe(no_mangle)]
    pub static HORIZON_PLUGIN_DECLARATION: ::horizon_plugin_sdk::__private::ExportedDeclaration = ::horizon_plugin_sdk::__private::declare::<
        Timers,
    >();
};
::horizon_plugin_sdk::__private::thread_exit_hook!();
