//! A plugin's event handlers and answering handlers as the host sees them:
//! each boxed with its event's name behind a `RawHandler`, whose `extern
//! "C"` functions (here) start one call as a `RawFuture` and release the
//! handler. An event handler's status carries nothing; an answering
//! handler's carries its answer ([`Reply`]).

use std::ffi::c_void;
use std::future::Future;
use std::sync::Arc;

use super::injected::{self, Guarded};
use crate::abi::guard::{catch, entered};
use crate::abi::{
    HostApi, RStatus, RStr, RString, RawFuture, RawHandler, STATUS_OK, STATUS_REJECTED,
};
use crate::boundary::panics::{self, Site};
use crate::{Event, PluginError};

/// A registered handler: the closure and its event's name (shared by every
/// `Event` it receives, so a call copies only the payload).
struct Handler<F> {
    event: Arc<str>,
    f: F,
}

/// What a handler's successful call hands back to the host.
pub(crate) trait Reply: Send + 'static {
    fn into_status(self) -> RStatus;
}

/// An event handler: nothing.
impl Reply for () {
    fn into_status(self) -> RStatus {
        RStatus::ok()
    }
}

/// An answering handler: the answer's payload in wire form, in the status'
/// message (`HostApi::answer`).
impl Reply for Event {
    fn into_status(self) -> RStatus {
        RStatus {
            code: STATUS_OK,
            message: RString::from(self.wire_bytes().to_vec()),
        }
    }
}

/// A host function that takes ownership of a handler for a name
/// (`HostApi::subscribe`, `HostApi::answer`).
pub(crate) type Register = unsafe extern "C" fn(*const c_void, RStr<'_>, RawHandler) -> RStatus;

/// The `call` of a `RawHandler`.
type CallFn = unsafe extern "C" fn(*const c_void, RStr<'_>, RStr<'_>) -> RawFuture<RStatus>;

/// Registers `handler`, an async handler, for `event` through `register`,
/// a function of the host's table; the host owns the handler from then on,
/// whatever it answers.
///
/// # Safety
/// `api` is the live host table (`injected::host()`) and `register` one of
/// its functions taking a `RawHandler` (`subscribe`, `answer`).
pub(crate) unsafe fn register<F, Fut, R>(
    api: &'static HostApi,
    register: Register,
    event: &str,
    handler: F,
) -> RStatus
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, PluginError>> + Send + 'static,
    R: Reply,
{
    // SAFETY: the caller's guarantee; `call_handler::<F, ..>` reads a
    // `Handler<F>`.
    unsafe { hand_over(api, register, event, handler, call_handler::<F, Fut, R>) }
}

/// Registers `handler`, a synchronous event handler, for `event` through
/// `register` (`subscribe`): each call runs it to completion inside the
/// host's call, given the event's name and the host's wire bytes,
/// borrowed for the call, and returns a completed `RawFuture`.
///
/// # Safety
/// As [`register`].
pub(crate) unsafe fn register_sync<F>(
    api: &'static HostApi,
    register: Register,
    event: &str,
    handler: F,
) -> RStatus
where
    F: Fn(&Arc<str>, &[u8]) -> Result<(), PluginError> + Send + Sync + 'static,
{
    // SAFETY: the caller's guarantee; `call_sync_handler::<F>` reads a
    // `Handler<F>`.
    unsafe { hand_over(api, register, event, handler, call_sync_handler::<F>) }
}

/// Boxes `f` with its event's name behind a `RawHandler` and gives it to
/// the host through `register`.
///
/// # Safety
/// As [`register`], and `call` takes the `data` of a `Handler<F>`.
unsafe fn hand_over<F: Send + Sync + 'static>(
    api: &'static HostApi,
    register: Register,
    event: &str,
    f: F,
    call: CallFn,
) -> RStatus {
    let handler = Box::new(Handler {
        event: Arc::from(event),
        f,
    });
    let raw = RawHandler {
        data: Box::into_raw(handler).cast_const().cast(),
        call,
        drop: drop_handler::<F>,
    };
    // SAFETY: `api` is the live host table and `register` one of its
    // functions (the caller's guarantee); they never unwind and take
    // ownership of `raw` whatever they return.
    unsafe { register(api.data, RStr::new(event), raw) }
}

pub(crate) fn status_to_result(status: RStatus) -> Result<(), PluginError> {
    if status.code == STATUS_OK {
        Ok(())
    } else {
        Err(PluginError::msg(status.message.to_string_lossy()))
    }
}

pub(crate) fn result_to_status<R: Reply>(
    result: Result<Result<R, PluginError>, String>,
) -> RStatus {
    match result {
        Ok(Ok(reply)) => reply.into_status(),
        Ok(Err(e)) if e.is_rejected() => RStatus {
            code: STATUS_REJECTED,
            message: RString::from(e.to_string()),
        },
        Ok(Err(e)) => RStatus::error(e.to_string()),
        Err(panic) => RStatus::panic(panic),
    }
}

/// Starts one call of a handler. Monomorphized per handler type, so the
/// handler's future is stored inline in the one allocation of the
/// `RawFuture` that crosses back to the host.
unsafe extern "C" fn call_handler<F, Fut, R>(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RawFuture<RStatus>
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, PluginError>> + Send + 'static,
    R: Reply,
{
    entered("handler call");
    let started = catch(|| {
        // SAFETY: `data` is the `Box<Handler<F>>` made in `hand_over` (by
        // `register`), alive until `drop_handler`, which the host calls only
        // after its last call.
        let handler = unsafe { &*data.cast::<Handler<F>>() };
        // SAFETY: the host keeps `name` and `payload` alive for this call; we copy them.
        let (name, payload) = unsafe { (name.as_bytes(), payload.as_bytes()) };
        let event = if name == handler.event.as_bytes() {
            Event::from_call(injected::host(), Arc::clone(&handler.event), payload)
        } else {
            Event::from_wire_bytes(&String::from_utf8_lossy(name), payload)
        };
        let site = Site::Handler(std::ptr::from_ref::<str>(&handler.event));
        (event, site)
    });
    match started {
        // The site points into the handler, which the host keeps until
        // every call's future is dropped.
        Ok((event, site)) => {
            let handler = HandlerRef(data.cast::<Handler<F>>());
            // The handler's closure runs at the first poll, inside the one
            // entry of the private runtime and the panic guard of that
            // poll (`Guarded`), rather than in an entry of its own here:
            // one entry per call fewer on the emit path (BENCHMARKS.md,
            // "Thread-exit round"). The event was copied (or its buffer
            // retained) above, while the host's bytes were alive.
            let call = async move {
                // SAFETY: the host keeps the handler until every future a
                // call returned has been dropped (`RawHandler::drop`'s
                // contract), and this future is one.
                let handler = unsafe { &*handler.get() };
                (handler.f)(event).await
            };
            RawFuture::new(async move { result_to_status(Guarded::new(call, site).await) })
        }
        Err(panic) => RawFuture::new(std::future::ready(RStatus::panic(panic))),
    }
}

/// Runs one call of a synchronous handler (`register_sync`) to the end, in
/// the private runtime's context and the panic guard, as the first poll of
/// an async handler's future runs; the outcome crosses back as a completed
/// `RawFuture`, with no allocation when it is a success.
unsafe extern "C" fn call_sync_handler<F>(
    data: *const c_void,
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RawFuture<RStatus>
where
    F: Fn(&Arc<str>, &[u8]) -> Result<(), PluginError> + Send + Sync + 'static,
{
    entered("handler call");
    // SAFETY: `data` is the `Box<Handler<F>>` made in `hand_over` (by
    // `register_sync`), alive until `drop_handler`, which the host calls
    // only after its last call.
    let handler = unsafe { &*data.cast::<Handler<F>>() };
    // SAFETY: the host keeps `name` and `payload` alive for this call; the
    // handler reads them during the call and copies what it keeps.
    let (name, payload) = unsafe { (name.as_bytes(), payload.as_bytes()) };
    let site = Site::Handler(std::ptr::from_ref::<str>(&handler.event));
    // The status is made inside the guard and the entry: making it drops
    // the handler's error, whose source is user code that may panic.
    let status = panics::at(site, || {
        catch(|| {
            injected::in_private(|| {
                let result = if name == handler.event.as_bytes() {
                    (handler.f)(&handler.event, payload)
                } else {
                    (handler.f)(&Arc::from(String::from_utf8_lossy(name)), payload)
                };
                result_to_status(Ok(result))
            })
        })
    });
    RawFuture::ready(status.unwrap_or_else(RStatus::panic))
}

/// The handler a call's future runs, by address (see `call_handler`).
struct HandlerRef<F>(*const Handler<F>);

// SAFETY: stands for a shared reference to a `Handler<F>`, which may move
// between threads when `Handler<F>` is `Sync`: its closure is (`register`'s
// bounds) and its name is an `Arc<str>`.
unsafe impl<F: Sync> Send for HandlerRef<F> {}

impl<F> HandlerRef<F> {
    /// The address (a method: an `async` block then captures the whole
    /// `HandlerRef`, which is `Send`, not its raw-pointer field).
    fn get(&self) -> *const Handler<F> {
        self.0
    }
}

unsafe extern "C" fn drop_handler<F>(data: *const c_void) {
    entered("handler drop");
    // SAFETY: as in `call_handler`; the host calls this exactly once.
    let handler = unsafe { Box::from_raw(data.cast_mut().cast::<Handler<F>>()) };
    let _ = catch(move || injected::in_private(|| drop(handler)));
}
