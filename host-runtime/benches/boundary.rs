//! What routing through the host's table costs, as ratios against plain
//! tokio on the same runtime in the same run (multi-thread with 2 workers,
//! and current-thread).
//!
//! `cargo bench -p horizon-plugin-host --bench boundary`; then
//! `scripts/bench-table` turns criterion's estimates into the table of
//! `BENCHMARKS.md`.

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use horizon_plugin_host::PluginHost;
use support::{Loaded, Small, common, flavours, native, small};

/// A future that wakes itself `n` times (the plugin's `YieldN`).
struct YieldN(u64);

impl std::future::Future for YieldN {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 == 0 {
            std::task::Poll::Ready(())
        } else {
            self.0 -= 1;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

fn spawn_await(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        let loaded = Loaded::new(make(), 1);
        let mut g = c.benchmark_group(format!("spawn_await/{flavour}"));
        g.bench_function("native", |b| {
            b.iter_custom(|iters| native(&loaded.rt, move || support::native_spawn_loop(iters)))
        });
        g.bench_function("routed", |b| {
            b.iter_custom(|iters| loaded.routed("spawn", iters))
        });
        g.finish();
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

fn sleep_past_deadline(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        let loaded = Loaded::new(make(), 1);
        let mut g = c.benchmark_group(format!("sleep_past_deadline/{flavour}"));
        g.bench_function("native", |b| {
            b.iter_custom(|iters| {
                native(&loaded.rt, move || async move {
                    let past = tokio::time::Instant::now();
                    for _ in 0..iters {
                        tokio::time::sleep_until(past).await;
                    }
                })
            })
        });
        g.bench_function("routed", |b| {
            b.iter_custom(|iters| loaded.routed("sleep_past", iters))
        });
        g.finish();
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

fn poll_crossing(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        let loaded = Loaded::new(make(), 1);
        let mut g = c.benchmark_group(format!("poll/{flavour}"));
        g.bench_function("native", |b| {
            b.iter_custom(|iters| {
                native(&loaded.rt, move || async move {
                    tokio::spawn(YieldN(iters)).await.unwrap()
                })
            })
        });
        g.bench_function("routed", |b| {
            b.iter_custom(|iters| loaded.routed("poll", iters))
        });
        g.finish();
        loaded.rt.block_on(loaded.host.shutdown());
    }
}

fn emit(c: &mut Criterion) {
    for (flavour, make) in flavours() {
        let rt = make();
        let mut g = c.benchmark_group(format!("emit/{flavour}"));
        // In-process: what `emit` does for one handler minus the boundary and
        // the handler's task: serialize, build the event, decode in the
        // handler. Looped inside a task, like the routed case.
        g.bench_function("in_process", |b| {
            b.iter_custom(|iters| native(&rt, move || support::in_process_emit_loop(iters)))
        });
        g.bench_function("json_only", |b| {
            b.iter(|| {
                let bytes = serde_json::to_vec(&small()).unwrap();
                black_box(serde_json::from_slice::<Small>(&bytes).unwrap());
            })
        });
        // The same dispatch as a routed emit, to a host handler: what the
        // boundary adds is `plugins/1` minus this.
        let host = support::host_with_host_handler(&rt);
        g.bench_function("host_handler", |b| {
            b.iter_custom(|iters| support::host_emit_loop(&rt, &host, iters))
        });
        // The handler run as a task of its own (what the host does for every
        // plugin handler, so it can abort it at unload), still in-process.
        g.bench_function("in_process_task", |b| {
            b.iter_custom(|iters| native(&rt, move || support::in_process_task_emit_loop(iters)))
        });
        for plugins in [1usize, 4, 16] {
            let loaded = Loaded::new(make(), plugins);
            g.bench_with_input(
                BenchmarkId::new("plugins", plugins),
                &plugins,
                |b, &plugins| b.iter_custom(|iters| loaded.emit_loop(iters, plugins)),
            );
            loaded.rt.block_on(loaded.host.shutdown());
        }
        g.finish();
    }
}

/// What timing the polls of plugin futures costs (`HostBuilder::poll_timing`),
/// and what the cooperative budget in the plugin's tokio copy costs
/// (`HostBuilder::cooperative_budget`): spawn + await, a poll crossing,
/// and an emit to one plugin handler, with timing off, on the coarse
/// clock (the default) and on the precise one, all three with the budget
/// (the default), and coarse without it; against plain tokio (a host
/// handler for the emit). The counters are always on.
fn poll_timing(c: &mut Criterion) {
    use horizon_plugin_host::PollTiming;
    let settings = [
        ("off", PollTiming::Off, true),
        ("coarse", PollTiming::Coarse, true),
        ("precise", PollTiming::Precise, true),
        ("coarse_no_budget", PollTiming::Coarse, false),
    ];
    for (flavour, make) in flavours() {
        let loaded: Vec<(&str, Loaded)> = settings
            .iter()
            .map(|&(name, timing, cooperative)| {
                let rt = make();
                let host = PluginHost::builder(rt.handle().clone())
                    .poll_timing(timing)
                    .cooperative_budget(cooperative)
                    .build();
                (name, Loaded::with_host(rt, host, 1))
            })
            .collect();
        let native_rt = &loaded[0].1.rt;
        let mut g = c.benchmark_group(format!("timing_spawn_await/{flavour}"));
        g.bench_function("native", |b| {
            b.iter_custom(|iters| native(native_rt, move || support::native_spawn_loop(iters)))
        });
        for (name, l) in &loaded {
            g.bench_function(*name, |b| b.iter_custom(|iters| l.routed("spawn", iters)));
        }
        g.finish();
        let mut g = c.benchmark_group(format!("timing_poll/{flavour}"));
        g.bench_function("native", |b| {
            b.iter_custom(|iters| {
                native(native_rt, move || async move {
                    tokio::spawn(YieldN(iters)).await.unwrap()
                })
            })
        });
        for (name, l) in &loaded {
            g.bench_function(*name, |b| b.iter_custom(|iters| l.routed("poll", iters)));
        }
        g.finish();
        let mut g = c.benchmark_group(format!("timing_emit/{flavour}"));
        let host = support::host_with_host_handler(native_rt);
        g.bench_function("host_handler", |b| {
            b.iter_custom(|iters| support::host_emit_loop(native_rt, &host, iters))
        });
        for (name, l) in &loaded {
            g.bench_function(*name, |b| b.iter_custom(|iters| l.emit_loop(iters, 1)));
        }
        g.finish();
        for (_, l) in &loaded {
            l.rt.block_on(l.host.shutdown());
        }
    }
}

fn load_unload(c: &mut Criterion) {
    let rt = common::multi_thread();
    let host = PluginHost::new(rt.handle().clone());
    let path = common::fresh_copy("bench");
    let mut g = c.benchmark_group("lifecycle/multi-thread");
    g.bench_function("load_unload", |b| {
        b.to_async(&rt).iter(|| async {
            let id = host.load(&path).await.unwrap();
            host.unload(id).await.unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = spawn_await, sleep_past_deadline, poll_crossing, emit, poll_timing, load_unload
}
criterion_main!(benches);
