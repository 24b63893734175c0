//! Plugin code that uses tokio works once loaded: every scenario of the
//! `basic` fixture, on a multi-thread runtime with 2 workers and on a
//! current-thread runtime, driven from a worker, from a plain thread through
//! `Handle::block_on`, and from a thread outside any runtime's context.

mod common;

use std::time::Duration;

use common::{Basic, all_scenarios, current_thread, multi_thread};
use horizon_plugin_host::PluginHost;
use serde_json::json;

#[test]
fn scenarios_on_multi_thread_runtime_from_a_worker() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        // Run on a worker thread, not the thread inside `block_on`.
        tokio::spawn(async move { all_scenarios(&basic).await })
            .await
            .unwrap();
        host.shutdown().await;
    });
}

#[test]
fn scenarios_on_current_thread_runtime() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        all_scenarios(&basic).await;
        host.shutdown().await;
    });
}

#[test]
fn scenarios_on_multi_thread_runtime_from_a_plain_thread() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let handle = rt.handle().clone();
    // This thread is not a runtime thread: every call goes through `Handle::block_on`.
    std::thread::spawn(move || {
        let basic = handle.block_on(Basic::load(host.clone()));
        handle.block_on(all_scenarios(&basic));
        handle.block_on(host.shutdown());
    })
    .join()
    .unwrap();
}

#[test]
fn scenarios_on_current_thread_runtime_from_a_plain_thread() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let handle = rt.handle().clone();
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        // A current-thread runtime is driven only by `Runtime::block_on`, so
        // this thread keeps driving it while the plain thread makes the calls.
        let caller = std::thread::spawn(move || handle.block_on(all_scenarios(&basic)));
        while !caller.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        caller.join().unwrap();
        host.shutdown().await;
    });
}

/// A thread outside any runtime's context (its own executor, not
/// `Handle::block_on`): every handler runs as a task from the start.
#[test]
fn scenarios_from_a_thread_outside_any_runtime() {
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            // The runtime thread keeps driving a current-thread runtime.
            let caller = std::thread::spawn(move || {
                assert!(tokio::runtime::Handle::try_current().is_err());
                common::block_on_plain_thread(all_scenarios(&basic));
            });
            while !caller.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            caller.join().unwrap();
            host.shutdown().await;
        });
    }
}

async fn thousand_concurrent_emits(basic: Basic) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let basic = basic.clone();
        tasks.spawn(async move { (i, basic.run("spawn", i).await) });
    }
    let mut seen = vec![false; 1000];
    while let Some(done) = tasks.join_next().await {
        let (i, reply) = done.unwrap();
        assert_eq!(reply, json!(i * 2));
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "an event was lost");
}

#[test]
fn thousand_concurrent_emits_multi_thread() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        thousand_concurrent_emits(Basic::load(host.clone()).await).await;
        host.shutdown().await;
    });
}

#[test]
fn thousand_concurrent_emits_current_thread() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        thousand_concurrent_emits(Basic::load(host.clone()).await).await;
        host.shutdown().await;
    });
}

/// A host task that counts its polls, yielding after each: how often the
/// scheduler got to it. Abort it when done.
fn counting_task() -> (
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = std::sync::Arc::clone(&ticks);
    let ticker = tokio::spawn(async move {
        loop {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });
    (ticks, ticker)
}

/// The same loop of `tokio::sync::mpsc` round trips (every one ready at
/// once) yields as often in a plugin task as in a native one, and a host
/// task on the current-thread runtime runs meanwhile: the plugin's own
/// tokio copy gets a cooperative budget per task poll
/// (`HostBuilder::cooperative_budget`, on by default), also after a panic
/// in a poll of the same plugin. Off, the loop takes one poll and nothing
/// else runs on the worker until it ends; in a handler (whose polls get no
/// such budget: they are on the emit path) it takes one poll either way.
#[test]
fn a_plugin_loop_on_its_own_tokio_channels_yields_like_a_native_task() {
    const ROUND_TRIPS: u64 = 100_000;
    for cooperative in [true, false] {
        let rt = current_thread();
        let host = PluginHost::builder(rt.handle().clone())
            .cooperative_budget(cooperative)
            .build();
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            let (ticks, ticker) = counting_task();
            tokio::task::yield_now().await;
            // How many polls the loop takes natively: one per yield.
            let native_polls = tokio::spawn(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
                let mut round_trips = Box::pin(async move {
                    for i in 0..ROUND_TRIPS {
                        tx.send(i).await.unwrap();
                        std::hint::black_box(rx.recv().await);
                    }
                });
                let mut polls = 0u64;
                std::future::poll_fn(|cx| {
                    polls += 1;
                    round_trips.as_mut().poll(cx)
                })
                .await;
                polls
            })
            .await
            .unwrap();
            // A panic in a poll of this plugin first: the budget's state on
            // this thread must not stay behind.
            let (report, _) = basic.try_run("panic", 0).await;
            assert_eq!(report.failures.len(), 1);
            let in_handler = basic.clone();
            let handler = tokio::spawn(async move { in_handler.run("mpsc_loop", ROUND_TRIPS).await })
                .await
                .unwrap();
            let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
            let spawned = tokio::spawn(async move { basic.run("mpsc_loop_task", ROUND_TRIPS).await })
                .await
                .unwrap();
            let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
            ticker.abort();
            assert_eq!(spawned["sum"], ROUND_TRIPS * (ROUND_TRIPS - 1) / 2);
            assert_eq!(handler["sum"], spawned["sum"]);
            let task_polls = spawned["polls"].as_u64().unwrap();
            assert_eq!(handler["polls"], 1, "a handler's polls get no budget");
            // A send and a receive each spend one of 128 units.
            assert!(native_polls >= ROUND_TRIPS / 64, "native: {native_polls} polls");
            if cooperative {
                assert!(
                    task_polls >= native_polls / 2 && task_polls <= native_polls * 2,
                    "the loop in a plugin task took {task_polls} polls, the native one {native_polls}"
                );
                // The current-thread scheduler runs a task that yielded
                // with `yield_now` when it next checks its timers and IO
                // (every 61 polls): at least that often.
                assert!(
                    during >= task_polls / 61 / 2,
                    "the host task ran {during} times while the plugin yielded {task_polls} times"
                );
            } else {
                assert_eq!(task_polls, 1, "no budget: the loop never yields");
                assert!(during <= 2, "the host task ran {during} times during a loop that never yields");
            }
            host.shutdown().await;
        });
    }
}

/// A plugin loop that only calls `tokio::task::consume_budget` yields to
/// the host's scheduler as a native task does: the call is routed to the
/// host's cooperative budget (the `budget` service, boundary 4.1), which
/// tokio sets to 128 units per task poll, so 12,800 calls yield about 100
/// times (natively: 100). On a current-thread runtime a host task gets its
/// turns meanwhile.
#[test]
fn consume_budget_in_a_plugin_yields_like_a_native_task() {
    for (rt, flavour) in [(multi_thread(), "multi"), (current_thread(), "current")] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            let (ticks, ticker) = counting_task();
            let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
            let yielded = tokio::spawn(async move { basic.run("budget", 12_800).await })
                .await
                .unwrap()
                .as_u64()
                .unwrap();
            let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
            ticker.abort();
            assert!(
                (50..=200).contains(&yielded),
                "{flavour}: {yielded} yields in 12,800 calls (native: 100)"
            );
            // Polled with a waker of the plugin's making, the spent budget
            // wakes that waker during the call (the host keeps none).
            let own = Basic::attach(host.clone(), host.plugins()[0].id)
                .run("budget_own_waker", 12_800)
                .await;
            assert!(own["pending"].as_u64().unwrap() >= 50, "{own}");
            assert_eq!(own["pending"], own["woken"], "{own}");
            if flavour == "current" {
                assert!(
                    during >= yielded / 2,
                    "the host task ran {during} times while the plugin yielded {yielded} times"
                );
            }
            host.shutdown().await;
        });
    }
}
