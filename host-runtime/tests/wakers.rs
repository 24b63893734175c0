//! Host wakers cross into plugin code without being boxed: the plugin sees
//! each host waker vtable through one of a few static slots, and falls back
//! to a boxed copy once those are taken. Whatever waker the emitter is
//! polled with (here twelve distinct waker types, more than there are
//! slots), plugin code that clones it, wakes it from another thread or a
//! blocking thread, or wakes it by reference must wake the emitter.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use common::{Basic, current_thread, multi_thread};
use horizon_plugin_host::PluginHost;
use serde_json::json;

macro_rules! forwarding_wakers {
    ($($name:ident),* $(,)?) => {
        $(
            /// A waker type of its own (so a vtable of its own) that wakes
            /// the task polling it.
            struct $name(Waker);

            impl Wake for $name {
                fn wake(self: Arc<Self>) {
                    self.0.wake_by_ref();
                }
                fn wake_by_ref(self: &Arc<Self>) {
                    self.0.wake_by_ref();
                }
            }
        )*

        /// Wraps `inner` in the waker type number `kind`.
        fn wrap(kind: usize, inner: &Waker) -> Waker {
            let makers: &[fn(Waker) -> Waker] = &[$(|w| Waker::from(Arc::new($name(w)))),*];
            makers[kind % makers.len()](inner.clone())
        }

        const KINDS: usize = [$(stringify!($name)),*].len();
    };
}

forwarding_wakers!(W0, W1, W2, W3, W4, W5, W6, W7, W8, W9, W10, W11);

/// Polls `fut` with a waker of type `kind` wrapping the task's own.
async fn with_waker_kind<F: Future>(kind: usize, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        let waker = wrap(kind, cx.waker());
        fut.as_mut().poll(&mut Context::from_waker(&waker))
    })
    .await
}

async fn every_waker_kind(basic: &Basic) {
    for kind in 0..KINDS {
        let run = async {
            // Joins a task (the join registers a clone of the waker, woken
            // from whichever thread finishes the task), sleeps on the host
            // timer, yields (wake by reference), and waits for a blocking job.
            assert_eq!(basic.run("spawn", 21).await, json!(42));
            assert!(basic.run("sleep", 2).await.as_u64().unwrap() >= 2_000);
            assert_eq!(basic.run("yield", 5).await, json!(5));
            assert_eq!(basic.run("blocking", 1).await["value"], json!(2));
        };
        tokio::time::timeout(Duration::from_secs(10), with_waker_kind(kind, run))
            .await
            .unwrap_or_else(|_| panic!("a wake of waker kind {kind} was lost"));
    }
}

/// Loads the fixture on `rt` and runs every waker kind from a runtime task,
/// so handlers are polled inline with the emitter's waker.
fn on_runtime(rt: tokio::runtime::Runtime) {
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        tokio::spawn(async move { every_waker_kind(&basic).await })
            .await
            .unwrap();
        host.shutdown().await;
    });
}

#[test]
fn every_waker_kind_wakes_the_emitter_multi_thread() {
    on_runtime(multi_thread());
}

#[test]
fn every_waker_kind_wakes_the_emitter_current_thread() {
    on_runtime(current_thread());
}
