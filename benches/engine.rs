//! benches/engine.rs: Criterion benchmarks of what the rules engine costs
//! per second whatever the traffic: a scrape (live gauges plus the metrics
//! store's snapshot, as `pipeline::snapshot` does), an alert check, and a
//! timer tick, with 10,000 and 1,000,000 calls in flight and as many promises
//! pending, almost all of them not changing state. `cargo bench --bench engine`.
//!
//! The population (wall clock, 100 queues, `call_ttl` and `callback_expiry`
//! ten years, so nothing static comes due while a benchmark runs): per 100
//! calls, 96 talking, 2 ringing and 2 on hold for an hour (past their limits
//! since long ago, so alerts list them, but not changing); per 100 promises,
//! 98 due in the year 9999 and 2 overdue by an hour.
//!
//! - `tick_idle`: the clock moves 250 ms (the pipeline's tick); nothing is due.
//! - `tick_busy`: before each tick (untimed), a call is offered 17.9 s ago,
//!   another goes on hold 16.9 s ago, a promise falls due in 150 ms, and the
//!   ones made 8 ticks before end; the tick (timed) sees the three cross
//!   their limits: a constant churn next to the static population.
//! - `live` (the engine's gauges alone), `scrape` (the gauges and the
//!   store's snapshot), `alerts`: reads at a fixed clock.
//!
//! `cargo bench --bench engine -- memory` instead measures what a waiting
//! call costs in resident memory, in process: 1,000,000 `call.offered` (10
//! queues, 10 ms apart, event clock) applied to a fresh engine, the VmRSS
//! delta divided by the calls; without `event_id`, then with one each (the
//! de-duplication window holds the ids too). The daemon's figure is
//! `cargo bench --bench load -- memory`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};

use ringwatch::event::{Event, Millis};
use ringwatch::ingest::decode::decode_frame;
use ringwatch::metrics::{Bounds, BucketConfig, EngineState, Store};
use ringwatch::rules::{ClockMode, Engine, Live, Settings};

/// 2026-11-23T09:00:00Z: the wall clock when the population is built.
const T: Millis = 1_795_424_400_000;
const HOUR: Millis = 3_600_000;
const DECADE: Millis = 3_650 * 24 * HOUR;
/// 9999-01-01T00:00:00Z.
const Y9999: Millis = 253_370_764_800_000;
const QUEUES: u64 = 100;

/// The engine's two reads, in one place: against ringwatch before the
/// indexes (a76d42b) they were `engine.live(now, store)` and
/// `engine.alerts(now, store)`, which ticked first.
fn read_live(engine: &mut Engine, _store: &mut Store) -> Vec<Live> {
    engine.live()
}

fn read_alerts(engine: &mut Engine, _store: &mut Store) -> usize {
    engine.alerts().len()
}

fn settings(n: u64) -> Settings {
    let cap = usize::try_from(n).unwrap_or(usize::MAX) + 100_000;
    Settings {
        clock: ClockMode::Wall,
        call_ttl: DECADE,
        callback_expiry: DECADE,
        max_calls: cap,
        max_promises: cap,
        ..Settings::default()
    }
}

fn events(json: &[String]) -> Vec<Event> {
    let frame = format!("[{}]", json.join(","));
    decode_frame(&frame)
        .into_iter()
        .map(|r| r.expect("valid event"))
        .collect()
}

/// Apply events (in frames of 1,000, as JSON, so that the same population
/// builds on any version of the event types) at wall time `now`.
fn apply_json(engine: &mut Engine, store: &mut Store, json: Vec<String>, now: Millis) {
    for chunk in json.chunks(1_000) {
        for ev in events(chunk) {
            engine.apply(&ev, now, store);
        }
    }
}

fn offered(id: &str, ts: Millis, q: u64) -> String {
    format!(r#"{{"type":"call.offered","ts":{ts},"call_id":"{id}","queue":"q{q}"}}"#)
}
fn answered(id: &str, ts: Millis) -> String {
    format!(r#"{{"type":"call.answered","ts":{ts},"call_id":"{id}"}}"#)
}
fn held(id: &str, ts: Millis) -> String {
    format!(r#"{{"type":"call.hold_started","ts":{ts},"call_id":"{id}"}}"#)
}
fn ended(id: &str, ts: Millis) -> String {
    format!(r#"{{"type":"call.ended","ts":{ts},"call_id":"{id}"}}"#)
}
fn promised(id: &str, ts: Millis, due: Millis, q: u64) -> String {
    format!(
        r#"{{"type":"callback.promised","ts":{ts},"promise_id":"{id}","queue":"q{q}","due":{due}}}"#
    )
}
fn completed(id: &str, ts: Millis) -> String {
    format!(r#"{{"type":"callback.completed","ts":{ts},"promise_id":"{id}"}}"#)
}

/// `n` calls in flight and `n` promises pending, at wall time `T`.
fn population(n: u64) -> (Engine, Store) {
    let s = settings(n);
    let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
    let mut engine = Engine::new(s);
    let mut json = Vec::new();
    for i in 0..n {
        let id = format!("call-{i}");
        let q = i % QUEUES;
        // Offered over the last hour, in order, as calls arrive.
        let t = T - HOUR + (i as Millis * HOUR) / n as Millis;
        json.push(offered(&id, t, q));
        match i % 50 {
            0 => {}
            1 => {
                json.push(answered(&id, t + 1_000));
                json.push(held(&id, t + 2_000));
            }
            _ => json.push(answered(&id, t + 1_000)),
        }
        let due = if i % 50 == 7 { t } else { Y9999 + i as Millis };
        json.push(promised(&format!("promise-{i}"), t, due, q));
        if json.len() >= 100_000 {
            apply_json(&mut engine, &mut store, std::mem::take(&mut json), T);
        }
    }
    apply_json(&mut engine, &mut store, json, T);
    assert_eq!(engine.calls_in_flight() as u64, n);
    assert_eq!(engine.promises_pending() as u64, n);
    (engine, store)
}

fn state(engine: &Engine) -> EngineState {
    EngineState {
        clock: engine.clock(),
        calls_in_flight: engine.calls_in_flight() as u64,
        dedup_ids: engine.dedup_ids() as u64,
    }
}

const SIZES: [u64; 2] = [10_000, 1_000_000];

/// The process's resident memory, for a rough size of the population.
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let (mut engine, mut store) = population(n);
        let live = read_live(&mut engine, &mut store);
        let over: u64 = live.iter().map(|l| l.waiting_over_limit).sum();
        eprintln!(
            "{n} calls: {} series, {over} ringing past the limit, {} alert conditions, VmRSS {}",
            live.len(),
            read_alerts(&mut engine, &mut store),
            rss()
        );

        g.bench_with_input(BenchmarkId::new("live", n), &n, |b, _| {
            b.iter(|| black_box(read_live(&mut engine, &mut store)))
        });
        // What `/metrics` costs the pipeline: the gauges, then the copy.
        g.bench_with_input(BenchmarkId::new("scrape", n), &n, |b, _| {
            b.iter(|| {
                let live = read_live(&mut engine, &mut store);
                black_box(store.snapshot(live, state(&engine)))
            })
        });
        g.bench_with_input(BenchmarkId::new("alerts", n), &n, |b, _| {
            b.iter(|| black_box(read_alerts(&mut engine, &mut store)))
        });

        let mut now = T;
        g.bench_with_input(BenchmarkId::new("tick_idle", n), &n, |b, _| {
            b.iter(|| {
                now += 250;
                engine.tick(black_box(now), &mut store)
            })
        });

        let mut i: u64 = 0;
        g.bench_with_input(BenchmarkId::new("tick_busy", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let q = i % QUEUES;
                    let mut json = vec![
                        offered(&format!("w{i}"), now + 250 - 18_100, q),
                        offered(&format!("h{i}"), now - 60_000, q),
                        answered(&format!("h{i}"), now - 60_000),
                        held(&format!("h{i}"), now + 250 - 17_100),
                        promised(&format!("p{i}"), now, now + 150, q),
                    ];
                    if let Some(old) = i.checked_sub(8) {
                        json.push(ended(&format!("w{old}"), now));
                        json.push(ended(&format!("h{old}"), now));
                        json.push(completed(&format!("p{old}"), now));
                    }
                    apply_json(&mut engine, &mut store, json, now);
                    i += 1;
                    now += 250;
                    let start = Instant::now();
                    engine.tick(black_box(now), &mut store);
                    took += start.elapsed();
                }
                took
            })
        });
    }
    g.finish();
}

/// VmRSS in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resident bytes per waiting call, as `benches/load.rs` builds them; each
/// case in a fresh process, so that neither inherits the other's heap.
fn memory() {
    for case in ["memory-no-ids", "memory-ids"] {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg(case)
            .status()
            .expect("run the memory case");
        assert!(status.success(), "{case}: {status}");
    }
}

fn memory_case(with_ids: bool) {
    const N: u64 = 1_000_000;
    {
        let s = Settings {
            clock: ClockMode::Event,
            max_calls: 2_000_000,
            ..Settings::default()
        };
        let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
        let mut engine = Engine::new(s);
        let before = rss_bytes();
        let mut json = Vec::with_capacity(1_000);
        for k in 0..N {
            let ts = T + k as Millis * 10;
            let eid = if with_ids {
                format!(r#","event_id":"me{k}""#)
            } else {
                String::new()
            };
            json.push(format!(
                r#"{{"type":"call.offered","ts":{ts},"call_id":"m{k}","queue":"q{}"{eid}}}"#,
                k % 10
            ));
            if json.len() == 1_000 {
                apply_json(&mut engine, &mut store, std::mem::take(&mut json), 0);
            }
        }
        apply_json(&mut engine, &mut store, json, 0);
        assert_eq!(engine.calls_in_flight() as u64, N);
        let after = rss_bytes();
        println!(
            "{N} waiting calls{}: RSS {:.1} MiB -> {:.1} MiB = {:.1} bytes per call",
            if with_ids {
                " with event_ids"
            } else {
                " (no event_id)"
            },
            before as f64 / 1_048_576.0,
            after as f64 / 1_048_576.0,
            (after - before) as f64 / N as f64
        );
        black_box((engine, store));
    }
}

criterion_group!(benches, engine);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for (arg, run) in [
        ("memory", memory as fn()),
        ("memory-no-ids", || memory_case(false)),
        ("memory-ids", || memory_case(true)),
    ] {
        if args.iter().any(|a| a == arg) {
            run();
            return;
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
