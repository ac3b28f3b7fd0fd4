//! Property tests of the rules engine (`ringwatch::rules`): random event
//! sequences over a small id space, checked against the rules of
//! `spec/events.md` and against a reference model written from that spec.
//! This file owns the proptest properties of the engine; the hand-written,
//! one-behaviour-each unit tests live in `src/rules/tests.rs`.
//!
//! Everything here is pure: no sockets, no files (failure persistence is off,
//! so a failing case is printed, never written to `proptest-regressions/`).

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use ringwatch::event::{Body, EndReason, Event, Millis, PromiseTarget, Reason};
use ringwatch::rules::{
    AlertCondition, AlertKind, ClockMode, Engine, FoldedLabel, Limits, Live, Measure, Observer,
    Outcome, SeriesId, SeriesInfo, Settings, Verdict,
};

// ---------------------------------------------------------------------------
// The id space and configuration the properties run on
// ---------------------------------------------------------------------------

const T0: Millis = 1_795_424_400_000; // 2026-11-23T09:00:00Z
const SECOND: Millis = 1_000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;

const CALLS: [&str; 4] = ["c0", "c1", "c2", "c3"];
const PROMISES: [&str; 3] = ["p0", "p1", "p2"];
const QUEUES: [&str; 2] = ["billing", "vip"];
const SITES: [&str; 1] = ["east"];
const EVENT_IDS: [&str; 6] = ["e0", "e1", "e2", "e3", "e4", "e5"];
const AGENTS: [&str; 2] = ["ann", "bob"];

/// `vip` has its own limits, so per-queue limits are exercised too.
const VIP: Limits = Limits {
    ring_cycle: 5_000,
    max_rings: 2,
    hold_limit: 10_000,
    short_abandon: 3_000,
};

fn settings(
    clock: ClockMode,
    call_ttl: Millis,
    callback_expiry: Millis,
    dedup_window: Millis,
) -> Settings {
    let mut queue_limits = HashMap::new();
    queue_limits.insert("vip".to_string(), VIP);
    Settings {
        clock,
        queue_limits,
        call_ttl,
        callback_expiry,
        dedup_window,
        ..Settings::default()
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Observer
// ---------------------------------------------------------------------------

/// Collects what the engine reports, like `Recorded` in `src/rules/tests.rs`.
#[derive(Default)]
struct Recorder {
    series: Vec<SeriesInfo>,
    measures: Vec<(SeriesId, Measure)>,
    folded: Vec<FoldedLabel>,
}

impl Observer for Recorder {
    fn new_series(&mut self, id: SeriesId, info: &SeriesInfo) {
        assert_eq!(id as usize, self.series.len(), "series ids are dense");
        self.series.push(info.clone());
    }
    fn measure(&mut self, id: SeriesId, _now: Millis, m: Measure) {
        self.measures.push((id, m));
    }
    fn folded(&mut self, label: FoldedLabel) {
        self.folded.push(label);
    }
}

impl Recorder {
    fn labels(&self) -> Vec<(String, Option<String>)> {
        self.series
            .iter()
            .map(|s| (s.queue.to_string(), s.site.as_ref().map(|s| s.to_string())))
            .collect()
    }
}

/// Apply one event and return its verdict and what it measured.
fn apply_one(
    engine: &mut Engine,
    ev: &Event,
    wall_now: Millis,
    rec: &mut Recorder,
) -> (Verdict, Vec<(SeriesId, Measure)>) {
    let before = rec.measures.len();
    let v = engine.apply(ev, wall_now, rec);
    (v, rec.measures[before..].to_vec())
}

// ---------------------------------------------------------------------------
// Random event sequences
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Offered {
        call: usize,
        queue: usize,
    },
    Answered {
        call: usize,
    },
    HoldStarted {
        call: usize,
    },
    HoldEnded {
        call: usize,
    },
    Ended {
        call: usize,
        reason: EndReason,
    },
    Promised {
        promise: usize,
        due_in: Millis,
        queue: Option<usize>,
        call: Option<usize>,
    },
    Completed {
        promise: usize,
    },
    Cancelled {
        promise: usize,
    },
    Clock,
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    /// Added to the previous event's `ts`: mostly forward, sometimes back.
    dt: Millis,
    /// Added to the previous wall clock (wall mode only): may step back too.
    wall_dt: Millis,
    event_id: Option<usize>,
    site: Option<usize>,
    agent: Option<usize>,
    /// A timer tick after the event, this long after its wall clock (only
    /// the properties that say so run them).
    tick_after: Option<Millis>,
}

/// What drives an engine: an event with its wall clock, or a timer tick.
#[derive(Clone, Debug)]
enum Input {
    Event(Event, Millis),
    Tick(Millis),
}

#[derive(Clone, Debug)]
struct Scenario {
    mode: ClockMode,
    call_ttl: Millis,
    callback_expiry: Millis,
    dedup_window: Millis,
    steps: Vec<Step>,
}

impl Scenario {
    fn settings(&self) -> Settings {
        settings(
            self.mode,
            self.call_ttl,
            self.callback_expiry,
            self.dedup_window,
        )
    }

    /// The events with their `wall_now`, each followed by its tick, if any.
    fn inputs(&self) -> Vec<Input> {
        let mut out = Vec::new();
        for ((ev, wall), step) in self.events().into_iter().zip(&self.steps) {
            out.push(Input::Event(ev, wall));
            if let Some(dt) = step.tick_after {
                out.push(Input::Tick(wall + dt));
            }
        }
        out
    }

    /// The events with their `wall_now`. Timestamps start at `T0`.
    fn events(&self) -> Vec<(Event, Millis)> {
        let mut ts = T0;
        let mut wall = T0;
        self.steps
            .iter()
            .map(|s| {
                ts += s.dt;
                wall += s.wall_dt;
                (s.event(ts), wall)
            })
            .collect()
    }
}

impl Step {
    fn event(&self, ts: Millis) -> Event {
        let body = match self.op {
            Op::Offered { call, queue } => Body::CallOffered {
                call: CALLS[call].into(),
                queue: QUEUES[queue].into(),
            },
            Op::Answered { call } => Body::CallAnswered {
                call: CALLS[call].into(),
            },
            Op::HoldStarted { call } => Body::HoldStarted {
                call: CALLS[call].into(),
            },
            Op::HoldEnded { call } => Body::HoldEnded {
                call: CALLS[call].into(),
            },
            Op::Ended { call, reason } => Body::CallEnded {
                call: CALLS[call].into(),
                reason,
            },
            Op::Promised {
                promise,
                due_in,
                queue,
                call,
            } => Body::CallbackPromised {
                promise: PROMISES[promise].into(),
                due: ts + due_in,
                target: match (queue, call) {
                    (Some(q), call) => PromiseTarget::Queue {
                        queue: QUEUES[q].into(),
                        call: call.map(|c| CALLS[c].into()),
                    },
                    (None, Some(c)) => PromiseTarget::Call {
                        call: CALLS[c].into(),
                    },
                    // The generator always names one; a queue stands in.
                    (None, None) => PromiseTarget::Queue {
                        queue: QUEUES[0].into(),
                        call: None,
                    },
                },
            },
            Op::Completed { promise } => Body::CallbackCompleted {
                promise: PROMISES[promise].into(),
            },
            Op::Cancelled { promise } => Body::CallbackCancelled {
                promise: PROMISES[promise].into(),
            },
            Op::Clock => Body::Clock,
        };
        Event {
            ts,
            event_id: self.event_id.map(|i| EVENT_IDS[i].into()),
            site: self.site.map(|i| SITES[i].into()),
            agent: self.agent.map(|i| AGENTS[i].into()),
            body,
        }
    }
}

fn end_reason() -> impl Strategy<Value = EndReason> {
    prop_oneof![
        Just(EndReason::Completed),
        Just(EndReason::Abandoned),
        Just(EndReason::Transferred),
        Just(EndReason::Failed),
    ]
}

/// Whole seconds most of the time, so the exact limits (18 s, 17 s, 5 s, ...)
/// are hit often; sometimes milliseconds; sometimes a step back in time.
fn dt() -> impl Strategy<Value = Millis> {
    prop_oneof![
        5 => (0..=5i64).prop_map(|s| s * SECOND),
        2 => (0..=20i64).prop_map(|s| s * SECOND),
        2 => 0..10_000i64,
        1 => (1..=30i64).prop_map(|s| -s * SECOND),
    ]
}

fn wall_dt() -> impl Strategy<Value = Millis> {
    prop_oneof![
        8 => 0..15_000i64,
        1 => -5_000..0i64,
    ]
}

/// `due` relative to the promise's `ts`: sometimes already past.
fn due_in() -> impl Strategy<Value = Millis> {
    prop_oneof![
        (-120..=600i64).prop_map(|s| s * SECOND),
        -120_000..600_000i64,
    ]
}

/// A call id, the first ones more often: a few calls get long lives (many
/// holds, exact limits hit), the others crowd in around them.
fn call_id() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![4 => Just(0usize), 2 => Just(1usize), 1 => 2..CALLS.len()]
}

fn op() -> impl Strategy<Value = Op> {
    let call = call_id();
    let queue = 0..QUEUES.len();
    let promise = 0..PROMISES.len();
    // The decoder guarantees queue or call_id on a promise (or both).
    let owner = prop_oneof![
        2 => queue.clone().prop_map(|q| (Some(q), None)),
        2 => call.clone().prop_map(|c| (None, Some(c))),
        1 => (queue.clone(), call.clone()).prop_map(|(q, c)| (Some(q), Some(c))),
    ];
    prop_oneof![
        3 => (call.clone(), queue).prop_map(|(call, queue)| Op::Offered { call, queue }),
        3 => call.clone().prop_map(|call| Op::Answered { call }),
        3 => call.clone().prop_map(|call| Op::HoldStarted { call }),
        3 => call.clone().prop_map(|call| Op::HoldEnded { call }),
        2 => (call, end_reason()).prop_map(|(call, reason)| Op::Ended { call, reason }),
        2 => (promise.clone(), due_in(), owner).prop_map(|(promise, due_in, (queue, call))| {
            Op::Promised { promise, due_in, queue, call }
        }),
        1 => promise.clone().prop_map(|promise| Op::Completed { promise }),
        1 => promise.prop_map(|promise| Op::Cancelled { promise }),
        1 => Just(Op::Clock),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        op(),
        dt(),
        wall_dt(),
        proptest::option::weighted(0.4, 0..EVENT_IDS.len()),
        proptest::option::weighted(0.2, 0..SITES.len()),
        proptest::option::weighted(0.3, 0..AGENTS.len()),
        proptest::option::weighted(0.3, 0..20_000i64),
    )
        .prop_map(
            |(op, dt, wall_dt, event_id, site, agent, tick_after)| Step {
                op,
                dt,
                wall_dt,
                event_id,
                site,
                agent,
                tick_after,
            },
        )
}

fn mode() -> impl Strategy<Value = ClockMode> {
    prop_oneof![3 => Just(ClockMode::Event), 1 => Just(ClockMode::Wall)]
}

/// Long timers: nothing is evicted and no event id is forgotten while a
/// sequence runs (the span of a sequence is well under an hour).
const LONG: Millis = 30 * DAY;

/// A random scenario in either clock mode. With `short_timers`, `call_ttl`
/// and `dedup_window` may be short (eviction, forgotten ids and tombstones
/// then come into play); without, both are `LONG`. `callback_expiry` is
/// always random, short enough at times for promises to be missed.
fn scenario(short_timers: bool) -> impl Strategy<Value = Scenario> {
    let ttl = if short_timers {
        prop_oneof![Just(MINUTE), Just(2 * MINUTE), Just(LONG)].boxed()
    } else {
        Just(LONG).boxed()
    };
    let dedup = if short_timers {
        prop_oneof![Just(30 * SECOND), Just(HOUR), Just(LONG)].boxed()
    } else {
        Just(LONG).boxed()
    };
    (
        mode(),
        ttl,
        prop_oneof![Just(MINUTE), Just(5 * MINUTE), Just(DAY)],
        dedup,
        proptest::collection::vec(step(), 1..100),
    )
        .prop_map(
            |(mode, call_ttl, callback_expiry, dedup_window, steps)| Scenario {
                mode,
                call_ttl,
                callback_expiry,
                dedup_window,
                steps,
            },
        )
}

/// A moment after everything in a scenario: every promise is past
/// `due + callback_expiry` and every call past `call_ttl`.
const FAR: Millis = T0 + 2 * LONG + 2 * DAY;

/// Apply a scenario's events, then a final `clock` event far in the future
/// (in both modes: `ts` and `wall_now` are both far).
fn run_to_the_end(sc: &Scenario, rec: &mut Recorder) -> (Engine, Vec<Verdict>) {
    let mut e = Engine::new(sc.settings());
    let mut verdicts: Vec<Verdict> = sc
        .events()
        .iter()
        .map(|(ev, wall)| e.apply(ev, *wall, rec))
        .collect();
    let far = FAR;
    let tick = Event {
        ts: far,
        event_id: None,
        site: None,
        agent: None,
        body: Body::Clock,
    };
    verdicts.push(e.apply(&tick, far, rec));
    (e, verdicts)
}

// ---------------------------------------------------------------------------
// The rules, computed from the spec (independently of `Limits`' helpers)
// ---------------------------------------------------------------------------

fn limits_of(queue: &str) -> Limits {
    if queue == "vip" {
        VIP
    } else {
        Limits::default()
    }
}

/// "ring n sounds during ((n-1)*cycle, n*cycle], and a caller always hears
/// at least one": the smallest n >= 1 with wait <= n * cycle.
fn spec_rings(wait: Millis, cycle: Millis) -> u32 {
    let mut n: u32 = 1;
    while wait > Millis::from(n) * cycle {
        n += 1;
    }
    n
}

/// The checks of property 1 on one measure of a series with `limits`.
fn check_measure(
    m: &Measure,
    limits: &Limits,
    mode: ClockMode,
    callback_expiry: Millis,
) -> Result<(), TestCaseError> {
    match *m {
        Measure::Answered { wait, rings, late } => {
            prop_assert!(wait >= 0, "negative wait in {m:?}");
            prop_assert!(rings >= 1, "no ring heard in {m:?}");
            prop_assert_eq!(late, rings > limits.max_rings, "late flag of {:?}", m);
            prop_assert_eq!(
                rings,
                spec_rings(wait, limits.ring_cycle),
                "rings of {:?}",
                m
            );
            prop_assert_eq!(late, wait > limits.answer_limit(), "late vs limit {:?}", m);
        }
        Measure::Abandoned { wait, short } => {
            prop_assert!(wait >= 0, "negative wait in {m:?}");
            prop_assert_eq!(short, wait < limits.short_abandon, "short flag of {:?}", m);
        }
        Measure::HoldSegment {
            duration,
            over_limit,
        } => {
            prop_assert!(duration >= 0, "negative hold in {m:?}");
            prop_assert_eq!(over_limit, duration > limits.hold_limit, "{:?}", m);
        }
        Measure::Resolved { outcome, lateness } => {
            prop_assert!(lateness >= 0, "negative lateness in {m:?}");
            match outcome {
                Outcome::Late => {
                    prop_assert!(lateness > 0, "late but on time: {m:?}");
                    // On event time a completion after due + expiry finds the
                    // promise already missed. (On wall time a completion whose
                    // ts is ahead of the wall clock can be later still.)
                    if mode == ClockMode::Event {
                        prop_assert!(lateness <= callback_expiry, "late past expiry: {m:?}");
                    }
                }
                Outcome::Kept | Outcome::Missed | Outcome::Cancelled => {
                    prop_assert_eq!(lateness, 0, "{:?}", m)
                }
            }
        }
        Measure::Offered | Measure::Promised | Measure::Evicted => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The reference model for property 4
// ---------------------------------------------------------------------------

/// What a verdict must be, without the engine's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Accepted,
    Duplicate,
    Rejected(Reason),
}

impl From<Verdict> for Expect {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accepted => Expect::Accepted,
            Verdict::Duplicate => Expect::Duplicate,
            Verdict::Rejected(r) => Expect::Rejected(r.reason),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    Waiting,
    Talking,
    OnHold { since: Millis },
}

#[derive(Clone, Copy, Debug)]
struct ModelCall {
    series: SeriesId,
    offered: Millis,
    /// `ts` of the latest applied event of the call.
    last: Millis,
    state: State,
    /// Who answered, or last put the caller on hold.
    agent: Option<&'static str>,
}

#[derive(Clone, Copy, Debug)]
struct ModelPromise {
    series: SeriesId,
    promised_at: Millis,
    due: Millis,
    agent: Option<&'static str>,
}

/// The agent an event names, as one of [`AGENTS`].
fn agent_of(ev: &Event) -> Option<&'static str> {
    let name = ev.agent.as_deref()?;
    AGENTS.into_iter().find(|a| *a == name)
}

/// A straightforward re-reading of `events.md`: the call state machine,
/// tombstones of ended calls, per-call time order, `event_id` dedup of
/// applied events, callback promises with their one outcome, and what time
/// does: promises missed once the clock passes `due + callback_expiry`,
/// calls evicted once it passes `last + call_ttl`, remembered ids and
/// tombstones forgotten after their window. Every timer is checked by a scan
/// of everything, at every move of the clock (the engine keeps indexes); the
/// live wall and the alerts are computed by a scan too.
struct Model {
    mode: ClockMode,
    call_ttl: Millis,
    callback_expiry: Millis,
    dedup_window: Millis,
    clock: Millis,
    series: HashMap<(String, Option<String>), SeriesId>,
    series_limits: Vec<Limits>,
    calls: HashMap<String, ModelCall>,
    /// Ended call -> when its tombstone is forgotten.
    ended: HashMap<String, Millis>,
    promises: HashMap<String, ModelPromise>,
    /// Resolved promise -> when its tombstone is forgotten.
    resolved: HashMap<String, Millis>,
    /// Applied `event_id` -> when it is forgotten.
    applied_ids: HashMap<String, Millis>,
}

/// An alert condition without the engine's types, for sorting.
type AlertKey = (SeriesId, String, String, Option<String>, Millis, Millis);

impl Model {
    fn new(sc: &Scenario) -> Self {
        Model {
            mode: sc.mode,
            call_ttl: sc.call_ttl,
            callback_expiry: sc.callback_expiry,
            dedup_window: sc.dedup_window,
            clock: Millis::MIN,
            series: HashMap::new(),
            series_limits: Vec::new(),
            calls: HashMap::new(),
            ended: HashMap::new(),
            promises: HashMap::new(),
            resolved: HashMap::new(),
            applied_ids: HashMap::new(),
        }
    }

    fn series_for(&mut self, queue: &str, site: Option<&str>) -> SeriesId {
        let key = (queue.to_string(), site.map(str::to_string));
        if let Some(&id) = self.series.get(&key) {
            return id;
        }
        let id = self.series_limits.len() as SeriesId;
        self.series.insert(key, id);
        self.series_limits.push(limits_of(queue));
        id
    }

    fn resolved_recently(&self, promise: &str) -> bool {
        self.resolved.contains_key(promise)
    }

    fn resolve(&mut self, id: &str, outcome: Outcome, lateness: Millis) -> (SeriesId, Measure) {
        let p = self
            .promises
            .remove(id)
            .expect("resolving a pending promise");
        self.resolved
            .insert(id.to_string(), self.clock + self.callback_expiry);
        (p.series, Measure::Resolved { outcome, lateness })
    }

    /// Move the clock to `now` (never back) and do what time does, in the
    /// engine's order: missed promises by (deadline, id), forgotten ids,
    /// evicted calls by (moment, id).
    fn advance(&mut self, now: Millis) -> Vec<(SeriesId, Measure)> {
        self.clock = self.clock.max(now);
        let clock = self.clock;
        let mut out = Vec::new();
        let mut missed: Vec<(Millis, String)> = self
            .promises
            .iter()
            .filter(|(_, p)| p.due + self.callback_expiry < clock)
            .map(|(id, p)| (p.due + self.callback_expiry, id.clone()))
            .collect();
        missed.sort();
        for (_, id) in missed {
            out.push(self.resolve(&id, Outcome::Missed, 0));
        }
        self.applied_ids.retain(|_, until| *until > clock);
        self.ended.retain(|_, until| *until > clock);
        self.resolved.retain(|_, until| *until > clock);
        let mut idle: Vec<(Millis, String)> = self
            .calls
            .iter()
            .filter(|(_, c)| clock - c.last > self.call_ttl)
            .map(|(id, c)| (c.last + self.call_ttl, id.clone()))
            .collect();
        idle.sort();
        for (_, id) in idle {
            if let Some(c) = self.calls.remove(&id) {
                out.push((c.series, Measure::Evicted));
            }
        }
        out
    }

    /// A timer tick: wall time moves, event time does not.
    fn tick(&mut self, wall_now: Millis) -> Vec<(SeriesId, Measure)> {
        match self.mode {
            ClockMode::Wall => self.advance(wall_now),
            ClockMode::Event => Vec::new(),
        }
    }

    fn apply(&mut self, ev: &Event, wall_now: Millis) -> (Expect, Vec<(SeriesId, Measure)>) {
        if let Some(id) = &ev.event_id {
            if self.applied_ids.contains_key(id.as_str()) {
                return (Expect::Duplicate, Vec::new());
            }
        }
        let now = match self.mode {
            ClockMode::Event => ev.ts,
            ClockMode::Wall => wall_now,
        };
        let mut out = self.advance(now);
        let result = self.body(ev, &mut out);
        match result {
            Ok(()) => {
                if let Some(id) = &ev.event_id {
                    self.applied_ids
                        .insert(id.to_string(), self.clock + self.dedup_window);
                }
                (Expect::Accepted, out)
            }
            Err(reason) => (Expect::Rejected(reason), out),
        }
    }

    /// The live wall at the clock, from every call and promise.
    fn live(&self) -> Vec<Live> {
        let now = self.clock;
        let mut live = vec![Live::default(); self.series_limits.len()];
        for c in self.calls.values() {
            let l = &mut live[c.series as usize];
            let limits = self.series_limits[c.series as usize];
            match c.state {
                State::Waiting => {
                    let wait = (now - c.offered).max(0);
                    l.waiting += 1;
                    l.waiting_over_limit += u64::from(wait > limits.answer_limit());
                    l.oldest_wait = l.oldest_wait.max(wait);
                }
                State::Talking => l.active += 1,
                State::OnHold { since } => {
                    let held = (now - since).max(0);
                    l.active += 1;
                    l.on_hold += 1;
                    l.on_hold_over_limit += u64::from(held > limits.hold_limit);
                    l.longest_hold = l.longest_hold.max(held);
                }
            }
        }
        for p in self.promises.values() {
            let l = &mut live[p.series as usize];
            l.callbacks_pending += 1;
            l.callbacks_overdue += u64::from(now > p.due);
        }
        live
    }

    /// Every call and promise past its limit at the clock, sorted.
    fn alerts(&self) -> Vec<AlertKey> {
        let now = self.clock;
        let mut out = Vec::new();
        for (id, c) in &self.calls {
            let limits = self.series_limits[c.series as usize];
            let (kind, since, limit) = match c.state {
                State::Waiting => ("ringing", c.offered, limits.answer_limit()),
                State::OnHold { since } => ("on_hold", since, limits.hold_limit),
                State::Talking => continue,
            };
            if now - since > limit {
                out.push((
                    c.series,
                    kind.into(),
                    id.clone(),
                    c.agent.map(str::to_string),
                    since + limit,
                    now - since,
                ));
            }
        }
        for (id, p) in &self.promises {
            if now > p.due {
                let agent = p.agent.map(str::to_string);
                out.push((
                    p.series,
                    "callback".into(),
                    id.clone(),
                    agent,
                    p.due,
                    now - p.due,
                ));
            }
        }
        out.sort();
        out
    }

    /// The call an event names, checked for existence and time order.
    fn call_at(&mut self, call: &str, ts: Millis) -> Result<&mut ModelCall, Reason> {
        let after_end = self.ended.contains_key(call);
        match self.calls.get_mut(call) {
            None if after_end => Err(Reason::InvalidTransition),
            None => Err(Reason::UnknownCall),
            Some(c) if ts < c.last => Err(Reason::TimeGoesBackwards),
            Some(c) => Ok(c),
        }
    }

    fn body(&mut self, ev: &Event, out: &mut Vec<(SeriesId, Measure)>) -> Result<(), Reason> {
        let ts = ev.ts;
        match &ev.body {
            Body::CallOffered { call, queue } => {
                if self.calls.contains_key(call.as_str()) || self.ended.contains_key(call.as_str())
                {
                    return Err(Reason::DuplicateCall);
                }
                let series = self.series_for(queue, ev.site.as_deref());
                self.calls.insert(
                    call.to_string(),
                    ModelCall {
                        series,
                        offered: ts,
                        last: ts,
                        state: State::Waiting,
                        agent: None,
                    },
                );
                out.push((series, Measure::Offered));
            }
            Body::CallAnswered { call } => {
                let c = self.call_at(call, ts)?;
                let State::Waiting = c.state else {
                    return Err(Reason::InvalidTransition);
                };
                c.state = State::Talking;
                c.last = ts;
                c.agent = agent_of(ev);
                let (series, wait) = (c.series, ts - c.offered);
                let l = self.series_limits[series as usize];
                out.push((
                    series,
                    Measure::Answered {
                        wait,
                        rings: spec_rings(wait, l.ring_cycle),
                        late: wait > Millis::from(l.max_rings) * l.ring_cycle,
                    },
                ));
            }
            Body::HoldStarted { call } => {
                let c = self.call_at(call, ts)?;
                let State::Talking = c.state else {
                    return Err(Reason::InvalidTransition);
                };
                c.state = State::OnHold { since: ts };
                c.last = ts;
                c.agent = agent_of(ev).or(c.agent);
            }
            Body::HoldEnded { call } => {
                let c = self.call_at(call, ts)?;
                let State::OnHold { since } = c.state else {
                    return Err(Reason::InvalidTransition);
                };
                c.state = State::Talking;
                c.last = ts;
                let series = c.series;
                let l = self.series_limits[series as usize];
                out.push((
                    series,
                    Measure::HoldSegment {
                        duration: ts - since,
                        over_limit: ts - since > l.hold_limit,
                    },
                ));
            }
            Body::CallEnded { call, reason } => {
                let c = *self.call_at(call, ts)?;
                self.calls.remove(call.as_str());
                self.ended
                    .entry(call.to_string())
                    .or_insert(self.clock + self.call_ttl);
                let l = self.series_limits[c.series as usize];
                match c.state {
                    State::Waiting if *reason != EndReason::Transferred => {
                        let wait = ts - c.offered;
                        out.push((
                            c.series,
                            Measure::Abandoned {
                                wait,
                                short: wait < l.short_abandon,
                            },
                        ));
                    }
                    State::Waiting | State::Talking => {}
                    State::OnHold { since } => out.push((
                        c.series,
                        Measure::HoldSegment {
                            duration: ts - since,
                            over_limit: ts - since > l.hold_limit,
                        },
                    )),
                }
            }
            Body::CallbackPromised {
                promise,
                due,
                target,
            } => {
                if self.promises.contains_key(promise.as_str()) || self.resolved_recently(promise) {
                    return Err(Reason::DuplicatePromise);
                }
                let series = match target {
                    PromiseTarget::Queue { queue, .. } => {
                        self.series_for(queue, ev.site.as_deref())
                    }
                    PromiseTarget::Call { call } => match self.calls.get(call.as_str()) {
                        Some(c) => c.series,
                        None => return Err(Reason::MissingField),
                    },
                };
                self.promises.insert(
                    promise.to_string(),
                    ModelPromise {
                        series,
                        promised_at: ts,
                        due: *due,
                        agent: agent_of(ev),
                    },
                );
                out.push((series, Measure::Promised));
            }
            Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } => {
                let p = match self.promises.get(promise.as_str()) {
                    Some(p) if ts < p.promised_at => return Err(Reason::TimeGoesBackwards),
                    // Stamped after the promise's expiry: missed, and too late.
                    Some(p) if ts > p.due + self.callback_expiry => {
                        out.push(self.resolve(promise, Outcome::Missed, 0));
                        return Err(Reason::AlreadyResolved);
                    }
                    Some(p) => *p,
                    None if self.resolved_recently(promise) => return Err(Reason::AlreadyResolved),
                    None => return Err(Reason::UnknownPromise),
                };
                let (outcome, lateness) = match ev.body {
                    Body::CallbackCancelled { .. } => (Outcome::Cancelled, 0),
                    _ if ts <= p.due => (Outcome::Kept, 0),
                    _ => (Outcome::Late, ts - p.due),
                };
                out.push(self.resolve(promise, outcome, lateness));
            }
            Body::Clock => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Property 6: independent per-call (and per-promise) scripts
// ---------------------------------------------------------------------------

/// The events of one call, in `ts` order: offered (usually), then a few
/// transitions, valid or not, each at or after the previous one.
fn call_script(call: usize) -> impl Strategy<Value = Vec<Event>> {
    let op = prop_oneof![
        3 => Just(Op::Answered { call }),
        2 => Just(Op::HoldStarted { call }),
        2 => Just(Op::HoldEnded { call }),
        1 => end_reason().prop_map(move |reason| Op::Ended { call, reason }),
        1 => (0..QUEUES.len()).prop_map(move |queue| Op::Offered { call, queue }),
    ];
    let forward = prop_oneof![
        3 => (0..=20i64).prop_map(|s| s * SECOND),
        1 => 0..20_000i64,
    ];
    (
        0..QUEUES.len(),
        proptest::option::weighted(0.3, 0..SITES.len()),
        proptest::bool::weighted(0.9),
        0..=120i64,
        proptest::collection::vec((op, forward), 0..8),
    )
        .prop_map(move |(queue, site, offer, start, ops)| {
            let first = offer.then_some((Op::Offered { call, queue }, 0));
            let mut ts = T0 + start * SECOND;
            first
                .into_iter()
                .chain(ops)
                .map(|(op, dt)| {
                    ts += dt;
                    Step {
                        op,
                        dt,
                        wall_dt: 0,
                        event_id: None,
                        site,
                        agent: None,
                        tick_after: None,
                    }
                    .event(ts)
                })
                .collect()
        })
}

/// The events of one promise: promised, then a few completions or
/// cancellations (or a second promise), each at or after the previous one.
fn promise_script(promise: usize) -> impl Strategy<Value = Vec<Event>> {
    let op = prop_oneof![
        2 => Just(Op::Completed { promise }),
        1 => Just(Op::Cancelled { promise }),
        1 => (0..QUEUES.len()).prop_map(move |q| Op::Promised {
            promise,
            due_in: MINUTE,
            queue: Some(q),
            call: None,
        }),
    ];
    (
        0..QUEUES.len(),
        0..=120i64,
        due_in(),
        proptest::collection::vec((op, 0..=600i64), 0..3),
    )
        .prop_map(move |(queue, start, due_in, ops)| {
            let first = Op::Promised {
                promise,
                due_in,
                queue: Some(queue),
                call: None,
            };
            let mut ts = T0 + start * SECOND;
            std::iter::once((first, 0))
                .chain(ops)
                .map(|(op, dt)| {
                    ts += dt * SECOND;
                    Step {
                        op,
                        dt,
                        wall_dt: 0,
                        event_id: None,
                        site: None,
                        agent: None,
                        tick_after: None,
                    }
                    .event(ts)
                })
                .collect()
        })
}

/// Scripts for distinct calls and promises, plus a random interleaving that
/// keeps each script's own order: a shuffled list of script indexes, each
/// index repeated once per event of its script.
fn interleaved_scripts() -> impl Strategy<Value = (Vec<Vec<Event>>, Vec<usize>)> {
    (1..=CALLS.len(), 0..=PROMISES.len())
        .prop_flat_map(|(calls, promises)| {
            (
                (0..calls).map(call_script).collect::<Vec<_>>(),
                (0..promises).map(promise_script).collect::<Vec<_>>(),
            )
        })
        .prop_map(|(calls, promises)| calls.into_iter().chain(promises).collect::<Vec<_>>())
        .prop_flat_map(|scripts: Vec<Vec<Event>>| {
            let tags: Vec<usize> = scripts
                .iter()
                .enumerate()
                .flat_map(|(i, s)| std::iter::repeat_n(i, s.len()))
                .collect();
            (Just(scripts), Just(tags).prop_shuffle())
        })
}

/// `(script, event index)` pairs from the shuffled script tags.
fn interleave(tags: &[usize]) -> Vec<(usize, usize)> {
    let mut next = vec![0; tags.iter().max().map_or(0, |m| m + 1)];
    tags.iter()
        .map(|&s| {
            next[s] += 1;
            (s, next[s] - 1)
        })
        .collect()
}

/// Run `(script, event)` pairs in the given order; return each script's
/// verdicts and the multiset of measures keyed by series labels (series ids
/// depend on which queue is seen first, so they are not compared).
fn run_scripts(
    scripts: &[Vec<Event>],
    order: &[(usize, usize)],
) -> (Vec<Vec<Verdict>>, BTreeMap<String, usize>, Recorder) {
    let mut e = Engine::new(settings(ClockMode::Event, LONG, DAY, LONG));
    let mut rec = Recorder::default();
    let mut verdicts = vec![Vec::new(); scripts.len()];
    for &(s, i) in order {
        verdicts[s].push(e.apply(&scripts[s][i], 0, &mut rec));
    }
    let mut measures = BTreeMap::new();
    for (id, m) in &rec.measures {
        let info = &rec.series[*id as usize];
        let key = format!("{}/{:?}/{:?}", info.queue, info.site, m);
        *measures.entry(key).or_insert(0) += 1;
    }
    (verdicts, measures, rec)
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// Per-series tallies of what was measured, for property 3.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    offered: u64,
    answered: u64,
    abandoned: u64,
    evicted: u64,
    promised: u64,
    resolved: u64,
}

fn tally(rec: &Recorder) -> Vec<Tally> {
    let mut t = vec![Tally::default(); rec.series.len()];
    for (id, m) in &rec.measures {
        let t = &mut t[*id as usize];
        match m {
            Measure::Offered => t.offered += 1,
            Measure::Answered { .. } => t.answered += 1,
            Measure::Abandoned { .. } => t.abandoned += 1,
            Measure::Evicted => t.evicted += 1,
            Measure::Promised => t.promised += 1,
            Measure::Resolved { .. } => t.resolved += 1,
            Measure::HoldSegment { .. } => {}
        }
    }
    t
}

fn alert_key(e: &Engine, a: &AlertCondition) -> AlertKey {
    let kind = match a.kind {
        AlertKind::RingingPastLimit => "ringing",
        AlertKind::OnHoldPastLimit => "on_hold",
        AlertKind::CallbackOverdue => "callback",
    };
    let agent = a.agent.map(|id| e.agent_name(id).to_string());
    (
        a.series,
        kind.into(),
        a.subject.to_string(),
        agent,
        a.since,
        a.elapsed,
    )
}

fn is_missed(m: &Measure) -> bool {
    matches!(
        m,
        Measure::Resolved {
            outcome: Outcome::Missed,
            ..
        }
    )
}

proptest! {
    #![proptest_config(config())]

    /// Property 1: no duration is ever negative, the ring count follows the
    /// cadence, and every flag (late, short, over the limit) agrees with the
    /// series' limits; in both clock modes, with any timers.
    /// Checked on random sequences (any clock, any timers) and on interleaved
    /// valid call scripts, where exact limits (17 s on hold, 18 s to answer,
    /// 5 s abandon) come up often.
    #[test]
    fn no_negative_duration_and_flags_match_limits(
        sc in scenario(true),
        (scripts, tags) in interleaved_scripts(),
    ) {
        let mut rec = Recorder::default();
        let (_, verdicts) = run_to_the_end(&sc, &mut rec);
        prop_assert_eq!(verdicts.len(), sc.steps.len() + 1);
        for (id, m) in &rec.measures {
            let limits = rec.series[*id as usize].limits;
            prop_assert_eq!(
                limits,
                limits_of(&rec.series[*id as usize].queue),
                "series limits"
            );
            check_measure(m, &limits, sc.mode, sc.callback_expiry)?;
        }
        let rec = run_scripts(&scripts, &interleave(&tags)).2;
        for (id, m) in &rec.measures {
            check_measure(m, &rec.series[*id as usize].limits, ClockMode::Event, DAY)?;
        }
    }

    /// Property 2: each promise reaches at most one outcome, only while it is
    /// pending, and once time has passed every `due + callback_expiry`, every
    /// accepted promise has exactly one outcome.
    #[test]
    fn each_promise_resolves_exactly_once(sc in scenario(true)) {
        let mut e = Engine::new(sc.settings());
        let mut rec = Recorder::default();
        let expiry = sc.callback_expiry;
        // Promises the engine accepted and has not resolved: id -> (due, promised at).
        let mut pending: HashMap<String, (Millis, Millis)> = HashMap::new();
        let mut clock = Millis::MIN;
        let far = FAR;
        let tick = Event { ts: far, event_id: None, site: None, agent: None, body: Body::Clock };
        let events = sc.events();
        for (i, (ev, wall)) in events.iter().chain([(tick, far)].iter()).enumerate() {
            let (v, new) = apply_one(&mut e, ev, *wall, &mut rec);
            if v == Verdict::Duplicate {
                prop_assert!(new.is_empty(), "#{}: a duplicate measured {:?}", i, new);
                continue;
            }
            clock = clock.max(match sc.mode {
                ClockMode::Event => ev.ts,
                ClockMode::Wall => *wall,
            });
            // Exactly the pending promises past due + expiry are missed now.
            let mut overdue: Vec<String> = pending
                .iter()
                .filter(|(_, (due, _))| *due + expiry < clock)
                .map(|(id, _)| id.clone())
                .collect();
            overdue.sort();
            // An outcome stamped after due + expiry comes too late on either
            // clock: its (still pending) promise is missed and the event refused.
            if let Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } = &ev.body {
                if let Some((due, at)) = pending.get(promise.as_str()) {
                    if !overdue.contains(&promise.to_string()) && ev.ts >= *at && ev.ts > *due + expiry {
                        prop_assert!(matches!(v, Verdict::Rejected(_)), "#{}: {:?} past expiry: {:?}", i, ev, v);
                        overdue.push(promise.to_string());
                    }
                }
            }
            let missed = new.iter().filter(|(_, m)| is_missed(m)).count();
            prop_assert_eq!(
                missed, overdue.len(),
                "#{} {:?}: missed {:?} of pending {:?} at clock {}", i, ev, new, pending, clock
            );
            for id in &overdue {
                pending.remove(id);
            }
            let own: Vec<Measure> = new
                .iter()
                .map(|(_, m)| *m)
                .filter(|m| !is_missed(m) && *m != Measure::Evicted)
                .collect();
            match (&ev.body, v) {
                (Body::CallbackPromised { promise, due, .. }, Verdict::Accepted) => {
                    prop_assert!(
                        !pending.contains_key(promise.as_str()),
                        "#{}: {} accepted while still pending", i, promise
                    );
                    pending.insert(promise.to_string(), (*due, ev.ts));
                    prop_assert_eq!(own, vec![Measure::Promised], "#{}", i);
                }
                (
                    Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise },
                    Verdict::Accepted,
                ) => {
                    let due = pending.remove(promise.as_str());
                    prop_assert!(due.is_some(), "#{}: {} resolved but not pending", i, promise);
                    let due = due.map(|(due, _)| due).unwrap_or_default();
                    let expected = match ev.body {
                        Body::CallbackCancelled { .. } => Outcome::Cancelled,
                        _ if ev.ts <= due => Outcome::Kept,
                        _ => Outcome::Late,
                    };
                    prop_assert_eq!(own.len(), 1, "#{}: {:?}", i, own);
                    prop_assert!(
                        matches!(own[0], Measure::Resolved { outcome, .. } if outcome == expected),
                        "#{}: expected {:?}, got {:?}", i, expected, own
                    );
                }
                _ => prop_assert!(
                    !own.iter().any(|m| matches!(m, Measure::Promised | Measure::Resolved { .. })),
                    "#{} {:?} ({:?}) measured {:?}", i, ev, v, own
                ),
            }
            prop_assert_eq!(e.promises_pending(), pending.len(), "#{}", i);
        }
        // After the far-future clock: nothing pending, one outcome each.
        prop_assert!(pending.is_empty(), "{:?}", pending);
        prop_assert_eq!(e.promises_pending(), 0);
        let promised = rec.measures.iter().filter(|(_, m)| *m == Measure::Promised).count();
        let resolved = rec
            .measures
            .iter()
            .filter(|(_, m)| matches!(m, Measure::Resolved { .. }))
            .count();
        prop_assert_eq!(promised, resolved);
    }

    /// Property 3: the live gauges agree with each other, with the engine's
    /// own counts and with what was measured (per series: promised = resolved
    /// + pending; a call is waiting, answered or abandoned at most once).
    #[test]
    fn live_gauges_are_consistent(sc in scenario(true)) {
        let mut e = Engine::new(sc.settings());
        let mut rec = Recorder::default();
        let far = FAR;
        let mut events = sc.events();
        events.push((Event { ts: far, event_id: None, site: None, agent: None, body: Body::Clock }, far));
        for (i, (ev, wall)) in events.iter().enumerate() {
            e.apply(ev, *wall, &mut rec);
            e.tick(*wall, &mut rec);
            let live = e.live();
            prop_assert_eq!(live.len(), rec.series.len());
            let tallies = tally(&rec);
            let (mut in_flight, mut pending) = (0, 0);
            for (s, (l, t)) in live.iter().zip(&tallies).enumerate() {
                let limits = rec.series[s].limits;
                let ctx = format!("#{i} {ev:?}: series {s} {l:?} {t:?}");
                in_flight += l.waiting + l.active;
                pending += l.callbacks_pending;
                prop_assert!(l.on_hold <= l.active, "{}", ctx);
                prop_assert!(l.waiting_over_limit <= l.waiting, "{}", ctx);
                prop_assert!(l.on_hold_over_limit <= l.on_hold, "{}", ctx);
                prop_assert!(l.callbacks_overdue <= l.callbacks_pending, "{}", ctx);
                prop_assert!(l.oldest_wait >= 0 && l.longest_hold >= 0, "{}", ctx);
                prop_assert!(l.waiting > 0 || l.oldest_wait == 0, "{}", ctx);
                prop_assert!(l.on_hold > 0 || l.longest_hold == 0, "{}", ctx);
                prop_assert_eq!(
                    l.waiting_over_limit > 0,
                    l.oldest_wait > limits.answer_limit(),
                    "{}", ctx
                );
                prop_assert_eq!(
                    l.on_hold_over_limit > 0,
                    l.longest_hold > limits.hold_limit,
                    "{}", ctx
                );
                prop_assert_eq!(t.promised, t.resolved + l.callbacks_pending, "{}", ctx);
                prop_assert!(l.active <= t.answered, "{}", ctx);
                prop_assert!(l.waiting + t.answered + t.abandoned <= t.offered, "{}", ctx);
                prop_assert!(
                    l.waiting + l.active + t.abandoned + t.evicted <= t.offered,
                    "{}", ctx
                );
            }
            prop_assert_eq!(in_flight, e.calls_in_flight() as u64, "#{}", i);
            prop_assert_eq!(pending, e.promises_pending() as u64, "#{}", i);
        }
        // Far in the future everything has ended, been evicted or resolved.
        prop_assert_eq!(e.calls_in_flight(), 0);
        prop_assert_eq!(e.promises_pending(), 0);
    }

    /// Property 4: whatever the order of events, each one gets exactly one
    /// verdict, the one the reference model gives (accepted, duplicate, or
    /// rejected for the same reason), and accepted events measure exactly
    /// what the model measures, timers included: evictions, missed
    /// promises and forgotten ids happen at the same events, in the same
    /// order. Any timers, short ones included.
    #[test]
    fn verdicts_and_measures_match_the_reference_model(sc in scenario(true)) {
        let mut e = Engine::new(sc.settings());
        let mut rec = Recorder::default();
        let mut model = Model::new(&sc);
        for (i, (ev, wall)) in sc.events().iter().enumerate() {
            let (v, got) = apply_one(&mut e, ev, *wall, &mut rec);
            let (expected, want) = model.apply(ev, *wall);
            prop_assert_eq!(Expect::from(v), expected, "#{} {:?} (wall {})", i, ev, wall);
            prop_assert_eq!(&got, &want, "#{} {:?} measured", i, ev);
            prop_assert_eq!(e.calls_in_flight(), model.calls.len(), "#{}", i);
            prop_assert_eq!(e.promises_pending(), model.promises.len(), "#{}", i);
            prop_assert_eq!(e.clock(), model.clock, "#{}", i);
        }
        prop_assert_eq!(rec.series.len(), model.series_limits.len());
        for (info, id) in &model.series {
            let s = &rec.series[*id as usize];
            prop_assert_eq!(
                (s.queue.to_string(), s.site.as_ref().map(|s| s.to_string())),
                info.clone()
            );
        }
        prop_assert!(rec.folded.is_empty());
    }

    /// Property 7: the engine keeps its live wall and alert conditions
    /// incrementally, with timers; after every event and every tick they are
    /// exactly what a scan of every call and promise gives at the same
    /// clock (the model's), and what the timers fired (missed, evicted) is
    /// what the model's scans find due at that moment. Any timers, ticks
    /// between events.
    #[test]
    fn live_and_alerts_equal_a_full_scan_after_events_and_ticks(sc in scenario(true)) {
        let mut e = Engine::new(sc.settings());
        let mut rec = Recorder::default();
        let mut model = Model::new(&sc);
        let mut inputs = sc.inputs();
        let far = Event { ts: FAR, event_id: None, site: None, agent: None, body: Body::Clock };
        inputs.push(Input::Event(far, FAR));
        for (i, input) in inputs.iter().enumerate() {
            let before = rec.measures.len();
            let want = match input {
                Input::Event(ev, wall) => {
                    let v = e.apply(ev, *wall, &mut rec);
                    let (expected, want) = model.apply(ev, *wall);
                    prop_assert_eq!(Expect::from(v), expected, "#{} {:?}", i, input);
                    want
                }
                Input::Tick(wall) => {
                    e.tick(*wall, &mut rec);
                    model.tick(*wall)
                }
            };
            prop_assert_eq!(&rec.measures[before..], &want[..], "#{} {:?} measured", i, input);
            prop_assert_eq!(e.clock(), model.clock, "#{}", i);
            let live = e.live();
            prop_assert_eq!(&live, &model.live(), "#{} {:?}: live", i, input);
            let mut alerts: Vec<AlertKey> = e.alerts().iter().map(|a| alert_key(&e, a)).collect();
            // The engine lists them by series; the model sorts them whole.
            alerts.sort();
            prop_assert_eq!(alerts, model.alerts(), "#{} {:?}: alerts", i, input);
            // Reads change nothing: a second one gives the same.
            prop_assert_eq!(e.live(), live);
        }
        let idle = e.live().iter().all(|l| *l == Live::default());
        prop_assert!(idle, "everything ended, evicted or resolved at FAR");
    }

    /// Property 5: the engine is deterministic: the same events (and the same
    /// wall clock, and the same ticks) on two fresh engines give the same
    /// verdicts, measures in the same order (evictions of one tick included,
    /// though each engine's maps have their own random order), series and
    /// live gauges, with any timers.
    #[test]
    fn same_events_same_results(sc in scenario(true)) {
        let mut a = Engine::new(sc.settings());
        let mut b = Engine::new(sc.settings());
        let (mut ra, mut rb) = (Recorder::default(), Recorder::default());
        for (i, (ev, wall)) in sc.events().iter().enumerate() {
            let (va, ma) = apply_one(&mut a, ev, *wall, &mut ra);
            let (vb, mb) = apply_one(&mut b, ev, *wall, &mut rb);
            prop_assert_eq!(va, vb, "#{} {:?}", i, ev);
            prop_assert_eq!(ma, mb, "#{} {:?}", i, ev);
            if i % 4 == 3 {
                a.tick(*wall, &mut ra);
                b.tick(*wall, &mut rb);
                let (la, lb) = (a.live(), b.live());
                prop_assert_eq!(la, lb, "#{} live", i);
            }
        }
        let far = FAR;
        a.tick(far, &mut ra);
        b.tick(far, &mut rb);
        prop_assert_eq!(a.live(), b.live());
        prop_assert_eq!(&ra.measures, &rb.measures);
        prop_assert_eq!(ra.labels(), rb.labels());
        prop_assert_eq!(&ra.folded, &rb.folded);
        prop_assert_eq!(a.clock(), b.clock());
        prop_assert_eq!(a.calls_in_flight(), b.calls_in_flight());
        prop_assert_eq!(a.promises_pending(), b.promises_pending());
        prop_assert_eq!(a.dedup_ids(), b.dedup_ids());
    }

    /// Property 6: calls (and promises) are independent: interleaving their
    /// events in any order, each one's own events kept in `ts` order, gives
    /// every call the same verdicts and the same multiset of measures as
    /// applying them one call after another (event time, long timers).
    #[test]
    fn interleaving_calls_changes_nothing((scripts, tags) in interleaved_scripts()) {
        let in_sequence: Vec<(usize, usize)> = scripts
            .iter()
            .enumerate()
            .flat_map(|(s, evs)| (0..evs.len()).map(move |i| (s, i)))
            .collect();
        let (v1, m1, _) = run_scripts(&scripts, &in_sequence);
        let (v2, m2, _) = run_scripts(&scripts, &interleave(&tags));
        prop_assert_eq!(v1, v2);
        prop_assert_eq!(m1, m2);
    }
}
