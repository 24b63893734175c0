// A `RawFuture` holds function pointers its safe methods call: safe code
// can neither build one from parts nor read or change them.
use horizon_plugin_sdk::abi::RawFuture;

fn main() {
    let fut = RawFuture::<()>::new(async {});
    let _ = fut.poll;
}
