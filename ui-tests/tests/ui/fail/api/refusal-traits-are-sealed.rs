// The traits that make `Handle::block_on` a compile error are sealed: no
// crate can implement one and so turn the refused call into one that compiles.
use horizon_plugin_sdk::rt::runtime::BlockOnIsRefused;

struct Mine;

impl BlockOnIsRefused for Mine {}

fn main() {}
