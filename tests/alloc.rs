//! The engine's steady state allocates nothing: full call lifecycles
//! (offered, answered, hold started, hold ended, ended, each with an
//! `event_id`) applied to one engine and the metrics store, with as many
//! calls in flight at the end as at the start, count the heap allocations
//! made inside `Engine::apply` by a counting global allocator.
//!
//! The count is per thread (the test harness runs other threads), and only
//! the calls to `apply` are counted: building the events is the decoder's
//! business. Deterministic: counts, not time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringwatch::event::{Body, EndReason, Event, Id, Millis};
use ringwatch::metrics::{Bounds, BucketConfig, Store};
use ringwatch::rules::{ClockMode, Engine, Settings, Verdict};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// const-initialised thread-local `Cell`, which never allocates itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// 2026-11-23T09:00:00Z.
const BASE: Millis = 1_795_424_400_000;
/// A call is offered every `STEP` ms of event time.
const STEP: Millis = 10;
/// When each event of call `k` happens after its offer (as `benches/load.rs`
/// has them): answered at 4 s, on hold at 10 s, back at 15 s, ended at 64 s.
const PHASES: [Millis; 5] = [0, 4_000, 10_000, 15_000, 64_000];
const QUEUES: u64 = 10;

fn call(k: u64) -> Id {
    Id::from(format!("c{k}").as_str())
}

/// The event of phase `phase` of call `k`, with the `n`th event id.
fn event(k: u64, phase: usize, n: u64) -> Event {
    let ts = BASE + k as Millis * STEP + PHASES[phase];
    let agent = (phase == 1 || phase == 2).then(|| format!("agent-{}", k % QUEUES).into());
    let body = match phase {
        0 => Body::CallOffered {
            call: call(k),
            queue: format!("q{}", k % QUEUES).into(),
        },
        1 => Body::CallAnswered { call: call(k) },
        2 => Body::HoldStarted { call: call(k) },
        3 => Body::HoldEnded { call: call(k) },
        _ => Body::CallEnded {
            call: call(k),
            reason: EndReason::Completed,
        },
    };
    Event {
        ts,
        event_id: Some(format!("ev-{n}").into()),
        site: None,
        agent,
        body,
    }
}

/// The events of step `j` (event time `BASE + j * STEP`), in time order:
/// the phase-`p` event of the call offered `PHASES[p]` earlier.
fn step(j: u64, n: &mut u64) -> Vec<Event> {
    let mut out = Vec::with_capacity(5);
    for phase in (0..PHASES.len()).rev() {
        let back = (PHASES[phase] / STEP) as u64;
        if let Some(k) = j.checked_sub(back) {
            out.push(event(k, phase, *n));
            *n += 1;
        }
    }
    out
}

#[test]
fn call_lifecycles_allocate_nothing_in_steady_state() {
    let settings = Settings {
        clock: ClockMode::Event,
        // Short windows, so that the warm-up fills them: from then on every
        // remembered id that expires makes room for one that comes.
        call_ttl: 120_000,
        dedup_window: 60_000,
        per_agent: true,
        ..Settings::default()
    };
    let mut store = Store::new(Bounds::new(&settings, &BucketConfig::default()), 300_000);
    let mut engine = Engine::new(settings);
    let mut n = 0;
    // 600 s of event time: every window has filled and turned over.
    let warm_up = 60_000;
    for j in 0..warm_up {
        for ev in step(j, &mut n) {
            assert_eq!(engine.apply(&ev, 0, &mut store), Verdict::Accepted);
        }
    }
    let in_flight = engine.calls_in_flight();
    assert_eq!(in_flight as i64, PHASES[4] / STEP);
    let (mut events, mut counted) = (0u64, 0u64);
    for j in warm_up..warm_up + 20_000 {
        for ev in step(j, &mut n) {
            let before = allocs();
            let verdict = engine.apply(&ev, 0, &mut store);
            counted += allocs() - before;
            assert_eq!(verdict, Verdict::Accepted);
            events += 1;
        }
    }
    assert_eq!(engine.calls_in_flight(), in_flight);
    eprintln!(
        "{events} events, {counted} allocations: {:.4} per event",
        counted as f64 / events as f64
    );
    assert_eq!(counted, 0, "allocations in {events} events");
}
