//! The `extern "C"` functions of a plugin's [`HostApi`](horizon_plugin_sdk::abi::HostApi).
//!
//! Every function here catches panics (a panic unwinding out of an
//! `extern "C"` function aborts the process), may be called from any thread,
//! including threads outside the runtime, and reports failure in its return
//! value.

use std::ffi::c_void;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use horizon_plugin_sdk::Event;
use horizon_plugin_sdk::abi::guard::catch;
use horizon_plugin_sdk::abi::{
    ABI_VERSION, BlockingJob, HostApi, RStatus, RStr, RString, RawFuture, RawHandler, STATUS_ERROR,
    STATUS_NO_HANDLER,
};

use super::log;
use super::services::{EventBus, PluginHandler, Services, services, services_arc};
use super::wakers::Counted;
use crate::error::CallError;
use crate::report::FailureKind;
use crate::sync::lock;

/// The service table of the `Services` at `data`: this module's functions.
/// `data` is only stored here, and dereferenced by those functions, which
/// the plugin calls after `init`, once the `Services` is built.
pub(super) fn table(
    data: *const c_void,
    flags: u32,
    share_from: usize,
    every_level: bool,
) -> HostApi {
    HostApi {
        abi_version: ABI_VERSION,
        size: size_of::<HostApi>() as u32,
        data,
        flags,
        spawn: host_spawn,
        spawn_blocking: host_spawn_blocking,
        task_abort: host_task_abort,
        sleep: host_sleep,
        emit: host_emit,
        subscribe: host_subscribe,
        max_level: if every_level {
            horizon_plugin_sdk::abi::level::TRACE
        } else {
            log::max_level()
        },
        log_enabled: log::enabled,
        log: log::log,
        budget: Some(host_budget),
        report_panic: Some(log::report_panic),
        answer: Some(host_answer),
        call: Some(host_call),
        share_from,
        payload_retain: Some(super::lend::payload_retain),
        payload_release: Some(super::lend::payload_release),
        thread_exit: Some(super::thread_exit::thread_exit),
    }
}

/// Consumes one unit of the budget tokio keeps for the host task that is
/// polling the plugin right now (the plugin calls this from inside a
/// poll), as tokio's own resources do. When it is spent, tokio keeps a
/// clone of the context's waker and wakes it once the task's poll is over;
/// the plugin returns `Pending`. So tokio is only ever given a host waker:
/// the task's own (a host waker lent through the plugin comes back as
/// itself), or, when the plugin polls with a waker of its own making (a
/// combinator), a no-op one, the plugin's being woken here, during the
/// call, while the plugin is counted as running. No plugin waker is kept.
pub(super) unsafe extern "C" fn host_budget(
    _data: *const c_void,
    waker: *const horizon_plugin_sdk::abi::BoundaryWaker,
) -> bool {
    use horizon_plugin_sdk::abi::waker;
    use std::task::{Context, Poll, Waker};
    let proceed = |cx: &mut Context<'_>| match tokio::task::coop::poll_proceed(cx) {
        Poll::Ready(restore) => {
            restore.made_progress();
            true
        }
        Poll::Pending => false,
    };
    catch(|| {
        // SAFETY: the plugin passes the waker of its current poll, valid
        // for this call.
        let waker = unsafe { &*waker };
        if waker::is_own(waker) {
            // SAFETY: as above.
            return unsafe { waker::with_context(waker, proceed) };
        }
        let go_on = proceed(&mut Context::from_waker(Waker::noop()));
        if !go_on {
            // SAFETY: as above; woken by reference, not kept.
            unsafe { waker::with_context(waker, |cx| cx.waker().wake_by_ref()) };
        }
        go_on
    })
    .unwrap_or(true)
}

pub(super) unsafe extern "C" fn host_spawn(data: *const c_void, fut: RawFuture) -> bool {
    // SAFETY: the plugin passes back the `data` of its table.
    let services = unsafe { services(data) };
    catch(|| services.spawn_raw(fut)).unwrap_or(false)
}

pub(super) unsafe extern "C" fn host_spawn_blocking(data: *const c_void, job: BlockingJob) -> bool {
    // SAFETY: as in `host_spawn`.
    let services = unsafe { services(data) };
    catch(|| services.spawn_blocking(job)).unwrap_or(false)
}

pub(super) unsafe extern "C" fn host_task_abort(data: *const c_void, task: *const c_void) {
    // SAFETY: as in `host_spawn`.
    let services = unsafe { services(data) };
    let _ = catch(|| services.abort(task as usize));
}

pub(super) unsafe extern "C" fn host_sleep(data: *const c_void, nanos: u64) -> RawFuture<()> {
    // SAFETY: the plugin passes back the `data` of its table.
    let services = unsafe { services_arc(data) };
    // Entering the handle lets this work from threads outside the runtime.
    let made = catch(|| {
        let _enter = services.handle.enter();
        tokio::time::sleep(Duration::from_nanos(nanos))
    });
    match made {
        Ok(sleep) => RawFuture::new(Counted {
            inner: sleep,
            services,
        }),
        Err(panic) => {
            let _ = catch(|| {
                tracing::error!(
                    plugin = %services.name,
                    "cannot start a timer for the plugin: {panic} (is the host runtime built with `enable_time`?)",
                );
            });
            RawFuture::new(std::future::ready(()))
        }
    }
}

pub(super) unsafe extern "C" fn host_emit(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RawFuture<RStatus> {
    // SAFETY: the arguments of `host_emit`, forwarded.
    unsafe {
        start_on_bus(data, name, payload, STATUS_ERROR, |bus, event, services| {
            services.stats.emitted(event.wire_bytes().len());
            let from = services.name.clone();
            async move {
                let report = bus.dispatch(event).await;
                for failure in &report.failures {
                    tracing::warn!(from = %from, "{failure}");
                }
                RStatus::ok()
            }
        })
    }
}

/// Calls the handler answering `name` (`HostApi::call`): a call from one
/// plugin to whichever answers the name, through the bus; the answer
/// crosses back in a host-owned `RString`.
pub(super) unsafe extern "C" fn host_call(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RawFuture<RStatus> {
    // SAFETY: the arguments of `host_call`, forwarded.
    unsafe {
        start_on_bus(
            data,
            name,
            payload,
            STATUS_NO_HANDLER,
            |bus, event, _| async move {
                match bus.call(event).await {
                    Ok(answer) => RStatus {
                        code: horizon_plugin_sdk::abi::STATUS_OK,
                        message: RString::from(answer.wire_bytes().to_vec()),
                    },
                    Err(e) => call_status(&e),
                }
            },
        )
    }
}

/// A call's failure as its status (`FLAG_CALL_STATUS`): the code says the
/// kind, the message is `e`'s description.
fn call_status(e: &CallError) -> RStatus {
    use horizon_plugin_sdk::abi::{
        STATUS_CANCELLED, STATUS_PANIC, STATUS_REJECTED, STATUS_TIMED_OUT,
    };
    let code = match e {
        CallError::NoHandler(_) => STATUS_NO_HANDLER,
        CallError::Handler(failure) => match failure.kind {
            FailureKind::Failed(_) => STATUS_ERROR,
            FailureKind::Panicked(_) => STATUS_PANIC,
            FailureKind::Rejected(_) => STATUS_REJECTED,
            FailureKind::TimedOut(_) => STATUS_TIMED_OUT,
            FailureKind::Cancelled(_) => STATUS_CANCELLED,
        },
        CallError::Encode(_) | CallError::Decode(_) => STATUS_ERROR,
    };
    RStatus {
        code,
        message: RString::from(e.to_string()),
    }
}

/// What `host_emit` and `host_call` share: the plugin's event (`name`,
/// `payload`) copied and marked with its sender, handed with the bus to
/// `run`, whose future is counted as the plugin's work; a host that shut
/// down (status code `gone`: an emit's error, or a call's
/// `STATUS_NO_HANDLER`, as `FLAG_CALL_STATUS` reads it), a name that is not UTF-8 or a panic of
/// the host's own code is a ready error status (a plugin reads the last
/// two, from a call, as `Failed` and `Panicked`: neither happens with a
/// name from `&str` and a host that works).
///
/// # Safety
/// `data` is the `data` of a plugin's table; `name` and `payload` are
/// alive for this call (they are copied before it returns).
unsafe fn start_on_bus<F, Fut>(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
    gone: u32,
    run: F,
) -> RawFuture<RStatus>
where
    F: FnOnce(Arc<dyn EventBus>, Event, &Services) -> Fut,
    Fut: Future<Output = RStatus> + Send + 'static,
{
    // SAFETY: the caller's guarantee.
    let (services, name, payload) =
        unsafe { (services_arc(data), name.as_bytes(), payload.as_bytes()) };
    let started = catch(|| {
        let Some(bus) = services.bus.upgrade() else {
            return Err(RStatus {
                code: gone,
                message: RString::from("the host has shut down".to_owned()),
            });
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(RStatus::error("the name is not UTF-8"));
        };
        let event = Event::from_wire_bytes(name, payload).with_source(&services.name);
        let inner = run(bus, event, &services);
        Ok(Counted { inner, services })
    });
    match started {
        Ok(Ok(fut)) => RawFuture::new(fut),
        Ok(Err(status)) => RawFuture::new(std::future::ready(status)),
        Err(panic) => RawFuture::new(std::future::ready(RStatus::panic(panic))),
    }
}

pub(super) unsafe extern "C" fn host_subscribe(
    data: *const c_void,
    name: RStr<'_>,
    handler: RawHandler,
) -> RStatus {
    // SAFETY: the plugin passes back the `data` of its table; `name` is
    // alive for this call.
    unsafe { register(data, name, handler, false) }
}

/// Registers an answering handler (`HostApi::answer`): as a subscription,
/// once the bus granted the plugin the name.
pub(super) unsafe extern "C" fn host_answer(
    data: *const c_void,
    name: RStr<'_>,
    handler: RawHandler,
) -> RStatus {
    // SAFETY: as in `host_subscribe`.
    unsafe { register(data, name, handler, true) }
}

/// Takes ownership of a plugin's handler for `name` (an event handler, or
/// with `answers` an answering one) and puts it on the bus, or among the
/// plugin's pending ones until it is activated.
///
/// # Safety
/// `data` is the `data` of a plugin's table and `name` is alive for this
/// call (the arguments of `host_subscribe` and `host_answer`).
unsafe fn register(
    data: *const c_void,
    name: RStr<'_>,
    handler: RawHandler,
    answers: bool,
) -> RStatus {
    // SAFETY: the caller's guarantee.
    let (services, name) = unsafe { (services_arc(data), name.to_str()) };
    let (handler_data, handler_drop) = (handler.data, handler.drop);
    let mut handler = Some(handler);
    let result = catch(|| {
        let Some(name) = name else {
            return Err("event name is not UTF-8".to_owned());
        };
        let Some(bus) = services.bus.upgrade() else {
            return Err("the host has shut down".to_owned());
        };
        let order = lock(&services.parked);
        if services.closed.load(Ordering::SeqCst) {
            return Err("the plugin is being unloaded".to_owned());
        }
        if answers {
            if services.held.load(Ordering::Relaxed) {
                return Err(format!(
                    "not answering `{name}`: the plugin is being replaced, unloaded or quarantined"
                ));
            }
            let (twice, activated) = {
                let pending = lock(&services.pending);
                let twice = pending
                    .iter()
                    .flatten()
                    .any(|(n, h)| h.answers && n == name);
                (twice, pending.is_none())
            };
            if twice {
                return Err(format!("this plugin answers `{name}` already"));
            }
            bus.claim(name, &services, activated)?;
        }
        let handler = handler.take().expect("taken once");
        let subscriber = Arc::new(PluginHandler {
            services: Arc::clone(&services),
            data: handler.data,
            call: handler.call,
            answers,
        });
        lock(&services.handlers).push(handler);
        match lock(&services.pending).as_mut() {
            Some(pending) => pending.push((name.to_owned(), subscriber)),
            None if services.is_quarantined() => {}
            None => bus.swap(None, vec![(name.to_owned(), subscriber)]),
        }
        drop(order);
        Ok(())
    });
    if handler.is_some() {
        // Refused: the handler goes back to the plugin, which is running
        // (this is its call), and is dropped by the plugin's own code.
        // SAFETY: the plugin gave us `handler` with this call; it was not
        // stored, so this is its one `drop`.
        unsafe { handler_drop(handler_data) };
    }
    match result {
        Ok(Ok(())) => RStatus::ok(),
        Ok(Err(msg)) => RStatus::error(msg),
        Err(panic) => RStatus::panic(panic),
    }
}
