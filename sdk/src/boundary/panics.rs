//! Panics in plugin code, reported to the host as they happen.
//!
//! A plugin library links its own copy of std, whose panic hook (the
//! default one prints to stderr) is not the host's. Once a host with the
//! `report_panic` service ([`crate::abi::HostApi::report_panic`], boundary
//! 4.2) is attached, this library's hook hands each panic to the host
//! instead: one call with where it happened (the [`Site`] the entry point
//! running on this thread set) and the message with its location, which
//! the host turns into one `tracing` error event and a count. Without such
//! a host (a plugin crate's own tests, an older host), the hook that was
//! installed before, std's default one unless the plugin set its own,
//! runs as usual.
//!
//! The site lives in a thread-local `Cell` of a `Copy` type with a `const`
//! initializer: no destructor, so setting it on a host thread registers
//! none there (a pending thread-local destructor keeps a library mapped
//! after unload, see `injected`).

use std::cell::Cell;
use std::panic::{Location, PanicHookInfo};
use std::sync::Once;

use crate::abi::RStr;
use crate::boundary::injected;

/// What plugin code on this thread is running, for a panic's report.
#[derive(Clone, Copy)]
pub(crate) enum Site {
    /// No entry point said.
    Unknown,
    /// A task, spawned here.
    Task(&'static Location<'static>),
    /// A blocking job, started here.
    Job(&'static Location<'static>),
    /// A handler of this event. Points into the handler's `Arc<str>`,
    /// which is alive while a call of the handler runs and until every
    /// future a call returned is dropped (the host calls the handler's
    /// `drop` only after that: `RawHandler::drop`); [`at`] sets it only
    /// while such a call, or a poll or drop of such a future, runs.
    Handler(*const str),
    /// A lifecycle call or another fixed place (`init`, `on_load`, ...).
    Named(&'static str),
}

// SAFETY: `Handler`'s pointer is to the `str` of a handler's `Arc<str>`
// (shareable), and is only dereferenced by the panic hook while that
// handler is alive (see `Site::Handler`); every other variant is `'static`.
unsafe impl Send for Site {}
// SAFETY: as above.
unsafe impl Sync for Site {}

thread_local! {
    static SITE: Cell<Site> = const { Cell::new(Site::Unknown) };
    /// The [`fingerprint`]s of the messages of the last panics the hook
    /// reported to the host on this thread, newest first (0: none); taken
    /// by the place that catches a panic ([`log_unreported`]), which looks
    /// for its own panic's. A flag would outlive a reported panic that no
    /// such place catches (one caught into a status, or by the plugin's
    /// own `catch_unwind`) and hide the next panic that bypasses the hook;
    /// several, because a panic in a `Drop` while another unwinds (or in
    /// the drop of a caught payload) is reported after the one its catcher
    /// will see. (Panics without a string payload all have the message
    /// "Box<dyn Any>": one of them reported can still hide the next such
    /// one that bypasses the hook.)
    static REPORTED: Cell<[u64; 4]> = const { Cell::new([0; 4]) };
}

/// Puts the previous site back, also when `f` unwinds.
struct Restore(Site);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = SITE.try_with(|site| site.set(self.0));
    }
}

/// Runs `f` with `site` as this thread's site. Costs two thread-local
/// writes.
#[inline]
pub(crate) fn at<R>(site: Site, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(SITE.try_with(|s| s.replace(site)).unwrap_or(Site::Unknown));
    f()
}

/// Installs this library's panic hook, once per mapping: it reports to the
/// host when one with `report_panic` is attached, and hands the panic to
/// the hook installed before otherwise. Called by `init`, which does not
/// run while this thread panics (`set_hook` would panic then).
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !report(info) {
                previous(info);
            }
        }));
    });
}

/// Logs "`what`: `msg`" (`msg`: the message of a panic just caught at an
/// entry point, on this thread) as an error, unless this library's hook
/// reported that panic to the host. (A panic that bypassed the hook,
/// `resume_unwind`, or went to a hook the plugin set itself, is logged
/// here.)
pub(crate) fn log_unreported(target: &str, what: &str, msg: &str) {
    let reported = REPORTED.try_with(|r| r.replace([0; 4])).unwrap_or([0; 4]);
    if !reported.contains(&fingerprint(msg)) {
        injected::host_log(crate::abi::level::ERROR, target, &format!("{what}: {msg}"));
    }
}

/// A panic message's fingerprint, never 0: the hook and the place that
/// catches the panic both see its message (`guard::panic_message` of its
/// payload).
fn fingerprint(message: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    message.hash(&mut hasher);
    hasher.finish() | 1
}

/// Reports a panic to the host; false if no host takes reports.
fn report(info: &PanicHookInfo<'_>) -> bool {
    let Some(api) = injected::host() else {
        return false;
    };
    let Some(report_panic) = api.report_panic else {
        return false;
    };
    let message = crate::abi::guard::panic_message(info.payload());
    let reported = fingerprint(&message);
    let message = match info.location() {
        Some(at) => format!("{message} (at {at})"),
        None => message,
    };
    let site = match SITE.try_with(Cell::get).unwrap_or(Site::Unknown) {
        Site::Unknown => "plugin code".to_owned(),
        Site::Task(at) => format!("a task spawned at {at}"),
        Site::Job(at) => format!("a blocking job started at {at}"),
        // SAFETY: set by `at` only while the handler it points into is
        // alive (a call of it, or a poll or drop of a future it returned,
        // runs on this thread, below us: see `Site::Handler`).
        Site::Handler(event) => format!("its handler of event `{}`", unsafe { &*event }),
        Site::Named(what) => what.to_owned(),
    };
    // SAFETY: `api` is the live host table (see `injected`); the strings
    // outlive the call, and the host's function never unwinds.
    unsafe { report_panic(api.data, RStr::new(&site), RStr::new(&message)) };
    let _ = REPORTED.try_with(|r| {
        let [a, b, c, _] = r.get();
        r.set([reported, a, b, c]);
    });
    true
}
