//! The host runs with mimalloc as its global allocator; plugins keep the
//! system allocator. Every scenario, load/unload cycles and failing loads
//! still work, because each side frees only what it allocated (through the
//! owner's function pointers). `.ci/run` also runs this binary under
//! valgrind, which reports any invalid free.

mod common;

use common::{Basic, all_scenarios, current_thread, fresh_copy, multi_thread};
use horizon_plugin_host::{LoadError, PluginHost};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[test]
fn scenarios_with_a_mimalloc_host() {
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            all_scenarios(&basic).await;
            let (report, _) = basic.try_run("fail", 0).await;
            assert_eq!(report.failures.len(), 1);
            let (report, _) = basic.try_run("panic", 0).await;
            assert_eq!(report.failures.len(), 1);
            host.shutdown().await;
        });
    }
}

#[test]
fn load_unload_and_failing_loads_with_a_mimalloc_host() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        for _ in 0..5 {
            let basic = Basic::load(host.clone()).await;
            basic.run("ticker", 0).await;
            assert_eq!(basic.run("spawn", 2).await, json!(4));
            host.unload(basic.id).await.unwrap();
        }
        let err = host.load(fresh_copy("load-error")).await.unwrap_err();
        assert!(matches!(err, LoadError::OnLoad { .. }));
        let err = host.load(fresh_copy("load-panic")).await.unwrap_err();
        assert!(matches!(err, LoadError::OnLoadPanicked { .. }));
    });
}
