//! A host whose own logging panics (its `tracing` subscriber, or its
//! plugin log sink) while a plugin logs: the panic is caught in the host's
//! table functions, never unwinds across `extern "C"` (that would abort the
//! process), and the plugin keeps serving.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Basic, current_thread, multi_thread};
use horizon_plugin_host::PluginHost;
use serde_json::json;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// The target of plugin log records (documented and stable).
const PLUGIN_LOG: &str = "horizon_plugin_host::plugin_log";

/// How often the subscriber panicked.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A subscriber that panics on every question about a plugin log record:
/// when asked whether one is enabled, and when given one.
struct Exploding;

impl Subscriber for Exploding {
    /// Asked again for every record, so `enabled` runs on each.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if metadata.target() == PLUGIN_LOG {
            PANICS.fetch_add(1, Ordering::Relaxed);
            panic!("the host's subscriber exploded in enabled");
        }
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == PLUGIN_LOG {
            PANICS.fetch_add(1, Ordering::Relaxed);
            panic!("the host's subscriber exploded in event");
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_panicking_host_subscriber_or_sink_does_not_take_the_host_down() {
    tracing::subscriber::set_global_default(Exploding).expect("the only global subscriber");
    for rt in [multi_thread(), current_thread()] {
        let sunk = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = sunk.clone();
        let exploding_sink = PluginHost::builder(rt.handle().clone())
            .plugin_log_sink(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
                panic!("the host's log sink exploded");
            })
            .build();
        for host in [PluginHost::new(rt.handle().clone()), exploding_sink] {
            rt.block_on(async {
                let basic = Basic::load(host.clone()).await;
                let before = PANICS.load(Ordering::Relaxed) + sunk.load(Ordering::Relaxed);
                assert_eq!(basic.run("log", 7).await, json!("logged"));
                let after = PANICS.load(Ordering::Relaxed) + sunk.load(Ordering::Relaxed);
                assert!(after > before, "the host's logging was never asked");
                // Still serving, and logging again is still caught.
                assert_eq!(basic.run("stress", 41).await, json!(42));
                assert_eq!(basic.run("log", 8).await, json!("logged"));
                host.shutdown().await;
            });
        }
        assert!(
            sunk.load(Ordering::Relaxed) > 0,
            "the sink was never called"
        );
    }
}
