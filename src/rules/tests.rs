//! Unit tests of the rules, one behaviour each, on event time.

use super::*;
use crate::event::{EndReason, Event, PromiseTarget};

#[derive(Default)]
pub(crate) struct Recorded {
    pub series: Vec<(String, Option<String>)>,
    pub measures: Vec<(SeriesId, Measure)>,
    pub folded: Vec<FoldedLabel>,
    pub agents: Vec<String>,
    pub agent_measures: Vec<(String, AgentMeasure)>,
}

impl Observer for Recorded {
    fn new_series(&mut self, id: SeriesId, info: &SeriesInfo) {
        assert_eq!(id as usize, self.series.len());
        self.series.push((
            info.queue.to_string(),
            info.site.as_ref().map(|s| s.to_string()),
        ));
    }
    fn measure(&mut self, id: SeriesId, _now: Millis, m: Measure) {
        self.measures.push((id, m));
    }
    fn folded(&mut self, label: FoldedLabel) {
        self.folded.push(label);
    }
    fn new_agent(&mut self, id: AgentId, name: &str) {
        assert_eq!(id as usize, self.agents.len());
        self.agents.push(name.to_string());
    }
    fn agent_measure(&mut self, id: AgentId, m: AgentMeasure) {
        self.agent_measures
            .push((self.agents[id as usize].clone(), m));
    }
}

const T0: Millis = 1_795_424_400_000; // 2026-11-23T09:00:00Z

fn s(secs: f64) -> Millis {
    T0 + (secs * 1000.0) as Millis
}

pub(crate) fn ev(ts: Millis, body: Body) -> Event {
    Event {
        ts,
        event_id: None,
        site: None,
        agent: None,
        body,
    }
}

fn offered(t: f64, call: &str, queue: &str) -> Event {
    ev(
        s(t),
        Body::CallOffered {
            call: call.into(),
            queue: queue.into(),
        },
    )
}
fn answered(t: f64, call: &str) -> Event {
    ev(s(t), Body::CallAnswered { call: call.into() })
}
fn hold(t: f64, call: &str) -> Event {
    ev(s(t), Body::HoldStarted { call: call.into() })
}
fn unhold(t: f64, call: &str) -> Event {
    ev(s(t), Body::HoldEnded { call: call.into() })
}
fn end(t: f64, call: &str, reason: EndReason) -> Event {
    ev(
        s(t),
        Body::CallEnded {
            call: call.into(),
            reason,
        },
    )
}
fn promise(t: f64, id: &str, due: f64, queue: Option<&str>, call: Option<&str>) -> Event {
    ev(
        s(t),
        Body::CallbackPromised {
            promise: id.into(),
            due: s(due),
            target: match (queue, call) {
                (Some(queue), call) => PromiseTarget::Queue {
                    queue: queue.into(),
                    call: call.map(Into::into),
                },
                (None, Some(call)) => PromiseTarget::Call { call: call.into() },
                (None, None) => panic!("a promise names its queue or call"),
            },
        },
    )
}
fn complete(t: f64, id: &str) -> Event {
    ev(s(t), Body::CallbackCompleted { promise: id.into() })
}
fn cancel(t: f64, id: &str) -> Event {
    ev(s(t), Body::CallbackCancelled { promise: id.into() })
}
fn clock(t: f64) -> Event {
    ev(s(t), Body::Clock)
}

fn event_engine() -> Engine {
    Engine::new(Settings {
        clock: ClockMode::Event,
        ..Settings::default()
    })
}

fn run(engine: &mut Engine, events: &[Event]) -> (Vec<Verdict>, Recorded) {
    let mut rec = Recorded::default();
    let v = events
        .iter()
        .map(|e| engine.apply(e, 0, &mut rec))
        .collect();
    (v, rec)
}

fn rejected(v: Verdict) -> Reason {
    match v {
        Verdict::Rejected(r) => r.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn rings_follow_the_cadence() {
    let l = Limits::default();
    assert_eq!(l.rings(0), 1);
    assert_eq!(l.rings(1), 1);
    assert_eq!(l.rings(6_000), 1);
    assert_eq!(l.rings(6_001), 2);
    assert_eq!(l.rings(18_000), 3);
    assert_eq!(l.rings(18_001), 4);
    assert_eq!(l.answer_limit(), 18_000);
}

#[test]
fn answer_within_and_past_three_rings() {
    let mut e = event_engine();
    let (v, rec) = run(
        &mut e,
        &[
            offered(0.0, "c1", "billing"),
            answered(18.0, "c1"),
            offered(20.0, "c2", "billing"),
            answered(38.5, "c2"),
        ],
    );
    assert!(v.iter().all(|v| *v == Verdict::Accepted));
    assert_eq!(
        rec.measures,
        vec![
            (0, Measure::Offered),
            (
                0,
                Measure::Answered {
                    wait: 18_000,
                    rings: 3,
                    late: false
                }
            ),
            (0, Measure::Offered),
            (
                0,
                Measure::Answered {
                    wait: 18_500,
                    rings: 4,
                    late: true
                }
            ),
        ]
    );
}

#[test]
fn abandons_short_long_and_transferred() {
    let mut e = event_engine();
    let (_, rec) = run(
        &mut e,
        &[
            offered(0.0, "a", "q"),
            end(3.0, "a", EndReason::Abandoned),
            offered(0.0, "b", "q"),
            // reason says completed, but it was never answered
            end(30.0, "b", EndReason::Completed),
            offered(0.0, "c", "q"),
            end(5.0, "c", EndReason::Failed),
            offered(0.0, "d", "q"),
            end(40.0, "d", EndReason::Transferred),
        ],
    );
    let abandons: Vec<_> = rec
        .measures
        .iter()
        .filter(|(_, m)| matches!(m, Measure::Abandoned { .. }))
        .map(|(_, m)| *m)
        .collect();
    assert_eq!(
        abandons,
        vec![
            Measure::Abandoned {
                wait: 3_000,
                short: true
            },
            Measure::Abandoned {
                wait: 30_000,
                short: false
            },
            // exactly short_abandon is not "shorter than"
            Measure::Abandoned {
                wait: 5_000,
                short: false
            },
        ]
    );
    assert_eq!(e.calls_in_flight(), 0);
}

#[test]
fn hold_segments_including_one_that_ends_the_call() {
    let mut e = event_engine();
    let (v, rec) = run(
        &mut e,
        &[
            offered(0.0, "h1", "support"),
            answered(4.0, "h1"),
            hold(10.0, "h1"),
            unhold(27.0, "h1"),
            hold(30.0, "h1"),
            unhold(47.5, "h1"),
            hold(50.0, "h1"),
            end(60.0, "h1", EndReason::Completed),
        ],
    );
    assert!(v.iter().all(|v| *v == Verdict::Accepted), "{v:?}");
    let holds: Vec<_> = rec
        .measures
        .iter()
        .filter_map(|(_, m)| match m {
            Measure::HoldSegment {
                duration,
                over_limit,
            } => Some((*duration, *over_limit)),
            _ => None,
        })
        .collect();
    // exactly 17.000 s complies; 17.5 s does not
    assert_eq!(
        holds,
        vec![(17_000, false), (17_500, false), (10_000, false)]
            .into_iter()
            .map(|(d, _)| (d, d > 17_000))
            .collect::<Vec<_>>()
    );
    assert_eq!(holds[1], (17_500, true));
}

#[test]
fn invalid_transitions() {
    let mut e = event_engine();
    let (v, _) = run(
        &mut e,
        &[
            offered(0.0, "c", "q"),
            hold(1.0, "c"),   // not answered
            unhold(1.0, "c"), // not on hold
            answered(2.0, "c"),
            answered(3.0, "c"), // twice
            hold(4.0, "c"),
            hold(5.0, "c"), // already on hold
            end(6.0, "c", EndReason::Completed),
            unhold(7.0, "c"),       // after end
            answered(7.0, "c"),     // after end
            offered(8.0, "c", "q"), // id reused
        ],
    );
    let reasons: Vec<_> = v
        .iter()
        .map(|v| match v {
            Verdict::Rejected(r) => Some(r.reason),
            _ => None,
        })
        .collect();
    use Reason::*;
    assert_eq!(
        reasons,
        vec![
            None,
            Some(InvalidTransition),
            Some(InvalidTransition),
            None,
            Some(InvalidTransition),
            None,
            Some(InvalidTransition),
            None,
            Some(InvalidTransition),
            Some(InvalidTransition),
            Some(DuplicateCall),
        ]
    );
}

#[test]
fn unknown_duplicate_and_backwards() {
    let mut e = event_engine();
    let (v, rec) = run(
        &mut e,
        &[
            answered(1.0, "nobody"),
            offered(0.0, "b1", "billing"),
            offered(2.0, "b1", "billing"),
            answered(4.0, "b1"),
            end(-60.0, "b1", EndReason::Completed),
        ],
    );
    assert_eq!(rejected(v[0]), Reason::UnknownCall);
    assert_eq!(v[1], Verdict::Accepted);
    assert_eq!(rejected(v[2]), Reason::DuplicateCall);
    assert_eq!(v[3], Verdict::Accepted);
    assert_eq!(rejected(v[4]), Reason::TimeGoesBackwards);
    // nothing measured from rejected events
    assert_eq!(rec.measures.len(), 2);
}

#[test]
fn event_ids_are_deduplicated_only_once_applied() {
    let mut e = event_engine();
    let mut a = answered(4.0, "b1");
    a.event_id = Some("e1".into());
    let mut o = offered(0.0, "b1", "q");
    o.event_id = Some("e0".into());
    let (v, _) = run(&mut e, &[a.clone(), o.clone(), a.clone(), a, o]);
    assert_eq!(rejected(v[0]), Reason::UnknownCall);
    assert_eq!(v[1], Verdict::Accepted);
    assert_eq!(v[2], Verdict::Accepted, "a rejected id may be sent again");
    assert_eq!(v[3], Verdict::Duplicate);
    assert_eq!(v[4], Verdict::Duplicate);
}

#[test]
fn dedup_window_expires_on_the_clock() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        dedup_window: 10_000,
        ..Settings::default()
    });
    let mut c = clock(0.0);
    c.event_id = Some("x".into());
    let (v, _) = run(&mut e, &[c.clone(), c.clone(), clock(10.0), c]);
    assert_eq!(
        v,
        vec![
            Verdict::Accepted,
            Verdict::Duplicate,
            Verdict::Accepted,
            Verdict::Accepted
        ]
    );
}

#[test]
fn callback_outcomes() {
    let mut e = event_engine();
    let (v, rec) = run(
        &mut e,
        &[
            offered(0.0, "k1", "billing"),
            answered(3.0, "k1"),
            promise(60.0, "p1", 3600.0, None, Some("k1")),
            end(70.0, "k1", EndReason::Completed),
            promise(80.0, "p2", 3600.0, Some("billing"), None),
            promise(90.0, "p3", 3600.0, Some("billing"), None),
            promise(95.0, "p4", 7200.0, Some("billing"), None),
            promise(96.0, "p5", 72000.0, Some("retention"), None),
            complete(1800.0, "p1"),
            complete(4000.0, "p2"),
            cancel(4100.0, "p4"),
            clock(3600.0 + 86400.0 + 1.0),
        ],
    );
    assert!(v.iter().all(|v| *v == Verdict::Accepted), "{v:?}");
    let outcomes: Vec<_> = rec
        .measures
        .iter()
        .filter_map(|(id, m)| match m {
            Measure::Resolved { outcome, lateness } => Some((*id, *outcome, *lateness)),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (0, Outcome::Kept, 0),
            (0, Outcome::Late, 400_000),
            (0, Outcome::Cancelled, 0),
            (0, Outcome::Missed, 0),
        ]
    );
    assert_eq!(e.promises_pending(), 1);
    let live = e.live();
    assert_eq!(live[1].callbacks_pending, 1);
    assert_eq!(live[1].callbacks_overdue, 1);
}

#[test]
fn missed_exactly_when_the_moment_passes() {
    let mut e = event_engine();
    let (_, rec) = run(
        &mut e,
        &[
            promise(0.0, "p", 10.0, Some("q"), None),
            clock(10.0 + 86400.0),
        ],
    );
    assert_eq!(rec.measures.len(), 1, "not missed at exactly due + expiry");
    let (v, rec) = run(&mut e, &[complete(10.0 + 86400.0, "p")]);
    assert_eq!(
        v[0],
        Verdict::Accepted,
        "completing at the last moment is late"
    );
    assert!(matches!(
        rec.measures[0].1,
        Measure::Resolved {
            outcome: Outcome::Late,
            ..
        }
    ));
    let mut e = event_engine();
    let (v, rec) = run(
        &mut e,
        &[
            promise(0.0, "p", 10.0, Some("q"), None),
            clock(10.001 + 86400.0),
            complete(10.001 + 86400.0, "p"),
            cancel(10.001 + 86400.0, "p"),
        ],
    );
    assert!(matches!(
        rec.measures[1].1,
        Measure::Resolved {
            outcome: Outcome::Missed,
            ..
        }
    ));
    assert_eq!(rejected(v[2]), Reason::AlreadyResolved);
    assert_eq!(rejected(v[3]), Reason::AlreadyResolved);
}

#[test]
fn promises_missed_together_go_in_deadline_order_across_queues() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        callback_expiry: 60_000,
        ..Settings::default()
    });
    let (_, rec) = run(
        &mut e,
        &[
            promise(0.0, "p-b", 30.0, Some("b"), None),
            promise(0.0, "p-a2", 20.0, Some("a"), None),
            promise(0.0, "p-a1", 10.0, Some("a"), None),
            promise(0.0, "p-b0", 10.0, Some("b"), None),
            clock(1000.0),
        ],
    );
    let missed: Vec<_> = rec
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
        .map(|(series, _)| *series)
        .collect();
    // p-a1 and p-b0 (due at 10 s, by id), p-a2, then p-b.
    assert_eq!(missed, [1, 0, 1, 0]);
    assert_eq!(e.promises_pending(), 0);
}

#[test]
fn promise_errors() {
    let mut e = event_engine();
    let (v, _) = run(
        &mut e,
        &[
            complete(0.0, "never"),
            cancel(0.0, "never"),
            promise(1.0, "p", 100.0, Some("q"), None),
            promise(2.0, "p", 100.0, Some("q"), None),
            complete(0.5, "p"),
            promise(3.0, "x", 100.0, None, Some("no-such-call")),
            complete(5.0, "p"),
            complete(6.0, "p"),
            promise(7.0, "p", 100.0, Some("q"), None),
        ],
    );
    use Reason::*;
    assert_eq!(rejected(v[0]), UnknownPromise);
    assert_eq!(rejected(v[1]), UnknownPromise);
    assert_eq!(v[2], Verdict::Accepted);
    assert_eq!(rejected(v[3]), DuplicatePromise);
    assert_eq!(rejected(v[4]), TimeGoesBackwards);
    assert_eq!(rejected(v[5]), MissingField);
    assert_eq!(v[6], Verdict::Accepted);
    assert_eq!(rejected(v[7]), AlreadyResolved);
    assert_eq!(rejected(v[8]), DuplicatePromise);
}

#[test]
fn live_gauges_on_event_time() {
    let mut e = event_engine();
    run(
        &mut e,
        &[
            offered(50.0, "c6", "sales"),
            offered(95.0, "c7", "sales"),
            answered(95.0, "c7"),
            offered(60.0, "h3", "support"),
            answered(62.0, "h3"),
            hold(70.0, "h3"),
            offered(61.0, "h4", "support"),
            answered(63.0, "h4"),
            hold(90.0, "h4"),
            clock(100.0),
        ],
    );
    let live = e.live();
    assert_eq!(
        live[0],
        Live {
            waiting: 1,
            waiting_over_limit: 1,
            oldest_wait: 50_000,
            active: 1,
            ..Live::default()
        }
    );
    assert_eq!(
        live[1],
        Live {
            active: 2,
            on_hold: 2,
            on_hold_over_limit: 1,
            longest_hold: 30_000,
            ..Live::default()
        }
    );
}

#[test]
fn waiting_over_limit_is_strictly_past_the_limit() {
    let mut e = event_engine();
    run(&mut e, &[offered(0.0, "c", "q"), clock(18.0)]);
    assert_eq!(e.live()[0].waiting_over_limit, 0);
    run(&mut e, &[clock(18.001)]);
    assert_eq!(e.live()[0].waiting_over_limit, 1);
}

#[test]
fn idle_calls_are_evicted_after_ttl() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        call_ttl: 100_000,
        ..Settings::default()
    });
    let (_, rec) = run(
        &mut e,
        &[
            offered(0.0, "a", "q"),
            offered(50.0, "b", "q"),
            clock(100.0),
        ],
    );
    assert!(!rec.measures.contains(&(0, Measure::Evicted)));
    let (v, rec) = run(&mut e, &[answered(100.001, "a"), clock(150.001)]);
    assert_eq!(rejected(v[0]), Reason::UnknownCall);
    assert_eq!(
        rec.measures,
        vec![(0, Measure::Evicted), (0, Measure::Evicted)]
    );
    assert_eq!(e.calls_in_flight(), 0);
}

#[test]
fn wall_clock_mode_uses_the_wall_for_timers() {
    let mut e = Engine::new(Settings::default());
    let mut rec = Recorded::default();
    assert_eq!(
        e.apply(&offered(0.0, "c", "q"), s(1.0), &mut rec),
        Verdict::Accepted
    );
    e.tick(s(31.0), &mut rec);
    let live = e.live();
    assert_eq!(live[0].oldest_wait, 31_000);
    // an event from the far future does not move wall time
    assert_eq!(e.apply(&clock(1e6), s(32.0), &mut rec), Verdict::Accepted);
    assert_eq!(e.live()[0].oldest_wait, 32_000);
}

#[test]
fn on_the_wall_clock_eviction_happens_at_the_tick() {
    let mut e = Engine::new(Settings {
        call_ttl: 100_000,
        ..Settings::default()
    });
    let mut rec = Recorded::default();
    assert_eq!(
        e.apply(&offered(0.0, "c", "q"), s(0.0), &mut rec),
        Verdict::Accepted
    );
    e.tick(s(100.0), &mut rec);
    assert_eq!(e.live()[0].waiting, 1, "idle for exactly call_ttl");
    e.tick(s(100.001), &mut rec);
    assert_eq!(
        rec.measures,
        vec![(0, Measure::Offered), (0, Measure::Evicted)]
    );
    assert_eq!(e.live()[0], Live::default());
    assert_eq!(e.calls_in_flight(), 0);
}

#[test]
fn per_queue_limits_apply() {
    let mut queue_limits = HashMap::new();
    queue_limits.insert(
        "vip".to_string(),
        Limits {
            ring_cycle: 5_000,
            max_rings: 2,
            hold_limit: 10_000,
            short_abandon: 3_000,
        },
    );
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        queue_limits,
        ..Settings::default()
    });
    let (_, rec) = run(
        &mut e,
        &[
            offered(0.0, "v", "vip"),
            answered(11.0, "v"),
            hold(12.0, "v"),
            unhold(23.0, "v"),
        ],
    );
    assert_eq!(
        rec.measures[1].1,
        Measure::Answered {
            wait: 11_000,
            rings: 3,
            late: true
        }
    );
    assert_eq!(
        rec.measures[2].1,
        Measure::HoldSegment {
            duration: 11_000,
            over_limit: true
        }
    );
}

#[test]
fn capacity_limits_reject() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        max_calls: 1,
        max_promises: 1,
        ..Settings::default()
    });
    let (v, _) = run(
        &mut e,
        &[
            offered(0.0, "a", "q"),
            offered(0.0, "b", "q"),
            promise(0.0, "p1", 1.0, Some("q"), None),
            promise(0.0, "p2", 1.0, Some("q"), None),
        ],
    );
    assert_eq!(rejected(v[1]), Reason::Capacity);
    assert_eq!(rejected(v[3]), Reason::Capacity);
}

#[test]
fn queues_past_the_cap_fold_into_other() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        max_queues: 1,
        ..Settings::default()
    });
    let (_, rec) = run(&mut e, &[offered(0.0, "a", "q1"), offered(0.0, "b", "q2")]);
    assert_eq!(
        rec.series,
        vec![("q1".into(), None), ("other".into(), None)]
    );
    assert_eq!(rec.folded, vec![FoldedLabel::Queue]);
}

#[test]
fn wall_clock_outcome_stamped_past_expiry_is_missed() {
    // The source's clock runs ahead of the monitor's: the completion says it
    // came after due + expiry, so the promise was missed, not late.
    let mut e = Engine::new(Settings {
        callback_expiry: 60_000,
        ..Settings::default()
    });
    let mut rec = Recorded::default();
    assert_eq!(
        e.apply(&promise(0.0, "p", 1.0, Some("q"), None), s(0.0), &mut rec),
        Verdict::Accepted
    );
    let v = e.apply(&complete(600.0, "p"), s(5.0), &mut rec);
    assert_eq!(rejected(v), Reason::AlreadyResolved);
    assert!(matches!(
        rec.measures[1].1,
        Measure::Resolved {
            outcome: Outcome::Missed,
            ..
        }
    ));
    assert_eq!(e.promises_pending(), 0);
}

#[test]
fn folding_queue_and_site_counts_both() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        max_queues: 1,
        max_sites: 1,
        ..Settings::default()
    });
    let mut o = offered(0.0, "a", "q1");
    o.site = Some("s1".into());
    let mut p = offered(0.0, "b", "q2");
    p.site = Some("s2".into());
    let (_, rec) = run(&mut e, &[o, p]);
    assert_eq!(rec.folded, vec![FoldedLabel::Queue, FoldedLabel::Site]);
}

fn by(agent: &str, mut e: Event) -> Event {
    e.agent = Some(agent.into());
    e
}

#[test]
fn per_agent_attribution_is_opt_in() {
    let events = [
        offered(0.0, "c", "q"),
        by("ann", answered(20.0, "c")),
        by("bob", hold(30.0, "c")),
        unhold(50.0, "c"),
        by("ann", promise(60.0, "p1", 100.0, None, Some("c"))),
        by("ann", promise(60.0, "p2", 100.0, None, Some("c"))),
        end(70.0, "c", EndReason::Completed),
        by("cat", complete(200.0, "p1")),
        cancel(80.0, "p2"),
    ];
    let (_, rec) = run(&mut event_engine(), &events);
    assert!(rec.agents.is_empty() && rec.agent_measures.is_empty());

    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        per_agent: true,
        max_agents: 2,
        ..Settings::default()
    });
    let (v, rec) = run(&mut e, &events);
    assert!(v.iter().all(|v| *v == Verdict::Accepted), "{v:?}");
    assert_eq!(rec.agents, vec!["ann", "bob", "other"]);
    assert_eq!(
        rec.agent_measures,
        vec![
            ("ann".into(), AgentMeasure::Answered { late: true }),
            ("bob".into(), AgentMeasure::HoldSegment { over_limit: true }),
            // the caller-back ("cat", folded) gets the outcome...
            (
                "other".into(),
                AgentMeasure::Resolved {
                    outcome: Outcome::Late
                }
            ),
            // ...else the agent who promised
            (
                "ann".into(),
                AgentMeasure::Resolved {
                    outcome: Outcome::Cancelled
                }
            ),
        ]
    );
    assert_eq!(rec.folded, vec![FoldedLabel::Agent]);
}

#[test]
fn alert_conditions_name_the_calls_and_promises_past_their_limits() {
    let mut e = Engine::new(Settings {
        clock: ClockMode::Event,
        ..Settings::default()
    });
    run(
        &mut e,
        &[
            offered(0.0, "ringing", "q"),
            offered(0.0, "held", "q"),
            by("ann", answered(2.0, "held")),
            hold(10.0, "held"),
            offered(0.0, "short-hold", "q"),
            answered(2.0, "short-hold"),
            hold(20.0, "short-hold"),
            by("bob", promise(1.0, "p", 30.0, Some("q"), None)),
            promise(1.0, "not-due", 3600.0, Some("q"), None),
            clock(30.0),
        ],
    );
    let mut a = e.alerts();
    a.sort_by(|x, y| x.subject.cmp(&y.subject));
    let got: Vec<_> = a
        .iter()
        .map(|c| {
            (
                c.kind,
                c.subject.as_str(),
                c.agent.map(|id| e.agent_name(id)),
                c.since,
                c.elapsed,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                AlertKind::OnHoldPastLimit,
                "held",
                Some("ann"),
                s(27.0),
                20_000
            ),
            (
                AlertKind::RingingPastLimit,
                "ringing",
                None,
                s(18.0),
                30_000
            ),
        ]
    );
    // the promise becomes overdue strictly after due; the hold and ring clear
    run(
        &mut e,
        &[
            unhold(31.0, "held"),
            end(31.0, "ringing", EndReason::Abandoned),
            clock(30.001),
        ],
    );
    let a = e.alerts();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].kind, a[0].subject.as_str()),
        (AlertKind::CallbackOverdue, "p")
    );
    assert_eq!(e.agent_name(a[0].agent.unwrap()), "bob");
}

/// A call forgotten by a platform source's reconciliation leaves every
/// gauge, counts as evicted (never as an answer or an abandon), and later
/// events for it are unknown.
#[test]
fn a_forgotten_call_leaves_no_trace_but_an_eviction() {
    let mut e = event_engine();
    let (v, mut rec) = run(
        &mut e,
        &[
            offered(0.0, "w", "q"),
            offered(1.0, "h", "q"),
            answered(2.0, "h"),
            hold(3.0, "h"),
            offered(4.0, "t", "q"),
            answered(5.0, "t"),
        ],
    );
    assert!(v.iter().all(|v| *v == Verdict::Accepted), "{v:?}");
    let before = e.live()[0];
    assert_eq!((before.waiting, before.on_hold, before.active), (1, 1, 2));
    for call in ["w", "h", "t"] {
        assert!(e.forget(call, &mut rec));
    }
    assert!(!e.forget("w", &mut rec), "already gone");
    assert!(!e.forget("never", &mut rec));
    let after = e.live()[0];
    assert_eq!((after.waiting, after.on_hold, after.active), (0, 0, 0));
    assert_eq!(e.calls_in_flight(), 0);
    let evicted = rec
        .measures
        .iter()
        .filter(|(_, m)| matches!(m, Measure::Evicted))
        .count();
    assert_eq!(evicted, 3);
    let (v, _) = run(&mut e, &[answered(6.0, "w")]);
    assert_eq!(rejected(v[0]), Reason::UnknownCall);
}
