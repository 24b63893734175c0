//! Plugins and hosts of different SDK releases of one boundary major load
//! each other. The earlier release is a revision of this repository
//! (`fixtures/previous-sdk/REVISION`, boundary 4.0, without the `budget`
//! service this revision appended), checked out from git history as a
//! worktree and built there, once per test binary:
//!
//! - its `basic` fixture loads in a host of this revision and passes every
//!   scenario;
//! - this revision's `basic` fixture is checked, loaded and run by that
//!   revision's `horizon` command, falling back where the older host lacks
//!   the `budget` service.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Basic, all_scenarios, current_thread, fixture, fresh_copy_of, multi_thread};
use horizon_plugin_host::PluginHost;

/// The checkout root (this crate's parent).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// What the previous revision built: its `basic` fixture and its `horizon`.
struct Previous {
    revision: String,
    basic: PathBuf,
    horizon: PathBuf,
}

fn git(args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(args)
        .output()
        .expect("run git")
}

/// Checks the previous revision out as a worktree under the target
/// directory and builds it there (its own target directory, its own
/// lockfile), once per test binary.
fn previous() -> &'static Previous {
    static BUILT: OnceLock<Previous> = OnceLock::new();
    BUILT.get_or_init(|| {
        let revision = std::fs::read_to_string(repo_root().join("fixtures/previous-sdk/REVISION"))
            .expect("fixtures/previous-sdk/REVISION")
            .trim()
            .to_owned();
        let target = repo_root().join("target/previous-sdk");
        let tree = target.join(&revision);
        if !tree.join("Cargo.toml").exists() {
            // A worktree registered before but since removed.
            let _ = git(&["worktree", "prune"]);
            let added = git(&[
                "worktree",
                "add",
                "--detach",
                tree.to_str().unwrap(),
                &revision,
            ]);
            assert!(
                added.status.success(),
                "git worktree add {revision}: {}",
                String::from_utf8_lossy(&added.stderr)
            );
        }
        let status = Command::new(env!("CARGO"))
            .current_dir(&tree)
            .env("CARGO_TARGET_DIR", target.join("target"))
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "fixture-basic",
                "-p",
                "horizon-plugin-host",
                "--features",
                "horizon-plugin-host/cli",
                "--bin",
                "horizon",
                "--lib",
            ])
            .status()
            .expect("run cargo in the previous revision");
        assert!(status.success(), "building revision {revision} failed");
        let debug = target.join("target/debug");
        Previous {
            revision,
            basic: debug.join(format!("libfixture_basic{}", std::env::consts::DLL_SUFFIX)),
            horizon: debug.join("horizon"),
        }
    })
}

#[test]
fn a_plugin_of_the_previous_sdk_passes_every_scenario_here() {
    let previous = previous();
    let (declaration, verdict) = horizon_plugin_host::inspect(&previous.basic);
    verdict.unwrap_or_else(|e| panic!("revision {}: {e}", previous.revision));
    // It was built to read a shorter host table, and does not know `budget`.
    let sizes = declaration.table_sizes.expect("read");
    assert!(
        sizes.host_api < horizon_plugin_host::TABLE_SIZES.host_api,
        "{sizes:?}: the previous revision must have fewer host services"
    );
    assert!(declaration.services.iter().all(|s| s.name != "budget"));
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let copy = fresh_copy_of(&previous.basic, "previous-basic");
            let basic = Basic::load_path(host.clone(), copy).await;
            all_scenarios(&basic).await;
            host.shutdown().await;
        });
    }
}

#[test]
fn a_plugin_of_this_sdk_runs_in_the_previous_host() {
    let previous = previous();
    let library = fresh_copy_of(&fixture("basic"), "current-basic");
    let check = Command::new(&previous.horizon)
        .arg("check")
        .arg(&library)
        .output()
        .expect("run the previous horizon");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "revision {} refused this plugin:\n{stdout}{}",
        previous.revision,
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains(&format!("sdk: {}", horizon_plugin_sdk::abi::SDK_VERSION))
            && stdout
                .lines()
                .any(|l| l.contains("service: budget") && l.contains("missing (optional")),
        "{stdout}"
    );
    // Loaded and run there: a spawn and a sleep through the older table,
    // and `consume_budget`, which goes on without the service (no yield).
    let run = Command::new(&previous.horizon)
        .args(["run", "--seconds", "3", "--tick-ms", "1000"])
        .arg("--emit")
        .arg(r#"basic:run={"id":1,"scenario":"spawn","arg":21}"#)
        .arg("--emit")
        .arg(r#"basic:run={"id":2,"scenario":"sleep","arg":5}"#)
        .arg("--emit")
        .arg(r#"basic:run={"id":3,"scenario":"budget","arg":1000}"#)
        .arg(&library)
        .output()
        .expect("run the previous horizon");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let result = |id: u64| {
        stdout
            .lines()
            .filter(|l| l.contains("basic:result"))
            .find_map(|l| {
                let json = l.split_once("basic:result ")?.1;
                let v: serde_json::Value = serde_json::from_str(json).ok()?;
                (v["id"] == id).then(|| v["value"].clone())
            })
    };
    assert_eq!(result(1), Some(serde_json::json!(42)), "{stdout}");
    assert!(
        result(2)
            .and_then(|v| v.as_u64())
            .is_some_and(|us| us >= 5_000),
        "{stdout}"
    );
    assert_eq!(result(3), Some(serde_json::json!(0)), "{stdout}");
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
