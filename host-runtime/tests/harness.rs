//! The test harness for plugin crates (`horizon_plugin_host::testing`)
//! itself: a plugin crate built and loaded under a multi-thread and a plain
//! current-thread `#[tokio::test]`, waiting for an event that never comes,
//! a crate that does not compile, a crate that builds no `cdylib`, and the
//! library copies removed (with their host, and those of processes gone).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use horizon_plugin_host::testing::{TestError, TestHost, build_plugin};
use serde_json::{Value, json};

/// The `basic` fixture's crate, built by the harness (a workspace member:
/// with the workspace's lockfile, into this test's target directory).
fn basic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/basic")
}

/// Runs one scenario of the `basic` fixture and returns its reply's value.
async fn run(host: &TestHost, id: u64, scenario: &str, arg: u64) -> Value {
    let report = host
        .emit(
            "basic:run",
            &json!({ "id": id, "scenario": scenario, "arg": arg }),
        )
        .await
        .unwrap();
    assert!(report.is_ok(), "{scenario}: {:?}", report.failures);
    let reply = host
        .next_event("basic:result", Duration::from_secs(10))
        .await
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(reply["id"], json!(id), "{scenario}: {reply}");
    reply["value"].clone()
}

/// A plugin crate outside the workspace, removed when dropped.
struct TempCrate(PathBuf);

impl TempCrate {
    fn new(name: &str, lib_section: &str, source: &str) -> TempCrate {
        let dir =
            std::env::temp_dir().join(format!("horizon-harness-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
                 [workspace]\n\n{lib_section}"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("src/lib.rs"), source).unwrap();
        TempCrate(dir)
    }
}

impl Drop for TempCrate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_an_event_that_never_comes_times_out() {
    let host = TestHost::new();
    host.load_crate(basic()).await.unwrap();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = host.next_event("basic:never", timeout).await.unwrap_err();
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    match &err {
        TestError::TimedOut {
            event,
            timeout: waited,
        } => {
            assert_eq!(event, "basic:never");
            assert_eq!(*waited, timeout);
        }
        other => panic!("expected TestError::TimedOut, got {other:?}"),
    }
    assert_eq!(err.to_string(), "no `basic:never` event within 200ms");
    // The host serves on after a wait timed out.
    assert_eq!(run(&host, 1, "spawn", 21).await, json!(42));
    host.shutdown().await;
}

/// A plain `#[tokio::test]`: a current-thread runtime runs the build (on
/// its blocking pool), the plugin's tasks and timers, and the unload.
#[tokio::test]
async fn works_under_a_current_thread_tokio_test() {
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
    let host = TestHost::new();
    host.load_crate(basic()).await.unwrap();
    assert_eq!(run(&host, 1, "spawn", 21).await, json!(42));
    let slept = run(&host, 2, "sleep", 5).await.as_u64().unwrap();
    assert!(slept >= 5_000, "slept {slept} us for a 5 ms sleep");
    assert_eq!(run(&host, 3, "nested", 1).await, json!(25));
    assert_eq!(run(&host, 4, "log", 7).await, json!("logged"));
    let logs = host.logs();
    assert!(
        logs.iter()
            .any(|l| l.plugin == "basic" && l.message.contains("info from the plugin")),
        "{logs:?}"
    );
    // Every level reaches the test's log, whatever the host's filter.
    assert!(
        logs.iter().any(
            |l| l.level == tracing::Level::DEBUG && l.message.contains("debug from the plugin")
        ),
        "{logs:?}"
    );
    host.shutdown().await;
    assert!(host.host().plugins().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crate_that_does_not_compile_is_a_build_error_naming_it() {
    let broken = TempCrate::new(
        "harness-broken",
        "[lib]\ncrate-type = [\"cdylib\"]\n",
        "pub fn broken() -> u32 {\n    1 +\n}\n",
    );
    let host = TestHost::new();
    let err = host.load_crate(&broken.0).await.unwrap_err();
    let TestError::Build(message) = &err else {
        panic!("expected TestError::Build, got {err:?}");
    };
    let dir = broken.0.display().to_string();
    assert!(
        message.starts_with(&format!("build of {dir} failed: ")),
        "{message}"
    );
    // The compiler's own headline.
    assert!(message.contains("expected expression"), "{message}");
    assert!(host.host().plugins().is_empty());
}

#[test]
fn a_crate_that_builds_no_cdylib_says_what_to_add() {
    let rlib = TempCrate::new("harness-rlib", "", "pub fn answer() -> u32 {\n    42\n}\n");
    let err = build_plugin(&rlib.0).unwrap_err();
    let TestError::Build(message) = &err else {
        panic!("expected TestError::Build, got {err:?}");
    };
    assert_eq!(
        *message,
        format!(
            "{} builds no `cdylib`: add `crate-type = [\"cdylib\"]` to its [lib]",
            rlib.0.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_copies_go_with_their_host_and_those_of_dead_processes_too() {
    // A directory left by a process that is gone (killed, or aborted in
    // strict unload mode, before removing it): its lock file is held by
    // no one.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = std::env::temp_dir().join(format!("horizon-test-{dead}-0"));
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join(".owner.lock"), "").unwrap();
    std::fs::write(stale.join("libleft_behind.so"), "a copy left behind").unwrap();
    // One whose owner lives (in another pid namespace, say): it holds the lock.
    let live = std::env::temp_dir().join(format!("horizon-test-{dead}-live"));
    std::fs::create_dir_all(&live).unwrap();
    let held = std::fs::File::create(live.join(".owner.lock")).unwrap();
    held.lock().unwrap();

    let host = TestHost::new();
    assert!(!stale.exists(), "{} is still there", stale.display());
    assert!(
        live.exists(),
        "{} of a live owner was removed",
        live.display()
    );
    drop(held);
    std::fs::remove_dir_all(&live).unwrap();
    host.load_crate(basic()).await.unwrap();
    let copy = host.host().plugins()[0].path.clone();
    let dir = copy.parent().unwrap().to_owned();
    assert!(copy.exists() && dir != stale);
    host.shutdown().await;
    drop(host);
    assert!(!dir.exists(), "{} is still there", dir.display());
}
