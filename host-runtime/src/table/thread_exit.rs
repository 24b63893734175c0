//! Thread-local destructors that plugin code registers on host threads
//! (boundary 4.4, `HostApi::thread_exit`).
//!
//! Why: the first use of a thread-local with a destructor (tokio's context,
//! a channel's coop budget, `tracing`'s dispatcher state, the plugin's own
//! `thread_local!`s) registers that destructor with glibc's
//! `__cxa_thread_atexit_impl`, which counts it against the library and
//! keeps the library mapped after `dlclose` until the thread exits. Host
//! worker threads live as long as the host, so every unloaded copy of a
//! plugin that ran tokio code stayed mapped (0.9 MB a reload, issue 10).
//!
//! What: the plugin's SDK hands those registrations to the host instead
//! (`horizon_plugin_sdk`'s `boundary::thread_exit`). The host keeps them in
//! a thread-local list of its own (its destructor is host code) and, when
//! the thread exits, runs those of plugins still loaded, through the
//! plugin's [`ExitGate`]. Unload closes the gate before the library is
//! closed: from then on that plugin's destructors are forgotten, never
//! called; the values they would have dropped are leaked (on a thread
//! still alive at unload: tokio's context holds no heap memory outside a
//! poll, so what leaks is what the plugin's own thread-locals own).

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::sync::{Arc, RwLock};

use horizon_plugin_sdk::abi::ThreadDtor;
use horizon_plugin_sdk::abi::guard::catch;

use super::services::services;
use crate::sync::{read, write};

/// Whether a plugin's thread-local destructors may still run: open while
/// its library is loaded, closed for good by `teardown` before the library
/// is closed. A destructor runs under the read lock, so `close` (the write
/// lock) returns only once none runs, and none starts after.
pub(crate) struct ExitGate {
    open: RwLock<bool>,
}

impl ExitGate {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ExitGate {
            open: RwLock::new(true),
        })
    }

    /// From now on this plugin's destructors are forgotten. Waits for any
    /// running on an exiting thread. Called once no code of the plugin
    /// runs otherwise, right before its library is closed.
    pub(crate) fn close(&self) {
        *write(&self.open) = false;
    }

    /// Closed, as far as can be told without waiting: a gate being closed
    /// (write-locked, or waited for) reads as open. For registrations
    /// (the plugin's own gate, and pruning other plugins' entries), which
    /// must never wait behind a `close`.
    fn seen_closed(&self) -> bool {
        self.open.try_read().is_ok_and(|open| !*open)
    }
}

/// One destructor a plugin registered on this thread.
struct Entry {
    gate: Arc<ExitGate>,
    dtor: ThreadDtor,
    obj: *mut u8,
}

/// This thread's plugin destructors, run when the thread exits (the host's
/// own thread-local destructor: host code, registered with glibc against
/// the host), one plugin at a time (the plugin of the newest thread-local
/// entry first; keys once no thread-local entry is left): its `locals`,
/// the last registered first as glibc runs them, then its `last`
/// (pthread-key destructors, which glibc runs after every thread-local).
/// The order across plugins is not glibc's; each plugin has its own std
/// and its own keys.
struct Pending {
    locals: Vec<Entry>,
    last: Vec<Entry>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A destructor run below may use a thread-local of its plugin for
        // the first time on this thread and so register another; `PENDING`
        // is being destroyed, so `thread_exit` adds it here, through
        // `DRAINING` (handed to glibc, it would run after this loop,
        // outside any gate, possibly during or after its plugin's unload).
        let this: *mut Pending = self;
        DRAINING.set(this);
        // SAFETY: `this` is `self`, valid for this whole call, and only
        // accessed through `this` from here on: here, and by `thread_exit`
        // on this thread while a destructor runs (no reference into the
        // lists is held across that call).
        while let Some(entry) = unsafe { (*this).locals.pop().or_else(|| (*this).last.pop()) } {
            let gate = Arc::clone(&entry.gate);
            let open = read(&gate.open);
            if !*open {
                continue;
            }
            // Every destructor of this plugin on this thread runs under
            // this one read lock, those it registers meanwhile included:
            // released and taken again, the lock may go to a waiting
            // `close`, and the rest would be forgotten.
            let mut next = Some(entry);
            while let Some(entry) = next.take() {
                // SAFETY: the plugin registered `dtor` for `obj` on this
                // thread (`thread_exit`'s contract), and this is that
                // thread, exiting; the gate is open under the read lock,
                // so the plugin's library is loaded (and, for a plugin
                // with `release`, its state alive) until the call returns.
                // Called once: the entry was taken off the list. It never
                // unwinds (an `extern "C"` function; std aborts first if a
                // thread-local's `Drop` panics).
                unsafe { (entry.dtor)(entry.obj) };
                // SAFETY: `this`, as above.
                next = unsafe { (*this).take_next_of(&gate) };
            }
        }
        DRAINING.set(std::ptr::null_mut());
    }
}

impl Pending {
    /// Keeps `entry`, with the key destructors if `last`.
    fn push(&mut self, entry: Entry, last: bool) {
        if last {
            self.last.push(entry);
        } else {
            self.locals.push(entry);
        }
    }

    /// The newest entry of `gate`'s plugin, thread-locals before keys
    /// (glibc's order: every thread-local destructor before any key's).
    fn take_next_of(&mut self, gate: &Arc<ExitGate>) -> Option<Entry> {
        let newest = |list: &Vec<Entry>| list.iter().rposition(|e| Arc::ptr_eq(&e.gate, gate));
        if let Some(i) = newest(&self.locals) {
            return Some(self.locals.remove(i));
        }
        newest(&self.last).map(|i| self.last.remove(i))
    }
}

thread_local! {
    static PENDING: RefCell<Pending> = const {
        RefCell::new(Pending {
            locals: Vec::new(),
            last: Vec::new(),
        })
    };
    /// While `PENDING`'s destructor runs on this thread, the lists it
    /// drains (null otherwise). No destructor: readable while the thread
    /// exits.
    static DRAINING: Cell<*mut Pending> = const { Cell::new(std::ptr::null_mut()) };
}

/// `HostApi::thread_exit`: keeps `dtor(obj)` for this thread's exit
/// (after every other one if `last`). Registered while this thread runs
/// its list (by one of its destructors), it joins the list being run.
/// False (not taken) once the plugin is unloaded, or once this thread's
/// list has been run (the thread is exiting: the plugin then registers
/// with glibc, which runs it before the thread is gone).
pub(super) unsafe extern "C" fn thread_exit(
    data: *const c_void,
    dtor: ThreadDtor,
    obj: *mut u8,
    last: bool,
) -> bool {
    catch(|| {
        // SAFETY: `data` is this table's `Services`, alive while the
        // plugin can call (the `services` contract).
        let gate = &unsafe { services(data) }.exit_gate;
        let draining = DRAINING.get();
        if !draining.is_null() {
            // Inside a destructor that `Pending::drop` runs under a gate's
            // read lock: no second read lock here (it could wait behind a
            // `close` waiting for the first); the loop checks this
            // plugin's gate before running it.
            let entry = Entry {
                gate: Arc::clone(gate),
                dtor,
                obj,
            };
            // SAFETY: `draining` is the `Pending` being dropped on this
            // thread, accessed only through that pointer while its drop
            // runs, and not across this call (see `Pending::drop`).
            unsafe { &mut *draining }.push(entry, last);
            return true;
        }
        PENDING
            .try_with(|pending| {
                // Not borrowed elsewhere: nothing below calls out.
                let Ok(mut pending) = pending.try_borrow_mut() else {
                    return false;
                };
                // Not `is_open`: a read lock may wait behind a `close`,
                // which may wait for a destructor on an exiting thread
                // that waits for the plugin's registration lock, held by
                // this call's caller. Accepted while being closed, the
                // entry is checked again at exit (and pruned by a later
                // registration on this thread).
                if gate.seen_closed() {
                    return false;
                }
                let gate = Arc::clone(gate);
                // Forget the entries of unloaded plugins here, so a thread
                // that outlives many reloads keeps one list, not one per copy.
                pending.locals.retain(|entry| !entry.gate.seen_closed());
                pending.last.retain(|entry| !entry.gate.seen_closed());
                pending.push(Entry { gate, dtor, obj }, last);
                true
            })
            .unwrap_or(false)
    })
    .unwrap_or(false)
}
