//! Measurements criterion's per-iteration model does not fit: the routed /
//! native ratios of spawn + await and emit measured in alternating rounds
//! (robust to this VM's drift between criterion's separate runs), 1 ms
//! sleep lateness percentiles (routed vs native, also in alternating
//! rounds), load and unload times, 100 plugins loaded one after another,
//! and memory per plugin, per routed task and per registered handler (RSS
//! deltas).
//!
//! `cargo bench -p horizon-plugin-host --bench extras`; with `-- --test`
//! (as in the test command) it runs a tiny smoke version.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use horizon_plugin_host::{Event, PluginHost};
use serde_json::json;
use support::{Caller, Loaded, common, native};

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `native` and `routed` (each timing `iters` iterations) in
/// alternating rounds; prints the median time per iteration of each and the
/// median and spread of the per-round ratios.
fn interleaved(
    what: &str,
    rounds: usize,
    iters: u64,
    mut native: impl FnMut(u64) -> Duration,
    mut routed: impl FnMut(u64) -> Duration,
) {
    let (mut n, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer cache.
        let (tn, tr) = if round % 2 == 0 {
            let tn = native(iters);
            (tn, routed(iters))
        } else {
            let tr = routed(iters);
            (native(iters), tr)
        };
        let (tn, tr) = (
            tn.as_nanos() as f64 / iters as f64,
            tr.as_nanos() as f64 / iters as f64,
        );
        n.push(tn);
        r.push(tr);
        ratios.push(tr / tn);
    }
    let spread = {
        let mut s = ratios.clone();
        s.sort_by(f64::total_cmp);
        (s[0], s[s.len() - 1])
    };
    println!(
        "{what}: native {:.1} ns, routed {:.1} ns, ratio {:.2}x (median of {rounds} alternating rounds of {iters}; min {:.2}x, max {:.2}x)",
        median(n),
        median(r),
        median(ratios),
        spread.0,
        spread.1,
    );
}

/// `HORIZON_BENCH_ONLY=<loop>:<iters>` runs one loop on a current-thread
/// runtime and exits, for instruction counts under callgrind (see
/// `scripts/instructions`): `spawn_native`, `spawn_routed`,
/// `emit_in_process`, `emit_host_handler`, `emit_routed`,
/// `emit_routed_sync` or `emit_routed_typed_sync`; or
/// `ticker:<round trips>` runs only [`ticker_gaps`].
fn only(spec: &str) {
    let (which, iters) = spec.split_once(':').expect("<loop>:<iters>");
    let iters: u64 = iters.parse().expect("a number of iterations");
    // `HORIZON_BENCH_NO_BUDGET=1`: without the plugin's cooperative budget.
    let cooperative = std::env::var_os("HORIZON_BENCH_NO_BUDGET").is_none_or(|v| v != "1");
    let rt = common::current_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .cooperative_budget(cooperative)
        .build();
    let loaded = Loaded::with_host(rt, host, 1);
    let rt = &loaded.rt;
    let _elapsed = match which {
        "spawn_native" => native(rt, move || support::native_spawn_loop(iters)),
        "spawn_routed" => loaded.routed("spawn", iters),
        "emit_in_process" => native(rt, move || support::in_process_emit_loop(iters)),
        "emit_routed" => loaded.emit_loop(iters, 1),
        "emit_routed_sync" => loaded.sync_emit_loop_from(iters, Caller::Task),
        "emit_routed_typed_sync" => loaded.typed_sync_emit_loop_from(iters, Caller::Task),
        "emit_host_handler" => {
            let host = support::host_with_host_handler(rt);
            support::host_emit_loop(rt, &host, iters)
        }
        other => panic!("unknown loop {other}"),
    };
    rt.block_on(loaded.host.shutdown());
}

/// A 1 ms ticker task's longest gap on a current-thread runtime while
/// another task runs `round_trips` send/receive pairs through a tokio mpsc
/// channel of capacity 1 (every one ready at once): natively, and in a
/// task of the `basic` plugin with the cooperative budget on and off. Alternating
/// rounds; medians printed.
fn ticker_gaps(rounds: usize, round_trips: u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Runs `work` beside a 1 ms ticker; the ticker's longest gap, in µs.
    async fn longest_gap<F: std::future::Future<Output = ()> + Send + 'static>(work: F) -> u64 {
        let (longest, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let ticker = tokio::spawn({
            let (longest, stop) = (Arc::clone(&longest), Arc::clone(&stop));
            async move {
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    ticks.tick().await;
                    let now = Instant::now();
                    longest.fetch_max((now - last).as_micros() as u64, Ordering::Relaxed);
                    last = now;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        tokio::spawn(work).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        ticker.await.unwrap();
        longest.load(Ordering::Relaxed)
    }

    let rt = common::current_thread();
    let hosts: Vec<PluginHost> = [true, false]
        .into_iter()
        .map(|on| {
            PluginHost::builder(rt.handle().clone())
                .cooperative_budget(on)
                .build()
        })
        .collect();
    let (mut native, mut on, mut off) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for host in &hosts {
            host.load(common::fresh_copy("basic")).await.unwrap();
        }
        for round in 0..rounds {
            let run = |host: &PluginHost| {
                let host = host.clone();
                async move {
                    let request =
                        json!({ "id": round, "scenario": "mpsc_loop_task", "arg": round_trips });
                    let report = host.emit("basic:run", &request).await.unwrap();
                    assert!(report.is_ok(), "{:?}", report.failures);
                }
            };
            let native_loop = async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
                for i in 0..round_trips {
                    tx.send(i).await.unwrap();
                    std::hint::black_box(rx.recv().await);
                }
            };
            if round % 2 == 0 {
                native.push(longest_gap(native_loop).await);
                on.push(longest_gap(run(&hosts[0])).await);
            } else {
                on.push(longest_gap(run(&hosts[0])).await);
                native.push(longest_gap(native_loop).await);
            }
            off.push(longest_gap(run(&hosts[1])).await);
        }
        for host in &hosts {
            host.shutdown().await;
        }
    });
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e3
    };
    let (native, on, off) = (median(&mut native), median(&mut on), median(&mut off));
    println!(
        "1 ms ticker's longest gap during {round_trips} mpsc round trips, current-thread, median of {rounds}: native {native:.1} ms | plugin, cooperative budget on {on:.1} ms ({:.2}x native) | off {off:.1} ms ({:.2}x)",
        on / native,
        off / native,
    );
}

fn main() {
    if let Ok(spec) = std::env::var("HORIZON_BENCH_ONLY") {
        if let Some(round_trips) = spec.strip_prefix("ticker:") {
            return ticker_gaps(5, round_trips.parse().expect("a number of round trips"));
        }
        return only(&spec);
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let scale = |full: u64| if smoke { (full / 100).max(2) } else { full };
    let rounds = if smoke { 2 } else { 21 };

    for (flavour, make) in [
        (
            "multi-thread",
            common::multi_thread as fn() -> tokio::runtime::Runtime,
        ),
        ("current-thread", common::current_thread),
    ] {
        let loaded = Loaded::new(make(), 1);
        let rt = &loaded.rt;
        // Spawn on the default host, and on one with the cooperative budget
        // off (`HostBuilder::cooperative_budget(false)`): what the budget's
        // `block_on` per task poll costs a spawn.
        let off = {
            let rt = make();
            let host = PluginHost::builder(rt.handle().clone())
                .cooperative_budget(false)
                .build();
            Loaded::with_host(rt, host, 1)
        };
        for (label, on) in [("", &loaded), (", cooperative budget off,", &off)] {
            let rt = &on.rt;
            // Warm both paths up once.
            native(rt, || support::native_spawn_loop(1000));
            on.routed("spawn", 1000);
            interleaved(
                &format!("spawn_await{label} {flavour}"),
                rounds,
                scale(20_000),
                |n| native(rt, move || support::native_spawn_loop(n)),
                |n| on.routed("spawn", n),
            );
        }
        off.rt.block_on(off.host.shutdown());
        interleaved(
            &format!("emit to one plugin vs in-process {flavour}"),
            rounds,
            scale(20_000),
            |n| native(rt, move || support::in_process_emit_loop(n)),
            |n| loaded.emit_loop(n, 1),
        );
        let host = support::host_with_host_handler(rt);
        interleaved(
            &format!(
                "emit to one plugin vs to one host handler (the same dispatch without the boundary) {flavour}"
            ),
            rounds,
            scale(20_000),
            |n| support::host_emit_loop(rt, &host, n),
            |n| loaded.emit_loop(n, 1),
        );
        // The like-for-like comparison: a host handler is synchronous, as
        // the plugin's `on_sync` handler is, and decodes the host's buffer
        // in place, as the typed `on_event_sync` one does (the untyped one
        // copies the payload into the plugin's `Event`).
        for (caller, what) in [
            (Caller::Task, "a task"),
            (Caller::BlockOn, "the runtime's block_on thread"),
        ] {
            for (kind, routed) in [
                (
                    "synchronous",
                    Loaded::sync_emit_loop_from as fn(&Loaded, u64, Caller) -> Duration,
                ),
                ("typed synchronous", Loaded::typed_sync_emit_loop_from),
            ] {
                interleaved(
                    &format!(
                        "emit to one plugin's {kind} handler vs to one host handler, from {what}, {flavour}"
                    ),
                    rounds,
                    scale(20_000),
                    |n| support::emit_loop_from(rt, &host, n, caller),
                    |n| routed(&loaded, n, caller),
                );
            }
        }
        // The same comparison from the other places a host awaits `emit`:
        // no caller may fall off the fast path unseen.
        for (caller, what, count) in [
            (
                Caller::BlockOn,
                "the runtime's block_on thread",
                scale(20_000),
            ),
            (
                Caller::Thread,
                "a plain thread outside the runtime",
                scale(2_000),
            ),
        ] {
            interleaved(
                &format!("emit to one plugin vs to one host handler, from {what}, {flavour}"),
                rounds,
                count,
                |n| support::emit_loop_from(rt, &host, n, caller),
                |n| loaded.emit_loop_from(n, caller),
            );
        }
        rt.block_on(loaded.host.shutdown());
    }

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
        // 500 samples each, in alternating rounds of 50.
        let per_round = scale(500).min(50);
        let samples = scale(500) / per_round * per_round;
        let (mut routed, mut native) = rt.block_on(async {
            host.load(common::fresh_copy("bench")).await.unwrap();
            let (mut routed, mut native) = (Vec::new(), Vec::new());
            for _ in 0..samples / per_round {
                host.emit(
                    "bench:run",
                    &json!({ "kind": "sleep_1ms", "iters": per_round }),
                )
                .await
                .unwrap();
                routed.append(&mut lateness.lock().unwrap());
                native.extend(
                    tokio::spawn(async move {
                        let mut v = Vec::new();
                        for _ in 0..per_round {
                            let t = Instant::now();
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            v.push(t.elapsed().as_nanos() as u64 - 1_000_000);
                        }
                        v
                    })
                    .await
                    .unwrap(),
                );
            }
            host.shutdown().await;
            (routed, native)
        });
        routed.sort_unstable();
        native.sort_unstable();
        println!(
            "sleep(1 ms) lateness, {flavour}, {samples} samples in alternating rounds of {per_round}: native p50 {:.1} µs p99 {:.1} µs | routed p50 {:.1} µs p99 {:.1} µs",
            percentile(&native, 0.5) as f64 / 1e3,
            percentile(&native, 0.99) as f64 / 1e3,
            percentile(&routed, 0.5) as f64 / 1e3,
            percentile(&routed, 0.99) as f64 / 1e3,
        );
    }

    ticker_gaps(rounds.min(5), scale(2_000_000));

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
            "{n} pending routed tasks: RSS +{} KiB, {:.0} bytes per task (task cell, host task, parked waker, a oneshot)",
            held.saturating_sub(before),
            held.saturating_sub(before) as f64 * 1024.0 / n as f64
        );
        host.shutdown().await;
    });
}
