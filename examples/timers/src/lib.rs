//! A plugin that keeps a heartbeat with `tokio::time::interval`, hashes in
//! `spawn_blocking`, bounds work with `timeout`, and races a sleep against a
//! channel in `tokio::select!`, all inside background tasks it `spawn`s.

use std::time::Duration;

use horizon_plugin_sdk::prelude::*;
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Default)]
pub struct Timers;

#[horizon_plugin]
impl Plugin for Timers {
    const NAME: &'static str = "timers";

    async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
        let (tx, mut rx) = mpsc::channel::<u64>(16);

        // Each server tick is forwarded to the background worker.
        ctx.on("server_tick", move |event: Event| {
            let tx = tx.clone();
            async move {
                let tick: serde_json::Value = event.json()?;
                let n = tick["tick"].as_u64().unwrap_or(0);
                // Never wait long on a full queue.
                match tokio::time::timeout(Duration::from_millis(50), tx.send(n)).await {
                    Ok(sent) => sent.map_err(PluginError::msg),
                    Err(_) => Err(PluginError::msg("worker queue full")),
                }
            }
        })?;

        // A background worker: heartbeats on an interval, hashes ticks on the
        // blocking pool, and reports idleness with select!.
        let events = ctx.clone();
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(Duration::from_millis(1000));
            let mut beats = 0u64;
            loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        beats += 1;
                        let _ = events.emit("timers:heartbeat", &json!({ "beat": beats })).await;
                    }
                    Some(tick) = rx.recv() => {
                        let digest = tokio::task::spawn_blocking(move || {
                            // Stand-in for CPU-heavy work.
                            (0..50_000u64).fold(tick, |h, i| h.wrapping_mul(31).wrapping_add(i))
                        })
                        .await
                        .unwrap_or_default();
                        let _ = events.emit("timers:digest", &json!({ "tick": tick, "digest": digest })).await;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        let _ = events.emit("timers:idle", &json!({ "beats": beats })).await;
                    }
                }
            }
        });
        Ok(())
    }
}
