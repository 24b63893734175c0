//! Forwards the plugin's `tracing` events (with their spans) and `log`
//! records to the host's subscriber, through the service table.
//!
//! `tracing` and `log` keep their dispatcher in process-global state, and a
//! plugin has its own copy of both: without this bridge a plugin's
//! `tracing::info!` goes to an empty dispatcher. At `init` the SDK installs
//! a subscriber (and a logger) in the plugin's copies that hand each record
//! to the host's `log` function, tagged with the plugin's name by the host.
//!
//! Filtering is the host's: the plugin learns the host's most verbose level
//! at load, so more verbose callsites are disabled by `tracing`'s and `log`'s
//! own static checks (no call at all); others ask the host's `log_enabled`
//! once per callsite and record.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use super::injected;
use crate::abi::{RStr, level};

fn abi_level(level: Level) -> u32 {
    match level {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        Level::TRACE => level::TRACE,
    }
}

fn level_filter(max: u32) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match max {
        0 => LevelFilter::OFF,
        level::ERROR => LevelFilter::ERROR,
        level::WARN => LevelFilter::WARN,
        level::INFO => LevelFilter::INFO,
        level::DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

fn host_enabled(level: u32, target: &str) -> bool {
    injected::host().is_some_and(|api| {
        level <= api.max_level
            // SAFETY: `api` is the live host table; the string outlives the call.
            && unsafe { (api.log_enabled)(api.data, level, RStr::new(target)) }
    })
}

/// Collects an event's or span's fields as `message key=value ...`.
#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                let _ = write!(self.0, " {rest}");
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// The subscriber installed in the plugin's copy of `tracing`.
struct HostSubscriber {
    next_id: AtomicU64,
    /// Open spans: `name{fields}` and how many handles refer to each.
    spans: Mutex<HashMap<u64, (String, usize)>>,
}

thread_local! {
    /// The spans entered on this thread, innermost last. Only ever reached
    /// with `try_with`: plugin code may log from a thread-local destructor
    /// after this one was destroyed, and a panic there (`with`) would
    /// abort the process (std aborts on a panic in a thread-local's drop).
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl Subscriber for HostSubscriber {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if host_enabled(abi_level(*metadata.level()), metadata.target()) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        host_enabled(abi_level(*metadata.level()), metadata.target())
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(level_filter(
            injected::host().map_or(0, |api| api.max_level),
        ))
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        let text = if fields.0.is_empty() {
            span.metadata().name().to_owned()
        } else {
            format!("{}{{{}}}", span.metadata().name(), fields.0)
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        crate::sync::lock(&self.spans).insert(id, (text, 1));
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some((text, _)) = crate::sync::lock(&self.spans).get_mut(&span.into_u64()) {
            let _ = write!(text, " {}", fields.0);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = String::new();
        let spans = crate::sync::lock(&self.spans);
        let _ = ENTERED.try_with(|entered| {
            for id in entered.borrow().iter() {
                if let Some((name, _)) = spans.get(id) {
                    let _ = write!(text, "{name}:");
                }
            }
        });
        drop(spans);
        if !text.is_empty() {
            text.push(' ');
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        text.push_str(&fields.0);
        let metadata = event.metadata();
        // The host was asked already: by `register_callsite` (whose answer
        // tracing caches) or `enabled`; the host's own subscriber filters
        // the record again on its side.
        injected::send_log(abi_level(*metadata.level()), metadata.target(), &text);
    }

    fn enter(&self, span: &Id) {
        let _ = ENTERED.try_with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        let _ = ENTERED.try_with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(pos) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(pos);
            }
        });
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some((_, refs)) = crate::sync::lock(&self.spans).get_mut(&id.into_u64()) {
            *refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut spans = crate::sync::lock(&self.spans);
        let key = id.into_u64();
        let closed = match spans.get_mut(&key) {
            Some((_, refs)) if *refs > 1 => {
                *refs -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if closed {
            spans.remove(&key);
        }
        closed
    }
}

/// The logger installed in the plugin's copy of `log`.
struct HostLogger;

fn log_level(level: log::Level) -> u32 {
    match level {
        log::Level::Error => level::ERROR,
        log::Level::Warn => level::WARN,
        log::Level::Info => level::INFO,
        log::Level::Debug => level::DEBUG,
        log::Level::Trace => level::TRACE,
    }
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        host_enabled(log_level(metadata.level()), metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = log_level(record.level());
        if host_enabled(level, record.target()) {
            injected::send_log(level, record.target(), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Installs the bridge in this plugin's copies of `tracing` and `log`. Once
/// per mapping: a reload of the same file keeps the first install, which
/// reads the current host table on every record.
pub(crate) fn install(max_level: u32) {
    let subscriber = HostSubscriber {
        next_id: AtomicU64::new(0),
        spans: Mutex::new(HashMap::new()),
    };
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = log::set_logger(&HostLogger);
    }
    log::set_max_level(match max_level {
        0 => log::LevelFilter::Off,
        level::ERROR => log::LevelFilter::Error,
        level::WARN => log::LevelFilter::Warn,
        level::INFO => log::LevelFilter::Info,
        level::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
    tracing::callsite::rebuild_interest_cache();
}
