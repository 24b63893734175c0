//! The plugin's view of a host waker: a `std::task::Waker` whose data is the
//! host waker's own data pointer and whose vtable calls back into the host
//! ([`crate::abi::WakerFns`]). Nothing is allocated to cross, and a clone
//! costs the host waker's clone (for a tokio task, one reference count).
//!
//! A `Waker` carries one data pointer, but a host waker is two (data and
//! vtable). The host vtable is kept instead in one of a few static slots,
//! each with a plugin vtable of its own: the plugin vtable says which slot,
//! so which host vtable. A host has few waker vtables (tokio has one per
//! scheduler flavour); if the slots run out, a waker falls back to a boxed
//! copy of the pair (what async-ffi does for every clone).

use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use super::injected;
use crate::abi::{HostWaker, WakerFns};

const SLOTS: usize = 8;

/// The host vtable each slot stands for (null: free). Slots are taken once
/// and never released (a host's waker vtables are statics).
static HOST_VTABLES: [AtomicPtr<std::ffi::c_void>; SLOTS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS];

fn fns() -> Option<&'static WakerFns> {
    injected::host().map(|api| &api.waker)
}

/// The plugin vtable of slot `K`: its data pointer is the host waker's.
struct Slot<const K: usize>;

impl<const K: usize> Slot<K> {
    const VTABLE: RawWakerVTable =
        RawWakerVTable::new(Self::clone, Self::wake, Self::wake_by_ref, Self::drop);

    fn host(data: *const ()) -> HostWaker {
        HostWaker {
            data,
            vtable: HOST_VTABLES[K].load(Ordering::Acquire),
        }
    }

    unsafe fn clone(data: *const ()) -> RawWaker {
        match fns() {
            // SAFETY: `data` and slot `K` make up a live host waker; the
            // host's `clone` never unwinds.
            Some(fns) => owned(unsafe { (fns.clone)(Self::host(data)) }),
            None => noop(),
        }
    }

    unsafe fn wake(data: *const ()) {
        if let Some(fns) = fns() {
            // SAFETY: as in `clone`; this owned waker is consumed.
            unsafe { (fns.wake)(Self::host(data)) }
        }
    }

    unsafe fn wake_by_ref(data: *const ()) {
        if let Some(fns) = fns() {
            // SAFETY: as in `clone`.
            unsafe { (fns.wake_by_ref)(Self::host(data)) }
        }
    }

    unsafe fn drop(data: *const ()) {
        if let Some(fns) = fns() {
            // SAFETY: as in `clone`; this owned waker is released.
            unsafe { (fns.drop)(Self::host(data)) }
        }
    }
}

static VTABLES: [&RawWakerVTable; SLOTS] = [
    &Slot::<0>::VTABLE,
    &Slot::<1>::VTABLE,
    &Slot::<2>::VTABLE,
    &Slot::<3>::VTABLE,
    &Slot::<4>::VTABLE,
    &Slot::<5>::VTABLE,
    &Slot::<6>::VTABLE,
    &Slot::<7>::VTABLE,
];

/// The slot standing for `vtable`, taking a free one if needed.
fn slot(vtable: *const std::ffi::c_void) -> Option<usize> {
    let vtable = vtable.cast_mut();
    for (k, host) in HOST_VTABLES.iter().enumerate() {
        let current = host.load(Ordering::Acquire);
        if current == vtable {
            return Some(k);
        }
        if current.is_null() {
            match host.compare_exchange(
                ptr::null_mut(),
                vtable,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(k),
                Err(taken) if taken == vtable => return Some(k),
                Err(_) => {}
            }
        }
    }
    None
}

/// An owned plugin waker for an owned host waker.
fn owned(host: HostWaker) -> RawWaker {
    match slot(host.vtable) {
        Some(k) => RawWaker::new(host.data, VTABLES[k]),
        None => RawWaker::new(Box::into_raw(Box::new(host)).cast(), &BOXED),
    }
}

fn noop() -> RawWaker {
    RawWaker::new(ptr::null(), &NOOP)
}

static NOOP: RawWakerVTable = RawWakerVTable::new(|_| noop(), |_| {}, |_| {}, |_| {});

/// Fallback when every slot is taken: data is a `Box<HostWaker>`.
static BOXED: RawWakerVTable =
    RawWakerVTable::new(clone_boxed, wake_boxed, wake_by_ref_boxed, drop_boxed);

/// Lent for one poll when every slot is taken: data points to the caller's
/// `HostWaker`, which is borrowed: only cloned or woken by reference (an
/// owned `Waker` is never made from it).
static BORROWED: RawWakerVTable =
    RawWakerVTable::new(clone_boxed, |_| {}, wake_by_ref_boxed, |_| {});

/// # Safety
/// `data` points to a live `HostWaker` (boxed, or borrowed for a poll).
unsafe fn clone_boxed(data: *const ()) -> RawWaker {
    match fns() {
        // SAFETY: the caller's guarantee; the host's `clone` never unwinds.
        Some(fns) => owned(unsafe { (fns.clone)(*data.cast::<HostWaker>()) }),
        None => noop(),
    }
}

/// # Safety
/// As [`clone_boxed`].
unsafe fn wake_by_ref_boxed(data: *const ()) {
    if let Some(fns) = fns() {
        // SAFETY: as in `clone_boxed`.
        unsafe { (fns.wake_by_ref)(*data.cast::<HostWaker>()) }
    }
}

/// # Safety
/// `data` is a `Box<HostWaker>` made in `owned`, consumed here.
unsafe fn wake_boxed(data: *const ()) {
    // SAFETY: the caller's guarantee.
    let host = unsafe { Box::from_raw(data.cast_mut().cast::<HostWaker>()) };
    if let Some(fns) = fns() {
        // SAFETY: an owned host waker, consumed by `wake`.
        unsafe { (fns.wake)(*host) }
    }
}

/// # Safety
/// As [`wake_boxed`].
unsafe fn drop_boxed(data: *const ()) {
    // SAFETY: the caller's guarantee.
    let host = unsafe { Box::from_raw(data.cast_mut().cast::<HostWaker>()) };
    if let Some(fns) = fns() {
        // SAFETY: an owned host waker, released by `drop`.
        unsafe { (fns.drop)(*host) }
    }
}

/// Runs `f` with a context whose waker is the host waker `host`, borrowed.
///
/// # Safety
/// `host` must be a live host waker for the duration of the call.
pub(crate) unsafe fn with_context<R>(host: &HostWaker, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
    let raw = match slot(host.vtable) {
        Some(k) => RawWaker::new(host.data, VTABLES[k]),
        None => RawWaker::new(ptr::from_ref(host).cast(), &BORROWED),
    };
    // SAFETY: the vtables above uphold `RawWaker`'s contract for a host
    // waker alive during the call (the caller's guarantee). `ManuallyDrop`:
    // the waker is borrowed, so it is never dropped here.
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
    f(&mut Context::from_waker(&waker))
}

/// Whether `waker` is a host waker seen through this module: its functions
/// only call the host, which never unwinds.
pub(crate) fn is_host_waker(waker: &Waker) -> bool {
    let vtable = waker.vtable();
    VTABLES.iter().any(|v| ptr::eq(*v, vtable))
        || ptr::eq(vtable, &BOXED)
        || ptr::eq(vtable, &BORROWED)
}
