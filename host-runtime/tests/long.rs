//! The long tests: `#[ignore]`d in the default run, run by `.ci/run`
//! (`cargo test -- --ignored`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{fresh_copy, multi_thread};
use horizon_plugin_host::{Event, PluginHost};
use serde_json::{Value, json};

/// A line of `/proc/self/status`, e.g. `Threads` or `VmRSS` (in kB).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[test]
#[ignore = "long: 1,000 load/unload cycles"]
fn thousand_load_unload_cycles_with_timers_and_tasks_in_flight() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let path = fresh_copy("basic");
    let cycle = |i: u64| {
        let host = host.clone();
        let path = path.clone();
        async move {
            let id = host.load(&path).await.unwrap();
            // A detached task with an interval, a task blocked in a long
            // sleep, and a handler run: all in flight at unload.
            let run =
                |scenario: &str, arg: u64| json!({ "id": i, "scenario": scenario, "arg": arg });
            host.emit("basic:run", &run("ticker", 0)).await.unwrap();
            host.emit("basic:run", &run("abort", 0)).await.unwrap();
            host.unload(id).await.unwrap();
        }
    };
    rt.block_on(async {
        for i in 0..20 {
            cycle(i).await;
        }
    });
    let (threads_before, rss_before) = (proc_status("Threads"), proc_status("VmRSS"));
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..1000 {
            cycle(i).await;
        }
    });
    let elapsed = started.elapsed();
    let (threads_after, rss_after) = (proc_status("Threads"), proc_status("VmRSS"));
    eprintln!(
        "1000 load/unload cycles in {elapsed:?}: threads {threads_before} -> {threads_after}, \
         RSS {rss_before} kB -> {rss_after} kB ({:+} kB, {:+.1} kB per cycle)",
        rss_after as i64 - rss_before as i64,
        (rss_after as f64 - rss_before as f64) / 1000.0
    );
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    eprintln!("threads: {names:?}");
    assert!(
        threads_after <= threads_before + 2,
        "threads leaked: {threads_before} -> {threads_after}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew by more than 64 MiB over 1000 cycles"
    );
}

#[test]
#[ignore = "long: 100,000 events to 20 plugins"]
fn twenty_plugins_hundred_thousand_events_each_answered_exactly_once() {
    const PLUGINS: usize = 20;
    const EVENTS: u64 = 100_000;
    const SENDERS: u64 = 4;
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let answers: Arc<Vec<AtomicU32>> = Arc::new((0..EVENTS).map(|_| AtomicU32::new(0)).collect());
    let sink = Arc::clone(&answers);
    host.on("basic:result", move |event: Event| {
        let reply: Value = event.json().unwrap();
        let id = reply["id"].as_u64().unwrap();
        assert_eq!(reply["value"], json!(id + 1));
        sink[id as usize].fetch_add(1, Ordering::Relaxed);
    });
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..PLUGINS {
            host.load(fresh_copy("basic")).await.unwrap();
        }
        let mut senders = tokio::task::JoinSet::new();
        for s in 0..SENDERS {
            let host = host.clone();
            let failures = Arc::clone(&failures);
            senders.spawn(async move {
                let mut id = s;
                while id < EVENTS {
                    let report = host
                        .emit(
                            "basic:run",
                            &json!({ "id": id, "scenario": "stress", "arg": id }),
                        )
                        .await
                        .unwrap();
                    failures.fetch_add(report.failures.len() as u64, Ordering::Relaxed);
                    id += SENDERS;
                }
            });
        }
        let all = async {
            while let Some(done) = senders.join_next().await {
                done.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(600), all)
            .await
            .expect("stress test timed out");
        host.shutdown().await;
    });
    eprintln!(
        "{EVENTS} events x {PLUGINS} plugins in {:?}",
        started.elapsed()
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    for (id, count) in answers.iter().enumerate() {
        assert_eq!(count.load(Ordering::Relaxed), PLUGINS as u32, "event {id}");
    }
}

/// Four tasks load, reload, unload and emit at random against up to three
/// plugin copies for 10 s on a strict host (see `common::race_storm`).
#[test]
#[ignore = "long: a 10 s race storm"]
fn race_storm_of_loads_reloads_unloads_and_emits() {
    let rt = multi_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .strict_unload(true)
        .build();
    rt.block_on(common::race_storm(host, Duration::from_secs(10), 0));
}

/// Anonymous memory (heap, stacks) of this process in kB, from
/// `/proc/self/smaps_rollup`: RSS minus file-backed pages.
fn anonymous_kb() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Anonymous in /proc/self/smaps_rollup")
}

/// Of the library copies at `paths`: (mapped segments, files still
/// mapped), from `/proc/self/maps`. Only these paths: other tests of this
/// binary (strict ones keep their libraries mapped) share the process.
fn mapped_copies(paths: &[std::path::PathBuf]) -> (usize, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|file| paths.iter().any(|p| p.as_os_str() == *file))
        .collect();
    let segments = files.len();
    files.sort_unstable();
    files.dedup();
    (segments, files.len())
}

/// How many file descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What 200 reloads from fresh paths (as `horizon run --watch` does) leave
/// behind: (anonymous memory growth in kB, library copies still mapped).
/// Each reload is followed by one event, answered before the next reload.
fn two_hundred_reloads(fixture: &str, event: &str, payload: serde_json::Value) -> (u64, usize) {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let answered = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&answered);
    host.on(&format!("{fixture}:pong"), move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    host.on("basic:result", {
        let count = Arc::clone(&answered);
        move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut paths = vec![fresh_copy(fixture)];
    let mut id = rt.block_on(host.load(&paths[0])).unwrap();
    let (anon_before, maps_before) = (anonymous_kb(), mapped_copies(&paths));
    let fds_before = open_fds();
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..200 {
            let path = fresh_copy(fixture);
            id = host.reload(id, &path).await.unwrap();
            paths.push(path);
            host.emit(event, &payload).await.unwrap();
        }
        host.shutdown().await;
    });
    let (anon_after, maps_after) = (anonymous_kb(), mapped_copies(&paths));
    let fds_after = open_fds();
    assert_eq!(answered.load(Ordering::SeqCst), 200, "every event answered");
    // A private runtime's I/O driver holds an epoll and an event descriptor:
    // one kept per reload would exhaust the process's limit.
    assert!(
        fds_after <= fds_before + 4,
        "open file descriptors {fds_before} -> {fds_after} over 200 reloads"
    );
    let growth = anon_after.saturating_sub(anon_before);
    eprintln!(
        "200 reloads of `{fixture}` in {:?}: anonymous memory +{growth} kB ({} kB per reload); \
         library copies mapped {} -> {} ({} -> {} segments), RSS now {} kB",
        started.elapsed(),
        growth / 200,
        maps_before.1,
        maps_after.1,
        maps_before.0,
        maps_after.0,
        proc_status("VmRSS"),
    );
    (growth, maps_after.1)
}

/// A plugin whose tokio calls are all routed to the host, without a private
/// runtime: reloads leave nothing behind. The SDK's own machinery (init and
/// shutdown run on threads of their own, no tokio lock in the lifecycle,
/// task cells, wakers, logging) registers no thread-local destructor on a
/// host thread, so every old copy is unmapped.
#[test]
#[ignore = "long: 200 reloads from fresh paths"]
fn two_hundred_reloads_of_a_lean_plugin_leave_nothing_behind() {
    let (growth, mapped) = two_hundred_reloads("lean", "lean:ping", json!(7));
    assert_eq!(mapped, 0, "every unloaded copy is unmapped");
    assert!(
        growth < 4096,
        "anonymous memory grew {growth} kB over 200 reloads"
    );
}

/// A plugin that uses its own tokio on host threads (its private runtime
/// entered around polls, `select!`, a oneshot): its copy of tokio
/// registers thread-local destructors on the host's workers, which the SDK
/// hands to the host (`thread_exit`), so glibc does not keep the old
/// copies mapped for the life of those threads (it kept all 200 before:
/// +123 kB of anonymous memory and 2.5 MB of file pages a reload).
#[test]
#[ignore = "long: 200 reloads from fresh paths"]
fn two_hundred_reloads_of_a_plugin_using_its_own_tokio_leave_nothing_behind() {
    let request = json!({ "id": 0, "scenario": "select", "arg": 1 });
    let (growth, mapped) = two_hundred_reloads("basic", "basic:run", request);
    assert_eq!(mapped, 0, "every unloaded copy is unmapped");
    assert!(
        growth < 4096,
        "anonymous memory grew {growth} kB over 200 reloads"
    );
}
