//! The call state machine: offered -> answered -> (hold_started -> hold_ended)* -> ended,
//! and what each transition measures.

use super::{AgentId, AgentMeasure, Call, CallState, Engine, Measure, Observer, Reject};
use crate::event::{EndReason, Millis, Reason};

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
        if self.live_call(call, now, obs).is_some() || self.ended.contains(call) {
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
        self.calls.insert(
            call.into(),
            Call {
                series,
                agent: None,
                offered: ts,
                last: ts,
                state: CallState::Waiting,
            },
        );
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
        let series = self.call_at(call, ts, now, obs)?.series;
        let limits = self.series.get(series).limits;
        let c = self.calls.get_mut(call).expect("checked by call_at");
        if !matches!(c.state, CallState::Waiting) {
            return Err(Reject::new(
                Reason::InvalidTransition,
                "the call was already answered",
            ));
        }
        let wait = ts - c.offered;
        let rings = limits.rings(wait);
        c.state = CallState::Talking;
        c.last = ts;
        c.agent = agent;
        let late = rings > limits.max_rings;
        obs.measure(series, now, Measure::Answered { wait, rings, late });
        self.attribute(agent, AgentMeasure::Answered { late }, obs);
        Ok(())
    }

    pub(super) fn hold_started(
        &mut self,
        call: &str,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let c = self.call_at(call, ts, now, obs)?;
        match c.state {
            CallState::Talking => {
                c.state = CallState::OnHold { since: ts };
                c.last = ts;
                // The agent who puts the caller on hold owns the hold.
                c.agent = agent.or(c.agent);
                Ok(())
            }
            CallState::Waiting => Err(Reject::new(
                Reason::InvalidTransition,
                "hold on a call that was not answered",
            )),
            CallState::OnHold { .. } => Err(Reject::new(
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
        let c = self.call_at(call, ts, now, obs)?;
        let CallState::OnHold { since } = c.state else {
            return Err(Reject::new(
                Reason::InvalidTransition,
                "hold_ended while the call is not on hold",
            ));
        };
        c.state = CallState::Talking;
        c.last = ts;
        let (series, agent) = (c.series, c.agent);
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
        let c = *self.call_at(call, ts, now, obs)?;
        self.calls.remove(call);
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
            CallState::OnHold { since } => {
                self.hold_segment(c.series, c.agent, ts - since, now, obs);
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

    /// The call an event names, checked for existence and time order.
    fn call_at(
        &mut self,
        call: &str,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<&mut Call, Reject> {
        if self.live_call(call, now, obs).is_none() {
            return Err(if self.ended.contains(call) {
                AFTER_END
            } else {
                UNKNOWN_CALL
            });
        }
        let c = self.calls.get_mut(call).expect("checked just above");
        if ts < c.last {
            return Err(BACKWARDS);
        }
        Ok(c)
    }

    /// The call if it is in flight; a call idle past `call_ttl` is evicted
    /// here, so the outcome never depends on when the last sweep ran.
    pub(super) fn live_call(
        &mut self,
        call: &str,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Option<&mut Call> {
        let c = self.calls.get(call)?;
        if now - c.last > self.settings.call_ttl {
            let series = c.series;
            self.calls.remove(call);
            obs.measure(series, now, Measure::Evicted);
            return None;
        }
        self.calls.get_mut(call)
    }

    /// Evict every call with no event for more than `call_ttl`.
    pub(super) fn evict_idle(&mut self, now: Millis, obs: &mut impl Observer) {
        let ttl = self.settings.call_ttl;
        self.calls.retain(|_, c| {
            let keep = now - c.last <= ttl;
            if !keep {
                obs.measure(c.series, now, Measure::Evicted);
            }
            keep
        });
    }
}
