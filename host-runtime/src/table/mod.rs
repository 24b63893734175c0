//! A plugin's service table and everything the host keeps for it
//! (`Services`): the `extern "C"` functions of its `HostApi` (`api`),
//! how its tasks and blocking jobs are counted and stopped (`task`), the
//! plugin-made wakers the host holds (`wakers`), its log records
//! (`log`), the payloads lent to its handlers (`lend`), and the
//! thread-local destructors its code registers on host threads
//! (`thread_exit`).
//!
//! This layer sits below the event bus: what it needs from the bus (deliver
//! an event a plugin emits, add and remove its handlers) goes through the
//! [`EventBus`] trait, which `crate::bus` implements.
//!
//! Lock order, here and in the bus: a plugin's `parked`, then its
//! `handlers` or `pending`, then the bus's subscribers. Nothing takes them
//! the other way.

mod api;
mod lend;
mod log;
mod services;
mod task;
mod thread_exit;
mod wakers;

use std::sync::{Arc, Weak};

use tokio::runtime::Handle;

pub(crate) use lend::lending;
pub(crate) use services::{EventBus, NamedHandler, PluginHandler, Services};

use crate::info::{LogSink, PluginId};
use crate::stats::PollTimer;

/// A new plugin's `Services`, with its service table: its id, name, and
/// the plugin it replaces (a reload).
pub(crate) fn new_services(
    bus: Weak<dyn EventBus>,
    handle: Handle,
    (id, name, replaces): (PluginId, String, Option<PluginId>),
    (flags, share_from): (u32, usize),
    log_sink: Option<LogSink>,
    timer: PollTimer,
) -> Arc<Services> {
    let every_level = log_sink.is_some();
    Services::new(bus, handle, (id, name, replaces), log_sink, timer, |data| {
        api::table(data, flags, share_from, every_level)
    })
}
