//! A plugin's `tracing` events (with their spans) and `log` records arrive
//! in the host's subscriber, tagged with the plugin's name and filtered by
//! the host's level.

mod common;

use common::{Basic, Captured, multi_thread};
use horizon_plugin_host::PluginHost;
use serde_json::json;

#[test]
fn plugin_logs_arrive_in_the_host_subscriber_filtered_by_the_host() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        assert_eq!(basic.run("log", 7).await, json!("logged"));
        host.shutdown().await;
    });

    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
