use horizon_plugin_sdk::prelude::*;
use std::time::Duration;
#[derive(Default)]
pub struct Echo;
impl Plugin for Echo {
    const NAME: &'static str = "echo";
    async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
        let out = ctx.clone();
        ctx.on(
            "ping",
            move |event: Event| {
                let out = out.clone();
                async move {
                    let n: u64 = event.json()?;
                    ::horizon_plugin_sdk::rt::time::sleep(Duration::from_millis(2))
                        .await;
                    let doubled = ::horizon_plugin_sdk::rt::spawn(async move { n * 2 })
                        .await
                        .map_err(PluginError::msg)?;
                    out.emit("echo:pong", &doubled).await
                }
            },
        )?;
        Ok(())
    }
}
const _: () = {
    #[unsafe(no_mangle)]
    pub static HORIZON_PLUGIN_DECLARATION: ::horizon_plugin_sdk::__private::ExportedDeclaration = ::horizon_plugin_sdk::__private::declare::<
        Echo,
    >();
};
::horizon_plugin_sdk::__private::thread_exit_hook!();
