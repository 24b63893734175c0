//! The plugin's thread-exit destructors, handed to the host
//! (`HostApi::thread_exit`) instead of to the C library.
//!
//! Two kinds of destructor that plugin code leaves on a thread outlive the
//! plugin on a host thread, which lives as long as the host:
//!
//! - glibc's `__cxa_thread_atexit_impl`, where std registers the
//!   destructor of each thread-local the first time a thread uses it,
//!   counts every registration against the library, and `dlclose` leaves a
//!   library mapped while any is pending (until the thread exits). Tokio
//!   code uses such thread-locals (its context, entered around every poll;
//!   the coop budget of every channel operation), so every unloaded copy of
//!   a plugin stayed mapped with its data: 0.9 MB a reload (issue 10).
//! - A `pthread_key_create` destructor is not counted at all: glibc calls
//!   it at the thread's exit whether or not its library is still mapped.
//!   std keeps one (its thread-exit guard, set on a thread the first time
//!   plugin code asks for `std::thread::current()`), so a host thread that
//!   exited after such a plugin was unloaded jumped into unmapped memory.
//!
//! `#[horizon_plugin]` expands [`hook`](crate::__horizon_thread_exit_hook)
//! in the plugin crate: hidden definitions of `__cxa_thread_atexit_impl`,
//! `pthread_key_create`, `pthread_key_delete` and `pthread_setspecific`
//! that bind the references inside the plugin's own library and no other,
//! jumping to [`register`], [`key_create`], [`key_delete`] and
//! [`set_specific`]:
//!
//! - While a host that takes thread-exit destructors is attached (from
//!   `init` to `release`, or to `shutdown` in a 4.4 host), thread-local
//!   destructors go to the host, which runs them when the thread exits
//!   if the plugin is still loaded, and forgets them once it is unloaded
//!   (their values are leaked, never dropped after unload). Anywhere else
//!   (no host, an older host, a thread that is exiting) they go to the C
//!   library, as without this module.
//! - Every key made with a destructor (up to 64; past them the C library
//!   gets it) is made without one in the C library; the destructor is kept
//!   here, and the first value set for the key on a thread arms a runner,
//!   registered like a thread-local destructor, which calls the
//!   destructors of the thread's values. So no key destructor of the
//!   library is left with the C library, which would call it after the
//!   library is unmapped. With the host, the runner runs after every
//!   thread-local destructor of the plugin (glibc's order for keys);
//!   without one, in glibc's order of thread-local destructors (last
//!   registered first: a thread std spawned arms it first thing, so it
//!   runs last there). The runner runs at most 4 rounds, and at most 4
//!   times per thread (shared by all the library's keys: a destructor
//!   that keeps setting values uses up the others' runs too); a value set
//!   after that is leaked. The library's finalizer (it runs only when the
//!   library is really unmapped) deletes those keys, so reloads do not
//!   use up the process's 1,024 keys.
//!
//! Not covered: C11 `tss_create` (glibc makes its key internally) and a
//! plugin's C code registering destructors another way (`atexit`).

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::{HostApi, ThreadDtor};
use crate::sync::lock;

/// glibc's signature of `__cxa_thread_atexit_impl`.
type CxaThreadAtexit = unsafe extern "C" fn(ThreadDtor, *mut u8, *mut c_void) -> c_int;
/// A pthread key's destructor.
type KeyDtor = unsafe extern "C" fn(*mut c_void);
type KeyCreate = unsafe extern "C" fn(*mut libc::pthread_key_t, Option<KeyDtor>) -> c_int;
type SetSpecific = unsafe extern "C" fn(libc::pthread_key_t, *const c_void) -> c_int;
type KeyDelete = unsafe extern "C" fn(libc::pthread_key_t) -> c_int;
/// `HostApi::thread_exit`.
type HostThreadExit = unsafe extern "C" fn(*const c_void, ThreadDtor, *mut u8, bool) -> bool;

/// The attached host's `thread_exit` and its `data`.
#[derive(Clone, Copy)]
struct Service(HostThreadExit, *const c_void);

// SAFETY: `data` is only passed back to the host's function, which may be
// called from any thread (the `HostApi` contract).
unsafe impl Send for Service {}

/// The host that takes this plugin's thread-exit destructors, from
/// [`attach`] to [`detach`]. A lock, not a thread-local: it must be read
/// inside a thread-local's registration.
static SERVICE: Mutex<Option<Service>> = Mutex::new(None);

/// How many keys with a destructor `KEYS` holds at most; a plugin that
/// makes more gets the C library's behaviour for the others.
const MAX_KEYS: usize = 64;

/// Keys of this library made with a destructor, which the C library holds
/// without it: the destructors run from `run_keys`. A fixed array: it is
/// locked inside `pthread_setspecific`, which an allocator may call on a
/// thread's first allocation, so nothing allocates under this lock.
static KEYS: Mutex<[Option<(libc::pthread_key_t, KeyDtor)>; MAX_KEYS]> =
    Mutex::new([None; MAX_KEYS]);

thread_local! {
    /// Whether `run_keys` is armed on this thread. No destructor.
    static KEYS_ARMED: Cell<bool> = const { Cell::new(false) };
    /// How many times `run_keys` has run on this thread (at its exit). No
    /// destructor.
    static KEY_RUNS: Cell<u8> = const { Cell::new(0) };
    /// Set while this thread is inside the host's `thread_exit`. No
    /// destructor.
    static IN_HOST: Cell<bool> = const { Cell::new(false) };
}

/// From `init`, before anything of the plugin runs: thread-exit
/// destructors go to `api`'s host if it takes them. False (nothing
/// changed) if another load of this mapping is attached.
pub(crate) fn attach(api: &HostApi) -> bool {
    let Some(thread_exit) = api.thread_exit else {
        return false;
    };
    let mut service = lock(&SERVICE);
    if service.is_some() {
        return false;
    }
    *service = Some(Service(thread_exit, api.data));
    true
}

/// From `init` of the load that installed: takes the service over from a
/// load that attached first and failed to install (its `detach`, which
/// checks `data`, then does nothing).
pub(crate) fn attach_installed(api: &HostApi) {
    *lock(&SERVICE) = api.thread_exit.map(|f| Service(f, api.data));
}

/// From `release` (or, with a host that calls none, `shutdown`; or a
/// failed `init`) of the load whose table's `data` this is, once no code
/// of the plugin runs on a thread of its own: later destructors go to the
/// C library.
pub(crate) fn detach(data: *const c_void) {
    let mut service = lock(&SERVICE);
    if service.is_some_and(|s| std::ptr::eq(s.1, data)) {
        *service = None;
    }
}

/// What `__cxa_thread_atexit_impl` in a plugin library runs: registers
/// `dtor(obj)` for this thread's exit, with the host if it takes it, else
/// with the C library (`dso` names the library the registration counts
/// against).
///
/// Runs inside std's first access to a thread-local: it touches no
/// thread-local with a destructor (that would register again, inside this
/// registration) and does not unwind.
///
/// # Safety
/// The contract of `__cxa_thread_atexit_impl`: `dtor(obj)` may be called
/// once, on this thread, when it exits; `dso` is an address inside the
/// registering library.
pub unsafe extern "C" fn register(dtor: ThreadDtor, obj: *mut u8, dso: *mut c_void) -> c_int {
    // SAFETY: forwarded.
    unsafe { register_as(dtor, obj, dso, false) }
}

/// [`register`], `last`: run after every thread-local destructor of the
/// plugin.
///
/// # Safety
/// As [`register`].
unsafe fn register_as(dtor: ThreadDtor, obj: *mut u8, dso: *mut c_void, last: bool) -> c_int {
    // Not inside the host's function on this thread: a host that links a
    // plugin crate statically has its own registrations come here too.
    if !IN_HOST.get() {
        // Held across the call: `detach` (and so the host's teardown) waits
        // for it, so `data` is the live `Services` of an attached host. The
        // host's function never calls back into the plugin, nor waits on a
        // lock a plugin's destructor may hold.
        let service = lock(&SERVICE);
        if let Some(Service(thread_exit, data)) = *service {
            IN_HOST.set(true);
            // SAFETY: an attached host's function and data (see above); it
            // never unwinds; `dtor(obj)` is a destructor for this thread,
            // as it asks.
            let taken = unsafe { thread_exit(data, dtor, obj, last) };
            IN_HOST.set(false);
            if taken {
                return 0;
            }
        }
    }
    match libc_fn::<CxaThreadAtexit>(&CXA, c"__cxa_thread_atexit_impl") {
        // SAFETY: forwarded: the caller's contract is glibc's.
        Some(glibc) => unsafe { glibc(dtor, obj, dso) },
        // A C library without it (glibc before 2.18): the destructor never
        // runs, and the value is leaked.
        None => -1,
    }
}

/// What `pthread_key_create` in a plugin library runs: a key with a
/// destructor is made without one in the C library, and the destructor is
/// kept in `KEYS` for `run_keys` (when `KEYS` is full, the C library
/// gets it).
///
/// # Safety
/// `pthread_key_create`'s contract.
pub unsafe extern "C" fn key_create(key: *mut libc::pthread_key_t, dtor: Option<KeyDtor>) -> c_int {
    let Some(create) = libc_fn::<KeyCreate>(&KEY_CREATE, c"pthread_key_create") else {
        return libc::EAGAIN;
    };
    let Some(dtor) = dtor else {
        // SAFETY: forwarded.
        return unsafe { create(key, None) };
    };
    let mut keys = lock(&KEYS);
    let Some(free) = keys.iter().position(Option::is_none) else {
        drop(keys);
        // SAFETY: forwarded.
        return unsafe { create(key, Some(dtor)) };
    };
    // SAFETY: forwarded: `key` is writable (the caller's contract).
    let made = unsafe { create(key, None) };
    if made == 0 {
        // SAFETY: written by the successful call above.
        let key = unsafe { *key };
        // A number the C library hands out is free: no entry names it
        // (`key_delete` removes them), but make sure.
        for entry in keys.iter_mut() {
            if entry.is_some_and(|(k, _)| k == key) {
                *entry = None;
            }
        }
        keys[free] = Some((key, dtor));
    }
    made
}

/// What `pthread_key_delete` in a plugin library runs: forgets the key's
/// destructor before the C library may hand its number out again.
///
/// # Safety
/// `pthread_key_delete`'s contract.
pub unsafe extern "C" fn key_delete(key: libc::pthread_key_t) -> c_int {
    for entry in lock(&KEYS).iter_mut() {
        if entry.is_some_and(|(k, _)| k == key) {
            *entry = None;
        }
    }
    match libc_fn::<KeyDelete>(&KEY_DELETE, c"pthread_key_delete") {
        // SAFETY: forwarded.
        Some(delete) => unsafe { delete(key) },
        None => libc::EINVAL,
    }
}

/// What `pthread_setspecific` in a plugin library runs: sets the value,
/// and the first value for a key of `KEYS` on this thread arms
/// `run_keys` for the thread's exit: with the host if one is attached,
/// else with the C library (which then keeps the library mapped until the
/// thread exits, rather than call into it after it is unmapped).
///
/// # Safety
/// `pthread_setspecific`'s contract.
pub unsafe extern "C" fn set_specific(key: libc::pthread_key_t, value: *const c_void) -> c_int {
    let Some(set) = libc_fn::<SetSpecific>(&SET_SPECIFIC, c"pthread_setspecific") else {
        return libc::EINVAL;
    };
    // SAFETY: forwarded.
    let done = unsafe { set(key, value) };
    if done == 0
        && !value.is_null()
        && !KEYS_ARMED.get()
        && KEY_RUNS.get() < MAX_KEY_RUNS
        && lock(&KEYS).iter().flatten().any(|(k, _)| *k == key)
    {
        KEYS_ARMED.set(true);
        // SAFETY: `run_keys` may run once at this thread's exit; its own
        // address is inside this library.
        unsafe {
            register_as(
                run_keys,
                std::ptr::null_mut(),
                run_keys as *mut c_void,
                true,
            )
        };
    }
    done
}

/// How many times `run_keys` may run on one thread. It runs once at a
/// thread's exit, and again only if a thread-exit destructor registered
/// during its rounds sets a key's value after them (C code calling
/// `__cxa_thread_atexit_impl` from a key destructor can do it on every
/// run): without a cap that would repeat forever, the thread would never
/// exit and an unload waiting for its destructors would hang. glibc runs
/// its own rounds once; a value set after the last run is leaked, as a
/// value set after glibc's last round is.
const MAX_KEY_RUNS: u8 = 4;

/// Calls the destructor of each value this thread holds for a key of
/// `KEYS`, as glibc would have: the value is cleared first, and rounds
/// repeat while destructors set values again (at most 4, glibc's
/// `PTHREAD_DESTRUCTOR_ITERATIONS`).
unsafe extern "C" fn run_keys(_: *mut u8) {
    KEY_RUNS.set(KEY_RUNS.get().saturating_add(1));
    /// Disarms when the rounds are over, not before: a destructor setting
    /// a value again during them must not arm (and so register) another
    /// runner, round after round without end (glibc stops after 4).
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            KEYS_ARMED.set(false);
        }
    }
    let _disarm = Disarm;
    let Some(set) = libc_fn::<SetSpecific>(&SET_SPECIFIC, c"pthread_setspecific") else {
        return;
    };
    for _ in 0..4 {
        // A copy: destructors run with the lock released.
        let keys = *lock(&KEYS);
        let mut ran = false;
        for (key, dtor) in keys.into_iter().flatten() {
            // SAFETY: `key` was live when copied. A key deleted since by
            // plugin code on another thread reads as null here, unless its
            // number was handed out again in between and this thread set a
            // value for the new key: a race glibc's own key destructors
            // have too (its exit path reads the destructor unlocked).
            let value = unsafe { libc::pthread_getspecific(key) };
            if !value.is_null() {
                // SAFETY: as above; then the destructor gets the value the
                // thread held, once, on this thread, as glibc calls it.
                unsafe {
                    set(key, std::ptr::null());
                    dtor(value);
                }
                ran = true;
            }
        }
        if !ran {
            break;
        }
    }
}

/// The library's finalizer (`.fini_array`, run by `dlclose` only when the
/// library is unmapped, and at process exit): deletes the keys of
/// `KEYS`, whose destructors are this library's code. Their values on
/// threads still alive are leaked.
pub extern "C" fn unmapped() {
    let Some(delete) = libc_fn::<KeyDelete>(&KEY_DELETE, c"pthread_key_delete") else {
        return;
    };
    for entry in lock(&KEYS).iter_mut() {
        if let Some((key, _)) = entry.take() {
            // SAFETY: a key this library created and has not deleted
            // (`key_delete` removes deleted ones), so still its own; no
            // code of the library runs any more.
            unsafe { delete(key) };
        }
    }
}

static CXA: AtomicUsize = AtomicUsize::new(0);
static KEY_CREATE: AtomicUsize = AtomicUsize::new(0);
static SET_SPECIFIC: AtomicUsize = AtomicUsize::new(0);
static KEY_DELETE: AtomicUsize = AtomicUsize::new(0);

/// The C library's own function `name` (of type `F`), looked up once into
/// `slot` (0: not looked up yet; 1: there is none).
fn libc_fn<F: Copy>(slot: &AtomicUsize, name: &std::ffi::CStr) -> Option<F> {
    const { assert!(size_of::<F>() == size_of::<usize>()) };
    let mut found = slot.load(Ordering::Acquire);
    if found == 0 {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name.
        // The plugin's own definitions are hidden (not in its dynamic
        // symbol table), so the lookup finds the C library's.
        let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        found = if address.is_null() { 1 } else { address.addr() };
        slot.store(found, Ordering::Release);
    }
    // SAFETY: a non-null result of the lookup is the address of the C
    // library's function `name`, whose signature `F` is (each caller names
    // the type of the function it looks up).
    (found != 1).then(|| unsafe { std::mem::transmute_copy::<usize, F>(&found) })
}

/// Defines, in the crate it is expanded in (a plugin crate:
/// `#[horizon_plugin]` expands it), `__cxa_thread_atexit_impl`,
/// `pthread_key_create`, `pthread_key_delete` and `pthread_setspecific`
/// (every reference to them in that library: std's, tokio's, a C
/// library's; none calls the C library's own directly) as jumps to this
/// module's functions, and the finalizer [`unmapped`]. Weak, so that
/// several plugin crates linked into one binary do not clash, and hidden,
/// so that they bind only the references inside the library being linked
/// and never another library's (see the module's docs). Linux with glibc
/// only, on x86-64 and AArch64; elsewhere it expands to nothing.
#[doc(hidden)]
#[macro_export]
macro_rules! __horizon_thread_exit_hook {
    () => {
        #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
        $crate::__horizon_thread_exit_jumps!("jmp");
        #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "aarch64"))]
        $crate::__horizon_thread_exit_jumps!("b");
        #[cfg(all(
            target_os = "linux",
            target_env = "gnu",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        const _: () = {
            #[used]
            #[unsafe(link_section = ".fini_array")]
            static __HORIZON_UNMAPPED: extern "C" fn() = $crate::__private::thread_exit::unmapped;
        };
    };
}

/// The definitions of [`hook`](crate::__horizon_thread_exit_hook): one
/// per function, a `jump` (the target's unconditional branch mnemonic) to
/// this module's. `%` type prefixes: the one form every ELF target's
/// assembler accepts (`@` starts a comment on AArch64).
#[doc(hidden)]
#[macro_export]
macro_rules! __horizon_thread_exit_jumps {
    ($jump:literal) => {
        ::core::arch::global_asm!(
            ".pushsection .text.__horizon_thread_exit_hook,\"ax\",%progbits",
            ".weak __cxa_thread_atexit_impl",
            ".hidden __cxa_thread_atexit_impl",
            ".type __cxa_thread_atexit_impl,%function",
            "__cxa_thread_atexit_impl:",
            concat!($jump, " {register}"),
            ".weak pthread_key_create",
            ".hidden pthread_key_create",
            ".type pthread_key_create,%function",
            "pthread_key_create:",
            concat!($jump, " {key_create}"),
            ".weak pthread_setspecific",
            ".hidden pthread_setspecific",
            ".type pthread_setspecific,%function",
            "pthread_setspecific:",
            concat!($jump, " {set_specific}"),
            ".weak pthread_key_delete",
            ".hidden pthread_key_delete",
            ".type pthread_key_delete,%function",
            "pthread_key_delete:",
            concat!($jump, " {key_delete}"),
            ".popsection",
            register = sym $crate::__private::thread_exit::register,
            key_create = sym $crate::__private::thread_exit::key_create,
            set_specific = sym $crate::__private::thread_exit::set_specific,
            key_delete = sym $crate::__private::thread_exit::key_delete,
        );
    };
}
