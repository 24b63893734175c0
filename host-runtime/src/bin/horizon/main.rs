//! `horizon`: the plugin author's everyday loop.
//!
//! ```text
//! horizon new <dir>                      a plugin crate that builds, runs and has a test
//! horizon run [--watch] [--stats] [--emit name=json]... <plugin crate dir | library>...
//! horizon check [--trust-key <public key>]... <library>...
//! ```
//!
//! `run` builds the given plugin crates with cargo, loads them, sends the
//! `--emit` events, then a `server_tick` event every `--tick-ms` (default
//! 1000), and prints every event and log line with the plugin's name. Lines
//! on standard input send more events (`ping 21` sends `ping` with payload
//! `21`). With `--watch` it rebuilds a crate when its sources change and
//! reloads the plugin in place; a failed build leaves the previous build
//! serving. With `--stats` it prints a line per plugin every
//! `--stats-every` seconds (default 5): tasks, handler calls per second,
//! time spent polling it, slow polls, panics. `check` prints what a library declares and whether this host
//! would load it. Both take the trust policy's options: `--trust-key
//! <minisign public key file>` (repeatable) loads only libraries signed by
//! one of those keys (the signature beside the library, as
//! `<library>.minisig`), `--trust-sha256 <digest>` only those with one of
//! those digests; without either, any file is loaded. Files other users
//! can write are refused unless `--allow-loose-permissions`.
//!
//! Exit status, as cargo's: 0 on success, 101 when the command fails (a
//! build or a load that fails, a library `check` finds this host would
//! refuse), 1 for a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horizon_plugin_host::{LoadError, Sha256, TrustKey, TrustPolicy, inspect_with};

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
        #[command(flatten)]
        trust: TrustArgs,
        /// The plugin libraries.
        #[arg(required = true)]
        libraries: Vec<PathBuf>,
    },
}

/// The trust policy's options, for `run` and `check`.
#[derive(clap::Args)]
pub(crate) struct TrustArgs {
    /// Load only libraries signed by this minisign public key (repeatable);
    /// the signature is beside the library, as `<library>.minisig`.
    #[arg(long = "trust-key", value_name = "PUBLIC_KEY_FILE")]
    keys: Vec<PathBuf>,
    /// Load only libraries with this SHA-256 digest (repeatable).
    #[arg(long = "trust-sha256", value_name = "DIGEST", conflicts_with = "keys")]
    digests: Vec<Sha256>,
    /// Also load libraries that other users can write, or that are in
    /// directories they can write.
    #[arg(long)]
    allow_loose_permissions: bool,
}

impl TrustArgs {
    /// The policy these options ask for.
    pub(crate) fn policy(&self) -> Result<TrustPolicy, String> {
        let policy = if !self.keys.is_empty() {
            let keys = self.keys.iter().map(TrustKey::from_file);
            TrustPolicy::signed_by(
                keys.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
            )
        } else if !self.digests.is_empty() {
            TrustPolicy::sha256_allowlist(self.digests.iter().copied())
        } else {
            TrustPolicy::any_file()
        };
        Ok(policy.allow_loose_permissions(self.allow_loose_permissions))
    }

    /// Whether the host opens a checked copy (so no copy of ours is needed).
    pub(crate) fn copies(&self) -> bool {
        !self.keys.is_empty() || !self.digests.is_empty()
    }
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
        Command::Check { trust, libraries } => match trust.policy() {
            Ok(policy) => check_command(&policy, &libraries),
            Err(e) => {
                error(e);
                failed()
            }
        },
    }
}

fn check_command(policy: &TrustPolicy, libraries: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for library in libraries {
        status("Checking", library.display());
        let (decl, verdict) = inspect_with(policy, library);
        let verdict = match (&decl.trust, verdict) {
            (Some(decision), verdict) => {
                println!("       trust: {decision}");
                verdict
            }
            (None, Err(e @ LoadError::Untrusted { .. })) => {
                // Not opened: nothing of it runs.
                println!("       trust: refused");
                println!("    loadable: no");
                error(e);
                ok = false;
                continue;
            }
            (None, verdict) => verdict,
        };
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
