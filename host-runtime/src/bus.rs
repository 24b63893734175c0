//! The event bus: who is subscribed to which event, and delivering one
//! event to each of them (host handlers called in place, plugin handlers
//! polled once inline and moved into a task of their plugin if pending);
//! and who answers which call, and running one call the same way.
//!
//! Lock order: see `crate::table`.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};

use horizon_plugin_sdk::abi::RStr;
use horizon_plugin_sdk::abi::guard::{catch, panic_message};
use horizon_plugin_sdk::{Event, PluginError};
use rustc_hash::FxHashMap;

use crate::error::CallError;
use crate::info::PluginId;
use crate::report::{EmitReport, FailureKind, HandlerFailure, Outcome, Tally, status_outcome};
use crate::stats::{Site, SiteRef};
use crate::sync::{read, write};
use crate::table::{EventBus, NamedHandler, PluginHandler, Services, lending};

/// A host handler (`PluginHost::on`, `on_any`, `on_event`): an error is a
/// failure in the report (a typed handler's payload that did not decode).
pub(crate) type HostHandler = Arc<dyn Fn(Event) -> Result<(), PluginError> + Send + Sync>;

/// One subscription to an event name.
#[derive(Clone)]
pub(crate) enum Subscriber {
    Host(HostHandler),
    Plugin(Arc<PluginHandler>),
}

impl Subscriber {
    fn plugin_id(&self) -> Option<PluginId> {
        match self {
            Subscriber::Host(_) => None,
            Subscriber::Plugin(h) => Some(h.services.id),
        }
    }
}

/// Every subscription, read by each dispatch under one read lock.
#[derive(Default)]
struct Subscriptions {
    /// Per event name, an immutable list replaced on every change, so a
    /// dispatch takes a snapshot by cloning one `Arc`.
    named: FxHashMap<String, Arc<[Subscriber]>>,
    /// Host handlers of every event (`on_any`), replaced the same way.
    any: Option<Arc<[HostHandler]>>,
    /// The answering handler of each call name, once its plugin is active.
    answers: FxHashMap<String, Arc<PluginHandler>>,
    /// Who holds each call name: claimed when the handler registers
    /// (before its plugin is active, so two plugins loading at once cannot
    /// both get it), released with the plugin's subscriptions, or passed to
    /// the copy that reserved it (a reload's new copy) when the holder's
    /// are removed.
    claims: FxHashMap<String, Claim>,
}

/// The holder of a call name, and the reload's new copy waiting for it.
struct Claim {
    owner: (PluginId, String),
    successor: Option<(PluginId, String)>,
}

impl Subscriptions {
    /// Removes every subscription, answer and claim of plugin `id`: a
    /// claim it holds passes to its successor, one it reserved is dropped.
    fn remove_plugin(&mut self, id: PluginId) {
        remove_plugin(&mut self.named, id);
        self.answers.retain(|_, h| h.services.id != id);
        self.claims.retain(|_, claim| {
            if claim.successor.as_ref().is_some_and(|s| s.0 == id) {
                claim.successor = None;
            }
            if claim.owner.0 != id {
                return true;
            }
            match claim.successor.take() {
                Some(successor) => {
                    claim.owner = successor;
                    true
                }
                None => false,
            }
        });
    }

    /// Adds plugin handlers: event handlers to their event's list, answers
    /// to the call table, whose claims their registration made (see
    /// `Bus::claim_name`). Returns the answers it could not add (a claim
    /// lost meanwhile: not expected, logged by the caller).
    fn add(&mut self, new: Vec<(String, Subscriber)>) -> Vec<(String, Arc<PluginHandler>)> {
        let mut lost = Vec::new();
        for (event, subscriber) in new {
            if let Subscriber::Plugin(handler) = &subscriber
                && handler.answers
            {
                let id = handler.services.id;
                match self.claims.get(&event) {
                    Some(claim) if claim.owner.0 == id => {
                        self.answers.insert(event, Arc::clone(handler));
                    }
                    _ => lost.push((event, Arc::clone(handler))),
                }
                continue;
            }
            let list = self.named.entry(event).or_default();
            *list = list
                .iter()
                .cloned()
                .chain(std::iter::once(subscriber))
                .collect();
        }
        lost
    }
}

/// Removes every subscription of plugin `id`.
fn remove_plugin(subs: &mut FxHashMap<String, Arc<[Subscriber]>>, id: PluginId) {
    for list in subs.values_mut() {
        if list.iter().any(|s| s.plugin_id() == Some(id)) {
            *list = list
                .iter()
                .filter(|s| s.plugin_id() != Some(id))
                .cloned()
                .collect();
        }
    }
    subs.retain(|_, list| !list.is_empty());
}

/// Calls a host handler, turning an error or a panic into a failure in `report`.
fn call_host_handler(handler: &HostHandler, event: &Event, report: &mut Tally) {
    let kind = match catch(|| handler(event.clone())) {
        Ok(Ok(())) => return report.delivered += 1,
        Ok(Err(e)) if e.is_rejected() => FailureKind::Rejected(e.to_string()),
        Ok(Err(e)) => FailureKind::Failed(e.to_string()),
        Err(message) => FailureKind::Panicked(message),
    };
    report.failures.push(HandlerFailure {
        plugin: None,
        subscriber: "host".to_owned(),
        event: event.name().to_owned(),
        kind,
    });
}

/// How many handler polls may nest inline on one thread (see `start_handler`).
const MAX_INLINE_DEPTH: u32 = 16;

thread_local! {
    /// Handler polls nested inline on this thread right now.
    static INLINE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// How a plugin handler's run for one event went, or is going: its
/// outcome `O`, host-owned (made from the plugin's status before the
/// plugin's count of the call is released).
enum HandlerRun<O> {
    /// The plugin is being unloaded; the handler did not run.
    Refused,
    /// It finished on its first poll.
    Done(O),
    /// It runs as a task of its plugin (`None`: cancelled by unload).
    Task(tokio::task::JoinHandle<Option<O>>),
}

/// Aborts a task when dropped (a no-op once it finished).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An answering handler's outcome: the answer's payload in wire form.
type Answer = Result<Vec<u8>, FailureKind>;

/// An answering handler's status as a host-owned [`Answer`].
fn answer_outcome(status: horizon_plugin_sdk::abi::RStatus) -> Answer {
    match status.code {
        horizon_plugin_sdk::abi::STATUS_OK => Ok(status.message.as_bytes().to_vec()),
        _ => status_outcome(status).map(|()| Vec::new()),
    }
}

/// The subscriptions of one host, and the quarantine policy applied to
/// plugin handlers' outcomes.
pub(crate) struct Bus {
    subscribers: RwLock<Subscriptions>,
    quarantine_after: Option<u32>,
    /// How long an emit waits for plugin handlers (`HostBuilder::handler_timeout`).
    handler_timeout: std::time::Duration,
    /// The host's runtime: its timer bounds the wait from any thread.
    handle: tokio::runtime::Handle,
}

impl EventBus for Bus {
    fn dispatch(&self, event: Event) -> Pin<Box<dyn Future<Output = EmitReport> + Send + '_>> {
        Box::pin(Bus::dispatch(self, event))
    }

    fn swap(&self, replacing: Option<PluginId>, handlers: Vec<NamedHandler>) {
        self.swap_subscribers(
            replacing,
            handlers
                .into_iter()
                .map(|(event, handler)| (event, Subscriber::Plugin(handler)))
                .collect(),
        );
    }

    fn remove(&self, plugin: PluginId) {
        self.remove_subscribers(plugin);
    }

    fn call(
        &self,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Result<Event, CallError>> + Send + '_>> {
        Box::pin(Bus::call(self, event))
    }

    fn claim(&self, name: &str, services: &Services, activated: bool) -> Result<(), String> {
        self.claim_name(name, services, activated)
    }
}

impl Bus {
    pub(crate) fn new(
        quarantine_after: Option<u32>,
        handler_timeout: std::time::Duration,
        handle: tokio::runtime::Handle,
    ) -> Self {
        Bus {
            subscribers: RwLock::default(),
            quarantine_after,
            handler_timeout,
            handle,
        }
    }

    /// Adds a host handler for events named `event`.
    pub(crate) fn on(&self, event: &str, handler: HostHandler) {
        self.swap_subscribers(None, vec![(event.to_owned(), Subscriber::Host(handler))]);
    }

    /// Adds a host handler for every event.
    pub(crate) fn on_any(&self, handler: HostHandler) {
        let mut subs = write(&self.subscribers);
        subs.any = Some(
            subs.any
                .iter()
                .flat_map(|any| any.iter().cloned())
                .chain(std::iter::once(handler))
                .collect(),
        );
    }

    /// Removes `old`'s subscriptions (and answers and claims) and adds
    /// `new` ones under one write lock.
    fn swap_subscribers(&self, old: Option<PluginId>, new: Vec<(String, Subscriber)>) {
        let lost = {
            let mut subs = write(&self.subscribers);
            if let Some(old) = old {
                subs.remove_plugin(old);
            }
            subs.add(new)
        };
        for (event, handler) in lost {
            let services = &handler.services;
            tracing::warn!(
                plugin = %services.name,
                id = %services.id,
                "not answering `{event}`: the plugin lost its claim to the name before it was activated"
            );
        }
    }

    pub(crate) fn remove_subscribers(&self, id: PluginId) {
        write(&self.subscribers).remove_plugin(id);
    }

    /// See [`EventBus::claim`]. `activated`: whether `services`' plugin
    /// receives events already (a reload's new copy reserves its
    /// predecessor's names only before).
    fn claim_name(&self, name: &str, services: &Services, activated: bool) -> Result<(), String> {
        let me = (services.id, services.name.clone());
        let mut subs = write(&self.subscribers);
        let Some(claim) = subs.claims.get_mut(name) else {
            subs.claims.insert(
                name.to_owned(),
                Claim {
                    owner: me,
                    successor: None,
                },
            );
            return Ok(());
        };
        let mine = |who: &Option<(PluginId, String)>| who.as_ref().is_some_and(|w| w.0 == me.0);
        if claim.owner.0 == me.0 || mine(&claim.successor) {
            return Err(format!("this plugin answers `{name}` already"));
        }
        if !activated && Some(claim.owner.0) == services.replaces && claim.successor.is_none() {
            claim.successor = Some(me);
            return Ok(());
        }
        let (owner, holder) = &claim.owner;
        Err(format!(
            "`{name}` is answered by plugin `{holder}` ({owner}) already: one handler per call name"
        ))
    }

    /// Delivers one event to every subscriber and waits for all of them.
    pub(crate) async fn dispatch(&self, event: Event) -> EmitReport {
        let (any, named) = {
            let subs = read(&self.subscribers);
            (subs.any.clone(), subs.named.get(event.name()).cloned())
        };
        let mut report = Tally::default();
        for handler in any.iter().flat_map(|any| any.iter()) {
            call_host_handler(handler, &event, &mut report);
        }
        // Handlers still running after their first poll, awaited once every
        // handler has started.
        let mut running = Vec::new();
        if let Some(list) = &named {
            // Every handler is started (and plugin handlers polled once)
            // before any is awaited, all on this thread: whether it is in a
            // runtime's context is asked once, at the first plugin handler.
            let mut in_context = None;
            {
                for subscriber in list.iter() {
                    match subscriber {
                        Subscriber::Host(handler) => {
                            call_host_handler(handler, &event, &mut report);
                        }
                        Subscriber::Plugin(handler) => match self.start_handler(
                            handler,
                            &event,
                            *in_context.get_or_insert_with(in_runtime_context),
                            status_outcome,
                        ) {
                            HandlerRun::Task(task) => running.push((handler, task)),
                            HandlerRun::Done(outcome) => {
                                self.record(handler, outcome, &event, &mut report);
                            }
                            HandlerRun::Refused => self.record(
                                handler,
                                Err(FailureKind::Cancelled(
                                    "the plugin is being unloaded".to_owned(),
                                )),
                                &event,
                                &mut report,
                            ),
                        },
                    }
                }
            }
        }
        // Read only by an emit that waits for a handler: most emits finish
        // every handler on its first poll and need no clock. `None` inside:
        // a timeout too long to add to the clock (no deadline).
        let mut deadline = None;
        for (handler, task) in running {
            let status = self.join(task, &mut deadline).await;
            self.record(handler, status, &event, &mut report);
        }
        report.into_report(event.into_name())
    }

    /// Waits for a handler's task until `deadline`, set by the first wait
    /// of an emit (`None` inside: a timeout too long to add to the clock);
    /// past it, aborts the task.
    async fn join<T>(
        &self,
        mut task: tokio::task::JoinHandle<Option<Result<T, FailureKind>>>,
        deadline: &mut Option<Option<tokio::time::Instant>>,
    ) -> Result<T, FailureKind> {
        // In the runtime's context: its clock (which a test may have
        // paused) and its timer, so the deadline works from a thread
        // outside it too; polled from wherever the emit is.
        let bounded = {
            let _enter = self.handle.enter();
            let deadline = *deadline.get_or_insert_with(|| {
                tokio::time::Instant::now().checked_add(self.handler_timeout)
            });
            deadline.map(|at| tokio::time::timeout_at(at, &mut task))
        };
        let joined = match bounded {
            Some(bounded) => bounded.await,
            None => Ok((&mut task).await),
        };
        match joined {
            Ok(Ok(Some(outcome))) => outcome,
            Ok(Err(e)) if e.is_panic() => {
                Err(FailureKind::Panicked(panic_message(&*e.into_panic())))
            }
            Ok(Ok(None) | Err(_)) => {
                Err(FailureKind::Cancelled("the plugin was unloaded".to_owned()))
            }
            Err(_) => {
                // Its plugin's count keeps it until its future is
                // dropped, which the abort makes happen on the runtime.
                task.abort();
                Err(FailureKind::TimedOut(format!(
                    "still running after {:?}, aborted",
                    self.handler_timeout
                )))
            }
        }
    }

    /// Runs one call: the handler answering `event`'s name, started as an
    /// event handler is (polled inline in a runtime's context), bounded by
    /// the handler timeout, its outcome counted as a handler's (stats,
    /// quarantine).
    pub(crate) async fn call(&self, event: Event) -> Result<Event, CallError> {
        let handler = read(&self.subscribers).answers.get(event.name()).cloned();
        let Some(handler) = handler else {
            return Err(CallError::NoHandler(event.name().to_owned()));
        };
        let run = self.start_handler(&handler, &event, in_runtime_context(), answer_outcome);
        let answer = match run {
            // Its plugin is being unloaded: the handler never ran, as if no
            // plugin answered (what `CallError::NoHandler` says).
            HandlerRun::Refused => return Err(CallError::NoHandler(event.name().to_owned())),
            HandlerRun::Done(answer) => answer,
            HandlerRun::Task(task) => {
                // A caller that stops waiting (dropped, or its plugin
                // unloaded) takes the handler's task with it: nobody will
                // read the answer, and the deadline no longer bounds it.
                let _abort = AbortOnDrop(task.abort_handle());
                self.join(task, &mut None).await
            }
        };
        let mut tally = Tally::default();
        let (wire, outcome) = match answer {
            Ok(wire) => (Some(wire), Ok(())),
            Err(kind) => (None, Err(kind)),
        };
        self.record(&handler, outcome, &event, &mut tally);
        match (wire, tally.failures.pop()) {
            (Some(wire), None) => Ok(Event::from_wire_bytes(event.name(), wire)),
            (_, Some(failure)) => Err(CallError::Handler(failure)),
            (None, None) => unreachable!("a failed outcome is recorded as a failure"),
        }
    }

    /// Adds one plugin handler's outcome to `report`, and quarantines its
    /// plugin if that was one failure too many.
    fn record(&self, handler: &PluginHandler, outcome: Outcome, event: &Event, report: &mut Tally) {
        let services = &handler.services;
        let kind = match outcome {
            Ok(()) => None,
            // Unloading cancels the plugin's tasks, and a handler that was
            // running then sees its own work cancelled: the unload is the
            // cause (and must not count toward quarantine), also of a handler
            // that ran past the deadline while its plugin was unloading.
            Err(FailureKind::Failed(message) | FailureKind::TimedOut(message))
                if services.is_closed() =>
            {
                Some(FailureKind::Cancelled(format!(
                    "the plugin was unloaded while the handler ran ({message})"
                )))
            }
            Err(kind) => Some(kind),
        };
        let counts = matches!(
            kind,
            Some(FailureKind::Failed(_) | FailureKind::Panicked(_) | FailureKind::TimedOut(_))
        );
        if counts || matches!(kind, Some(FailureKind::Rejected(_))) {
            services
                .stats
                .handler_failed(matches!(kind, Some(FailureKind::TimedOut(_))));
        }
        // A rejected payload says nothing of the handler: its streak of
        // failures is neither extended nor reset.
        let rejected = matches!(kind, Some(FailureKind::Rejected(_)));
        if !rejected && services.record_outcome(counts, self.quarantine_after) {
            // `stop_events` takes the plugin's `parked` lock, which
            // `host_subscribe` takes too: a subscription the plugin makes
            // meanwhile is held, not added back beside the removal.
            services.stop_events();
            tracing::warn!(
                plugin = %services.name,
                id = %services.id,
                "plugin quarantined: its handlers failed {} times in a row; it gets no more events",
                self.quarantine_after.unwrap_or_default()
            );
            report.quarantined.push(services.id);
        }
        match kind {
            None => report.delivered += 1,
            Some(kind) => report.failures.push(HandlerFailure {
                plugin: Some(services.id),
                subscriber: services.name.clone(),
                event: event.name().to_owned(),
                kind,
            }),
        }
    }

    /// Starts one plugin handler for `event`.
    ///
    /// From inside a tokio runtime's context (a task, a runtime's `block_on`
    /// thread, a thread that entered a handle), the handler is polled once
    /// right here:
    /// most handlers finish on their first poll, and then no task is needed
    /// (a task per handler costs more than the rest of the dispatch). That
    /// poll uses a host-owned no-op waker, never the emitter's: the emitter
    /// may be another plugin, whose waker must not end up stored in this
    /// plugin's structures beyond its own lifetime. A handler still pending
    /// after that poll moves into a task of its plugin, whose first poll
    /// registers the task's waker (a future registers the waker of its
    /// latest poll), so unload can abort it. From a plain thread outside
    /// any runtime, the handler runs as a task from the start, so plugin
    /// code only runs where a runtime is current. Either way the call is
    /// registered with the plugin,
    /// so unload waits for it before releasing the handler.
    /// `in_context`: [`in_runtime_context`] on this thread.
    /// `outcome`: the handler's status made host-owned, in the task or
    /// inline, before the plugin's count of the call is released.
    fn start_handler<O: Send + 'static>(
        &self,
        handler: &Arc<PluginHandler>,
        event: &Event,
        in_context: bool,
        outcome: fn(horizon_plugin_sdk::abi::RStatus) -> O,
    ) -> HandlerRun<O> {
        let services = &handler.services;
        // A handler that emits polls the next handlers inline too; past a
        // bounded depth (a chain, or a cycle, of events) handlers run as
        // tasks instead, so a plugin cannot overflow the emitter's stack.
        let depth = INLINE_DEPTH.with(Cell::get);
        if depth >= MAX_INLINE_DEPTH || !in_context {
            let ev = event.clone();
            let h = Arc::clone(handler);
            let running = services.handler_started();
            let site = Site::Handler(event.shared_name());
            let task = services.spawn(site, async move {
                let _running = running;
                // SAFETY: the handler is alive: its `drop` runs only after
                // every task of its plugin is gone, and this is one. `ev`
                // outlives the call (the plugin copies what it needs, or
                // takes a count of the buffer `lending` lends it).
                let fut = lending(ev.shared_wire(), || unsafe {
                    (h.call)(
                        h.data,
                        RStr::new(ev.name()),
                        RStr::from_bytes(ev.wire_bytes()),
                    )
                });
                outcome(fut.await)
            });
            let Some(task) = task else {
                return HandlerRun::Refused;
            };
            services.stats.handler_called(event.wire_bytes().len());
            return HandlerRun::Task(task);
        }
        let Some(inline) = services.register_inline() else {
            return HandlerRun::Refused;
        };
        services.stats.handler_called(event.wire_bytes().len());
        INLINE_DEPTH.with(|d| d.set(depth + 1));
        // The handler's start and first poll, timed as one poll.
        let (fut, first) = services.timed_poll(SiteRef::Handler(event.name()), || {
            // SAFETY: `inline` registers this call with the plugin, so the
            // handler is not released (nor the library closed) until it is
            // dropped, after the future below is polled and moved or dropped.
            // `event` is borrowed for this whole synchronous call, so the
            // name and payload passed (and the buffer `lending` lends) stay
            // alive while the plugin reads them; it copies or takes a count
            // of what it keeps.
            let mut fut = lending(event.shared_wire(), || unsafe {
                (handler.call)(
                    handler.data,
                    RStr::new(event.name()),
                    RStr::from_bytes(event.wire_bytes()),
                )
            });
            let first = Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()));
            (fut, first)
        });
        INLINE_DEPTH.with(|d| d.set(depth));
        let run = match first {
            Poll::Ready(status) => {
                drop(fut);
                HandlerRun::Done(outcome(status))
            }
            Poll::Pending => {
                let running = services.handler_started();
                let site = Site::Handler(event.shared_name());
                let task = services.spawn(site, async move {
                    let _running = running;
                    outcome(fut.await)
                });
                task.map_or(HandlerRun::Refused, HandlerRun::Task)
            }
        };
        drop(inline);
        run
    }
}

/// Whether this thread is inside a tokio runtime's context: a task (checked
/// first: no handle is cloned), or a `block_on` thread or a thread that
/// entered a handle.
fn in_runtime_context() -> bool {
    tokio::task::try_id().is_some() || tokio::runtime::Handle::try_current().is_ok()
}
