//! Shared by the integration tests: builds the fixture plugins once per test
//! binary (cargo is incremental, so the second binary's build is a no-op),
//! hands out private copies of them, and drives the `basic` fixture.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use horizon_host_runtime::{EmitReport, Event, PluginHost, PluginId};
use serde_json::{Value, json};

pub const FIXTURES: &[&str] = &[
    "fixture-basic",
    "fixture-no-sdk",
    "fixture-wrong-abi",
    "fixture-load-error",
    "fixture-load-panic",
    "fixture-bench",
    "fixture-bad-magic",
    "fixture-truncated",
];

/// `target/debug` (or wherever this test binary was built).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_owned()
}

/// Builds every fixture plugin with cargo, once per test binary.
pub fn fixtures_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build").arg("--quiet");
        for f in FIXTURES {
            cmd.args(["-p", f]);
        }
        if target_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo to build the fixture plugins");
        assert!(status.success(), "building the fixture plugins failed");
        target_dir()
    })
}

/// The path of a fixture library, e.g. `fixture("basic")`.
pub fn fixture(name: &str) -> PathBuf {
    let file = format!(
        "{}fixture_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    fixtures_dir().join(file)
}

/// A private copy of a fixture library: a library's statics are shared by
/// every load of the same file, so each test loads its own copy.
pub fn fresh_copy(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = fixtures_dir().join("fixture-copies");
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dest = dir.join(format!(
        "{name}-{}-{n}{}",
        std::process::id(),
        std::env::consts::DLL_SUFFIX
    ));
    std::fs::copy(fixture(name), &dest).unwrap();
    dest
}

/// The two runtime flavours every scenario runs on.
pub fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A host with the `basic` fixture loaded, collecting its replies.
#[derive(Clone)]
pub struct Basic {
    pub host: PluginHost,
    pub id: PluginId,
    replies: Arc<Mutex<HashMap<u64, Vec<Value>>>>,
    next: Arc<AtomicU64>,
}

impl Basic {
    pub async fn load(host: PluginHost) -> Basic {
        let replies: Arc<Mutex<HashMap<u64, Vec<Value>>>> = Arc::default();
        let sink = Arc::clone(&replies);
        host.on("basic:result", move |event: Event| {
            let reply: Value = event.json().unwrap();
            let id = reply["id"].as_u64().unwrap();
            sink.lock()
                .unwrap()
                .entry(id)
                .or_default()
                .push(reply["value"].clone());
        });
        let id = host
            .load(fresh_copy("basic"))
            .await
            .expect("load the basic fixture");
        Basic {
            host,
            id,
            replies,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Emits one scenario request and returns the emit report and every
    /// reply to it (one per loaded copy of the fixture that succeeded).
    pub async fn try_run(&self, scenario: &str, arg: u64) -> (EmitReport, Vec<Value>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let report = self
            .host
            .emit(
                "basic:run",
                &json!({ "id": id, "scenario": scenario, "arg": arg }),
            )
            .await
            .unwrap();
        let reply = self.replies.lock().unwrap().remove(&id).unwrap_or_default();
        (report, reply)
    }

    /// Runs a scenario that must succeed and returns its reply, which must
    /// arrive exactly once.
    pub async fn run(&self, scenario: &str, arg: u64) -> Value {
        let (report, mut replies) = self.try_run(scenario, arg).await;
        assert!(
            report.is_ok(),
            "scenario {scenario} failed: {:?}",
            report.failures
        );
        assert_eq!(
            replies.len(),
            1,
            "scenario {scenario}: expected exactly one reply, got {replies:?}"
        );
        replies.pop().unwrap()
    }
}
