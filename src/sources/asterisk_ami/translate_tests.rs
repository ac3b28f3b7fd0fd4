//! Tests of the AMI translator: transcripts (Asterisk 12+ and 11 field
//! lists) in, events out, compared exactly; properties over random,
//! duplicated and reordered streams.

use super::*;
use crate::sources::asterisk_ami::frame::{Item, Mode, Parser};
use crate::sources::AbandonPolicy;
use proptest::prelude::*;

/// 2026-11-23T09:00:00Z in seconds.
const T0: i64 = 1_795_424_400;

fn parse(text: &str) -> Vec<Message> {
    let mut p = Parser::new(Mode::Live, 1 << 20);
    let mut items = Vec::new();
    p.push(text.as_bytes(), &mut items);
    p.finish(&mut items);
    items
        .into_iter()
        .filter_map(|i| match i {
            Item::Message(m) => Some(m),
            Item::Skipped { .. } => None,
        })
        .collect()
}

fn translate_with(policy: AbandonPolicy, text: &str) -> (Output, Translator) {
    let mut t = Translator::new(
        Translate {
            site: None,
            abandon_policy: policy,
        },
        State::default(),
    );
    let mut out = Output::default();
    for m in parse(text) {
        t.message(&m, None, &mut out);
    }
    (out, t)
}

fn translate(text: &str) -> Output {
    let (mut out, mut t) = translate_with(AbandonPolicy::Failed, text);
    t.finish(&mut out);
    out
}

/// `(type, ts offset in ms from T0, event_id)` of each event.
fn summary(out: &Output) -> Vec<(String, i64, String)> {
    out.events
        .iter()
        .map(|e| {
            let kind = match &e.body {
                Body::CallEnded { reason, .. } => {
                    format!("ended:{}", crate::sources::wire::reason_str(*reason))
                }
                b => b.kind().as_str().to_string(),
            };
            (
                kind,
                e.ts - T0 * 1000,
                e.event_id.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// An event block: `Event: name`, the timestamp `T0 + secs`, then fields.
fn ev(name: &str, secs: &str, fields: &[(&str, &str)]) -> String {
    let (int, frac) = secs.split_once('.').unwrap_or((secs, "000000"));
    let t = T0 + int.parse::<i64>().unwrap();
    let mut s = format!("Event: {name}\r\nPrivilege: agent,all\r\nTimestamp: {t}.{frac}\r\n");
    for (k, v) in fields {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

const CALLER: &[(&str, &str)] = &[
    ("Channel", "PJSIP/trunk-00000001"),
    ("Uniqueid", "1795424400.1"),
    ("Linkedid", "1795424400.1"),
];

fn caller(extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> =
        CALLER.iter().map(|(k, v)| (*k, v.to_string())).collect();
    for (k, val) in extra {
        v.push((leak(k), val.to_string()));
    }
    v
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn e(name: &str, secs: &str, fields: Vec<(&'static str, String)>) -> String {
    let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ev(name, secs, &f)
}

fn connect12(secs: &str) -> String {
    e(
        "AgentConnect",
        secs,
        caller(&[
            ("DestChannel", "PJSIP/2001-00000002"),
            ("DestUniqueid", "1795424401.2"),
            ("DestLinkedid", "1795424400.1"),
            ("Queue", "support"),
            ("MemberName", "Alice"),
            ("Interface", "PJSIP/2001"),
            ("HoldTime", "18"),
            ("RingTime", "3"),
        ]),
    )
}

fn agent_leg(name: &str, secs: &str) -> String {
    ev(
        name,
        secs,
        &[
            ("Channel", "PJSIP/2001-00000002"),
            ("Uniqueid", "1795424401.2"),
            ("Linkedid", "1795424400.1"),
        ],
    )
}

fn join(secs: &str, queue: &str) -> String {
    e(
        "QueueCallerJoin",
        secs,
        caller(&[("Queue", queue), ("Position", "1"), ("Count", "1")]),
    )
}

const ID: &str = "ast:1795424400.1:1";

fn ids(step: &str) -> String {
    format!("{ID}:{step}")
}

#[test]
fn an_answered_call_with_an_agent_side_hold_on_asterisk_12() {
    let text = [
        join("0", "support"),
        e("MusicOnHoldStart", "0.2", caller(&[("Class", "default")])),
        ev(
            "AgentCalled",
            "0.3",
            &[("Queue", "support"), ("MemberName", "Alice")],
        ),
        ev(
            "AgentCalled",
            "0.3",
            &[("Queue", "support"), ("MemberName", "Bob")],
        ),
        ev(
            "AgentCalled",
            "0.3",
            &[("Queue", "support"), ("MemberName", "Carol")],
        ),
        e("MusicOnHoldStop", "17.9", caller(&[])),
        e("QueueCallerLeave", "17.95", caller(&[("Queue", "support")])),
        connect12("18.000999"),
        agent_leg("Hold", "30"),
        e("MusicOnHoldStart", "30.01", caller(&[])),
        agent_leg("Unhold", "47"),
        e("MusicOnHoldStop", "47.01", caller(&[])),
        agent_leg("Hold", "50"),
        agent_leg("Unhold", "67.001"),
        e(
            "AgentComplete",
            "90",
            caller(&[
                ("Queue", "support"),
                ("HoldTime", "18"),
                ("TalkTime", "72"),
                ("Reason", "agent"),
            ]),
        ),
        e("Hangup", "90.1", caller(&[("Cause", "16")])),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(
        summary(&out),
        vec![
            ("call.offered".into(), 0, ids("offered")),
            ("call.answered".into(), 18_000, ids("answered")),
            ("call.hold_started".into(), 30_000, ids("hold1")),
            ("call.hold_ended".into(), 47_000, ids("unhold1")),
            ("call.hold_started".into(), 50_000, ids("hold2")),
            ("call.hold_ended".into(), 67_001, ids("unhold2")),
            ("ended:completed".into(), 90_000, ids("ended")),
        ]
    );
    assert_eq!(out.events[1].agent.as_deref(), Some("Alice"));
    assert_eq!(out.events[2].agent.as_deref(), Some("Alice"));
    assert!(matches!(&out.events[0].body, Body::CallOffered { queue, .. } if queue == "support"));
    assert!(out.forget.is_empty());
}

#[test]
fn asterisk_11_names_chan_sip_hold_and_bridged_channel() {
    fn c11(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![("Channel", "SIP/trunk-01"), ("Uniqueid", "1795424400.1")];
        v.extend_from_slice(extra);
        v
    }
    let text = [
        ev(
            "Join",
            "0",
            &c11(&[("Queue", "sales"), ("Position", "1"), ("Count", "1")]),
        ),
        ev("Leave", "12", &c11(&[("Queue", "sales"), ("Count", "0")])),
        ev(
            "AgentConnect",
            "12.5",
            &[
                ("Queue", "sales"),
                ("Uniqueid", "1795424400.1"),
                ("Channel", "SIP/2001-02"),
                ("Member", "SIP/2001"),
                ("MemberName", "Bob"),
                ("Holdtime", "12"),
                ("BridgedChannel", "1795424412.2"),
                ("Ringtime", "2"),
            ],
        ),
        ev(
            "Hold",
            "20",
            &[
                ("Status", "On"),
                ("Channel", "SIP/2001-02"),
                ("Uniqueid", "1795424412.2"),
            ],
        ),
        ev(
            "Hold",
            "37",
            &[
                ("Status", "Off"),
                ("Channel", "SIP/2001-02"),
                ("Uniqueid", "1795424412.2"),
            ],
        ),
        ev(
            "AgentComplete",
            "60",
            &[
                ("Queue", "sales"),
                ("Uniqueid", "1795424400.1"),
                ("Reason", "transfer"),
                ("HoldTime", "12"),
            ],
        ),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(
        summary(&out),
        vec![
            ("call.offered".into(), 0, ids("offered")),
            ("call.answered".into(), 12_500, ids("answered")),
            ("call.hold_started".into(), 20_000, ids("hold1")),
            ("call.hold_ended".into(), 37_000, ids("unhold1")),
            ("ended:transferred".into(), 60_000, ids("ended")),
        ]
    );
}

#[test]
fn asterisk_11_music_on_hold_after_the_answer_is_the_hold_fallback() {
    fn c(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![("Channel", "SIP/trunk-01"), ("UniqueID", "1795424400.1")];
        v.extend_from_slice(extra);
        v
    }
    let text = [
        ev("Join", "0", &c(&[("Queue", "sales")])),
        ev("MusicOnHold", "0.1", &c(&[("State", "Start")])),
        ev("MusicOnHold", "5", &c(&[("State", "Stop")])),
        ev(
            "AgentConnect",
            "5",
            &c(&[("Queue", "sales"), ("MemberName", "Bob")]),
        ),
        ev("MusicOnHold", "10", &c(&[("State", "Start")])),
        ev("MusicOnHold", "27.001", &c(&[("State", "Stop")])),
        ev("Hangup", "40", &c(&[])),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(
        summary(&out),
        vec![
            ("call.offered".into(), 0, ids("offered")),
            ("call.answered".into(), 5_000, ids("answered")),
            ("call.hold_started".into(), 10_000, ids("hold1")),
            ("call.hold_ended".into(), 27_001, ids("unhold1")),
            // No AgentComplete: the caller's hang-up ends it.
            ("ended:completed".into(), 40_000, ids("ended")),
        ]
    );
}

fn abandon(secs: &str) -> String {
    e(
        "QueueCallerAbandon",
        secs,
        caller(&[
            ("Queue", "support"),
            ("Position", "1"),
            ("OriginalPosition", "1"),
            ("HoldTime", "4"),
        ]),
    )
}

fn leave(secs: &str) -> String {
    e("QueueCallerLeave", secs, caller(&[("Queue", "support")]))
}

#[test]
fn an_abandon_is_the_caller_only_when_the_hangup_follows_at_once() {
    let hung_up = [
        join("0", "support"),
        abandon("4"),
        leave("4"),
        e("Hangup", "4.9", caller(&[])),
    ]
    .concat();
    assert_eq!(
        summary(&translate(&hung_up)).last().unwrap().0,
        "ended:abandoned"
    );
    assert_eq!(summary(&translate(&hung_up)).last().unwrap().1, 4_000);

    let later = [
        join("0", "support"),
        abandon("30"),
        leave("30"),
        e("Hangup", "45", caller(&[])),
    ]
    .concat();
    let (mut out, mut t) = translate_with(AbandonPolicy::Failed, &later);
    t.finish(&mut out);
    assert_eq!(summary(&out).last().unwrap().0, "ended:failed");
    assert_eq!(summary(&out).last().unwrap().1, 30_000);
    let (mut out, mut t) = translate_with(AbandonPolicy::Abandoned, &later);
    t.finish(&mut out);
    assert_eq!(summary(&out).last().unwrap().0, "ended:abandoned");

    // channelvars=QUEUESTATUS: the value on an event after the leave;
    // the one on the abandon itself is an older visit's.
    let status = [
        join("0", "support"),
        e(
            "QueueCallerAbandon",
            "30",
            caller(&[("Queue", "support"), ("ChanVariable", "QUEUESTATUS=")]),
        ),
        e(
            "QueueCallerLeave",
            "30",
            caller(&[("Queue", "support"), ("ChanVariable", "QUEUESTATUS=")]),
        ),
        e(
            "Newexten",
            "30.1",
            caller(&[("ChanVariable", "QUEUESTATUS=TIMEOUT")]),
        ),
        e(
            "Hangup",
            "30.2",
            caller(&[("ChanVariable", "QUEUESTATUS=TIMEOUT")]),
        ),
    ]
    .concat();
    let (out, _) = translate_with(AbandonPolicy::Failed, &status);
    assert_eq!(
        summary(&out).last().unwrap().0,
        "ended:failed",
        "{:?}",
        summary(&out)
    );

    // Nothing follows: the timer decides, by the PBX clock.
    let silent = [join("0", "support"), abandon("30"), leave("30")].concat();
    let (mut out, mut t) = translate_with(AbandonPolicy::Failed, &silent);
    t.tick((T0 + 31) * 1000, &mut out);
    assert_eq!(out.events.len(), 1, "within the grace nothing is decided");
    t.tick((T0 + 31) * 1000 + 1, &mut out);
    assert_eq!(summary(&out).last().unwrap().0, "ended:failed");
}

#[test]
fn a_leave_without_an_answer_is_a_transfer_and_a_rejoin_a_new_visit() {
    let text = [
        join("0", "support"),
        leave("5"),
        join("20", "billing"),
        connect12("26"),
        e("AgentComplete", "40", caller(&[("Reason", "caller")])),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(
        summary(&out),
        vec![
            ("call.offered".into(), 0, ids("offered")),
            ("ended:transferred".into(), 5_000, ids("ended")),
            (
                "call.offered".into(),
                20_000,
                "ast:1795424400.1:2:offered".into()
            ),
            (
                "call.answered".into(),
                26_000,
                "ast:1795424400.1:2:answered".into()
            ),
            (
                "ended:completed".into(),
                40_000,
                "ast:1795424400.1:2:ended".into()
            ),
        ]
    );
}

#[test]
fn transfers_end_the_call_transferred() {
    let blind = [
        join("0", "support"),
        connect12("3"),
        agent_leg("Hold", "10"),
        ev(
            "BlindTransfer",
            "12",
            &[
                ("Result", "Success"),
                ("TransfererChannel", "PJSIP/2001-00000002"),
                ("TransfererUniqueid", "1795424401.2"),
                ("TransfereeChannel", "PJSIP/trunk-00000001"),
                ("TransfereeUniqueid", "1795424400.1"),
                ("BridgeUniqueid", "b1"),
                ("Extension", "600"),
            ],
        ),
        e("AgentComplete", "12.1", caller(&[("Reason", "transfer")])),
    ]
    .concat();
    let out = translate(&blind);
    let s = summary(&out);
    assert_eq!(
        s.last().unwrap(),
        &("ended:transferred".into(), 12_000, ids("ended"))
    );
    assert_eq!(s.len(), 4, "{s:?}");
    assert!(out
        .skipped
        .iter()
        .any(|k| k.reason == Skip::Ignored && k.detail.contains("ended")));

    let attended = [
        join("0", "support"),
        connect12("3"),
        ev(
            "AttendedTransfer",
            "30",
            &[
                ("Result", "Success"),
                ("OrigTransfererUniqueid", "1795424401.2"),
                ("OrigTransfererLinkedid", "1795424400.1"),
                ("SecondTransfererUniqueid", "1795424420.5"),
                ("TransfereeUniqueid", "1795424400.1"),
            ],
        ),
    ]
    .concat();
    let s = summary(&translate(&attended));
    assert_eq!(
        s.last().unwrap(),
        &("ended:transferred".into(), 30_000, ids("ended"))
    );
}

#[test]
fn a_message_delivered_twice_counts_once() {
    let text = [
        join("0", "support"),
        join("0", "support"),
        connect12("4"),
        connect12("4"),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(out.events.len(), 2);
    assert_eq!(
        out.skipped
            .iter()
            .filter(|s| s.reason == Skip::Repeated)
            .count(),
        2
    );
    // Without timestamps (receipt time), repeats are still recognised by
    // what they mean.
    let mut t = Translator::new(Translate::default(), State::default());
    let mut out = Output::default();
    let plain = "Event: QueueCallerJoin\r\nUniqueid: 9.1\r\nQueue: q\r\n\r\n".repeat(2);
    for m in parse(&plain) {
        t.message(&m, Some(T0 * 1000), &mut out);
    }
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.skipped[0].reason, Skip::Repeated);
}

#[test]
fn a_capture_without_timestamps_skips_with_the_line() {
    let text = "Event: QueueCallerJoin\r\nUniqueid: 9.1\r\nQueue: q\r\n\r\n";
    let out = translate(text);
    assert!(out.events.is_empty());
    assert_eq!(out.skipped[0].reason, Skip::NoTimestamp);
    assert_eq!(out.skipped[0].line, 1);
    assert!(out.skipped[0].detail.contains("timestampevents = yes"));
}

#[test]
fn holds_on_unrelated_channels_and_queue_music_are_not_holds() {
    let text = [
        join("0", "support"),
        agent_leg("Hold", "1"),
        e("MusicOnHoldStart", "1", caller(&[])),
        ev("Hold", "2", &[("Uniqueid", "7.7"), ("Linkedid", "7.7")]),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(out.events.len(), 1);
    let reasons: Vec<Skip> = out.skipped.iter().map(|s| s.reason).collect();
    assert_eq!(reasons, [Skip::Ignored, Skip::Ignored, Skip::UnknownCall]);
}

#[test]
fn a_call_that_ends_on_hold_ends_with_its_segment_open() {
    let text = [
        join("0", "support"),
        connect12("3"),
        agent_leg("Hold", "10"),
        e("Hangup", "20", caller(&[])),
    ]
    .concat();
    let s = summary(&translate(&text));
    assert_eq!(s[2].0, "call.hold_started");
    assert_eq!(s[3], ("ended:completed".into(), 20_000, ids("ended")));
}

#[test]
fn callbacks_follow_the_convention() {
    let text = [
        join("0", "support"),
        e(
            "UserEvent",
            "5",
            caller(&[
                ("UserEvent", "RingwatchCallback"),
                ("Action", "promised"),
                ("Promise", "42"),
                ("Due", "1795428000.5"),
            ]),
        ),
        e(
            "UserEvent",
            "6",
            caller(&[
                ("UserEvent", "RingwatchCallback"),
                ("Action", "promised"),
                ("Promise", "43"),
                ("Due", "2026-11-23T10:00:00+01:00"),
                ("Queue", "callbacks"),
                ("Agent", "Alice"),
            ]),
        ),
        ev(
            "UserEvent",
            "7",
            &[
                ("UserEvent", "RingwatchCallback"),
                ("Action", "promised"),
                ("Promise", "44"),
                ("Due", "1795428000"),
                ("Uniqueid", "5.5"),
            ],
        ),
        ev(
            "UserEvent",
            "8",
            &[
                ("UserEvent", "RingwatchCallback"),
                ("Action", "completed"),
                ("Promise", "42"),
            ],
        ),
        ev("UserEvent", "9", &[("UserEvent", "Other")]),
    ]
    .concat();
    let out = translate(&text);
    assert_eq!(out.events.len(), 4, "{:?}", out.skipped);
    match &out.events[1].body {
        Body::CallbackPromised {
            promise,
            due,
            target,
        } => {
            assert_eq!(promise, "ast:cb:42");
            assert_eq!(*due, 1_795_428_000_500);
            assert_eq!(target, &PromiseTarget::Call { call: ID.into() });
        }
        b => panic!("{b:?}"),
    }
    match &out.events[2].body {
        Body::CallbackPromised { due, target, .. } => {
            assert_eq!(*due, 1_795_424_400_000);
            assert_eq!(
                target,
                &PromiseTarget::Queue {
                    queue: "callbacks".into(),
                    call: Some(ID.into())
                }
            );
            assert_eq!(out.events[2].agent.as_deref(), Some("Alice"));
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(
        out.events[3].event_id.as_deref(),
        Some("ast:cb:42:completed")
    );
    let reasons: Vec<Skip> = out.skipped.iter().map(|s| s.reason).collect();
    assert_eq!(reasons, [Skip::UnknownCall, Skip::Ignored]);
}

#[test]
fn reconciliation_keeps_offers_and_drops_without_outcomes() {
    let mut t = Translator::new(Translate::default(), State::default());
    let mut out = Output::default();
    let j = |u: &str, q: &str, secs: &str| {
        ev("QueueCallerJoin", secs, &[("Uniqueid", u), ("Queue", q)])
    };
    let text = [
        j("a", "q", "0"),
        j("b", "q", "1"),
        j("c", "q", "2"),
        j("d", "q", "3"),
        ev(
            "AgentConnect",
            "4",
            &[("Uniqueid", "c"), ("MemberName", "x")],
        ),
        ev(
            "AgentConnect",
            "4",
            &[("Uniqueid", "d"), ("MemberName", "y")],
        ),
    ]
    .concat();
    for m in parse(&text) {
        t.message(&m, None, &mut out);
    }
    let now = (T0 + 100) * 1000;
    t.begin_reconcile("qs", "ch", now);
    // A call offered while the answers come in is not a candidate.
    let answers = [
        "Response: Success\r\nActionID: qs\r\nEventList: start\r\n\r\n".to_string(),
        ev(
            "QueueCallerJoin",
            "99",
            &[("Uniqueid", "f"), ("Queue", "q")],
        ),
        "Event: QueueParams\r\nActionID: qs\r\nQueue: q\r\n\r\n".into(),
        "Event: QueueEntry\r\nActionID: qs\r\nQueue: q\r\nUniqueid: a\r\nWait: 100\r\n\r\n".into(),
        "Event: QueueEntry\r\nActionID: qs\r\nQueue: q\r\nUniqueid: e\r\nWait: 30\r\n\r\n".into(),
        "Event: QueueStatusComplete\r\nActionID: qs\r\nListItems: 3\r\n\r\n".into(),
        "Response: Success\r\nActionID: ch\r\n\r\n".into(),
        "Event: CoreShowChannel\r\nActionID: ch\r\nUniqueid: c\r\n\r\n".into(),
        "Event: CoreShowChannelsComplete\r\nActionID: ch\r\n\r\n".into(),
    ]
    .concat();
    let mut out = Output::default();
    for m in parse(&answers) {
        t.message(&m, None, &mut out);
    }
    assert_eq!(
        out.reconciled,
        vec![
            (Reconciled::Kept, 2),
            (Reconciled::Offered, 1),
            (Reconciled::Dropped, 2)
        ]
    );
    let mut forgot: Vec<&str> = out.forget.iter().map(|i| i.as_str()).collect();
    forgot.sort();
    assert_eq!(forgot, ["ast:b:1", "ast:d:1"]);
    let offered: Vec<(String, i64)> = out
        .events
        .iter()
        .map(|e| (e.event_id.clone().unwrap().to_string(), e.ts))
        .collect();
    assert_eq!(
        offered,
        vec![
            ("ast:f:1:offered".into(), (T0 + 99) * 1000),
            ("ast:e:1:offered".into(), now - 30_000)
        ]
    );
    assert!(!t.reconciling());
    assert_eq!(t.state().calls.len(), 4);
}

/// Events that arrive while the answers are collected are newer than the
/// answers' snapshot: a listed waiting caller answered meanwhile is kept
/// (not dropped and offered again as a phantom next visit), one that
/// abandoned meanwhile stays ended (not offered again).
#[test]
fn events_during_reconciliation_win_over_its_snapshot() {
    let mut t = Translator::new(Translate::default(), State::default());
    let mut out = Output::default();
    let j = |u: &str, secs: &str| ev("QueueCallerJoin", secs, &[("Uniqueid", u), ("Queue", "q")]);
    for m in parse(&[j("w", "0"), j("x", "1")].concat()) {
        t.message(&m, None, &mut out);
    }
    let now = (T0 + 50) * 1000;
    t.begin_reconcile("qs", "ch", now);
    let answers = [
        "Response: Success\r\nActionID: qs\r\nEventList: start\r\n\r\n".to_string(),
        "Event: QueueEntry\r\nActionID: qs\r\nQueue: q\r\nUniqueid: w\r\nWait: 50\r\n\r\n".into(),
        "Event: QueueEntry\r\nActionID: qs\r\nQueue: q\r\nUniqueid: x\r\nWait: 49\r\n\r\n".into(),
        "Event: QueueStatusComplete\r\nActionID: qs\r\nListItems: 2\r\n\r\n".into(),
        "Response: Success\r\nActionID: ch\r\n\r\n".into(),
        ev(
            "AgentConnect",
            "51",
            &[("Uniqueid", "w"), ("MemberName", "m")],
        ),
        ev(
            "QueueCallerAbandon",
            "51",
            &[("Uniqueid", "x"), ("Queue", "q"), ("HoldTime", "50")],
        ),
        ev("Hangup", "51.2", &[("Uniqueid", "x"), ("Cause", "16")]),
        "Event: CoreShowChannel\r\nActionID: ch\r\nUniqueid: w\r\n\r\n".into(),
        "Event: CoreShowChannel\r\nActionID: ch\r\nUniqueid: x\r\n\r\n".into(),
        "Event: CoreShowChannelsComplete\r\nActionID: ch\r\n\r\n".into(),
    ]
    .concat();
    let mut out = Output::default();
    for m in parse(&answers) {
        t.message(&m, None, &mut out);
    }
    assert!(!t.reconciling());
    assert!(out.forget.is_empty(), "{:?}", out.forget);
    let ids: Vec<String> = out
        .events
        .iter()
        .map(|e| e.event_id.clone().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["ast:w:1:answered", "ast:x:1:ended"]);
    assert!(matches!(
        out.events[1].body,
        Body::CallEnded {
            reason: EndReason::Abandoned,
            ..
        }
    ));
    assert_eq!(
        out.reconciled,
        vec![
            (Reconciled::Kept, 1),
            (Reconciled::Offered, 0),
            (Reconciled::Dropped, 0)
        ]
    );
    assert_eq!(t.state().calls.len(), 1);
    assert_eq!(t.state().calls["w"].phase, Phase::Answered);
}

#[test]
fn a_refused_core_show_channels_keeps_answered_calls() {
    let mut t = Translator::new(Translate::default(), State::default());
    let mut out = Output::default();
    let text = [
        ev("QueueCallerJoin", "0", &[("Uniqueid", "c"), ("Queue", "q")]),
        ev("AgentConnect", "1", &[("Uniqueid", "c")]),
    ]
    .concat();
    for m in parse(&text) {
        t.message(&m, None, &mut out);
    }
    t.begin_reconcile("qs", "ch", T0 * 1000);
    let mut out = Output::default();
    let answers = "Response: Error\r\nActionID: ch\r\nMessage: Permission denied\r\n\r\n\
        Event: QueueStatusComplete\r\nActionID: qs\r\n\r\n";
    for m in parse(answers) {
        t.message(&m, None, &mut out);
    }
    assert_eq!(out.reconciled[0], (Reconciled::Kept, 1));
    assert!(out.forget.is_empty());
    assert_eq!(out.notes.len(), 1);
}

#[test]
fn the_state_survives_a_round_trip_mid_call() {
    let first = [
        join("0", "support"),
        connect12("3"),
        agent_leg("Hold", "10"),
    ]
    .concat();
    let (_, t) = translate_with(AbandonPolicy::Failed, &first);
    let json = serde_json::to_string(t.state()).unwrap();
    let state: State = serde_json::from_str(&json).unwrap();
    let mut t = Translator::new(Translate::default(), state);
    let mut out = Output::default();
    for m in parse(
        &[
            agent_leg("Unhold", "27"),
            e("AgentComplete", "40", caller(&[])),
        ]
        .concat(),
    ) {
        t.message(&m, None, &mut out);
    }
    assert_eq!(
        summary(&out),
        vec![
            ("call.hold_ended".into(), 27_000, ids("unhold1")),
            ("ended:completed".into(), 40_000, ids("ended")),
        ]
    );
    assert!(t.state().calls.is_empty());
}

#[test]
fn time_is_floored_to_the_millisecond() {
    assert_eq!(parse_seconds("1795424400.123999"), Some(1_795_424_400_123));
    assert_eq!(parse_seconds("1795424400"), Some(1_795_424_400_000));
    assert_eq!(parse_seconds("1795424400.5"), Some(1_795_424_400_500));
    for bad in ["", "-1", "1.2.3", "abc", "1e9", "99999999999999999"] {
        assert_eq!(parse_seconds(bad), None, "{bad}");
    }
    assert_eq!(parse_due("2026-11-23T09:00:00Z"), Some(1_795_424_400_000));
    assert_eq!(parse_due("2026-11-23T09:00:00"), None);
}

#[test]
fn state_is_bounded() {
    let mut t = Translator::new(Translate::default(), State::default());
    let mut out = Output::default();
    // Calls that end without their channel hanging up (abandoned, then the
    // next caller's join decides it): their Uniqueids stay, up to the cap.
    for i in 0..(MAX_VISITS + 10) {
        let text = format!(
            "Event: QueueCallerJoin\r\nUniqueid: {i}\r\nQueue: q\r\n\r\nEvent: QueueCallerAbandon\r\nUniqueid: {i}\r\n\r\n"
        );
        for m in parse(&text) {
            t.message(&m, Some(T0 * 1000 + 2_000 * i as i64), &mut out);
        }
        out.events.clear();
        out.skipped.clear();
    }
    assert!(t.state().visits.len() <= MAX_VISITS);
    assert_eq!(t.state().calls.len(), 1);
    t.tick(
        T0 * 1000 + 2_000 * (MAX_VISITS as i64 + 10) + VISIT_HORIZON_MS,
        &mut out,
    );
    assert!(t.state().visits.len() <= 1);
    // A hang-up forgets the Uniqueid ten minutes later.
    let mut t = Translator::new(Translate::default(), State::default());
    let text = "Event: QueueCallerJoin\r\nUniqueid: 1\r\nQueue: q\r\n\r\nEvent: Hangup\r\nUniqueid: 1\r\n\r\n";
    for m in parse(text) {
        t.message(&m, Some(T0 * 1000), &mut out);
    }
    t.tick(T0 * 1000 + GONE_HORIZON_MS, &mut out);
    assert_eq!(t.state().visits.len(), 1);
    t.tick(T0 * 1000 + GONE_HORIZON_MS + 1, &mut out);
    assert!(t.state().visits.is_empty());
}

// ---- properties ----

/// One step of a random stream, over three callers.
#[derive(Clone, Debug)]
enum Op {
    Join(u8, u8),
    Leave(u8),
    Abandon(u8),
    Connect(u8),
    Complete(u8, bool),
    Hold(u8),
    Unhold(u8),
    Moh(u8, bool),
    Hangup(u8),
    Transfer(u8),
    Garbage(String),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0u8..3;
    prop_oneof![
        (u.clone(), 0u8..2).prop_map(|(u, q)| Op::Join(u, q)),
        u.clone().prop_map(Op::Leave),
        u.clone().prop_map(Op::Abandon),
        u.clone().prop_map(Op::Connect),
        (u.clone(), any::<bool>()).prop_map(|(u, t)| Op::Complete(u, t)),
        u.clone().prop_map(Op::Hold),
        u.clone().prop_map(Op::Unhold),
        (u.clone(), any::<bool>()).prop_map(|(u, s)| Op::Moh(u, s)),
        u.clone().prop_map(Op::Hangup),
        u.prop_map(Op::Transfer),
        "[ -~]{0,30}".prop_map(Op::Garbage),
    ]
}

fn render(op: &Op, ms: i64) -> String {
    let t = format!("{}.{:03}000", T0 + ms / 1000, ms % 1000);
    let caller = |u: &u8| format!("Uniqueid: c{u}\r\nLinkedid: c{u}\r\n");
    let agent = |u: &u8| format!("Uniqueid: a{u}\r\nLinkedid: c{u}\r\n");
    let body = match op {
        Op::Join(u, q) => format!("Event: QueueCallerJoin\r\n{}Queue: q{q}\r\n", caller(u)),
        Op::Leave(u) => format!("Event: QueueCallerLeave\r\n{}", caller(u)),
        Op::Abandon(u) => format!("Event: QueueCallerAbandon\r\n{}", caller(u)),
        Op::Connect(u) => format!(
            "Event: AgentConnect\r\n{}DestUniqueid: a{u}\r\nMemberName: m{u}\r\nHoldTime: 9\r\n",
            caller(u)
        ),
        Op::Complete(u, tr) => format!(
            "Event: AgentComplete\r\n{}Reason: {}\r\n",
            caller(u),
            if *tr { "transfer" } else { "caller" }
        ),
        Op::Hold(u) => format!("Event: Hold\r\n{}", agent(u)),
        Op::Unhold(u) => format!("Event: Unhold\r\n{}", agent(u)),
        Op::Moh(u, s) => format!(
            "Event: MusicOnHold{}\r\n{}",
            if *s { "Start" } else { "Stop" },
            caller(u)
        ),
        Op::Hangup(u) => format!("Event: Hangup\r\n{}", caller(u)),
        Op::Transfer(u) => {
            format!("Event: BlindTransfer\r\nResult: Success\r\nTransfereeUniqueid: c{u}\r\n")
        }
        Op::Garbage(g) => format!("{g}\r\n"),
    };
    format!("{body}Timestamp: {t}\r\n\r\n")
}

/// What a well-behaved stream of events must be, per call: offered first
/// and once, at most one answer and one end, holds paired in order,
/// nothing after the end; event ids unique.
fn check_events(events: &[Event]) -> Result<(), String> {
    use std::collections::{HashMap, HashSet};
    #[derive(Default)]
    struct C {
        offered: bool,
        answered: bool,
        ended: bool,
        holds: u32,
        open: bool,
    }
    let mut calls: HashMap<String, C> = HashMap::new();
    let mut seen = HashSet::new();
    for e in events {
        let id = e.event_id.clone().unwrap_or_default().to_string();
        if !seen.insert(id.clone()) {
            return Err(format!("event id {id} twice"));
        }
        let (call, step) = match &e.body {
            Body::CallOffered { call, .. } => (call, "o"),
            Body::CallAnswered { call } => (call, "a"),
            Body::HoldStarted { call } => (call, "h"),
            Body::HoldEnded { call } => (call, "u"),
            Body::CallEnded { call, .. } => (call, "e"),
            _ => continue,
        };
        let c = calls.entry(call.to_string()).or_default();
        if c.ended {
            return Err(format!("{id} after the end"));
        }
        match step {
            "o" if c.offered => return Err(format!("{id}: offered twice")),
            "o" => c.offered = true,
            _ if !c.offered => return Err(format!("{id} before the offer")),
            "a" if c.answered => return Err(format!("{id}: answered twice")),
            "a" => c.answered = true,
            "h" if !c.answered || c.open => return Err(format!("{id}: hold out of place")),
            "h" => {
                c.holds += 1;
                c.open = true;
                if !id.ends_with(&format!(":hold{}", c.holds)) {
                    return Err(format!("{id}: hold number"));
                }
            }
            "u" if !c.open => return Err(format!("{id}: unhold without hold")),
            "u" => c.open = false,
            _ => c.ended = true,
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_streams_make_well_formed_calls(
        ops in proptest::collection::vec((op(), 0i64..20_000), 0..60),
        policy in any::<bool>(),
    ) {
        let policy = if policy { AbandonPolicy::Abandoned } else { AbandonPolicy::Failed };
        let mut ms = 0;
        let text: String = ops.iter().map(|(o, dt)| { ms += dt; render(o, ms) }).collect();
        let (mut out, mut t) = translate_with(policy, &text);
        t.finish(&mut out);
        prop_assert!(check_events(&out.events).is_ok(), "{:?}\n{}", check_events(&out.events), text);
        // Every event is at or after its call's offer.
        for e in &out.events {
            prop_assert!(e.ts >= T0 * 1000);
        }
    }

    #[test]
    fn every_message_twice_is_every_message_once(
        ops in proptest::collection::vec((op(), 1i64..20_000), 0..40),
    ) {
        let mut ms = 0;
        let msgs: Vec<String> = ops.iter().map(|(o, dt)| { ms += dt; render(o, ms) }).collect();
        let once: String = msgs.concat();
        let twice: String = msgs.iter().map(|m| format!("{m}{m}")).collect();
        let a = translate(&once);
        let b = translate(&twice);
        prop_assert_eq!(&a.events, &b.events);
    }

    #[test]
    fn shuffled_streams_never_panic_and_stay_well_formed(
        ops in proptest::collection::vec((op(), 0i64..20_000), 0..60),
        seed in any::<u64>(),
    ) {
        let mut ms = 0;
        let mut msgs: Vec<String> = ops.iter().map(|(o, dt)| { ms += dt; render(o, ms) }).collect();
        // A deterministic shuffle: out-of-order delivery.
        let mut s = seed | 1;
        for i in (1..msgs.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            msgs.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let out = translate(&msgs.concat());
        prop_assert!(check_events(&out.events).is_ok(), "{:?}", check_events(&out.events));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,600}") {
        let _ = translate(&text);
        let _ = crate::sources::asterisk_ami::convert(&text, &Translate::default());
    }
}
