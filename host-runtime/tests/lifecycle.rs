//! Unloading, reloading and quarantine: after `unload` no plugin code runs,
//! a reload loses and duplicates no event, a failing plugin is quarantined.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Basic, current_thread, fresh_copy, multi_thread};
use horizon_plugin_host::{Event, PluginHost, UnloadError};
use serde_json::json;

/// Counts `basic:tick` events, which the `ticker` scenario's detached task
/// emits every millisecond.
fn count_ticks(host: &PluginHost) -> Arc<AtomicU64> {
    let ticks = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&ticks);
    host.on("basic:tick", move |_: Event| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    ticks
}

/// After `unload` returned: the ticker's count no longer moves, and the
/// plugin is no longer listed.
async fn assert_silent_after_unload(host: &PluginHost, ticks: &AtomicU64) {
    let at_unload = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        at_unload,
        "plugin code ran after unload"
    );
    assert!(host.plugins().is_empty());
}

#[test]
fn no_plugin_code_runs_after_unload() {
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let ticks = count_ticks(&host);
            let basic = Basic::load(host.clone()).await;
            assert_eq!(basic.run("ticker", 0).await, json!("ticking"));
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(ticks.load(Ordering::SeqCst) > 5, "the ticker task runs");

            host.unload(basic.id).await.unwrap();
            assert_silent_after_unload(&host, &ticks).await;
        });
    }
}

#[test]
fn on_unload_gets_a_deadline_and_the_plugin_is_unloaded_anyway() {
    let rt = multi_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .unload_timeout(Duration::from_millis(200))
        .build();
    rt.block_on(async {
        let ticks = count_ticks(&host);
        let basic = Basic::load(host.clone()).await;
        basic.run("ticker", 0).await;
        basic.run("hang_unload", 0).await;
        let started = std::time::Instant::now();
        let err = host.unload(basic.id).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "unload waited {:?}",
            started.elapsed()
        );
        match &err {
            UnloadError::OnUnload {
                name,
                message,
                panicked,
            } => {
                assert_eq!(name, "basic");
                assert!(message.contains("did not finish within"), "{message}");
                assert!(!panicked);
            }
            other => panic!("expected OnUnload, got {other:?}"),
        }
        assert_silent_after_unload(&host, &ticks).await;
    });
}

#[test]
fn reload_swaps_builds_without_losing_or_duplicating_events() {
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            let old = basic.id;
            // Keep events flowing from 4 tasks while the plugin is swapped;
            // `run` asserts every event gets exactly one reply and no failure.
            let mut senders = tokio::task::JoinSet::new();
            for t in 0..4u64 {
                let basic = basic.clone();
                senders.spawn(async move {
                    for i in 0..150u64 {
                        assert_eq!(
                            basic.run("spawn", t * 1000 + i).await,
                            json!((t * 1000 + i) * 2)
                        );
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let new = host.reload(old, fresh_copy("basic")).await.unwrap();
            assert_ne!(new, old);
            while let Some(done) = senders.join_next().await {
                done.unwrap();
            }
            let plugins = host.plugins();
            assert_eq!(plugins.len(), 1);
            assert_eq!(plugins[0].id, new);
            assert_eq!(
                basic.run("spawn", 1).await,
                json!(2),
                "the new build serves"
            );
            host.shutdown().await;
        });
    }
}

#[test]
fn a_failed_reload_leaves_the_old_plugin_serving() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        let err = host
            .reload(basic.id, fresh_copy("load-panic"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("old plugin keeps serving"),
            "{err}"
        );
        assert_eq!(basic.run("spawn", 3).await, json!(6));
        host.shutdown().await;
    });
}

#[test]
fn a_plugin_whose_handlers_keep_failing_is_quarantined() {
    let rt = multi_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .quarantine_after(3)
        .build();
    rt.block_on(async {
        let failing = Basic::load(host.clone()).await;
        for attempt in 1..=3 {
            let (report, _) = failing.try_run("fail", 0).await;
            assert_eq!(report.failures.len(), 1);
            assert_eq!(
                report.quarantined.is_empty(),
                attempt < 3,
                "attempt {attempt}"
            );
        }
        let info = host.plugins();
        assert!(info[0].quarantined);
        // Quarantined: it gets no more events, and the host keeps running.
        let (report, replies) = failing.try_run("spawn", 1).await;
        assert_eq!(report.delivered, 0);
        assert!(replies.is_empty());
        host.unload(failing.id).await.unwrap();

        // A success resets the count.
        let flaky = Basic::load(host.clone()).await;
        for _ in 0..5 {
            flaky.try_run("fail", 0).await;
            flaky.try_run("fail", 0).await;
            assert_eq!(flaky.run("spawn", 2).await, json!(4));
        }
        assert!(!host.plugins()[0].quarantined);
        host.shutdown().await;
    });
}

#[test]
fn dropping_the_host_without_shutdown_leaks_plugins_instead_of_crashing() {
    for rt in [multi_thread(), current_thread()] {
        rt.block_on(async {
            let host = PluginHost::new(tokio::runtime::Handle::current());
            let ticks = count_ticks(&host);
            let basic = Basic::load(host.clone()).await;
            basic.run("ticker", 0).await;
            basic.run("abort", 0).await;
            // The ticker runs (waited for: on a loaded machine its first
            // tick may come after the two emits above).
            let started = std::time::Instant::now();
            while ticks.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let before = ticks.load(Ordering::SeqCst);
            assert!(before > 0, "the ticker runs");
            drop(basic);
            drop(host);
            // The plugin's ticker task keeps running on the runtime, calling
            // into a host that is gone: its emits fail (no host handler
            // counts them any more), nothing crashes.
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(ticks.load(Ordering::SeqCst) <= before + 1);
        });
        // Dropping the runtime drops the plugin's remaining tasks: plugin
        // code runs one last time, in a library that is still mapped.
        drop(rt);
    }
}
