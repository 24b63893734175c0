//! The unhappy paths of a plugin's lifetime, each a scenario that fails
//! when an ownership rule of the boundary is broken: code past the unload
//! deadline, `init` failing after the plugin spawned, wakers of an unloaded
//! plugin kept by another, reloads racing, an emit dropped mid-flight.
//!
//! Every host here runs in strict unload mode: an entry into an unloaded
//! plugin's code aborts the test process. The test command also runs this
//! binary under valgrind, which reports any read of freed host memory (the
//! service table of a plugin whose code still runs, for instance).
//!
//! Past 400 lines for one job: one scenario per unhappy path, run together
//! under valgrind and strict mode by the test command.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{Basic, current_thread, fresh_copy, multi_thread};
use horizon_plugin_host::{LoadError, PluginHost, ReloadError, UnloadError};
use serde_json::json;

fn strict_host(rt: &tokio::runtime::Runtime, unload_timeout: Duration) -> PluginHost {
    PluginHost::builder(rt.handle().clone())
        .unload_timeout(unload_timeout)
        .strict_unload(true)
        .build()
}

/// A task awaiting a blocking job that outlives the unload deadline: the
/// library and the service table stay alive, and the job's completion
/// (which wakes the task through the table) reads no freed memory.
#[test]
fn a_blocking_job_past_the_deadline_keeps_the_table_alive() {
    let rt = multi_thread();
    let host = strict_host(&rt, Duration::from_millis(100));
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        assert_eq!(
            basic.run("detached_blocking", 3000).await,
            json!("blocking")
        );
        let err = host.unload(basic.id).await.unwrap_err();
        assert!(
            matches!(err, UnloadError::TasksStillRunning { left: 1, .. }),
            "{err}"
        );
        assert!(host.plugins().is_empty());
        // The job finishes now, wakes its joiner through the table, and the
        // task runs to its end (the job takes 3 s: long enough for a
        // host under valgrind to reach the deadline first).
        tokio::time::sleep(Duration::from_millis(3200)).await;
    });
}

/// A task that blocks its worker inside a poll past the deadline.
#[test]
fn a_task_blocking_in_poll_past_the_deadline_keeps_the_library() {
    let rt = multi_thread();
    let host = strict_host(&rt, Duration::from_millis(50));
    let blocking = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = std::sync::Arc::clone(&blocking);
    host.on("basic:blocking", move |_| notify.notify_one());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        assert_eq!(
            basic.run("blocking_poll", 3000).await,
            json!("blocking in poll")
        );
        // Told from the task itself (a host handler runs inline), not
        // through a task that could queue behind the blocked worker.
        blocking.notified().await;
        let err = host.unload(basic.id).await.unwrap_err();
        assert!(
            matches!(err, UnloadError::TasksStillRunning { .. }),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(3200)).await;
    });
}

/// `Default` spawns a task and a blocking job, then panics: the load fails
/// with the panic's message, and the code it started is stopped (or, past
/// the deadline, left with its library and table alive).
#[test]
fn init_failing_after_a_spawn_stops_the_code_it_started() {
    for (rt, deadline) in [
        (multi_thread(), Duration::from_secs(5)),
        (current_thread(), Duration::from_secs(5)),
        (multi_thread(), Duration::from_millis(1)),
    ] {
        let host = strict_host(&rt, deadline);
        rt.block_on(async {
            let err = host.load(fresh_copy("init-panic")).await.unwrap_err();
            match &err {
                LoadError::Init { name, message, .. } => {
                    assert_eq!(name, "init-panic");
                    assert!(message.contains("config missing"), "{message}");
                }
                other => panic!("expected LoadError::Init, got {other:?}"),
            }
            assert!(host.plugins().is_empty());
            // The spawned loop sleeps through the table every millisecond:
            // stopped (strict mode would abort on its next entry), or alive
            // with its table when the job outlived a 1 ms deadline.
            tokio::time::sleep(Duration::from_millis(60)).await;
            let basic = Basic::load(host.clone()).await;
            assert_eq!(basic.run("spawn", 2).await, json!(4));
            host.shutdown().await;
        });
    }
}

/// A reload onto a build whose `init` panics after it spawned: the reload
/// fails with the panic, the code the new build started is stopped (or,
/// past the deadline, kept with its library and table), and the old copy
/// keeps serving under its id.
#[test]
fn a_failed_reload_stops_what_the_new_build_started_and_keeps_the_old() {
    for (rt, deadline) in [
        (multi_thread(), Duration::from_secs(5)),
        (current_thread(), Duration::from_millis(1)),
    ] {
        let host = strict_host(&rt, deadline);
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            let err = host
                .reload(basic.id, fresh_copy("init-panic"))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("config missing"), "{err}");
            tokio::time::sleep(Duration::from_millis(60)).await;
            let listed = host.plugins();
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert_eq!(listed[0].id, basic.id);
            assert_eq!(basic.run("spawn", 5).await, json!(10));
            host.shutdown().await;
        });
    }
}

/// Plugin A emits; plugin B's handler keeps the waker it was polled with;
/// A is unloaded; B wakes what it kept. That waker must not be A's (its
/// code is unloaded): inline handler polls use a host-owned waker, and a
/// host waker lent through A comes back as the host's.
#[test]
fn wakers_kept_by_another_plugin_outlive_the_emitter() {
    for rt in [multi_thread(), current_thread()] {
        let host = strict_host(&rt, Duration::from_secs(5));
        rt.block_on(async {
            let a = Basic::load(host.clone()).await;
            // B: another copy; `a` collects the replies of both.
            host.load(fresh_copy("basic")).await.unwrap();
            // Both copies run `emit_park`, and both copies' `basic:park`
            // handlers keep each emitter's waker.
            let (report, replies) = a.try_run("emit_park", 0).await;
            assert!(report.is_ok(), "{:?}", report.failures);
            assert_eq!(replies.len(), 2);
            host.unload(a.id).await.unwrap();
            let woken = a.run("wake_parked", 0).await;
            assert_eq!(woken, json!(2), "B kept one waker per emitter");
            host.shutdown().await;
        });
    }
}

/// Two reloads of one id race, then a reload races an unload: exactly one
/// copy serves (or none, when the unload won), every event is answered
/// once, and a second teardown is a no-op.
#[test]
fn reloads_racing_reloads_and_unloads_leave_one_copy() {
    for rt in [multi_thread(), current_thread()] {
        let host = strict_host(&rt, Duration::from_secs(5));
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            let old = basic.id;
            let (r1, r2) = tokio::join!(
                host.reload(old, fresh_copy("basic")),
                host.reload(old, fresh_copy("basic")),
            );
            let (won, lost) = match (r1, r2) {
                (Ok(id), Err(e)) | (Err(e), Ok(id)) => (id, e),
                other => panic!("expected exactly one reload to win: {other:?}"),
            };
            assert!(
                matches!(lost, ReloadError::NotLoaded(id) if id == old),
                "{lost}"
            );
            assert_eq!(host.plugins().len(), 1);
            assert_eq!(host.plugins()[0].id, won);
            for i in 0..20 {
                // `run` asserts exactly one reply.
                assert_eq!(basic.run("spawn", i).await, json!(i * 2));
            }

            let (reloaded, unloaded) =
                tokio::join!(host.reload(won, fresh_copy("basic")), host.unload(won));
            match (&reloaded, &unloaded) {
                (Ok(new), Err(UnloadError::NotLoaded(_))) => {
                    assert_eq!(host.plugins().len(), 1);
                    assert_eq!(host.plugins()[0].id, *new);
                    assert_eq!(basic.run("spawn", 5).await, json!(10));
                }
                (Err(ReloadError::NotLoaded(_)), Ok(())) => {
                    assert!(host.plugins().is_empty());
                }
                other => panic!("expected one of reload and unload to win: {other:?}"),
            }
            assert!(matches!(
                host.unload(won).await,
                Err(UnloadError::NotLoaded(_))
            ));
            host.shutdown().await;
            assert!(host.plugins().is_empty());
        });
    }
}

/// An emit whose handler is still running is dropped by its caller, and
/// the plugin is unloaded around the handler's end: the handler's status
/// (plugin memory) is turned into a host value before the plugin goes.
#[test]
fn a_dropped_emit_frees_nothing_after_unload() {
    for rt in [multi_thread(), current_thread()] {
        let host = strict_host(&rt, Duration::from_secs(5));
        rt.block_on(async {
            // Unloaded while the handler runs.
            let basic = Basic::load(host.clone()).await;
            // The handler runs far longer than the timeout, so that even a
            // runtime stalled by valgrind polls the timeout first.
            let dropped = tokio::time::timeout(
                Duration::from_millis(5),
                basic.try_run("pending_handler", 300),
            )
            .await;
            assert!(
                dropped.is_err(),
                "the emit was dropped before its handler ended"
            );
            host.unload(basic.id).await.unwrap();

            // Unloaded after the handler ended, its result never awaited.
            let basic = Basic::load(host.clone()).await;
            let dropped = tokio::time::timeout(
                Duration::from_millis(5),
                basic.try_run("pending_handler", 200),
            )
            .await;
            assert!(dropped.is_err());
            tokio::time::sleep(Duration::from_millis(300)).await;
            host.unload(basic.id).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
    }
}

/// A plugin leaks a host timer it polled with a waker of its own making
/// (`mem::forget`): the timer fires after unload, and the host, which only
/// calls plugin-made wakers while the plugin is counted as running, does
/// not call into the unloaded plugin (strict mode would abort).
#[test]
fn a_leaked_timer_with_a_plugin_waker_does_not_call_the_unloaded_plugin() {
    for rt in [multi_thread(), current_thread()] {
        let host = strict_host(&rt, Duration::from_secs(5));
        rt.block_on(async {
            let basic = Basic::load(host.clone()).await;
            assert_eq!(basic.run("leak_waker", 30).await, json!(true));
            host.unload(basic.id).await.unwrap();
            tokio::time::sleep(Duration::from_millis(80)).await;
        });
    }
}

/// Strict unload mode does what it says: an entry into an unloaded
/// plugin's code aborts the process, naming the entry point. Shown by
/// calling the unloaded plugin's `on_unload` by hand (the library stays
/// mapped in strict mode), in a child process.
#[test]
fn strict_mode_aborts_on_an_entry_into_an_unloaded_plugin() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "strict_mode_child", "--ignored", "--nocapture"])
        .env("HORIZON_STRICT_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child should abort: {stderr}");
    assert!(
        stderr.contains("horizon strict unload: `on_unload` of an unloaded plugin was called"),
        "the abort names the entry point: {stderr}"
    );
}

#[test]
#[ignore = "child process of strict_mode_aborts_on_an_entry_into_an_unloaded_plugin"]
fn strict_mode_child() {
    if std::env::var_os("HORIZON_STRICT_CHILD").is_none() {
        return;
    }
    let rt = multi_thread();
    let host = strict_host(&rt, Duration::from_secs(5));
    let path = fresh_copy("basic");
    rt.block_on(async {
        let id = host.load(&path).await.unwrap();
        host.unload(id).await.unwrap();
    });
    // SAFETY: the library is a plugin built by this workspace; opening it
    // again returns the mapping strict mode kept.
    let library = unsafe { libloading::Library::new(&path) }.unwrap();
    // SAFETY: the symbol is the plugin's declaration, of this type.
    let declaration = unsafe {
        library
            .get::<*const horizon_plugin_sdk::abi::PluginDeclaration>(b"HORIZON_PLUGIN_DECLARATION")
            .unwrap()
    };
    // SAFETY: a violation on purpose: strict mode must abort inside.
    drop(unsafe { ((**declaration).on_unload)() });
    eprintln!("strict mode did not abort");
}

/// A short race storm (the long one is in `long.rs`): loads, reloads,
/// unloads and emits at random from four tasks, on a strict host.
#[test]
fn race_storm_short() {
    let rt = multi_thread();
    let host = strict_host(&rt, Duration::from_secs(5));
    rt.block_on(common::race_storm(host, Duration::from_millis(1500), 40));
}

/// The plugin's private runtime cannot stop in time (a task of the plugin's
/// own tokio blocks its worker past the 5 s shutdown deadline): `unload`
/// says so, and keeps the library mapped and the table alive.
#[test]
fn a_private_runtime_that_does_not_stop_is_reported() {
    let rt = multi_thread();
    let host = strict_host(&rt, Duration::from_secs(5));
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        basic.run("block_private", 9000).await;
        let err = host.unload(basic.id).await.unwrap_err();
        assert!(
            matches!(err, UnloadError::PrivateRuntimeStuck { .. }),
            "{err}"
        );
        assert!(host.plugins().is_empty());
    });
}

/// A subscription made once unload has begun (by a blocking job the
/// unload waits for) is refused, and the host hands the handler back to the
/// plugin, whose own code drops it during that call.
#[test]
fn a_refused_subscription_is_dropped_by_the_plugin() {
    let rt = multi_thread();
    let host = strict_host(&rt, Duration::from_secs(10));
    let tag = u64::from(std::process::id()) * 1000 + 1;
    let base = std::env::temp_dir().join(format!("horizon-late-{tag}"));
    let (dropped, outcome) = (
        base.with_extension("dropped"),
        base.with_extension("outcome"),
    );
    let _ = std::fs::remove_file(&dropped);
    let _ = std::fs::remove_file(&outcome);
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        assert_eq!(
            basic.run("subscribe_late", tag).await,
            json!("subscribing once unloading")
        );
        host.unload(basic.id).await.unwrap();
    });
    let outcome = std::fs::read_to_string(&outcome).expect("the job wrote its outcome");
    assert!(
        outcome.starts_with("refused") && outcome.contains("being unloaded"),
        "{outcome}"
    );
    assert_eq!(std::fs::read_to_string(&dropped).unwrap(), "dropped");
    let _ = std::fs::remove_file(&dropped);
    let _ = std::fs::remove_file(base.with_extension("outcome"));
}

/// Polls a `load` once (it has then begun, as a task of the host) and drops it.
async fn start_and_drop_load(host: &PluginHost, path: &std::path::Path) {
    let load = host.load(path);
    tokio::pin!(load);
    let pending =
        std::future::poll_fn(|cx| std::task::Poll::Ready(load.as_mut().poll(cx).is_pending()))
            .await;
    assert!(pending, "a load finished at its first poll");
}

/// Waits up to 20 s for `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Dropping a `load` future mid-way does not stop the load: the plugin ends
/// up loaded and listed (and unloaded by `shutdown`), or, when its
/// `on_load` fails, torn down with the task it started; never left running
/// unlisted.
#[test]
fn a_dropped_load_ends_loaded_or_torn_down() {
    for rt in [multi_thread(), current_thread()] {
        let host = strict_host(&rt, Duration::from_secs(5));
        rt.block_on(async {
            start_and_drop_load(&host, &fresh_copy("basic")).await;
            eventually("the dropped load lists its plugin", || {
                host.plugins().len() == 1
            })
            .await;
            let basic = Basic::attach(host.clone(), host.plugins()[0].id);
            assert_eq!(basic.run("spawn", 21).await, json!(42));
            host.shutdown().await;
            assert!(host.plugins().is_empty());

            // `on_load` fails after spawning a task that loops forever.
            start_and_drop_load(&host, &fresh_copy("load-error")).await;
            let metrics = tokio::runtime::Handle::current().metrics();
            // This block_on body is no task; the loop of the failed plugin is.
            eventually("the failed load stops the task it started", || {
                metrics.num_alive_tasks() == 0
            })
            .await;
            assert!(host.plugins().is_empty());
        });
    }
}

/// A `shutdown` that begins while a load runs leaves nothing loaded: the
/// load unloads its plugin again instead of listing it after the shutdown.
#[test]
fn a_load_racing_shutdown_leaves_nothing_loaded() {
    for rt in [multi_thread(), current_thread()] {
        let host = strict_host(&rt, Duration::from_secs(5));
        rt.block_on(async {
            let path = fresh_copy("basic");
            let load = host.load(&path);
            tokio::pin!(load);
            // First poll: the load begins (and, on a busy machine, may
            // even finish before this thread runs on).
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(load.as_mut().poll(cx))).await;
            host.shutdown().await;
            let outcome = match first {
                std::task::Poll::Ready(outcome) => outcome,
                std::task::Poll::Pending => load.await,
            };
            match outcome {
                Err(LoadError::ShutDown { name, .. }) => assert_eq!(name, "basic"),
                // Only if the load finished before the shutdown began.
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
            assert!(host.plugins().is_empty(), "{:?}", host.plugins());
            // The host loads again after a shutdown.
            let basic = Basic::load(host.clone()).await;
            assert_eq!(basic.run("spawn", 21).await, json!(42));
            host.shutdown().await;
        });
    }
}

/// Thread-locals of a plugin used on a host thread (its own
/// `thread_local!`, std's handle of the thread, a pthread key made after
/// another was deleted, a key whose destructor sets its value again):
/// their destructors run when the thread exits while the plugin is loaded
/// (a key's in at most glibc's 4 rounds), and are forgotten at
/// unload, so a host thread that exits afterwards neither calls into the
/// closed library (a crash, and a valgrind error) nor keeps it mapped
/// (glibc keeps a library mapped while destructors it registered are
/// pending). Not strict unless the test command asks: strict mode keeps
/// every library mapped, and here it must be gone.
#[test]
fn plugin_thread_locals_on_a_host_thread_run_at_its_exit_and_never_after_unload() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let path = fresh_copy("basic");
    let basic = rt.block_on(Basic::load_path(host.clone(), path.clone()));
    // Runs the scenario on a thread of its own that entered the host's
    // runtime (`Handle::block_on`), where the handler's first poll runs;
    // the thread exits once `release` says so.
    let on_own_thread = |release: std::sync::mpsc::Receiver<()>| {
        let (basic, handle) = (basic.clone(), rt.handle().clone());
        let (ran, ran_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: `gettid` has no preconditions.
            let tid = unsafe { libc::gettid() };
            ran.send((tid, handle.block_on(basic.run("thread_local", 0))))
                .unwrap();
            let _ = release.recv();
        });
        let (tid, ran_on) = ran_rx.recv().unwrap();
        assert_eq!(ran_on, json!(tid), "the handler ran on the new thread");
        thread
    };

    let (release, wait) = std::sync::mpsc::channel();
    let first = on_own_thread(wait);
    drop(release);
    first.join().unwrap();
    // Its thread-local dropped, and its key's value (the key made after
    // one deleted: only the live key's destructor runs).
    assert_eq!(
        rt.block_on(basic.run("thread_local_drops", 0)),
        json!([1, 1, 0, 4]),
        "[thread-locals dropped, key values dropped, by the deleted key's destructor, \
         by a destructor setting its value again (glibc's 4 rounds)]"
    );

    let (release, wait) = std::sync::mpsc::channel();
    let second = on_own_thread(wait);
    rt.block_on(host.unload(basic.id)).unwrap();
    // Exits after the unload: nothing of the plugin runs.
    release.send(()).unwrap();
    second.join().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapped = maps
        .lines()
        .any(|line| line.split_whitespace().nth(5) == Some(path.to_str().unwrap()));
    if std::env::var_os("HORIZON_STRICT_UNLOAD").is_none() {
        assert!(!mapped, "the unloaded library is unmapped");
    }
    rt.block_on(host.shutdown());
}

/// C code in a plugin whose key destructor registers a thread-exit
/// destructor that sets the key's value again (after the key runner's
/// rounds, on every run): the thread still exits, the key's destructor
/// having run once per allowed run of the runner (4), and the plugin then
/// unloads. Before the cap the runner was armed again without end and the
/// thread never exited.
#[test]
fn a_key_destructor_that_rearms_itself_through_thread_exit_cannot_keep_a_thread_alive() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let basic = rt.block_on(Basic::load(host.clone()));
    let (handle, runner) = (rt.handle().clone(), basic.clone());
    let thread = std::thread::spawn(move || {
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() };
        (tid, handle.block_on(runner.run("looping_key", 0)))
    });
    let (exited, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || exited.send(thread.join().unwrap()).unwrap());
    let (tid, ran) = wait
        .recv_timeout(Duration::from_secs(20))
        .expect("the thread exits");
    // Set on the new thread (where the handler's first poll ran), with no
    // destructor call yet.
    assert_eq!(ran, json!([tid, 0]), "[thread, destructor calls]");
    assert_eq!(rt.block_on(basic.run("looping_key_drops", 0)), json!(4));
    rt.block_on(host.unload(basic.id)).unwrap();
    rt.block_on(host.shutdown());
}

/// A thread-local destructor of the plugin still running on an exiting
/// host thread while the plugin is unloaded (it waits until `shutdown` has
/// dropped the plugin instance and stopped its runtime, then logs through
/// the host table the plugin was given): the plugin's state and the table
/// stay alive until it returns, and its log line arrives. Before boundary
/// 4.5 `shutdown` freed that state under the destructor: the line was lost
/// (the SDK found no host), and a destructor that had read the state just
/// before would have read freed memory. A destructor registered by that
/// one, as it uses a thread-local for the first time, runs under the same
/// gate, and so does an older one of the same plugin, before the key
/// destructor the first armed; it logs after the SDK's logging bridge's
/// own thread-local is gone (that aborted the process: a panic in a
/// thread-local's drop). Strict like every host here (the
/// destructor is not an entry the strict check covers: it runs before the
/// gate closes).
#[test]
fn a_thread_local_destructor_running_during_unload_finds_the_plugin_state() {
    let rt = multi_thread();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&lines);
    let host = PluginHost::builder(rt.handle().clone())
        .strict_unload(true)
        .plugin_log_sink(move |record| sink.lock().unwrap().push(record.message.clone()))
        .build();
    let basic = rt.block_on(Basic::load_path(host.clone(), fresh_copy("basic")));
    // Armed on a host thread that entered the runtime (the handler's first
    // poll runs there); its exit runs the destructor.
    let thread = {
        let (basic, handle) = (basic.clone(), rt.handle().clone());
        std::thread::spawn(move || {
            // SAFETY: `gettid` has no preconditions.
            let tid = unsafe { libc::gettid() };
            let ran_on = handle.block_on(basic.run("slow_thread_local", 0));
            assert_eq!(ran_on, json!(tid), "the handler ran on the new thread");
        })
    };
    let started = std::time::Instant::now();
    while rt.block_on(basic.run("slow_drop_started", 0)) != json!(true) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the destructor never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // `shutdown` runs while the destructor waits; the unload then waits
    // for it before freeing the state and closing the library.
    rt.block_on(host.unload(basic.id)).unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|line| line == "slow thread-local dropped"),
        "the destructor's log line was lost: {lines:?}"
    );
    // The destructor of a thread-local it used first: run under the same
    // gate (handed to glibc, it ran after the gate was released, and its
    // line was lost).
    assert!(
        lines.iter().any(|line| line == "late thread-local dropped"),
        "the late destructor ran after the unload: {lines:?}"
    );
    // An older thread-local of the plugin ran after those two, and before
    // the key destructor armed by the first (glibc's order: every
    // thread-local's destructor before any key's).
    assert!(
        lines
            .iter()
            .any(|line| line == "order probe dropped after 0 key values"),
        "the plugin's thread-locals and keys ran out of order: {lines:?}"
    );
    thread.join().unwrap();
    rt.block_on(host.shutdown());
}
