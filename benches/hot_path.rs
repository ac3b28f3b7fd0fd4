//! benches/hot_path.rs: Criterion micro-benchmarks of the per-event hot path
//! (decode one frame, apply events to the rules with the real metrics store,
//! record one duration) and of `/metrics` (the pipeline's part of a scrape,
//! which pauses ingest, and the render off it, 10 to 1,000 queues).
//! `cargo bench --bench hot_path`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ringwatch::event::{Event, Millis};
use ringwatch::ingest::decode::{decode_frame, decode_split};
use ringwatch::metrics::histogram::{Buckets, HdrWindow};
use ringwatch::metrics::render::{render, render_into, Format};
use ringwatch::metrics::{Bounds, BucketConfig, Store};
use ringwatch::pipeline;
use ringwatch::rules::{ClockMode, Engine, ExpiringSet, Measure, Observer, Settings};
use ringwatch::telemetry::SelfMetrics;

const BASE_TS: Millis = 1_795_424_400_000;

const OFFERED: &str = r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1-123456","queue":"q7","caller":"+15550100","event_id":"c1-e370353"}"#;
const OFFERED_RFC3339: &str = r#"{"type":"call.offered","ts":"2026-11-23T09:00:00.123Z","call_id":"c1-123456","queue":"q7","caller":"+15550100","event_id":"c1-e370353"}"#;

fn settings() -> Settings {
    Settings {
        clock: ClockMode::Event,
        // the pair benchmark keeps every call in flight
        max_calls: 100_000_000,
        ..Settings::default()
    }
}

fn engine_and_store() -> (Engine, Store) {
    let s = settings();
    let store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
    (Engine::new(s), store)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_event_millis_ts", |b| {
        b.iter(|| decode_frame(black_box(OFFERED)))
    });
    g.bench_function("one_event_rfc3339_ts", |b| {
        b.iter(|| decode_frame(black_box(OFFERED_RFC3339)))
    });
    let batch = format!("[{}]", vec![OFFERED; 100].join(","));
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100_events", |b| {
        b.iter(|| decode_frame(black_box(&batch)))
    });
    // What a connection does (the split for the pipeline, no merge).
    g.bench_function("batch_100_events_split", |b| {
        b.iter(|| decode_split(black_box(&batch)))
    });
    // The load bench's bare server's parse of the same frame: the floor.
    g.bench_function("batch_100_events_bare_parse", |b| {
        b.iter(|| serde_json::from_str::<Vec<Bare>>(black_box(&batch)).map(|v| v.len()))
    });
    g.finish();
}

#[path = "support/bare_event.rs"]
mod bare_event;
use bare_event::Typed as Bare;

/// Events are built by the decoder, as in production.
fn event(json: &str) -> Event {
    decode_frame(json).pop().unwrap().expect("valid event")
}

fn call(n: u64) -> [Event; 3] {
    let ts = BASE_TS + n as Millis * 10;
    let q = n % 10;
    [
        event(&format!(
            r#"{{"type":"call.offered","ts":{ts},"call_id":"c{n}","queue":"q{q}"}}"#
        )),
        event(&format!(
            r#"{{"type":"call.answered","ts":{},"call_id":"c{n}"}}"#,
            ts + 4_000
        )),
        event(&format!(
            r#"{{"type":"call.ended","ts":{},"call_id":"c{n}"}}"#,
            ts + 64_000
        )),
    ]
}

/// Time `engine.apply` over `iters` calls' events (built beforehand, not
/// timed), on a fresh engine and store.
fn time_apply(iters: u64, per_call: usize) -> std::time::Duration {
    let (mut engine, mut store) = engine_and_store();
    let events: Vec<Event> = (0..iters)
        .flat_map(|n| call(n).into_iter().take(per_call))
        .collect();
    let start = std::time::Instant::now();
    for ev in &events {
        black_box(engine.apply(ev, 0, &mut store));
    }
    let took = start.elapsed();
    drop(black_box(events));
    took
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    // offered + answered on a fresh call id (the call stays in flight: the
    // engine's call map grows, its rehashing included).
    g.throughput(Throughput::Elements(2));
    g.bench_function("offered_answered_pair_store", |b| {
        b.iter_custom(|iters| time_apply(iters, 2))
    });
    // The whole life of a call: offered, answered, ended.
    g.throughput(Throughput::Elements(3));
    g.bench_function("offered_answered_ended_store", |b| {
        b.iter_custom(|iters| time_apply(iters, 3))
    });
    g.finish();
}

/// The de-duplication window at its cap (the default million ids): every
/// new id is looked up, remembered, and the oldest forgotten, with the next
/// id's slots fetched ahead as `Engine::apply_all` does. Far larger than
/// the cache, so this measures memory waits.
fn dedup(c: &mut Criterion) {
    const CAP: usize = 1_000_000;
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(1));
    let mut set = ExpiringSet::new(Millis::MAX / 4, CAP);
    let ids: Vec<String> = (0..2 * CAP as u64).map(|n| format!("e-{n}")).collect();
    let mut n = 0usize;
    for id in &ids[..CAP] {
        set.insert(id, 0);
        n += 1;
    }
    g.bench_function("at_cap_1m", |b| {
        b.iter(|| {
            let key = set.key(&ids[n % ids.len()]);
            set.prefetch(set.key(&ids[(n + 1) % ids.len()]));
            let dup = set.contains_key(key);
            set.insert_key(key, 0);
            n += 1;
            dup
        })
    });
    g.finish();
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    let s = settings();
    let bounds = Bounds::new(&s, &BucketConfig::default());
    let mut buckets = Buckets::new(&bounds.time_to_answer);
    let mut v = 0i64;
    g.bench_function("buckets_time_to_answer", |b| {
        b.iter(|| {
            v = (v + 7_919) % 120_000;
            buckets.record(&bounds.time_to_answer, black_box(v))
        })
    });
    let mut hdr = HdrWindow::new(300_000);
    let mut now = BASE_TS;
    g.bench_function("hdr_window", |b| {
        b.iter(|| {
            now += 1;
            v = (v + 7_919) % 120_000;
            hdr.record(now, black_box(v))
        })
    });
    let (mut engine, mut store) = engine_and_store();
    let id = engine.declare_queue("q0", &mut store);
    g.bench_function("store_measure_answered", |b| {
        b.iter(|| {
            now += 1;
            v = (v + 7_919) % 120_000;
            store.measure(
                id,
                now,
                Measure::Answered {
                    wait: black_box(v),
                    rings: 2,
                    late: false,
                },
            )
        })
    });
    g.finish();
}

/// A store with `queues` queues, each with answered calls with holds, one
/// waiting call and a pending promise.
fn populated(queues: usize) -> (Engine, Store) {
    let (mut engine, mut store) = engine_and_store();
    for q in 0..queues {
        for c in 0..4 {
            let id = format!("q{q}-{c}");
            let t = BASE_TS + (q * 10 + c) as Millis;
            let mut evs = vec![format!(
                r#"{{"type":"call.offered","ts":{t},"call_id":"{id}","queue":"queue-{q}"}}"#
            )];
            if c < 3 {
                let answered = t + 5_000 * (c as Millis + 1);
                let (held, resumed) = (t + 30_000, t + 40_000 + 5_000 * c as Millis);
                evs.push(format!(
                    r#"{{"type":"call.answered","ts":{answered},"call_id":"{id}"}}"#
                ));
                evs.push(format!(
                    r#"{{"type":"call.hold_started","ts":{held},"call_id":"{id}"}}"#
                ));
                evs.push(format!(
                    r#"{{"type":"call.hold_ended","ts":{resumed},"call_id":"{id}"}}"#
                ));
                if c == 2 {
                    evs.push(format!(
                        r#"{{"type":"callback.promised","ts":{},"call_id":"{id}","promise_id":"p{id}","due":{}}}"#,
                        t + 50_000,
                        t + 3_600_000
                    ));
                }
                evs.push(format!(
                    r#"{{"type":"call.ended","ts":{},"call_id":"{id}"}}"#,
                    t + 60_000
                ));
            }
            for e in &evs {
                engine.apply(&event(e), 0, &mut store);
            }
        }
    }
    assert_eq!(engine.series().len(), queues);
    (engine, store)
}

fn metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    g.sample_size(20);
    let self_metrics = SelfMetrics::new();
    for queues in [10usize, 100, 1000] {
        let (engine, mut store) = populated(queues);
        // The wall's read: live gauges, the copy and the wall's windows.
        g.bench_with_input(BenchmarkId::new("snapshot", queues), &queues, |b, _| {
            b.iter(|| pipeline::snapshot(&engine, &mut store))
        });
        // Exactly what the pipeline does for a scrape of /metrics (and so
        // how long a scrape pauses ingest), nothing changed since the last.
        g.bench_with_input(
            BenchmarkId::new("pipeline_scrape", queues),
            &queues,
            |b, _| b.iter(|| pipeline::snapshot_without_windows(&engine, &mut store)),
        );
        // The same after every series recorded an answer and a hold since
        // the last scrape (not timed): every cached quantile recomputed,
        // the worst case for the pause.
        let series = engine.series().len() as u32;
        let mut now = BASE_TS + 100_000;
        g.bench_with_input(
            BenchmarkId::new("pipeline_scrape_all_changed", queues),
            &queues,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut took = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        now += 1;
                        for id in 0..series {
                            let answered = Measure::Answered {
                                wait: 7_000,
                                rings: 2,
                                late: false,
                            };
                            store.measure(id, now, answered);
                            let hold = Measure::HoldSegment {
                                duration: 9_000,
                                over_limit: false,
                            };
                            store.measure(id, now, hold);
                        }
                        let start = std::time::Instant::now();
                        black_box(pipeline::snapshot_without_windows(&engine, &mut store));
                        took += start.elapsed();
                    }
                    took
                })
            },
        );
        let snap = pipeline::snapshot(&engine, &mut store);
        g.bench_with_input(BenchmarkId::new("render", queues), &queues, |b, _| {
            b.iter(|| render(&snap, &self_metrics.registry))
        });
        // What `/metrics` does: into a buffer kept between scrapes.
        let mut kept = String::new();
        g.bench_with_input(BenchmarkId::new("render_into", queues), &queues, |b, _| {
            b.iter(|| render_into(&mut kept, &snap, &self_metrics.registry, Format::Text))
        });
        g.bench_with_input(
            BenchmarkId::new("snapshot_and_render", queues),
            &queues,
            |b, _| {
                b.iter(|| {
                    let snap = pipeline::snapshot(&engine, &mut store);
                    render(&snap, &self_metrics.registry)
                })
            },
        );
    }
    g.finish();
}

/// Snapshots: `pause` is what the pipeline does for one (the copy of the
/// state; ingest waits meanwhile), `encode` the whole body (the copy and
/// its encoding, which a blocking thread does), `decode` a start: 1,000
/// queues, `calls` calls in flight, one remembered event id per call.
fn snapshot(c: &mut Criterion) {
    use criterion::BatchSize::PerIteration;
    use ringwatch::durability::{copy_state, decode_state, encode_state, StateConfig};
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    for calls in [10_000u64, 100_000] {
        let (mut engine, mut store) = populated(1_000);
        for n in 0..calls {
            let e = format!(
                r#"{{"type":"call.offered","ts":{},"call_id":"open-{n}","queue":"queue-{}","event_id":"ev-open-{n}"}}"#,
                BASE_TS + 100_000,
                n % 1_000
            );
            engine.apply(&event(&e), 0, &mut store);
        }
        let body = encode_state(&engine, &store);
        eprintln!(
            "snapshot of 1000 queues, {calls} calls: {} bytes",
            body.len()
        );
        g.bench_with_input(BenchmarkId::new("pause", calls), &calls, |b, _| {
            // Dropped off the clock (the blocking thread drops it), before
            // the next is taken: one snapshot is written at a time.
            b.iter_batched(|| (), |()| copy_state(&engine, &store), PerIteration)
        });
        // The pause's parts: the engine's copy, the store's copy (and what
        // the pipeline did before it: the store's encoding), the
        // wallboard's windows (shared).
        g.bench_with_input(BenchmarkId::new("pause_engine", calls), &calls, |b, _| {
            b.iter_batched(|| (), |()| engine.copy_for_snapshot(), PerIteration)
        });
        g.bench_with_input(
            BenchmarkId::new("pause_store_encoded", calls),
            &calls,
            |b, _| {
                b.iter_batched(
                    || (),
                    |()| {
                        let mut out = Vec::with_capacity(256 * store.series_len() + 1024);
                        ringwatch::durability::snapshot::append(&store, &mut out);
                        out
                    },
                    PerIteration,
                )
            },
        );
        g.bench_with_input(BenchmarkId::new("pause_store", calls), &calls, |b, _| {
            b.iter_batched(|| (), |()| store.copy_for_snapshot(), PerIteration)
        });
        g.bench_with_input(BenchmarkId::new("pause_windows", calls), &calls, |b, _| {
            b.iter_batched(|| (), |()| store.windows_image(), PerIteration)
        });
        g.bench_with_input(BenchmarkId::new("encode", calls), &calls, |b, _| {
            b.iter(|| black_box(encode_state(&engine, &store)))
        });
        let s = settings();
        let cfg = StateConfig {
            bounds: Bounds::new(&s, &BucketConfig::default()),
            rules: s,
            quantile_window: 300_000,
            declared_queues: Vec::new(),
        };
        g.bench_with_input(BenchmarkId::new("decode", calls), &calls, |b, _| {
            b.iter(|| black_box(decode_state(&body, &cfg).is_ok()))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, apply, dedup, record, metrics, snapshot);
criterion_main!(benches);
