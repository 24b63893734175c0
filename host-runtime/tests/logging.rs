//! A plugin's `tracing` events (with their spans) and `log` records arrive
//! in the host's subscriber, tagged with the plugin's name and filtered by
//! the host's level.

mod common;

use std::sync::OnceLock;

use common::{Basic, Captured, current_thread, multi_thread};
use horizon_plugin_host::PluginHost;
use serde_json::json;

/// What the host's subscriber wrote, for every test of this binary (one
/// global subscriber per process); each test looks for its own lines.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| Captured::install_global(tracing::Level::INFO))
}

/// A panic the hook reported and the plugin caught itself does not hide
/// the next one on that thread that bypasses the hook (`resume_unwind`):
/// the entry point that catches it logs it. And a panic reported while
/// another unwinds does not make the outer one logged twice.
#[test]
fn a_panic_that_bypasses_the_hook_is_logged_after_one_that_did_not() {
    let captured = captured();
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        for arg in [0, 1] {
            assert_eq!(
                basic.run("unreported_after_reported", arg).await,
                json!({ "caught": true, "task failed": true })
            );
        }
        host.shutdown().await;
    });
    let out = captured.text();
    let count = |needle: &str| out.lines().filter(|l| l.contains(needle)).count();
    // The first, once (each run), by the hook's report.
    assert_eq!(count("reported, then caught by the plugin"), 2, "{out}");
    // The second, once, by the task's entry point.
    assert_eq!(
        count("a spawned task panicked: bypassed the hook"),
        1,
        "{out}"
    );
    // A panic reported while another unwinds does not make the entry
    // point log the outer one a second time.
    assert_eq!(count("a panic inside a drop while unwinding"), 1, "{out}");
    assert_eq!(count("unwinding through a drop that panics"), 1, "{out}");
}

#[test]
fn plugin_logs_arrive_in_the_host_subscriber_filtered_by_the_host() {
    let captured = captured();
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        assert_eq!(basic.run("log", 7).await, json!("logged"));
        host.shutdown().await;
    });

    let out = captured.text();
    let line = |needle: &str| out.lines().find(|l| l.contains(needle)).map(str::to_owned);
    let info =
        line("info from the plugin").unwrap_or_else(|| panic!("no plugin info event in:\n{out}"));
    assert!(info.contains("INFO"), "{info}");
    assert!(
        info.contains("plugin=\"basic\""),
        "not tagged with the plugin's name: {info}"
    );
    assert!(
        info.contains("handling{request=") && info.contains("n=7"),
        "span or fields missing: {info}"
    );
    let warn =
        line("warning through the log crate").unwrap_or_else(|| panic!("no log record in:\n{out}"));
    assert!(
        warn.contains("WARN") && warn.contains("plugin=\"basic\""),
        "{warn}"
    );
    assert!(
        line("debug from the plugin").is_none(),
        "the host filters debug out:\n{out}"
    );
}
