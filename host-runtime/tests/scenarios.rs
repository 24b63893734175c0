//! Plugin code that uses tokio works once loaded: every scenario of the
//! `basic` fixture, on a multi-thread runtime with 2 workers and on a
//! current-thread runtime, driven from a worker and from a plain thread.

mod common;

use std::time::Duration;

use common::{Basic, current_thread, multi_thread};
use horizon_host_runtime::PluginHost;
use serde_json::json;

/// Every scenario, with what its reply must be.
async fn all_scenarios(basic: &Basic) {
    assert_eq!(basic.run("spawn", 21).await, json!(42));

    let slept = basic.run("sleep", 20).await.as_u64().unwrap();
    assert!(slept >= 20_000, "slept {slept} us for a 20 ms sleep");
    let slept = basic.run("sleep_until", 15).await.as_u64().unwrap();
    assert!(
        slept >= 15_000,
        "slept {slept} us until a deadline 15 ms away"
    );

    // 4 ticks of a 5 ms interval: the first is immediate, so >= 15 ms.
    let ticked = basic.run("interval", 4).await.as_u64().unwrap();
    assert!(ticked >= 15_000, "4 ticks of 5 ms took {ticked} us");

    assert_eq!(
        basic.run("timeout", 7).await,
        json!({ "fired": true, "value": 7 })
    );

    let blocking = basic.run("blocking", 1).await;
    assert_eq!(blocking["value"], json!(2));

    assert_eq!(basic.run("nested", 1).await, json!(25));
    assert_eq!(basic.run("select", 5).await, json!("sleep"));

    let helper = basic.run("helper", 10).await;
    assert_eq!(helper["spawned"], json!(11));
    assert!(helper["elapsed_us"].as_u64().unwrap() >= 10_000);

    assert_eq!(basic.run("handle", 4).await, json!(7));
    assert_eq!(basic.run("yield", 50).await, json!(50));

    let panicked = basic.run("task_panic", 0).await;
    assert_eq!(panicked["is_panic"], json!(true));
    assert!(
        panicked["message"]
            .as_str()
            .unwrap()
            .contains("task went wrong")
    );
    assert_eq!(basic.run("abort", 0).await, json!({ "is_cancelled": true }));

    // Every rewritten form (use forms, join!/try_join!, vec!, format!), plus
    // the forms out of reach of the rewrite (module-level use, nested item)
    // and routed calls from a plain thread of the plugin.
    assert_eq!(basic.run("forms", 0).await, json!(36));

    // Tokio IO and a third-party tokio crate (tokio-util codecs) in a helper module.
    assert_eq!(
        basic.run("tcp", 3).await,
        json!(["echo line 0", "echo line 1", "echo line 2"])
    );

    // Panics at the boundaries: a blocking job, and a future's drop.
    let panicked = basic.run("blocking_panic", 0).await;
    assert_eq!(panicked["is_panic"], json!(true));
    assert!(
        panicked["message"]
            .as_str()
            .unwrap()
            .contains("blocking job went wrong")
    );
    assert_eq!(
        basic.run("drop_panic", 0).await,
        json!({ "is_cancelled": true })
    );
}

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
