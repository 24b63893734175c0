//! What each plugin costs: `PluginHost::stats` counts exactly what a test
//! drives through a real plugin, a plugin future that blocks a worker is
//! named in a slow-poll warning, a panic in plugin code reaches the host's
//! `tracing` subscriber as one error event, and (feature `metrics`) the
//! same counts reach the installed `metrics` recorder.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Basic, Captured, current_thread, fixture, fresh_copy_of, multi_thread};
use horizon_plugin_host::{Event, PluginHost, PluginId, PluginStats, PollTiming};
use serde_json::json;

/// Installs, once for this test binary, a global `tracing` subscriber
/// (warnings and errors, captured) and, with the `metrics` feature, a
/// global `metrics` recorder; returns the captured log.
fn process_wide() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::install_global(tracing::Level::WARN);
        #[cfg(feature = "metrics")]
        recorder::install();
        captured
    })
}

/// Runs this binary's tests one at a time (every host numbers its plugins
/// from #1, and they share one log), each starting with an empty log.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    process_wide().0.lock().unwrap().clear();
    guard
}

/// The captured log lines about plugin `id`.
fn lines_of(id: PluginId) -> Vec<String> {
    let tag = format!("id={id}");
    let text = process_wide().text();
    text.lines()
        .filter(|l| l.split_whitespace().any(|w| w == tag))
        .map(str::to_owned)
        .collect()
}

/// A fresh copy of `basic` under a name of this test's own (tests run in
/// parallel and share the copies directory).
fn basic_copy(tag: &str) -> std::path::PathBuf {
    fresh_copy_of(&fixture("basic"), &format!("basic-stats-{tag}"))
}

/// Stats of `id` once its tasks have been dropped on the host's side (a
/// joined task's host task ends just after the join).
async fn settled(host: &PluginHost, id: PluginId) -> PluginStats {
    for _ in 0..2000 {
        let stats = host.plugin_stats(id).unwrap();
        if stats.tasks_alive == 0 && stats.blocking_jobs_running == 0 {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("tasks still alive: {:?}", host.plugin_stats(id));
}

/// Drives a known mix through `basic` and checks every counter exactly.
async fn counters_match(tag: &str) {
    process_wide();
    let host = PluginHost::new(tokio::runtime::Handle::current());
    let out_bytes = Arc::new(AtomicU64::new(0));
    let sum = Arc::clone(&out_bytes);
    host.on("basic:result", move |event: Event| {
        sum.fetch_add(event.payload().len() as u64, Ordering::Relaxed);
    });
    // Every host numbers its plugins from #1: earlier hosts of this binary
    // recorded under the same labels. A snapshot of the debugging recorder
    // resets its values, so what it holds next is this test's alone.
    #[cfg(feature = "metrics")]
    recorder::values();
    let basic = Basic::load_path(host.clone(), basic_copy(tag)).await;
    let id = basic.id;
    let fresh = host.plugin_stats(id).unwrap();
    assert_eq!(
        (fresh.handler_calls, fresh.tasks_spawned, fresh.panics),
        (0, 0, 0)
    );

    // What each request weighs on the way in: the JSON the emit sends.
    let mut in_bytes = 0u64;
    let mut run = |scenario: &str, arg: u64, n: u64| {
        let payload = json!({ "id": n, "scenario": scenario, "arg": arg });
        in_bytes += serde_json::to_vec(&payload).unwrap().len() as u64;
        (scenario.to_owned(), arg)
    };
    let mut requests = Vec::new();
    for n in 0..5 {
        requests.push(run("spawn", 21, n)); // 1 task, 1 emit
    }
    for n in 5..7 {
        requests.push(run("task_panic", 0, n)); // 1 task, 1 panic, 1 emit
    }
    requests.push(run("blocking", 1, 7)); // 1 blocking job, 1 emit
    requests.push(run("panic", 0, 8)); // 1 panic, 1 failure
    requests.push(run("fail", 0, 9)); // 1 failure
    for (scenario, arg) in &requests {
        let (report, _) = basic.try_run(scenario, *arg).await;
        assert_eq!(
            report.is_ok(),
            !matches!(scenario.as_str(), "panic" | "fail")
        );
    }

    let stats = settled(&host, id).await;
    assert_eq!(stats.name, "basic");
    assert_eq!(stats.handler_calls, 10, "{stats:?}");
    assert_eq!(stats.tasks_spawned, 7, "{stats:?}");
    assert_eq!(stats.tasks_alive, 0, "{stats:?}");
    assert_eq!(
        (stats.blocking_jobs, stats.blocking_jobs_running),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.panics, 3, "{stats:?}");
    assert_eq!(
        (stats.handler_failures, stats.handler_timeouts),
        (2, 0),
        "{stats:?}"
    );
    assert_eq!(stats.events_emitted, 8, "{stats:?}");
    assert_eq!(stats.bytes_in, in_bytes, "{stats:?}");
    assert_eq!(
        stats.bytes_out,
        out_bytes.load(Ordering::Relaxed),
        "{stats:?}"
    );
    // The default timing (coarse) saw no time, or a few ticks.
    assert!(stats.poll_time < Duration::from_secs(1), "{stats:?}");
    assert_eq!(host.stats(), vec![stats.clone()]);

    // Each panic is one error event naming the plugin, where, and the
    // message with its location; nothing else repeats it.
    let lines = lines_of(id);
    let task_panics: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("task went wrong"))
        .collect();
    assert_eq!(task_panics.len(), 2, "{lines:#?}");
    for line in task_panics {
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains(
                "plugin `basic` panicked in a task spawned at fixtures/basic/src/lib.rs:"
            ),
            "{line}"
        );
        assert!(line.contains("(at fixtures/basic/src/lib.rs:"), "{line}");
    }
    let handler_panics: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("scenario asked to panic"))
        .collect();
    assert_eq!(handler_panics.len(), 1, "{lines:#?}");
    assert!(
        handler_panics[0].contains("panicked in its handler of event `basic:run`"),
        "{lines:#?}"
    );

    #[cfg(feature = "metrics")]
    recorder::assert_exported(&stats);

    host.shutdown().await;
    assert!(host.plugin_stats(id).is_none());
}

#[test]
fn counters_match_what_was_driven_multi_thread() {
    let _serial = serial();
    multi_thread().block_on(counters_match("mt"));
}

#[test]
fn counters_match_what_was_driven_current_thread() {
    let _serial = serial();
    current_thread().block_on(counters_match("ct"));
}

/// A handler and a task that each block their worker for 50 ms are named
/// in a slow-poll warning; the poll time covers them.
async fn slow_polls_are_named(tag: &str, timing: PollTiming) {
    process_wide();
    let host = PluginHost::builder(tokio::runtime::Handle::current())
        .poll_timing(timing)
        .build();
    let blocked = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&blocked);
    host.on("basic:blocking", move |_| notify.notify_one());
    let basic = Basic::load_path(host.clone(), basic_copy(tag)).await;
    let id = basic.id;

    assert_eq!(basic.run("block_handler", 50).await, json!("blocked"));
    // The task emits `basic:blocking`, then blocks its worker in that poll.
    let notified = blocked.notified();
    assert_eq!(
        basic.run("blocking_poll", 50).await,
        json!("blocking in poll")
    );
    notified.await;
    let stats = settled(&host, id).await;
    let lines = lines_of(id);
    let slow: Vec<_> = lines.iter().filter(|l| l.contains("slow poll")).collect();
    assert!(stats.slow_polls >= 2, "{stats:?} {lines:#?}");
    assert!(stats.poll_time >= Duration::from_millis(90), "{stats:?}");
    let handler = slow
        .iter()
        .find(|l| l.contains("in its handler of event `basic:run`"))
        .unwrap_or_else(|| panic!("no warning names the handler: {lines:#?}"));
    assert!(handler.contains("WARN"), "{handler}");
    assert!(
        handler.contains("plugin `basic` held a host worker for"),
        "{handler}"
    );
    let held: u64 = handler
        .split("held_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no held_ms: {handler}"));
    // The coarse clock ticks every 1 to 4 ms.
    assert!((45..1000).contains(&held), "{handler}");
    assert!(
        slow.iter().any(|l| l.contains("in task ")),
        "no warning names the task: {lines:#?}"
    );
    host.shutdown().await;
}

#[test]
fn slow_polls_are_named_coarse_clock() {
    let _serial = serial();
    multi_thread().block_on(slow_polls_are_named("coarse", PollTiming::Coarse));
}

#[test]
fn slow_polls_are_named_precise_clock_current_thread() {
    let _serial = serial();
    current_thread().block_on(slow_polls_are_named("precise", PollTiming::Precise));
}

/// `PollTiming::Off` times nothing: no poll time, no warning; the
/// counters go on. A threshold of `None` keeps poll time, without warnings.
#[test]
fn timing_off_and_no_threshold() {
    let _serial = serial();
    multi_thread().block_on(async {
        process_wide();
        for (tag, timing, threshold) in [
            ("off", PollTiming::Off, Some(Duration::from_millis(10))),
            ("nothreshold", PollTiming::Coarse, None),
        ] {
            let host = PluginHost::builder(tokio::runtime::Handle::current())
                .poll_timing(timing)
                .slow_poll_threshold(threshold)
                .build();
            let basic = Basic::load_path(host.clone(), basic_copy(tag)).await;
            assert_eq!(basic.run("block_handler", 30).await, json!("blocked"));
            let stats = settled(&host, basic.id).await;
            assert_eq!((stats.handler_calls, stats.slow_polls), (1, 0), "{stats:?}");
            if timing == PollTiming::Off {
                assert_eq!(stats.poll_time, Duration::ZERO, "{stats:?}");
            } else {
                assert!(stats.poll_time >= Duration::from_millis(20), "{stats:?}");
            }
            let lines = lines_of(basic.id);
            assert!(!lines.iter().any(|l| l.contains("slow poll")), "{lines:#?}");
            host.shutdown().await;
        }
    });
}

/// A handler past the host's deadline counts as a failure and a timeout.
#[test]
fn a_timed_out_handler_is_counted() {
    let _serial = serial();
    current_thread().block_on(async {
        process_wide();
        let host = PluginHost::builder(tokio::runtime::Handle::current())
            .handler_timeout(Duration::from_millis(50))
            .build();
        let basic = Basic::load_path(host.clone(), basic_copy("timeout")).await;
        let (report, _) = basic.try_run("pending_handler", 5000).await;
        assert!(!report.is_ok());
        let stats = settled(&host, basic.id).await;
        assert_eq!(stats.handler_calls, 1, "{stats:?}");
        assert_eq!(
            (stats.handler_failures, stats.handler_timeouts),
            (1, 1),
            "{stats:?}"
        );
        host.shutdown().await;
    });
}

#[cfg(feature = "metrics")]
mod recorder {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use horizon_plugin_host::PluginStats;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();

    pub(super) fn install() {
        let recorder = DebuggingRecorder::new();
        let _ = SNAPSHOTTER.set(recorder.snapshotter());
        recorder
            .install()
            .expect("no other metrics recorder in this test binary");
    }

    /// Every value the recorder holds, by metric name and labels; the
    /// recorder starts again from 0 (`Snapshotter::snapshot` swaps each
    /// value out).
    pub(super) fn values() -> HashMap<String, f64> {
        SNAPSHOTTER
            .get()
            .unwrap()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                let value = match value {
                    DebugValue::Counter(v) => v as f64,
                    DebugValue::Gauge(v) => v.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                };
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    /// The recorder moved by the same amounts as `stats` since the last
    /// snapshot, under the plugin's labels.
    pub(super) fn assert_exported(stats: &PluginStats) {
        let id = stats.id.to_string();
        let labels = format!("id={},plugin={}", id.trim_start_matches('#'), stats.name);
        let now = values();
        let moved = |name: &str| {
            let key = format!("{name}{{{labels}}}");
            let Some(now) = now.get(&key) else {
                panic!("{key} not recorded: {now:#?}");
            };
            *now
        };
        let expect = [
            ("horizon_plugin_handler_calls_total", stats.handler_calls),
            ("horizon_plugin_tasks_spawned_total", stats.tasks_spawned),
            ("horizon_plugin_tasks_alive", stats.tasks_alive),
            ("horizon_plugin_blocking_jobs_total", stats.blocking_jobs),
            (
                "horizon_plugin_blocking_jobs_running",
                stats.blocking_jobs_running,
            ),
            (
                "horizon_plugin_handler_failures_total",
                stats.handler_failures,
            ),
            (
                "horizon_plugin_handler_timeouts_total",
                stats.handler_timeouts,
            ),
            ("horizon_plugin_panics_total", stats.panics),
            ("horizon_plugin_events_emitted_total", stats.events_emitted),
            ("horizon_plugin_bytes_in_total", stats.bytes_in),
            ("horizon_plugin_bytes_out_total", stats.bytes_out),
            ("horizon_plugin_slow_polls_total", stats.slow_polls),
        ];
        for (name, value) in expect {
            assert_eq!(moved(name), value as f64, "{name}: {now:#?}");
        }
        let nanos = u64::try_from(stats.poll_time.as_nanos()).unwrap();
        assert_eq!(moved("horizon_plugin_poll_nanoseconds_total"), nanos as f64);
    }
}

/// A panic report is a plugin log record too: a `plugin_log_sink` gets
/// it once, as an error of target `panic`.
#[test]
fn a_panic_report_reaches_the_log_sink_once() {
    let _serial = serial();
    multi_thread().block_on(async {
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        let host = PluginHost::builder(tokio::runtime::Handle::current())
            .plugin_log_sink(move |record| sink.lock().unwrap().push(record.clone()))
            .build();
        let basic = Basic::load_path(host.clone(), basic_copy("sink")).await;
        basic.run("task_panic", 0).await;
        let panics: Vec<_> = records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.message.contains("task went wrong"))
            .cloned()
            .collect();
        assert_eq!(panics.len(), 1, "{panics:#?}");
        assert_eq!(panics[0].level, tracing::Level::ERROR);
        assert_eq!(
            (panics[0].plugin.as_str(), panics[0].target.as_str()),
            ("basic", "panic")
        );
        assert!(
            panics[0]
                .message
                .starts_with("plugin `basic` panicked in a task spawned at "),
            "{panics:#?}"
        );
        host.shutdown().await;
    });
}
