//! Wakers across the boundary, the same way in both directions.
//!
//! A `std::task::Waker` crosses as its own parts plus the `extern "C"`
//! functions of the side that owns it ([`BoundaryWaker`]). The receiving
//! side:
//!
//! - recognises its own wakers coming back (their `fns` is its own
//!   [`WakerFns`] table) and rebuilds them as they were: a host waker lent to
//!   a plugin and lent back to the host is the host's waker again, so the
//!   host never stores a waker whose code lives in a plugin merely because a
//!   plugin forwarded it;
//! - sees a foreign waker through one of a few static slot vtables, one per
//!   foreign vtable seen, whose functions call the owner's `fns`: crossing
//!   costs no allocation, and a clone costs what the owner's clone costs
//!   (for a tokio task, one reference count). Past [`SLOTS`] foreign vtables
//!   a waker falls back to a boxed copy of its parts;
//! - unwraps such a slot waker back to the foreign parts before lending it
//!   on, so a waker never gains a second layer.
//!
//! Each side links its own copy of this module (its own [`OWN`] table, its
//! own slots). A waker is woken only through its owner's functions, which
//! catch panics and, in a plugin, check strict unload mode.
//!
//! One job, in one file past 400 lines: the slot registry, the slot
//! vtables that read it and its loom model belong together.

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::ptr;
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

use super::guard::{catch, entered};

/// A waker lent across the boundary: the owner's `Waker` taken apart
/// (`Waker::data`, `Waker::vtable`) and the owner's functions over it.
/// Only the owner interprets `vtable`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundaryWaker {
    /// The owner's waker data pointer.
    pub data: *const (),
    /// The owner's `RawWakerVTable`, opaque to the other side.
    pub vtable: *const c_void,
    /// The owner's functions over `(data, vtable)`.
    pub fns: *const WakerFns,
}

/// One side's functions over the wakers it owns, like a `RawWakerVTable`.
/// All may be called from any thread and never unwind.
#[repr(C)]
#[derive(Debug)]
pub struct WakerFns {
    /// Clones the waker (the result is owned by the caller).
    pub clone: unsafe extern "C" fn(BoundaryWaker) -> BoundaryWaker,
    /// Wakes the task and releases this owned waker.
    pub wake: unsafe extern "C" fn(BoundaryWaker),
    /// Wakes the task; the waker stays valid.
    pub wake_by_ref: unsafe extern "C" fn(BoundaryWaker),
    /// Releases an owned waker.
    pub drop: unsafe extern "C" fn(BoundaryWaker),
}

/// This side's functions over its own wakers.
pub static OWN: WakerFns = WakerFns {
    clone: own_clone,
    wake: own_wake,
    wake_by_ref: own_wake_by_ref,
    drop: own_drop,
};

/// Whether `w` is one of this side's own wakers (lent by this side, or
/// one of this side's that went through the other and came back).
pub fn is_own(w: &BoundaryWaker) -> bool {
    ptr::eq(w.fns, &OWN)
}

/// # Safety
/// `w` is one of this side's wakers (`fns` is [`OWN`]), alive.
unsafe fn rebuild(w: BoundaryWaker) -> Waker {
    // SAFETY: the caller's guarantee: `vtable` is this side's
    // `RawWakerVTable` for `data`, taken from a live `Waker`.
    unsafe { Waker::from_raw(RawWaker::new(w.data, &*w.vtable.cast::<RawWakerVTable>())) }
}

fn own_parts(waker: Waker) -> BoundaryWaker {
    let waker = ManuallyDrop::new(waker);
    BoundaryWaker {
        data: waker.data(),
        vtable: ptr::from_ref(waker.vtable()).cast(),
        fns: &OWN,
    }
}

unsafe extern "C" fn own_clone(w: BoundaryWaker) -> BoundaryWaker {
    entered("waker clone");
    // SAFETY: `w` is alive and ours (only our `OWN` table is handed out with
    // our vtables); it is borrowed here, not consumed.
    let waker = ManuallyDrop::new(unsafe { rebuild(w) });
    let clone = catch(|| (*waker).clone()).unwrap_or_else(|_| Waker::noop().clone());
    own_parts(clone)
}

unsafe extern "C" fn own_wake(w: BoundaryWaker) {
    entered("waker wake");
    // SAFETY: as in `own_clone`; this owned waker is consumed.
    let waker = unsafe { rebuild(w) };
    let _ = catch(move || waker.wake());
}

unsafe extern "C" fn own_wake_by_ref(w: BoundaryWaker) {
    entered("waker wake_by_ref");
    // SAFETY: as in `own_clone`.
    let waker = ManuallyDrop::new(unsafe { rebuild(w) });
    let _ = catch(|| waker.wake_by_ref());
}

unsafe extern "C" fn own_drop(w: BoundaryWaker) {
    entered("waker drop");
    // SAFETY: as in `own_clone`; this owned waker is released.
    let waker = unsafe { rebuild(w) };
    let _ = catch(move || drop(waker));
}

/// How many foreign waker vtables get an allocation-free slot.
pub const SLOTS: usize = 8;

/// A foreign vtable and its owner's functions, stood for by one slot.
/// Written once, before it is published; read-only afterwards.
struct Entry(UnsafeCell<(*const c_void, *const WakerFns)>);

impl Entry {
    fn parts(&self) -> (*const c_void, *const WakerFns) {
        // SAFETY: only read after publication (see `Registry`), never written.
        self.0.with(|parts| unsafe { *parts })
    }
}

/// Which foreign `(vtable, fns)` each slot stands for.
///
/// Protocol: slot `k` is taken once, by a compare-exchange of its pointer
/// from null to a boxed [`Entry`] (AcqRel: the entry's contents are
/// written before it is published), and never changed or freed, since a
/// waker naming slot `k` may live forever (at most [`SLOTS`] entries are
/// leaked). Readers load the pointer with Acquire before reading the entry.
/// The loom model at the end of this file checks it.
struct Registry {
    entries: [AtomicPtr<Entry>; SLOTS],
}

impl Registry {
    #[cfg(not(horizon_loom))]
    const fn new() -> Self {
        Registry {
            entries: [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS],
        }
    }

    #[cfg(horizon_loom)]
    fn new() -> Self {
        Registry {
            entries: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// The parts slot `k` stands for; `k` came from `slot_for` (directly, or
    /// through a waker made with slot `k`'s vtable, which reached this
    /// thread ordered after that call).
    fn entry(&self, k: usize) -> (*const c_void, *const WakerFns) {
        let entry = self.entries[k].load(Ordering::Acquire);
        assert!(!entry.is_null(), "waker slot {k} used before it was taken");
        // SAFETY: published entries are never freed (see the protocol).
        unsafe { &*entry }.parts()
    }

    /// The slot standing for a foreign `(vtable, fns)`, taking a free one if needed.
    fn slot_for(&self, vtable: *const c_void, fns: *const WakerFns) -> Option<usize> {
        for (k, cell) in self.entries.iter().enumerate() {
            let mut current = cell.load(Ordering::Acquire);
            if current.is_null() {
                let mine = Box::into_raw(Box::new(Entry(UnsafeCell::new((vtable, fns)))));
                match cell.compare_exchange(
                    ptr::null_mut(),
                    mine,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(k),
                    Err(taken) => {
                        // SAFETY: `mine` was not published; we still own it.
                        drop(unsafe { Box::from_raw(mine) });
                        current = taken;
                    }
                }
            }
            // Both parts: a vtable address of an unloaded library may be
            // reused by another library with other functions.
            // SAFETY: published entries are never freed (see the protocol).
            if unsafe { &*current }.parts() == (vtable, fns) {
                return Some(k);
            }
        }
        None
    }
}

#[cfg(not(horizon_loom))]
static REGISTRY: Registry = Registry::new();

#[cfg(horizon_loom)]
loom::lazy_static! {
    static ref REGISTRY: Registry = Registry::new();
}

fn entry(k: usize) -> (*const c_void, *const WakerFns) {
    REGISTRY.entry(k)
}

fn slot_for(vtable: *const c_void, fns: *const WakerFns) -> Option<usize> {
    REGISTRY.slot_for(vtable, fns)
}

/// The slot vtables: slot `K` calls the functions of the registry's entry `K`.
struct Slot<const K: usize>;

impl<const K: usize> Slot<K> {
    const VTABLE: RawWakerVTable =
        RawWakerVTable::new(Self::clone, Self::wake, Self::wake_by_ref, Self::drop);

    fn foreign(data: *const ()) -> BoundaryWaker {
        let (vtable, fns) = entry(K);
        BoundaryWaker { data, vtable, fns }
    }

    unsafe fn clone(data: *const ()) -> RawWaker {
        let w = Self::foreign(data);
        // SAFETY: `data` and slot `K` make up a live foreign waker, and its
        // owner's code is mapped: the owner is the host (which outlives its
        // plugins), or a plugin whose waker the host calls only while that
        // plugin is counted as running (`Counted` in the host runtime). The
        // owner's `clone` never unwinds.
        let clone = unsafe { ((*w.fns).clone)(w) };
        if clone.vtable == w.vtable && clone.fns == w.fns {
            RawWaker::new(clone.data, &SLOT_VTABLES[K])
        } else {
            owned(clone)
        }
    }

    unsafe fn wake(data: *const ()) {
        let w = Self::foreign(data);
        // SAFETY: as in `clone`; this owned waker is consumed.
        unsafe { ((*w.fns).wake)(w) }
    }

    unsafe fn wake_by_ref(data: *const ()) {
        let w = Self::foreign(data);
        // SAFETY: as in `clone`.
        unsafe { ((*w.fns).wake_by_ref)(w) }
    }

    unsafe fn drop(data: *const ()) {
        let w = Self::foreign(data);
        // SAFETY: as in `clone`; this owned waker is released.
        unsafe { ((*w.fns).drop)(w) }
    }
}

/// One array, so "is this a slot waker, and which" is one range check.
static SLOT_VTABLES: [RawWakerVTable; SLOTS] = [
    Slot::<0>::VTABLE,
    Slot::<1>::VTABLE,
    Slot::<2>::VTABLE,
    Slot::<3>::VTABLE,
    Slot::<4>::VTABLE,
    Slot::<5>::VTABLE,
    Slot::<6>::VTABLE,
    Slot::<7>::VTABLE,
];

fn slot_of(vtable: &RawWakerVTable) -> Option<usize> {
    let start = SLOT_VTABLES.as_ptr() as usize;
    let offset = (ptr::from_ref(vtable) as usize).wrapping_sub(start);
    let k = offset / size_of::<RawWakerVTable>();
    (k < SLOTS && offset.is_multiple_of(size_of::<RawWakerVTable>())).then_some(k)
}

/// Fallback when every slot is taken: data is a `Box<BoundaryWaker>`.
static BOXED: RawWakerVTable =
    RawWakerVTable::new(clone_boxed, wake_boxed, wake_by_ref_boxed, drop_boxed);

/// Lent for one poll when every slot is taken: data points to the caller's
/// `BoundaryWaker`, borrowed: only cloned or woken by reference (an owned
/// `Waker` is never made from it).
static BORROWED: RawWakerVTable =
    RawWakerVTable::new(clone_boxed, |_| {}, wake_by_ref_boxed, |_| {});

/// An owned `Waker`'s raw parts for an owned waker from across the boundary.
fn owned(w: BoundaryWaker) -> RawWaker {
    if is_own(&w) {
        // SAFETY: ours: `vtable` is one of this side's vtables (see `OWN`).
        return RawWaker::new(w.data, unsafe { &*w.vtable.cast::<RawWakerVTable>() });
    }
    match slot_for(w.vtable, w.fns) {
        Some(k) => RawWaker::new(w.data, &SLOT_VTABLES[k]),
        None => RawWaker::new(Box::into_raw(Box::new(w)).cast(), &BOXED),
    }
}

/// # Safety
/// `data` points to a live foreign `BoundaryWaker` (boxed, or borrowed for a poll).
unsafe fn clone_boxed(data: *const ()) -> RawWaker {
    // SAFETY: the caller's guarantee; the owner's `clone` never unwinds.
    let w = unsafe { *data.cast::<BoundaryWaker>() };
    // SAFETY: as above.
    owned(unsafe { ((*w.fns).clone)(w) })
}

/// # Safety
/// As [`clone_boxed`].
unsafe fn wake_by_ref_boxed(data: *const ()) {
    // SAFETY: as in `clone_boxed`.
    unsafe {
        let w = *data.cast::<BoundaryWaker>();
        ((*w.fns).wake_by_ref)(w)
    }
}

/// # Safety
/// `data` is a `Box<BoundaryWaker>` made in `owned`, consumed here.
unsafe fn wake_boxed(data: *const ()) {
    // SAFETY: the caller's guarantee; an owned waker, consumed by `wake`.
    unsafe {
        let w = *Box::from_raw(data.cast_mut().cast::<BoundaryWaker>());
        ((*w.fns).wake)(w)
    }
}

/// # Safety
/// As [`wake_boxed`].
unsafe fn drop_boxed(data: *const ()) {
    // SAFETY: the caller's guarantee; an owned waker, released by `drop`.
    unsafe {
        let w = *Box::from_raw(data.cast_mut().cast::<BoundaryWaker>());
        ((*w.fns).drop)(w)
    }
}

/// Lends `waker` across the boundary for the duration of one call: a waker
/// that came from the other side (a slot or boxed waker) is unwrapped to
/// its owner's parts; any other is this side's own.
pub fn lend(waker: &Waker) -> BoundaryWaker {
    let vtable = waker.vtable();
    if let Some(k) = slot_of(vtable) {
        let (vtable, fns) = entry(k);
        return BoundaryWaker {
            data: waker.data(),
            vtable,
            fns,
        };
    }
    if ptr::eq(vtable, &BOXED) || ptr::eq(vtable, &BORROWED) {
        // SAFETY: the data of those vtables is a live `BoundaryWaker`.
        return unsafe { *waker.data().cast::<BoundaryWaker>() };
    }
    BoundaryWaker {
        data: waker.data(),
        vtable: ptr::from_ref(vtable).cast(),
        fns: &OWN,
    }
}

/// Runs `f` with a context whose waker is `w`, borrowed: this side's own
/// waker rebuilt as it was, or a foreign one seen through a slot.
///
/// # Safety
/// `w` must be a live waker (lent by [`lend`] on either side) for the
/// duration of the call.
pub unsafe fn with_context<R>(w: &BoundaryWaker, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
    let raw = if is_own(w) {
        // SAFETY: ours: `vtable` is one of this side's vtables.
        RawWaker::new(w.data, unsafe { &*w.vtable.cast::<RawWakerVTable>() })
    } else {
        match slot_for(w.vtable, w.fns) {
            Some(k) => RawWaker::new(w.data, &SLOT_VTABLES[k]),
            None => RawWaker::new(ptr::from_ref(w).cast(), &BORROWED),
        }
    };
    // SAFETY: the vtables above uphold `RawWaker`'s contract for a waker
    // alive during the call (the caller's guarantee). `ManuallyDrop`: the
    // waker is borrowed, so it is never dropped here.
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
    f(&mut Context::from_waker(&waker))
}

/// Whether `waker` came from the other side of the boundary (its functions
/// are the owner's, which never unwind).
pub fn is_foreign(waker: &Waker) -> bool {
    let vtable = waker.vtable();
    slot_of(vtable).is_some() || ptr::eq(vtable, &BOXED) || ptr::eq(vtable, &BORROWED)
}

#[cfg(all(test, horizon_loom))]
mod loom_model {
    use super::*;

    /// Two threads take slots for two vtables while a third asks for the
    /// first vtable again: each gets a slot standing for its own vtable,
    /// the same vtable never gets two slots, and an entry is read only
    /// after its publication (loom checks the `UnsafeCell` accesses).
    #[test]
    fn slots_are_taken_once_and_read_after_publication() {
        loom::model(|| {
            let reg = loom::sync::Arc::new(Registry::new());
            let (v1, v2) = (1usize as *const c_void, 2usize as *const c_void);
            let f = 8usize as *const WakerFns;
            let spawn = |v: *const c_void| {
                let reg = loom::sync::Arc::clone(&reg);
                let v = v as usize;
                loom::thread::spawn(move || {
                    let k = reg.slot_for(v as *const c_void, f).unwrap();
                    (k, reg.entry(k).0 as usize)
                })
            };
            let (a, b) = (spawn(v1), spawn(v2));
            let k = reg.slot_for(v1, f).unwrap();
            let (ka, va) = a.join().unwrap();
            let (kb, vb) = b.join().unwrap();
            assert_eq!((va, vb), (1, 2));
            assert_eq!(k, ka, "one vtable, one slot");
            assert_ne!(ka, kb);
            assert_eq!(reg.entry(k).0, v1);
        });
    }
}
