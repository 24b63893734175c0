//! The demo: builds the example plugins (`logger`, `timers`) with cargo,
//! loads them into a multi-thread runtime, runs a server tick loop for a few
//! seconds, prints what the plugins emit, unloads them and exits 0.
//!
//! Run it with `cargo run -p demo-host` (add `-- <seconds>` to change the length).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use horizon_plugin_host::{Event, PluginHost, TypedEvent};

/// The tick the plugins get, typed: its name is written once, here (JSON,
/// the default codec, as Horizon's `server_tick` is).
#[derive(serde::Serialize, serde::Deserialize, TypedEvent)]
#[event(name = "server_tick")]
struct ServerTick {
    tick: u64,
}

const PLUGINS: &[&str] = &["logger", "timers"];

/// Builds the example plugins into this binary's target directory.
fn build_plugins() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("binary has no directory")?.to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.arg("build");
    for p in PLUGINS {
        cmd.args(["-p", p]);
    }
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    eprintln!("   Building example plugins: {}", PLUGINS.join(", "));
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !status.success() {
        return Err("building the example plugins failed".to_owned());
    }
    Ok(dir)
}

fn library(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn main() -> ExitCode {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = match build_plugins() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the host runtime");
    rt.block_on(run(dir, seconds))
}

async fn run(dir: PathBuf, seconds: u64) -> ExitCode {
    let host = PluginHost::new(tokio::runtime::Handle::current());
    let logged = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&logged);
    host.on("logger:activity_logged", move |event: Event| {
        counter.fetch_add(1, Ordering::Relaxed);
        println!("[logger] {}", String::from_utf8_lossy(event.payload()));
    });
    for name in [
        "timers:heartbeat",
        "timers:digest",
        "timers:idle",
        "logger:stopped",
    ] {
        host.on(name, move |event: Event| {
            println!("[{name}] {}", String::from_utf8_lossy(event.payload()));
        });
    }

    for name in PLUGINS {
        match host.load(library(&dir, name)).await {
            Ok(id) => println!("loaded plugin `{name}` as {id}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for p in host.plugins() {
        println!(
            "  {} {} (sdk {}, {})",
            p.id, p.name, p.sdk_version, p.rustc_version
        );
    }

    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let ticks = seconds * 2;
    for tick in 1..=ticks {
        ticker.tick().await;
        match host.emit_event(&ServerTick { tick }).await {
            Ok(report) => {
                for failure in &report.failures {
                    eprintln!("warning: {failure}");
                }
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    host.shutdown().await;
    let logged = logged.load(Ordering::Relaxed);
    println!("{ticks} ticks sent, {logged} activities logged by the logger plugin");
    if logged == ticks {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: expected one logger activity per tick");
        ExitCode::FAILURE
    }
}
