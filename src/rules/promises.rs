//! Callback promises: each one reaches exactly one outcome (kept, late,
//! missed, cancelled); "missed" is decided by the monitor's clock.

use super::gauges::LaneKind;
use super::{AgentId, AgentMeasure, Engine, Measure, Observer, Outcome, Promise, Reject};
use crate::event::{Id, Millis, PromiseTarget, Reason};

const UNKNOWN: Reject = Reject::new(
    Reason::UnknownPromise,
    "names a promise that was never made",
);
const RESOLVED: Reject = Reject::new(
    Reason::AlreadyResolved,
    "the promise already has its outcome",
);

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn promised(
        &mut self,
        promise: &str,
        due: Millis,
        target: &PromiseTarget,
        site: Option<&str>,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        if self.promises.contains_key(promise) || self.resolved.contains(promise) {
            return Err(Reject::new(
                Reason::DuplicatePromise,
                "a promise with this promise_id was already made",
            ));
        }
        if self.promises.len() >= self.settings.max_promises {
            return Err(Reject::new(
                Reason::Capacity,
                "max_promises promises are already pending",
            ));
        }
        let series = match target {
            PromiseTarget::Queue { queue, .. } => self.series_for(queue, site, obs),
            PromiseTarget::Call { call } => match self.calls.get(call) {
                Some(c) => c.series,
                None => {
                    return Err(Reject::new(
                        Reason::MissingField,
                        "`queue` is required: call_id names no call in progress",
                    ))
                }
            },
        };
        self.gauges
            .enter(series, LaneKind::Callbacks, due, promise, agent, now);
        self.promises.insert(
            promise.into(),
            Promise {
                series,
                agent,
                promised_at: ts,
                due,
            },
        );
        obs.measure(series, now, Measure::Promised);
        Ok(())
    }

    pub(super) fn completed(
        &mut self,
        promise: &str,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let mut p = self.pending(promise, ts, now, obs)?;
        // The agent who called back, else the one who promised.
        p.agent = agent.or(p.agent);
        let (outcome, lateness) = if ts <= p.due {
            (Outcome::Kept, 0)
        } else {
            (Outcome::Late, ts - p.due)
        };
        self.resolve(promise, p, outcome, lateness, now, obs);
        Ok(())
    }

    pub(super) fn cancelled(
        &mut self,
        promise: &str,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let p = self.pending(promise, ts, now, obs)?;
        self.resolve(promise, p, Outcome::Cancelled, 0, now, obs);
        Ok(())
    }

    /// The pending promise an outcome event names. An outcome stamped after
    /// `due + callback_expiry` comes too late: the promise is missed (as the
    /// timer would have decided on event time) and the event refused, so
    /// both clock modes agree even when a source's clock runs ahead.
    fn pending(
        &mut self,
        promise: &str,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<Promise, Reject> {
        match self.promises.get(promise) {
            Some(p) if ts < p.promised_at => Err(Reject::new(
                Reason::TimeGoesBackwards,
                "is earlier than the promise itself",
            )),
            Some(p) if ts > p.due.saturating_add(self.settings.callback_expiry) => {
                let p = *p;
                self.resolve(promise, p, Outcome::Missed, 0, now, obs);
                Err(RESOLVED)
            }
            Some(p) => Ok(*p),
            None if self.resolved.contains(promise) => Err(RESOLVED),
            None => Err(UNKNOWN),
        }
    }

    fn resolve(
        &mut self,
        id: &str,
        p: Promise,
        outcome: Outcome,
        lateness: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) {
        self.promises.remove(id);
        self.gauges
            .leave(p.series, LaneKind::Callbacks, p.due, id, now);
        self.resolved.insert(id, now);
        obs.measure(p.series, now, Measure::Resolved { outcome, lateness });
        self.attribute(p.agent, AgentMeasure::Resolved { outcome }, obs);
    }

    /// Promises not completed by `due + callback_expiry` are missed once the
    /// clock passes that moment: `expired` are those the clock just passed
    /// (by their lane, which takes them off) as (moment, promise), in the
    /// order they are missed.
    pub(super) fn missed(
        &mut self,
        expired: &[(Millis, Id)],
        now: Millis,
        obs: &mut impl Observer,
    ) {
        for (_, id) in expired {
            if let Some(p) = self.promises.get(id) {
                let p = *p;
                self.resolve(id, p, Outcome::Missed, 0, now, obs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Recorded;
    use super::super::*;
    use crate::event::{Body, Event, PromiseTarget};

    /// Regression (found by tests/soak.rs, RSS growing by ~0.3 MiB/s): promises
    /// due in the year 9999, cancelled at once, left their deadlines in a
    /// heap for good. The lanes hold exactly the pending promises; those are
    /// still missed.
    #[test]
    fn promises_resolved_early_leave_no_deadline_behind() {
        let mut e = Engine::new(Settings {
            clock: ClockMode::Event,
            ..Settings::default()
        });
        let mut rec = Recorded::default();
        let ts = 1_795_424_400_000; // 2026-11-23T09:00:00Z
        let far = 253_402_214_400_000; // 9999-12-31T00:00:00Z
        let at = |ts, body| Event {
            ts,
            event_id: None,
            site: None,
            agent: None,
            body,
        };
        let promise = |id: &str, due| Body::CallbackPromised {
            promise: id.into(),
            due,
            target: PromiseTarget::Queue {
                queue: "q".into(),
                call: None,
            },
        };
        assert_eq!(
            e.apply(&at(ts, promise("soon", ts + 1_000)), 0, &mut rec),
            Verdict::Accepted
        );
        for i in 0..20_000 {
            let id = format!("churn-{i}");
            assert_eq!(
                e.apply(&at(ts, promise(&id, far)), 0, &mut rec),
                Verdict::Accepted
            );
            let cancel = Body::CallbackCancelled {
                promise: id.as_str().into(),
            };
            assert_eq!(e.apply(&at(ts, cancel), 0, &mut rec), Verdict::Accepted);
            // The pending promise, its lane's two timers.
            assert_eq!(e.gauges.entries(), 3);
        }
        let past_expiry = ts + 1_000 + e.settings.callback_expiry + 1;
        assert_eq!(
            e.apply(&at(past_expiry, Body::Clock), 0, &mut rec),
            Verdict::Accepted
        );
        let missed = rec
            .measures
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m,
                    Measure::Resolved {
                        outcome: Outcome::Missed,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(missed, 1);
        assert_eq!(e.promises_pending(), 0);
    }
}
