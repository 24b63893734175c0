//! Measurements criterion's per-iteration model does not fit: 1 ms sleep
//! lateness percentiles (routed vs native), load and unload times, 100
//! plugins loaded one after another, and memory per plugin, per routed task
//! and per registered handler (RSS deltas).
//!
//! `cargo bench -p horizon-host-runtime --bench extras`; with `-- --test`
//! (as in the test command) it runs a tiny smoke version.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use horizon_host_runtime::{Event, PluginHost};
use serde_json::json;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let scale = |full: u64| if smoke { (full / 100).max(2) } else { full };

    for (flavour, rt) in [
        ("multi-thread", common::multi_thread()),
        ("current-thread", common::current_thread()),
    ] {
        let host = PluginHost::new(rt.handle().clone());
        let lateness: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink = Arc::clone(&lateness);
        host.on("bench:lateness", move |e: Event| {
            *sink.lock().unwrap() = e.json().unwrap();
        });
        let samples = scale(500);
        let (mut routed, mut native) = rt.block_on(async {
            host.load(common::fresh_copy("bench")).await.unwrap();
            host.emit(
                "bench:run",
                &json!({ "kind": "sleep_1ms", "iters": samples }),
            )
            .await
            .unwrap();
            let native = tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..samples {
                    let t = Instant::now();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    v.push(t.elapsed().as_nanos() as u64 - 1_000_000);
                }
                v
            })
            .await
            .unwrap();
            host.shutdown().await;
            (lateness.lock().unwrap().clone(), native)
        });
        routed.sort_unstable();
        native.sort_unstable();
        println!(
            "sleep(1 ms) lateness, {flavour}, {samples} samples: native p50 {:.1} µs p99 {:.1} µs | routed p50 {:.1} µs p99 {:.1} µs",
            percentile(&native, 0.5) as f64 / 1e3,
            percentile(&native, 0.99) as f64 / 1e3,
            percentile(&routed, 0.5) as f64 / 1e3,
            percentile(&routed, 0.99) as f64 / 1e3,
        );
    }

    let rt = common::multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        // load and unload, separately, of the same small plugin.
        let path = common::fresh_copy("bench");
        let rounds = scale(200);
        let (mut load, mut unload) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let t = Instant::now();
            let id = host.load(&path).await.unwrap();
            load += t.elapsed();
            let t = Instant::now();
            host.unload(id).await.unwrap();
            unload += t.elapsed();
        }
        println!(
            "load: {:.1} µs, unload: {:.1} µs (mean of {rounds})",
            load.as_secs_f64() * 1e6 / rounds as f64,
            unload.as_secs_f64() * 1e6 / rounds as f64
        );

        // 100 plugins loaded one after another, and the memory they take.
        let count = scale(100);
        let paths: Vec<_> = (0..count).map(|_| common::fresh_copy("bench")).collect();
        let before = rss_kib();
        let t = Instant::now();
        for p in &paths {
            host.load(p).await.unwrap();
        }
        let elapsed = t.elapsed();
        let after = rss_kib();
        println!(
            "{count} plugins loaded one after another in {:.1} ms; RSS +{} KiB, {:.0} KiB per loaded plugin (library mapping, private runtime thread, state)",
            elapsed.as_secs_f64() * 1e3,
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / count as f64
        );
        host.shutdown().await;

        // Per routed task and per handler: hold many, measure RSS.
        let elapsed: Arc<Mutex<Option<u64>>> = Arc::default();
        let sink = Arc::clone(&elapsed);
        host.on("bench:elapsed", move |e: Event| *sink.lock().unwrap() = Some(e.json().unwrap()));
        host.load(common::fresh_copy("bench")).await.unwrap();
        let n = scale(100_000);
        // Handlers first: freed task memory would be reused by the allocator
        // and hide what handlers take.
        let before = rss_kib();
        host.emit("bench:run", &json!({ "kind": "subscribe", "iters": n })).await.unwrap();
        let subscribed = rss_kib();
        println!(
            "{n} registered handlers: RSS +{} KiB, {:.0} bytes per handler (boxed closure, host subscription)",
            subscribed.saturating_sub(before),
            subscribed.saturating_sub(before) as f64 * 1024.0 / n as f64
        );
        let before = rss_kib();
        host.emit("bench:run", &json!({ "kind": "hold", "iters": n })).await.unwrap();
        let held = rss_kib();
        host.emit("bench:run", &json!({ "kind": "release", "iters": 0 })).await.unwrap();
        println!(
            "{n} pending routed tasks: RSS +{} KiB, {:.0} bytes per task (task cell, host task, registry slot, a oneshot)",
            held.saturating_sub(before),
            held.saturating_sub(before) as f64 * 1024.0 / n as f64
        );
        host.shutdown().await;
    });
}
