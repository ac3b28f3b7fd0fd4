//! The translator: each verb's mapping, ids shared with the AMI adapter,
//! re-entry, repeats, callbacks, bounds, and properties over generated
//! logs (repeated lines change nothing, reordered ones are counted, a
//! saved and restored state continues exactly).

use super::*;
use crate::sources::metrics::Skip;
use crate::sources::{AbandonPolicy, Translate};
use proptest::prelude::*;

fn tr() -> Translator {
    Translator::new(Translate::default(), State::default())
}

fn feed(t: &mut Translator, lines: &[String]) -> (Vec<Event>, Vec<Rejected>) {
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for l in lines {
        let parsed = super::super::line::parse_str(l).expect("test lines parse");
        match t.line(&parsed) {
            Ok(e) => events.push(e),
            Err(r) => skipped.push(r),
        }
    }
    (events, skipped)
}

const T0: i64 = 1_717_397_243;

fn enter(ts: i64, callid: &str, queue: &str) -> String {
    format!("{ts}|{callid}|{queue}|NONE|ENTERQUEUE||0123456789|1")
}

fn verb(ts: i64, callid: &str, queue: &str, agent: &str, verb: &str, data: &str) -> String {
    format!("{ts}|{callid}|{queue}|{agent}|{verb}|{data}")
}

#[test]
fn a_served_call_maps_to_offered_answered_ended() {
    let mut t = tr();
    let log = [
        enter(T0, "1717397243.239826", "1501"),
        verb(
            T0 + 1,
            "1717397243.239826",
            "1501",
            "PJSIP/2001",
            "RINGNOANSWER",
            "1000",
        ),
        verb(
            T0 + 18,
            "1717397243.239826",
            "1501",
            "PJSIP/2002",
            "CONNECT",
            "18|1717397261.5|3",
        ),
        verb(
            T0 + 78,
            "1717397243.239826",
            "1501",
            "PJSIP/2002",
            "COMPLETEAGENT",
            "18|60|1",
        ),
    ];
    let (events, skipped) = feed(&mut t, &log);
    assert_eq!(skipped, [skip(Skip::Ignored, "RINGNOANSWER")]);
    let call: Id = "ast:1717397243.239826:1".into();
    assert_eq!(
        events,
        [
            Event {
                ts: T0 * 1000,
                event_id: Some("ast:1717397243.239826:1:offered".into()),
                site: None,
                agent: None,
                body: Body::CallOffered {
                    call: call.clone(),
                    queue: "1501".into()
                },
            },
            Event {
                ts: (T0 + 18) * 1000,
                event_id: Some("ast:1717397243.239826:1:answered".into()),
                site: None,
                agent: Some("PJSIP/2002".into()),
                body: Body::CallAnswered { call: call.clone() },
            },
            Event {
                ts: (T0 + 78) * 1000,
                event_id: Some("ast:1717397243.239826:1:ended".into()),
                site: None,
                agent: Some("PJSIP/2002".into()),
                body: Body::CallEnded {
                    call,
                    reason: EndReason::Completed
                },
            },
        ]
    );
}

/// The id is the one the AMI adapter builds for the same call.
#[test]
fn ids_are_those_of_the_ami_adapter() {
    let t = Translate {
        site: Some("hq".into()),
        abandon_policy: AbandonPolicy::Failed,
    };
    let mut tr = Translator::new(t.clone(), State::default());
    let (events, _) = feed(&mut tr, &[enter(T0, "1514295827.372", "sales")]);
    let want = ids::call(Family::Asterisk, t.site.as_deref(), "1514295827.372", 1);
    assert_eq!(want, "ast:hq:1514295827.372:1");
    assert_eq!(
        events[0].body,
        Body::CallOffered {
            call: want.clone(),
            queue: "sales".into()
        }
    );
    assert_eq!(
        events[0].event_id.as_deref(),
        Some(ids::call_event(&want, Step::Offered).as_str())
    );
    assert_eq!(events[0].site.as_deref(), Some("hq"));
}

fn end_reason(verb_name: &str, data: &str, policy: AbandonPolicy) -> Result<EndReason, Skip> {
    let mut t = Translator::new(
        Translate {
            site: None,
            abandon_policy: policy,
        },
        State::default(),
    );
    let (_, _) = feed(&mut t, &[enter(T0, "c.1", "q")]);
    if verb_name.starts_with("COMPLETE") {
        let (_, _) = feed(
            &mut t,
            &[verb(T0 + 5, "c.1", "q", "PJSIP/1", "CONNECT", "5|u|1")],
        );
    }
    let l = verb(T0 + 9, "c.1", "q", "NONE", verb_name, data);
    let (events, skipped) = feed(&mut t, &[l]);
    match (events.first(), skipped.first()) {
        (
            Some(Event {
                body: Body::CallEnded { reason, .. },
                ..
            }),
            None,
        ) => Ok(*reason),
        (_, Some(r)) => Err(r.reason),
        other => panic!("{verb_name}: {other:?}"),
    }
}

#[test]
fn every_exit_verb_has_its_reason() {
    use AbandonPolicy::{Abandoned, Failed};
    use EndReason as R;
    let cases = [
        ("COMPLETECALLER", "9|60|1", Failed, R::Completed),
        ("COMPLETEAGENT", "9|60|1", Failed, R::Completed),
        (
            "BLINDTRANSFER",
            "200|default|9|60|1",
            Failed,
            R::Transferred,
        ),
        (
            "ATTENDEDTRANSFER",
            "BRIDGE|x|9|60|1",
            Failed,
            R::Transferred,
        ),
        ("TRANSFER", "200|default|9|60", Failed, R::Transferred),
        ("EXITWITHKEY", "5|1|1|9", Failed, R::Transferred),
        ("ABANDON", "1|1|9", Failed, R::Abandoned),
        ("ABANDON", "1|1|9", Abandoned, R::Abandoned),
        ("EXITWITHTIMEOUT", "1|1|9", Failed, R::Failed),
        ("EXITWITHTIMEOUT", "1|1|9", Abandoned, R::Abandoned),
        ("EXITEMPTY", "1|1|9", Failed, R::Failed),
        ("EXITEMPTY", "1|1|9", Abandoned, R::Abandoned),
        ("WITHDRAW", "1|1|9|info", Failed, R::Failed),
        ("WITHDRAW", "1|1|9|info", Abandoned, R::Abandoned),
    ];
    for (v, data, policy, want) in cases {
        assert_eq!(
            end_reason(v, data, policy),
            Ok(want),
            "{v} under {policy:?}"
        );
    }
    for v in [
        "ADDMEMBER",
        "REMOVEMEMBER",
        "PAUSE",
        "UNPAUSE",
        "PAUSEALL",
        "UNPAUSEALL",
        "PENALTY",
        "RINGINUSE",
        "AGENTLOGIN",
        "AGENTLOGOFF",
    ] {
        assert_eq!(end_reason(v, "", Failed), Err(Skip::MemberEvent), "{v}");
    }
    for v in [
        "RINGNOANSWER",
        "RINGCANCELED",
        "AGENTDUMP",
        "SYSCOMPAT",
        "QUEUESTART",
        "CONFIGRELOAD",
        "OUTCALL",
        "DID",
    ] {
        assert_eq!(end_reason(v, "", Failed), Err(Skip::Ignored), "{v}");
    }
    assert_eq!(end_reason("NOSUCHVERB", "", Failed), Err(Skip::Unknown));
}

/// A COMPLETECALLER / COMPLETEAGENT with no CONNECT before it: the call
/// was served at a time the log does not give; ending it unanswered would
/// count it as an abandon, so it is forgotten, once.
#[test]
fn a_completed_call_never_seen_answered_is_forgotten() {
    for v in ["COMPLETECALLER", "COMPLETEAGENT"] {
        let mut t = tr();
        let (events, _) = feed(&mut t, &[enter(T0, "c.1", "q")]);
        assert_eq!(events.len(), 1);
        assert!(t.take_forget().is_empty());
        let done = verb(T0 + 40, "c.1", "q", "PJSIP/1", v, "9|30|1");
        let (events, skipped) = feed(&mut t, std::slice::from_ref(&done));
        assert!(events.is_empty(), "{v}: {events:?}");
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].reason, Skip::UnknownCall, "{v}");
        let want = ids::call(Family::Asterisk, None, "c.1", 1);
        assert_eq!(t.take_forget(), vec![want], "{v}");
        assert!(t.take_forget().is_empty());
        // Its later lines (the same line again, a late CONNECT) forget
        // nothing more and end nothing.
        let late = [
            done.clone(),
            verb(T0 + 41, "c.1", "q", "PJSIP/1", "CONNECT", "9|u|1"),
            verb(T0 + 42, "c.1", "q", "NONE", "ABANDON", "1|1|9"),
        ];
        let (events, skipped) = feed(&mut t, &late);
        assert!(events.is_empty(), "{v}: {events:?}");
        assert_eq!(skipped.len(), 3);
        assert!(t.take_forget().is_empty());
        // A re-entry is still numbered after it.
        let (events, _) = feed(&mut t, &[enter(T0 + 50, "c.1", "q")]);
        let call2 = ids::call(Family::Asterisk, None, "c.1", 2);
        assert_eq!(
            events[0].body,
            Body::CallOffered {
                call: call2,
                queue: Label::from("q")
            }
        );
    }
}

#[test]
fn reentry_with_the_same_callid_is_a_second_call() {
    let mut t = tr();
    // asterisk/asterisk#759: into 1501, transferred, into 1509.
    let log = [
        enter(T0, "1717397243.239826", "1501"),
        verb(
            T0 + 5,
            "1717397243.239826",
            "1501",
            "PJSIP/1",
            "CONNECT",
            "5|x|2",
        ),
        verb(
            T0 + 40,
            "1717397243.239826",
            "1501",
            "PJSIP/1",
            "ATTENDEDTRANSFER",
            "BRIDGE|y|5|35|1",
        ),
        enter(T0 + 41, "1717397243.239826", "1509"),
        verb(
            T0 + 50,
            "1717397243.239826",
            "1509",
            "PJSIP/2",
            "CONNECT",
            "9|z|3",
        ),
        verb(
            T0 + 90,
            "1717397243.239826",
            "1509",
            "PJSIP/2",
            "COMPLETEAGENT",
            "9|40|1",
        ),
    ];
    let (events, skipped) = feed(&mut t, &log);
    assert!(skipped.is_empty(), "{skipped:?}");
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.event_id.as_deref().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "ast:1717397243.239826:1:offered",
            "ast:1717397243.239826:1:answered",
            "ast:1717397243.239826:1:ended",
            "ast:1717397243.239826:2:offered",
            "ast:1717397243.239826:2:answered",
            "ast:1717397243.239826:2:ended",
        ]
    );
    assert_eq!(
        events[3].body,
        Body::CallOffered {
            call: "ast:1717397243.239826:2".into(),
            queue: "1509".into()
        }
    );
}

#[test]
fn holds_are_numbered_and_switch_reports_holds_on() {
    let mut t = tr();
    let (_, _) = feed(
        &mut t,
        &[
            enter(T0, "c.1", "q"),
            verb(T0 + 3, "c.1", "q", "A", "CONNECT", "3|u|1"),
        ],
    );
    assert!(!t.reports_holds());
    let log = [
        verb(T0 + 10, "c.1", "q", "A", "CALLERONHOLD", ""),
        verb(T0 + 27, "c.1", "q", "A", "CALLEROFFHOLD", ""),
        verb(T0 + 30, "c.1", "q", "A", "CALLERONHOLD", ""),
        verb(T0 + 48, "c.1", "q", "A", "CALLEROFFHOLD", ""),
        verb(T0 + 49, "c.1", "q", "A", "CALLEROFFHOLD", "again"),
    ];
    let (events, skipped) = feed(&mut t, &log);
    assert!(t.reports_holds());
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.event_id.as_deref().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "ast:c.1:1:hold1",
            "ast:c.1:1:unhold1",
            "ast:c.1:1:hold2",
            "ast:c.1:1:unhold2"
        ]
    );
    assert!(matches!(events[0].body, Body::HoldStarted { .. }));
    assert!(matches!(events[1].body, Body::HoldEnded { .. }));
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].reason, Skip::Repeated);
    // A hold line on a call not yet answered is counted, not sent.
    let mut t = tr();
    let (events, skipped) = feed(
        &mut t,
        &[
            enter(T0, "c.2", "q"),
            verb(T0 + 1, "c.2", "q", "A", "CALLERONHOLD", ""),
        ],
    );
    assert_eq!(events.len(), 1);
    assert_eq!(skipped[0].reason, Skip::Ignored);
    assert!(t.reports_holds());
}

#[test]
fn lines_about_unknown_or_finished_calls_are_counted() {
    let mut t = tr();
    let log = [
        verb(T0, "x.1", "q", "A", "CONNECT", "1|u|1"),
        enter(T0, "c.1", "q"),
        verb(T0 + 2, "c.1", "q", "NONE", "ABANDON", "1|1|2"),
        verb(T0 + 3, "c.1", "q", "A", "CONNECT", "3|u|1"),
        verb(T0 + 4, "c.1", "q", "NONE", "ABANDON", "1|1|4"),
        verb(T0 + 5, "c.1", "q", "A", "CALLERONHOLD", ""),
    ];
    let (events, skipped) = feed(&mut t, &log);
    assert_eq!(events.len(), 2);
    let reasons: Vec<Skip> = skipped.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            Skip::UnknownCall,
            Skip::UnknownCall,
            Skip::Repeated,
            Skip::UnknownCall
        ]
    );
}

#[test]
fn a_repeated_line_is_a_repeat_wherever_it_comes_again() {
    let mut t = tr();
    let a = enter(T0, "c.1", "q");
    let b = verb(T0 + 3, "c.1", "q", "A", "CONNECT", "3|u|1");
    let h1 = verb(T0 + 5, "c.1", "q", "A", "CALLERONHOLD", "");
    let u1 = verb(T0 + 9, "c.1", "q", "A", "CALLEROFFHOLD", "");
    let h2 = verb(T0 + 20, "c.1", "q", "A", "CALLERONHOLD", "");
    let u2 = verb(T0 + 25, "c.1", "q", "A", "CALLEROFFHOLD", "");
    let end = verb(T0 + 30, "c.1", "q", "A", "COMPLETECALLER", "3|27|1");
    let log = [
        a.clone(),
        a.clone(),
        b.clone(),
        h1.clone(),
        u1.clone(),
        h2.clone(),
        h1.clone(),
        u1.clone(),
        u2.clone(),
        end.clone(),
        end.clone(),
        a.clone(),
        h2,
    ];
    let (events, skipped) = feed(&mut t, &log);
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(skipped.len(), 6);
    assert!(
        skipped.iter().all(|r| r.reason == Skip::Repeated),
        "{skipped:?}"
    );
}

#[test]
fn callbacks_follow_the_dialplan_convention() {
    let mut t = Translator::new(
        Translate {
            site: Some("hq".into()),
            abandon_policy: AbandonPolicy::Failed,
        },
        State::default(),
    );
    let log = [
        enter(T0, "c.1", "sales"),
        verb(
            T0 + 10,
            "c.1",
            "NONE",
            "PJSIP/7",
            "RINGWATCHCALLBACK",
            "promised|42|1717400000",
        ),
        verb(
            T0 + 11,
            "c.1",
            "support",
            "NONE",
            "RINGWATCHCALLBACK",
            "promised|43|2024-06-03T08:00:00.5+02:00",
        ),
        verb(
            T0 + 12,
            "NONE",
            "support",
            "NONE",
            "RINGWATCHCALLBACK",
            "promised|44|1717400000.25",
        ),
        verb(
            T0 + 100,
            "c.9",
            "NONE",
            "PJSIP/7",
            "RINGWATCHCALLBACK",
            "completed|42",
        ),
        verb(
            T0 + 101,
            "NONE",
            "NONE",
            "NONE",
            "RINGWATCHCALLBACK",
            "cancelled|43",
        ),
    ];
    let (events, skipped) = feed(&mut t, &log);
    assert!(skipped.is_empty(), "{skipped:?}");
    let call: Id = "ast:hq:c.1:1".into();
    assert_eq!(
        events[1].body,
        Body::CallbackPromised {
            promise: "ast:cb:hq:42".into(),
            due: 1_717_400_000_000,
            target: PromiseTarget::Call { call: call.clone() }
        }
    );
    assert_eq!(events[1].event_id.as_deref(), Some("ast:cb:hq:42:promised"));
    assert_eq!(events[1].agent.as_deref(), Some("PJSIP/7"));
    assert_eq!(
        events[2].body,
        Body::CallbackPromised {
            promise: "ast:cb:hq:43".into(),
            due: 1_717_394_400_500,
            target: PromiseTarget::Queue {
                queue: "support".into(),
                call: Some(call)
            }
        }
    );
    assert_eq!(
        events[3].body,
        Body::CallbackPromised {
            promise: "ast:cb:hq:44".into(),
            due: 1_717_400_000_250,
            target: PromiseTarget::Queue {
                queue: "support".into(),
                call: None
            }
        }
    );
    assert_eq!(
        events[4].body,
        Body::CallbackCompleted {
            promise: "ast:cb:hq:42".into()
        }
    );
    assert_eq!(
        events[4].event_id.as_deref(),
        Some("ast:cb:hq:42:completed")
    );
    assert_eq!(
        events[5].body,
        Body::CallbackCancelled {
            promise: "ast:cb:hq:43".into()
        }
    );
    let bad = [
        verb(
            T0,
            "c.5",
            "NONE",
            "NONE",
            "RINGWATCHCALLBACK",
            "promised|45|1717400000",
        ),
        verb(
            T0,
            "c.1",
            "q",
            "NONE",
            "RINGWATCHCALLBACK",
            "promised|46|tomorrow",
        ),
        verb(
            T0,
            "c.1",
            "q",
            "NONE",
            "RINGWATCHCALLBACK",
            "promised|46|2024-06-03T08:00:00",
        ),
        verb(T0, "c.1", "q", "NONE", "RINGWATCHCALLBACK", "promised|47"),
        verb(T0, "c.1", "q", "NONE", "RINGWATCHCALLBACK", "kept|48"),
        verb(T0, "c.1", "q", "NONE", "RINGWATCHCALLBACK", "completed|"),
        verb(T0, "c.1", "q", "NONE", "RINGWATCHCALLBACK", ""),
        verb(
            T0,
            "c.1",
            "q",
            "NONE",
            "RINGWATCHCALLBACK",
            "promised|49|99999999999999",
        ),
    ];
    let (events, skipped) = feed(&mut t, &bad);
    assert!(events.is_empty(), "{events:?}");
    let reasons: Vec<Skip> = skipped.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            Skip::UnknownCall,
            Skip::InvalidValue,
            Skip::InvalidValue,
            Skip::Malformed,
            Skip::Malformed,
            Skip::Malformed,
            Skip::Malformed,
            Skip::InvalidValue
        ]
    );
}

#[test]
fn fields_outside_the_contract_are_refused_or_dropped() {
    let mut t = tr();
    let long_q = "q".repeat(65);
    let long_a = "a".repeat(65);
    let log = [
        enter(T0, "c.1", &long_q),
        enter(T0, "c.2", ""),
        enter(T0, "c.3", "q"),
        verb(T0 + 1, "c.3", "q", &long_a, "CONNECT", "1|u|1"),
    ];
    let (events, skipped) = feed(&mut t, &log);
    let reasons: Vec<Skip> = skipped.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [Skip::InvalidValue, Skip::Malformed]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].agent, None);
}

#[test]
fn the_state_stays_bounded() {
    let mut t = tr();
    // Ended calls are forgotten after the retention...
    for i in 0..1000 {
        let c = format!("old.{i}");
        feed(
            &mut t,
            &[
                enter(T0 + i, &c, "q"),
                verb(T0 + i + 1, &c, "q", "NONE", "ABANDON", "1|1|1"),
            ],
        );
    }
    let later = T0 + ENDED_RETENTION / 1000 + 2000;
    feed(&mut t, &[enter(later, "new.1", "q")]);
    assert_eq!(t.state().calls.len(), 1);
    // ...and never more than MAX_CALLS are kept, even all open.
    let mut t = tr();
    for i in 0..(MAX_CALLS as i64 + 10) {
        feed(&mut t, &[enter(T0 + i / 100, &format!("c.{i}"), "q")]);
    }
    assert!(t.state().calls.len() <= MAX_CALLS);
    assert!(t
        .state()
        .calls
        .contains_key(&format!("c.{}", MAX_CALLS + 9)));
}

/// A generated log: calls with their lines in order, interleaved.
fn arb_log() -> impl Strategy<Value = Vec<String>> {
    let call = (
        0u8..4,              // outcome
        proptest::bool::ANY, // answered
        0u32..3,             // holds
        0i64..40,            // wait
        0usize..2,           // which queue
        proptest::bool::ANY, // a re-entry follows
    );
    (proptest::collection::vec(call, 1..12), any::<u64>()).prop_map(|(calls, seed)| {
        let mut per_call: Vec<Vec<String>> = Vec::new();
        for (i, (outcome, answered, holds, wait, q, reenter)) in calls.into_iter().enumerate() {
            let callid = format!("{}.{i}", T0 + i as i64);
            let queue = ["sales", "support"][q];
            let mut ts = T0 + i as i64 * 3;
            let mut ls = vec![enter(ts, &callid, queue)];
            ts += wait;
            if answered {
                ls.push(verb(ts, &callid, queue, "PJSIP/1", "CONNECT", "1|u|1"));
                for _ in 0..holds {
                    ts += 2;
                    ls.push(verb(ts, &callid, queue, "PJSIP/1", "CALLERONHOLD", ""));
                    ts += 3;
                    ls.push(verb(ts, &callid, queue, "PJSIP/1", "CALLEROFFHOLD", ""));
                }
                ts += 5;
                let v = [
                    "COMPLETECALLER",
                    "COMPLETEAGENT",
                    "BLINDTRANSFER",
                    "ATTENDEDTRANSFER",
                ][outcome as usize];
                ls.push(verb(ts, &callid, queue, "PJSIP/1", v, "1|2|3"));
            } else {
                let v =
                    ["ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"][outcome as usize];
                ls.push(verb(ts, &callid, queue, "NONE", v, "1|1|5"));
            }
            if reenter {
                ts += 1;
                ls.push(enter(ts, &callid, "support"));
                ts += 4;
                ls.push(verb(ts, &callid, "support", "NONE", "ABANDON", "1|1|4"));
            }
            per_call.push(ls);
        }
        // Interleave, each call's lines kept in order.
        let mut rng = seed;
        let mut out = Vec::new();
        let mut next = vec![0usize; per_call.len()];
        loop {
            let open: Vec<usize> = (0..per_call.len())
                .filter(|c| next[*c] < per_call[*c].len())
                .collect();
            if open.is_empty() {
                break;
            }
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = open[(rng >> 33) as usize % open.len()];
            out.push(per_call[c][next[c]].clone());
            next[c] += 1;
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Lines repeated at later places (a copied log, a cleanup script's
    /// duplicates) give exactly the events of the log without them, each
    /// repeat counted as `repeated`.
    #[test]
    fn repeated_lines_change_nothing(
        log in arb_log(),
        dups in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..10),
    ) {
        let (want, want_skipped) = feed(&mut tr(), &log);
        prop_assert!(want_skipped.is_empty(), "{:?}", want_skipped);
        let mut dup = log.clone();
        for (from, to) in &dups {
            let i = from.index(dup.len());
            let j = i + 1 + to.index(dup.len() - i);
            let line = dup[i].clone();
            dup.insert(j, line);
        }
        let (got, skipped) = feed(&mut tr(), &dup);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(skipped.len(), dups.len());
        prop_assert!(skipped.iter().all(|r| r.reason == Skip::Repeated), "{:?}", skipped);
    }

    /// Lines in any order: no panic, every line accounted for, every event
    /// id given once, every event within the contract.
    #[test]
    fn reordered_lines_are_counted_never_fatal(
        log in arb_log(),
        order in proptest::collection::vec(any::<u64>(), 0..64),
    ) {
        let mut shuffled = log.clone();
        for (k, r) in order.iter().enumerate() {
            let n = shuffled.len();
            shuffled.swap(k % n, (*r % n as u64) as usize);
        }
        let (events, skipped) = feed(&mut tr(), &shuffled);
        prop_assert_eq!(events.len() + skipped.len(), shuffled.len());
        let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_deref().unwrap()).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        prop_assert_eq!(ids.len(), n);
        let text = crate::sources::wire::frame(&events);
        for d in crate::ingest::decode::decode_frame(&text) {
            prop_assert!(d.is_ok(), "{:?}", d);
        }
    }

    /// Saved after any line and restored (as the follower does across a
    /// restart), the translator goes on exactly as if never stopped.
    #[test]
    fn a_restored_state_continues_exactly(log in arb_log(), cut in any::<prop::sample::Index>()) {
        let (want, _) = feed(&mut tr(), &log);
        let k = cut.index(log.len() + 1);
        let mut first = tr();
        let (mut got, _) = feed(&mut first, &log[..k]);
        let json = serde_json::to_string(first.state()).unwrap();
        let state: State = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&state, first.state());
        let mut second = Translator::new(Translate::default(), state);
        let (rest, _) = feed(&mut second, &log[k..]);
        got.extend(rest);
        prop_assert_eq!(got, want);
    }

    /// Any line at all: an event or a counted reason, never a panic.
    #[test]
    fn arbitrary_lines_never_panic(
        fields in proptest::collection::vec("[A-Za-z0-9.|:+\\- ]{0,12}", 5..9),
        verb_name in prop::sample::select(vec![
            "ENTERQUEUE", "CONNECT", "COMPLETECALLER", "ABANDON", "EXITWITHKEY",
            "CALLERONHOLD", "CALLEROFFHOLD", "RINGWATCHCALLBACK", "PAUSE", "X",
        ]),
    ) {
        let mut t = tr();
        let mut f = fields.clone();
        f[0] = T0.to_string();
        f[4] = verb_name.to_string();
        let line = f.join("|");
        if let Ok(l) = super::super::line::parse_str(&line) {
            let _ = t.line(&l);
            let _ = t.line(&l);
        }
    }
}
