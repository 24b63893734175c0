//! Which tokio paths are routed through `horizon_plugin_sdk::rt`, which are refused,
//! and which are left alone.
//!
//! Paths are matched conservatively, by their segments after a leading
//! `tokio` (written `tokio::…` or `::tokio::…`): the attribute cannot resolve
//! names, so a path is tokio's only when it says so, or when it starts with a
//! name that a `use tokio::…` in the impl's bodies brought in (see
//! [`Aliases`]). A routed path keeps every segment and only has its
//! root `tokio` replaced by `::horizon_plugin_sdk::rt`, whose modules mirror tokio's.

use std::collections::HashMap;

/// Names brought in by the `use` items of the impl's bodies, mapped to the
/// full path they stand for (collected by `rewrite/uses.rs`). Only
/// consulted to refuse calls through such names, in paths and in macro
/// arguments alike; routed `use`s are rewritten in place.
pub(crate) type Aliases = HashMap<String, Vec<String>>;

/// What to do with a path below `tokio`.
pub(crate) enum Class {
    /// Replace the root `tokio` by `::horizon_plugin_sdk::rt`.
    Routed,
    /// A compile error with this message.
    Refused(&'static str),
    /// Not runtime-dependent, or not ours to judge: leave as written.
    Keep,
}

const TASK_ROUTED: &[&str] = &[
    "spawn",
    "spawn_blocking",
    "yield_now",
    "consume_budget",
    "JoinHandle",
    "JoinError",
];

const TIME_ROUTED: &[&str] = &[
    "sleep",
    "sleep_until",
    "interval",
    "interval_at",
    "timeout",
    "timeout_at",
    "Sleep",
    "Interval",
    "Timeout",
    "Instant",
    "Duration",
    "MissedTickBehavior",
    "error",
];

pub(crate) const RUNTIME_CREATION: &str = "creating a tokio runtime inside a plugin starts a second scheduler the host cannot see or shut down; \
     plugin code already runs on the host's runtime: use `tokio::spawn`, `tokio::time` and \
     `tokio::task::spawn_blocking` directly (the attribute routes them through `horizon_plugin_sdk::rt`)";

const BLOCK_IN_PLACE: &str = "`tokio::task::block_in_place` blocks a host worker thread; use `tokio::task::spawn_blocking` \
     (routed to `horizon_plugin_sdk::rt::spawn_blocking`) and await its handle";

const LOCAL: &str = "plugin tasks run on the host's worker threads, where no `LocalSet` exists; \
     use `tokio::spawn` with a `Send` future (routed to `horizon_plugin_sdk::rt::spawn`)";

const HANDLE_BLOCKING: &str = "`Handle::block_on` and `Handle::enter` need tokio's thread-local runtime context, which a plugin \
     does not share with its host; `.await` the future instead";

pub(crate) const HANDLE_STORAGE: &str = "a runtime handle stored in a `thread_local!` or `static` is set only where it was stored, and a plugin \
     does not share tokio's runtime with its host; the host injects the handle: call \
     `tokio::runtime::Handle::current()` (routed to `horizon_plugin_sdk::rt::runtime::Handle`) where you need it";

const BLOCK_ON: &str = "`futures::executor::block_on` blocks a host worker thread until the future completes; \
     `.await` the future instead";

pub(crate) const METHOD_BLOCK_ON: &str = "`block_on` inside a plugin blocks the host worker thread that runs this code (and a runtime handle from \
     another copy of tokio is undefined behaviour to use); `.await` the future instead";

pub(crate) const TOKIO_GLOB: &str = "`use tokio::*` would hide `tokio::spawn` and friends from the attribute; \
     import the items by name (`use tokio::time::sleep;`)";

/// Classifies the segments that follow the root `tokio`.
pub(crate) fn classify(segments: &[String]) -> Class {
    let seg = |i: usize| segments.get(i).map(String::as_str);
    match (seg(0), seg(1), seg(2)) {
        (Some("spawn"), _, _) => Class::Routed,
        (Some("task"), None, _) => Class::Routed,
        (Some("task"), Some("block_in_place"), _) => Class::Refused(BLOCK_IN_PLACE),
        (Some("task"), Some("spawn_local" | "LocalSet"), _) => Class::Refused(LOCAL),
        (Some("task"), Some(item), _) if TASK_ROUTED.contains(&item) => Class::Routed,
        (Some("time"), None, _) => Class::Routed,
        (Some("time"), Some(item), _) if TIME_ROUTED.contains(&item) => Class::Routed,
        (Some("runtime"), Some("Runtime" | "Builder"), _) => Class::Refused(RUNTIME_CREATION),
        (Some("runtime"), Some("Handle"), Some("block_on" | "enter")) => {
            Class::Refused(HANDLE_BLOCKING)
        }
        (Some("runtime"), Some("Handle"), _) => Class::Routed,
        _ => Class::Keep,
    }
}

/// The classification of a full path (root crate included).
pub(crate) fn classify_full(full: &[String]) -> Class {
    match full.first().map(String::as_str) {
        Some("tokio") => classify(&full[1..]),
        Some("futures")
            if full[1..]
                .iter()
                .map(String::as_str)
                .eq(["executor", "block_on"]) =>
        {
            Class::Refused(BLOCK_ON)
        }
        _ => Class::Keep,
    }
}

/// Tokio's macros that take code and need nothing from a runtime context;
/// they are named through the SDK's copy of tokio so the plugin needs no
/// tokio dependency of its own for them.
pub(crate) const PURE_MACROS: &[&str] = &["select", "join", "try_join", "pin"];
