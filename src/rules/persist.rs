//! The engine's state as a snapshot holds it: calls in flight, pending
//! promises, tombstones, the de-duplication window, the label tables and the
//! clock, in the layout of snapshot version 1. Configuration is not part of
//! it: a restored engine takes the settings it is started with (limits, caps,
//! windows). Nor are the indexes (live gauges, the timers of eviction and
//! of missed promises): they follow from the calls and promises and are
//! rebuilt on restore. Version 1 has a heap of the promises' deadlines: it is
//! written from the promises, and read and dropped; and its calls say since
//! when they are on hold, which they now keep as their `last`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize, Serializer};

use super::calls::{enter, CallTable};
use super::expiring;
use super::gauges::{Gauges, LaneKind};
use super::series::Interner;
use super::{Call, CallState, Engine, ExpiringSet, Observer, Promise, SeriesTable, Settings};
use crate::event::{Id, Millis};

/// The fields in snapshot order (the order of the struct `Engine` that
/// snapshots of version 1 were derived from).
#[derive(Serialize)]
struct ImageRef<'a, C: Serialize, D: Serialize> {
    clock: Millis,
    series: &'a SeriesTable,
    calls: C,
    ended: &'a ExpiringSet,
    promises: &'a HashMap<Id, Promise>,
    resolved: &'a ExpiringSet,
    deadlines: D,
    dedup: &'a ExpiringSet,
    next_sweep: Millis,
    agents: &'a Interner,
}

/// A call as version 1 has it.
#[derive(Serialize, Deserialize)]
struct CallImage {
    series: u32,
    agent: Option<u32>,
    offered: Millis,
    last: Millis,
    state: StateImage,
}

#[derive(Serialize, Deserialize)]
enum StateImage {
    Waiting,
    Talking,
    OnHold { since: Millis },
}

impl From<&Call> for CallImage {
    fn from(c: &Call) -> Self {
        CallImage {
            series: c.series,
            agent: c.agent,
            offered: c.offered,
            last: c.last,
            state: match c.state {
                CallState::Waiting => StateImage::Waiting,
                CallState::Talking => StateImage::Talking,
                CallState::OnHold => StateImage::OnHold { since: c.last },
            },
        }
    }
}

impl From<CallImage> for Call {
    /// A held call's `last` is the start of its hold (no event is accepted
    /// on hold but its end); `since` is that start.
    fn from(c: CallImage) -> Self {
        let (state, last) = match c.state {
            StateImage::Waiting => (CallState::Waiting, c.last),
            StateImage::Talking => (CallState::Talking, c.last),
            StateImage::OnHold { since } => (CallState::OnHold, since),
        };
        Call {
            series: c.series,
            agent: c.agent,
            offered: c.offered,
            last,
            state,
        }
    }
}

/// The calls as a map of [`CallImage`]s, from what gives an iterator of
/// them in the table's order (postcard writes a map as its length and its
/// entries).
struct Calls<F>(F);

impl<'a, F, I> Serialize for Calls<F>
where
    F: Fn() -> I,
    I: Iterator<Item = (&'a Id, &'a Call)> + ExactSizeIterator,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map((self.0)().map(|(id, c)| (id, CallImage::from(c))))
    }
}

/// The promises as a map, from an iterator of them in the map's order.
struct Promises<I>(I);

impl<'a, I> Serialize for Promises<I>
where
    I: Iterator<Item = (&'a Id, &'a Promise)> + ExactSizeIterator + Clone,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.clone())
    }
}

/// Version 1's heap of `(due + callback_expiry, promise)`, one per pending
/// promise (a heap in any order is a heap once read back).
struct Deadlines<I> {
    promises: I,
    expiry: Millis,
}

impl<'a, I> Serialize for Deadlines<I>
where
    I: Iterator<Item = (&'a Id, &'a Promise)> + ExactSizeIterator + Clone,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.promises
                .clone()
                .map(|(id, p)| Reverse((p.due.saturating_add(self.expiry), id))),
        )
    }
}

/// The engine state read back from a snapshot; only [`Engine::restore`]
/// turns it into an engine, so none runs without its settings.
#[derive(Deserialize)]
pub struct EngineImage {
    clock: Millis,
    series: SeriesTable,
    calls: HashMap<Id, CallImage>,
    ended: ExpiringSet,
    promises: HashMap<Id, Promise>,
    resolved: ExpiringSet,
    /// The lanes of the promises are the timers now: read and ignored.
    #[allow(dead_code)]
    deadlines: BinaryHeap<Reverse<(Millis, Id)>>,
    dedup: ExpiringSet,
    /// When a full scan for idle calls was next due, before eviction had
    /// its own timers: read and ignored.
    #[allow(dead_code)]
    next_sweep: Millis,
    agents: Interner,
}

impl Serialize for Engine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ImageRef {
            clock: self.clock,
            series: &self.series,
            calls: Calls(|| self.calls.iter()),
            ended: &self.ended,
            promises: &self.promises,
            resolved: &self.resolved,
            deadlines: Deadlines {
                promises: self.promises.iter(),
                expiry: self.settings.callback_expiry,
            },
            dedup: &self.dedup,
            // An older ringwatch reading this sweeps at its first tick.
            next_sweep: self.clock,
            agents: &self.agents,
        }
        .serialize(s)
    }
}

/// What a snapshot needs of an engine, taken on the pipeline at the
/// instant the snapshot names and encoded later on another thread: the
/// calls and promises cloned, the tables and id sets already encoded
/// (they have no cheaper copy). [`EngineCopy::encode`] writes exactly what
/// the engine's own encoding writes.
pub struct EngineCopy {
    clock: Millis,
    /// The calls in the table's order and the promises in the map's: all
    /// the encoding needs (not the table's index, nor a map's buckets).
    calls: Vec<(Id, Call)>,
    promises: Vec<(Id, Promise)>,
    expiry: Millis,
    series: Vec<u8>,
    // Copied, not encoded: a memcpy of their order is far cheaper than
    // encoding 100,000 hashes on the pipeline.
    ended: expiring::Image,
    resolved: expiring::Image,
    dedup: expiring::Image,
    agents: Vec<u8>,
}

/// `v` encoded, into a buffer of `capacity` (enough, so it never grows).
fn encoded(v: &impl Serialize, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    crate::durability::snapshot::append(v, &mut out);
    out
}

impl EngineCopy {
    /// How many calls in flight the copy holds.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Append the engine's encoding (the layout of [`ImageRef`]: postcard
    /// writes a struct as its fields one after the other).
    pub fn encode(&self, out: &mut Vec<u8>) {
        use crate::durability::snapshot::append as put;
        put(&self.clock, out);
        out.extend_from_slice(&self.series);
        let promises = self.promises.iter().map(|(id, p)| (id, p));
        put(&Calls(|| self.calls.iter().map(|(id, c)| (id, c))), out);
        put(&self.ended, out);
        put(&Promises(promises.clone()), out);
        put(&self.resolved, out);
        put(
            &Deadlines {
                promises,
                expiry: self.expiry,
            },
            out,
        );
        put(&self.dedup, out);
        // next_sweep: see `Serialize for Engine`.
        put(&self.clock, out);
        out.extend_from_slice(&self.agents);
    }
}

impl Engine {
    /// A copy for a snapshot (see [`EngineCopy`]).
    pub fn copy_for_snapshot(&self) -> EngineCopy {
        // Fresh lists each time, though filling fresh memory costs page
        // faults: a list kept for the next copy would keep 56 bytes a call
        // in flight allocated for good, about half of what a call costs.
        let mut calls = Vec::with_capacity(self.calls.len());
        calls.extend(self.calls.iter().map(|(id, c)| (id.clone(), *c)));
        let mut promises = Vec::with_capacity(self.promises.len());
        promises.extend(self.promises.iter().map(|(id, p)| (id.clone(), *p)));
        EngineCopy {
            clock: self.clock,
            calls,
            promises,
            expiry: self.settings.callback_expiry,
            series: encoded(&self.series, 64 * self.series.len()),
            ended: self.ended.image(),
            resolved: self.resolved.image(),
            dedup: self.dedup.image(),
            agents: encoded(&self.agents, 32 * self.agents.len()),
        }
    }

    /// An engine in the saved state, under `settings`. Series keep their
    /// ids (the metrics store is indexed by them) but take the limits the
    /// settings give their queue; caps and windows are the settings' too.
    /// The indexes are rebuilt at the saved clock, so the restored engine
    /// reads and fires exactly as the saved one would have.
    pub fn restore(settings: Settings, image: EngineImage) -> Engine {
        let EngineImage {
            clock,
            series,
            calls: saved_calls,
            ended,
            mut promises,
            resolved,
            deadlines: _,
            dedup,
            next_sweep: _,
            agents,
        } = image;
        let series = series.restored(settings.max_queues, settings.max_sites, |q| {
            settings.limits_for(q)
        });
        let agents = agents.restored(settings.max_agents);
        // A snapshot passed its checksum, but the ids it holds still index
        // the tables: a call or promise naming a series that is not there
        // is dropped, an agent that is not there forgotten.
        let (series_count, agent_count) = (series.len(), agents.len());
        let known = |s: u32| (s as usize) < series_count;
        let agent = |a: Option<u32>| a.filter(|a| (*a as usize) < agent_count);
        let ended = ended.restored(settings.call_ttl, settings.max_calls);
        // The call table hashes as the ended set does (see `CallRef`).
        let mut calls = CallTable::keyed(ended.hash_key());
        for (id, c) in saved_calls.into_iter().filter(|(_, c)| known(c.series)) {
            calls.insert(id, c.into());
        }
        promises.retain(|_, p| known(p.series));
        for c in calls.values_mut() {
            c.agent = agent(c.agent);
        }
        for p in promises.values_mut() {
            p.agent = agent(p.agent);
        }
        let mut e = Engine {
            ended,
            resolved: resolved.restored(settings.callback_expiry, settings.max_promises),
            dedup: dedup.restored(settings.dedup_window, settings.dedup_max_ids),
            clock,
            series,
            calls,
            promises,
            agents,
            gauges: Gauges::default(),
            idle: BinaryHeap::new(),
            due_calls: Vec::new(),
            due_promises: Vec::new(),
            settings,
        };
        e.rebuild_indexes();
        e
    }

    /// The gauges and eviction timers from the calls and promises, at the
    /// engine's clock.
    fn rebuild_indexes(&mut self) {
        let mut gauges = Gauges::default();
        let (ttl, expiry) = (self.settings.call_ttl, self.settings.callback_expiry);
        for info in self.series.all() {
            gauges.add_series(&info.limits, ttl, expiry);
        }
        for (h, c) in self.calls.handles() {
            enter(&mut gauges, h, c, self.clock);
        }
        for (id, p) in &self.promises {
            gauges.enter(
                p.series,
                LaneKind::Callbacks,
                p.due,
                id,
                p.agent,
                self.clock,
            );
        }
        self.gauges = gauges;
        self.rebuild_idle();
    }

    /// Tell a fresh observer about every series and (in per-agent mode)
    /// every agent this engine knows, in id order.
    pub fn replay_labels(&self, obs: &mut impl Observer) {
        for (id, info) in (0..).zip(self.series.all()) {
            obs.new_series(id, info);
        }
        self.replay_agents_from(0, obs);
    }

    /// Tell the observer about the agents from index `first` on (per-agent
    /// mode only): those a snapshot taken without per-agent mode lacks.
    pub fn replay_agents_from(&self, first: usize, obs: &mut impl Observer) {
        if !self.settings.per_agent {
            return;
        }
        for id in first..self.agents.len() {
            let id = id as u32;
            obs.new_agent(id, self.agents.name(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Recorded;
    use super::super::*;
    use super::*;
    use crate::event::{Body, EndReason, Event, PromiseTarget};

    /// The struct snapshots of version 1 were derived from, field for field.
    #[derive(Serialize)]
    struct Version1<'a> {
        clock: Millis,
        series: &'a SeriesTable,
        calls: Ordered<'a>,
        ended: &'a ExpiringSet,
        promises: &'a HashMap<Id, Promise>,
        resolved: &'a ExpiringSet,
        deadlines: &'a BinaryHeap<Reverse<(Millis, Id)>>,
        dedup: &'a ExpiringSet,
        next_sweep: Millis,
        agents: &'a Interner,
    }

    /// A map in a given order (the order of the map it was taken from).
    #[derive(Clone, Copy)]
    struct Ordered<'a>(&'a [(Id, CallImage)]);

    impl Serialize for Ordered<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(id, c)| (id, c)))
        }
    }

    /// Version 1's calls, in the map's order.
    fn images(calls: &CallTable) -> Vec<(Id, CallImage)> {
        calls.iter().map(|(id, c)| (id.clone(), c.into())).collect()
    }

    /// Version 1's deadlines heap, as the old engine kept it.
    fn deadlines(e: &Engine) -> BinaryHeap<Reverse<(Millis, Id)>> {
        let expiry = e.settings.callback_expiry;
        e.promises
            .iter()
            .map(|(id, p)| Reverse((p.due + expiry, id.clone())))
            .collect()
    }

    fn ev(ts: Millis, body: Body) -> Event {
        Event {
            ts,
            event_id: Some(format!("e{ts}").into()),
            site: None,
            agent: Some("ann".into()),
            body,
        }
    }

    fn busy_engine() -> Engine {
        let mut e = Engine::new(Settings {
            clock: ClockMode::Event,
            call_ttl: 100_000,
            ..Settings::default()
        });
        let mut rec = Recorded::default();
        let t = 1_795_424_400_000;
        let call = |c: &str| Id::from(c);
        let events = [
            ev(
                t,
                Body::CallOffered {
                    call: call("a"),
                    queue: "q".into(),
                },
            ),
            ev(
                t + 1,
                Body::CallOffered {
                    call: call("b"),
                    queue: "r".into(),
                },
            ),
            ev(t + 2, Body::CallAnswered { call: call("b") }),
            ev(t + 3, Body::HoldStarted { call: call("b") }),
            ev(
                t + 4,
                Body::CallOffered {
                    call: call("c"),
                    queue: "q".into(),
                },
            ),
            ev(
                t + 5,
                Body::CallEnded {
                    call: call("c"),
                    reason: EndReason::Abandoned,
                },
            ),
            ev(
                t + 6,
                Body::CallbackPromised {
                    promise: "p".into(),
                    due: t + 10_000,
                    target: PromiseTarget::Call { call: call("b") },
                },
            ),
            ev(t + 30_000, Body::Clock),
        ];
        for e2 in &events {
            assert_eq!(e.apply(e2, 0, &mut rec), Verdict::Accepted);
        }
        e
    }

    #[test]
    fn the_snapshot_layout_is_version_1() {
        let e = busy_engine();
        // One pending promise: the heap's order and the map's are the same;
        // the calls are read back through a map of the same order.
        assert_eq!(e.promises.len(), 1);
        let heap = deadlines(&e);
        let calls = images(&e.calls);
        let v1 = Version1 {
            clock: e.clock,
            series: &e.series,
            calls: Ordered(&calls),
            ended: &e.ended,
            promises: &e.promises,
            resolved: &e.resolved,
            deadlines: &heap,
            dedup: &e.dedup,
            next_sweep: e.clock,
            agents: &e.agents,
        };
        let bytes = postcard::to_stdvec(&e).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&v1).unwrap());
        // A version-1 snapshot with any `next_sweep` reads back.
        let v1 = Version1 {
            next_sweep: 42,
            ..v1
        };
        let image: EngineImage = postcard::from_bytes(&postcard::to_stdvec(&v1).unwrap()).unwrap();
        let back = Engine::restore(e.settings.clone(), image);
        // Same state; the maps' order is each map's own.
        assert_eq!(postcard::to_stdvec(&back).unwrap().len(), bytes.len());
        assert_eq!(back.clock(), e.clock());
        assert_eq!(back.live(), e.live());
        assert_eq!(back.alerts(), e.alerts());
    }

    /// A copy encodes to the engine's own bytes (clones of the maps keep
    /// their order), and a copy taken before a change keeps the state of
    /// its instant.
    #[test]
    fn a_copy_encodes_as_the_engine_at_its_instant() {
        let mut e = busy_engine();
        let copy = e.copy_for_snapshot();
        let want = postcard::to_stdvec(&e).unwrap();
        let mut got = vec![7];
        copy.encode(&mut got);
        assert_eq!(got[0], 7, "appended");
        assert_eq!(&got[1..], &want[..]);
        let mut rec = Recorded::default();
        let more = ev(
            1_795_424_400_000 + 40_000,
            Body::CallOffered {
                call: "d".into(),
                queue: "q".into(),
            },
        );
        assert_eq!(e.apply(&more, 0, &mut rec), Verdict::Accepted);
        let mut again = Vec::new();
        copy.encode(&mut again);
        assert_eq!(again, want);
        assert_ne!(postcard::to_stdvec(&e).unwrap(), want);
        // Many promises (the map's order and the deadlines' are the map's),
        // and the next copies fill the lists the last one gave back.
        for round in 0..3 {
            drop(copy_and_check(&e));
            for n in 0..20 {
                let t = 1_795_424_400_000 + 50_000 + round * 100 + n;
                let promise = ev(
                    t,
                    Body::CallbackPromised {
                        promise: format!("p{round}-{n}").into(),
                        due: t + 10_000,
                        target: PromiseTarget::Call { call: "d".into() },
                    },
                );
                assert_eq!(e.apply(&promise, 0, &mut rec), Verdict::Accepted);
            }
        }
        assert!(e.promises.len() > 50);
        drop(copy_and_check(&e));
    }

    /// A copy of `e`, checked to encode as `e` does.
    fn copy_and_check(e: &Engine) -> EngineCopy {
        let copy = e.copy_for_snapshot();
        let mut got = Vec::new();
        copy.encode(&mut got);
        assert_eq!(got, postcard::to_stdvec(e).unwrap());
        copy
    }

    #[test]
    fn a_restored_engine_reads_and_fires_as_the_saved_one() {
        let mut a = busy_engine();
        let image: EngineImage = postcard::from_bytes(&postcard::to_stdvec(&a).unwrap()).unwrap();
        let mut b = Engine::restore(a.settings.clone(), image);
        assert_eq!(a.live(), b.live());
        assert_eq!(a.alerts(), b.alerts());
        assert_eq!(a.live()[0].waiting_over_limit, 1);
        assert_eq!(a.live()[1].on_hold_over_limit, 1);
        assert_eq!(a.live()[1].callbacks_overdue, 1);
        for t in [1, 50_000, 100_000, 100_001, 100_004, 200_000] {
            let now = 1_795_424_400_000 + t;
            let (mut ra, mut rb) = (Recorded::default(), Recorded::default());
            a.advance(now, &mut ra);
            b.advance(now, &mut rb);
            assert_eq!(ra.measures, rb.measures, "at +{t}");
            assert_eq!(a.live(), b.live(), "at +{t}");
            assert_eq!(a.alerts(), b.alerts(), "at +{t}");
        }
        assert_eq!(b.calls_in_flight(), 0);
    }

    #[test]
    fn the_call_table_hashes_as_the_ended_set_fresh_and_restored() {
        let e = busy_engine();
        assert_eq!(e.calls.hash("b"), e.ended.key("b"));
        let image: EngineImage = postcard::from_bytes(&postcard::to_stdvec(&e).unwrap()).unwrap();
        let back = Engine::restore(e.settings.clone(), image);
        assert_eq!(back.calls.hash("b"), back.ended.key("b"));
        // And the restored table finds its calls under that hash.
        assert!(back.calls.get("b").is_some());
        assert_eq!(back.calls_in_flight(), e.calls_in_flight());
    }

    #[test]
    fn ids_a_snapshot_lacks_are_dropped_not_indexed() {
        let e = busy_engine();
        let mut calls = e.calls.clone();
        calls.insert(
            "ghost".into(),
            Call {
                series: 99,
                agent: Some(7),
                offered: 0,
                last: 0,
                state: CallState::Waiting,
            },
        );
        if let Some(b) = calls.get_mut("b") {
            b.agent = Some(7);
        }
        let heap = deadlines(&e);
        let calls = images(&calls);
        let v1 = Version1 {
            clock: e.clock,
            series: &e.series,
            calls: Ordered(&calls),
            ended: &e.ended,
            promises: &e.promises,
            resolved: &e.resolved,
            deadlines: &heap,
            dedup: &e.dedup,
            next_sweep: 0,
            agents: &e.agents,
        };
        let image: EngineImage = postcard::from_bytes(&postcard::to_stdvec(&v1).unwrap()).unwrap();
        let back = Engine::restore(e.settings.clone(), image);
        assert_eq!(back.calls_in_flight(), e.calls_in_flight());
        assert_eq!(back.calls.get("b").map(|c| c.agent), Some(None));
        assert_eq!(back.live(), e.live());
    }
}
