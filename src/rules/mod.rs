//! The rules engine: a pure, synchronous state machine over call events and
//! the monitor's clock. It owns the calls in flight, pending promises and the
//! de-duplication window; it does no I/O and takes no locks. What it measures
//! it hands to an [`Observer`] (the metrics layer in production, a plain
//! vector in tests).
//!
//! Only events and the clock change the state: everything that happens with
//! time (a caller ringing past the limit, a hold past its limit, a promise
//! overdue or missed, an idle call evicted) sits in a time-ordered index and
//! happens when [`Engine::advance`] (or [`Engine::tick`]) passes its moment.
//! [`Engine::live`] and [`Engine::alerts`] read what is kept and change
//! nothing: their cost does not grow with the calls that are not changing.

mod calls;
mod expiring;
mod gauges;
mod keys;
mod ordered;
mod persist;
mod promises;
pub mod series;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::event::{Body, Event, Id, Millis, Reason};
use calls::{CallRef, CallTable};
use gauges::{Gauges, LaneKind, Subject};

pub use expiring::ExpiringSet;
pub use persist::{EngineCopy, EngineImage};
pub use series::{FoldedLabel, SeriesId, SeriesInfo, SeriesTable};

/// The per-queue service limits, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub ring_cycle: Millis,
    pub max_rings: u32,
    pub hold_limit: Millis,
    pub short_abandon: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ring_cycle: 6_000,
            max_rings: 3,
            hold_limit: 17_000,
            short_abandon: 5_000,
        }
    }
}

impl Limits {
    /// The longest time to answer that is still within the ring limit.
    pub fn answer_limit(&self) -> Millis {
        self.ring_cycle * Millis::from(self.max_rings)
    }

    /// Rings heard for a time to answer: ring n sounds during
    /// ((n-1)*cycle, n*cycle], and a caller always hears at least one.
    pub fn rings(&self, wait: Millis) -> u32 {
        let rings = (wait.max(0) + self.ring_cycle - 1) / self.ring_cycle;
        u32::try_from(rings).unwrap_or(u32::MAX).max(1)
    }
}

/// Where the monitor's "now" comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Wall time: live operation.
    Wall,
    /// The greatest `ts` seen so far: replays give the same figures as live.
    Event,
}

/// Everything the engine needs to know from configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub clock: ClockMode,
    pub limits: Limits,
    pub queue_limits: HashMap<String, Limits>,
    pub call_ttl: Millis,
    pub callback_expiry: Millis,
    pub dedup_window: Millis,
    pub dedup_max_ids: usize,
    pub max_calls: usize,
    pub max_promises: usize,
    pub max_queues: usize,
    pub max_sites: usize,
    /// Per-agent attribution (opt-in: agent names are bounded by `max_agents`).
    pub per_agent: bool,
    pub max_agents: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            clock: ClockMode::Wall,
            limits: Limits::default(),
            queue_limits: HashMap::new(),
            call_ttl: 4 * 3_600_000,
            callback_expiry: 24 * 3_600_000,
            dedup_window: 3_600_000,
            dedup_max_ids: 1_000_000,
            max_calls: 1_000_000,
            max_promises: 1_000_000,
            max_queues: 1_000,
            max_sites: 100,
            per_agent: false,
            max_agents: 500,
        }
    }
}

impl Settings {
    pub fn limits_for(&self, queue: &str) -> Limits {
        self.queue_limits.get(queue).copied().unwrap_or(self.limits)
    }
}

/// One figure the rules produced, for one series, at the monitor's `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Offered,
    Answered {
        wait: Millis,
        rings: u32,
        late: bool,
    },
    Abandoned {
        wait: Millis,
        short: bool,
    },
    HoldSegment {
        duration: Millis,
        over_limit: bool,
    },
    Promised,
    Resolved {
        outcome: Outcome,
        lateness: Millis,
    },
    Evicted,
}

/// The one outcome of a callback promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Kept,
    Late,
    Missed,
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Kept,
        Outcome::Late,
        Outcome::Missed,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Kept => "kept",
            Outcome::Late => "late",
            Outcome::Missed => "missed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Index of an agent name (with `Settings::per_agent`); dense from 0.
pub type AgentId = u32;

/// What is attributed to an agent, with `Settings::per_agent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentMeasure {
    Answered { late: bool },
    HoldSegment { over_limit: bool },
    Resolved { outcome: Outcome },
}

/// Receives what the engine measures. Implemented by the metrics store.
pub trait Observer {
    /// A (queue, site) pair was seen for the first time.
    fn new_series(&mut self, id: SeriesId, info: &SeriesInfo);
    fn measure(&mut self, id: SeriesId, now: Millis, m: Measure);
    /// A label value was folded into `other` because its cap was reached.
    fn folded(&mut self, label: FoldedLabel);
    /// An agent name was seen for the first time (per-agent mode only).
    fn new_agent(&mut self, _id: AgentId, _name: &str) {}
    /// A figure attributed to an agent (per-agent mode only).
    fn agent_measure(&mut self, _id: AgentId, _m: AgentMeasure) {}
}

/// Why the engine refused an event: a stable reason plus a fixed phrase; the
/// caller adds the event's type and id when it writes the acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
    pub why: &'static str,
}

impl Reject {
    const fn new(reason: Reason, why: &'static str) -> Self {
        Reject { reason, why }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Duplicate,
    Rejected(Reject),
}

/// What a supervisor alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A caller still ringing past `max_rings`.
    RingingPastLimit,
    /// A caller on hold past `hold_limit`.
    OnHoldPastLimit,
    /// A pending callback promise past its `due`.
    CallbackOverdue,
}

/// One call or promise past its limit right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertCondition {
    pub kind: AlertKind,
    pub series: SeriesId,
    /// The call id (ringing, hold) or promise id (callback).
    pub subject: Id,
    pub agent: Option<AgentId>,
    /// When the limit was passed.
    pub since: Millis,
    /// How long the caller has waited, been on hold, or the promise is overdue.
    pub elapsed: Millis,
}

/// The live wall for one series at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub waiting: u64,
    pub waiting_over_limit: u64,
    pub oldest_wait: Millis,
    pub active: u64,
    pub on_hold: u64,
    pub on_hold_over_limit: u64,
    pub longest_hold: Millis,
    pub callbacks_pending: u64,
    pub callbacks_overdue: u64,
}

/// Where a call is. Each state accepts no event but those that leave it, so
/// `last` is when the call entered its state: a waiting call's `last` is its
/// offer, a held call's the start of its hold. No other field is needed,
/// and a call is 32 bytes (with its id, 56: one slot of the call table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    Waiting,
    Talking,
    /// Since `last`.
    OnHold,
}

/// Where a call lives in the calls table ([`calls::CallTable`]): its slot,
/// stable while the call is in flight (the lanes and the eviction timers
/// name calls by it). Here, not in `calls`, so `gauges` names it without
/// importing `calls`, which imports `gauges`.
type Handle = u32;

#[derive(Clone, Copy, Debug)]
struct Call {
    series: SeriesId,
    /// Who answered (or last held) the call, in per-agent mode.
    agent: Option<AgentId>,
    offered: Millis,
    /// `ts` of the call's latest applied event: no later event may be earlier,
    /// and eviction counts `call_ttl` from here.
    last: Millis,
    state: CallState,
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Promise {
    series: SeriesId,
    /// Who made the promise, in per-agent mode.
    agent: Option<AgentId>,
    promised_at: Millis,
    due: Millis,
}

/// What snapshots hold is in `persist`: everything but the settings and the
/// indexes, which are rebuilt from the calls and promises.
pub struct Engine {
    settings: Settings,
    /// The monitor's clock as last advanced; never goes back.
    clock: Millis,
    series: SeriesTable,
    calls: CallTable,
    /// Calls that ended recently: a late event for one is an invalid
    /// transition, not an unknown call, and its id cannot be offered again.
    ended: ExpiringSet,
    promises: HashMap<Id, Promise>,
    /// Promises that reached their outcome: a second outcome is refused.
    resolved: ExpiringSet,
    dedup: ExpiringSet,
    agents: series::Interner,
    /// The live gauges and what is past its limit, kept at `clock`; also
    /// the timers of waiting and held calls' eviction and of promises'
    /// "missed".
    gauges: Gauges,
    /// (last + call_ttl, call) of talking calls, the ones with no lane: a
    /// talking call's `last` is that of the answer or the hold's end that
    /// made it talk, and an entry is pushed at each. Entries of calls that
    /// ended or went on hold since are dropped when they come up.
    idle: BinaryHeap<Reverse<(Millis, Handle)>>,
    /// What the lanes took off at the last advance, kept for their room:
    /// calls to evict and promises missed, as (moment, subject).
    due_calls: Vec<(Millis, Handle)>,
    due_promises: Vec<(Millis, Id)>,
}

/// An event's hashes, computed once (see [`Engine::apply_all`]): its
/// `event_id`'s key in the de-duplication window, and for an event about a
/// call, its call id's hash.
#[derive(Clone, Copy)]
struct Hashes {
    dedup: Option<u64>,
    call: Option<u64>,
}

/// The call an event of the call lifecycle names.
fn call_of(body: &Body) -> Option<&Id> {
    match body {
        Body::CallOffered { call, .. }
        | Body::CallAnswered { call }
        | Body::HoldStarted { call }
        | Body::HoldEnded { call }
        | Body::CallEnded { call, .. } => Some(call),
        _ => None,
    }
}

impl Engine {
    pub fn new(settings: Settings) -> Self {
        // The call table shares the ended set's hash (see `CallRef`).
        let ended = ExpiringSet::new(settings.call_ttl, settings.max_calls);
        Engine {
            series: SeriesTable::new(settings.max_queues, settings.max_sites),
            calls: CallTable::keyed(ended.hash_key()),
            ended,
            promises: HashMap::new(),
            resolved: ExpiringSet::new(settings.callback_expiry, settings.max_promises),
            dedup: ExpiringSet::new(settings.dedup_window, settings.dedup_max_ids),
            clock: Millis::MIN,
            agents: series::Interner::new(settings.max_agents),
            gauges: Gauges::default(),
            idle: BinaryHeap::new(),
            due_calls: Vec::new(),
            due_promises: Vec::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The monitor's clock (`Millis::MIN` before any event or tick).
    pub fn clock(&self) -> Millis {
        self.clock
    }

    pub fn series(&self) -> &SeriesTable {
        &self.series
    }

    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    pub fn promises_pending(&self) -> usize {
        self.promises.len()
    }

    pub fn dedup_ids(&self) -> usize {
        self.dedup.len()
    }

    /// Ensure a series exists before any event names it, so that configured
    /// queues show their series (at 0) from the start.
    pub fn declare_queue(&mut self, queue: &str, obs: &mut impl Observer) -> SeriesId {
        self.series_for(queue, None, obs)
    }

    /// Apply one event. `wall_now` is the wall clock, used only in wall mode.
    pub fn apply(&mut self, ev: &Event, wall_now: Millis, obs: &mut impl Observer) -> Verdict {
        let hashes = self.hashes(ev);
        self.apply_keyed(ev, hashes, wall_now, obs)
    }

    /// Apply events in order, as [`Engine::apply`] one by one would, giving
    /// each one's verdict to `verdict` (with the observer, to count it).
    /// While it applies one, the tables it
    /// will look the next one up in (the de-duplication window, the calls
    /// in flight and, for an offer, the ended calls' ids) are fetched into
    /// the cache: at a million remembered ids they are far larger than it,
    /// and these memory waits then overlap the work instead of following
    /// each other. The next event's ids are hashed once, for the fetch and
    /// for every lookup it makes ([`Hashes`]).
    pub fn apply_all<O: Observer>(
        &mut self,
        events: &[(u32, Event)],
        wall_now: Millis,
        obs: &mut O,
        mut verdict: impl FnMut(&mut O, u32, &Event, Verdict),
    ) {
        let mut next = events.first().map(|(_, ev)| self.hashes(ev));
        for (i, (index, ev)) in events.iter().enumerate() {
            let hashes = next.unwrap_or_else(|| self.hashes(ev));
            next = events.get(i + 1).map(|(_, ev)| self.prefetch(ev));
            let v = self.apply_keyed(ev, hashes, wall_now, obs);
            verdict(obs, *index, ev, v);
        }
    }

    /// `ev`'s hashes: SipHash of its ids, computed once per event.
    fn hashes(&self, ev: &Event) -> Hashes {
        Hashes {
            dedup: ev.event_id.as_deref().map(|id| self.dedup.key(id)),
            call: call_of(&ev.body).map(|call| self.calls.hash(call)),
        }
    }

    /// Start fetching what applying `ev` will look up (see
    /// [`Engine::apply_all`]); returns its hashes. A hint: it changes
    /// nothing.
    fn prefetch(&self, ev: &Event) -> Hashes {
        let hashes = self.hashes(ev);
        if let Some(k) = hashes.dedup {
            self.dedup.prefetch(k);
        }
        if let Some(h) = hashes.call {
            self.calls.prefetch(h);
            if matches!(ev.body, Body::CallOffered { .. }) {
                self.ended.prefetch(h);
            }
        }
        hashes
    }

    /// [`Engine::apply`] with the event's hashes already computed: its
    /// dedup key tested now and remembered if the event is accepted, its
    /// call id's hash used for the call table and the ended calls alike.
    fn apply_keyed(
        &mut self,
        ev: &Event,
        hashes: Hashes,
        wall_now: Millis,
        obs: &mut impl Observer,
    ) -> Verdict {
        let dedup_key = hashes.dedup;
        if dedup_key.is_some_and(|k| self.dedup.contains_key(k)) {
            return Verdict::Duplicate;
        }
        let now = match self.settings.clock {
            ClockMode::Wall => wall_now,
            ClockMode::Event => ev.ts,
        };
        self.advance(now, obs);
        let now = self.clock;
        let agent = ev.agent.as_deref().map(|a| self.agent_for(a, obs));
        fn at(id: &Id, hash: u64) -> CallRef<'_> {
            CallRef { id, hash }
        }
        // `hashes` has one for every event that names a call.
        let hash = hashes.call.unwrap_or_default();
        let result = match &ev.body {
            Body::CallOffered { call, queue } => {
                self.offered(at(call, hash), queue, ev.site.as_deref(), ev.ts, now, obs)
            }
            Body::CallAnswered { call } => self.answered(at(call, hash), agent, ev.ts, now, obs),
            Body::HoldStarted { call } => self.hold_started(at(call, hash), agent, ev.ts, now, obs),
            Body::HoldEnded { call } => self.hold_ended(at(call, hash), ev.ts, now, obs),
            Body::CallEnded { call, reason } => {
                self.ended(at(call, hash), *reason, ev.ts, now, obs)
            }
            Body::CallbackPromised {
                promise,
                due,
                target,
            } => self.promised(
                promise,
                *due,
                target,
                ev.site.as_deref(),
                agent,
                ev.ts,
                now,
                obs,
            ),
            Body::CallbackCompleted { promise } => self.completed(promise, agent, ev.ts, now, obs),
            Body::CallbackCancelled { promise } => self.cancelled(promise, ev.ts, now, obs),
            Body::Clock => Ok(()),
        };
        match result {
            Ok(()) => {
                if let Some(k) = dedup_key {
                    self.dedup.insert_key(k, now);
                }
                Verdict::Accepted
            }
            Err(r) => Verdict::Rejected(r),
        }
    }

    /// Move the clock to `now` (it never goes back) and fire what is due:
    /// calls and promises passing a limit count as over it, promises past
    /// `due + callback_expiry` become missed, calls idle past `call_ttl` are
    /// evicted, remembered ids expire. Each of these is a timer in an index:
    /// the cost is that of what fires, not of what is kept. In event mode,
    /// pass the wall clock to [`Engine::tick`] instead: only events move
    /// event time.
    pub fn advance(&mut self, now: Millis, obs: &mut impl Observer) {
        if now > self.clock {
            self.clock = now;
        }
        let now = self.clock;
        // Also when the clock stays: what was stamped already past its
        // moment goes at the next event or tick.
        let mut due = std::mem::take(&mut self.due_calls);
        let mut missed = std::mem::take(&mut self.due_promises);
        self.gauges.advance(now, &mut due, &mut missed);
        // In (moment, id) order across series, as one heap would give them.
        missed.sort_unstable();
        self.missed(&missed, now, obs);
        missed.clear();
        self.due_promises = missed;
        self.dedup.expire(now);
        self.ended.expire(now);
        self.resolved.expire(now);
        self.evict(&mut due, now, obs);
        self.due_calls = due;
    }

    /// A timer tick from the daemon: advances wall time; in event mode only
    /// event time counts, so the tick changes nothing.
    pub fn tick(&mut self, wall_now: Millis, obs: &mut impl Observer) {
        if self.settings.clock == ClockMode::Wall {
            self.advance(wall_now, obs);
        }
    }

    /// The live gauges of every series, indexed by [`SeriesId`], at the
    /// monitor's clock: as of the last event or [`Engine::tick`], with
    /// everything due by then fired (no call idle past `call_ttl` is ever
    /// shown). A read changes nothing; it costs O(series), whatever the
    /// number of calls and promises.
    pub fn live(&self) -> Vec<Live> {
        self.gauges.live(self.clock)
    }

    /// The agent's index (folded into `other` past `max_agents`). Agents
    /// are always known to the engine (alerts name them); the observer hears
    /// about them only in per-agent mode.
    fn agent_for(&mut self, name: &str, obs: &mut impl Observer) -> AgentId {
        let found = self.agents.intern(name);
        if self.settings.per_agent {
            if found.created {
                obs.new_agent(found.id, self.agents.name(found.id));
            }
            if found.folded {
                obs.folded(FoldedLabel::Agent);
            }
        }
        found.id
    }

    /// Attribute a figure to an agent, in per-agent mode.
    fn attribute(&self, agent: Option<AgentId>, m: AgentMeasure, obs: &mut impl Observer) {
        if let (true, Some(a)) = (self.settings.per_agent, agent) {
            obs.agent_measure(a, m);
        }
    }

    pub fn agent_name(&self, id: AgentId) -> &str {
        self.agents.name(id)
    }

    /// Every call and promise past a limit at the monitor's clock (see
    /// [`Engine::live`]): what supervisors are alerted about, one entry each,
    /// by series, then kind, then since when. A read: it costs O(series +
    /// subjects past a limit).
    pub fn alerts(&self) -> Vec<AlertCondition> {
        let now = self.clock;
        let mut out: Vec<_> = self
            .gauges
            .past_limit()
            .map(|p| {
                let kind = match p.kind {
                    LaneKind::Waiting => AlertKind::RingingPastLimit,
                    LaneKind::OnHold => AlertKind::OnHoldPastLimit,
                    LaneKind::Callbacks => AlertKind::CallbackOverdue,
                };
                AlertCondition {
                    kind,
                    series: p.series,
                    subject: match p.subject {
                        Subject::Call(h) => self.calls.id(h).cloned().unwrap_or_default(),
                        Subject::Promise(id) => id.clone(),
                    },
                    agent: p.agent,
                    since: p.start.saturating_add(p.limit),
                    elapsed: now.saturating_sub(p.start),
                }
            })
            .collect();
        // Lanes order calls of the same moment by handle: by id here, the
        // order the alerts are listed in (`since` is the lane's start plus
        // its one limit, so this keeps the lanes' order otherwise).
        out.sort_unstable_by(|a, b| {
            (a.series, a.kind as u8, a.since, &a.subject).cmp(&(
                b.series,
                b.kind as u8,
                b.since,
                &b.subject,
            ))
        });
        out
    }

    fn series_for(&mut self, queue: &str, site: Option<&str>, obs: &mut impl Observer) -> SeriesId {
        let settings = &self.settings;
        let found = self
            .series
            .lookup(queue, site, |name| settings.limits_for(name));
        if found.created {
            let info = self.series.get(found.id);
            let (ttl, expiry) = (self.settings.call_ttl, self.settings.callback_expiry);
            self.gauges.add_series(&info.limits, ttl, expiry);
            obs.new_series(found.id, info);
        }
        for label in found.folded {
            obs.folded(label);
        }
        found.id
    }
}

#[cfg(test)]
mod tests;
