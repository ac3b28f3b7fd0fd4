//! The live wall kept current as calls and promises change state: per series,
//! ordered indexes of the waiting calls, the holds and the pending promises,
//! and the timers of their limits, so that reading the gauges or the alert
//! conditions costs nothing per call that is not changing state.
//!
//! Each index (a "lane") holds `(start, id)`: when the call was offered, when
//! its hold began, or when the promise is due. Everything in a lane has the
//! same limit, so the entries past it (`start + limit < clock`: strictly
//! past, 18.000 s is still within three rings) are always a prefix of the
//! lane. A lane keeps how long that prefix is (`over`), and `next`: no
//! uncounted entry crosses its limit before `next`. The lanes whose `next`
//! is known are in `armed`, in time order; advancing the clock walks only the
//! lanes whose `next` has come, and only over the entries that crossed.

use std::collections::BTreeSet;

use super::{Limits, Live, SeriesId};
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

impl LaneKind {
    const ALL: [LaneKind; 3] = [LaneKind::Waiting, LaneKind::OnHold, LaneKind::Callbacks];
}

/// "No entry left to cross": `next` of a lane with nothing uncounted.
const NEVER: Millis = Millis::MAX;

struct Lane {
    entries: BTreeSet<(Millis, Id)>,
    limit: Millis,
    /// Entries with `start + limit < clock`.
    over: u64,
    /// A lower bound of `start + limit` over the uncounted entries, and at
    /// least the clock: exact after a walk, left early (never late) when the
    /// entry it came from leaves, so a removal costs no search.
    next: Millis,
}

impl Lane {
    fn new(limit: Millis) -> Self {
        Lane {
            entries: BTreeSet::new(),
            limit,
            over: 0,
            next: NEVER,
        }
    }

    /// The entry at the head of the lane: the oldest start.
    fn oldest(&self) -> Option<Millis> {
        self.entries.first().map(|(start, _)| *start)
    }

    /// The entries past the limit, oldest first.
    fn past_limit(&self) -> impl Iterator<Item = &(Millis, Id)> {
        let over = usize::try_from(self.over).unwrap_or(usize::MAX);
        self.entries.iter().take(over)
    }
}

struct SeriesGauges {
    lanes: [Lane; 3],
    /// Answered calls not on hold (no lane: talking has no limit).
    talking: u64,
}

impl SeriesGauges {
    fn lane(&self, kind: LaneKind) -> &Lane {
        &self.lanes[kind as usize]
    }
}

/// The live gauges of every series, indexed by [`SeriesId`].
#[derive(Default)]
pub(super) struct Gauges {
    series: Vec<SeriesGauges>,
    /// `(next, series, lane)` of every lane whose `next` is not [`NEVER`].
    armed: BTreeSet<(Millis, SeriesId, LaneKind)>,
}

/// One subject past its limit, as [`Gauges::past_limit`] lists them.
pub(super) struct PastLimit<'a> {
    pub series: SeriesId,
    pub kind: LaneKind,
    pub id: &'a Id,
    pub start: Millis,
    pub limit: Millis,
}

impl Gauges {
    /// Gauges for a new series, which takes the next id.
    pub(super) fn add_series(&mut self, limits: &Limits) {
        self.series.push(SeriesGauges {
            lanes: [
                Lane::new(limits.answer_limit()),
                Lane::new(limits.hold_limit),
                Lane::new(0),
            ],
            talking: 0,
        });
    }

    /// `start` of `id` enters the lane at `clock`.
    pub(super) fn enter(
        &mut self,
        series: SeriesId,
        kind: LaneKind,
        start: Millis,
        id: &str,
        clock: Millis,
    ) {
        let Some(g) = self.series.get_mut(series as usize) else {
            return;
        };
        let lane = &mut g.lanes[kind as usize];
        if !lane.entries.insert((start, Id::from(id))) {
            return;
        }
        let at = start.saturating_add(lane.limit);
        if at < clock {
            lane.over += 1;
        } else if at < lane.next {
            let old = std::mem::replace(&mut lane.next, at);
            rearm(&mut self.armed, series, kind, old, at);
        }
    }

    /// `start` of `id` leaves the lane at `clock`.
    pub(super) fn leave(
        &mut self,
        series: SeriesId,
        kind: LaneKind,
        start: Millis,
        id: &str,
        clock: Millis,
    ) {
        let Some(g) = self.series.get_mut(series as usize) else {
            return;
        };
        let lane = &mut g.lanes[kind as usize];
        // The key is built owned: a (Millis, &str) cannot borrow as (Millis, Id).
        if !lane.entries.remove(&(start, Id::from(id))) {
            return;
        }
        // `next` may now be early; the walk it leads to puts it right.
        if start.saturating_add(lane.limit) < clock {
            lane.over = lane.over.saturating_sub(1);
        }
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

    /// The clock moved to `clock`: count the entries that crossed their
    /// limit. Only lanes whose `next` has come are looked at, and in them
    /// only the entries crossing, plus the first that does not.
    pub(super) fn advance(&mut self, clock: Millis) {
        while let Some(&(at, series, kind)) = self.armed.first() {
            if at >= clock {
                break;
            }
            self.armed.pop_first();
            let Some(g) = self.series.get_mut(series as usize) else {
                continue;
            };
            let lane = &mut g.lanes[kind as usize];
            let limit = lane.limit;
            let from = (lane.next.saturating_sub(limit), Id::default());
            let mut next = NEVER;
            let mut crossed = 0;
            for (start, _) in lane.entries.range(from..) {
                let at = start.saturating_add(limit);
                if at < clock {
                    crossed += 1;
                } else {
                    next = at;
                    break;
                }
            }
            lane.over += crossed;
            lane.next = next;
            if next != NEVER {
                self.armed.insert((next, series, kind));
            }
        }
    }

    /// The gauges at `clock`, the engine's clock, which [`Gauges::advance`]
    /// last moved to: the counts are kept, the two ages read off the head of
    /// their lane.
    pub(super) fn live(&self, clock: Millis) -> Vec<Live> {
        let age = |lane: &Lane| {
            lane.oldest()
                .map_or(0, |start| clock.saturating_sub(start).max(0))
        };
        self.series
            .iter()
            .map(|g| {
                let (waiting, on_hold, callbacks) = (
                    g.lane(LaneKind::Waiting),
                    g.lane(LaneKind::OnHold),
                    g.lane(LaneKind::Callbacks),
                );
                let held = on_hold.entries.len() as u64;
                Live {
                    waiting: waiting.entries.len() as u64,
                    waiting_over_limit: waiting.over,
                    oldest_wait: age(waiting),
                    active: g.talking + held,
                    on_hold: held,
                    on_hold_over_limit: on_hold.over,
                    longest_hold: age(on_hold),
                    callbacks_pending: callbacks.entries.len() as u64,
                    callbacks_overdue: callbacks.over,
                }
            })
            .collect()
    }

    /// Every subject past its limit, by series, lane and start.
    pub(super) fn past_limit(&self) -> impl Iterator<Item = PastLimit<'_>> {
        (0..).zip(&self.series).flat_map(|(series, g)| {
            LaneKind::ALL.into_iter().flat_map(move |kind| {
                let lane = g.lane(kind);
                lane.past_limit().map(move |(start, id)| PastLimit {
                    series,
                    kind,
                    id,
                    start: *start,
                    limit: lane.limit,
                })
            })
        })
    }
}

fn rearm(
    armed: &mut BTreeSet<(Millis, SeriesId, LaneKind)>,
    series: SeriesId,
    kind: LaneKind,
    old: Millis,
    new: Millis,
) {
    if old != NEVER {
        armed.remove(&(old, series, kind));
    }
    if new != NEVER {
        armed.insert((new, series, kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_series() -> Gauges {
        let mut g = Gauges::default();
        g.add_series(&Limits::default());
        g
    }

    #[test]
    fn crossing_is_strictly_past_the_limit() {
        let mut g = one_series();
        g.enter(0, LaneKind::Waiting, 0, "c", 0);
        g.advance(18_000);
        assert_eq!(g.live(18_000)[0].waiting_over_limit, 0);
        g.advance(18_001);
        assert_eq!(g.live(18_001)[0].waiting_over_limit, 1);
        assert_eq!(g.live(18_001)[0].oldest_wait, 18_001);
        g.leave(0, LaneKind::Waiting, 0, "c", 18_001);
        assert_eq!(g.live(18_001)[0], Live::default());
    }

    #[test]
    fn the_walk_stops_at_an_entry_exactly_at_its_limit() {
        let mut g = one_series();
        g.enter(0, LaneKind::Waiting, 0, "a", 0);
        g.enter(0, LaneKind::Waiting, 1_000, "b", 0);
        // "a" has waited 19 s, "b" exactly 18 s: within three rings.
        g.advance(19_000);
        assert_eq!(g.live(19_000)[0].waiting_over_limit, 1);
        assert_eq!(g.armed.first(), Some(&(19_000, 0, LaneKind::Waiting)));
        g.advance(19_001);
        assert_eq!(g.live(19_001)[0].waiting_over_limit, 2);
        assert!(g.armed.is_empty());
    }

    #[test]
    fn an_entry_already_past_counts_at_once_and_a_removed_one_arms_nothing() {
        let mut g = one_series();
        g.advance(100_000);
        g.enter(0, LaneKind::OnHold, 50_000, "old", 100_000);
        assert_eq!(g.live(100_000)[0].on_hold_over_limit, 1);
        g.enter(0, LaneKind::OnHold, 90_000, "new", 100_000);
        assert_eq!(g.armed.len(), 1);
        g.leave(0, LaneKind::OnHold, 90_000, "new", 100_000);
        // The early `next` fires once, finds nothing, and disarms.
        g.advance(200_000);
        assert!(g.armed.is_empty());
        assert_eq!(g.live(200_000)[0].on_hold_over_limit, 1);
    }

    #[test]
    fn the_walk_counts_only_what_crossed() {
        let mut g = one_series();
        for (i, due) in [10, 20, 20, 30, 40].into_iter().enumerate() {
            g.enter(0, LaneKind::Callbacks, due, &format!("p{i}"), 0);
        }
        g.advance(21);
        assert_eq!(g.live(21)[0].callbacks_overdue, 3);
        assert_eq!(g.armed.first(), Some(&(30, 0, LaneKind::Callbacks)));
        g.leave(0, LaneKind::Callbacks, 20, "p1", 21);
        g.leave(0, LaneKind::Callbacks, 30, "p3", 21);
        g.advance(35);
        assert_eq!(g.live(35)[0].callbacks_overdue, 2);
        g.advance(41);
        assert_eq!(g.live(41)[0].callbacks_overdue, 3);
        assert!(g.armed.is_empty());
        let subjects: Vec<_> = g.past_limit().map(|p| p.id.to_string()).collect();
        assert_eq!(subjects, ["p0", "p2", "p4"]);
    }
}
