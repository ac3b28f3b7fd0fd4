//! The call state machine: offered -> answered -> (hold_started -> hold_ended)* -> ended,
//! what each transition measures, and the eviction of calls left idle.

use std::cmp::Reverse;
use std::collections::HashMap;

use super::expiring::ExpiringSet;
use super::gauges::{Gauges, LaneKind};
use super::{AgentId, AgentMeasure, Call, CallState, Engine, Measure, Observer, Reject};
use crate::event::{EndReason, Id, Millis, Reason};

const UNKNOWN_CALL: Reject = Reject::new(
    Reason::UnknownCall,
    "names a call that was never offered (or was evicted after call_ttl)",
);
const AFTER_END: Reject = Reject::new(Reason::InvalidTransition, "the call has already ended");
const BACKWARDS: Reject = Reject::new(
    Reason::TimeGoesBackwards,
    "is earlier than the call's previous event",
);

impl Engine {
    pub(super) fn offered(
        &mut self,
        call: &str,
        queue: &str,
        site: Option<&str>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        // No call idle past call_ttl is left by now: the clock's advance to
        // `now` evicted them, so an id whose call went idle may be offered.
        if self.calls.contains_key(call) || self.ended.contains(call) {
            return Err(Reject::new(
                Reason::DuplicateCall,
                "was already offered (call ids are never reused)",
            ));
        }
        if self.calls.len() >= self.settings.max_calls {
            return Err(Reject::new(
                Reason::Capacity,
                "max_calls calls are already in flight",
            ));
        }
        let series = self.series_for(queue, site, obs);
        let c = Call {
            series,
            agent: None,
            offered: ts,
            last: ts,
            state: CallState::Waiting,
        };
        self.calls.insert(call.into(), c);
        enter(&mut self.gauges, call, &c, now);
        obs.measure(series, now, Measure::Offered);
        Ok(())
    }

    pub(super) fn answered(
        &mut self,
        call: &str,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let c = call_at(&mut self.calls, &self.ended, call, ts)?;
        if c.state != CallState::Waiting {
            return Err(Reject::new(
                Reason::InvalidTransition,
                "the call was already answered",
            ));
        }
        let limits = self.series.get(c.series).limits;
        let wait = ts - c.offered;
        let rings = limits.rings(wait);
        let before = *c;
        c.state = CallState::Talking;
        c.last = ts;
        c.agent = agent;
        restate(&mut self.gauges, call, &before, c, now);
        self.arm_idle(call, ts);
        let late = rings > limits.max_rings;
        obs.measure(before.series, now, Measure::Answered { wait, rings, late });
        self.attribute(agent, AgentMeasure::Answered { late }, obs);
        Ok(())
    }

    pub(super) fn hold_started(
        &mut self,
        call: &str,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        _obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let c = call_at(&mut self.calls, &self.ended, call, ts)?;
        match c.state {
            CallState::Talking => {
                let before = *c;
                c.state = CallState::OnHold;
                c.last = ts;
                // The agent who puts the caller on hold owns the hold.
                c.agent = agent.or(c.agent);
                restate(&mut self.gauges, call, &before, c, now);
                Ok(())
            }
            CallState::Waiting => Err(Reject::new(
                Reason::InvalidTransition,
                "hold on a call that was not answered",
            )),
            CallState::OnHold => Err(Reject::new(
                Reason::InvalidTransition,
                "the call is already on hold",
            )),
        }
    }

    pub(super) fn hold_ended(
        &mut self,
        call: &str,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let c = call_at(&mut self.calls, &self.ended, call, ts)?;
        if c.state != CallState::OnHold {
            return Err(Reject::new(
                Reason::InvalidTransition,
                "hold_ended while the call is not on hold",
            ));
        }
        let since = c.last;
        let before = *c;
        c.state = CallState::Talking;
        c.last = ts;
        restate(&mut self.gauges, call, &before, c, now);
        let (series, agent) = (c.series, c.agent);
        self.arm_idle(call, ts);
        self.hold_segment(series, agent, ts - since, now, obs);
        Ok(())
    }

    pub(super) fn ended(
        &mut self,
        call: &str,
        reason: EndReason,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let c = *call_at(&mut self.calls, &self.ended, call, ts)?;
        self.calls.remove(call);
        leave(&mut self.gauges, call, &c, now);
        self.ended.insert(call, now);
        let limits = self.series.get(c.series).limits;
        match c.state {
            // Ringing and never answered: abandoned whatever the reason says,
            // unless the call was transferred elsewhere.
            CallState::Waiting if reason != EndReason::Transferred => {
                let wait = ts - c.offered;
                obs.measure(
                    c.series,
                    now,
                    Measure::Abandoned {
                        wait,
                        short: wait < limits.short_abandon,
                    },
                );
            }
            CallState::Waiting | CallState::Talking => {}
            // Ending on hold closes the open segment at the end of the call.
            CallState::OnHold => {
                self.hold_segment(c.series, c.agent, ts - c.last, now, obs);
            }
        }
        Ok(())
    }

    fn hold_segment(
        &self,
        series: super::SeriesId,
        agent: Option<AgentId>,
        duration: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) {
        let over_limit = duration > self.series.get(series).limits.hold_limit;
        obs.measure(
            series,
            now,
            Measure::HoldSegment {
                duration,
                over_limit,
            },
        );
        self.attribute(agent, AgentMeasure::HoldSegment { over_limit }, obs);
    }

    /// Start the eviction timer of a call that starts talking at `last`.
    /// The entry of a call that ends or goes on hold stays until it comes
    /// up, `call_ttl` after `last` (never, for a `ts` in the year 9999), so
    /// calls answered and ended in a loop would grow the heap without end:
    /// once its entries outnumber the calls in flight twice over it is
    /// rebuilt, one entry per talking call. It stays within twice
    /// `max_calls` (plus a floor that keeps rebuilds rare), at an amortized
    /// constant cost per call.
    fn arm_idle(&mut self, call: &str, last: Millis) {
        if self.idle.len() >= 2 * self.calls.len() + 1024 {
            self.rebuild_idle();
        } else {
            let at = last.saturating_add(self.settings.call_ttl);
            self.idle.push(Reverse((at, call.into())));
        }
    }

    /// One eviction timer per talking call, at its moment.
    pub(super) fn rebuild_idle(&mut self) {
        let ttl = self.settings.call_ttl;
        self.idle = self
            .calls
            .iter()
            .filter(|(_, c)| c.state == CallState::Talking)
            .map(|(id, c)| Reverse((c.last.saturating_add(ttl), id.clone())))
            .collect();
    }

    /// Forget a call without an outcome: a platform source's reconnect
    /// found that the PBX no longer has it (AMI and ESL do not replay what
    /// was missed). Measured as evicted, never guessed into an answer or an
    /// abandon; `false` when no such call is in flight. Applied at the
    /// monitor's clock, as eviction is.
    pub fn forget(&mut self, call: &str, obs: &mut impl Observer) -> bool {
        let Some(c) = self.calls.remove(call) else {
            return false;
        };
        let now = self.clock;
        leave(&mut self.gauges, call, &c, now);
        obs.measure(c.series, now, Measure::Evicted);
        true
    }

    /// Evict every call with no event for more than `call_ttl`, those whose
    /// `last + call_ttl` the clock has passed: `due` holds the waiting and
    /// held ones as (moment, call) (their lanes took them off), talking ones
    /// come off `idle`.
    pub(super) fn evict(
        &mut self,
        mut due: Vec<(Millis, Id)>,
        now: Millis,
        obs: &mut impl Observer,
    ) {
        let ttl = self.settings.call_ttl;
        while let Some(Reverse((at, _))) = self.idle.peek() {
            if *at >= now {
                break;
            }
            let Some(Reverse((at, id))) = self.idle.pop() else {
                break;
            };
            // Only the entry of the call's current talk counts.
            let current = self
                .calls
                .get(&id)
                .is_some_and(|c| c.state == CallState::Talking && c.last.saturating_add(ttl) == at);
            if current {
                due.push((at, id));
            }
        }
        // One order whatever the structure each came from: moment, then id.
        due.sort_unstable();
        for (_, id) in due {
            let Some(c) = self.calls.remove(&id) else {
                continue;
            };
            if c.state == CallState::Talking {
                self.gauges.talking(c.series, false);
            }
            obs.measure(c.series, now, Measure::Evicted);
        }
    }
}

/// The call an event names, checked for existence and time order. A free
/// function over the fields it reads, so the caller keeps the other fields
/// (the gauges, the series) while it holds the call.
fn call_at<'a>(
    calls: &'a mut HashMap<Id, Call>,
    ended: &ExpiringSet,
    call: &str,
    ts: Millis,
) -> Result<&'a mut Call, Reject> {
    match calls.get_mut(call) {
        None if ended.contains(call) => Err(AFTER_END),
        None => Err(UNKNOWN_CALL),
        Some(c) if ts < c.last => Err(BACKWARDS),
        Some(c) => Ok(c),
    }
}

/// Count a call in flight in the gauges of its state.
pub(super) fn enter(gauges: &mut Gauges, id: &str, c: &Call, now: Millis) {
    match c.state {
        CallState::Waiting => {
            gauges.enter(c.series, LaneKind::Waiting, c.offered, id, c.agent, now)
        }
        CallState::Talking => gauges.talking(c.series, true),
        CallState::OnHold => gauges.enter(c.series, LaneKind::OnHold, c.last, id, c.agent, now),
    }
}

/// Uncount a call from the gauges of its state.
fn leave(gauges: &mut Gauges, id: &str, c: &Call, now: Millis) {
    match c.state {
        CallState::Waiting => gauges.leave(c.series, LaneKind::Waiting, c.offered, id, now),
        CallState::Talking => gauges.talking(c.series, false),
        CallState::OnHold => gauges.leave(c.series, LaneKind::OnHold, c.last, id, now),
    }
}

fn restate(gauges: &mut Gauges, id: &str, before: &Call, after: &Call, now: Millis) {
    leave(gauges, id, before, now);
    enter(gauges, id, after, now);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev as at, Recorded};
    use super::super::*;
    use crate::event::{Body, EndReason};

    /// Calls answered and ended at once, stamped in the year 9999 (their
    /// eviction timers never come up), in a loop: the heap of timers stays
    /// bounded. A call put on hold and back many times is still evicted
    /// exactly `call_ttl` after its last event.
    #[test]
    fn calls_ended_early_or_busy_leave_no_timer_behind() {
        let ttl = 60_000;
        let mut e = Engine::new(Settings {
            clock: ClockMode::Wall,
            call_ttl: ttl,
            ..Settings::default()
        });
        let mut rec = Recorded::default();
        let wall = 1_795_424_400_000; // 2026-11-23T09:00:00Z
        let far = 253_402_214_400_000; // 9999-12-31T00:00:00Z
        let mut apply = |e: &mut Engine, ts, body| {
            assert_eq!(e.apply(&at(ts, body), wall, &mut rec), Verdict::Accepted);
        };
        let offer = |id: &str| Body::CallOffered {
            call: id.into(),
            queue: "q".into(),
        };
        let busy = || Id::from("busy");
        apply(&mut e, wall, offer("busy"));
        apply(&mut e, wall, Body::CallAnswered { call: busy() });
        let mut last = wall;
        for i in 0..20_000 {
            let id = format!("churn-{i}");
            // On the wall clock a far `ts` leaves the clock where it is.
            apply(&mut e, far, offer(&id));
            let answer = Body::CallAnswered {
                call: id.as_str().into(),
            };
            apply(&mut e, far, answer);
            let end = Body::CallEnded {
                call: id.as_str().into(),
                reason: EndReason::Completed,
            };
            apply(&mut e, far, end);
            last = wall + i / 4;
            let hold = if i % 2 == 0 {
                Body::HoldStarted { call: busy() }
            } else {
                Body::HoldEnded { call: busy() }
            };
            apply(&mut e, last, hold);
            // Checked at each offer, with the call offered counted.
            assert!(
                e.idle.len() <= 2 * (e.calls.len() + 1) + 1024,
                "{}",
                e.idle.len()
            );
        }
        let mut rec = Recorded::default();
        e.advance(last + ttl, &mut rec);
        assert!(rec.measures.is_empty(), "not at exactly call_ttl");
        assert_eq!(e.calls_in_flight(), 1);
        e.advance(last + ttl + 1, &mut rec);
        assert_eq!(rec.measures, vec![(0, Measure::Evicted)]);
        assert_eq!(e.calls_in_flight(), 0);
        assert_eq!(e.live()[0], Live::default());
    }
}
