//! What both benchmark binaries share: the bench plugin loaded on a
//! runtime, the native loop runner, and the emitted payload.

#![allow(dead_code)] // each bench binary uses part of it

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use horizon_plugin_host::{Event, PluginHost};
use serde::Serialize;
use serde_json::json;
use tokio::runtime::Runtime;

#[path = "../../tests/common/mod.rs"]
pub mod common;

/// A runtime flavour's name and constructor.
pub type Flavour = (&'static str, fn() -> Runtime);

/// Both flavours the benches compare on.
pub fn flavours() -> Vec<Flavour> {
    vec![
        ("multi-thread", common::multi_thread),
        ("current-thread", common::current_thread),
    ]
}

/// Same shape as the bench plugin's `Small`.
#[derive(Serialize, serde::Deserialize)]
pub struct Small {
    pub player: u64,
    pub x: f32,
    pub y: f32,
    pub name: String,
}

pub fn small() -> Small {
    Small {
        player: 42,
        x: 1.5,
        y: -3.25,
        name: "alice".to_owned(),
    }
}

/// The bench plugin, loaded `copies` times on `rt`.
pub struct Loaded {
    pub rt: Runtime,
    pub host: PluginHost,
    elapsed: Arc<Mutex<Option<u64>>>,
}

impl Loaded {
    pub fn new(rt: Runtime, copies: usize) -> Loaded {
        let host = PluginHost::new(rt.handle().clone());
        Loaded::with_host(rt, host, copies)
    }

    /// As [`Loaded::new`], into `host` (built on `rt` with other settings).
    pub fn with_host(rt: Runtime, host: PluginHost, copies: usize) -> Loaded {
        let elapsed: Arc<Mutex<Option<u64>>> = Arc::default();
        let sink = Arc::clone(&elapsed);
        host.on("bench:elapsed", move |e: Event| {
            *sink.lock().unwrap() = Some(e.json().unwrap());
        });
        rt.block_on(async {
            for _ in 0..copies {
                host.load(common::fresh_copy("bench")).await.unwrap();
            }
        });
        Loaded { rt, host, elapsed }
    }

    /// Runs a loop of `iters` routed calls inside the plugin; returns the time
    /// the plugin measured around the loop.
    pub fn routed(&self, kind: &str, iters: u64) -> Duration {
        self.rt.block_on(async {
            let report = self
                .host
                .emit("bench:run", &json!({ "kind": kind, "iters": iters }))
                .await
                .unwrap();
            assert!(report.is_ok(), "{:?}", report.failures);
        });
        Duration::from_nanos(
            self.elapsed
                .lock()
                .unwrap()
                .take()
                .expect("bench plugin replied"),
        )
    }

    /// `iters` emits of [`small`] to the one loaded plugin, awaited where
    /// `caller` says.
    pub fn emit_loop_from(&self, iters: u64, caller: Caller) -> Duration {
        emit_loop_from(&self.rt, &self.host, iters, caller)
    }

    /// As [`Loaded::emit_loop_from`], to the plugin's synchronous handler
    /// (`bench:noop-sync`, `PluginContext::on_sync`).
    pub fn sync_emit_loop_from(&self, iters: u64, caller: Caller) -> Duration {
        emit_named_loop_from(&self.rt, &self.host, "bench:noop-sync", iters, caller)
    }

    /// As [`Loaded::emit_loop_from`], to the plugin's typed synchronous
    /// handler (`bench:pos-sync`, `PluginContext::on_event_sync`), which
    /// decodes in place as a host handler does.
    pub fn typed_sync_emit_loop_from(&self, iters: u64, caller: Caller) -> Duration {
        emit_named_loop_from(&self.rt, &self.host, "bench:pos-sync", iters, caller)
    }

    /// `iters` emits of [`small`] to the loaded plugins, from a task.
    pub fn emit_loop(&self, iters: u64, expect_delivered: usize) -> Duration {
        let host = self.host.clone();
        native(&self.rt, move || async move {
            for _ in 0..iters {
                let report = host.emit("bench:noop", &small()).await.unwrap();
                debug_assert_eq!(report.delivered, expect_delivered);
            }
        })
    }
}

/// A host with no plugin and one host handler for `bench:noop` that decodes
/// the payload like the plugin's: `emit` through the same dispatch, without
/// the boundary.
pub fn host_with_host_handler(rt: &Runtime) -> PluginHost {
    let host = PluginHost::new(rt.handle().clone());
    host.on("bench:noop", |event: Event| {
        let small: Small = event.json().unwrap();
        std::hint::black_box(small);
    });
    host
}

/// `iters` emits of [`small`] to `host`, from a task.
pub fn host_emit_loop(rt: &Runtime, host: &PluginHost, iters: u64) -> Duration {
    emit_loop_from(rt, host, iters, Caller::Task)
}

/// Where `host.emit` is awaited.
#[derive(Clone, Copy, Debug)]
pub enum Caller {
    /// Inside a task spawned on the runtime.
    Task,
    /// In the runtime's `block_on` (the body of `#[tokio::main]`).
    BlockOn,
    /// On a plain thread outside any runtime, with an executor of its own.
    Thread,
}

/// `iters` emits of [`small`] to `host` (one subscriber each), awaited
/// where `caller` says; returns the time the loop took.
pub fn emit_loop_from(rt: &Runtime, host: &PluginHost, iters: u64, caller: Caller) -> Duration {
    emit_named_loop_from(rt, host, "bench:noop", iters, caller)
}

/// As [`emit_loop_from`], emitting `name`.
pub fn emit_named_loop_from(
    rt: &Runtime,
    host: &PluginHost,
    name: &'static str,
    iters: u64,
    caller: Caller,
) -> Duration {
    let host = host.clone();
    let body = move || async move {
        let start = Instant::now();
        for _ in 0..iters {
            let report = host.emit(name, &small()).await.unwrap();
            debug_assert_eq!(report.delivered, 1);
        }
        start.elapsed()
    };
    run_as(rt, caller, body)
}

/// Runs the loop `body` makes where `caller` says; returns what it timed.
pub fn run_as<F>(
    rt: &Runtime,
    caller: Caller,
    body: impl FnOnce() -> F + Send + 'static,
) -> Duration
where
    F: std::future::Future<Output = Duration> + Send + 'static,
{
    match caller {
        Caller::Task => rt.block_on(async { tokio::spawn(body()).await.unwrap() }),
        Caller::BlockOn => rt.block_on(body()),
        // The runtime is driven meanwhile (a current-thread runtime runs
        // its tasks only inside `block_on`).
        Caller::Thread => rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(common::block_on_plain_thread(body()));
            });
            rx.await.unwrap()
        }),
    }
}

/// Runs `body` as a task on `rt` (like the plugin's handler task) and times it.
pub fn native<F>(rt: &Runtime, body: impl FnOnce() -> F + Send + 'static) -> Duration
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    rt.block_on(async {
        tokio::spawn(async move {
            let start = Instant::now();
            body().await;
            start.elapsed()
        })
        .await
        .unwrap()
    })
}

/// The native spawn + await loop the routed `spawn` bench compares with.
pub async fn native_spawn_loop(iters: u64) {
    for i in 0..iters {
        std::hint::black_box(tokio::spawn(async move { i }).await.unwrap());
    }
}

async fn in_process_handler(event: Event) {
    let small: Small = event.json().unwrap();
    std::hint::black_box(small);
}

/// What `emit` does for one handler minus the boundary and the handler's
/// task: serialize, build the event, decode in the handler.
pub async fn in_process_emit_loop(iters: u64) {
    for _ in 0..iters {
        let bytes = serde_json::to_vec(&small()).unwrap();
        in_process_handler(Event::from_json_bytes("bench:noop", bytes)).await;
    }
}

/// The in-process emit with the handler run as a task of its own.
pub async fn in_process_task_emit_loop(iters: u64) {
    for _ in 0..iters {
        let bytes = serde_json::to_vec(&small()).unwrap();
        let event = Event::from_json_bytes("bench:noop", bytes);
        tokio::spawn(in_process_handler(event)).await.unwrap();
    }
}
