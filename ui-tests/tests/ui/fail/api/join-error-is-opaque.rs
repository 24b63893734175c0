// `JoinError` is opaque, as tokio's is: its cases are read through
// `is_cancelled`, `is_panic` and `into_panic`, not matched or built.
use horizon_plugin_sdk::rt::JoinError;

fn cancelled() -> JoinError {
    JoinError(Default::default())
}

fn main() {
    let _ = cancelled();
}
