//! The `horizon` command, end to end: `check`, `run` on a plugin crate,
//! `run`'s events from the command line and standard input, `run --watch`
//! rebuilding and reloading an edited plugin while a broken edit leaves the
//! previous build serving, and exit codes as cargo's (1 for a usage error,
//! 101 for a command that fails), and `check`/`run --trust-key` applying
//! the trust policy to signed, unsigned and tampered libraries.
//!
//! Past 400 lines for one job: the `horizon` command end to end, each
//! subcommand as a user runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, fixtures_dir};

const HORIZON: &str = env!("CARGO_BIN_EXE_horizon");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn horizon(args: &[&str]) -> Output {
    Command::new(HORIZON)
        .args(args)
        .output()
        .expect("run horizon")
}

#[test]
fn check_prints_the_declaration_and_the_verdict() {
    let ok = horizon(&["check", fixture("basic").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains("plugin: basic") && stdout.contains("loadable: yes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rustc 1.")
            && stdout.contains(&format!(
                "boundary: {v} (this host: {v})",
                v = horizon_plugin_sdk::abi::ABI_VERSION
            )),
        "{stdout}"
    );

    // The table sizes and the services it needs, each provided here.
    let sizes = horizon_plugin_host::TABLE_SIZES;
    assert!(
        stdout.contains(&format!(
            "tables: declaration {d} bytes, host table {h} bytes (this host: {d}, {h})",
            d = sizes.declaration,
            h = sizes.host_api
        )),
        "{stdout}"
    );
    for service in ["spawn", "sleep", "emit", "subscribe", "log"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("service: {service} ")) && l.ends_with("provided")),
            "{service} not listed as provided:\n{stdout}"
        );
    }

    // A plugin of a newer SDK of this boundary that needs a service this
    // host lacks: refused, naming the service and both SDK versions.
    let newer = horizon(&["check", fixture("newer-sdk").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&newer.stdout);
    let stderr = String::from_utf8_lossy(&newer.stderr);
    assert_eq!(newer.status.code(), Some(101), "{stdout}{stderr}");
    assert!(
        stdout.contains("sdk: 0.99.0")
            && stdout.contains("loadable: no")
            && stdout
                .lines()
                .any(|l| l.contains("service: teleport") && l.contains("missing (required")),
        "{stdout}"
    );
    assert!(
        stderr.contains("`teleport`")
            && stderr.contains("0.99.0")
            && stderr.contains(horizon_plugin_sdk::abi::SDK_VERSION),
        "{stderr}"
    );

    let wrong = horizon(&["check", fixture("wrong-abi").to_str().unwrap()]);
    assert_eq!(
        wrong.status.code(),
        Some(101),
        "a refused library fails the command"
    );
    let stdout = String::from_utf8_lossy(&wrong.stdout);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stdout.contains(&format!(
            "boundary: 999 (this host: {})",
            horizon_plugin_sdk::abi::ABI_VERSION
        )) && stdout.contains("loadable: no"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error:") && stderr.contains("version 999"),
        "{stderr}"
    );

    let not_plugin = horizon(&["check", fixture("no-sdk").to_str().unwrap()]);
    assert_eq!(not_plugin.status.code(), Some(101));
    assert!(String::from_utf8_lossy(&not_plugin.stderr).contains("is not a Horizon plugin"));

    // A file that is no library at all: the loader's own reason is shown.
    let junk = fixtures_dir().join(format!("junk-{}.so", std::process::id()));
    std::fs::write(
        &junk,
        "this is not a shared library, just text long enough\n".repeat(40),
    )
    .unwrap();
    let bad = horizon(&["check", junk.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(101));
    assert!(stderr.contains("invalid ELF header"), "{stderr}");
    // Admitted by the default policy before the loader refused it.
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains("trust: not checked") && stdout.contains("loadable: no"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&junk);
}

#[test]
fn the_command_line_is_conventional() {
    let usage = horizon(&["frobnicate"]);
    assert_eq!(
        usage.status.code(),
        Some(1),
        "usage errors exit with 1, as cargo's"
    );
    let stderr = String::from_utf8_lossy(&usage.stderr);
    assert!(
        stderr.contains("unrecognized subcommand") && stderr.contains("Usage: horizon"),
        "{stderr}"
    );
    let help = horizon(&["--help"]);
    assert!(help.status.success());
    let words = String::from_utf8_lossy(&help.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words.contains("101 when the command fails") && words.contains("1 for a usage error"),
        "`--help` documents the exit status: {words}"
    );
    let version = horizon(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("horizon {}", env!("CARGO_PKG_VERSION"))
    );
    for sub in ["new", "run", "check"] {
        let help = horizon(&[sub, "--help"]);
        assert!(help.status.success());
        assert!(
            String::from_utf8_lossy(&help.stdout).contains(&format!("Usage: horizon {sub}")),
            "{sub} --help"
        );
    }
    let bad_emit = horizon(&["run", "--emit", "ping=not json", "somewhere"]);
    assert_eq!(bad_emit.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_emit.stderr).contains("is not JSON"));
    let no_name = horizon(&["run", "--emit", "=1", "somewhere"]);
    assert_eq!(no_name.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_name.stderr).contains("the event name is empty"));

    // A command that fails (here: a library that is not there) exits with
    // 101, as cargo's.
    let missing = std::env::temp_dir().join(format!(
        "horizon-cli-no-such-plugin-{}.so",
        std::process::id()
    ));
    let failed = horizon(&["run", "--seconds", "1", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(101), "{stderr}");
    assert!(
        stderr.contains("error:") && stderr.contains("horizon-cli-no-such-plugin"),
        "{stderr}"
    );
}

/// `horizon new` writes a crate that `horizon run` runs (events sent with
/// `--emit` and on standard input answered) and whose own test passes under
/// `cargo test`, with the testing harness.
#[test]
fn new_writes_a_plugin_that_runs_and_passes_its_own_test() {
    let base = fixtures_dir()
        .join("fixture-copies")
        .join(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("my-plugin");
    let created = horizon(&["new", dir.to_str().unwrap()]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // A second `new` into it refuses.
    assert_eq!(
        horizon(&["new", dir.to_str().unwrap()]).status.code(),
        Some(101)
    );
    // Resolve dependencies as the workspace does, and share its target
    // directory, so they are built once.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = fixtures_dir().parent().unwrap().to_owned();

    let mut run = Command::new(HORIZON)
        .args([
            "run",
            dir.to_str().unwrap(),
            "--seconds",
            "60",
            "--emit",
            "my-plugin:ping=21",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start horizon");
    let mut stdin = run.stdin.take().unwrap();
    let stdout = BufReader::new(run.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        if line.contains(r#"my-plugin:pong {"doubled":42}"#) {
            // Loaded and answering: now one typed on standard input.
            use std::io::Write;
            writeln!(stdin, "my-plugin:ping 5").unwrap();
        }
        let done = line.contains(r#"my-plugin:pong {"doubled":10}"#);
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = run.kill();
    let output = run.wait_with_output().unwrap();
    assert!(
        seen.iter().any(|l| l.contains(r#"{"doubled":10}"#)),
        "stdout:\n{}\nstderr:\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );

    let test = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo test");
    assert!(
        test.status.success(),
        "the scaffold's test failed:\n{}\n{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(String::from_utf8_lossy(&test.stdout).contains("1 passed"));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn run_builds_a_plugin_crate_and_prints_its_events_and_logs() {
    let logger = workspace().join("examples/logger");
    let out = horizon(&[
        "run",
        logger.to_str().unwrap(),
        "--seconds",
        "2",
        "--tick-ms",
        "200",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Loaded logger"), "{stderr}");
    assert!(
        stdout.contains("[logger] logger:activity_logged"),
        "{stdout}"
    );
    assert!(stdout.contains("[host] server_tick"), "{stdout}");
    // The plugin's `tracing::info!` arrives in the host's log, with its name.
    assert!(
        stderr.contains("logging activity") && stderr.contains("plugin=logger"),
        "{stderr}"
    );
}

/// A running `horizon` whose output lines (standard output and error) are
/// collected as they come, and whose standard input takes lines.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &Path)]) -> Running {
        let mut cmd = Command::new(HORIZON);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start horizon");
        let stdin = child.stdin.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Running {
            child,
            stdin,
            lines,
        }
    }

    /// Types a line on the command's standard input.
    fn send(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{line}").expect("write to horizon's standard input");
    }

    /// Where the first line containing `needle` is, if any.
    fn position(&self, needle: &str) -> Option<usize> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .position(|l| l.contains(needle))
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `needle` was printed `at_least` times; fails at
    /// `timeout`, or as soon as `horizon` has exited without printing it
    /// (rather than waiting out the timeout for a process that is gone).
    fn wait_for(&mut self, needle: &str, at_least: usize, timeout: Duration) {
        let start = Instant::now();
        let mut exited = None;
        while self.count(needle) < at_least {
            let output = || self.lines.lock().unwrap().join("\n");
            if let Some(status) = exited {
                panic!(
                    "`horizon` exited ({status}) without `{needle}` (x{at_least}); output:\n{}",
                    output()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no `{needle}` (x{at_least}) within {timeout:?}; output:\n{}",
                output()
            );
            if let Ok(Some(status)) = self.child.try_wait() {
                // One more look once the readers have drained the pipes.
                exited = Some(status);
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events to send: `--emit` given twice, `--emit name` alone (a `null`
/// payload), and lines on standard input: a name alone (`null`), a name and
/// JSON, `#` comments and blank lines skipped, and a line whose payload is
/// not JSON, reported while the run goes on.
#[test]
fn run_sends_events_from_the_command_line_and_standard_input() {
    let library = fixture("basic");
    let mut running = Running::start(
        &[
            "run",
            library.to_str().unwrap(),
            "--tick-ms",
            "3600000",
            "--seconds",
            "120",
            "--emit",
            "first=1",
            "--emit",
            "second",
        ],
        &[],
    );
    for line in [
        "# a comment, not an event",
        "",
        "   ",
        "third",
        r#"fourth {"n": [1, 2]}"#,
        "bad {not json",
        "fifth 5",
    ] {
        running.send(line);
    }
    running.wait_for("[host] fifth 5", 1, Duration::from_secs(60));
    for sent in [
        "[host] first 1",
        "[host] second null",
        "[host] third null",
        r#"[host] fourth {"n":[1,2]}"#,
    ] {
        assert_eq!(running.count(sent), 1, "{sent}");
    }
    assert_eq!(
        running.count("error: the payload of `bad` is not JSON"),
        1,
        "a bad line is reported"
    );
    assert_eq!(running.count("[host] bad"), 0);
    assert_eq!(running.count("a comment"), 0, "a `#` line sends nothing");
    // In the order given; the bad line did not stop the run.
    let at = |needle: &str| running.position(needle).unwrap();
    assert!(at("[host] first 1") < at("[host] second null"));
    assert!(at("[host] second null") < at("[host] third null"));
    assert!(at("[host] third null") < at("[host] fifth 5"));
    assert!(running.child.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn run_stats_prints_a_line_per_plugin_and_a_panic_reaches_the_log_once() {
    let library = fixture("basic");
    let mut running = Running::start(
        &[
            "run",
            library.to_str().unwrap(),
            "--tick-ms",
            "3600000",
            "--seconds",
            "120",
            "--stats",
            "--stats-every",
            "1",
            "--emit",
            r#"basic:run={"id":1,"scenario":"spawn","arg":1}"#,
            "--emit",
            r#"basic:run={"id":2,"scenario":"task_panic","arg":0}"#,
        ],
        &[],
    );
    // The first line covers the plugin's life so far; the next ones the
    // second before them (no more calls: 0.0/s).
    running.wait_for("Stats basic (#1):", 2, Duration::from_secs(60));
    assert_eq!(
        running.count(
            "Stats basic (#1): 0 tasks alive (2 spawned), 0 blocking jobs running, 2 handler calls, 0 failed, polled"
        ),
        1,
        "the first stats line"
    );
    assert!(
        running.count("0 handler calls (0.0/s)") >= 1,
        "a later line, with a rate"
    );
    assert!(running.count("1 panics; 2 events out") >= 2);
    // The panic in the plugin's task: one error line in the host's log,
    // naming the plugin, the task's spawn site and the message; the
    // plugin's own std printed nothing (its hook reports to the host).
    assert_eq!(
        running.count("plugin `basic` panicked in a task spawned at fixtures/basic/src/lib.rs:"),
        1
    );
    assert_eq!(
        running.count("task went wrong (at fixtures/basic/src/lib.rs:"),
        1
    );
    assert_eq!(
        running.count("' panicked at"),
        0,
        "std's default hook printed the panic"
    );
}

#[test]
fn run_watch_reloads_an_edited_plugin_and_survives_a_broken_edit() {
    // A plugin crate outside the workspace, as a plugin author has: the
    // logger example, depending on this SDK by path.
    let dir = fixtures_dir()
        .join("fixture-copies")
        .join(format!("watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let sdk = workspace().join("sdk");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "watched"
version = "0.0.0"
edition = "2024"

[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
horizon-plugin-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
tokio = {{ version = "1", features = ["time", "sync"] }}
tracing = "0.1"
"#
        ),
    )
    .unwrap();
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let source = std::fs::read_to_string(workspace().join("examples/logger/src/lib.rs")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), &source).unwrap();

    // Share the workspace's target directory so dependencies are built once.
    let target = fixtures_dir().parent().unwrap().to_owned();
    let mut running = Running::start(
        &["run", dir.to_str().unwrap(), "--watch", "--tick-ms", "100"],
        &[("CARGO_TARGET_DIR", &target)],
    );
    running.wait_for("Logger active", 1, Duration::from_secs(300));

    // Edit: the reloaded build's events show the change.
    std::fs::write(
        dir.join("src/lib.rs"),
        source.replace("Logger active", "Logger edited"),
    )
    .unwrap();
    running.wait_for("Reloaded logger", 1, Duration::from_secs(300));
    running.wait_for("Logger edited", 1, Duration::from_secs(30));

    // A broken edit: a clear error, and the previous build keeps serving.
    std::fs::write(
        dir.join("src/lib.rs"),
        format!("{source}\nthis does not compile"),
    )
    .unwrap();
    running.wait_for(
        "keeps running its previous build",
        1,
        Duration::from_secs(300),
    );
    let served = running.count("Logger edited");
    running.wait_for("Logger edited", served + 3, Duration::from_secs(30));
    assert_eq!(running.count("Reloaded logger"), 1);
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_and_run_apply_a_trust_key() {
    let dir = fixtures_dir().join(format!("trust-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keypair = |name: &str| {
        let keys = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let file = dir.join(format!("{name}.pub"));
        std::fs::write(&file, keys.pk.to_box().unwrap().into_string()).unwrap();
        (keys, file)
    };
    let (ours, our_key) = keypair("operator");
    let (theirs, _) = keypair("stranger");
    let library = |name: &str, signer: Option<&minisign::KeyPair>| {
        let path = dir.join(format!("lib{name}.so"));
        std::fs::copy(fixture("basic"), &path).unwrap();
        if let Some(keys) = signer {
            let bytes = std::fs::File::open(&path).unwrap();
            let signature = minisign::sign(Some(&keys.pk), &keys.sk, bytes, None, None).unwrap();
            std::fs::write(
                dir.join(format!("lib{name}.so.minisig")),
                signature.into_string(),
            )
            .unwrap();
        }
        path
    };
    let signed = library("signed", Some(&ours));
    let unsigned = library("unsigned", None);
    let by_stranger = library("stranger", Some(&theirs));
    let tampered = library("tampered", Some(&ours));
    let mut bytes = std::fs::read(&tampered).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&tampered, bytes).unwrap();
    let key = our_key.to_str().unwrap();

    let ok = horizon(&["check", "--trust-key", key, signed.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("trust: signed by {key}")) && stdout.contains("loadable: yes"),
        "{stdout}"
    );

    for (library, reason) in [
        (&unsigned, "it is unsigned"),
        (&by_stranger, "signed by a key this host does not trust"),
        (&tampered, "changed after signing"),
    ] {
        let out = horizon(&["check", "--trust-key", key, library.to_str().unwrap()]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(101), "{stdout}{stderr}");
        assert!(
            stdout.contains("trust: refused") && stdout.contains("loadable: no"),
            "{stdout}"
        );
        assert!(
            stderr.contains(reason) && stderr.contains(library.to_str().unwrap()),
            "{stderr}"
        );
    }

    // `run` takes the same option: an unsigned library is not loaded, a
    // signed one is.
    let run = |library: &Path| {
        let out = horizon(&[
            "run",
            "--seconds",
            "1",
            "--trust-key",
            key,
            library.to_str().unwrap(),
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&unsigned);
    assert_eq!(code, Some(101), "{stderr}");
    assert!(stderr.contains("it is unsigned"), "{stderr}");
    let (code, stderr) = run(&signed);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Loaded") && stderr.contains("signed by"),
        "{stderr}"
    );

    // A key file that is no key: the command fails naming it.
    let out = horizon(&[
        "check",
        "--trust-key",
        signed.to_str().unwrap(),
        signed.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("not a minisign public key"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_prints_binary_events_readably() {
    let library = fixture("events");
    let mut running = Running::start(
        &[
            "run",
            library.to_str().unwrap(),
            "--tick-ms",
            "3600000",
            "--seconds",
            "120",
            "--emit",
            "events:show=null",
        ],
        &[],
    );
    running.wait_for("[events] events:raw-bytes", 1, Duration::from_secs(60));
    // postcard is not self-describing: its codec and hex. The plugin's
    // `PlayerMoved { player: 7, x: 1.0, y: 2.0, name: "ann" }`.
    assert_eq!(
        running.count("[events] player:moved (postcard, 13 bytes) 07000080 3f000000 4003616e 6e"),
        1
    );
    // The plugin's typed handler decoded it and answered in JSON.
    assert_eq!(
        running.count(
            r#"[events] events:typed-seen {"moved":{"player":7,"x":1.0,"y":2.0,"name":"ann"}"#
        ),
        1
    );
    assert_eq!(
        running.count(r#"[events] events:raw-text (raw) "hello""#),
        1
    );
    assert_eq!(
        running.count("[events] events:raw-bytes (raw, 4 bytes) 000102ff"),
        1
    );
}
