//! The simulator's ground truth: the figures `/metrics` must show, computed
//! from what was generated (times to answer, holds, outcomes) rather than by
//! replaying events through a state machine.

use std::collections::BTreeMap;

use super::model::{Model, Resolution, Story};
use crate::event::Millis;
use crate::metrics::Bounds;
use crate::rules::Settings;

#[derive(Default)]
struct Hist {
    values: Vec<i64>,
}

impl Hist {
    fn push(&mut self, v: i64) {
        self.values.push(v);
    }

    fn samples(
        &self,
        name: &str,
        queue: &str,
        bounds: &[i64],
        unit: f64,
        out: &mut Vec<(String, f64)>,
    ) {
        for le in bounds {
            let n = self.values.iter().filter(|v| *v <= le).count();
            let le = crate::metrics::openmetrics::label_float_string(*le as f64 / unit);
            out.push((
                format!(r#"{name}_bucket{{queue="{queue}",le="{le}"}}"#),
                n as f64,
            ));
        }
        let inf = self.values.len() as f64;
        out.push((
            format!(r#"{name}_bucket{{queue="{queue}",le="+Inf"}}"#),
            inf,
        ));
        out.push((format!(r#"{name}_count{{queue="{queue}"}}"#), inf));
        let sum: i64 = self.values.iter().sum();
        out.push((
            format!(r#"{name}_sum{{queue="{queue}"}}"#),
            sum as f64 / unit,
        ));
    }
}

#[derive(Default)]
struct QueueTruth {
    counters: BTreeMap<&'static str, u64>,
    tta: Hist,
    rings: Hist,
    hold: Hist,
    abandon: Hist,
    lateness: Hist,
}

impl QueueTruth {
    fn add(&mut self, counter: &'static str, n: u64) {
        *self.counters.entry(counter).or_default() += n;
    }
}

/// Every sample the simulation determines, as `(selector, value)`, once all
/// events (and the settling clock event) were applied.
pub fn expected(
    model: &Model,
    stories: &[Story],
    settings: &Settings,
    bounds: &Bounds,
) -> Vec<(String, f64)> {
    let mut queues: Vec<QueueTruth> = model.queues.iter().map(|_| QueueTruth::default()).collect();
    let mut received: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rejected_resolved = 0u64;
    let mut count = |t: &'static str| *received.entry(t).or_default() += 1;
    for story in stories {
        match story {
            Story::Abandoned {
                queue,
                offered,
                ended,
                ..
            } => {
                let limits = settings.limits_for(&model.queues[*queue].name);
                let q = &mut queues[*queue];
                let wait = ended - offered;
                q.add("offered", 1);
                q.add(
                    if wait < limits.short_abandon {
                        "abandoned_short"
                    } else {
                        "abandoned_long"
                    },
                    1,
                );
                q.abandon.push(wait);
                count("call.offered");
                count("call.ended");
            }
            Story::Answered {
                queue,
                offered,
                answered,
                holds,
                ends_on_hold,
                ended,
                callback,
                ..
            } => {
                let limits = settings.limits_for(&model.queues[*queue].name);
                let q = &mut queues[*queue];
                let wait = answered - offered;
                let rings = ((wait + limits.ring_cycle - 1) / limits.ring_cycle).max(1);
                q.add("offered", 1);
                q.add("answered", 1);
                q.add(
                    "answered_late",
                    u64::from(rings > i64::from(limits.max_rings)),
                );
                q.tta.push(wait);
                q.rings.push(rings);
                for (start, end) in holds {
                    let len = end - start;
                    q.add("holds", 1);
                    q.add("hold_exceeded", u64::from(len > limits.hold_limit));
                    q.hold.push(len);
                    count("call.hold_started");
                }
                for _ in 0..holds.len() - usize::from(*ends_on_hold) {
                    count("call.hold_ended");
                }
                count("call.offered");
                count("call.answered");
                count("call.ended");
                let _ = ended;
                if let Some(cb) = callback {
                    q.add("promised", 1);
                    count("callback.promised");
                    let expiry: Millis = cb.due + settings.callback_expiry;
                    match cb.resolution {
                        Resolution::Completed(at) if at <= cb.due => {
                            q.add("kept", 1);
                            count("callback.completed");
                        }
                        Resolution::Completed(at) if at <= expiry => {
                            q.add("late", 1);
                            q.lateness.push(at - cb.due);
                            count("callback.completed");
                        }
                        Resolution::Cancelled(at) if at <= expiry => {
                            q.add("cancelled", 1);
                            count("callback.cancelled");
                        }
                        // Too late for anything: missed when the clock passed
                        // due + expiry, and the late event is refused.
                        Resolution::Completed(_) | Resolution::Cancelled(_) => {
                            q.add("missed", 1);
                            rejected_resolved += 1;
                        }
                        Resolution::Never => q.add("missed", 1),
                    }
                }
            }
        }
    }
    count("clock");

    let mut out = Vec::new();
    for (spec, q) in model.queues.iter().zip(&queues) {
        let name = spec.name.as_str();
        let c = |k: &str| q.counters.get(k).copied().unwrap_or(0) as f64;
        let l = |family: &str, extra: &str| format!(r#"{family}{{queue="{name}"{extra}}}"#);
        for (family, key) in [
            ("ringwatch_calls_offered_total", "offered"),
            ("ringwatch_calls_answered_total", "answered"),
            ("ringwatch_calls_answered_late_total", "answered_late"),
            ("ringwatch_holds_total", "holds"),
            ("ringwatch_hold_limit_exceeded_total", "hold_exceeded"),
            ("ringwatch_callbacks_promised_total", "promised"),
        ] {
            out.push((l(family, ""), c(key)));
        }
        out.push((
            l("ringwatch_calls_abandoned_total", r#",short="true""#),
            c("abandoned_short"),
        ));
        out.push((
            l("ringwatch_calls_abandoned_total", r#",short="false""#),
            c("abandoned_long"),
        ));
        for outcome in ["kept", "late", "missed", "cancelled"] {
            out.push((
                l(
                    "ringwatch_callbacks_resolved_total",
                    &format!(r#",outcome="{outcome}""#),
                ),
                c(outcome),
            ));
        }
        // Everything ended and every promise settled: the live wall is empty.
        for gauge in [
            "ringwatch_calls_waiting",
            "ringwatch_calls_active",
            "ringwatch_calls_on_hold",
            "ringwatch_callbacks_pending",
            "ringwatch_callbacks_overdue",
            "ringwatch_calls_evicted_total",
        ] {
            out.push((l(gauge, ""), 0.0));
        }
        q.tta.samples(
            "ringwatch_time_to_answer_seconds",
            name,
            &bounds.time_to_answer,
            1000.0,
            &mut out,
        );
        q.rings
            .samples("ringwatch_answer_rings", name, &bounds.rings, 1.0, &mut out);
        q.hold.samples(
            "ringwatch_hold_duration_seconds",
            name,
            &bounds.hold,
            1000.0,
            &mut out,
        );
        q.abandon.samples(
            "ringwatch_abandon_wait_seconds",
            name,
            &bounds.time_to_answer,
            1000.0,
            &mut out,
        );
        q.lateness.samples(
            "ringwatch_callback_lateness_seconds",
            name,
            &bounds.lateness,
            1000.0,
            &mut out,
        );
    }
    for (kind, n) in received {
        out.push((
            format!(r#"ringwatch_events_received_total{{type="{kind}"}}"#),
            n as f64,
        ));
    }
    out.push((
        r#"ringwatch_events_rejected_total{reason="already_resolved"}"#.to_string(),
        rejected_resolved as f64,
    ));
    out.push(("ringwatch_events_duplicate_total".to_string(), 0.0));
    out
}
