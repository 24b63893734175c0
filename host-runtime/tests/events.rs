//! Codecs, typed events and calls through a real plugin (the `events`
//! fixture, and `basic` as a second plugin calling it), on both runtime
//! flavours, from a worker, the `block_on` thread and a plain thread.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Basic, block_on_plain_thread, current_thread, fresh_copy, multi_thread};
use horizon_plugin_host::{CallError, Codec, Event, FailureKind, PluginHost, PluginId, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The fixture's types, declared again on this side: same name, codec and
/// shape is all a typed event needs.
#[derive(Serialize, Deserialize, TypedEvent, Debug, Clone, PartialEq)]
#[event(name = "player:moved", codec = postcard)]
struct PlayerMoved {
    player: u64,
    x: f32,
    y: f32,
    name: String,
}

#[derive(Serialize, Deserialize, TypedEvent, Debug)]
#[event(name = "events:typed-seen")]
struct TypedSeen {
    moved: PlayerMoved,
    copy: u64,
}

#[derive(Serialize, Deserialize, TypedEvent)]
#[event(name = "events:price", codec = postcard, answer = u64)]
struct Price {
    item: String,
}

#[derive(Serialize, Deserialize, TypedEvent)]
#[event(name = "events:ask", answer = String)]
struct Ask {
    item: String,
}

/// The same call name with an answer of another type.
#[derive(Serialize, Deserialize, TypedEvent)]
#[event(name = "events:price", codec = postcard, answer = String)]
struct PriceAsText {
    item: String,
}

/// The same call name with a request of another type.
#[derive(Serialize, Deserialize, TypedEvent)]
#[event(name = "events:price", codec = postcard, answer = u64)]
struct PriceById {
    item: u64,
}

/// Every event the host got, by name.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Event>>>);

impl Seen {
    fn attach(host: &PluginHost) -> Seen {
        let seen = Seen::default();
        let log = seen.clone();
        host.on_any(move |event| log.0.lock().unwrap().push(event));
        seen
    }

    fn take(&self, name: &str) -> Vec<Event> {
        let mut all = self.0.lock().unwrap();
        let (taken, kept) = all.drain(..).partition(|e| e.name() == name);
        *all = kept;
        taken
    }
}

async fn load_events(host: &PluginHost) -> PluginId {
    host.load(fresh_copy("events")).await.expect("events loads")
}

fn moved() -> PlayerMoved {
    PlayerMoved {
        player: 42,
        x: 1.5,
        y: -3.25,
        name: "ann".to_owned(),
    }
}

/// Every codec through the plugin and back; typed and untyped handlers of
/// one event both get it; a malformed payload is a failure in the report.
async fn codecs_round_trip(host: &PluginHost) {
    let seen = Seen::attach(host);
    let id = load_events(host).await;
    for codec in [Codec::Postcard, Codec::Json] {
        let event = Event::encode("player:moved", &moved(), codec).unwrap();
        let report = host.send(event.clone()).await;
        assert!(report.is_ok(), "{codec}: {report:?}");
        // The typed handler, the untyped one, and this test's `on_any`.
        assert_eq!(report.delivered, 3, "{codec}");
        let typed = seen.take("events:typed-seen");
        assert_eq!(typed.len(), 1, "{codec}");
        assert_eq!(typed[0].codec(), Codec::Json);
        assert_eq!(typed[0].decode::<TypedSeen>().unwrap().moved, moved());
        let untyped = seen.take("events:untyped-seen");
        assert_eq!(untyped[0].codec(), codec);
        assert_eq!(untyped[0].payload(), event.payload());
        assert_eq!(untyped[0].decode::<PlayerMoved>().unwrap(), moved());
        assert_eq!(untyped[0].source(), Some("events"));
    }
    // Typed on the host side too: `emit_event` and `on_event`.
    let got = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&got);
    host.on_event(move |moved: PlayerMoved| log.lock().unwrap().push(moved));
    let report = host.emit_event(&moved()).await.unwrap();
    assert_eq!((report.delivered, report.is_ok()), (4, true), "{report:?}");
    assert_eq!(*got.lock().unwrap(), [moved()]);
    seen.take("events:typed-seen");
    seen.take("events:untyped-seen");

    let raw = Event::raw("events:raw", &[1, 2, 3, 0, 255]);
    assert!(host.send(raw).await.is_ok());
    let echo = seen.take("events:raw-echo");
    assert_eq!(echo[0].codec(), Codec::Raw);
    assert_eq!(echo[0].payload(), [255, 0, 3, 2, 1]);

    // Cut short: the typed handlers (the plugin's and the host's) reject
    // it, naming event, type and codec; the untyped ones still get it.
    let good = Event::typed(&moved()).unwrap();
    let wire = good.wire_bytes();
    let cut = Event::from_wire_bytes("player:moved", wire[..wire.len() - 2].to_vec());
    let report = host.send(cut).await;
    assert_eq!(report.failures.len(), 2, "{report:?}");
    for failure in &report.failures {
        let FailureKind::Rejected(message) = &failure.kind else {
            panic!("{failure}");
        };
        assert!(
            message.contains("event `player:moved`")
                && message.contains("PlayerMoved")
                && message.contains("(postcard)"),
            "{message}"
        );
    }
    assert!(report.failures.iter().any(|f| f.plugin == Some(id)));
    assert_eq!(report.delivered, 2, "the untyped handler and `on_any`");
    host.unload(id).await.unwrap();
}

/// Every answer and every error of a call, from the host and from the
/// plugin itself (through the host).
async fn calls_answer(host: &PluginHost) {
    let id = load_events(host).await;
    let price = |item: &str| Price {
        item: item.to_owned(),
    };
    assert_eq!(host.call(&price("sword")).await.unwrap(), 150);
    // Pending at its first poll: continues as a task of the plugin.
    assert_eq!(host.call(&price("later")).await.unwrap(), 2);
    match host.call(&price("fail")).await {
        Err(CallError::Handler(f)) => {
            assert_eq!(f.kind, FailureKind::Failed("out of stock".to_owned()));
            assert_eq!(f.plugin, Some(id));
        }
        other => panic!("{other:?}"),
    }
    match host.call(&price("panic")).await {
        Err(CallError::Handler(f)) => {
            assert!(
                matches!(&f.kind, FailureKind::Panicked(m) if m.contains("on fire")),
                "{f}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A request that does not decode in the plugin.
    match host.call(&PriceById { item: 3 }).await {
        Err(CallError::Handler(f)) => {
            assert!(
                matches!(&f.kind, FailureKind::Rejected(m)
                    if m.contains("`events:price`") && m.contains("Price") && m.contains("postcard")),
                "{f}"
            );
        }
        other => panic!("{other:?}"),
    }
    // An answer that does not decode here.
    let err = host
        .call(&PriceAsText {
            item: "sword".to_owned(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Decode(e) if e.to_string().contains("String")),
        "{err}"
    );
    // No such name.
    #[derive(Serialize, Deserialize, TypedEvent)]
    #[event(name = "nobody:answers", answer = ())]
    struct Nobody;
    assert!(
        matches!(host.call(&Nobody).await, Err(CallError::NoHandler(n)) if n == "nobody:answers")
    );
    // The plugin calls (itself, through the host), and sees the errors.
    let ask = |item: &str| Ask {
        item: item.to_owned(),
    };
    assert_eq!(host.call(&ask("sword")).await.unwrap(), "price 150");
    let failed = host.call(&ask("fail")).await.unwrap();
    assert!(
        failed.contains("error:") && failed.contains("out of stock"),
        "{failed}"
    );
    // A second answering handler for one name was refused at load.
    let second = host.call(&ask("second-answer")).await.unwrap();
    assert!(
        second.contains("answers `events:price` already"),
        "{second}"
    );
    // Untyped: `call_untyped` with a JSON request gets a postcard answer.
    let answer = host
        .call_untyped(Event::encode("events:price", &price("sword"), Codec::Postcard).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.codec(), Codec::Postcard);
    assert_eq!(answer.decode::<u64>().unwrap(), 150);
    let stats = host.plugin_stats(id).unwrap();
    assert!(
        stats.handler_calls >= 11 && stats.handler_failures >= 4,
        "{stats:?}"
    );
    host.unload(id).await.unwrap();
    assert!(matches!(
        host.call(&price("sword")).await,
        Err(CallError::NoHandler(_))
    ));
}

/// The fixture's types of its synchronous handlers, declared again here.
#[derive(Serialize, Deserialize, TypedEvent, Debug, Clone, PartialEq)]
#[event(name = "events:sync-moved", codec = postcard)]
struct SyncMoved {
    player: u64,
    x: f32,
    name: String,
}

#[derive(Serialize, Deserialize, TypedEvent, Debug, Default, PartialEq)]
#[event(name = "events:sync-seen")]
struct SyncSeen {
    moved: Vec<SyncMoved>,
    raw: Vec<(String, Vec<u8>)>,
    in_runtime: Vec<bool>,
}

/// Synchronous handlers (`on_event_sync`, `on_sync`): each event is taken
/// by the end of the emit, decoded in any codec; an error, a panic and a
/// payload that does not decode are each their own failure in the report,
/// and the handlers go on taking events after them; every call ran in the
/// plugin's private runtime's context.
async fn sync_handlers(host: &PluginHost) {
    let seen = Seen::attach(host);
    let id = load_events(host).await;
    let moved = |player, x: f32| SyncMoved {
        player,
        x,
        name: format!("p{player}"),
    };
    for codec in [Codec::Postcard, Codec::Json] {
        let event = Event::encode(SyncMoved::NAME, &moved(1, 2.5), codec).unwrap();
        let report = host.send(event).await;
        assert!(
            report.is_ok() && report.delivered == 2,
            "{codec}: {report:?}"
        );
    }
    let report = host.emit_event(&moved(2, -1.0)).await.unwrap();
    match &report.failures[..] {
        [f] => assert!(
            matches!(&f.kind, FailureKind::Failed(m) if m == "x = -1 is off the map"),
            "{f}"
        ),
        other => panic!("{other:?}"),
    }
    let report = host.emit_event(&moved(0, 1.0)).await.unwrap();
    match &report.failures[..] {
        [f] => assert!(
            matches!(&f.kind, FailureKind::Panicked(m) if m.contains("moved the sync handler to panic")),
            "{f}"
        ),
        other => panic!("{other:?}"),
    }
    let wire = Event::typed(&moved(3, 1.0)).unwrap().wire_bytes().to_vec();
    let cut = Event::from_wire_bytes(SyncMoved::NAME, wire[..wire.len() - 1].to_vec());
    let report = host.send(cut).await;
    match &report.failures[..] {
        [f] => assert!(
            matches!(&f.kind, FailureKind::Rejected(m)
                if m.contains("events:sync-moved") && m.contains("SyncMoved") && m.contains("(postcard)")),
            "{f}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        host.send(Event::raw("events:sync-raw", &[9, 0, 7]))
            .await
            .is_ok()
    );
    let report = host.send(Event::raw("events:sync-raw", &[])).await;
    assert!(
        matches!(&report.failures[..], [f] if f.kind == FailureKind::Failed("an empty raw event".into())),
        "{report:?}"
    );
    // Still taking events after an error, a panic and a rejection.
    assert!(host.emit_event(&moved(4, 0.0)).await.unwrap().is_ok());

    assert!(host.emit("events:sync-report", &()).await.unwrap().is_ok());
    let report = seen.take("events:sync-seen");
    let got = report[0].decode::<SyncSeen>().unwrap();
    assert_eq!(got.moved, [moved(1, 2.5), moved(1, 2.5), moved(4, 0.0)]);
    assert_eq!(got.raw, [("raw bytes".to_owned(), vec![9, 0, 7])]);
    assert_eq!(got.in_runtime, [true; 4]);
    host.unload(id).await.unwrap();
}

#[test]
fn sync_handlers_on_multi_thread_from_a_worker() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let h = host.clone();
        tokio::spawn(async move { sync_handlers(&h).await })
            .await
            .unwrap();
        host.shutdown().await;
    });
}

#[test]
fn sync_handlers_on_current_thread_from_block_on() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        sync_handlers(&host).await;
        host.shutdown().await;
    });
}

#[test]
fn sync_handlers_from_a_thread_outside_the_runtime() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    block_on_plain_thread(sync_handlers(&host));
    rt.block_on(host.shutdown());
}

#[test]
fn codecs_round_trip_on_multi_thread_from_a_worker() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let h = host.clone();
        tokio::spawn(async move { codecs_round_trip(&h).await })
            .await
            .unwrap();
        host.shutdown().await;
    });
}

#[test]
fn codecs_round_trip_on_current_thread() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        codecs_round_trip(&host).await;
        host.shutdown().await;
    });
}

#[test]
fn calls_on_multi_thread_from_a_worker() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let h = host.clone();
        tokio::spawn(async move { calls_answer(&h).await })
            .await
            .unwrap();
        host.shutdown().await;
    });
}

#[test]
fn calls_on_current_thread_from_block_on() {
    let rt = current_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        calls_answer(&host).await;
        host.shutdown().await;
    });
}

#[test]
fn calls_from_a_thread_outside_the_runtime() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    block_on_plain_thread(async {
        calls_answer(&host).await;
    });
    rt.block_on(host.shutdown());
}

/// Plugin to plugin: `basic` calls `events:price`, which `events` answers;
/// each way a call fails reaches the caller as its own `CallError` variant.
#[test]
fn a_plugin_calls_another_plugin() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let basic = Basic::load(host.clone()).await;
        // (`arg`, the kind of error, a part of its message.)
        let caller = &basic;
        let failing = |arg| async move {
            let reply = caller.run("call_price", arg).await;
            let kind = reply["kind"].as_str().unwrap_or_default().to_owned();
            let error = reply["error"].as_str().unwrap_or_default().to_owned();
            (kind, error, reply)
        };
        // Before `events` is loaded: nobody answers.
        let (kind, error, reply) = failing(0).await;
        assert_eq!(kind, "no handler", "{reply}");
        assert!(
            error.contains("no plugin answers `events:price`"),
            "{reply}"
        );
        let events = load_events(&host).await;
        assert_eq!(basic.run("call_price", 0).await, json!({ "price": 150 }));
        for (arg, want_kind, want_text) in [
            (1, "failed", "out of stock"),
            (2, "panicked", "the price list is on fire"),
            (3, "failed", "no such item: nothing"),
            (5, "rejected", "events:price"),
            (6, "decode", "String"),
        ] {
            let (kind, error, reply) = failing(arg).await;
            assert_eq!(kind, want_kind, "{reply}");
            assert!(error.contains(want_text), "{reply}");
        }
        host.unload(events).await.unwrap();
        let (kind, _, reply) = failing(0).await;
        assert_eq!(kind, "no handler", "after unload: {reply}");
        host.shutdown().await;
    });
}

/// A plugin's call whose answering handler runs past the host's handler
/// timeout is `TimedOut`; one whose answering plugin is unloaded during
/// it is `Cancelled`. The calls run in tasks of `basic` (not bounded by a
/// handler's deadline) and report as `basic:called`.
#[test]
fn a_plugin_call_times_out_or_is_cancelled_by_unload() {
    let rt = multi_thread();
    for (timeout, unload, want) in [
        (Duration::from_millis(200), false, "timed out"),
        (Duration::from_secs(60), true, "cancelled"),
    ] {
        let host = PluginHost::builder(rt.handle().clone())
            .handler_timeout(timeout)
            .unload_timeout(Duration::from_secs(5))
            .build();
        rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            host.on("basic:called", move |event: Event| {
                let _ = tx.send(event.json::<serde_json::Value>().unwrap());
            });
            let basic = Basic::load(host.clone()).await;
            let events = load_events(&host).await;
            assert_eq!(basic.run("call_price_detached", 4).await, json!("calling"));
            if unload {
                tokio::time::sleep(Duration::from_millis(50)).await;
                host.unload(events).await.unwrap();
            }
            let called = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("the call's outcome in time")
                .unwrap();
            assert_eq!(called["kind"], json!(want), "{called}");
            assert!(
                called["error"].as_str().unwrap().contains("events:price"),
                "{called}"
            );
            if !unload {
                host.unload(events).await.unwrap();
            }
            host.shutdown().await;
        });
    }
}

/// One answering handler per name across plugins; a failed load releases
/// its claim; a reload hands the name to the new copy.
#[test]
fn one_answer_per_name_and_reload_hands_it_over() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let first = load_events(&host).await;
        // A second copy registers `events:price` in `on_load`: refused,
        // and the load fails with the reason.
        let err = host
            .load(fresh_copy("events"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`events:price` is answered by plugin `events`"),
            "{err}"
        );
        assert_eq!(host.plugins().len(), 1);
        let before = host
            .call(&Price {
                item: "copy".into(),
            })
            .await
            .unwrap();
        let second = host.reload(first, fresh_copy("events")).await.unwrap();
        let after = host
            .call(&Price {
                item: "copy".into(),
            })
            .await
            .unwrap();
        assert_ne!(before, after, "the new copy answers");
        // Reload again: the name moves once more, and one copy serves.
        let third = host.reload(second, fresh_copy("events")).await.unwrap();
        assert_eq!(host.plugins().len(), 1);
        assert_eq!(
            host.call(&Price {
                item: "sword".into()
            })
            .await
            .unwrap(),
            150
        );
        host.unload(third).await.unwrap();
        // Released: a fresh copy may answer it again.
        let fourth = load_events(&host).await;
        assert_eq!(
            host.call(&Price {
                item: "sword".into()
            })
            .await
            .unwrap(),
            150
        );
        host.unload(fourth).await.unwrap();
        host.shutdown().await;
    });
}

#[test]
fn a_call_times_out_and_a_call_cut_by_unload_is_cancelled() {
    let rt = multi_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .handler_timeout(Duration::from_millis(100))
        .unload_timeout(Duration::from_secs(5))
        .build();
    rt.block_on(async {
        let id = load_events(&host).await;
        match host
            .call(&Price {
                item: "slow".into(),
            })
            .await
        {
            Err(CallError::Handler(f)) => {
                assert!(matches!(f.kind, FailureKind::TimedOut(_)), "{f}")
            }
            other => panic!("{other:?}"),
        }
        host.unload(id).await.unwrap();
    });
    // Unloaded while the handler runs: cancelled, not an answer.
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let id = load_events(&host).await;
        let h = host.clone();
        let call = tokio::spawn(async move {
            h.call(&Price {
                item: "slow".into(),
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        host.unload(id).await.unwrap();
        match call.await.unwrap() {
            Err(CallError::Handler(f)) => {
                assert!(matches!(f.kind, FailureKind::Cancelled(_)), "{f}");
                assert!(f.to_string().contains("unloaded"), "{f}");
            }
            other => panic!("{other:?}"),
        }
        host.shutdown().await;
    });
}

/// A raw event of `len` bytes 0, 1, 2.. (wrapping).
fn numbered(name: &str, len: usize) -> Event {
    Event::raw(name, &(0..len).map(|i| i as u8).collect::<Vec<_>>())
}

/// Large payloads are lent, not copied: every plugin keeping the event
/// holds the host's buffer (one count each, given back when it drops it);
/// small ones, and all with sharing off, are copied.
#[test]
fn large_payloads_are_shared_with_plugins_not_copied() {
    let rt = multi_thread();
    for share_from in [Some(1024), None] {
        let host = PluginHost::builder(rt.handle().clone())
            .share_payloads_from(share_from)
            .build();
        rt.block_on(async {
            let seen = Seen::attach(&host);
            let ids = [load_events(&host).await];
            for (len, lent) in [(64, false), (64 * 1024, share_from.is_some())] {
                let event = numbered("events:keep", len);
                let buffer = Arc::clone(event.shared_wire().unwrap());
                let report = host.send(event).await;
                assert!(report.is_ok(), "{report:?}");
                // `on_any`'s copy (the same buffer) is not counted below.
                drop(seen.take("events:keep"));
                let kept = seen.take("events:kept");
                let (at, intact): (u64, bool) = kept[0].json().unwrap();
                assert!(intact, "{len} bytes arrived intact");
                assert_eq!(
                    at == buffer.as_ptr() as u64,
                    lent,
                    "{len} bytes, {share_from:?}"
                );
                // The test's count, and the plugin's kept event's if lent.
                assert_eq!(Arc::strong_count(&buffer), 1 + usize::from(lent));
                assert!(host.emit("events:drop-kept", &()).await.unwrap().is_ok());
                assert_eq!(Arc::strong_count(&buffer), 1, "given back");
            }
            for id in ids {
                host.unload(id).await.unwrap();
            }
            host.shutdown().await;
        });
    }
}

/// A lent buffer outlives its plugin's unload without harm: the plugin's
/// static keeps its count (never given back: statics are not dropped), and
/// the host's buffer stays valid for everyone else.
#[test]
fn a_lent_payload_kept_across_unload_stays_valid() {
    let rt = multi_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .share_payloads_from(Some(1))
        .build();
    rt.block_on(async {
        let seen = Seen::attach(&host);
        let a = load_events(&host).await;
        let event = numbered("events:keep", 100_000);
        let buffer = Arc::clone(event.shared_wire().unwrap());
        assert!(host.send(event).await.is_ok());
        assert_eq!(seen.take("events:kept").len(), 1);
        drop(seen.take("events:keep"));
        host.unload(a).await.unwrap();
        assert_eq!(
            Arc::strong_count(&buffer),
            2,
            "the unloaded plugin's static keeps its count"
        );
        // The raw event's wire form: its two-byte header, then 0, 1, 2..
        assert!(buffer[2..].iter().enumerate().all(|(i, b)| *b == i as u8));
        host.shutdown().await;
    });
}

/// Malformed payloads are the sender's mistake: rejected, counted as
/// failed calls, but they do not quarantine the handler; its own failures
/// do, and quarantine releases its call names for another plugin.
#[test]
fn rejected_payloads_do_not_quarantine_and_quarantine_releases_names() {
    let rt = multi_thread();
    let host = PluginHost::builder(rt.handle().clone())
        .quarantine_after(2)
        .build();
    rt.block_on(async {
        let id = load_events(&host).await;
        for _ in 0..5 {
            let junk = Event::from_wire_bytes("player:moved", vec![0, 1, 0xff]);
            let report = host.send(junk).await;
            assert!(report.quarantined.is_empty(), "{report:?}");
            assert!(matches!(report.failures[0].kind, FailureKind::Rejected(_)));
            assert!(matches!(
                host.call(&PriceById { item: 1 }).await,
                Err(CallError::Handler(f)) if matches!(f.kind, FailureKind::Rejected(_))
            ));
        }
        assert_eq!(
            host.call(&Price {
                item: "sword".into()
            })
            .await
            .unwrap(),
            150
        );
        // Two failures of its own in a row: quarantined.
        for _ in 0..2 {
            assert!(
                host.call(&Price {
                    item: "fail".into()
                })
                .await
                .is_err()
            );
        }
        assert!(host.plugins()[0].quarantined);
        assert!(matches!(
            host.call(&Price {
                item: "sword".into()
            })
            .await,
            Err(CallError::NoHandler(_))
        ));
        // The name is free: another copy answers it.
        let other = load_events(&host).await;
        assert_eq!(
            host.call(&Price {
                item: "sword".into()
            })
            .await
            .unwrap(),
            150
        );
        host.unload(other).await.unwrap();
        host.unload(id).await.unwrap();
    });
}

/// Four copies loading at once race for `events:price`: exactly one gets
/// it, the others fail to load naming the holder, and the name is served.
#[test]
fn concurrent_loads_race_for_one_call_name() {
    let rt = multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    rt.block_on(async {
        let loads: Vec<_> = (0..4)
            .map(|_| {
                let (host, path) = (host.clone(), fresh_copy("events"));
                tokio::spawn(async move { host.load(path).await })
            })
            .collect();
        let mut won = Vec::new();
        for load in loads {
            match load.await.unwrap() {
                Ok(id) => won.push(id),
                Err(e) => assert!(
                    e.to_string().contains("is answered by plugin `events`"),
                    "{e}"
                ),
            }
        }
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(host.plugins().len(), 1);
        assert_eq!(
            host.call(&Price {
                item: "sword".into()
            })
            .await
            .unwrap(),
            150
        );
        host.shutdown().await;
    });
}
