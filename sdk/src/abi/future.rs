//! [`RawFuture`]: the one future protocol that crosses the boundary, in
//! both directions (plugin tasks, handler calls and lifecycle calls to the
//! host; timers and emits to the plugin). Its waker crosses as a
//! [`BoundaryWaker`](super::BoundaryWaker).

use std::ffi::c_void;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use super::guard::{catch, entered};
use super::values::{RStatus, STATUS_OK};
use super::waker::{self, BoundaryWaker};

/// A future owned by one side and polled by the other: `poll` and `drop`
/// are the owner's functions over the owner's `data`.
///
/// Its fields are private: its safe `poll` and `drop` call the stored
/// function pointers, so only [`RawFuture::new`] (safe, boxing a future)
/// and [`RawFuture::from_raw_parts`] (unsafe) make one, as
/// `std::task::Waker::from_raw` does.
#[repr(C)]
pub struct RawFuture<T = ()> {
    data: *const c_void,
    poll: unsafe extern "C" fn(*const c_void, *const BoundaryWaker, *mut T) -> bool,
    drop: unsafe extern "C" fn(*const c_void),
    cancelled: *const AtomicBool,
    /// Set by the side polling it once `poll` returned true: a `Future`
    /// polled again after `Ready` panics instead of calling `poll` again.
    done: bool,
}

/// The `poll` function of a [`RawFuture`]: polls `data` with the borrowed
/// waker; on completion writes the output to the third argument and
/// returns true. Never unwinds.
pub type PollFn<T> = unsafe extern "C" fn(*const c_void, *const BoundaryWaker, *mut T) -> bool;

// SAFETY: `RawFuture::new` requires `Send` futures and `from_raw_parts`
// makes its caller promise the same; `data` is reached only through `poll`
// and `drop`.
unsafe impl<T: Send> Send for RawFuture<T> {}

impl<T> RawFuture<T> {
    /// Assembles a raw future.
    ///
    /// # Safety
    /// - `poll(data, waker, out)` may be called from any thread, one call at
    ///   a time, until it returns true (never after); it writes `out` when
    ///   and only when it returns true, and never unwinds.
    /// - `drop(data)` is called exactly once, after the last `poll`, from any
    ///   thread, and never unwinds.
    /// - `data` may be sent to another thread (the future is `Send`).
    /// - `cancelled` is null, or an atomic that stays valid until `drop`.
    pub const unsafe fn from_raw_parts(
        data: *const c_void,
        poll: PollFn<T>,
        drop: unsafe extern "C" fn(*const c_void),
        cancelled: *const AtomicBool,
    ) -> Self {
        RawFuture {
            data,
            poll,
            drop,
            cancelled,
            done: false,
        }
    }

    /// The owner's data pointer (the host keys a plugin task by it).
    pub fn data(&self) -> *const c_void {
        self.data
    }

    /// For a spawned task: the flag the plugin sets to cancel it
    /// (`JoinHandle::abort`), which the host reads before each poll. Null
    /// for other futures. Valid until this future is dropped.
    pub fn cancelled(&self) -> *const AtomicBool {
        self.cancelled
    }
}

/// How a panic in a boxed [`RawFuture`]'s `poll` completes it.
pub trait FromPanic {
    /// The output standing for a panic with `message`.
    fn from_panic(message: String) -> Self;
}

impl FromPanic for () {
    fn from_panic(_: String) -> Self {}
}

impl FromPanic for RStatus {
    fn from_panic(message: String) -> Self {
        RStatus::panic(message)
    }
}

impl<T: FromPanic + Send> RawFuture<T> {
    /// Boxes `fut` behind this side's `poll` and `drop` (monomorphized in the
    /// crate that calls this, so the code lives on the owner's side). A
    /// panic in `poll` completes the future with [`FromPanic::from_panic`];
    /// a panic in `drop` is swallowed.
    pub fn new<F>(fut: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        // SAFETY: `poll_boxed` and `drop_boxed` uphold the contract for the
        // `Box<F>` they are given; `F: Send`.
        unsafe {
            RawFuture::from_raw_parts(
                Box::into_raw(Box::new(fut)).cast_const().cast(),
                poll_boxed::<F>,
                drop_boxed::<F>,
                std::ptr::null(),
            )
        }
    }
}

impl RawFuture<RStatus> {
    /// A future already complete with `status` (a synchronous call that
    /// finished). A success with an empty message is no allocation: its
    /// `poll` writes [`RStatus::ok`]; any other status is boxed as
    /// [`RawFuture::new`] does.
    pub fn ready(status: RStatus) -> Self {
        if status.code != STATUS_OK || !status.message.as_bytes().is_empty() {
            return RawFuture::new(std::future::ready(status));
        }
        // SAFETY: `poll_ready_ok` writes its output and returns true on its
        // first (and so only) call, `drop_nothing` does nothing; neither
        // reads `data` nor unwinds, and both are fine on any thread.
        unsafe {
            RawFuture::from_raw_parts(
                std::ptr::null(),
                poll_ready_ok,
                drop_nothing,
                std::ptr::null(),
            )
        }
    }
}

/// The `poll` of [`RawFuture::ready`]'s success: complete at once.
unsafe extern "C" fn poll_ready_ok(
    _: *const c_void,
    _: *const BoundaryWaker,
    out: *mut RStatus,
) -> bool {
    entered("RawFuture::poll");
    // SAFETY: `out` is valid for a write (the `PollFn` contract).
    unsafe { out.write(RStatus::ok()) };
    true
}

/// The `drop` of [`RawFuture::ready`]'s success: it owns nothing.
unsafe extern "C" fn drop_nothing(_: *const c_void) {
    entered("RawFuture::drop");
}

unsafe extern "C" fn poll_boxed<F>(
    data: *const c_void,
    waker: *const BoundaryWaker,
    out: *mut F::Output,
) -> bool
where
    F: Future,
    F::Output: FromPanic,
{
    entered("RawFuture::poll");
    // SAFETY: `data` is the `Box<F>` made in `RawFuture::new`, alive until
    // `drop_boxed`; polls are one at a time and stop at completion (the
    // `from_raw_parts` contract); it stays in its box, so it is pinned;
    // `waker` and `out` are valid for this call.
    let polled = catch(|| unsafe {
        let fut = Pin::new_unchecked(&mut *data.cast_mut().cast::<F>());
        waker::with_context(&*waker, |cx| fut.poll(cx))
    });
    let output = match polled {
        Ok(Poll::Pending) => return false,
        Ok(Poll::Ready(output)) => output,
        Err(panic) => F::Output::from_panic(panic),
    };
    // SAFETY: `out` is valid for a write (see above).
    unsafe { out.write(output) };
    true
}

unsafe extern "C" fn drop_boxed<F>(data: *const c_void) {
    entered("RawFuture::drop");
    // SAFETY: as in `poll_boxed`; `drop` is called exactly once.
    let fut = unsafe { Box::from_raw(data.cast_mut().cast::<F>()) };
    let _ = catch(move || drop(fut));
}

impl<T> Future for RawFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        assert!(!this.done, "`RawFuture` polled after completion");
        let lent = waker::lend(cx.waker());
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: the `from_raw_parts` contract: `poll` may be called until
        // it returns true, never after (`done`). `lent` is alive for the
        // call; `out` is written when, and only when, it returns true.
        if unsafe { (this.poll)(this.data, &raw const lent, out.as_mut_ptr()) } {
            this.done = true;
            // SAFETY: see above.
            Poll::Ready(unsafe { out.assume_init() })
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for RawFuture<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` is the owner's release function for `data`, and
        // this is the one call.
        unsafe { (self.drop)(self.data) }
    }
}

/// Mixes [`RawFuture`]'s layout into a fingerprint (its fields are private
/// to this module).
pub(super) const fn layout(h: u64) -> u64 {
    use super::layout::describe;
    describe!(h, RawFuture<RStatus> {
        data: *const c_void,
        poll: PollFn<RStatus>,
        drop: unsafe extern "C" fn(*const c_void),
        cancelled: *const AtomicBool,
        done: bool,
    })
}
