// Building a `RawFuture` from raw parts is `unsafe`, as `Waker::from_raw` is:
// the caller vouches for the functions and the data.
use std::ffi::c_void;

use horizon_plugin_sdk::abi::{BoundaryWaker, RawFuture};

unsafe extern "C" fn poll(_: *const c_void, _: *const BoundaryWaker, _: *mut ()) -> bool {
    true
}

unsafe extern "C" fn drop(_: *const c_void) {}

fn main() {
    let _ = RawFuture::<()>::from_raw_parts(std::ptr::null(), poll, drop, std::ptr::null());
}
