//! The live wall kept current as calls and promises change state, and the
//! timers of what time does to them: per series, ordered indexes of the
//! waiting calls, the holds and the pending promises, so that reading the
//! gauges or the alert conditions costs nothing per call that is not
//! changing state, and a tick costs only what comes due.
//!
//! Each index (a "lane") holds `(start, subject)`: when the call was offered, when
//! its hold began, or when the promise is due; holds and promises also keep
//! the agent an alert names (it cannot change while the subject is in the
//! lane, and keeping it here spares an alert check a lookup per subject; a
//! waiting call has none). Everything in a lane has the same two moments
//! after its start:
//!
//! - `limit`: past it (`start + limit < clock`, strictly: 18.000 s is still
//!   within three rings) the subject counts as over its limit. Those entries
//!   are a prefix of the lane; the lane keeps how long it is (`over`), and
//!   `next`: no uncounted entry crosses before `next`.
//! - `expiry`: past it the subject leaves: a waiting or held call is evicted
//!   after `call_ttl` (no event is accepted on a waiting call but its answer
//!   or end, none on a held one but the end of the hold or of the call, so
//!   `start` is the call's last event), a promise is missed after
//!   `callback_expiry`. These too are a prefix, taken off the head.
//!
//! The lanes whose `next` or head expiry is known are in two ordered sets,
//! by moment; advancing the clock walks only the lanes whose moment came,
//! and only over the entries concerned.
//!
//! A lane is an [`Ordered`] map, whose nodes are pooled: in steady state
//! entering and leaving a lane allocate nothing. Calls are named in their
//! lanes by their handle in the call table (4 bytes, not a second copy of
//! the id), promises by their id.

use super::ordered::Ordered;
use super::Handle;
use super::{AgentId, Limits, Live, SeriesId};
use crate::event::{Id, Millis};

/// Which of a series' lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LaneKind {
    /// Waiting calls, by `offered`; limit: the ring limit.
    Waiting,
    /// Calls on hold, by the start of the hold; limit: `hold_limit`.
    OnHold,
    /// Pending promises, by `due`; overdue strictly after it.
    Callbacks,
}

/// "Nothing left to cross": `next` of a lane with nothing uncounted.
const NEVER: Millis = Millis::MAX;

type Armed = Ordered<(Millis, SeriesId, LaneKind), ()>;

/// What a lane keeps beside each entry: nothing for waiting calls, the
/// agent for holds and promises.
trait Tag: Copy {
    fn new(agent: Option<AgentId>) -> Self;
    fn agent(self) -> Option<AgentId>;
}

impl Tag for () {
    fn new(_: Option<AgentId>) -> Self {}
    fn agent(self) -> Option<AgentId> {
        None
    }
}

impl Tag for Option<AgentId> {
    fn new(agent: Option<AgentId>) -> Self {
        agent
    }
    fn agent(self) -> Option<AgentId> {
        self
    }
}

/// What names a subject in a lane: a call's handle or a promise's id.
pub(super) trait Key: Ord + Clone {
    /// Below every key: where a walk from a moment starts.
    fn lowest() -> Self;
    fn subject(&self) -> Subject<'_>;
}

impl Key for Handle {
    fn lowest() -> Self {
        0
    }
    fn subject(&self) -> Subject<'_> {
        Subject::Call(*self)
    }
}

impl Key for Id {
    fn lowest() -> Self {
        Id::default()
    }
    fn subject(&self) -> Subject<'_> {
        Subject::Promise(self)
    }
}

/// Who an entry past its limit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subject<'a> {
    Call(Handle),
    Promise(&'a Id),
}

struct Lane<K, T> {
    entries: Ordered<(Millis, K), T>,
    limit: Millis,
    expiry: Millis,
    /// Entries with `start + limit < clock`.
    over: u64,
    /// A lower bound of `start + limit` over the uncounted entries, and at
    /// least the clock: exact after a walk, left early (never late) when the
    /// entry it came from leaves, so a removal costs no search.
    next: Millis,
    /// The head's start, kept so that a read touches no tree node (the
    /// tree is searched again only when the head itself leaves).
    oldest: Option<Millis>,
    /// When the lane is armed to expire: no entry expires before, but like
    /// `next` it is left early when the head leaves, so that answering the
    /// oldest caller touches no armed set.
    expires: Option<Millis>,
}

/// The moments a lane is armed at, before and after a change, for the
/// armed sets to follow.
struct Moments {
    next: Option<Millis>,
    expires: Option<Millis>,
}

impl<K: Key, T: Tag> Lane<K, T> {
    fn new(limit: Millis, expiry: Millis) -> Self {
        Lane {
            entries: Ordered::default(),
            limit,
            expiry,
            over: 0,
            next: NEVER,
            oldest: None,
            expires: None,
        }
    }

    fn moments(&self) -> Moments {
        Moments {
            next: (self.next != NEVER).then_some(self.next),
            expires: self.expires,
        }
    }

    fn head(&self) -> Option<Millis> {
        self.entries.first().map(|((start, _), _)| *start)
    }

    fn enter(&mut self, start: Millis, key: K, agent: Option<AgentId>, clock: Millis) {
        if !self.entries.insert((start, key), T::new(agent)) {
            return;
        }
        if self.oldest.is_none_or(|oldest| start < oldest) {
            self.oldest = Some(start);
        }
        let expires = start.saturating_add(self.expiry);
        if self.expires.is_none_or(|armed| expires < armed) {
            self.expires = Some(expires);
        }
        let at = start.saturating_add(self.limit);
        if at < clock {
            self.over += 1;
        } else if at < self.next {
            self.next = at;
        }
    }

    fn leave(&mut self, start: Millis, key: K, clock: Millis) {
        if !self.entries.remove(&(start, key)) {
            return;
        }
        if self.oldest == Some(start) {
            self.oldest = self.head();
        }
        // `next` may now be early; the walk it leads to puts it right.
        if start.saturating_add(self.limit) < clock {
            self.over = self.over.saturating_sub(1);
        }
    }

    /// Count the entries that crossed the limit before `clock`, from `next`
    /// on, and find the next to cross.
    fn cross(&mut self, clock: Millis) {
        let limit = self.limit;
        let from = (self.next.saturating_sub(limit), K::lowest());
        let mut next = NEVER;
        let mut crossed = 0;
        for ((start, _), _) in self.entries.range_from(&from) {
            let at = start.saturating_add(limit);
            if at < clock {
                crossed += 1;
            } else {
                next = at;
                break;
            }
        }
        self.over += crossed;
        self.next = next;
    }

    /// Take off the head the entries past their expiry at `clock`, into
    /// `out` as `(start + expiry, key)`.
    fn expire(&mut self, clock: Millis, out: &mut Vec<(Millis, K)>) {
        while let Some(((start, _), _)) = self.entries.first() {
            let start = *start;
            let at = start.saturating_add(self.expiry);
            if at >= clock {
                break;
            }
            let Some(((_, key), _)) = self.entries.pop_first() else {
                break;
            };
            // Counted if past its limit: the crossings came first.
            if start.saturating_add(self.limit) < clock {
                self.over = self.over.saturating_sub(1);
            }
            out.push((at, key));
        }
        self.oldest = self.head();
        self.expires = self.oldest.map(|start| start.saturating_add(self.expiry));
    }

    fn age(&self, clock: Millis) -> Millis {
        self.oldest
            .map_or(0, |start| clock.saturating_sub(start).max(0))
    }

    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The entries past the limit, oldest first.
    fn past_limit(
        &self,
        series: SeriesId,
        kind: LaneKind,
    ) -> impl Iterator<Item = PastLimit<'_>> + '_ {
        let over = usize::try_from(self.over).unwrap_or(usize::MAX);
        let limit = self.limit;
        self.entries
            .iter()
            .take(over)
            .map(move |((start, key), tag)| PastLimit {
                series,
                kind,
                subject: key.subject(),
                agent: tag.agent(),
                start: *start,
                limit,
            })
    }
}

struct SeriesGauges {
    waiting: Lane<Handle, ()>,
    on_hold: Lane<Handle, Option<AgentId>>,
    callbacks: Lane<Id, Option<AgentId>>,
    /// Answered calls not on hold (no lane: talking has no limit).
    talking: u64,
}

impl SeriesGauges {
    fn moments(&self, kind: LaneKind) -> Moments {
        match kind {
            LaneKind::Waiting => self.waiting.moments(),
            LaneKind::OnHold => self.on_hold.moments(),
            LaneKind::Callbacks => self.callbacks.moments(),
        }
    }
}

/// `$body` with `$lane` bound to the lane `$kind` of `$g` (the lanes are of
/// different types).
macro_rules! with_lane {
    ($g:expr, $kind:expr, |$lane:ident| $body:expr) => {
        match $kind {
            LaneKind::Waiting => {
                let $lane = &mut $g.waiting;
                $body
            }
            LaneKind::OnHold => {
                let $lane = &mut $g.on_hold;
                $body
            }
            LaneKind::Callbacks => {
                let $lane = &mut $g.callbacks;
                $body
            }
        }
    };
}

/// The live gauges of every series, indexed by [`SeriesId`].
#[derive(Default)]
pub(super) struct Gauges {
    series: Vec<SeriesGauges>,
    /// `(next, series, lane)` of every lane whose `next` is not [`NEVER`].
    crossing: Armed,
    /// `(expires, series, lane)` of every lane with an `expires`.
    expiring: Armed,
}

/// One subject past its limit, as [`Gauges::past_limit`] lists them.
pub(super) struct PastLimit<'a> {
    pub series: SeriesId,
    pub kind: LaneKind,
    pub subject: Subject<'a>,
    pub agent: Option<AgentId>,
    pub start: Millis,
    pub limit: Millis,
}

impl Gauges {
    /// Gauges for a new series, which takes the next id.
    pub(super) fn add_series(
        &mut self,
        limits: &Limits,
        call_ttl: Millis,
        callback_expiry: Millis,
    ) {
        self.series.push(SeriesGauges {
            waiting: Lane::new(limits.answer_limit(), call_ttl),
            on_hold: Lane::new(limits.hold_limit, call_ttl),
            callbacks: Lane::new(0, callback_expiry),
            talking: 0,
        });
    }

    /// Change one lane of `series` and rearm what its moments moved.
    fn change(&mut self, series: SeriesId, kind: LaneKind, f: impl FnOnce(&mut SeriesGauges)) {
        let Some(g) = self.series.get_mut(series as usize) else {
            return;
        };
        let before = g.moments(kind);
        f(g);
        let after = g.moments(kind);
        self.rearm(series, kind, before, after);
    }

    /// Call `h`, waiting since `start` or on hold since `start` (`kind`),
    /// enters its lane at `clock`.
    pub(super) fn enter_call(
        &mut self,
        series: SeriesId,
        kind: LaneKind,
        start: Millis,
        h: Handle,
        agent: Option<AgentId>,
        clock: Millis,
    ) {
        self.change(series, kind, |g| match kind {
            LaneKind::Waiting => g.waiting.enter(start, h, agent, clock),
            LaneKind::OnHold => g.on_hold.enter(start, h, agent, clock),
            LaneKind::Callbacks => {}
        });
    }

    /// Call `h` leaves its lane at `clock`.
    pub(super) fn leave_call(
        &mut self,
        series: SeriesId,
        kind: LaneKind,
        start: Millis,
        h: Handle,
        clock: Millis,
    ) {
        self.change(series, kind, |g| match kind {
            LaneKind::Waiting => g.waiting.leave(start, h, clock),
            LaneKind::OnHold => g.on_hold.leave(start, h, clock),
            LaneKind::Callbacks => {}
        });
    }

    /// Promise `id`, due at `start`, enters the callbacks lane at `clock`
    /// (`kind` is [`LaneKind::Callbacks`]: calls enter by handle, with
    /// [`Gauges::enter_call`]).
    pub(super) fn enter(
        &mut self,
        series: SeriesId,
        kind: LaneKind,
        start: Millis,
        id: &str,
        agent: Option<AgentId>,
        clock: Millis,
    ) {
        if kind == LaneKind::Callbacks {
            self.change(series, kind, |g| {
                g.callbacks.enter(start, Id::from(id), agent, clock)
            });
        }
    }

    /// Promise `id`, due at `start`, leaves the callbacks lane at `clock`.
    pub(super) fn leave(
        &mut self,
        series: SeriesId,
        kind: LaneKind,
        start: Millis,
        id: &str,
        clock: Millis,
    ) {
        if kind == LaneKind::Callbacks {
            self.change(series, kind, |g| {
                g.callbacks.leave(start, Id::from(id), clock)
            });
        }
    }

    fn rearm(&mut self, series: SeriesId, kind: LaneKind, before: Moments, after: Moments) {
        rearm(&mut self.crossing, series, kind, before.next, after.next);
        rearm(
            &mut self.expiring,
            series,
            kind,
            before.expires,
            after.expires,
        );
    }

    /// A call of `series` starts (`true`) or stops talking.
    pub(super) fn talking(&mut self, series: SeriesId, starts: bool) {
        if let Some(g) = self.series.get_mut(series as usize) {
            g.talking = if starts {
                g.talking.saturating_add(1)
            } else {
                g.talking.saturating_sub(1)
            };
        }
    }

    /// Bring the lanes to `clock`: count the entries that crossed their
    /// limit, then take off those past their expiry, into `calls` (waiting
    /// and held calls to evict) and `promises` (promises missed), as
    /// `(moment, subject)`. Only lanes whose moment came are looked at, and
    /// in them only the entries concerned, plus the first that is not.
    pub(super) fn advance(
        &mut self,
        clock: Millis,
        calls: &mut Vec<(Millis, Handle)>,
        promises: &mut Vec<(Millis, Id)>,
    ) {
        while let Some((&(at, series, kind), _)) = self.crossing.first() {
            if at >= clock {
                break;
            }
            self.crossing.pop_first();
            let Some(g) = self.series.get_mut(series as usize) else {
                continue;
            };
            let next = with_lane!(g, kind, |lane| {
                lane.cross(clock);
                lane.moments().next
            });
            if let Some(next) = next {
                self.crossing.insert((next, series, kind), ());
            }
        }
        while let Some((&(at, series, kind), _)) = self.expiring.first() {
            if at >= clock {
                break;
            }
            self.expiring.pop_first();
            let Some(g) = self.series.get_mut(series as usize) else {
                continue;
            };
            let expires = match kind {
                LaneKind::Waiting => {
                    g.waiting.expire(clock, calls);
                    g.waiting.expires
                }
                LaneKind::OnHold => {
                    g.on_hold.expire(clock, calls);
                    g.on_hold.expires
                }
                LaneKind::Callbacks => {
                    g.callbacks.expire(clock, promises);
                    g.callbacks.expires
                }
            };
            if let Some(at) = expires {
                self.expiring.insert((at, series, kind), ());
            }
        }
    }

    /// The gauges at `clock`, the engine's clock, which [`Gauges::advance`]
    /// last moved to: counts and heads are kept, so this is O(series).
    pub(super) fn live(&self, clock: Millis) -> Vec<Live> {
        self.series
            .iter()
            .map(|g| Live {
                waiting: g.waiting.len(),
                waiting_over_limit: g.waiting.over,
                oldest_wait: g.waiting.age(clock),
                active: g.talking + g.on_hold.len(),
                on_hold: g.on_hold.len(),
                on_hold_over_limit: g.on_hold.over,
                longest_hold: g.on_hold.age(clock),
                callbacks_pending: g.callbacks.len(),
                callbacks_overdue: g.callbacks.over,
            })
            .collect()
    }

    /// Every subject past its limit, by series, lane and start.
    pub(super) fn past_limit(&self) -> impl Iterator<Item = PastLimit<'_>> {
        (0..).zip(&self.series).flat_map(|(series, g)| {
            g.waiting
                .past_limit(series, LaneKind::Waiting)
                .chain(g.on_hold.past_limit(series, LaneKind::OnHold))
                .chain(g.callbacks.past_limit(series, LaneKind::Callbacks))
        })
    }

    /// Entries in every lane and armed timers, for the tests of what is
    /// left behind.
    #[cfg(test)]
    pub(super) fn entries(&self) -> usize {
        let lanes: usize = self
            .series
            .iter()
            .map(|g| g.waiting.entries.len() + g.on_hold.entries.len() + g.callbacks.entries.len())
            .sum();
        lanes + self.crossing.len() + self.expiring.len()
    }
}

fn rearm(
    armed: &mut Armed,
    series: SeriesId,
    kind: LaneKind,
    old: Option<Millis>,
    new: Option<Millis>,
) {
    if old == new {
        return;
    }
    if let Some(old) = old {
        armed.remove(&(old, series, kind));
    }
    if let Some(new) = new {
        armed.insert((new, series, kind), ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Advance, and the calls taken off (as `(moment, handle)`).
    fn adv(g: &mut Gauges, clock: Millis) -> Vec<(Millis, Handle)> {
        let (mut calls, mut promises) = (Vec::new(), Vec::new());
        g.advance(clock, &mut calls, &mut promises);
        calls
    }

    fn first(armed: &Armed) -> Option<(Millis, SeriesId, LaneKind)> {
        armed.first().map(|(k, _)| *k)
    }

    fn one_series() -> Gauges {
        let mut g = Gauges::default();
        g.add_series(&Limits::default(), 3_600_000, 86_400_000);
        g
    }

    #[test]
    fn crossing_is_strictly_past_the_limit() {
        let mut g = one_series();
        g.enter_call(0, LaneKind::Waiting, 0, 3, None, 0);
        adv(&mut g, 18_000);
        assert_eq!(g.live(18_000)[0].waiting_over_limit, 0);
        adv(&mut g, 18_001);
        assert_eq!(g.live(18_001)[0].waiting_over_limit, 1);
        assert_eq!(g.live(18_001)[0].oldest_wait, 18_001);
        g.leave_call(0, LaneKind::Waiting, 0, 3, 18_001);
        assert_eq!(g.live(18_001)[0], Live::default());
    }

    #[test]
    fn the_walk_stops_at_an_entry_exactly_at_its_limit() {
        let mut g = one_series();
        g.enter_call(0, LaneKind::Waiting, 0, 1, None, 0);
        g.enter_call(0, LaneKind::Waiting, 1_000, 2, None, 0);
        // call 1 has waited 19 s, call 2 exactly 18 s: within three rings.
        adv(&mut g, 19_000);
        assert_eq!(g.live(19_000)[0].waiting_over_limit, 1);
        assert_eq!(first(&g.crossing), Some((19_000, 0, LaneKind::Waiting)));
        adv(&mut g, 19_001);
        assert_eq!(g.live(19_001)[0].waiting_over_limit, 2);
        assert!(g.crossing.is_empty());
    }

    #[test]
    fn expiry_takes_off_the_head_strictly_past_its_moment() {
        let mut g = one_series();
        g.enter_call(0, LaneKind::Waiting, 0, 1, None, 0);
        g.enter_call(0, LaneKind::Waiting, 1_000, 2, None, 0);
        g.enter_call(0, LaneKind::Waiting, 2_000, 3, None, 0);
        // call_ttl is an hour: call 1 idle past it, call 2 exactly at it.
        let gone = adv(&mut g, 3_601_000);
        assert_eq!(gone, [(3_600_000, 1)]);
        let live = g.live(3_601_000)[0];
        assert_eq!((live.waiting, live.waiting_over_limit), (2, 2));
        assert_eq!(live.oldest_wait, 3_600_000);
        assert_eq!(first(&g.expiring), Some((3_601_000, 0, LaneKind::Waiting)));
        let gone = adv(&mut g, 3_602_001);
        assert_eq!(gone.len(), 2);
        assert_eq!(g.live(3_602_001)[0], Live::default());
        assert_eq!(g.entries(), 0, "no timer left for an empty lane");
    }

    #[test]
    fn an_entry_already_past_counts_at_once_and_a_removed_one_arms_nothing() {
        let mut g = one_series();
        adv(&mut g, 100_000);
        g.enter_call(0, LaneKind::OnHold, 50_000, 10, Some(3), 100_000);
        assert_eq!(g.live(100_000)[0].on_hold_over_limit, 1);
        g.enter_call(0, LaneKind::OnHold, 90_000, 11, None, 100_000);
        assert_eq!(g.crossing.len(), 1);
        g.leave_call(0, LaneKind::OnHold, 90_000, 11, 100_000);
        // The early `next` fires once, finds nothing, and disarms.
        adv(&mut g, 200_000);
        assert!(g.crossing.is_empty());
        assert_eq!(g.live(200_000)[0].on_hold_over_limit, 1);
        let agents: Vec<_> = g.past_limit().map(|p| p.agent).collect();
        assert_eq!(agents, [Some(3)]);
    }

    #[test]
    fn the_walk_counts_only_what_crossed() {
        let mut g = one_series();
        for (i, due) in [10, 20, 20, 30, 40].into_iter().enumerate() {
            g.enter(0, LaneKind::Callbacks, due, &format!("p{i}"), None, 0);
        }
        adv(&mut g, 21);
        assert_eq!(g.live(21)[0].callbacks_overdue, 3);
        assert_eq!(first(&g.crossing), Some((30, 0, LaneKind::Callbacks)));
        g.leave(0, LaneKind::Callbacks, 20, "p1", 21);
        g.leave(0, LaneKind::Callbacks, 30, "p3", 21);
        adv(&mut g, 35);
        assert_eq!(g.live(35)[0].callbacks_overdue, 2);
        adv(&mut g, 41);
        assert_eq!(g.live(41)[0].callbacks_overdue, 3);
        assert!(g.crossing.is_empty());
        let subjects: Vec<_> = g
            .past_limit()
            .map(|p| match p.subject {
                Subject::Promise(id) => id.to_string(),
                Subject::Call(h) => h.to_string(),
            })
            .collect();
        assert_eq!(subjects, ["p0", "p2", "p4"]);
    }
}
