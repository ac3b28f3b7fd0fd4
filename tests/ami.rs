//! The Asterisk AMI source end to end: the real daemon logs in to a fake
//! Asterisk Manager Interface (`common::ami_server`: real TCP, the real
//! banner, login and framing) that replays transcripts built from the
//! field lists of `app_queue.c` and `manager_channels.c`, for Asterisk 12+
//! and for Asterisk 11. Every figure is compared exactly on `/metrics`
//! (event clock, fixed dates).

mod common;

use common::ami_server::{AmiServer, Peer};
use common::{Endpoints, Samples};
use ringwatch::event::{Body, EndReason};
use ringwatch::sources::{AbandonPolicy, Translate};

const USER: &str = "ringwatch";
const SECRET: &str = "Sup3r-s3cret-never-logged";
/// 2026-11-23T09:00:00Z.
const T0: i64 = 1_795_424_400;
const V13: &str = "2.10.6";
const V11: &str = "1.3";

// ---- transcripts ----

/// `T0 + ms` as an AMI `Timestamp:` (seconds.microseconds).
fn stamp(ms: i64) -> String {
    let t = T0 * 1000 + ms;
    format!("{}.{:03}000", t / 1000, t % 1000)
}

fn event(name: &str, privilege: &str, ms: i64, body: &str) -> String {
    format!(
        "Event: {name}\r\nPrivilege: {privilege},all\r\nTimestamp: {}\r\n{body}\r\n",
        stamp(ms)
    )
}

/// A channel snapshot of Asterisk 12+ (`prefix` "" or "Dest").
fn snapshot(prefix: &str, channel: &str, uniqueid: &str, linkedid: &str) -> String {
    let p = prefix;
    format!(
        "{p}Channel: {channel}\r\n{p}ChannelState: 6\r\n{p}ChannelStateDesc: Up\r\n\
         {p}CallerIDNum: 5550100\r\n{p}CallerIDName: <unknown>\r\n{p}ConnectedLineNum: <unknown>\r\n\
         {p}ConnectedLineName: <unknown>\r\n{p}Language: en\r\n{p}AccountCode: \r\n\
         {p}Context: from-trunk\r\n{p}Exten: 600\r\n{p}Priority: 2\r\n\
         {p}Uniqueid: {uniqueid}\r\n{p}Linkedid: {linkedid}\r\n"
    )
}

/// One queued call on Asterisk 12+: caller `1795424400.<n>`, its events
/// at `base + ms`.
struct Call13 {
    n: u32,
    base: i64,
    queue: String,
    agent_uid: String,
    agent_chan: String,
}

impl Call13 {
    fn new(n: u32, base_s: i64, queue: &str) -> Self {
        Call13 {
            n,
            base: base_s * 1000,
            queue: queue.into(),
            agent_uid: format!("1795424400.{}", n + 500),
            agent_chan: format!("PJSIP/2001-{:08x}", n + 500),
        }
    }
    fn uid(&self) -> String {
        format!("1795424400.{}", self.n)
    }
    fn id(&self) -> String {
        format!("ast:{}:1", self.uid())
    }
    fn caller(&self) -> String {
        snapshot(
            "",
            &format!("PJSIP/trunk-{:08x}", self.n),
            &self.uid(),
            &self.uid(),
        )
    }
    fn dest(&self) -> String {
        snapshot("Dest", &self.agent_chan, &self.agent_uid, &self.uid())
    }
    fn agent_leg(&self) -> String {
        snapshot("", &self.agent_chan, &self.agent_uid, &self.uid())
    }
    fn at(&self, ms: i64) -> i64 {
        self.base + ms
    }
    fn join(&self, ms: i64) -> String {
        let body = format!(
            "{}Queue: {}\r\nPosition: 1\r\nCount: 1\r\n",
            self.caller(),
            self.queue
        );
        event("QueueCallerJoin", "agent", self.at(ms), &body)
    }
    fn join_queue(&self, ms: i64, queue: &str) -> String {
        let body = format!(
            "{}Queue: {queue}\r\nPosition: 1\r\nCount: 1\r\n",
            self.caller()
        );
        event("QueueCallerJoin", "agent", self.at(ms), &body)
    }
    fn moh(&self, ms: i64, start: bool) -> String {
        let (name, extra) = if start {
            ("MusicOnHoldStart", "Class: default\r\n")
        } else {
            ("MusicOnHoldStop", "")
        };
        event(
            name,
            "call",
            self.at(ms),
            &format!("{}{extra}", self.caller()),
        )
    }
    fn agent_called(&self, ms: i64, member: &str) -> String {
        let body = format!(
            "{}{}Queue: {}\r\nMemberName: {member}\r\nInterface: PJSIP/{member}\r\n",
            self.caller(),
            snapshot(
                "Dest",
                &format!("PJSIP/{member}-1"),
                &format!("{member}.1"),
                &self.uid()
            ),
            self.queue
        );
        event("AgentCalled", "agent", self.at(ms), &body)
    }
    fn leave(&self, ms: i64) -> String {
        let body = format!(
            "{}Queue: {}\r\nCount: 0\r\nPosition: 1\r\n",
            self.caller(),
            self.queue
        );
        event("QueueCallerLeave", "agent", self.at(ms), &body)
    }
    fn abandon(&self, ms: i64) -> String {
        let body = format!(
            "{}Queue: {}\r\nPosition: 1\r\nOriginalPosition: 1\r\nHoldTime: {}\r\n",
            self.caller(),
            self.queue,
            ms / 1000
        );
        event("QueueCallerAbandon", "agent", self.at(ms), &body)
    }
    fn connect(&self, ms: i64, member: &str) -> String {
        let body = format!(
            "{}{}Queue: {}\r\nMemberName: {member}\r\nInterface: PJSIP/{member}\r\nHoldTime: {}\r\nRingTime: 3\r\n",
            self.caller(),
            self.dest(),
            self.queue,
            ms / 1000
        );
        event("AgentConnect", "agent", self.at(ms), &body)
    }
    fn complete(&self, ms: i64, reason: &str) -> String {
        let body = format!(
            "{}{}Queue: {}\r\nMemberName: Alice\r\nInterface: PJSIP/Alice\r\nHoldTime: 18\r\nTalkTime: 40\r\nReason: {reason}\r\n",
            self.caller(),
            self.dest(),
            self.queue
        );
        event("AgentComplete", "agent", self.at(ms), &body)
    }
    fn hold(&self, ms: i64) -> String {
        let body = format!("{}MusicClass: default\r\n", self.agent_leg());
        event("Hold", "call", self.at(ms), &body)
    }
    fn unhold(&self, ms: i64) -> String {
        event("Unhold", "call", self.at(ms), &self.agent_leg())
    }
    fn hangup(&self, ms: i64, vars: &str) -> String {
        let body = format!(
            "{}Cause: 16\r\nCause-txt: Normal Clearing\r\n{vars}",
            self.caller()
        );
        event("Hangup", "call", self.at(ms), &body)
    }
    fn newexten(&self, ms: i64, vars: &str) -> String {
        let body = format!(
            "{}Extension: 600\r\nApplication: Playback\r\n{vars}",
            self.caller()
        );
        event("Newexten", "dialplan", self.at(ms), &body)
    }
}

/// One queued call on Asterisk 11 (`Join`/`Leave`, no Linkedid,
/// `BridgedChannel`, chan_sip `Hold` with `Status:`, `MusicOnHold State:`).
struct Call11 {
    n: u32,
    base: i64,
    queue: String,
}

impl Call11 {
    fn new(n: u32, base_s: i64, queue: &str) -> Self {
        Call11 {
            n,
            base: base_s * 1000,
            queue: queue.into(),
        }
    }
    fn uid(&self) -> String {
        format!("1795424400.{}", self.n)
    }
    fn agent_uid(&self) -> String {
        format!("1795424400.{}", self.n + 500)
    }
    fn chan(&self) -> String {
        format!("SIP/trunk-{:08x}", self.n)
    }
    fn at(&self, ms: i64) -> i64 {
        self.base + ms
    }
    fn join(&self, ms: i64) -> String {
        let body = format!(
            "Channel: {}\r\nCallerIDNum: 5550100\r\nCallerIDName: unknown\r\nConnectedLineNum: unknown\r\nConnectedLineName: unknown\r\nQueue: {}\r\nPosition: 1\r\nCount: 1\r\nUniqueid: {}\r\n",
            self.chan(),
            self.queue,
            self.uid()
        );
        event("Join", "call", self.at(ms), &body)
    }
    fn agent_called(&self, ms: i64, member: &str) -> String {
        let body = format!(
            "Queue: {}\r\nAgentCalled: SIP/{member}\r\nAgentName: {member}\r\nChannelCalling: {}\r\nDestinationChannel: SIP/{member}-0001\r\nCallerIDNum: 5550100\r\nCallerIDName: unknown\r\nContext: from-trunk\r\nExtension: 600\r\nPriority: 2\r\nUniqueid: {}\r\n",
            self.queue,
            self.chan(),
            self.uid()
        );
        event("AgentCalled", "agent", self.at(ms), &body)
    }
    fn leave(&self, ms: i64) -> String {
        let body = format!(
            "Channel: {}\r\nQueue: {}\r\nCount: 0\r\nPosition: 1\r\nUniqueid: {}\r\n",
            self.chan(),
            self.queue,
            self.uid()
        );
        event("Leave", "call", self.at(ms), &body)
    }
    fn connect(&self, ms: i64, member: &str) -> String {
        let body = format!(
            "Queue: {}\r\nUniqueid: {}\r\nChannel: SIP/{member}-0001\r\nMember: SIP/{member}\r\nMemberName: {member}\r\nHoldtime: {}\r\nBridgedChannel: {}\r\nRingtime: 2\r\n",
            self.queue,
            self.uid(),
            ms / 1000,
            self.agent_uid()
        );
        event("AgentConnect", "agent", self.at(ms), &body)
    }
    fn complete(&self, ms: i64, reason: &str) -> String {
        let body = format!(
            "Queue: {}\r\nUniqueid: {}\r\nChannel: SIP/2001-0001\r\nMember: SIP/2001\r\nMemberName: Alice\r\nHoldTime: 18\r\nTalkTime: 30\r\nReason: {reason}\r\n",
            self.queue,
            self.uid()
        );
        event("AgentComplete", "agent", self.at(ms), &body)
    }
    fn sip_hold(&self, ms: i64, on: bool) -> String {
        let body = format!(
            "Status: {}\r\nChannel: SIP/2001-0001\r\nUniqueid: {}\r\n",
            if on { "On" } else { "Off" },
            self.agent_uid()
        );
        event("Hold", "call", self.at(ms), &body)
    }
    fn moh(&self, ms: i64, start: bool) -> String {
        let body = format!(
            "State: {}\r\nChannel: {}\r\nUniqueID: {}\r\nClass: default\r\n",
            if start { "Start" } else { "Stop" },
            self.chan(),
            self.uid()
        );
        event("MusicOnHold", "call", self.at(ms), &body)
    }
    fn hangup(&self, ms: i64) -> String {
        let body = format!(
            "Channel: {}\r\nUniqueid: {}\r\nCallerIDNum: 5550100\r\nCallerIDName: unknown\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n",
            self.chan(),
            self.uid()
        );
        event("Hangup", "call", self.at(ms), &body)
    }
}

// ---- the daemon ----

fn env(server: &AmiServer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__SOURCES__PBX__KIND", "asterisk_ami"),
        ("RINGWATCH__SOURCES__PBX__USERNAME", USER),
        ("RINGWATCH__SOURCES__PBX__SECRET", SECRET),
        ("RINGWATCH__CLIENT__BACKOFF_INITIAL", "0.05"),
        ("RINGWATCH__CLIENT__BACKOFF_MAX", "0.2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v.push((
        "RINGWATCH__SOURCES__PBX__ADDRESS".into(),
        server.addr.to_string(),
    ));
    v.extend(
        extra
            .iter()
            .map(|(k, val)| (k.to_string(), val.to_string())),
    );
    v
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Connected and reconciled (nothing to reconcile on a first start).
async fn connected(server: &AmiServer) -> Peer {
    let mut peer = server.accept().await;
    peer.reconcile(&[], &[]).await;
    peer
}

/// Compare every figure at once; report all differences. `_sum` values
/// are compared to the microsecond (float addition of milliseconds).
fn check(m: &Samples, want: &[(&str, f64)]) {
    let mut wrong = Vec::new();
    for (selector, v) in want {
        match m.get(selector) {
            Some(got) if got == *v => {}
            Some(got) if selector.contains("_sum") && (got - v).abs() < 1e-6 => {}
            Some(got) => wrong.push(format!("{selector}: expected {v}, got {got}")),
            None => wrong.push(format!("{selector}: expected {v}, missing")),
        }
    }
    assert!(
        wrong.is_empty(),
        "figures differ:\n  {}",
        wrong.join("\n  ")
    );
}

async fn translated(d: &Endpoints, n: u64) {
    d.eventually(
        "ringwatch_source_translated_events_total{source=\"pbx\"}",
        n as f64,
    )
    .await;
}

fn q(family: &str, queue: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("{family}{{queue=\"{queue}\"}}")
    } else {
        format!("{family}{{queue=\"{queue}\",{extra}}}")
    }
}

/// The answer and hold figures of the boundary stories below: answers at
/// 18.000 s and 18.001 s (and 5 s, 6 s), holds of 17.000 s, 17.001 s and
/// one closed by the call ending on hold after 15 s.
fn boundary_figures(queue: &str) -> Vec<(String, f64)> {
    let s = |f: &str, extra: &str, v: f64| (q(f, queue, extra), v);
    vec![
        s("ringwatch_calls_offered_total", "", 4.0),
        s("ringwatch_calls_answered_total", "", 4.0),
        s("ringwatch_calls_answered_late_total", "", 1.0),
        s("ringwatch_time_to_answer_seconds_bucket", "le=\"6\"", 2.0),
        s("ringwatch_time_to_answer_seconds_bucket", "le=\"12\"", 2.0),
        s("ringwatch_time_to_answer_seconds_bucket", "le=\"18\"", 3.0),
        s("ringwatch_time_to_answer_seconds_bucket", "le=\"24\"", 4.0),
        s("ringwatch_time_to_answer_seconds_count", "", 4.0),
        s("ringwatch_time_to_answer_seconds_sum", "", 47.001),
        s("ringwatch_answer_rings_bucket", "le=\"3\"", 3.0),
        s("ringwatch_answer_rings_bucket", "le=\"4\"", 4.0),
        s("ringwatch_holds_total", "", 3.0),
        s("ringwatch_hold_limit_exceeded_total", "", 1.0),
        s("ringwatch_hold_duration_seconds_bucket", "le=\"15\"", 1.0),
        s("ringwatch_hold_duration_seconds_bucket", "le=\"17\"", 2.0),
        s("ringwatch_hold_duration_seconds_bucket", "le=\"20\"", 3.0),
        s("ringwatch_hold_duration_seconds_sum", "", 49.001),
        s("ringwatch_calls_abandoned_total", "short=\"true\"", 0.0),
        s("ringwatch_calls_abandoned_total", "short=\"false\"", 0.0),
        s("ringwatch_calls_active", "", 0.0),
        s("ringwatch_calls_on_hold", "", 0.0),
        s("ringwatch_calls_waiting", "", 0.0),
    ]
}

fn as_refs(v: &[(String, f64)]) -> Vec<(&str, f64)> {
    v.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

#[tokio::test]
async fn asterisk_12_answers_and_holds_at_the_18_and_17_second_boundaries() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    let d = common::start(&pairs(&env(&server, &[])));
    let peer = connected(&server).await;
    let login = server.logins.lock().unwrap()[0].clone();
    assert_eq!(login.events.as_deref(), Some("call,agent,user"));
    assert!(login.md5 && login.credentials_ok);

    // Answered at 18.000 s; the agent holds 17.000 s (the music the
    // caller then hears is the consequence, not a second hold; HoldTime
    // is the queue wait).
    let a = Call13::new(1, 0, "support");
    // Ring-all: three agents rung, Carol answers at 18.001 s, and holds
    // 17.001 s; her AgentConnect is delivered twice.
    let b = Call13::new(2, 100, "support");
    // Ends on hold after 15 s (no Unhold).
    let c = Call13::new(3, 200, "support");
    // No AgentComplete (some versions skip it): the caller's hang-up ends
    // it; its QueueCallerJoin is delivered twice; a callback is promised
    // on it and kept.
    let e = Call13::new(4, 300, "support");
    let story = [
        a.join(0),
        a.moh(100, true),
        a.agent_called(200, "Alice"),
        a.moh(17_900, false),
        a.leave(17_950),
        a.connect(18_000, "Alice"),
        a.hold(20_000),
        a.moh(20_010, true),
        a.unhold(37_000),
        a.moh(37_010, false),
        a.complete(60_000, "agent"),
        a.hangup(60_100, ""),
        b.join(0),
        b.agent_called(500, "Alice"),
        b.agent_called(500, "Bob"),
        b.agent_called(500, "Carol"),
        b.leave(18_000),
        b.connect(18_001, "Carol"),
        b.connect(18_001, "Carol"),
        b.hold(30_000),
        b.unhold(47_001),
        b.complete(70_000, "caller"),
        c.join(0),
        c.connect(5_000, "Alice"),
        c.hold(10_000),
        c.complete(25_000, "agent"),
        e.join(0),
        e.join(0),
        e.connect(6_000, "Alice"),
        event(
            "UserEvent",
            "user",
            e.at(7_000),
            &format!(
                "{}UserEvent: RingwatchCallback\r\nAction: promised\r\nPromise: 42\r\nDue: {}\r\n",
                e.caller(),
                T0 + 3_600
            ),
        ),
        e.hangup(40_000, ""),
        event(
            "UserEvent",
            "user",
            e.at(90_000),
            &format!(
                "{}UserEvent: RingwatchCallback\r\nAction: completed\r\nPromise: 42\r\n",
                e.caller()
            ),
        ),
    ]
    .concat();
    peer.send(&story).await;
    // 4 offered, 4 answered, 3 hold starts, 2 hold ends, 4 ends, 2 callback events.
    translated(&d, 19).await;
    let m = d.metrics().await;
    let mut want = boundary_figures("support");
    want.extend(
        [
            ("ringwatch_callbacks_promised_total{queue=\"support\"}", 1.0),
            (
                "ringwatch_callbacks_resolved_total{queue=\"support\",outcome=\"kept\"}",
                1.0,
            ),
            (
                "ringwatch_events_received_total{type=\"call.offered\"}",
                4.0,
            ),
            (
                "ringwatch_events_received_total{type=\"call.answered\"}",
                4.0,
            ),
            (
                "ringwatch_events_received_total{type=\"call.hold_started\"}",
                3.0,
            ),
            (
                "ringwatch_events_received_total{type=\"call.hold_ended\"}",
                2.0,
            ),
            ("ringwatch_events_received_total{type=\"call.ended\"}", 4.0),
            ("ringwatch_events_duplicate_total", 0.0),
            (
                "ringwatch_source_skipped_total{source=\"pbx\",reason=\"repeated\"}",
                2.0,
            ),
            (
                "ringwatch_source_skipped_total{source=\"pbx\",reason=\"malformed\"}",
                0.0,
            ),
            ("ringwatch_source_exact_timestamps{source=\"pbx\"}", 1.0),
            ("ringwatch_source_reports_holds{source=\"pbx\"}", 1.0),
            ("ringwatch_source_connected{source=\"pbx\"}", 1.0),
            ("ringwatch_source_login_failures_total{source=\"pbx\"}", 0.0),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    check(&m, &as_refs(&want));
    let rejected: f64 =
        m.0.iter()
            .filter(|(k, _)| k.starts_with("ringwatch_events_rejected_total"))
            .map(|(_, v)| v)
            .sum();
    assert_eq!(rejected, 0.0);
    d.stop().await;
}

#[tokio::test]
async fn asterisk_11_answers_and_holds_at_the_18_and_17_second_boundaries() {
    let mut server = AmiServer::bind(V11, USER, SECRET).await;
    // A manager that refuses the challenge gets the plain login.
    server.md5 = false;
    let d = common::start(&pairs(&env(&server, &[])));
    let peer = connected(&server).await;
    {
        let login = server.logins.lock().unwrap()[0].clone();
        assert!(!login.md5 && login.secret == SECRET && login.accepted);
    }
    // chan_sip Hold Status: On/Off on the agent's channel (BridgedChannel).
    let a = Call11::new(1, 0, "sales");
    // No chan_sip hold events (callevents = no): music on hold on the
    // caller after the answer is the hold; AgentComplete Reason: transfer.
    let b = Call11::new(2, 100, "sales");
    let c = Call11::new(3, 200, "sales");
    let e = Call11::new(4, 300, "sales");
    let story = [
        a.join(0),
        a.moh(100, true),
        a.agent_called(200, "Alice"),
        a.moh(17_900, false),
        a.leave(17_950),
        a.connect(18_000, "Alice"),
        a.sip_hold(20_000, true),
        a.sip_hold(37_000, false),
        a.complete(60_000, "agent"),
        a.hangup(60_100),
        b.join(0),
        b.agent_called(500, "Alice"),
        b.agent_called(500, "Bob"),
        b.agent_called(500, "Carol"),
        b.leave(18_000),
        b.connect(18_001, "Carol"),
        b.moh(30_000, true),
        b.moh(47_001, false),
        b.complete(70_000, "transfer"),
        c.join(0),
        c.connect(5_000, "Alice"),
        c.sip_hold(10_000, true),
        c.complete(25_000, "agent"),
        e.join(0),
        e.join(0),
        e.connect(6_000, "Alice"),
        e.hangup(40_000),
    ]
    .concat();
    peer.send(&story).await;
    translated(&d, 17).await;
    let m = d.metrics().await;
    let mut want = boundary_figures("sales");
    want.push((
        "ringwatch_source_skipped_total{source=\"pbx\",reason=\"repeated\"}".into(),
        1.0,
    ));
    want.push((
        "ringwatch_source_exact_timestamps{source=\"pbx\"}".into(),
        1.0,
    ));
    check(&m, &as_refs(&want));
    d.stop().await;
}

/// Short and long abandons, and queue exits that are not a hang-up: a
/// timeout followed by more dialplan (the caller's Hangup 20 s later), and
/// one told by `channelvars = QUEUESTATUS`.
fn abandon_story() -> (String, [Call13; 4]) {
    let short = Call13::new(11, 0, "billing");
    let long = Call13::new(12, 100, "billing");
    let timeout = Call13::new(13, 200, "billing");
    let status = Call13::new(14, 300, "billing");
    let story = [
        short.join(0),
        short.abandon(3_000),
        short.leave(3_000),
        short.hangup(3_020, ""),
        long.join(0),
        long.abandon(30_000),
        long.leave(30_000),
        long.hangup(30_050, ""),
        timeout.join(0),
        timeout.abandon(60_000),
        timeout.leave(60_000),
        timeout.hangup(80_000, ""),
        status.join(0),
        status.abandon(40_000),
        status.leave(40_000),
        status.newexten(40_010, "ChanVariable: QUEUESTATUS=TIMEOUT\r\n"),
        status.hangup(40_500, "ChanVariable: QUEUESTATUS=TIMEOUT\r\n"),
    ]
    .concat();
    (story, [short, long, timeout, status])
}

#[tokio::test]
async fn short_and_long_abandons_and_timeouts_under_both_policies() {
    let (story, calls) = abandon_story();
    // The reasons, as `ringwatch convert` reads them from a capture.
    for (policy, timeout_reason) in [
        (AbandonPolicy::Failed, EndReason::Failed),
        (AbandonPolicy::Abandoned, EndReason::Abandoned),
    ] {
        let t = Translate {
            site: None,
            abandon_policy: policy,
        };
        let out = ringwatch::sources::asterisk_ami::convert(&story, &t);
        let ends: Vec<(String, EndReason, i64)> = out
            .events
            .iter()
            .filter_map(|e| match &e.body {
                Body::CallEnded { call, reason } => Some((call.to_string(), *reason, e.ts)),
                _ => None,
            })
            .collect();
        assert_eq!(
            ends,
            vec![
                (calls[0].id(), EndReason::Abandoned, (T0 * 1000) + 3_000),
                (calls[1].id(), EndReason::Abandoned, (T0 * 1000) + 130_000),
                (calls[2].id(), timeout_reason, (T0 * 1000) + 260_000),
                (calls[3].id(), timeout_reason, (T0 * 1000) + 340_000),
            ]
        );
    }
    // Live: ringwatch counts a call that ends unanswered as abandoned
    // whatever the reason (only `transferred` is not), so the figures are
    // the same under both policies; the waits are the queue's.
    for policy in ["failed", "abandoned"] {
        let server = AmiServer::bind(V13, USER, SECRET).await;
        let e = env(
            &server,
            &[("RINGWATCH__SOURCES__PBX__ABANDON_POLICY", policy)],
        );
        let d = common::start(&pairs(&e));
        let peer = connected(&server).await;
        peer.send(&story).await;
        translated(&d, 8).await;
        check(
            &d.metrics().await,
            &[
                ("ringwatch_calls_offered_total{queue=\"billing\"}", 4.0),
                ("ringwatch_calls_answered_total{queue=\"billing\"}", 0.0),
                (
                    "ringwatch_calls_abandoned_total{queue=\"billing\",short=\"true\"}",
                    1.0,
                ),
                (
                    "ringwatch_calls_abandoned_total{queue=\"billing\",short=\"false\"}",
                    3.0,
                ),
                (
                    "ringwatch_abandon_wait_seconds_count{queue=\"billing\"}",
                    4.0,
                ),
                (
                    "ringwatch_abandon_wait_seconds_sum{queue=\"billing\"}",
                    133.0,
                ),
                (
                    "ringwatch_abandon_wait_seconds_bucket{queue=\"billing\",le=\"6\"}",
                    1.0,
                ),
                (
                    "ringwatch_abandon_wait_seconds_bucket{queue=\"billing\",le=\"30\"}",
                    2.0,
                ),
                (
                    "ringwatch_abandon_wait_seconds_bucket{queue=\"billing\",le=\"42\"}",
                    3.0,
                ),
                ("ringwatch_calls_waiting{queue=\"billing\"}", 0.0),
            ],
        );
        d.stop().await;
    }
}

#[tokio::test]
async fn transfers_and_a_reentry_into_a_second_queue() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    let d = common::start(&pairs(&env(&server, &[])));
    let peer = connected(&server).await;
    let blind = Call13::new(21, 0, "tier1");
    let attended = Call13::new(22, 100, "tier1");
    // Leaves tier1 unanswered (to an IVR) and comes back into tier2: the
    // same Uniqueid, a second visit, a second call.
    let again = Call13::new(23, 200, "tier1");
    let story = [
        blind.join(0),
        blind.connect(4_000, "Alice"),
        blind.hold(10_000),
        event(
            "BlindTransfer",
            "call",
            blind.at(12_000),
            &format!(
                "Result: Success\r\n{}{}BridgeUniqueid: b-1\r\nBridgeType: basic\r\nIsExternal: No\r\nContext: from-internal\r\nExtension: 700\r\n",
                snapshot("Transferer", &blind.agent_chan, &blind.agent_uid, &blind.uid()),
                snapshot("Transferee", "PJSIP/trunk-00000015", &blind.uid(), &blind.uid()),
            ),
        ),
        blind.complete(12_100, "transfer"),
        attended.join(0),
        attended.connect(3_000, "Alice"),
        event(
            "AttendedTransfer",
            "call",
            attended.at(40_000),
            &format!(
                "Result: Success\r\n{}{}DestType: Bridge\r\nDestBridgeUniqueid: b-2\r\n{}",
                snapshot("OrigTransferer", &attended.agent_chan, &attended.agent_uid, &attended.uid()),
                snapshot("SecondTransferer", "PJSIP/2001-00000099", "1795424400.99", &attended.uid()),
                snapshot("Transferee", "PJSIP/trunk-00000016", &attended.uid(), &attended.uid()),
            ),
        ),
        attended.complete(40_100, "transfer"),
        again.join(0),
        again.leave(8_000),
        again.newexten(8_010, ""),
        again.join_queue(30_000, "tier2"),
        again.connect(36_000, "Bob"),
        again.complete(50_000, "caller"),
    ]
    .concat();
    peer.send(&story).await;
    // blind: offered, answered, hold, ended; attended: 3; again: 2 + 3.
    translated(&d, 12).await;
    check(
        &d.metrics().await,
        &[
            ("ringwatch_calls_offered_total{queue=\"tier1\"}", 3.0),
            ("ringwatch_calls_answered_total{queue=\"tier1\"}", 2.0),
            (
                "ringwatch_calls_abandoned_total{queue=\"tier1\",short=\"false\"}",
                0.0,
            ),
            ("ringwatch_calls_waiting{queue=\"tier1\"}", 0.0),
            ("ringwatch_calls_active{queue=\"tier1\"}", 0.0),
            // The transfer ended the call while on hold: its segment closes.
            ("ringwatch_holds_total{queue=\"tier1\"}", 1.0),
            ("ringwatch_hold_duration_seconds_sum{queue=\"tier1\"}", 2.0),
            ("ringwatch_calls_offered_total{queue=\"tier2\"}", 1.0),
            ("ringwatch_calls_answered_total{queue=\"tier2\"}", 1.0),
            ("ringwatch_time_to_answer_seconds_sum{queue=\"tier2\"}", 6.0),
            ("ringwatch_calls_active{queue=\"tier2\"}", 0.0),
            (
                "ringwatch_events_rejected_total{reason=\"duplicate_call\"}",
                0.0,
            ),
        ],
    );
    d.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_are_skipped_and_the_connection_stays_up() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    let e = env(
        &server,
        &[("RINGWATCH__SOURCES__PBX__MAX_MESSAGE_BYTES", "2048")],
    );
    let d = common::start(&pairs(&e));
    let peer = connected(&server).await;
    let a = Call13::new(31, 0, "q");
    let big = format!(
        "Event: VarSet\r\nPrivilege: dialplan,all\r\nVariable: BLOB\r\nValue: {}\r\n\r\n",
        "x".repeat(10_000)
    );
    let story = [
        a.join(0),
        "Event: Newchannel\r\nthis line is not a header\r\nUniqueid: 1\r\n\r\n".to_string(),
        big,
        a.connect(9_000, "Alice"),
    ]
    .concat();
    peer.send(&story).await;
    translated(&d, 2).await;
    check(
        &d.metrics().await,
        &[
            (
                "ringwatch_source_skipped_total{source=\"pbx\",reason=\"malformed\"}",
                1.0,
            ),
            (
                "ringwatch_source_skipped_total{source=\"pbx\",reason=\"oversized\"}",
                1.0,
            ),
            ("ringwatch_calls_answered_total{queue=\"q\"}", 1.0),
            ("ringwatch_time_to_answer_seconds_sum{queue=\"q\"}", 9.0),
            ("ringwatch_source_connected{source=\"pbx\"}", 1.0),
            ("ringwatch_source_reconnects_total{source=\"pbx\"}", 0.0),
        ],
    );
    // Still the same connection: the next event counts.
    peer.send(&a.complete(20_000, "caller")).await;
    translated(&d, 3).await;
    d.stop().await;
}

#[tokio::test]
async fn a_disconnect_mid_call_is_reconciled_with_queue_status() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    let d = common::start(&pairs(&env(&server, &[])));
    let peer = connected(&server).await;
    // Waiting when the link drops, still waiting after: kept.
    let waiting = Call13::new(41, 0, "q");
    // Waiting when it drops, gone after (its end was missed): dropped.
    let gone = Call13::new(42, 1, "q");
    // Answered, caller still up after: kept; its later events count.
    let talking = Call13::new(43, 2, "q");
    // Answered, channel gone after: dropped.
    let ended = Call13::new(44, 3, "q");
    // Joined during the outage: offered from QueueStatus (ts = now - Wait).
    let new = Call13::new(45, 4, "q");
    let story = [
        waiting.join(0),
        gone.join(0),
        talking.join(0),
        talking.connect(4_000, "Alice"),
        ended.join(0),
        ended.connect(5_000, "Bob"),
    ]
    .concat();
    peer.send(&story).await;
    translated(&d, 6).await;
    peer.close().await;

    let mut peer = server.accept().await;
    peer.reconcile(
        &[(&waiting.uid(), "q", 20), (&new.uid(), "q", 7)],
        &[&waiting.uid(), &talking.uid(), &new.uid()],
    )
    .await;
    d.eventually(
        "ringwatch_source_reconciled_calls_total{source=\"pbx\",action=\"dropped\"}",
        2.0,
    )
    .await;
    // The answered call goes on as if nothing happened.
    peer.send(
        &[
            talking.hold(10_000),
            talking.unhold(20_000),
            talking.complete(30_000, "agent"),
        ]
        .concat(),
    )
    .await;
    translated(&d, 10).await;
    check(
        &d.metrics().await,
        &[
            (
                "ringwatch_source_reconciled_calls_total{source=\"pbx\",action=\"kept\"}",
                2.0,
            ),
            (
                "ringwatch_source_reconciled_calls_total{source=\"pbx\",action=\"offered\"}",
                1.0,
            ),
            (
                "ringwatch_source_reconciled_calls_total{source=\"pbx\",action=\"dropped\"}",
                2.0,
            ),
            ("ringwatch_source_reconnects_total{source=\"pbx\"}", 1.0),
            (
                "ringwatch_source_disconnects_total{source=\"pbx\",reason=\"peer\"}",
                1.0,
            ),
            ("ringwatch_calls_offered_total{queue=\"q\"}", 5.0),
            ("ringwatch_calls_evicted_total{queue=\"q\"}", 2.0),
            // Dropped calls are neither answered nor abandoned by a guess.
            (
                "ringwatch_calls_abandoned_total{queue=\"q\",short=\"false\"}",
                0.0,
            ),
            (
                "ringwatch_calls_abandoned_total{queue=\"q\",short=\"true\"}",
                0.0,
            ),
            ("ringwatch_calls_answered_total{queue=\"q\"}", 2.0),
            ("ringwatch_calls_waiting{queue=\"q\"}", 2.0),
            ("ringwatch_calls_active{queue=\"q\"}", 0.0),
            ("ringwatch_holds_total{queue=\"q\"}", 1.0),
            ("ringwatch_hold_duration_seconds_sum{queue=\"q\"}", 10.0),
        ],
    );
    d.stop().await;
}

#[tokio::test]
async fn a_refused_login_is_counted_retried_and_the_secret_never_logged() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    *server.refuse.lock().unwrap() = 2;
    let e = env(&server, &[]);
    let d = common::start_process(&pairs(&e));
    let peer = connected(&server).await;
    {
        let logins = server.logins.lock().unwrap();
        assert_eq!(logins.len(), 3);
        assert!(!logins[0].accepted && !logins[1].accepted && logins[2].accepted);
        // The MD5 challenge: the secret itself never crossed the network.
        assert!(logins
            .iter()
            .all(|l| l.md5 && l.credentials_ok && l.secret.is_empty()));
    }
    let a = Call13::new(51, 0, "q");
    peer.send(&a.join(0)).await;
    translated(&d, 1).await;
    check(
        &d.metrics().await,
        &[
            ("ringwatch_source_login_failures_total{source=\"pbx\"}", 2.0),
            (
                "ringwatch_source_connection_failures_total{source=\"pbx\"}",
                2.0,
            ),
            ("ringwatch_source_connected{source=\"pbx\"}", 1.0),
            ("ringwatch_calls_offered_total{queue=\"q\"}", 1.0),
        ],
    );
    let logs = d.log_lines();
    let refused: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("AMI login refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{logs:#?}");
    assert!(
        refused[0].contains("Authentication failed"),
        "{}",
        refused[0]
    );
    assert!(refused[0].contains(USER));
    assert!(
        logs.iter().all(|l| !l.contains(SECRET)),
        "the secret was logged: {logs:#?}"
    );
}

/// A manager that refuses the MD5 challenge gets the secret in clear
/// text: said once per connection at warn, the secret itself never logged.
#[tokio::test]
async fn a_refused_challenge_warns_of_the_clear_text_secret() {
    let mut server = AmiServer::bind(V13, USER, SECRET).await;
    server.md5 = false;
    let e = env(&server, &[]);
    let d = common::start_process(&pairs(&e));
    let _peer = connected(&server).await;
    {
        let logins = server.logins.lock().unwrap();
        assert_eq!(logins.len(), 1);
        assert!(!logins[0].md5 && logins[0].accepted);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let warned = loop {
        let logs = d.log_lines();
        let warned: Vec<String> = logs
            .iter()
            .filter(|l| l.contains("clear text"))
            .cloned()
            .collect();
        if !warned.is_empty() || std::time::Instant::now() > deadline {
            break warned;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(warned[0].contains("WARN"), "{}", warned[0]);
    assert!(warned[0].contains("tls = true"), "{}", warned[0]);
    assert!(warned[0].contains(USER), "{}", warned[0]);
    let logs = d.log_lines();
    assert!(
        logs.iter().all(|l| !l.contains(SECRET)),
        "the secret was logged: {logs:#?}"
    );
}

#[tokio::test]
async fn a_restart_mid_call_keeps_the_call_ids() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let e = env(&server, &[]);
    let a = Call13::new(61, 0, "q");
    let d = common::start_in(dir.path(), &pairs(&e));
    let peer = connected(&server).await;
    peer.send(&[a.join(0), a.connect(12_000, "Alice"), a.hold(20_000)].concat())
        .await;
    translated(&d, 3).await;
    d.stop().await;
    drop(peer);
    let saved = std::fs::read_to_string(dir.path().join("sources/pbx.ami.json")).unwrap();
    assert!(saved.contains(&a.uid()), "{saved}");

    let d = common::start_in(dir.path(), &pairs(&e));
    let mut peer = server.accept().await;
    // The PBX still has the caller up: the call is kept.
    peer.reconcile(&[], &[&a.uid()]).await;
    d.eventually(
        "ringwatch_source_reconciled_calls_total{source=\"pbx\",action=\"kept\"}",
        1.0,
    )
    .await;
    // The hold that started before the restart ends after it, on the same
    // call (unhold1 of ast:...:1), and the call ends once.
    peer.send(&[a.unhold(37_001), a.complete(50_000, "agent")].concat())
        .await;
    translated(&d, 2).await;
    check(
        &d.metrics().await,
        &[
            ("ringwatch_calls_offered_total{queue=\"q\"}", 1.0),
            ("ringwatch_calls_answered_total{queue=\"q\"}", 1.0),
            ("ringwatch_holds_total{queue=\"q\"}", 1.0),
            ("ringwatch_hold_limit_exceeded_total{queue=\"q\"}", 1.0),
            (
                "ringwatch_hold_duration_seconds_bucket{queue=\"q\",le=\"17\"}",
                0.0,
            ),
            (
                "ringwatch_hold_duration_seconds_bucket{queue=\"q\",le=\"20\"}",
                1.0,
            ),
            ("ringwatch_calls_active{queue=\"q\"}", 0.0),
            (
                "ringwatch_events_rejected_total{reason=\"unknown_call\"}",
                0.0,
            ),
            (
                "ringwatch_events_rejected_total{reason=\"invalid_transition\"}",
                0.0,
            ),
        ],
    );
    d.stop().await;
}

#[tokio::test]
async fn without_timestamps_events_are_timed_on_receipt_and_the_gauge_says_so() {
    let server = AmiServer::bind(V13, USER, SECRET).await;
    let e = env(&server, &[("RINGWATCH__RULES__CLOCK", "wall")]);
    let d = common::start_process(&pairs(&e));
    let peer = connected(&server).await;
    let a = Call13::new(71, 0, "q");
    // timestampevents = no: the same event without its Timestamp line.
    let join = a
        .join(0)
        .lines()
        .filter(|l| !l.starts_with("Timestamp:"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>();
    peer.send(&join).await;
    translated(&d, 1).await;
    check(
        &d.metrics().await,
        &[
            ("ringwatch_source_exact_timestamps{source=\"pbx\"}", 0.0),
            ("ringwatch_calls_offered_total{queue=\"q\"}", 1.0),
            ("ringwatch_calls_waiting{queue=\"q\"}", 1.0),
        ],
    );
    assert!(
        d.log_lines()
            .iter()
            .any(|l| l.contains("timestampevents = yes is not set")),
        "{:#?}",
        d.log_lines()
    );
}

#[tokio::test]
async fn ami_over_tls_with_a_private_ca() {
    let (ca_pem, acceptor) = common::private_ca_acceptor();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("pbx-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut server = AmiServer::bind(V13, USER, SECRET).await;
    server.tls = Some(acceptor);
    let e = env(
        &server,
        &[
            ("RINGWATCH__SOURCES__PBX__TLS", "true"),
            (
                "RINGWATCH__SOURCES__PBX__CA_FILE",
                ca_file.to_str().unwrap(),
            ),
        ],
    );
    let d = common::start(&pairs(&e));
    let peer = connected(&server).await;
    let a = Call13::new(81, 0, "secure");
    peer.send(&[a.join(0), a.connect(18_001, "Alice")].concat())
        .await;
    translated(&d, 2).await;
    check(
        &d.metrics().await,
        &[
            ("ringwatch_calls_answered_total{queue=\"secure\"}", 1.0),
            ("ringwatch_calls_answered_late_total{queue=\"secure\"}", 1.0),
            ("ringwatch_source_connected{source=\"pbx\"}", 1.0),
        ],
    );
    d.stop().await;
}
