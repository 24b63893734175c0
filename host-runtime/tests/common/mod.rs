//! Shared by the integration tests: builds the fixture plugins once per test
//! binary (cargo is incremental, so the second binary's build is a no-op),
//! hands out private copies of them, and drives the `basic` fixture.
//!
//! Past 400 lines for one job: what every test binary shares (fixture
//! builds, copies, the `basic` driver, its scenario list and the race
//! storm), compiled into each.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use horizon_plugin_host::{EmitReport, Event, PluginHost, PluginId};
use serde_json::{Value, json};

pub const FIXTURES: &[&str] = &[
    "fixture-basic",
    "fixture-no-sdk",
    "fixture-wrong-abi",
    "fixture-load-error",
    "fixture-load-panic",
    "fixture-init-panic",
    "fixture-lean",
    "fixture-renamed-sdk",
    "fixture-bench",
    "fixture-bad-magic",
    "fixture-truncated",
    "fixture-newer-sdk",
    "fixture-events",
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

/// The `basic` fixture's source built with tokio 1.38.0 and tokio's `full`
/// features, from its own workspace and lockfile (once per test binary).
pub fn compat_fixture() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/compat-tokio-1-38/Cargo.toml");
            let target = fixtures_dir().parent().expect("target dir").to_owned();
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "--locked", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&target);
            if fixtures_dir().ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo to build the compat fixture");
            assert!(
                status.success(),
                "building the tokio 1.38 compat fixture failed"
            );
            let file = format!(
                "{}fixture_compat_tokio_1_38{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            );
            fixtures_dir().join(file)
        })
        .clone()
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
    fresh_copy_of(&fixture(name), name)
}

/// This process's directory of library copies. Copies of processes that
/// are gone (earlier test runs) are removed on first use, so they do not
/// pile up in the target directory.
fn copies_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = fixtures_dir().join("fixture-copies");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let alive = name
                    .parse::<u32>()
                    .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path())
                        .or_else(|_| std::fs::remove_file(entry.path()));
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A private copy of the library at `source`, named after `name`.
pub fn fresh_copy_of(source: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dest = copies_dir().join(format!("{name}-{n}{}", std::env::consts::DLL_SUFFIX));
    std::fs::copy(source, &dest).unwrap();
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
        Basic::load_path(host, fresh_copy("basic")).await
    }

    /// Loads a build of the `basic` fixture's source from `path`.
    pub async fn load_path(host: PluginHost, path: PathBuf) -> Basic {
        let id = host.load(&path).await.expect("load the basic fixture");
        Basic::attach(host, id)
    }

    /// Collects the replies of the copy of `basic` loaded as `id`.
    pub fn attach(host: PluginHost, id: PluginId) -> Basic {
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

/// Every scenario, with what its reply must be.
pub async fn all_scenarios(basic: &Basic) {
    assert_eq!(basic.run("spawn", 21).await, json!(42));

    let slept = basic.run("sleep", 20).await.as_u64().unwrap();
    assert!(slept >= 20_000, "slept {slept} us for a 20 ms sleep");
    let slept = basic.run("sleep_until", 15).await.as_u64().unwrap();
    assert!(
        slept >= 15_000,
        "slept {slept} us until a deadline 15 ms away"
    );

    // 4 ticks of a 5 ms interval: the first is immediate, so >= 15 ms.
    let ticked = basic.run("interval", 4).await.as_u64().unwrap();
    assert!(ticked >= 15_000, "4 ticks of 5 ms took {ticked} us");

    assert_eq!(
        basic.run("timeout", 7).await,
        json!({ "fired": true, "value": 7 })
    );

    let blocking = basic.run("blocking", 1).await;
    assert_eq!(blocking["value"], json!(2));

    assert_eq!(basic.run("nested", 1).await, json!(25));
    assert_eq!(basic.run("select", 5).await, json!("sleep"));

    let helper = basic.run("helper", 10).await;
    assert_eq!(helper["spawned"], json!(11));
    assert!(helper["elapsed_us"].as_u64().unwrap() >= 10_000);

    assert_eq!(basic.run("handle", 4).await, json!(7));
    assert_eq!(basic.run("yield", 50).await, json!(50));

    let panicked = basic.run("task_panic", 0).await;
    assert_eq!(panicked["is_panic"], json!(true));
    assert!(
        panicked["message"]
            .as_str()
            .unwrap()
            .contains("task went wrong")
    );
    assert_eq!(basic.run("abort", 0).await, json!({ "is_cancelled": true }));
    assert_eq!(
        basic.run("join_twice", 0).await,
        json!({ "first": 1, "panicked": "JoinHandle polled after completion" })
    );

    // Every rewritten form (use forms, join!/try_join!, vec!, format!), plus
    // the forms out of reach of the rewrite (module-level use, nested item)
    // and routed calls from a plain thread of the plugin.
    assert_eq!(basic.run("forms", 0).await, json!(36));

    // Tokio IO and a third-party tokio crate (tokio-util codecs) in a helper module.
    assert_eq!(
        basic.run("tcp", 3).await,
        json!(["echo line 0", "echo line 1", "echo line 2"])
    );

    // Panics at the boundaries: a blocking job, and a future's drop.
    let panicked = basic.run("blocking_panic", 0).await;
    assert_eq!(panicked["is_panic"], json!(true));
    assert!(
        panicked["message"]
            .as_str()
            .unwrap()
            .contains("blocking job went wrong")
    );
    assert_eq!(
        basic.run("drop_panic", 0).await,
        json!({ "is_cancelled": true })
    );
    // A chain of 2,000 events, each emitted by the previous one's handler:
    // handlers nest inline only to a bounded depth, so no stack overflows.
    assert_eq!(basic.run("chain", 2000).await, json!("bottom"));
    // A plugin-made waker that panics when the host or the SDK wakes it.
    assert_eq!(
        basic.run("custom_waker", 0).await,
        json!({ "pending": true, "value": 5 })
    );
    // Plugin-made wakers whose drop panics, dropped by the host's timer.
    assert_eq!(
        basic.run("waker_drop_panics", 0).await,
        json!({ "pending": true })
    );
}

/// A small xorshift generator: the storm's choices, reproducible from the
/// seed it prints.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Four tasks load, reload, unload and emit at random against up to three
/// copies of the `basic` fixture for `duration` and at least `min_changes`
/// loads, reloads and unloads (so a slow run, under valgrind, still races
/// enough), drawing library copies
/// from a pool of six paths. Every emit's report must match what was
/// loaded (each delivery replied once, failures only cancellations by an
/// unload); at the end one emit reaches exactly the copies listed. Run it
/// on a strict host: any plugin code after an unload aborts.
pub async fn race_storm(host: PluginHost, duration: std::time::Duration, min_changes: u64) {
    use horizon_plugin_host::{FailureKind, ReloadError, UnloadError};

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("race storm seed {seed}");
    let pool: Arc<Mutex<Vec<PathBuf>>> =
        Arc::new(Mutex::new((0..6).map(|_| fresh_copy("basic")).collect()));
    let take = |pool: &Arc<Mutex<Vec<PathBuf>>>| pool.lock().unwrap().pop();
    let first = take(&pool).unwrap();
    let basic = Basic::load_path(host.clone(), first).await;
    let deadline = std::time::Instant::now() + duration;
    let (emits, changes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let delivered = Arc::new(AtomicU64::new(0));
    // Copies loaded, reserved before a load and released by an unload:
    // the bound of three holds at every moment, not only when checked.
    let copies = Arc::new(AtomicU64::new(1));
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let (host, basic, pool) = (host.clone(), basic.clone(), Arc::clone(&pool));
        let (emits, changes) = (Arc::clone(&emits), Arc::clone(&changes));
        let (delivered, copies) = (Arc::clone(&delivered), Arc::clone(&copies));
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_add(worker.wrapping_mul(0x9E37_79B9)));
            while std::time::Instant::now() < deadline
                || changes.load(Ordering::Relaxed) < min_changes
            {
                let loaded = host.plugins();
                assert!(loaded.len() <= 3, "{} copies listed", loaded.len());
                let pick = |rng: &mut Rng| {
                    (!loaded.is_empty()).then(|| loaded[rng.below(loaded.len())].clone())
                };
                match rng.below(10) {
                    0..=4 => {
                        let (report, replies) = basic.try_run("spawn", 3).await;
                        for failure in &report.failures {
                            assert!(
                                matches!(failure.kind, FailureKind::Cancelled(_)),
                                "only unloads may fail a handler: {failure}"
                            );
                        }
                        let cancelled = report.failures.len();
                        assert!(
                            report.delivered + cancelled <= 3,
                            "an emit reached {} handlers with at most 3 copies loaded",
                            report.delivered + cancelled
                        );
                        assert!(
                            replies.len() >= report.delivered
                                && replies.len() <= report.delivered + cancelled,
                            "{} replies for {} deliveries and {cancelled} cancellations",
                            replies.len(),
                            report.delivered
                        );
                        assert!(replies.iter().all(|r| *r == json!(6)));
                        // Each copy's synchronous handler runs inside the
                        // emit, or is refused by a copy being unloaded; it
                        // never fails otherwise.
                        let report = host.emit("basic:tick", &worker).await.unwrap();
                        assert!(
                            report.failures.iter().all(|f| matches!(
                                &f.kind,
                                FailureKind::Cancelled(m) if m.contains("being unloaded")
                            )) && report.delivered + report.failures.len() <= 3,
                            "basic:tick: {report:?}"
                        );
                        emits.fetch_add(1, Ordering::Relaxed);
                        delivered.fetch_add(report.delivered as u64, Ordering::Relaxed);
                    }
                    5 | 6 => {
                        let Some(old) = pick(&mut rng) else { continue };
                        let Some(path) = take(&pool) else { continue };
                        match host.reload(old.id, &path).await {
                            Ok(_) => pool.lock().unwrap().push(old.path),
                            Err(ReloadError::NotLoaded(_)) => pool.lock().unwrap().push(path),
                            Err(e) => panic!("reload: {e}"),
                        }
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                    7 => {
                        let Some(old) = pick(&mut rng) else { continue };
                        match host.unload(old.id).await {
                            Ok(()) => {
                                copies.fetch_sub(1, Ordering::SeqCst);
                                pool.lock().unwrap().push(old.path)
                            }
                            Err(UnloadError::NotLoaded(_)) => {}
                            Err(e) => panic!("unload: {e}"),
                        }
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        let reserved = copies
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                (n < 3).then_some(n + 1)
                            })
                            .is_ok();
                        if !reserved {
                            continue;
                        }
                        let Some(path) = take(&pool) else {
                            copies.fetch_sub(1, Ordering::SeqCst);
                            continue;
                        };
                        host.load(&path).await.expect("load a copy");
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    eprintln!(
        "race storm: {} emits ({} handler runs), {} loads, reloads and unloads",
        emits.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed),
        changes.load(Ordering::Relaxed)
    );
    let listed = host.plugins().len();
    assert_eq!(
        listed as u64,
        copies.load(Ordering::SeqCst),
        "copies listed"
    );
    let (report, replies) = basic.try_run("spawn", 4).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.delivered, listed, "every listed copy, once");
    assert_eq!(replies.len(), listed);
    host.shutdown().await;
    assert!(host.plugins().is_empty());
}

/// A minimal executor for a thread outside any tokio runtime: polls `fut`,
/// parking the thread until its waker unparks it. (`Handle::block_on`
/// would enter the runtime's context; this does not.)
pub fn block_on_plain_thread<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A writer into a shared buffer, for a host's `fmt` subscriber in tests
/// that read what was logged.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    /// A buffer that this process's global `fmt` subscriber (installed
    /// here, up to `level`, no colours) writes to. Once per test binary:
    /// callers keep it in a `OnceLock`.
    pub fn install_global(level: tracing::Level) -> Captured {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(captured.clone())
            .init();
        captured
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
