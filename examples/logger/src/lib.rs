//! Horizon's logger plugin: on each `server_tick` it does some async work
//! and emits `logger:activity_logged`.
//!
//! The original needed `context.tokio_handle()` and `handle.block_on(..)`
//! inside a synchronous handler (blocking a host worker). Here the handler
//! is async and uses tokio directly; `#[horizon_plugin]` routes the calls
//! through the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use horizon_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Tick {
    tick: u64,
}

#[derive(Serialize)]
struct Activity {
    activity_type: &'static str,
    details: String,
    tick: u64,
    ticks_seen: u64,
}

#[derive(Default)]
pub struct LoggerPlugin {
    ticks_seen: Arc<AtomicU64>,
}

#[horizon_plugin]
impl Plugin for LoggerPlugin {
    const NAME: &'static str = "logger";

    async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
        let events = ctx.clone();
        let ticks_seen = Arc::clone(&self.ticks_seen);
        ctx.on("server_tick", move |event: Event| {
            let events = events.clone();
            let ticks_seen = Arc::clone(&ticks_seen);
            async move {
                let Tick { tick } = event.json()?;
                let seen = ticks_seen.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(tick, seen, "logging activity");
                // Some async work: flush a buffer in the background, wait a little.
                let flushed = tokio::spawn(async move { seen * 64 }).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
                events
                    .emit(
                        "logger:activity_logged",
                        &Activity {
                            activity_type: "periodic_summary",
                            details: format!("Logger active, {flushed} bytes flushed"),
                            tick,
                            ticks_seen: seen,
                        },
                    )
                    .await
            }
        })?;
        Ok(())
    }

    async fn on_unload(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
        let seen = self.ticks_seen.load(Ordering::Relaxed);
        ctx.emit("logger:stopped", &seen).await
    }
}
