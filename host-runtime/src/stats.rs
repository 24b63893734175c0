//! What each plugin costs: the counters the host keeps per plugin
//! ([`PluginStats`], read with [`PluginHost::stats`](crate::PluginHost::stats)
//! and, with the `metrics` feature, exported through the `metrics` facade),
//! and the timing of plugin polls that reports slow ones.
//!
//! Counting is always on: one relaxed atomic add per event counted, on the
//! plugin's own counters. Timing a poll reads a clock twice
//! ([`PollTiming`]); BENCHMARKS.md shows what each setting costs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::info::PluginId;

/// Bumps a counter and, with the `metrics` feature, its exported twin.
macro_rules! bump {
    ($self:ident . $field:ident, $amount:expr) => {{
        let amount: u64 = $amount;
        $self.cells.$field.fetch_add(amount, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        exported(|| $self.metrics.$field.increment(amount));
    }};
}

/// Hands a value to the `metrics` recorder; a recorder that panics must not
/// unwind into the host's bookkeeping (a count not released would keep a
/// plugin from unloading).
#[cfg(feature = "metrics")]
#[inline]
fn exported(f: impl FnOnce()) {
    let _ = horizon_plugin_sdk::abi::guard::catch(f);
}

/// What one plugin has cost since it was loaded (a reload starts a new
/// copy, with new counters), from
/// [`PluginHost::stats`](crate::PluginHost::stats).
///
/// Counts are exact. Poll times are as exact as the clock that
/// [`HostBuilder::poll_timing`](crate::HostBuilder::poll_timing) chose.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginStats {
    /// The plugin's id.
    pub id: PluginId,
    /// The plugin's name.
    pub name: String,
    /// Tasks the plugin spawned (`tokio::spawn` and the like), including
    /// any refused because it was being unloaded.
    pub tasks_spawned: u64,
    /// Of those, how many are alive now.
    pub tasks_alive: u64,
    /// Blocking jobs the plugin started (`spawn_blocking`), including any
    /// refused because it was being unloaded.
    pub blocking_jobs: u64,
    /// Of those, how many have not finished.
    pub blocking_jobs_running: u64,
    /// Calls of the plugin's event handlers.
    pub handler_calls: u64,
    /// Handler calls that returned an error, panicked or timed out (what
    /// counts toward quarantine; a call cancelled by unload is none).
    pub handler_failures: u64,
    /// Of those, how many ran past the host's handler deadline.
    pub handler_timeouts: u64,
    /// Panics in the plugin's code (its tasks, blocking jobs, handlers and
    /// lifecycle calls), as the plugin reports them (plugins of boundary
    /// 4.2 or later; older ones report none).
    pub panics: u64,
    /// Events the plugin emitted.
    pub events_emitted: u64,
    /// Payload bytes of the events delivered to its handlers.
    pub bytes_in: u64,
    /// Payload bytes of the events it emitted.
    pub bytes_out: u64,
    /// Time spent polling the plugin's futures: every poll of its tasks,
    /// of its handlers (the first one, made inline by the emitter, includes
    /// the handler's synchronous start) and of its lifecycle calls,
    /// including host work they called (an emit that ran another plugin's
    /// handler inline counts for both). Zero with [`PollTiming::Off`].
    pub poll_time: Duration,
    /// Polls that held a host worker for the slow-poll threshold or longer
    /// (each also logged as a warning).
    pub slow_polls: u64,
}

/// How the host times the polls of plugin futures, for
/// [`PluginStats::poll_time`] and the slow-poll warning
/// ([`HostBuilder::slow_poll_threshold`](crate::HostBuilder::slow_poll_threshold)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollTiming {
    /// No poll is timed: no poll time, no slow-poll warning.
    Off,
    /// The default: the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`
    /// on Linux: a memory read, about 8 ns, updated every tick of the
    /// kernel, 1 to 4 ms). A slow poll is seen to within one tick, and
    /// [`PluginStats::poll_time`] adds whole ticks: an estimate that is
    /// right on average over many polls. Elsewhere the same as `Precise`.
    #[default]
    Coarse,
    /// `std::time::Instant` (about 27 ns a read on the machine of
    /// BENCHMARKS.md): exact poll times, at twice that per poll.
    Precise,
}

/// The slow-poll threshold unless
/// [`HostBuilder::slow_poll_threshold`](crate::HostBuilder::slow_poll_threshold)
/// says otherwise.
pub const DEFAULT_SLOW_POLL: Duration = Duration::from_millis(10);

/// Where a timed poll ran, for the slow-poll warning.
pub(crate) enum Site {
    /// A task the plugin spawned.
    Task,
    /// A plugin handler of this event, past its first poll.
    Handler(std::sync::Arc<str>),
    /// A lifecycle call (`on_load`, `on_unload`).
    Lifecycle(&'static str),
}

/// [`Site`] borrowed, as a handler's first poll names it.
#[derive(Clone, Copy)]
pub(crate) enum SiteRef<'a> {
    Task,
    Handler(&'a str),
    Lifecycle(&'a str),
}

impl Site {
    pub(crate) fn as_ref(&self) -> SiteRef<'_> {
        match self {
            Site::Task => SiteRef::Task,
            Site::Handler(event) => SiteRef::Handler(event),
            Site::Lifecycle(what) => SiteRef::Lifecycle(what),
        }
    }
}

impl fmt::Display for SiteRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Read during the poll: the tokio task running it.
            SiteRef::Task => match tokio::task::try_id() {
                Some(id) => write!(f, "task {id}"),
                None => f.write_str("a task"),
            },
            SiteRef::Handler(event) => write!(f, "its handler of event `{event}`"),
            SiteRef::Lifecycle(what) => f.write_str(what),
        }
    }
}

/// The per-plugin poll settings: [`PollTiming`] and the slow threshold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PollTimer {
    pub(crate) timing: PollTiming,
    /// In nanoseconds; `u64::MAX`: never slow.
    slow: u64,
}

impl PollTimer {
    pub(crate) fn new(timing: PollTiming, slow: Option<Duration>) -> Self {
        let slow = slow.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        });
        PollTimer { timing, slow }
    }

    /// Runs `poll` (a poll of a plugin future), timed as set; a slow one is
    /// counted and logged with `site`.
    #[inline]
    pub(crate) fn time<R>(
        self,
        stats: &Counters,
        plugin: (&str, PluginId),
        site: SiteRef<'_>,
        poll: impl FnOnce() -> R,
    ) -> R {
        let Some(start) = now(self.timing) else {
            return poll();
        };
        let out = poll();
        let Some(end) = now(self.timing) else {
            return out;
        };
        let nanos = end.saturating_sub(start);
        // On the coarse clock most polls take 0: no write then.
        if nanos != 0 {
            bump!(stats.poll_nanos, nanos);
            if nanos >= self.slow {
                self.slow_poll(stats, plugin, site, nanos);
            }
        }
        out
    }

    #[cold]
    #[inline(never)]
    fn slow_poll(
        self,
        stats: &Counters,
        (name, id): (&str, PluginId),
        site: SiteRef<'_>,
        nanos: u64,
    ) {
        bump!(stats.slow_polls, 1);
        let held = Duration::from_nanos(nanos);
        let threshold = Duration::from_nanos(self.slow);
        // A subscriber that panics must not unwind into the plugin's poll.
        let _ = horizon_plugin_sdk::abi::guard::catch(|| {
            tracing::warn!(
                plugin = %name,
                id = %id,
                site = %site,
                held_ms = held.as_millis() as u64,
                "slow poll: plugin `{name}` held a host worker for {held:?} in {site} \
                 (threshold {threshold:?}); every task on that worker waited"
            );
        });
    }
}

/// Nanoseconds on the clock `timing` names; `None` when off.
#[inline]
fn now(timing: PollTiming) -> Option<u64> {
    match timing {
        PollTiming::Off => None,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        PollTiming::Coarse => {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid `timespec` to write to.
            let failed = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0;
            // A failure (no such clock: Linux before 2.6.32) times nothing.
            (!failed).then(|| (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64)
        }
        _ => {
            static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let base = *BASE.get_or_init(std::time::Instant::now);
            Some(u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX))
        }
    }
}

/// The counters of one plugin, bumped where the host sees what they count.
pub(crate) struct Counters {
    cells: Cells,
    #[cfg(feature = "metrics")]
    metrics: metrics_export::Handles,
}

#[derive(Default)]
struct Cells {
    tasks_spawned: AtomicU64,
    tasks_finished: AtomicU64,
    jobs_started: AtomicU64,
    jobs_finished: AtomicU64,
    handler_calls: AtomicU64,
    handler_failures: AtomicU64,
    handler_timeouts: AtomicU64,
    panics: AtomicU64,
    events_emitted: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    poll_nanos: AtomicU64,
    slow_polls: AtomicU64,
}

impl Counters {
    /// Counters for plugin `name` (`id`); with the `metrics` feature, also
    /// registered with the installed `metrics` recorder, labelled so.
    pub(crate) fn new(name: &str, id: PluginId) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (name, id);
        Counters {
            cells: Cells::default(),
            #[cfg(feature = "metrics")]
            metrics: metrics_export::Handles::new(name, id),
        }
    }

    pub(crate) fn task_spawned(&self) {
        bump!(self.tasks_spawned, 1);
        #[cfg(feature = "metrics")]
        exported(|| self.metrics.tasks_alive.increment(1.0));
    }

    pub(crate) fn task_finished(&self) {
        self.cells.tasks_finished.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        exported(|| self.metrics.tasks_alive.decrement(1.0));
    }

    pub(crate) fn job_started(&self) {
        bump!(self.jobs_started, 1);
        #[cfg(feature = "metrics")]
        exported(|| self.metrics.jobs_running.increment(1.0));
    }

    pub(crate) fn job_finished(&self) {
        self.cells.jobs_finished.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        exported(|| self.metrics.jobs_running.decrement(1.0));
    }

    /// A handler call of the plugin, with the event's payload size.
    pub(crate) fn handler_called(&self, payload: usize) {
        bump!(self.handler_calls, 1);
        bump!(self.bytes_in, payload as u64);
    }

    pub(crate) fn handler_failed(&self, timed_out: bool) {
        bump!(self.handler_failures, 1);
        if timed_out {
            bump!(self.handler_timeouts, 1);
        }
    }

    pub(crate) fn panicked(&self) {
        bump!(self.panics, 1);
    }

    /// An event the plugin emitted, with its payload size.
    pub(crate) fn emitted(&self, payload: usize) {
        bump!(self.events_emitted, 1);
        bump!(self.bytes_out, payload as u64);
    }

    pub(crate) fn snapshot(&self, id: PluginId, name: &str) -> PluginStats {
        let c = &self.cells;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Finished read before started (a count may still move between the
        // two loads; `saturating_sub` keeps alive from going below 0).
        let (tasks_finished, jobs_finished) = (get(&c.tasks_finished), get(&c.jobs_finished));
        let (tasks_spawned, jobs_started) = (get(&c.tasks_spawned), get(&c.jobs_started));
        PluginStats {
            id,
            name: name.to_owned(),
            tasks_spawned,
            tasks_alive: tasks_spawned.saturating_sub(tasks_finished),
            blocking_jobs: jobs_started,
            blocking_jobs_running: jobs_started.saturating_sub(jobs_finished),
            handler_calls: get(&c.handler_calls),
            handler_failures: get(&c.handler_failures),
            handler_timeouts: get(&c.handler_timeouts),
            panics: get(&c.panics),
            events_emitted: get(&c.events_emitted),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            poll_time: Duration::from_nanos(get(&c.poll_nanos)),
            slow_polls: get(&c.slow_polls),
        }
    }
}

/// The `metrics` feature: each counter's twin in the installed recorder.
#[cfg(feature = "metrics")]
mod metrics_export {
    use metrics::{Counter, Gauge, counter, gauge};

    use crate::info::PluginId;

    /// Handles registered once per plugin copy, labelled `plugin` (its
    /// name) and `id`; bumping one is a call into the recorder (a no-op
    /// without one).
    pub(super) struct Handles {
        pub(super) tasks_spawned: Counter,
        pub(super) tasks_alive: Gauge,
        pub(super) jobs_started: Counter,
        pub(super) jobs_running: Gauge,
        pub(super) handler_calls: Counter,
        pub(super) handler_failures: Counter,
        pub(super) handler_timeouts: Counter,
        pub(super) panics: Counter,
        pub(super) events_emitted: Counter,
        pub(super) bytes_in: Counter,
        pub(super) bytes_out: Counter,
        pub(super) poll_nanos: Counter,
        pub(super) slow_polls: Counter,
    }

    impl Handles {
        pub(super) fn new(name: &str, id: PluginId) -> Self {
            let labels = [("plugin", name.to_owned()), ("id", id.0.to_string())];
            Handles {
                tasks_spawned: counter!("horizon_plugin_tasks_spawned_total", &labels),
                tasks_alive: gauge!("horizon_plugin_tasks_alive", &labels),
                jobs_started: counter!("horizon_plugin_blocking_jobs_total", &labels),
                jobs_running: gauge!("horizon_plugin_blocking_jobs_running", &labels),
                handler_calls: counter!("horizon_plugin_handler_calls_total", &labels),
                handler_failures: counter!("horizon_plugin_handler_failures_total", &labels),
                handler_timeouts: counter!("horizon_plugin_handler_timeouts_total", &labels),
                panics: counter!("horizon_plugin_panics_total", &labels),
                events_emitted: counter!("horizon_plugin_events_emitted_total", &labels),
                bytes_in: counter!("horizon_plugin_bytes_in_total", &labels),
                bytes_out: counter!("horizon_plugin_bytes_out_total", &labels),
                poll_nanos: counter!("horizon_plugin_poll_nanoseconds_total", &labels),
                slow_polls: counter!("horizon_plugin_slow_polls_total", &labels),
            }
        }
    }
}
