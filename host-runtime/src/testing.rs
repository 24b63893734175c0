//! Test a plugin crate with `cargo test`: build it with cargo (once per
//! test binary), load it into a real [`PluginHost`] on the test's runtime,
//! emit events, await the plugin's answers with a timeout, and read its log.
//!
//! Turn on the `testing` feature in the plugin crate's dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! horizon-plugin-host = { version = "0.2", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! and write `tests/plugin.rs`:
//!
//! ```no_run
//! use std::time::Duration;
//! use horizon_plugin_host::testing::TestHost;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn answers_a_ping() {
//!     let host = TestHost::new();
//!     host.load_crate(env!("CARGO_MANIFEST_DIR")).await.unwrap();
//!     host.emit("ping", &21u64).await.unwrap();
//!     let pong = host.next_event("pong", Duration::from_secs(5)).await.unwrap();
//!     assert_eq!(pong.json::<u64>().unwrap(), 42);
//!     assert!(host.logs().iter().any(|l| l.message.contains("ping")));
//!     host.shutdown().await;
//! }
//! ```
//!
//! A plain `#[tokio::test]` (a current-thread runtime) works as well: the
//! host runs the plugin's tasks on whichever runtime the test has.
//!
//! The plugin is built in the debug profile into the test's own target
//! directory, and each load uses a fresh copy of the library, so several
//! tests of one binary may load it at once. The copies live in a directory
//! of their [`TestHost`] (`<temp>/horizon-test-<pid>-<n>`), removed when
//! the host is dropped; the directories of processes that died before
//! removing theirs (a test aborted in strict unload mode) are removed by
//! the next [`TestHost::new`].
//!
//! Past 400 lines for one job: the harness a plugin's own tests use (build
//! once, private copies, a recording host, waits with a timeout),
//! documented with its examples.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::sync::lock;
use crate::{EmitError, EmitReport, Event, LoadError, PluginHost, PluginId, PluginLog};

/// Why a plugin crate could not be built or loaded for a test.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// cargo could not build the crate, or it builds no `cdylib`.
    #[error("{0}")]
    Build(String),
    /// The built library did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// No event of that name arrived in time.
    #[error("no `{event}` event within {timeout:?}")]
    TimedOut {
        /// The awaited event's name.
        event: String,
        /// How long it was awaited.
        timeout: Duration,
    },
}

/// Builds the plugin crate at `crate_dir` with `cargo build` and returns
/// its `cdylib`. cargo's progress and the compiler's diagnostics go to
/// standard error as they come.
///
/// # Errors
/// When cargo cannot run or the build fails (the message names the crate
/// and the compiler's first error), or the crate builds no `cdylib` (the
/// message says what to add).
pub fn cargo_build(crate_dir: &Path, target_dir: Option<&Path>) -> Result<PathBuf, String> {
    use std::io::{BufRead, BufReader, IsTerminal};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The compiler's diagnostics come back as JSON (rendered in colour for
    // a terminal): printed as cargo would, and their headlines kept for
    // the error.
    let format = if std::io::stderr().is_terminal() {
        "--message-format=json-diagnostic-rendered-ansi"
    } else {
        "--message-format=json"
    };
    let mut command = Command::new(cargo);
    command
        .args(["build", format, "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(dir) = target_dir {
        command.arg("--target-dir").arg(dir);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    let stdout = child.stdout.take();
    let mut library = None;
    let mut errors = Vec::new();
    // Read to the end before the wait (no early return: cargo is waited for).
    for line in stdout
        .into_iter()
        .flat_map(|out| BufReader::new(out).lines().map_while(Result::ok))
    {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-message") => {
                let diagnostic = &message["message"];
                if let Some(rendered) = diagnostic["rendered"].as_str() {
                    eprint!("{rendered}");
                }
                let headline = diagnostic["message"].as_str().unwrap_or_default();
                if diagnostic["level"] == "error" && !headline.starts_with("aborting due to") {
                    errors.push(headline.to_owned());
                }
            }
            Some("compiler-artifact") => {
                let is_cdylib = message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
                if is_cdylib {
                    library = message["filenames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str())
                        .find(|f| f.ends_with(std::env::consts::DLL_SUFFIX))
                        .map(PathBuf::from);
                }
            }
            _ => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !status.success() {
        let dir = crate_dir.display();
        return Err(match errors.as_slice() {
            [] => format!("cargo could not build {dir} (its errors are above)"),
            [only] => format!("build of {dir} failed: {only}"),
            [first, rest @ ..] => format!(
                "build of {dir} failed: {first} (and {} more errors, above)",
                rest.len()
            ),
        });
    }
    library.ok_or_else(|| {
        format!(
            "{} builds no `cdylib`: add `crate-type = [\"cdylib\"]` to its [lib]",
            crate_dir.display()
        )
    })
}

/// The target directory of the running test binary
/// (`<target>/<profile>/deps/<binary>`), if it looks like one.
fn test_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_owned))?
}

/// Builds the plugin crate at `crate_dir`, once per process (later calls
/// for the same directory return the first build's library).
///
/// # Errors
/// As [`cargo_build`].
pub fn build_plugin(crate_dir: impl AsRef<Path>) -> Result<PathBuf, TestError> {
    type Builds = Mutex<HashMap<PathBuf, Arc<OnceLock<Result<PathBuf, String>>>>>;
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    let dir = crate_dir.as_ref().to_owned();
    let once = Arc::clone(
        lock(BUILDS.get_or_init(Builds::default))
            .entry(dir.clone())
            .or_default(),
    );
    // A plugin crate's tests run from its own target directory: build the
    // library there (cargo does not hold its lock while tests run).
    once.get_or_init(|| cargo_build(&dir, test_target_dir().as_deref()))
        .clone()
        .map_err(TestError::Build)
}

/// A private directory for one owner's library copies (from
/// [`copies_dir`]): its lock is held while this value lives, and the
/// directory is removed when it is dropped.
#[derive(Debug)]
pub struct CopiesDir {
    path: PathBuf,
    /// Held (`File::lock`) for as long as the directory is in use; taken
    /// on drop, so the file is closed before the directory is removed (on
    /// NFS an open file would keep it).
    lock: Option<std::fs::File>,
}

impl CopiesDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CopiesDir {
    fn drop(&mut self) {
        // A copy still mapped (a host dropped without `shutdown`) stays
        // mapped without its file.
        drop(self.lock.take());
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A new, private directory for library copies,
/// `<temp>/<prefix>-<pid>-<n>`: created here (mode 0700 on Unix, and never
/// one that already exists, so another user cannot have prepared it), with
/// a lock file inside that the returned [`CopiesDir`] holds. First removes
/// the directories of that prefix, owned by this user, whose lock no
/// process holds any more (their owner was killed, or aborted in strict
/// unload mode, before removing its own); never this process's own.
///
/// # Panics
/// When no directory can be created in the temporary directory.
pub fn copies_dir(prefix: &str) -> CopiesDir {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = std::env::temp_dir();
    remove_stale_copies(&temp, prefix);
    loop {
        let dir = temp.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("could not create {}: {e}", dir.display()),
        }
        // Locked under another name, then renamed (the lock goes with the
        // file): a sweep never finds the lock file unlocked.
        let staged = dir.join(format!("{LOCK_FILE}.new"));
        let lock_file = std::fs::File::create(&staged)
            .and_then(|file| file.lock().map(|()| file))
            .and_then(|file| std::fs::rename(&staged, dir.join(LOCK_FILE)).map(|()| file));
        match lock_file {
            Ok(file) => {
                return CopiesDir {
                    path: dir,
                    lock: Some(file),
                };
            }
            Err(e) => {
                // Not left behind without its lock file, where no sweep
                // would find it.
                let _ = std::fs::remove_dir_all(&dir);
                panic!("could not lock {}: {e}", dir.display())
            }
        }
    }
}

/// The file in each directory of copies whose lock says its owner lives.
const LOCK_FILE: &str = ".owner.lock";

/// Removes the directories `<prefix>-<pid>-<n>` in `root` that this user
/// owns, that are not this process's, and whose lock file no process
/// holds. A directory without a lock file is left alone: one being created
/// this instant, or (rarely, and for good) one whose creator was killed
/// between creating it and renaming its lock file into place. So is one
/// left by a dead process whose pid this process now has.
fn remove_stale_copies(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Never this process's own (where `flock` is emulated by POSIX
        // locks, on NFS, they do not conflict within one process).
        let own = format!("-{}-", std::process::id());
        let ours = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .is_some_and(|n| n.starts_with('-') && !n.starts_with(&own));
        // `file_type` does not follow symlinks: only real directories.
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) || !owned_by_us(&entry.path()) {
            continue;
        }
        let Ok(file) = std::fs::File::open(entry.path().join(LOCK_FILE)) else {
            continue;
        };
        // Taken: no live process holds it.
        if file.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `path` belongs to the user running this process.
fn owned_by_us(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let ours = unsafe { libc::geteuid() };
        std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == ours)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Copies `library` into `dir` (created if needed) under a name not used
/// before in this process, and returns the copy's path. Load plugins from
/// such copies: a file loaded twice shares its statics, and a rebuild must
/// never overwrite a file that is loaded.
///
/// # Errors
/// When the directory cannot be created or the file copied.
pub fn fresh_copy(library: &Path, dir: &Path) -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let stem = library
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let dest = dir.join(format!(
        "{stem}-{}-{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::env::consts::DLL_SUFFIX
    ));
    // A new file, never one overwritten in place: another process may have
    // a library of this name mapped.
    let copy = || -> std::io::Result<()> {
        let mut from = std::fs::File::open(library)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)?;
        std::io::copy(&mut from, &mut to)?;
        Ok(())
    };
    copy().map_err(|e| {
        format!(
            "could not copy {} to {}: {e}",
            library.display(),
            dest.display()
        )
    })?;
    Ok(dest)
}

/// What a [`TestHost`] saw: every event (from its plugins and the host)
/// and every plugin log record, in order.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<Event>>,
    logs: Mutex<Vec<PluginLog>>,
    arrived: Notify,
}

/// A real [`PluginHost`] on the current tokio runtime, in strict unload
/// mode, that records every event and plugin log record.
pub struct TestHost {
    host: PluginHost,
    seen: Arc<Seen>,
    /// Where this host's library copies go (see [`copies_dir`]); removed
    /// when the host is dropped.
    copies: CopiesDir,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl TestHost {
    /// A host on the current runtime (either flavour). Removes the library
    /// copies that processes now gone left behind (see [`copies_dir`]).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new() -> TestHost {
        let seen = Arc::new(Seen::default());
        let sink = Arc::clone(&seen);
        let host = PluginHost::builder(tokio::runtime::Handle::current())
            .strict_unload(true)
            .plugin_log_sink(move |record| lock(&sink.logs).push(record.clone()))
            .build();
        let events = Arc::clone(&seen);
        host.on_any(move |event| {
            lock(&events.events).push(event);
            events.arrived.notify_waiters();
        });
        TestHost {
            host,
            seen,
            copies: copies_dir("horizon-test"),
        }
    }

    /// The host, for anything this type does not wrap.
    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// Builds the plugin crate at `crate_dir` (once per test binary, see
    /// [`build_plugin`]) and loads a fresh copy of it.
    ///
    /// # Errors
    /// When the build or the load fails.
    pub async fn load_crate(&self, crate_dir: impl AsRef<Path>) -> Result<PluginId, TestError> {
        let dir = crate_dir.as_ref().to_owned();
        let library = tokio::task::spawn_blocking(move || build_plugin(dir))
            .await
            .map_err(|e| TestError::Build(e.to_string()))??;
        self.load_library(&library).await
    }

    /// Loads a fresh copy of an already built library (in this host's
    /// directory of copies, removed when the host is dropped).
    ///
    /// # Errors
    /// When the copy or the load fails.
    pub async fn load_library(&self, library: &Path) -> Result<PluginId, TestError> {
        let copy = fresh_copy(library, self.copies.path()).map_err(TestError::Build)?;
        Ok(self.host.load(copy).await?)
    }

    /// Emits an event to every subscriber and waits until each handled it.
    ///
    /// # Errors
    /// When the payload does not serialize.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<EmitReport, EmitError> {
        self.host.emit(event, payload).await
    }

    /// Waits for the first event named `event` not yet returned by this
    /// method (events already seen count), up to `timeout`.
    ///
    /// # Errors
    /// [`TestError::TimedOut`] when none arrives in time.
    pub async fn next_event(&self, event: &str, timeout: Duration) -> Result<Event, TestError> {
        let wait = async {
            loop {
                let arrived = self.seen.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                {
                    let mut events = lock(&self.seen.events);
                    if let Some(i) = events.iter().position(|e| e.name() == event) {
                        return events.remove(i);
                    }
                }
                arrived.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| TestError::TimedOut {
                event: event.to_owned(),
                timeout,
            })
    }

    /// Every log record the plugins of this host made so far.
    pub fn logs(&self) -> Vec<PluginLog> {
        lock(&self.seen.logs).clone()
    }

    /// Unloads every plugin.
    pub async fn shutdown(&self) {
        self.host.shutdown().await;
    }
}
