//! Events at game-server rates (issue 13), each against plain tokio on the
//! same runtime in the same run:
//!
//! - `events_emit/<flavour>/<codec>/<size>/<plugins>`: an emit of a batch of
//!   position updates (`small`: 1, `1k`: 20, `64k`: 1,300 of them) to 1, 4
//!   or 16 plugin handlers (`routed`) or as many host handlers (`host`),
//!   each decoding it, from a task; the event is encoded per emit in both.
//! - `events_caller/<flavour>/<caller>`: one postcard position update to
//!   one plugin handler or one host handler, awaited in a task, in the
//!   runtime's `block_on`, or on a plain thread outside the runtime.
//! - `call/<flavour>`: `host.call` of a plugin's answering handler against
//!   the same handler called in-process (with and without the codec).
//! - `events_share/<flavour>/<shared|copied>/<bytes>`: a raw payload to 4
//!   plugin handlers, the host's buffer lent or copied by each plugin.
//!
//! Then, outside criterion, the load run: 1,000 simulated players sending
//! a position update at 20 Hz to 4 plugins (80,000 handler calls a second)
//! for 10 s, routed and in-process, JSON and postcard: the host's CPU time
//! per second (`getrusage`) and handler calls per second per core.
//! `HORIZON_BENCH_LOAD_SECONDS` changes the 10 s; `-- --test` runs
//! everything once, briefly.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use horizon_plugin_host::{Codec, Event, PluginHost, TypedEvent};
use serde::{Deserialize, Serialize};
use support::{Caller, Loaded, common, flavours};
use tokio::runtime::Runtime;

/// The bench plugin's `Small`, typed as its `bench:pos`.
#[derive(Serialize, Deserialize, TypedEvent, Clone)]
#[event(name = "bench:pos")]
struct Pos {
    player: u64,
    x: f32,
    y: f32,
    name: String,
}

/// The bench plugin's `Batch`.
#[derive(Serialize, Deserialize, TypedEvent)]
#[event(name = "bench:batch")]
struct Batch(Vec<Pos>);

/// The bench plugin's `Price`.
#[derive(Serialize, Deserialize, TypedEvent)]
#[event(name = "bench:price", codec = postcard, answer = u64)]
struct Price {
    item: u64,
    quantity: u32,
}

/// The answering handler's work (the plugin's `price`).
fn price(p: Price) -> u64 {
    p.item.wrapping_mul(u64::from(p.quantity))
}

fn pos(player: u64) -> Pos {
    Pos {
        player,
        x: 1.5,
        y: -3.25,
        name: "alice".to_owned(),
    }
}

fn batch(n: u64) -> Batch {
    Batch((0..n).map(pos).collect())
}

const SIZES: &[(&str, u64)] = &[("small", 1), ("1k", 20), ("64k", 1300)];
const CODECS: &[(&str, Codec)] = &[("json", Codec::Json), ("postcard", Codec::Postcard)];

/// A host with `n` host handlers of `bench:batch` and `bench:pos`, each
/// decoding like the plugin's.
fn host_handlers(rt: &Runtime, n: usize) -> PluginHost {
    let host = PluginHost::new(rt.handle().clone());
    for _ in 0..n {
        host.on_event(|b: Batch| {
            black_box(b);
        });
        host.on_event(|p: Pos| {
            black_box(p);
        });
    }
    host
}

/// `iters` sends of the event `make` builds, awaited where `caller` says.
fn send_loop(
    rt: &Runtime,
    host: &PluginHost,
    iters: u64,
    caller: Caller,
    make: impl Fn() -> Event + Send + 'static,
    delivered: usize,
) -> Duration {
    let host = host.clone();
    let body = move || async move {
        let start = Instant::now();
        for _ in 0..iters {
            let report = host.send(make()).await;
            debug_assert_eq!(report.delivered, delivered, "{report:?}");
            black_box(report);
        }
        start.elapsed()
    };
    support::run_as(rt, caller, body)
}

fn emit_matrix(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        for plugins in [1usize, 4, 16] {
            let loaded = Loaded::new(make(), plugins);
            let host = host_handlers(&loaded.rt, plugins);
            for (codec_name, codec) in CODECS {
                let mut g = c.benchmark_group(format!("events_emit/{flavour}/{codec_name}"));
                for (size, n) in SIZES {
                    let payload = Arc::new(batch(*n));
                    let codec = *codec;
                    let event = move || {
                        let payload = Arc::clone(&payload);
                        move || Event::encode("bench:batch", &*payload, codec).unwrap()
                    };
                    let id = |kind: &str| BenchmarkId::new(format!("{size}/{kind}"), plugins);
                    g.bench_function(id("routed"), |b| {
                        b.iter_custom(|iters| {
                            send_loop(
                                &loaded.rt,
                                &loaded.host,
                                iters,
                                Caller::Task,
                                event(),
                                plugins,
                            )
                        })
                    });
                    g.bench_function(id("host"), |b| {
                        b.iter_custom(|iters| {
                            send_loop(&loaded.rt, &host, iters, Caller::Task, event(), plugins)
                        })
                    });
                }
                g.finish();
            }
            loaded.rt.block_on(loaded.host.shutdown());
        }
    }
}

fn emit_by_caller(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        let loaded = Loaded::new(make(), 1);
        let host = host_handlers(&loaded.rt, 1);
        let mut g = c.benchmark_group(format!("events_caller/{flavour}"));
        let event = || Event::encode("bench:pos", &pos(42), Codec::Postcard).unwrap();
        for caller in [Caller::Task, Caller::BlockOn, Caller::Thread] {
            let name = format!("{caller:?}");
            g.bench_function(BenchmarkId::new("routed", &name), |b| {
                b.iter_custom(|iters| send_loop(&loaded.rt, &loaded.host, iters, caller, event, 1))
            });
            g.bench_function(BenchmarkId::new("host", &name), |b| {
                b.iter_custom(|iters| send_loop(&loaded.rt, &host, iters, caller, event, 1))
            });
        }
        g.finish();
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

fn calls(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        let loaded = Loaded::new(make(), 1);
        let mut g = c.benchmark_group(format!("call/{flavour}"));
        let request = || Price {
            item: black_box(7),
            quantity: black_box(3),
        };
        g.bench_function("routed", |b| {
            let host = loaded.host.clone();
            b.iter_custom(|iters| {
                let host = host.clone();
                support::native(&loaded.rt, move || async move {
                    for _ in 0..iters {
                        black_box(host.call(&request()).await.unwrap());
                    }
                })
            })
        });
        // The same handler in-process, its request and answer through the
        // codec as a call's are.
        g.bench_function("in_process_codec", |b| {
            b.iter(|| {
                let req = Event::typed(&request()).unwrap();
                let answer = price(req.decode().unwrap());
                let answer = Event::encode(Price::NAME, &answer, Price::CODEC).unwrap();
                black_box(answer.decode::<u64>().unwrap())
            })
        });
        g.bench_function("in_process_fn", |b| b.iter(|| black_box(price(request()))));
        g.finish();
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

/// Where sharing a payload with plugin handlers beats copying it: one raw
/// event of each size to 4 plugin handlers, with the host lending its
/// buffer (`shared`) and with every plugin copying it (`copied`).
fn sharing(c: &mut Criterion) {
    const PLUGINS: usize = 4;
    for (flavour, make) in flavours() {
        let rt = make();
        let shared = PluginHost::builder(rt.handle().clone())
            .share_payloads_from(Some(1))
            .build();
        let loaded = Loaded::with_host(rt, shared, PLUGINS);
        let copied = PluginHost::builder(loaded.rt.handle().clone())
            .share_payloads_from(None)
            .build();
        loaded.rt.block_on(async {
            for _ in 0..PLUGINS {
                copied.load(common::fresh_copy("bench")).await.unwrap();
            }
        });
        let mut g = c.benchmark_group(format!("events_share/{flavour}"));
        for size in [256usize, 1024, 4096, 16 * 1024, 64 * 1024] {
            let event = Event::raw("bench:bytes", &vec![7u8; size]);
            for (kind, host) in [("shared", &loaded.host), ("copied", &copied)] {
                let event = event.clone();
                g.bench_function(BenchmarkId::new(kind, size), |b| {
                    b.iter_custom(|iters| {
                        let event = event.clone();
                        send_loop(
                            &loaded.rt,
                            host,
                            iters,
                            Caller::Task,
                            move || event.clone(),
                            PLUGINS,
                        )
                    })
                });
            }
        }
        g.finish();
        loaded.rt.block_on(copied.shutdown());
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

/// The host process's user + system CPU time so far.
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

const PLAYERS: u64 = 1_000;
const HZ: u64 = 20;
const LOAD_PLUGINS: usize = 4;

/// One load run: `PLAYERS` updates per tick, `HZ` ticks a second, each
/// update to 4 handlers; returns (CPU per wall second, handler calls per
/// second, ticks that overran their 50 ms).
fn load_run(rt: &Runtime, host: &PluginHost, codec: Codec, seconds: u64) -> (f64, f64, u64) {
    let host = host.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let delivered = AtomicU64::new(0);
            let mut overran = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / HZ));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let (wall, cpu) = (Instant::now(), cpu_time());
            for _ in 0..seconds * HZ {
                tick.tick().await;
                let started = Instant::now();
                for player in 0..PLAYERS {
                    let event = Event::encode("bench:pos", &pos(player), codec).unwrap();
                    let report = host.send(event).await;
                    delivered.fetch_add(report.delivered as u64, Ordering::Relaxed);
                }
                if started.elapsed() > Duration::from_millis(1000 / HZ) {
                    overran += 1;
                }
            }
            let (wall, cpu) = (
                wall.elapsed().as_secs_f64(),
                (cpu_time() - cpu).as_secs_f64(),
            );
            let calls = delivered.load(Ordering::Relaxed) as f64 / wall;
            (cpu / wall, calls, overran)
        })
        .await
        .unwrap()
    })
}

fn load(smoke: bool) {
    let seconds = if smoke {
        1
    } else {
        std::env::var("HORIZON_BENCH_LOAD_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10)
    };
    println!(
        "\nload: {PLAYERS} players x {HZ} Hz x {LOAD_PLUGINS} handlers for {seconds} s \
         (CPU = process user+sys per wall second; calls/s/core = handler calls per CPU second)"
    );
    for (flavour, make) in flavours() {
        let loaded = Loaded::new(make(), LOAD_PLUGINS);
        let host = host_handlers(&loaded.rt, LOAD_PLUGINS);
        for (codec_name, codec) in CODECS {
            for (kind, h) in [("routed", &loaded.host), ("in-process", &host)] {
                let (cpu, calls, overran) = load_run(&loaded.rt, h, *codec, seconds);
                println!(
                    "load/{flavour}/{codec_name}/{kind}: CPU {:.1} ms/s, {:.0} handler calls/s, \
                     {:.0} calls/s/core, {overran} ticks overran",
                    cpu * 1000.0,
                    calls,
                    calls / cpu
                );
            }
        }
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    // `HORIZON_BENCH_GROUPS=share,call` runs only those groups (and no
    // load run unless `load` is listed).
    let groups = std::env::var("HORIZON_BENCH_GROUPS").ok();
    let wants = |g: &str| {
        groups
            .as_deref()
            .is_none_or(|gs| gs.split(',').any(|x| x == g))
    };
    if wants("emit") {
        emit_matrix(&mut c);
    }
    if wants("caller") {
        emit_by_caller(&mut c);
    }
    if wants("call") {
        calls(&mut c);
    }
    if wants("share") {
        sharing(&mut c);
    }
    c.final_summary();
    if wants("load") {
        load(smoke);
    }
}
