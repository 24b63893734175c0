//! `horizon`: the plugin author's everyday loop.
//!
//! ```text
//! horizon new <dir>                      a plugin crate that builds, runs and has a test
//! horizon run [--watch] [--emit name=json]... <plugin crate dir | library>...
//! horizon check <library>...
//! ```
//!
//! `run` builds the given plugin crates with cargo, loads them, sends the
//! `--emit` events, then a `server_tick` event every `--tick-ms` (default
//! 1000), and prints every event and log line with the plugin's name. Lines
//! on standard input send more events (`ping 21` sends `ping` with payload
//! `21`). With `--watch` it rebuilds a crate when its sources change and
//! reloads the plugin in place; a failed build leaves the previous build
//! serving. `check` prints what a library declares and whether this host
//! would load it.
//!
//! Exit status, as cargo's: 0 on success, 101 when the command fails (a
//! build or a load that fails, a library `check` finds this host would
//! refuse), 1 for a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horizon_plugin_host::inspect;

mod out;
mod run;
mod scaffold;

use out::{error, failed, status};
use run::RunOptions;

/// Build, run and check Horizon plugins.
#[derive(Parser)]
#[command(
    name = "horizon",
    version,
    about,
    after_help = "Exit status, as cargo's: 0 on success, 101 when the command fails \
                  (a build or a load that fails, a library `check` finds this host \
                  would refuse), 1 for a usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new plugin crate (a handler that uses tokio, and a test).
    New {
        /// The directory to create.
        dir: PathBuf,
        /// The plugin's name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Build plugin crates (or take built libraries), load them and run.
    Run(RunOptions),
    /// Show what a library declares and whether this host would load it.
    Check {
        /// The plugin libraries.
        #[arg(required = true)]
        libraries: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Usage errors exit with 1, as cargo's do (clap's default is 2);
    // `--help` and `--version` print and succeed. A command that fails
    // exits with 101 (`out::failed`).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::New { dir, name } => match scaffold::write(&dir, name.as_deref()) {
            Ok(name) => {
                status("Created", format!("plugin `{name}` in {}", dir.display()));
                status(
                    "Next",
                    format!(
                        "horizon run {0}    (its test: cd {0} && cargo test)",
                        dir.display()
                    ),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                error(e);
                failed()
            }
        },
        Command::Run(options) => run::run_command(options),
        Command::Check { libraries } => check_command(&libraries),
    }
}

fn check_command(libraries: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for library in libraries {
        status("Checking", library.display());
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
        if let Some(sizes) = decl.table_sizes {
            let ours = horizon_plugin_host::TABLE_SIZES;
            println!(
                "      tables: declaration {} bytes, host table {} bytes (this host: {}, {})",
                sizes.declaration, sizes.host_api, ours.declaration, ours.host_api
            );
        }
        for service in &decl.services {
            let state = match (service.provided, service.required) {
                (true, _) => "provided",
                (false, true) => "missing (required: the plugin is refused)",
                (false, false) => "missing (optional: the plugin falls back)",
            };
            println!("     service: {:<15} {state}", service.name);
        }
        match verdict {
            Ok(()) => println!("    loadable: yes"),
            Err(e) => {
                println!("    loadable: no");
                error(e);
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { failed() }
}
