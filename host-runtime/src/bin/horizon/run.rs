//! `horizon run`: build, load, send events (from the command line, from
//! standard input, and a `server_tick` on an interval), print what comes
//! back, and with `--watch` rebuild and reload.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use horizon_plugin_host::testing::{self, cargo_build};
use horizon_plugin_host::{Codec, Event, PluginHost, PluginId, PluginStats};

use crate::TrustArgs;
use crate::out::{error, failed, status};

#[derive(clap::Args)]
pub(crate) struct RunOptions {
    /// Rebuild a crate when its sources change, and reload the plugin.
    #[arg(long)]
    watch: bool,
    /// Stop after this many seconds (default: on Ctrl-C).
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
    /// Milliseconds between `server_tick` events.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    tick_ms: u64,
    /// An event to send once the plugins are loaded, as `name=json`
    /// (repeatable; `name` alone sends `null`).
    #[arg(long, value_name = "NAME=JSON", value_parser = parse_emit)]
    emit: Vec<(String, serde_json::Value)>,
    /// Print a line per plugin every few seconds: tasks, handler calls per
    /// second, time spent polling it, slow polls, panics.
    #[arg(long)]
    stats: bool,
    /// Seconds between `--stats` lines.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..), requires = "stats")]
    stats_every: u64,
    #[command(flatten)]
    trust: TrustArgs,
    /// Plugin crate directories or built libraries.
    #[arg(required = true, value_name = "PLUGIN")]
    targets: Vec<PathBuf>,
}

/// `name=json` (or `name`): an event to send.
fn parse_emit(spec: &str) -> Result<(String, serde_json::Value), String> {
    let (name, payload) = spec.split_once('=').unwrap_or((spec, "null"));
    if name.is_empty() {
        return Err("the event name is empty".to_owned());
    }
    let payload = serde_json::from_str(payload)
        .map_err(|e| format!("the payload of `{name}` is not JSON: {e}"))?;
    Ok((name.to_owned(), payload))
}

/// A line typed on standard input: `name [json]`.
fn parse_line(line: &str) -> Option<Result<(String, serde_json::Value), String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, payload) = line
        .split_once(char::is_whitespace)
        .map_or((line, "null"), |(n, p)| (n, p.trim()));
    Some(
        serde_json::from_str(payload)
            .map(|payload| (name.to_owned(), payload))
            .map_err(|e| format!("the payload of `{name}` is not JSON: {e}")),
    )
}

/// One plugin given on the command line.
struct Target {
    /// The crate directory, for `--watch` and rebuilds; `None` for a library.
    crate_dir: Option<PathBuf>,
    /// The built (or given) library.
    library: PathBuf,
    id: Option<PluginId>,
    /// Newest source modification seen.
    stamp: SystemTime,
}

/// The newest modification time under a crate's `src/` and its manifest.
fn source_stamp(dir: &Path) -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(modified);
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    walk(&dir.join("src"), &mut newest);
    walk(&dir.join("Cargo.toml"), &mut newest);
    newest
}

/// What to load for `library`: a fresh copy in this run's directory (see
/// [`horizon_plugin_host::testing::fresh_copy`]), or under a policy that
/// checks the bytes, the library itself (the host opens a copy of what it
/// checked, and the signature is beside the original).
fn fresh_copy(library: &Path, trust: &TrustArgs) -> Result<PathBuf, String> {
    if trust.copies() {
        return Ok(library.to_owned());
    }
    // The host checks the copy, which is ours: the original's permissions
    // are checked here.
    trust
        .policy()?
        .check(library)
        .map_err(|reason| format!("refused to load {}: {reason}", library.display()))?;
    testing::fresh_copy(library, run_dir())
}

/// Where this run keeps its copies (removed at exit; those of runs that
/// were killed are removed by the next run, see
/// [`horizon_plugin_host::testing::copies_dir`]).
fn run_dir() -> &'static Path {
    static DIR: OnceLock<testing::CopiesDir> = OnceLock::new();
    DIR.get_or_init(|| testing::copies_dir("horizon-run"))
        .path()
}

pub(crate) fn run_command(options: RunOptions) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error(format!("could not start the runtime: {e}"));
            return failed();
        }
    };
    let code = rt.block_on(run(options));
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(run_dir());
    code
}

/// An event's payload as `horizon run` prints it: JSON as it is, raw bytes
/// that are text as a quoted string, anything else (postcard is not
/// self-describing: its type lives in the plugin) as hex after its codec.
pub(crate) fn readable(event: &Event) -> String {
    let payload = event.payload();
    match event.codec() {
        Codec::Json => String::from_utf8_lossy(payload).into_owned(),
        Codec::Raw => match std::str::from_utf8(payload) {
            Ok(text) if !text.chars().any(char::is_control) => format!("(raw) {text:?}"),
            _ => format!("(raw, {} bytes) {}", payload.len(), hex(payload)),
        },
        codec => format!("({codec}, {} bytes) {}", payload.len(), hex(payload)),
    }
}

/// Bytes as hex, in groups of four.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 9 / 4 + 1);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

async fn run(options: RunOptions) -> ExitCode {
    let policy = match options.trust.policy() {
        Ok(policy) => policy,
        Err(e) => {
            error(e);
            return failed();
        }
    };
    let host = PluginHost::builder(tokio::runtime::Handle::current())
        .trust(policy)
        .build();
    host.on_any(|event: Event| {
        let from = event.source().unwrap_or("host");
        println!("[{from}] {} {}", event.name(), readable(&event));
    });

    let mut targets = Vec::new();
    for path in &options.targets {
        let path = path.clone();
        let target = if path.is_dir() {
            status("Building", path.display());
            let stamp = source_stamp(&path);
            match tokio::task::spawn_blocking({
                let path = path.clone();
                move || cargo_build(&path, None)
            })
            .await
            {
                Ok(Ok(library)) => Target {
                    crate_dir: Some(path),
                    library,
                    id: None,
                    stamp,
                },
                Ok(Err(e)) => {
                    error(e);
                    return failed();
                }
                Err(e) => {
                    error(e);
                    return failed();
                }
            }
        } else {
            Target {
                crate_dir: None,
                library: path,
                id: None,
                stamp: SystemTime::UNIX_EPOCH,
            }
        };
        targets.push(target);
    }
    for target in &mut targets {
        let loaded = match fresh_copy(&target.library, &options.trust) {
            Ok(copy) => host.load(copy).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(id) => {
                let name = plugin_name(&host, id);
                status(
                    "Loaded",
                    format!("{name} ({id}) from {}", target.library.display()),
                );
                target.id = Some(id);
            }
            Err(e) => {
                error(e);
                host.shutdown().await;
                return failed();
            }
        }
    }

    let deadline = options
        .seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    for (name, payload) in &options.emit {
        emit(&host, name, payload).await;
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(options.tick_ms));
    let mut stdin = Some(stdin_lines());
    let mut watch = tokio::time::interval(Duration::from_millis(300));
    let stats_every = Duration::from_secs(options.stats_every);
    let mut stats =
        tokio::time::interval_at(tokio::time::Instant::now() + stats_every, stats_every);
    let mut last_stats = StatsLines::default();
    let mut tick = 0u64;
    // One Ctrl-C listener for the whole run: one made anew on each turn
    // of the loop would miss a Ctrl-C that comes between two turns.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let until_end = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until_end => break,
            _ = &mut ctrl_c => break,
            _ = ticks.tick() => {
                tick += 1;
                match host.emit("server_tick", &serde_json::json!({ "tick": tick })).await {
                    Ok(report) => report.failures.iter().for_each(|f| eprintln!("warning: {f}")),
                    Err(e) => error(e),
                }
            }
            line = next_line(&mut stdin) => match line {
                Some(line) => match parse_line(&line) {
                    Some(Ok((name, payload))) => emit(&host, &name, &payload).await,
                    Some(Err(e)) => error(e),
                    None => {}
                },
                // End of input: keep running without it.
                None => stdin = None,
            },
            _ = stats.tick(), if options.stats => last_stats.print(&host),
            _ = watch.tick(), if options.watch => {
                for target in &mut targets {
                    rebuild_if_changed(&host, target, &options.trust).await;
                }
            }
        }
    }
    status("Stopping", format!("{} plugin(s)", host.plugins().len()));
    host.shutdown().await;
    ExitCode::SUCCESS
}

/// `--stats`: what each plugin cost since the previous line.
#[derive(Default)]
struct StatsLines {
    previous: std::collections::HashMap<PluginId, (PluginStats, tokio::time::Instant)>,
}

impl StatsLines {
    fn print(&mut self, host: &PluginHost) {
        let now = tokio::time::Instant::now();
        let mut seen = std::collections::HashMap::new();
        for stats in host.stats() {
            let (calls, polled, slow, elapsed) = match self.previous.get(&stats.id) {
                Some((before, at)) => (
                    stats.handler_calls - before.handler_calls,
                    stats.poll_time.saturating_sub(before.poll_time),
                    stats.slow_polls - before.slow_polls,
                    now - *at,
                ),
                None => (
                    stats.handler_calls,
                    stats.poll_time,
                    stats.slow_polls,
                    Duration::ZERO,
                ),
            };
            status("Stats", stats_line(&stats, calls, polled, slow, elapsed));
            seen.insert(stats.id, (stats, now));
        }
        self.previous = seen;
    }
}

/// One `--stats` line: totals, and over the last `elapsed` (the whole
/// life of the plugin when zero) handler calls per second, poll time and
/// slow polls.
fn stats_line(
    stats: &PluginStats,
    calls: u64,
    polled: Duration,
    slow: u64,
    elapsed: Duration,
) -> String {
    let per_second = if elapsed.is_zero() {
        String::new()
    } else {
        format!(" ({:.1}/s)", calls as f64 / elapsed.as_secs_f64())
    };
    format!(
        "{} ({}): {} tasks alive ({} spawned), {} blocking jobs running, {calls} handler \
         calls{per_second}, {} failed, polled {polled:.1?}, {slow} slow polls, {} panics; \
         {} events out",
        stats.name,
        stats.id,
        stats.tasks_alive,
        stats.tasks_spawned,
        stats.blocking_jobs_running,
        stats.handler_failures,
        stats.panics,
        stats.events_emitted,
    )
}

/// The lines of standard input, read on a thread of their own (a blocked
/// read then never holds up the runtime's shutdown).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line of standard input; `None` at its end.
async fn next_line(
    stdin: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> Option<String> {
    match stdin {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends one event and reports what failed.
async fn emit(host: &PluginHost, name: &str, payload: &serde_json::Value) {
    match host.emit(name, payload).await {
        Ok(report) => report
            .failures
            .iter()
            .for_each(|f| eprintln!("warning: {f}")),
        Err(e) => error(e),
    }
}

/// The name of a loaded plugin (empty if it is gone).
fn plugin_name(host: &PluginHost, id: PluginId) -> String {
    host.plugins()
        .into_iter()
        .find(|p| p.id == id)
        .map(|p| p.name)
        .unwrap_or_default()
}

async fn rebuild_if_changed(host: &PluginHost, target: &mut Target, trust: &TrustArgs) {
    let (Some(dir), Some(id)) = (target.crate_dir.clone(), target.id) else {
        return;
    };
    let stamp = source_stamp(&dir);
    if stamp <= target.stamp {
        return;
    }
    target.stamp = stamp;
    status("Rebuilding", dir.display());
    let built = tokio::task::spawn_blocking(move || cargo_build(&dir, None))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let name = plugin_name(host, id);
    let library =
        match built.and_then(|library| fresh_copy(&library, trust).map(|copy| (library, copy))) {
            Ok(pair) => pair,
            Err(e) => {
                error(format!("{e}; `{name}` keeps running its previous build"));
                return;
            }
        };
    match host.reload(id, &library.1).await {
        Ok(new) => {
            status("Reloaded", format!("{name} ({id} -> {new})"));
            target.id = Some(new);
            target.library = library.0;
        }
        Err(horizon_plugin_host::ReloadError::Unload { new, source }) => {
            status("Reloaded", format!("{name} ({id} -> {new})"));
            eprintln!("warning: {source}");
            target.id = Some(new);
        }
        Err(e) => error(format!("{e}")),
    }
}
