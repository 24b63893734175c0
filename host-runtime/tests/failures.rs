//! Bad input gets a clear error and the host lives on: files that are not
//! plugins, another boundary version, `on_load` failing or panicking,
//! handlers failing or panicking. Plus the control that proves the problem
//! the SDK solves is real.

mod common;

use common::{Basic, block_on_plain_thread, current_thread, fixture, fresh_copy, multi_thread};
use horizon_plugin_host::{FailureKind, LoadError, PluginHost, UnloadError};
use serde_json::json;

#[test]
fn control_plain_tokio_in_a_cdylib_has_no_reactor_but_the_sdk_works() {
    let rt = multi_thread();
    rt.block_on(async {
        // From a host worker thread, inside the host's runtime.
        let message = tokio::spawn(async {
            // SAFETY: loading runs the fixture's initialisers, which are
            // plain Rust ones (a test library of this repository).
            let lib = unsafe { libloading::Library::new(fixture("no-sdk")) }.unwrap();
            // SAFETY: the fixture exports this function with this signature.
            let f = unsafe {
                lib.get::<unsafe extern "C" fn(*mut u8, usize) -> usize>(b"control_tokio_spawn")
            }
            .unwrap();
            let mut buf = vec![0u8; 512];
            // SAFETY: `buf` is valid for 512 bytes.
            let n = unsafe { f(buf.as_mut_ptr(), buf.len()) };
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .unwrap();
        assert!(
            message.contains("there is no reactor running"),
            "the control did not hit the no-reactor panic: {message:?}"
        );

        // The same `tokio::spawn` under `#[horizon_plugin]` works.
        let host = PluginHost::new(tokio::runtime::Handle::current());
        let basic = Basic::load(host.clone()).await;
        let doubled = tokio::spawn(async move { basic.run("spawn", 21).await })
            .await
            .unwrap();
        assert_eq!(doubled, json!(42));
        host.shutdown().await;
    });
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let path = fresh_copy("basic").with_file_name("not-a-library.so");
    std::fs::write(&path, b"this is text, not ELF").unwrap();
    let err = rt.block_on(host.load(&path)).unwrap_err();
    assert!(matches!(err, LoadError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-library.so"), "{err}");

    let err = rt.block_on(host.load("/no/such/plugin.so")).unwrap_err();
    assert!(matches!(err, LoadError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("/no/such/plugin.so"), "{err}");
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let path = fixture("no-sdk");
    let err = rt.block_on(host.load(&path)).unwrap_err();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("is not a Horizon plugin") && text.contains("libfixture_no_sdk"),
        "{text}"
    );
    assert!(host.plugins().is_empty());
}

/// A plugin built by a newer SDK of this boundary version (its declaration
/// and its view of the host table one field longer) loads where it can:
/// its longer tables agree with this host's on the fields both know. But
/// it needs `teleport`, a service appended after this host's SDK, so it
/// is refused before any call (each of its functions aborts), naming the
/// service and both SDK versions.
#[test]
fn a_plugin_needing_a_service_this_host_lacks_is_refused_before_any_call() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let err = rt.block_on(host.load(fixture("newer-sdk"))).unwrap_err();
    match &err {
        LoadError::MissingService {
            service,
            plugin_sdk,
            host_sdk,
            ..
        } => {
            assert_eq!(service, "teleport");
            assert_eq!(plugin_sdk, "0.99.0");
            assert_eq!(host_sdk, horizon_plugin_sdk::abi::SDK_VERSION);
        }
        other => panic!("expected MissingService, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade the host"), "{err}");
    let (declaration, verdict) = horizon_plugin_host::inspect(fixture("newer-sdk"));
    assert!(verdict.is_err());
    let teleport = declaration
        .services
        .iter()
        .find(|s| s.name == "teleport")
        .expect("listed");
    assert!(teleport.required && !teleport.provided);
    let sizes = declaration.table_sizes.expect("read");
    assert!(sizes.host_api > horizon_plugin_host::TABLE_SIZES.host_api);
    assert!(host.plugins().is_empty());
}

#[test]
fn a_plugin_of_another_boundary_version_is_refused_before_any_call() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    // Every function of this fixture aborts the process: reaching the
    // assertion proves none was called.
    let err = rt.block_on(host.load(fixture("wrong-abi"))).unwrap_err();
    match &err {
        LoadError::AbiMismatch { plugin, host, .. } => {
            assert_eq!(*plugin, 999);
            assert_eq!(*host, horizon_plugin_sdk::abi::ABI_VERSION);
        }
        other => panic!("expected AbiMismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("999")
            && text.contains(&format!("version {}", horizon_plugin_sdk::abi::ABI_VERSION)),
        "{text}"
    );
}

#[test]
fn on_load_error_and_panic_are_reported_and_the_host_lives_on() {
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;

            let err = host.load(fresh_copy("load-error")).await.unwrap_err();
            match &err {
                LoadError::OnLoad { name, message, .. } => {
                    assert_eq!(name, "load-error");
                    assert_eq!(message, "the database is unreachable");
                }
                other => panic!("expected OnLoad, got {other:?}"),
            }
            assert!(err.to_string().contains("load-error"), "{err}");

            let err = host.load(fresh_copy("load-panic")).await.unwrap_err();
            match &err {
                LoadError::OnLoadPanicked { name, message, .. } => {
                    assert_eq!(name, "load-panic");
                    assert!(message.contains("config file missing"), "{message}");
                }
                other => panic!("expected OnLoadPanicked, got {other:?}"),
            }

            // Neither failed plugin is listed; the good one still serves.
            let names: Vec<String> = host.plugins().into_iter().map(|p| p.name).collect();
            assert_eq!(names, ["basic"]);
            assert_eq!(basic.run("spawn", 5).await, json!(10));
            host.shutdown().await;
        });
    }
}

#[test]
fn handler_error_and_panic_are_reported_and_other_plugins_keep_serving() {
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::new(rt.handle().clone());
        rt.block_on(async {
            let first = Basic::load(host.clone()).await;
            let second = Basic::load(host.clone()).await;

            let (report, replies) = first.try_run("fail", 0).await;
            assert!(replies.is_empty());
            // Both copies subscribe to `basic:run`: both failed.
            assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
            for failure in &report.failures {
                assert_eq!(failure.kind, FailureKind::Failed("scenario asked to fail".into()));
                assert_eq!(failure.subscriber, "basic");
                assert!(failure.to_string().contains("scenario asked to fail"));
            }

            let (report, _) = first.try_run("panic", 0).await;
            assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
            for failure in &report.failures {
                assert!(
                    matches!(&failure.kind, FailureKind::Panicked(m) if m.contains("scenario asked to panic")),
                    "{failure}"
                );
            }

            // A panicking host handler is reported too.
            host.on("host:boom", |_| panic!("host handler exploded"));
            let report = host.emit("host:boom", &()).await.unwrap();
            assert!(matches!(&report.failures[0].kind, FailureKind::Panicked(m) if m.contains("exploded")));

            // Both plugins keep serving.
            let (report, replies) = second.try_run("spawn", 4).await;
            assert!(report.is_ok(), "{:?}", report.failures);
            assert_eq!(report.delivered, 2, "both plugin handlers ran");
            assert_eq!(replies, [json!(8), json!(8)], "both plugins answered");
            host.shutdown().await;
        });
    }
}

#[test]
fn the_same_file_cannot_be_loaded_twice_at_once() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let path = fresh_copy("basic");
        let id = host.load(&path).await.unwrap();
        let err = host.load(&path).await.unwrap_err();
        assert!(matches!(err, LoadError::Init { .. }), "{err:?}");
        assert!(err.to_string().contains("already loaded"), "{err}");
        // After an unload the same file loads again.
        host.unload(id).await.unwrap();
        let id = host.load(&path).await.unwrap();
        host.unload(id).await.unwrap();
        assert!(matches!(
            host.unload(id).await,
            Err(UnloadError::NotLoaded(_))
        ));
    });
}

#[test]
fn plugins_lists_name_versions_and_path() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        let list = host.plugins();
        assert_eq!(list.len(), 1);
        let info = &list[0];
        assert_eq!(info.id, basic.id);
        assert_eq!(info.name, "basic");
        assert_eq!(info.sdk_version, env!("CARGO_PKG_VERSION"));
        assert!(
            info.rustc_version.starts_with("rustc "),
            "{}",
            info.rustc_version
        );
        assert!(info.path.exists());
        host.shutdown().await;
        assert!(host.plugins().is_empty());
        // The host keeps working after a shutdown: it loads and serves again.
        let again = Basic::load(host.clone()).await;
        assert_eq!(again.run("spawn", 21).await, json!(42));
        assert_eq!(host.plugins().len(), 1);
        host.shutdown().await;
    });
}

#[test]
fn a_declaration_with_a_wrong_magic_number_is_refused() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let err = rt.block_on(host.load(fixture("bad-magic"))).unwrap_err();
    match &err {
        LoadError::BadMagic { found, .. } => assert_eq!(*found, 0x0BAD_F00D_DEAD_BEEF),
        other => panic!("expected BadMagic, got {other:?}"),
    }
    assert!(err.to_string().contains("0x0badf00ddeadbeef"), "{err}");
}

#[test]
fn a_truncated_declaration_is_refused_before_it_is_read() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let err = rt.block_on(host.load(fixture("truncated"))).unwrap_err();
    assert!(matches!(err, LoadError::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    let expected = size_of::<horizon_plugin_sdk::abi::PluginDeclaration>().to_string();
    assert!(
        text.contains("truncated") && text.contains("24 bytes") && text.contains(&expected),
        "{text}"
    );
}

/// A plugin that names the SDK `sdk` in its `Cargo.toml` (and has no tokio
/// dependency) builds and runs: the attribute's expansion names the SDK the
/// way the plugin crate does.
#[test]
fn a_plugin_with_the_sdk_under_another_name_runs() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    let pongs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&pongs);
    host.on("renamed:pong", move |event| {
        sink.lock()
            .unwrap()
            .push(event.json::<(u64, String)>().unwrap());
    });
    rt.block_on(async {
        host.load(common::fresh_copy("renamed-sdk")).await.unwrap();
        let report = host.emit("renamed:ping", &21u64).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.failures);
        host.shutdown().await;
    });
    assert_eq!(*pongs.lock().unwrap(), [(42, "sleep".to_owned())]);
}

/// A handler that never finishes: the emit returns by the host's handler
/// deadline, from a task and from a thread outside the runtime alike, with
/// that handler reported as timed out and named; the handler is aborted,
/// the plugin keeps serving other events, and timeouts in a row count
/// toward quarantine.
#[test]
fn a_handler_that_never_finishes_times_out_and_the_plugin_keeps_serving() {
    use std::time::{Duration, Instant};
    for rt in [multi_thread(), current_thread()] {
        let host = PluginHost::builder(rt.handle().clone())
            .handler_timeout(Duration::from_millis(200))
            .quarantine_after(2)
            .build();
        let basic = rt.block_on(Basic::load(host.clone()));
        let check = |report: &horizon_plugin_host::EmitReport, took: Duration| {
            assert!(
                took >= Duration::from_millis(200) && took < Duration::from_secs(5),
                "the emit took {took:?}"
            );
            assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
            let failure = &report.failures[0];
            assert!(
                matches!(failure.kind, FailureKind::TimedOut(_)),
                "{failure}"
            );
            assert_eq!(failure.plugin, Some(basic.id));
            let text = failure.to_string();
            assert!(
                text.contains("plugin `basic`") && text.contains("timed out"),
                "{text}"
            );
        };
        rt.block_on(async {
            let started = Instant::now();
            let (report, replies) = basic.try_run("hang", 0).await;
            check(&report, started.elapsed());
            assert!(replies.is_empty());
            assert!(report.quarantined.is_empty());
            // Still serving; a success resets the count of failures.
            assert_eq!(basic.run("spawn", 21).await, json!(42));
        });
        // From a thread outside the runtime (its own executor), while this
        // thread drives the runtime (a current-thread one runs only then).
        let started = Instant::now();
        let (done, outcome) = tokio::sync::oneshot::channel();
        let plain = basic.clone();
        std::thread::spawn(move || {
            let _ = done.send(block_on_plain_thread(plain.try_run("hang", 0)));
        });
        let (report, _) = rt.block_on(outcome).unwrap();
        check(&report, started.elapsed());
        // A timeout too long for the clock means no deadline, not a panic.
        let unbounded = PluginHost::builder(rt.handle().clone())
            .handler_timeout(Duration::MAX)
            .build();
        rt.block_on(async {
            let other = Basic::load(unbounded.clone()).await;
            assert_eq!(other.run("helper", 5).await["spawned"], json!(6));
            unbounded.shutdown().await;
        });
        rt.block_on(async {
            // The second timeout in a row puts the plugin in quarantine.
            let (report, _) = basic.try_run("hang", 0).await;
            assert_eq!(report.quarantined, vec![basic.id]);
            host.shutdown().await;
            assert!(host.plugins().is_empty());
        });
    }
}
