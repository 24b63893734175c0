use horizon_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct P;

#[horizon_plugin]
impl Plugin for P {
    const NAME: &'static str = "p";

    async fn on_load(&mut self, _ctx: PluginContext) -> Result<(), PluginError> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        tokio::task::block_in_place(|| ());
        tokio::task::spawn_local(async {});
        drop(rt);
        Ok(())
    }

    fn on_unload(&mut self, _ctx: PluginContext) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }
}

// The item is still emitted: this uses it and type-checks.
fn uses_the_plugin(p: &mut P, ctx: PluginContext) {
    let _ = p.on_load(ctx);
}

fn main() {
    let _ = uses_the_plugin;
}
