//! A plugin built with another tokio (1.38.0, `full` features so
//! `parking_lot` is on, its own lockfile) loads and runs every scenario on a
//! host whose tokio is the workspace's with `parking_lot` on too: no hang and
//! no lost wake-up over 100 runs.

mod common;

use std::time::Duration;

use common::{Basic, all_scenarios, compat_fixture, current_thread, fresh_copy_of, multi_thread};
use horizon_plugin_host::PluginHost;
use serde_json::json;

const ROUNDS: usize = 100;

#[test]
fn a_plugin_built_with_tokio_1_38_full_runs_100_rounds_on_a_parking_lot_host() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic =
            Basic::load_path(host.clone(), fresh_copy_of(&compat_fixture(), "compat")).await;
        let info = &host.plugins()[0];
        assert_eq!(info.sdk_version, env!("CARGO_PKG_VERSION"));
        assert!(
            info.path.to_string_lossy().contains("compat"),
            "{:?}",
            info.path
        );
        for round in 0..ROUNDS {
            let run = tokio::spawn({
                let basic = basic.clone();
                async move { all_scenarios(&basic).await }
            });
            // A lost wake-up shows as a hang: bound every round.
            match tokio::time::timeout(Duration::from_secs(20), run).await {
                Ok(done) => done.unwrap(),
                Err(_) => panic!("round {round} hung"),
            }
        }
        host.shutdown().await;
    });
}

#[test]
fn a_plugin_built_with_tokio_1_38_runs_on_a_current_thread_host() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic =
            Basic::load_path(host.clone(), fresh_copy_of(&compat_fixture(), "compat")).await;
        all_scenarios(&basic).await;
        assert_eq!(basic.run("spawn", 8).await, json!(16));
        host.shutdown().await;
    });
}
