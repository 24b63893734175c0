//! `horizon`: the plugin author's everyday loop.
//!
//! ```text
//! horizon run [--watch] [--seconds N] [--tick-ms N] <plugin crate dir | library>...
//! horizon check <library>...
//! ```
//!
//! `run` builds the given plugin crates with cargo, loads them, sends a
//! `server_tick` event every `--tick-ms` (default 1000), and prints every
//! event and log line with the plugin's name. With `--watch` it rebuilds a
//! crate when its sources change and reloads the plugin in place; a failed
//! build leaves the previous build serving. `check` prints what a library
//! declares and whether this host would load it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime};

use horizon_plugin_host::{Event, PluginHost, PluginId, inspect};

const USAGE: &str = "\
usage: horizon run [--watch] [--seconds N] [--tick-ms N] <plugin crate dir | library>...
       horizon check <library>...";

/// Prints a cargo-style status line: a right-aligned verb, then the message.
fn status(verb: &str, message: impl std::fmt::Display) {
    eprintln!("{verb:>12} {message}");
}

fn error(message: impl std::fmt::Display) {
    eprintln!("error: {message}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run_command(&args[1..]),
        Some("check") => check_command(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            error(format!("expected a command\n{USAGE}"));
            ExitCode::FAILURE
        }
    }
}

fn check_command(libraries: &[String]) -> ExitCode {
    if libraries.is_empty() {
        error(format!("`check` needs a library\n{USAGE}"));
        return ExitCode::FAILURE;
    }
    let mut ok = true;
    for library in libraries {
        status("Checking", library);
        let (decl, verdict) = inspect(library);
        let unknown = || "?".to_owned();
        println!("      plugin: {}", decl.name.unwrap_or_else(unknown));
        println!("         sdk: {}", decl.sdk_version.unwrap_or_else(unknown));
        println!(
            "    boundary: {} (this host: {})",
            decl.abi_version.map_or_else(unknown, |v| v.to_string()),
            horizon_plugin_sdk::abi::ABI_VERSION
        );
        println!(
            "       rustc: {}",
            decl.rustc_version.unwrap_or_else(unknown)
        );
        match verdict {
            Ok(()) => println!("    loadable: yes"),
            Err(e) => {
                println!("    loadable: no");
                error(e);
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
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

struct RunOptions {
    watch: bool,
    seconds: Option<u64>,
    tick: Duration,
    targets: Vec<String>,
}

fn parse_run(args: &[String]) -> Result<RunOptions, String> {
    let mut options = RunOptions {
        watch: false,
        seconds: None,
        tick: Duration::from_millis(1000),
        targets: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("`{flag}` needs a number"))
        };
        match arg.as_str() {
            "--watch" => options.watch = true,
            "--seconds" => options.seconds = Some(number("--seconds")?),
            "--tick-ms" => options.tick = Duration::from_millis(number("--tick-ms")?.max(1)),
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            target => options.targets.push(target.to_owned()),
        }
    }
    if options.targets.is_empty() {
        return Err("`run` needs a plugin crate directory or library".to_owned());
    }
    Ok(options)
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

/// Builds a plugin crate with cargo and returns its `cdylib`.
fn build(dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("build of {} failed", dir.display()));
    }
    let mut library = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if message["reason"] == "compiler-artifact" && is_cdylib {
            library = message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(std::env::consts::DLL_SUFFIX))
                .map(PathBuf::from);
        }
    }
    library.ok_or_else(|| {
        format!(
            "{} builds no `cdylib`: add `crate-type = [\"cdylib\"]` to its [lib]",
            dir.display()
        )
    })
}

/// Copies a library to a fresh path, so a rebuild never overwrites a file
/// that is loaded (and the same file is never loaded twice).
fn fresh_copy(library: &Path) -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("horizon-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let stem = library
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let dest = dir.join(format!(
        "{stem}-{}{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::env::consts::DLL_SUFFIX
    ));
    std::fs::copy(library, &dest)
        .map_err(|e| format!("could not copy {}: {e}", library.display()))?;
    Ok(dest)
}

fn run_command(args: &[String]) -> ExitCode {
    let options = match parse_run(args) {
        Ok(options) => options,
        Err(e) => {
            error(format!("{e}\n{USAGE}"));
            return ExitCode::FAILURE;
        }
    };
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
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run(options));
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("horizon-run-{}", std::process::id())),
    );
    code
}

async fn run(options: RunOptions) -> ExitCode {
    let host = PluginHost::new(tokio::runtime::Handle::current());
    host.on_any(|event: Event| {
        let from = event.source().unwrap_or("host");
        println!(
            "[{from}] {} {}",
            event.name(),
            String::from_utf8_lossy(event.payload())
        );
    });

    let mut targets = Vec::new();
    for given in &options.targets {
        let path = PathBuf::from(given);
        let target = if path.is_dir() {
            status("Building", path.display());
            let stamp = source_stamp(&path);
            match tokio::task::spawn_blocking({
                let path = path.clone();
                move || build(&path)
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
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    error(e);
                    return ExitCode::FAILURE;
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
        let loaded = match fresh_copy(&target.library) {
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
                return ExitCode::FAILURE;
            }
        }
    }

    let deadline = options
        .seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut ticks = tokio::time::interval(options.tick);
    let mut watch = tokio::time::interval(Duration::from_millis(300));
    let mut tick = 0u64;
    loop {
        let until_end = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until_end => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = ticks.tick() => {
                tick += 1;
                match host.emit("server_tick", &serde_json::json!({ "tick": tick })).await {
                    Ok(report) => report.failures.iter().for_each(|f| eprintln!("warning: {f}")),
                    Err(e) => error(e),
                }
            }
            _ = watch.tick(), if options.watch => {
                for target in &mut targets {
                    rebuild_if_changed(&host, target).await;
                }
            }
        }
    }
    status("Stopping", format!("{} plugin(s)", host.plugins().len()));
    host.shutdown().await;
    ExitCode::SUCCESS
}

/// The name of a loaded plugin (empty if it is gone).
fn plugin_name(host: &PluginHost, id: PluginId) -> String {
    host.plugins()
        .into_iter()
        .find(|p| p.id == id)
        .map(|p| p.name)
        .unwrap_or_default()
}

async fn rebuild_if_changed(host: &PluginHost, target: &mut Target) {
    let (Some(dir), Some(id)) = (target.crate_dir.clone(), target.id) else {
        return;
    };
    let stamp = source_stamp(&dir);
    if stamp <= target.stamp {
        return;
    }
    target.stamp = stamp;
    status("Rebuilding", dir.display());
    let built = tokio::task::spawn_blocking(move || build(&dir))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let name = plugin_name(host, id);
    let library = match built.and_then(|library| fresh_copy(&library).map(|copy| (library, copy))) {
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
