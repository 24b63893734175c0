//! `horizon new`: a plugin crate that builds, runs and is tested at once.

use std::path::{Path, PathBuf};

/// This checkout's `sdk/` and `host-runtime/`, if the command runs where it
/// was built (the scaffold then depends on them by path); otherwise the
/// published versions.
fn dependency(folder: &str, package: &str, extra: &str) -> String {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(folder);
    match std::fs::canonicalize(&checkout) {
        Ok(path) if path.join("Cargo.toml").is_file() => {
            format!(
                "{package} = {{ path = {:?}{extra} }}",
                path.display().to_string()
            )
        }
        _ => format!(
            "{package} = {{ version = \"{}\"{extra} }}",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect()
}

/// Writes the crate into `dir` (which must not exist or be empty) and
/// returns the plugin's name.
pub fn write(dir: &Path, name: Option<&str>) -> Result<String, String> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("cannot name a plugin after {}", dir.display()))?
            .to_owned(),
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a valid crate name: use letters, digits, `-` and `_`, starting with a letter (or pass --name)"
        ));
    }
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!("{} exists and is not empty", dir.display()));
    }
    let files: [(PathBuf, String); 4] = [
        (dir.join("Cargo.toml"), manifest(&name)),
        (dir.join("src/lib.rs"), library(&name)),
        (dir.join("tests/plugin.rs"), test(&name)),
        (dir.join(".gitignore"), "/target\n".to_owned()),
    ];
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| format!("could not write {}: {e}", path.display()))?;
    }
    Ok(name)
}

fn manifest(name: &str) -> String {
    let sdk = dependency("sdk", "horizon-plugin-sdk", "");
    let host = dependency(
        "host-runtime",
        "horizon-plugin-host",
        ", default-features = false, features = [\"testing\"]",
    );
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A plugin is a dynamic library the host loads.
crate-type = ["cdylib"]

[dependencies]
{sdk}
serde = {{ version = "1", features = ["derive"] }}
tokio = {{ version = "1", features = ["time"] }}
tracing = "0.1"

[dev-dependencies]
# Loads this plugin into a real host in `cargo test` (tests/plugin.rs).
{host}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#
    )
}

fn library(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r#"//! The `{name}` plugin: answers `{name}:ping` with `{name}:pong`, twice the
//! number, after a short tokio sleep.

use std::time::Duration;

use horizon_plugin_sdk::prelude::*;
use serde::{{Deserialize, Serialize}};

/// What `{name}:pong` carries.
#[derive(Serialize, Deserialize)]
pub struct Pong {{
    pub doubled: u64,
}}

#[derive(Default)]
pub struct {ty};

#[horizon_plugin]
impl Plugin for {ty} {{
    const NAME: &'static str = "{name}";

    async fn on_load(&mut self, ctx: PluginContext) -> Result<(), PluginError> {{
        let out = ctx.clone();
        ctx.on("{name}:ping", move |event: Event| {{
            let out = out.clone();
            async move {{
                let n: u64 = event.json()?;
                tracing::info!(n, "ping");
                // Plain tokio: it runs on the host's runtime.
                tokio::time::sleep(Duration::from_millis(10)).await;
                out.emit("{name}:pong", &Pong {{ doubled: n * 2 }}).await
            }}
        }})?;
        Ok(())
    }}
}}
"#
    )
}

fn test(name: &str) -> String {
    let crate_name = name.replace('-', "_");
    format!(
        r#"//! Builds this plugin, loads it into a real host and talks to it.

use std::time::Duration;

use horizon_plugin_host::testing::TestHost;

#[derive(serde::Deserialize)]
struct Pong {{
    doubled: u64,
}}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn {crate_name}_answers_a_ping() {{
    let host = TestHost::new();
    host.load_crate(env!("CARGO_MANIFEST_DIR")).await.unwrap();

    host.emit("{name}:ping", &21u64).await.unwrap();
    let pong = host
        .next_event("{name}:pong", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(pong.json::<Pong>().unwrap().doubled, 42);
    assert!(
        host.logs().iter().any(|line| line.message.contains("ping")),
        "the plugin's log: {{:?}}",
        host.logs()
    );
    host.shutdown().await;
}}
"#
    )
}
