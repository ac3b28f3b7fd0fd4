//! Fuzz target `rules_engine`: structured event sequences (built with
//! `arbitrary` over small call, promise, queue, site, agent and event-id
//! alphabets, on a mostly forward clock) applied to `ringwatch::rules::Engine`
//! under fuzzed settings, interleaved with timer ticks, resends, `live()`,
//! `alerts()` and `/metrics` renderings of the real metrics store.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - every applied event yields exactly one verdict, and the verdict
//!   matches what it measured: a duplicate measures nothing, a rejection
//!   nothing of its own, an acceptance exactly its type's figures; an
//!   accepted event with an `event_id` sent again is a duplicate;
//! - every figure agrees with its series' limits and no duration is negative;
//! - the clock never goes back; series and agent ids are dense;
//! - calls in flight <= `max_calls`, pending promises <= `max_promises`,
//!   remembered ids <= `dedup_max_ids`, series within the label caps;
//! - live gauges never negative and consistent with each other, with the
//!   engine's counts, with the counters (promised - resolved = pending) and
//!   with `alerts()` at the same instant;
//! - in the metrics store's snapshots every counter, bucket, `_count` and
//!   `_sum` is monotone (`_count` = the buckets' total, `_sum` >= 0); the
//!   rendered exposition parses, keeps that, and has no negative gauge
//!   other than a quantile.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringwatch::event::{Body, EndReason, Event, EventKind, Millis, PromiseTarget};
use ringwatch::metrics::render::render;
use ringwatch::metrics::{
    AgentCounters, Bounds, BucketConfig, Counters, EngineState, Snapshot, Store,
};
use ringwatch::rules::{
    AgentId, AgentMeasure, AlertKind, ClockMode, Engine, FoldedLabel, Limits, Live, Measure,
    Observer, Outcome, SeriesId, SeriesInfo, Settings, Verdict,
};
use ringwatch::sim::scrape::Samples;

const T0: Millis = 1_795_424_400_000; // 2026-11-23T09:00:00Z
/// The decoder's range for `ts` and `due`: the engine never sees others.
const TS_MAX: Millis = 253_402_300_799_999;
const SECOND: Millis = 1_000;
const HOUR: Millis = 3_600 * SECOND;
const DAY: Millis = 24 * HOUR;

const CALLS: [&str; 6] = ["c0", "c1", "c2", "c3", "c4", "c5"];
const PROMISES: [&str; 4] = ["p0", "p1", "p2", "p3"];
/// `other` is the fold value itself: a queue may really be called that.
const QUEUES: [&str; 4] = ["billing", "vip", "sales", "other"];
const SITES: [&str; 3] = ["east", "west", "other"];
const AGENTS: [&str; 3] = ["a1", "a2", "a3"];
const EVENT_IDS: [&str; 8] = ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"];

/// Configuration choices, each an index into the table of values the
/// configuration accepts (the edges of each range included).
#[derive(Arbitrary, Debug)]
struct Config {
    event_clock: bool,
    limits: LimitChoice,
    vip: LimitChoice,
    call_ttl: u8,
    callback_expiry: u8,
    dedup_window: u8,
    dedup_max_ids: u8,
    max_calls: u8,
    max_promises: u8,
    max_queues: u8,
    max_sites: u8,
    per_agent: bool,
    max_agents: u8,
}

#[derive(Arbitrary, Debug)]
struct LimitChoice {
    ring_cycle: u8,
    max_rings: u8,
    hold_limit: u8,
    short_abandon: u8,
}

fn pick<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

impl LimitChoice {
    fn limits(&self) -> Limits {
        Limits {
            ring_cycle: pick(&[6_000, 1, 5_000, 600_000], self.ring_cycle),
            max_rings: pick(&[3, 1, 2, 100], self.max_rings),
            hold_limit: pick(&[17_000, 1, 10_000, DAY], self.hold_limit),
            short_abandon: pick(&[5_000, 0, 3_000, HOUR], self.short_abandon),
        }
    }
}

impl Config {
    fn settings(&self) -> Settings {
        let mut queue_limits = std::collections::HashMap::new();
        queue_limits.insert("vip".to_string(), self.vip.limits());
        Settings {
            clock: if self.event_clock {
                ClockMode::Event
            } else {
                ClockMode::Wall
            },
            limits: self.limits.limits(),
            queue_limits,
            call_ttl: pick(&[4 * HOUR, SECOND, 60 * SECOND, 30 * DAY], self.call_ttl),
            callback_expiry: pick(&[DAY, 0, 60 * SECOND, 365 * DAY], self.callback_expiry),
            dedup_window: pick(&[HOUR, 0, 30 * SECOND, 30 * DAY], self.dedup_window),
            dedup_max_ids: pick(&[1_000_000, 0, 1, 3], self.dedup_max_ids),
            max_calls: pick(&[1_000_000, 1, 2, 4], self.max_calls),
            max_promises: pick(&[1_000_000, 1, 2], self.max_promises),
            max_queues: pick(&[1_000, 1, 2], self.max_queues),
            max_sites: pick(&[100, 1], self.max_sites),
            per_agent: self.per_agent,
            max_agents: pick(&[500, 1, 2], self.max_agents),
        }
    }
}

/// A step of time: mostly forward, whole seconds often (exact limits), some
/// long jumps (timers, eviction), some steps back, and the range's edges.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dt {
    Seconds(u8),
    Millis(u16),
    Back(u8),
    Hours(u8),
    Edge(bool),
}

impl Dt {
    fn after(self, t: Millis) -> Millis {
        let t = match self {
            Dt::Seconds(s) => t + Millis::from(s) * SECOND,
            Dt::Millis(ms) => t + Millis::from(ms),
            Dt::Back(s) => t - Millis::from(s) * SECOND,
            Dt::Hours(h) => t + Millis::from(h) * HOUR,
            Dt::Edge(end) => {
                if end {
                    TS_MAX
                } else {
                    0
                }
            }
        };
        t.clamp(0, TS_MAX)
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Due {
    /// Seconds from the promise's `ts`, past or future.
    In(i16),
    Edge(bool),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Offered {
        call: u8,
        queue: u8,
    },
    Answered {
        call: u8,
    },
    HoldStarted {
        call: u8,
    },
    HoldEnded {
        call: u8,
    },
    Ended {
        call: u8,
        reason: u8,
    },
    Promised {
        promise: u8,
        due: Due,
        queue: Option<u8>,
        call: Option<u8>,
    },
    Completed {
        promise: u8,
    },
    Cancelled {
        promise: u8,
    },
    Clock,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Ev {
    op: Op,
    dt: Dt,
    wall_dt: Dt,
    event_id: Option<u8>,
    site: Option<u8>,
    agent: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Event(Ev),
    /// The previous event again, as an at-least-once sender resends.
    Resend,
    Tick(Dt),
    Live(Dt),
    Alerts(Dt),
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    steps: Vec<Step>,
}

impl Ev {
    fn event(&self, ts: Millis) -> Event {
        let call = |c: u8| CALLS[usize::from(c) % CALLS.len()].into();
        let promise = |p: u8| PROMISES[usize::from(p) % PROMISES.len()].into();
        let queue = |q: u8| QUEUES[usize::from(q) % QUEUES.len()].into();
        let body = match self.op {
            Op::Offered { call: c, queue: q } => Body::CallOffered {
                call: call(c),
                queue: queue(q),
            },
            Op::Answered { call: c } => Body::CallAnswered { call: call(c) },
            Op::HoldStarted { call: c } => Body::HoldStarted { call: call(c) },
            Op::HoldEnded { call: c } => Body::HoldEnded { call: call(c) },
            Op::Ended { call: c, reason } => Body::CallEnded {
                call: call(c),
                reason: pick(
                    &[
                        EndReason::Completed,
                        EndReason::Abandoned,
                        EndReason::Transferred,
                        EndReason::Failed,
                    ],
                    reason,
                ),
            },
            Op::Promised {
                promise: p,
                due,
                queue: q,
                call: c,
            } => {
                let due = match due {
                    Due::In(s) => (ts + Millis::from(s) * SECOND).clamp(0, TS_MAX),
                    Due::Edge(end) => {
                        if end {
                            TS_MAX
                        } else {
                            0
                        }
                    }
                };
                // The decoder requires `queue` or `call_id`.
                let target = match (q, c) {
                    (Some(q), c) => PromiseTarget::Queue {
                        queue: queue(q),
                        call: c.map(call),
                    },
                    (None, Some(c)) => PromiseTarget::Call { call: call(c) },
                    (None, None) => PromiseTarget::Queue {
                        queue: queue(0),
                        call: None,
                    },
                };
                Body::CallbackPromised {
                    promise: promise(p),
                    due,
                    target,
                }
            }
            Op::Completed { promise: p } => Body::CallbackCompleted {
                promise: promise(p),
            },
            Op::Cancelled { promise: p } => Body::CallbackCancelled {
                promise: promise(p),
            },
            Op::Clock => Body::Clock,
        };
        Event {
            ts,
            event_id: self
                .event_id
                .map(|i| EVENT_IDS[usize::from(i) % EVENT_IDS.len()].into()),
            site: self
                .site
                .map(|i| SITES[usize::from(i) % SITES.len()].into()),
            agent: self
                .agent
                .map(|i| AGENTS[usize::from(i) % AGENTS.len()].into()),
            body,
        }
    }
}

/// Per-series figures as the metrics layer counts them.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    offered: u64,
    answered: u64,
    abandoned: u64,
    holds: u64,
    promised: u64,
    resolved: u64,
    evicted: u64,
}

/// Checks every figure as it is reported, keeps what the checks after each
/// step need, and forwards everything to the real metrics store.
struct Recorder {
    store: Store,
    series: Vec<SeriesInfo>,
    tally: Vec<Tally>,
    agents: usize,
    /// The figures of the current step.
    step: Vec<Measure>,
    last_now: Millis,
    expiry: Millis,
}

impl Observer for Recorder {
    fn new_series(&mut self, id: SeriesId, info: &SeriesInfo) {
        assert_eq!(id as usize, self.series.len(), "series ids are dense");
        self.series.push(info.clone());
        self.tally.push(Tally::default());
        self.store.new_series(id, info);
    }

    fn measure(&mut self, id: SeriesId, now: Millis, m: Measure) {
        assert!(
            now >= self.last_now,
            "the clock went back: {now} < {}",
            self.last_now
        );
        self.last_now = now;
        let limits = self.series[id as usize].limits;
        let t = &mut self.tally[id as usize];
        match m {
            Measure::Offered => t.offered += 1,
            Measure::Answered { wait, rings, late } => {
                assert!(wait >= 0, "{m:?}");
                let want = (wait + limits.ring_cycle - 1) / limits.ring_cycle;
                assert_eq!(
                    u64::from(rings),
                    want.clamp(1, Millis::from(u32::MAX)) as u64
                );
                assert_eq!(late, wait > limits.answer_limit(), "{m:?} {limits:?}");
                t.answered += 1;
            }
            Measure::Abandoned { wait, short } => {
                assert!(wait >= 0, "{m:?}");
                assert_eq!(short, wait < limits.short_abandon, "{m:?} {limits:?}");
                t.abandoned += 1;
            }
            Measure::HoldSegment {
                duration,
                over_limit,
            } => {
                assert!(duration >= 0, "{m:?}");
                assert_eq!(over_limit, duration > limits.hold_limit, "{m:?} {limits:?}");
                t.holds += 1;
            }
            Measure::Promised => t.promised += 1,
            Measure::Resolved { outcome, lateness } => {
                assert_eq!(lateness > 0, outcome == Outcome::Late, "{m:?}");
                assert!(lateness >= 0 && lateness <= self.expiry, "{m:?}");
                t.resolved += 1;
            }
            Measure::Evicted => t.evicted += 1,
        }
        assert!(t.answered + t.abandoned <= t.offered, "{t:?}");
        assert!(t.resolved <= t.promised, "{t:?}");
        self.step.push(m);
        self.store.measure(id, now, m);
    }

    fn folded(&mut self, label: FoldedLabel) {
        self.store.folded(label);
    }

    fn new_agent(&mut self, id: AgentId, name: &str) {
        assert_eq!(id as usize, self.agents, "agent ids are dense");
        self.agents += 1;
        self.store.new_agent(id, name);
    }

    fn agent_measure(&mut self, id: AgentId, m: AgentMeasure) {
        assert!(
            (id as usize) < self.agents,
            "agent {id} was never announced"
        );
        self.store.agent_measure(id, m);
    }
}

/// Figures a step may produce whatever it is: timers firing as the clock moves.
fn is_timer(m: &Measure) -> bool {
    matches!(
        m,
        Measure::Evicted
            | Measure::Resolved {
                outcome: Outcome::Missed,
                ..
            }
    )
}

struct Run {
    settings: Settings,
    engine: Engine,
    rec: Recorder,
    ts: Millis,
    wall: Millis,
    clock: Millis,
    last: Option<(Event, Verdict)>,
    fresh: bool,
    /// The latest `ts` and `due` applied: timers past them must have fired
    /// by the end.
    max_ts: Millis,
    max_due: Millis,
    received: [u64; EventKind::ALL.len()],
    registry: prometheus::Registry,
    samples: BTreeMap<String, f64>,
    snapshot: Option<Snapshot>,
}

impl Run {
    fn new(settings: Settings) -> Self {
        let bounds = Bounds::new(&settings, &BucketConfig::default());
        Run {
            engine: Engine::new(settings.clone()),
            rec: Recorder {
                store: Store::new(bounds, 300 * SECOND),
                series: Vec::new(),
                tally: Vec::new(),
                agents: 0,
                step: Vec::new(),
                last_now: Millis::MIN,
                expiry: settings.callback_expiry,
            },
            settings,
            ts: T0,
            wall: T0,
            clock: Millis::MIN,
            last: None,
            fresh: false,
            max_ts: 0,
            max_due: 0,
            received: [0; EventKind::ALL.len()],
            registry: prometheus::Registry::new(),
            samples: BTreeMap::new(),
            snapshot: None,
        }
    }

    fn step(&mut self, step: &Step) {
        self.rec.step.clear();
        // Whether the previous step was the event a resend repeats: only
        // then has no timer run in between to forget its id.
        let fresh = std::mem::take(&mut self.fresh);
        match step {
            Step::Event(ev) => {
                self.ts = ev.dt.after(self.ts);
                self.wall = ev.wall_dt.after(self.wall);
                let event = ev.event(self.ts);
                let verdict = self.apply(&event);
                self.last = Some((event, verdict));
                self.fresh = true;
            }
            Step::Resend => {
                if let Some((event, before)) = self.last.take() {
                    let again = self.apply(&event);
                    if fresh
                        && before == Verdict::Accepted
                        && event.event_id.is_some()
                        && self.settings.dedup_max_ids > 0
                    {
                        assert_eq!(again, Verdict::Duplicate, "resent {event:?}");
                    }
                    self.last = Some((event, again));
                }
            }
            Step::Tick(dt) => {
                self.move_wall(*dt);
                self.engine.tick(self.wall, &mut self.rec);
                assert!(self.rec.step.iter().all(is_timer), "{:?}", self.rec.step);
            }
            Step::Live(dt) => {
                self.move_wall(*dt);
                self.live(false);
            }
            Step::Alerts(dt) => {
                self.move_wall(*dt);
                // As the pipeline does: a tick, then the read.
                self.engine.tick(self.wall, &mut self.rec);
                for a in self.engine.alerts() {
                    assert!(a.elapsed > 0 && a.since <= self.engine.clock(), "{a:?}");
                }
                assert!(self.rec.step.iter().all(is_timer), "{:?}", self.rec.step);
            }
        }
        self.check_bounds();
    }

    /// The wall clock of a timer tick, a scrape or an alert check: it moves
    /// the monitor's clock in wall mode only.
    fn move_wall(&mut self, dt: Dt) {
        self.wall = dt.after(self.wall);
        if self.settings.clock == ClockMode::Wall {
            self.clock = self.clock.max(self.wall);
        }
    }

    /// Apply one event and check its verdict against what it measured.
    fn apply(&mut self, ev: &Event) -> Verdict {
        self.rec.step.clear();
        self.max_ts = self.max_ts.max(ev.ts);
        if let Body::CallbackPromised { due, .. } = ev.body {
            self.max_due = self.max_due.max(due);
        }
        let v = self.engine.apply(ev, self.wall, &mut self.rec);
        let own: Vec<Measure> = self
            .rec
            .step
            .iter()
            .copied()
            .filter(|m| !is_timer(m))
            .collect();
        match v {
            Verdict::Duplicate => {
                assert!(ev.event_id.is_some(), "a duplicate without an event_id");
                assert!(
                    self.rec.step.is_empty(),
                    "a duplicate measured {:?}",
                    self.rec.step
                );
                return v;
            }
            Verdict::Rejected(r) => {
                assert!(own.is_empty(), "rejected ({r:?}) yet measured {own:?}");
            }
            Verdict::Accepted => {
                self.received[ev.body.kind().index()] += 1;
                let ok = match (&ev.body, own.as_slice()) {
                    (Body::CallOffered { .. }, [Measure::Offered]) => true,
                    (Body::CallAnswered { .. }, [Measure::Answered { .. }]) => true,
                    (Body::HoldStarted { .. } | Body::Clock, []) => true,
                    (Body::HoldEnded { .. }, [Measure::HoldSegment { .. }]) => true,
                    (Body::CallEnded { .. }, [] | [Measure::HoldSegment { .. }]) => true,
                    (Body::CallEnded { reason, .. }, [Measure::Abandoned { .. }]) => {
                        *reason != EndReason::Transferred
                    }
                    (Body::CallbackPromised { .. }, [Measure::Promised]) => true,
                    (Body::CallbackCompleted { .. }, [Measure::Resolved { outcome, .. }]) => {
                        matches!(outcome, Outcome::Kept | Outcome::Late)
                    }
                    (Body::CallbackCancelled { .. }, [Measure::Resolved { outcome, .. }]) => {
                        *outcome == Outcome::Cancelled
                    }
                    _ => false,
                };
                assert!(ok, "accepted {ev:?} measured {own:?}");
            }
        }
        let now = match self.settings.clock {
            ClockMode::Event => ev.ts,
            ClockMode::Wall => self.wall,
        };
        self.clock = self.clock.max(now);
        assert_eq!(self.engine.clock(), self.clock, "the monitor's clock");
        v
    }

    fn check_bounds(&self) {
        let s = &self.settings;
        let e = &self.engine;
        assert!(e.clock() >= self.clock, "the clock went back");
        assert!(e.calls_in_flight() <= s.max_calls);
        assert!(e.promises_pending() <= s.max_promises);
        assert!(e.dedup_ids() <= s.dedup_max_ids);
        // Each cap plus `other`; sites also "no site".
        assert!(e.series().len() <= (s.max_queues + 1) * (s.max_sites + 2));
        assert_eq!(e.series().len(), self.rec.series.len());
        assert!(self.rec.agents <= s.max_agents + 1);
        let offered: u64 = self.rec.tally.iter().map(|t| t.offered).sum();
        assert_eq!(offered, self.received[EventKind::CallOffered.index()]);
        let promised: u64 = self.rec.tally.iter().map(|t| t.promised).sum();
        assert_eq!(promised, self.received[EventKind::CallbackPromised.index()]);
    }

    /// `live()` and `alerts()` at one instant, then the snapshot `/metrics`
    /// renders (`last`: the final one of the run).
    fn live(&mut self, last: bool) {
        self.rec.step.clear();
        // As the pipeline does: a tick, then reads, which change nothing.
        self.engine.tick(self.wall, &mut self.rec);
        assert!(self.rec.step.iter().all(is_timer), "{:?}", self.rec.step);
        let live = self.engine.live();
        let alerts = self.engine.alerts();
        assert_eq!(live.len(), self.rec.series.len());
        let (mut in_flight, mut pending) = (0, 0);
        let mut over = vec![[0u64; 3]; live.len()];
        for a in &alerts {
            assert!(a.elapsed > 0 && a.since <= self.engine.clock(), "{a:?}");
            let kind = match a.kind {
                AlertKind::RingingPastLimit => 0,
                AlertKind::OnHoldPastLimit => 1,
                AlertKind::CallbackOverdue => 2,
            };
            over[a.series as usize][kind] += 1;
        }
        for (i, (l, t)) in live.iter().zip(&self.rec.tally).enumerate() {
            check_live(l, &self.rec.series[i].limits, i);
            in_flight += l.waiting + l.active;
            pending += l.callbacks_pending;
            assert_eq!(
                t.promised - t.resolved,
                l.callbacks_pending,
                "series {i} {l:?} {t:?}"
            );
            let gone = t.abandoned + t.evicted;
            assert!(
                l.waiting + l.active + gone <= t.offered,
                "series {i} {l:?} {t:?}"
            );
            assert!(l.active <= t.answered, "series {i} {l:?} {t:?}");
            assert_eq!(
                over[i],
                [
                    l.waiting_over_limit,
                    l.on_hold_over_limit,
                    l.callbacks_overdue
                ],
                "series {i} {l:?}: alerts {alerts:?}"
            );
        }
        assert_eq!(in_flight, self.engine.calls_in_flight() as u64);
        assert_eq!(pending, self.engine.promises_pending() as u64);

        let state = EngineState {
            clock: self.engine.clock(),
            calls_in_flight: self.engine.calls_in_flight() as u64,
            dedup_ids: self.engine.dedup_ids() as u64,
        };
        let snapshot = self.rec.store.snapshot(live, state);
        if let Some(before) = &self.snapshot {
            check_monotone(before, &snapshot);
        }
        // The text is costly to parse at fuzzing speed: the first scrape and
        // the last one are rendered, every one is compared as numbers.
        if self.samples.is_empty() || last {
            let text = render(&snapshot, &self.registry);
            let samples = Samples::parse(&text).expect("the exposition parses").0;
            for (key, value) in &samples {
                if is_counter(key) {
                    let before = self.samples.get(key).copied().unwrap_or(0.0);
                    assert!(*value >= before, "{key} went from {before} to {value}");
                } else if !key.contains("_quantile_seconds") {
                    assert!(*value >= 0.0, "gauge {key} = {value}");
                }
            }
            for key in self.samples.keys().filter(|k| is_counter(k)) {
                assert!(samples.contains_key(key), "{key} disappeared");
            }
            self.samples = samples;
        }
        self.snapshot = Some(snapshot);
    }
}

/// Every counter, bucket, `_count` and `_sum` of `after` is at least its
/// value in `before`; series and agents are only ever added.
fn check_monotone(before: &Snapshot, after: &Snapshot) {
    assert!(after.series.len() >= before.series.len());
    assert!(after.agents.len() >= before.agents.len());
    let counters = |c: &Counters| {
        let [kept, late, missed, cancelled] = c.resolved;
        [
            c.offered,
            c.answered,
            c.answered_late,
            c.abandoned_short,
            c.abandoned_long,
            c.holds,
            c.hold_exceeded,
            c.promised,
            kept,
            late,
            missed,
            cancelled,
            c.evicted,
        ]
    };
    let grew = |a: &[u64], b: &[u64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x <= y);
    for (i, (b, a)) in before.series.iter().zip(&after.series).enumerate() {
        assert_eq!(
            (&b.queue, &b.site),
            (&a.queue, &a.site),
            "series {i} relabelled"
        );
        assert!(
            grew(&counters(&b.counters), &counters(&a.counters)),
            "series {i}: {:?} -> {:?}",
            b.counters,
            a.counters
        );
        let (hb, ha) = (&b.histograms, &a.histograms);
        for (name, x, y) in [
            ("time_to_answer", &hb.time_to_answer, &ha.time_to_answer),
            ("rings", &hb.rings, &ha.rings),
            ("hold", &hb.hold, &ha.hold),
            ("abandon_wait", &hb.abandon_wait, &ha.abandon_wait),
            ("lateness", &hb.lateness, &ha.lateness),
        ] {
            let ok = grew(&x.counts, &y.counts)
                && x.count <= y.count
                && x.sum <= y.sum
                && y.sum >= 0
                && y.count == y.counts.iter().sum::<u64>();
            assert!(ok, "series {i} {name}: {x:?} -> {y:?}");
        }
    }
    for (i, (b, a)) in before.agents.iter().zip(&after.agents).enumerate() {
        let v = |c: &AgentCounters| {
            let [kept, late, missed, cancelled] = c.resolved;
            [
                c.answered,
                c.answered_late,
                c.holds,
                c.hold_exceeded,
                kept,
                late,
                missed,
                cancelled,
            ]
        };
        assert!(
            b.agent == a.agent && grew(&v(b), &v(a)),
            "agent {i}: {b:?} -> {a:?}"
        );
    }
    let (tb, ta) = (&before.totals, &after.totals);
    assert!(grew(&tb.received, &ta.received) && grew(&tb.rejected, &ta.rejected));
    assert!(tb.duplicates <= ta.duplicates && grew(&tb.folded, &ta.folded));
}

/// Counters, histogram buckets, `_count` and `_sum`: never decrease.
fn is_counter(key: &str) -> bool {
    let name = key.split('{').next().unwrap_or(key);
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn check_live(l: &Live, limits: &Limits, series: usize) {
    let ok = l.oldest_wait >= 0
        && l.longest_hold >= 0
        && l.on_hold <= l.active
        && l.waiting_over_limit <= l.waiting
        && l.on_hold_over_limit <= l.on_hold
        && l.callbacks_overdue <= l.callbacks_pending
        && (l.waiting > 0 || l.oldest_wait == 0)
        && (l.on_hold > 0 || l.longest_hold == 0)
        && (l.waiting_over_limit > 0) == (l.oldest_wait > limits.answer_limit())
        && (l.on_hold_over_limit > 0) == (l.longest_hold > limits.hold_limit);
    assert!(
        ok,
        "series {series}: inconsistent live gauges {l:?} for {limits:?}"
    );
}

fuzz_target!(|input: Input| {
    let mut run = Run::new(input.config.settings());
    for step in &input.steps {
        run.step(step);
    }
    // The end of the range: every timer not set past it has fired.
    let end = TS_MAX;
    run.step(&Step::Event(Ev {
        op: Op::Clock,
        dt: Dt::Edge(true),
        wall_dt: Dt::Edge(true),
        event_id: None,
        site: None,
        agent: None,
    }));
    run.live(true);
    assert_eq!(run.engine.clock(), end);
    let s = &run.settings;
    if run.max_ts + s.call_ttl < end {
        assert_eq!(run.engine.calls_in_flight(), 0, "calls outlive call_ttl");
    }
    if run.max_ts.max(run.max_due) + s.callback_expiry < end {
        assert_eq!(
            run.engine.promises_pending(),
            0,
            "promises outlive their expiry"
        );
    }
});
