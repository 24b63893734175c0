//! Records the rustc that builds this crate, so a plugin's declaration can
//! say which compiler built it (the plugin and its copy of the SDK are built
//! by the same rustc).

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown rustc".to_owned());
    println!("cargo:rustc-env=HORIZON_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
