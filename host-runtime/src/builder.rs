//! [`HostBuilder`]: a host's settings, and [`PluginHost::new`] and
//! [`PluginHost::builder`], which start from them.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::bus::Bus;
use crate::host::PluginHost;
use crate::info::{LogSink, PluginLog};
use crate::loaded::Env;
use crate::stats::{DEFAULT_SLOW_POLL, PollTimer, PollTiming};
use crate::trust::TrustPolicy;

/// The payload size from which plugin handlers share the host's buffer
/// rather than copy it ([`HostBuilder::share_payloads_from`]): measured in
/// BENCHMARKS.md, "Sharing large payloads".
pub const DEFAULT_SHARE_FROM: usize = 1024;

/// How long an emit waits for plugin handlers unless
/// [`HostBuilder::handler_timeout`] says otherwise.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`PluginHost`], from [`PluginHost::builder`].
#[must_use = "call `build` to get the host"]
pub struct HostBuilder {
    handle: Handle,
    unload_timeout: Duration,
    handler_timeout: Duration,
    quarantine_after: Option<u32>,
    strict_unload: bool,
    log_sink: Option<LogSink>,
    trust: TrustPolicy,
    poll_timing: PollTiming,
    slow_poll: Option<Duration>,
    cooperative: bool,
    share_from: Option<usize>,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("unload_timeout", &self.unload_timeout)
            .field("handler_timeout", &self.handler_timeout)
            .field("quarantine_after", &self.quarantine_after)
            .field("strict_unload", &self.strict_unload)
            .field("log_sink", &self.log_sink.is_some())
            .field("trust", &self.trust)
            .field("poll_timing", &self.poll_timing)
            .field("slow_poll", &self.slow_poll)
            .field("cooperative_budget", &self.cooperative)
            .field("share_payloads_from", &self.share_from)
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// Strict unload mode: every later entry into an unloaded plugin's code
    /// through the boundary (a poll, a drop, a waker, a free function, a
    /// handler call) aborts the process with a message naming the entry
    /// point, and unloaded libraries stay mapped so that the check can run.
    /// For tests: it turns "no plugin code runs after unload" into a crash
    /// when broken. Off by default; `HORIZON_STRICT_UNLOAD=1` in the
    /// environment turns it on. Off, it costs one relaxed load per entry.
    pub fn strict_unload(mut self, strict: bool) -> Self {
        self.strict_unload = strict;
        self
    }

    /// How long `on_unload`, and then the plugin's tasks, get to stop when a
    /// plugin is unloaded (default 5 s).
    pub fn unload_timeout(mut self, timeout: Duration) -> Self {
        self.unload_timeout = timeout;
        self
    }

    /// How long an emit waits for the plugin handlers it started (default
    /// [`DEFAULT_HANDLER_TIMEOUT`], 10 s), counted from when it starts
    /// waiting (every handler has been started and polled once by then). A
    /// handler still running then is aborted, reported in the
    /// [`EmitReport`](crate::EmitReport) as
    /// [`FailureKind::TimedOut`](crate::FailureKind::TimedOut) naming its
    /// plugin, and counts toward quarantine (unless its plugin is being
    /// unloaded: then it is a cancellation); the emit returns. So one
    /// plugin that never finishes cannot stall the emitter (a game tick,
    /// say). A timeout too long for the clock (`Duration::MAX`) means no
    /// deadline.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// Quarantine a plugin whose handlers fail or panic this many times in a
    /// row: its subscriptions are removed (it stays loaded until unloaded),
    /// the host logs it, and [`EmitReport::quarantined`](crate::EmitReport::quarantined) names it.
    /// Off by default.
    pub fn quarantine_after(mut self, consecutive_failures: u32) -> Self {
        self.quarantine_after = Some(consecutive_failures.max(1));
        self
    }

    /// Also hands every log record of this host's plugins, of every level,
    /// to `sink` (besides the host's `tracing` subscriber, which filters
    /// them as usual). For tests and consoles that show a plugin's log
    /// ([`crate::testing`] uses it). `sink` runs on the plugin's thread,
    /// inside the plugin's log call: keep it short; a panic in it is caught.
    pub fn plugin_log_sink<F>(mut self, sink: F) -> Self
    where
        F: Fn(&PluginLog) + Send + Sync + 'static,
    {
        self.log_sink = Some(Arc::new(sink));
        self
    }

    /// Which plugin files this host loads (default
    /// [`TrustPolicy::any_file`], for development, which logs a warning per
    /// load). Checked before a library is opened, so nothing of a refused
    /// file runs; a refusal is a [`LoadError::Untrusted`](crate::LoadError::Untrusted),
    /// logged. Under a digest or signature policy the host opens a private
    /// copy of the bytes it checked. Under every policy, files and
    /// directories that other users can write are refused unless the
    /// policy allows them ([`TrustPolicy::allow_loose_permissions`]).
    pub fn trust(mut self, policy: TrustPolicy) -> Self {
        self.trust = policy;
        self
    }

    /// How the polls of plugin futures are timed (default
    /// [`PollTiming::Coarse`]), for
    /// [`PluginStats::poll_time`](crate::PluginStats::poll_time) and the
    /// slow-poll warning. [`PollTiming::Off`] reads no clock at all.
    pub fn poll_timing(mut self, timing: PollTiming) -> Self {
        self.poll_timing = timing;
        self
    }

    /// A poll of a plugin future (a task's, or a handler's) that holds a
    /// host worker this long or longer is a slow poll (default
    /// [`DEFAULT_SLOW_POLL`], 10 ms; `None`: none is): counted in
    /// [`PluginStats::slow_polls`](crate::PluginStats::slow_polls) and
    /// logged as a `tracing` warning naming the plugin, the task or
    /// handler, and how long it held the worker. Every other task on that
    /// worker (other plugins', the host's timer) waited meanwhile. Seen as
    /// precisely as [`HostBuilder::poll_timing`]'s clock allows.
    pub fn slow_poll_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.slow_poll = threshold;
        self
    }

    /// Whether plugins give every poll of their tasks a cooperative budget
    /// in their own copy of tokio (default: yes; handlers' polls, on the
    /// emit path, get none). Tokio makes a task that
    /// only awaits always-ready resources (a channel with room, a
    /// semaphore with permits) yield every 128 of them, so one busy task
    /// cannot hold a worker; a plugin's channels are of its own tokio copy,
    /// whose budget no scheduler sets. With this on, the SDK sets it around
    /// each poll of a plugin task, through a `block_on` of the plugin's
    /// private runtime: about 120 ns per poll here (BENCHMARKS.md). Off,
    /// such a loop in a plugin task holds its worker until it ends (as one
    /// in a handler always does; the slow-poll warning
    /// names it). Plugins without a private runtime
    /// (`Plugin::PRIVATE_RUNTIME = false`) and those built with an SDK
    /// before boundary 4.2 give no budget either way. With it on, a
    /// plugin's poll counts as inside a runtime for its tokio copy, as a
    /// native task's does: that copy's blocking calls (`blocking_lock`,
    /// `blocking_recv`) panic in async code, as tokio's do in a native
    /// task, where off they blocked the host worker.
    pub fn cooperative_budget(mut self, on: bool) -> Self {
        self.cooperative = on;
        self
    }

    /// From which payload size (in bytes of the wire form) plugin
    /// handlers share the host's buffer of an event instead of copying it
    /// (default: [`DEFAULT_SHARE_FROM`], the size from which sharing
    /// measured faster; `None`: every plugin copies every payload). A
    /// shared buffer is freed by the host when the last plugin event
    /// holding it is dropped. Plugins of SDKs before boundary 4.3 copy.
    pub fn share_payloads_from(mut self, bytes: Option<usize>) -> Self {
        self.share_from = bytes.map(|b| b.max(1));
        self
    }

    /// The host.
    pub fn build(self) -> PluginHost {
        PluginHost::from_env(Env {
            handle: self.handle.clone(),
            bus: Arc::new(Bus::new(
                self.quarantine_after,
                self.handler_timeout,
                self.handle.clone(),
            )),
            unload_timeout: self.unload_timeout,
            strict_unload: self.strict_unload,
            log_sink: self.log_sink,
            trust: self.trust,
            poll_timer: PollTimer::new(self.poll_timing, self.slow_poll),
            cooperative: self.cooperative,
            share_from: self.share_from,
        })
    }
}

impl PluginHost {
    /// A host whose plugins run on the runtime of `handle` (multi-thread or
    /// current-thread; it needs timers enabled), with the default settings
    /// of [`HostBuilder`].
    pub fn new(handle: Handle) -> Self {
        PluginHost::builder(handle).build()
    }

    /// Configures a host: unload deadline, quarantine policy.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use horizon_plugin_host::PluginHost;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let host = PluginHost::builder(tokio::runtime::Handle::current())
    ///     .unload_timeout(Duration::from_secs(2))
    ///     .quarantine_after(5)
    ///     .build();
    /// assert!(host.plugins().is_empty());
    /// # }
    /// ```
    pub fn builder(handle: Handle) -> HostBuilder {
        HostBuilder {
            handle,
            unload_timeout: Duration::from_secs(5),
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            quarantine_after: None,
            strict_unload: std::env::var_os("HORIZON_STRICT_UNLOAD").is_some_and(|v| v == "1"),
            log_sink: None,
            trust: TrustPolicy::any_file(),
            poll_timing: PollTiming::default(),
            slow_poll: Some(DEFAULT_SLOW_POLL),
            cooperative: true,
            share_from: Some(DEFAULT_SHARE_FROM),
        }
    }
}
