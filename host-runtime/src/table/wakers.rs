//! Host futures a plugin polls (timers, emits), and the plugin-made wakers
//! the host may then hold: called only while the plugin is counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::services::{LIVE, Services};

pin_project_lite::pin_project! {
    /// A host future a plugin polls (a timer, an emit). When the plugin
    /// polls it with a waker of its own making (its private runtime's, a
    /// combinator's), that waker's code lives in the plugin, and the host
    /// (tokio's timer, a join handle) may call it from another thread at
    /// any time, even while the plugin is being unloaded. So such a waker
    /// is only called while counted as the plugin's live work (unload waits
    /// for it), and not at all once the plugin is closed (a drop is then
    /// leaked rather than run). Host wakers lent through the plugin come
    /// back as host wakers and are used as they are.
    pub(super) struct Counted<F> {
        #[pin]
        pub(super) inner: F,
        pub(super) services: Arc<Services>,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !horizon_plugin_sdk::abi::waker::is_foreign(cx.waker()) {
            return this.inner.poll(cx);
        }
        let waker = Waker::from(Arc::new(CountedWaker {
            waker: std::mem::ManuallyDrop::new(cx.waker().clone()),
            services: Arc::clone(this.services),
        }));
        this.inner.poll(&mut Context::from_waker(&waker))
    }
}

/// A plugin-made waker held by the host, called only while counted.
struct CountedWaker {
    waker: std::mem::ManuallyDrop<Waker>,
    services: Arc<Services>,
}

impl std::task::Wake for CountedWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.services.enter(LIVE) {
            self.waker.wake_by_ref();
        }
        self.services.leave(LIVE);
    }
}

impl Drop for CountedWaker {
    fn drop(&mut self) {
        if self.services.enter(LIVE) {
            // SAFETY: dropped once, here.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.waker) };
        }
        // Closed: the plugin's code may be unmapped by the time this runs;
        // its waker is leaked instead.
        self.services.leave(LIVE);
    }
}
