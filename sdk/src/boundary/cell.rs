//! A spawned task's cell in plugin memory: one allocation holding the
//! future (or blocking closure) and the join state its `JoinHandle` waits
//! on, with a hand-counted reference for each side and one state word
//! (model-checked with loom, below). The host polls and drops it through a
//! `RawFuture` (or runs it as a `BlockingJob`) whose functions are here.
//! One protocol in one file past 400 lines: the state word, the functions
//! that move it and its loom model belong together.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll, Waker};

use super::injected;
use super::panics::{self, Site};
use crate::abi::guard::{catch, entered};
use crate::abi::waker::{self, BoundaryWaker};
use crate::abi::{BlockingJob, HostApi, RawFuture};
use crate::sync::{self, AtomicU8, AtomicUsize, Ordering, fence};

/// `Shared::state`: the outcome is written.
const COMPLETE: u8 = 1;
/// `Shared::state`: the joiner's waker is in `Shared::waker`.
const JOIN_WAKER: u8 = 2;

/// The header of a task's cell: what its `JoinHandle` waits on. Lives in
/// plugin memory, so awaiting a task never crosses the boundary.
///
/// One allocation per task holds this header and the future (or blocking
/// closure), counted by hand (`refs`: the `JoinHandle` and the host's
/// `RawFuture` or `BlockingJob`), with one state word for completion and
/// the join waker, as tokio does, so a spawn + join costs few atomics.
///
/// Protocol: the task (one writer) stores the outcome, then sets
/// `COMPLETE`; if `JOIN_WAKER` was set, it takes and wakes the waker. The
/// joiner (one reader) writes `waker` only while `JOIN_WAKER` is clear,
/// then sets it; it reads the outcome only after seeing `COMPLETE`.
pub(crate) struct Shared<T> {
    refs: AtomicUsize,
    state: AtomicU8,
    /// Set by `JoinHandle::abort`; read by the host before each poll (it is
    /// [`RawFuture::cancelled`]) and by a blocking job before it starts.
    pub(crate) cancelled: AtomicBool,
    waker: sync::UnsafeCell<Option<Waker>>,
    /// The outcome once written (`Some`), until the join handle takes it:
    /// `Some(None)` is a cancelled task.
    output: sync::UnsafeCell<Option<Option<Result<T, String>>>>,
    /// Frees the whole cell this header starts.
    free: unsafe fn(NonNull<Shared<T>>),
}

impl<T> Shared<T> {
    /// A header with two references (the join handle's and the host's),
    /// for a cell of type `C` that starts with it.
    fn new<C>() -> Self {
        Shared {
            refs: AtomicUsize::new(2),
            state: AtomicU8::new(0),
            cancelled: AtomicBool::new(false),
            waker: sync::UnsafeCell::new(None),
            output: sync::UnsafeCell::new(None),
            free: free_cell::<C, T>,
        }
    }

    /// Records the outcome (`None`: cancelled) and wakes the joiner. Called
    /// at most once per task.
    fn finish(&self, output: Option<Result<T, String>>) {
        // SAFETY: the single writer, before `COMPLETE` is published; the
        // joiner does not touch `output` until it sees `COMPLETE`.
        self.output.with_mut(|slot| unsafe { *slot = Some(output) });
        let before = self.state.fetch_or(COMPLETE, Ordering::AcqRel);
        if before & JOIN_WAKER != 0 {
            // SAFETY: `JOIN_WAKER` was set before `COMPLETE`: the joiner
            // stored its waker and will not touch the slot again.
            if let Some(waker) = self.waker.with_mut(|slot| unsafe { (*slot).take() }) {
                // The joiner's waker may be plugin-made: it must not unwind here.
                injected::wake_caught(move || waker.wake());
            }
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) & COMPLETE != 0
    }

    /// Takes the outcome once finished, else registers `cx`'s waker. Only
    /// the join handle calls this.
    pub(crate) fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Option<Result<T, String>>> {
        let state = self.state.load(Ordering::Acquire);
        if state & COMPLETE == 0 {
            if state & JOIN_WAKER != 0 {
                // Take the waker slot back (only the task changes the state
                // meanwhile, and only to set `COMPLETE`).
                if self
                    .state
                    .compare_exchange(
                        state,
                        state & !JOIN_WAKER,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
                {
                    return Poll::Ready(self.take_output());
                }
            }
            self.waker.with_mut(|slot| {
                // SAFETY: `JOIN_WAKER` is clear, so the task does not read the slot.
                let slot = unsafe { &mut *slot };
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
            });
            if self.state.fetch_or(JOIN_WAKER, Ordering::AcqRel) & COMPLETE == 0 {
                return Poll::Pending;
            }
            // Completed meanwhile, without seeing the waker: read the outcome.
        }
        Poll::Ready(self.take_output())
    }

    /// # Panics
    /// When the output was already taken: like tokio's, a `JoinHandle`
    /// polled after it completed panics.
    fn take_output(&self) -> Option<Result<T, String>> {
        // SAFETY: `COMPLETE` was seen (acquire), so the writer is done; the
        // join handle is the only reader.
        let taken = self.output.with_mut(|slot| unsafe { (*slot).take() });
        taken.expect("JoinHandle polled after completion")
    }
}

/// A counted reference to a task's cell, through its header.
pub(crate) struct CellRef<T>(NonNull<Shared<T>>);

// SAFETY: the header's shared state is synchronized as described on
// `Shared`; `T: Send` outputs move to the joiner's thread.
unsafe impl<T: Send> Send for CellRef<T> {}
// SAFETY: as above; `&CellRef` only reads atomics.
unsafe impl<T: Send> Sync for CellRef<T> {}

impl<T> CellRef<T> {
    pub(crate) fn shared(&self) -> &Shared<T> {
        // SAFETY: the reference keeps the cell alive.
        unsafe { self.0.as_ref() }
    }
}

impl<T> Drop for CellRef<T> {
    fn drop(&mut self) {
        // SAFETY: this reference is counted and given up here, once.
        unsafe { release(self.0) }
    }
}

/// Gives up one reference to a cell; the last one frees it.
///
/// # Safety
/// `header` is a cell's header and the caller owns one of its references.
unsafe fn release<T>(header: NonNull<Shared<T>>) {
    // SAFETY: the caller's reference keeps the cell alive until this decrement.
    let shared = unsafe { header.as_ref() };
    if shared.refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    fence(Ordering::Acquire);
    let free = shared.free;
    // Freeing drops an unread output and a stale waker: plugin code, which
    // must not unwind into the host. They are taken through their cells
    // first, so the loom model sees these accesses.
    let _ = catch(move || {
        // SAFETY: that was the last reference: nothing else touches the cell.
        drop(shared.output.with_mut(|slot| unsafe { (*slot).take() }));
        // SAFETY: as above.
        drop(shared.waker.with_mut(|slot| unsafe { (*slot).take() }));
        // SAFETY: as above; the cell is freed once, here.
        unsafe { free(header) }
    });
}

/// # Safety
/// `header` starts a `Box<C>` (`C` is `#[repr(C)]` with the header first).
unsafe fn free_cell<C, T>(header: NonNull<Shared<T>>) {
    // SAFETY: the caller's guarantee.
    drop(unsafe { Box::from_raw(header.as_ptr().cast::<C>()) });
}

/// A spawned task's cell: the header, then the future (polled and dropped
/// only by the host's task, through [`RawFuture`]).
#[repr(C)]
struct TaskCell<F: Future> {
    shared: Shared<F::Output>,
    future: UnsafeCell<Option<F>>,
    /// Where it was spawned, for panic reports.
    spawned_at: &'static Location<'static>,
}

/// Drops the future in its cell (see [`injected::drop_pinned`]).
///
/// # Safety
/// `slot` is a cell's `future`: pinned there (never moved; dropped in place).
unsafe fn drop_future<F>(slot: &mut Option<F>) {
    // SAFETY: the caller's guarantee.
    injected::drop_pinned(unsafe { Pin::new_unchecked(slot) });
}

unsafe extern "C" fn poll_task<F>(
    data: *const c_void,
    waker: *const BoundaryWaker,
    _out: *mut (),
) -> bool
where
    F: Future + Send,
    F::Output: Send,
{
    entered("task poll");
    // SAFETY: `data` is the `TaskCell<F>` made in `spawn_on_host`, kept alive by the
    // host's reference until `drop_task`; the host polls its task from one
    // thread at a time, so the access to `future` is exclusive; `waker` is
    // valid for this call.
    let (cell, slot, waker) = unsafe {
        let cell = &*data.cast::<TaskCell<F>>();
        (cell, &mut *cell.future.get(), &*waker)
    };
    if slot.is_none() {
        return true;
    }
    let site = Site::Task(cell.spawned_at);
    // SAFETY: the host's waker is alive for this call.
    let polled = unsafe {
        waker::with_context(waker, |cx| {
            panics::at(site, || {
                catch(|| {
                    injected::budgeted(cx, |cx| {
                        // SAFETY: the future is pinned in the cell: never
                        // moved, dropped in place.
                        let polled =
                            Pin::new_unchecked(slot.as_mut().expect("checked above")).poll(cx);
                        if polled.is_ready() {
                            // Dropped in the runtime context entered for
                            // the poll: with the cooperative budget, inside
                            // the private runtime's `block_on`, as a tokio
                            // task's future is dropped inside its worker's
                            // runtime context (blocking calls of this tokio
                            // copy in its `Drop` panic there, caught).
                            // SAFETY: the same pinned slot; `Pin::set`
                            // drops the future in place.
                            injected::drop_entered(Pin::new_unchecked(&mut *slot));
                        }
                        polled
                    })
                })
            })
        })
    };
    let output = match polled {
        Ok(Poll::Pending) => return false,
        Ok(Poll::Ready(v)) => Ok(v),
        Err(msg) => {
            panics::log_unreported("horizon_plugin_sdk::rt", "a spawned task panicked", &msg);
            Err(msg)
        }
    };
    if slot.is_some() {
        // Its poll panicked.
        // SAFETY: `slot` is this cell's future, pinned in it.
        panics::at(site, || unsafe { drop_future(slot) });
    }
    cell.shared.finish(Some(output));
    // The output is `()`: nothing to write.
    true
}

unsafe extern "C" fn drop_task<F>(data: *const c_void)
where
    F: Future + Send,
    F::Output: Send,
{
    entered("task drop");
    // SAFETY: `data` is the host's reference to the `TaskCell<F>` (never
    // null: it came from a `Box`), which starts with its header; the host
    // calls this once, after its last poll, so the access to `future` is
    // exclusive.
    let (header, cell, slot) = unsafe {
        let cell = &*data.cast::<TaskCell<F>>();
        (
            NonNull::new_unchecked(data.cast_mut().cast::<Shared<F::Output>>()),
            cell,
            &mut *cell.future.get(),
        )
    };
    if slot.is_some() {
        // Aborted, or dropped by a runtime shutting down, before completing.
        // SAFETY: `slot` is this cell's future, pinned in it.
        panics::at(Site::Task(cell.spawned_at), || unsafe { drop_future(slot) });
        cell.shared.finish(None);
    }
    // SAFETY: the host's reference, given up once.
    unsafe { release(header) };
}

/// Spawns `future` on the host through `api`: one cell holding the future
/// and the join state, handed to the host as a `RawFuture`. Returns this
/// side's reference to the cell and the task's key (for `task_abort`).
///
/// # Safety
/// `api` is the live host table (`injected::host()`).
#[track_caller]
pub(crate) unsafe fn spawn_on_host<F>(
    api: &'static HostApi,
    future: F,
) -> (CellRef<F::Output>, NonZeroUsize)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let cell = Box::into_raw(Box::new(TaskCell {
        shared: Shared::new::<TaskCell<F>>(),
        future: UnsafeCell::new(Some(future)),
        spawned_at: Location::caller(),
    }));
    // SAFETY: `cell` came from `Box::into_raw`; `TaskCell` is
    // `#[repr(C)]` with its header first. It holds two references: the
    // returned one and the host's (released in `drop_task`).
    let (cell, cancelled) = unsafe {
        (
            CellRef(NonNull::new_unchecked(cell.cast::<Shared<F::Output>>())),
            &raw const (*cell).shared.cancelled,
        )
    };
    let data: *const c_void = cell.0.as_ptr().cast_const().cast();
    // SAFETY: `poll_task` and `drop_task` uphold the contract for the
    // host's reference to the cell (see each); `F: Send`; `cancelled`
    // is in the cell, which the host's reference keeps alive until `drop`.
    let raw = unsafe { RawFuture::from_raw_parts(data, poll_task::<F>, drop_task::<F>, cancelled) };
    // SAFETY: `api` is the live host table (the caller's guarantee);
    // `spawn` never unwinds and owns `raw` from here on (dropping it if it
    // refuses the task, which then reads as cancelled).
    unsafe { (api.spawn)(api.data, raw) };
    let key = cell.0.addr();
    (cell, key)
}

/// Runs `f` on the host's blocking pool through `api`, with its result
/// in a cell like a task's. Returns this side's reference to the cell.
///
/// # Safety
/// `api` is the live host table (`injected::host()`).
#[track_caller]
pub(crate) unsafe fn spawn_blocking_on_host<F, R>(api: &'static HostApi, f: F) -> CellRef<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let cell: *mut JobCell<F, R> = Box::into_raw(Box::new(JobCell {
        shared: Shared::new::<JobCell<F, R>>(),
        f: UnsafeCell::new(Some(f)),
        spawned_at: Location::caller(),
    }));
    let job = BlockingJob {
        data: cell.cast(),
        run: run_job::<F, R>,
        drop: drop_job::<F, R>,
    };
    // SAFETY: `cell` came from `Box::into_raw`; `JobCell` is `#[repr(C)]`
    // with its header first; two references, the returned one and the
    // job's (released by `run_job` or `drop_job`).
    let cell = CellRef(unsafe { NonNull::new_unchecked(cell.cast::<Shared<R>>()) });
    // SAFETY: `api` is the live host table (the caller's guarantee);
    // `spawn_blocking` never unwinds and calls the job's `run` or `drop`
    // exactly once.
    unsafe { (api.spawn_blocking)(api.data, job) };
    cell
}

/// A blocking job's cell: the header, then the closure (taken by the one
/// `run` or `drop` of the job).
#[repr(C)]
struct JobCell<F, R> {
    shared: Shared<R>,
    f: UnsafeCell<Option<F>>,
    /// Where it was started, for panic reports.
    spawned_at: &'static Location<'static>,
}

/// Takes the closure out of a job's cell.
///
/// # Safety
/// `data` is the `JobCell<F, R>` of `spawn_blocking_on_host`, and the host calls
/// `run` or `drop` exactly once, which is the only access to `f`.
unsafe fn take_job<'a, F, R>(
    data: *mut c_void,
) -> (
    NonNull<Shared<R>>,
    &'a Shared<R>,
    Option<F>,
    &'static Location<'static>,
) {
    // SAFETY: the caller's guarantee; the job's reference keeps the cell
    // alive until `release`, after the last use of the returned header.
    unsafe {
        let cell = &*data.cast::<JobCell<F, R>>();
        (
            NonNull::new_unchecked(data.cast::<Shared<R>>()),
            &cell.shared,
            (*cell.f.get()).take(),
            cell.spawned_at,
        )
    }
}

unsafe extern "C" fn run_job<F: FnOnce() -> R, R: Send>(data: *mut c_void) {
    entered("blocking job run");
    // SAFETY: forwarded: the host calls `run` or `drop` exactly once.
    let (header, shared, f, spawned_at) = unsafe { take_job::<F, R>(data) };
    if let Some(f) = f {
        if shared.cancelled.load(Ordering::Acquire) {
            // Aborted before it started, like tokio's blocking tasks.
            let _ = catch(move || drop(f));
            shared.finish(None);
        } else {
            let result = panics::at(Site::Job(spawned_at), || catch(|| injected::in_private(f)));
            if let Err(msg) = &result {
                panics::log_unreported("horizon_plugin_sdk::rt", "a blocking job panicked", msg);
            }
            shared.finish(Some(result));
        }
    }
    // SAFETY: the job's reference, given up once.
    unsafe { release(header) };
}

unsafe extern "C" fn drop_job<F, R: Send>(data: *mut c_void) {
    entered("blocking job drop");
    // SAFETY: as in `run_job`.
    let (header, shared, f, _) = unsafe { take_job::<F, R>(data) };
    let _ = catch(move || drop(f));
    shared.finish(None);
    // SAFETY: the job's reference, given up once.
    unsafe { release(header) };
}

#[cfg(all(test, horizon_loom))]
mod loom_model {
    use super::*;

    /// A cell with its two references: the task's and the join handle's.
    fn cell() -> (CellRef<u32>, CellRef<u32>) {
        let header = Box::new(Shared::<u32>::new::<Shared<u32>>());
        let header = NonNull::from(Box::leak(header));
        (CellRef(header), CellRef(header))
    }

    fn join(handle: &CellRef<u32>) -> Option<Result<u32, String>> {
        loom::future::block_on(std::future::poll_fn(|cx| handle.shared().poll_join(cx)))
    }

    /// The task completes on one thread while the join handle polls (and
    /// parks its waker) on another: the joiner is always woken (loom
    /// reports a lost wake-up as a deadlock), reads the output only after
    /// it was written, and the last reference frees the cell once.
    #[test]
    fn completion_wakes_the_joiner_and_publishes_the_output() {
        loom::model(|| {
            let (task, handle) = cell();
            let done = loom::thread::spawn(move || {
                task.shared().finish(Some(Ok(7)));
                drop(task);
            });
            assert_eq!(join(&handle), Some(Ok(7)));
            drop(handle);
            done.join().unwrap();
        });
    }

    /// The join handle dropped while the task finishes as cancelled: the
    /// last of the two references frees the cell, whichever it is.
    #[test]
    fn last_release_frees_once_whichever_side_is_last() {
        loom::model(|| {
            let (task, handle) = cell();
            let done = loom::thread::spawn(move || {
                task.shared().finish(None);
                drop(task);
            });
            drop(handle);
            done.join().unwrap();
        });
    }

    /// `JoinHandle::abort` racing completion: the joiner sets the cancel
    /// flag (as `abort` does) and awaits; the task's side checks the flag
    /// before its poll, as the host does, and ends as cancelled
    /// (`drop_task`'s `finish(None)`) or completed. Either way the joiner
    /// is woken once, reads exactly that outcome, and the cell is freed
    /// once; both outcomes occur across the explored interleavings. (The
    /// real flag, `Shared::cancelled`, is a std atomic the host reads
    /// through a pointer; the model stands a loom one with the same
    /// orderings in for it, so that loom explores both orders.)
    #[test]
    fn abort_racing_completion_ends_the_task_once() {
        use std::sync::atomic::{AtomicBool as Seen, Ordering::Relaxed};
        static CANCELLED: Seen = Seen::new(false);
        static COMPLETED: Seen = Seen::new(false);
        loom::model(|| {
            let (task, handle) = cell();
            let flag = std::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let seen = std::sync::Arc::clone(&flag);
            let done = loom::thread::spawn(move || {
                let shared = task.shared();
                if seen.load(Ordering::Acquire) {
                    shared.finish(None);
                } else {
                    shared.finish(Some(Ok(7)));
                }
                drop(task);
            });
            flag.store(true, Ordering::SeqCst);
            match join(&handle) {
                None => CANCELLED.store(true, Relaxed),
                Some(Ok(7)) => COMPLETED.store(true, Relaxed),
                other => panic!("{other:?}"),
            }
            drop(handle);
            done.join().unwrap();
        });
        assert!(
            CANCELLED.load(Relaxed),
            "no interleaving cancelled the task"
        );
        assert!(
            COMPLETED.load(Relaxed),
            "no interleaving completed the task first"
        );
    }

    /// A joiner that parks one waker, then polls again with another (a
    /// task moved between executors, or `select!` re-polling): it takes
    /// the slot back through the state word, and is woken through the new
    /// waker or sees the outcome, never both lost.
    #[test]
    fn a_joiner_that_changes_its_waker_is_woken_through_the_new_one() {
        loom::model(|| {
            let (task, handle) = cell();
            let done = loom::thread::spawn(move || {
                task.shared().finish(Some(Ok(7)));
                drop(task);
            });
            let first = handle
                .shared()
                .poll_join(&mut Context::from_waker(Waker::noop()));
            let out = match first {
                Poll::Ready(out) => out,
                Poll::Pending => join(&handle),
            };
            assert_eq!(out, Some(Ok(7)));
            drop(handle);
            done.join().unwrap();
        });
    }
}
