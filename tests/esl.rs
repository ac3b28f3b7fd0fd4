//! The FreeSWITCH event-socket source end to end: the real daemon connects
//! to a fake event socket (`common::esl_server`: real TCP, the real
//! handshake and framing) that replays mod_callcenter and channel events
//! built from the header sets FreeSWITCH writes, as JSON and as plain
//! bodies; every figure is compared exactly on `/metrics`, on the event
//! clock.

mod common;

use common::esl_server::{json_frame, EslConn, EslServer, Fs};
use common::{Endpoints, Samples};

const PASSWORD: &str = "s3cret-ClueCon-not-logged";
/// 2026-11-24T09:00:00Z in microseconds (fixed dates: the event clock).
const T: u64 = 1_795_424_400_000_000;
const S: u64 = 1_000_000;

fn env(server: &EslServer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__SOURCES__FS__KIND", "freeswitch_esl"),
        ("RINGWATCH__SOURCES__FS__PASSWORD", PASSWORD),
        ("RINGWATCH__CLIENT__BACKOFF_INITIAL", "0.05"),
        ("RINGWATCH__CLIENT__BACKOFF_MAX", "0.2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v.push((
        "RINGWATCH__SOURCES__FS__ADDRESS".into(),
        server.addr.to_string(),
    ));
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Wait until the source read `messages` ESL events and delivered
/// `translated` ringwatch events (counted once the journal has them).
async fn settled(d: &Endpoints, messages: f64, translated: f64) {
    d.eventually(r#"ringwatch_source_messages_total{source="fs"}"#, messages)
        .await;
    d.eventually(
        r#"ringwatch_source_translated_events_total{source="fs"}"#,
        translated,
    )
    .await;
}

fn check(m: &Samples, want: &[(&str, f64)]) {
    let wrong: Vec<String> = want
        .iter()
        .filter_map(|(sel, v)| match m.get(sel) {
            Some(got) if got == *v => None,
            got => Some(format!("{sel}: expected {v}, got {got:?}")),
        })
        .collect();
    assert!(wrong.is_empty(), "\n  {}", wrong.join("\n  "));
}

/// The end reasons of every `call.ended` the journal recorded: what the
/// translated events were, as the pipeline journaled them.
fn journal_end_reasons(dir: &std::path::Path) -> Vec<ringwatch::event::EndReason> {
    use ringwatch::durability::{events, journal, Record};
    use ringwatch::event::Body;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("journal-") && name.ends_with(".log") {
            journal::read_segment(&p, |rec| {
                if let Record::Packed { body, .. } = rec {
                    let (decoded, _) = events::decode(body).unwrap();
                    out.extend(decoded.into_iter().filter_map(|(_, ev)| match ev.body {
                        Body::CallEnded { reason, .. } => Some(reason),
                        _ => None,
                    }));
                }
                true
            })
            .unwrap();
        }
    }
    out
}

async fn send_json(c: &EslConn, h: Vec<(String, String)>) {
    c.event_json(&h).await;
}

async fn send_plain(c: &EslConn, h: Vec<(String, String)>) {
    c.event_plain(&h).await;
}

#[tokio::test]
async fn answers_abandons_holds_and_duplicates_are_measured_exactly() {
    let server = EslServer::start(PASSWORD).await;
    let e = env(&server, &[]);
    let d = common::start(&pairs(&e));
    let c = server.accept().await;
    assert!(c.accepted, "ringwatch sends the configured password");
    assert_eq!(
        c.subscription,
        "event json CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_HANGUP_COMPLETE CUSTOM callcenter::info"
    );
    let mut fs = Fs::default();
    let q = "answer@default";
    // Answered at 18.000999 s (floored: 18.000, within) over JSON, and at
    // 18.001 s (late) over plain bodies.
    send_json(&c, fs.start(q, "a1", T + 500)).await;
    send_json(&c, fs.offering(q, "a1", T + S)).await;
    send_json(&c, fs.bridge(q, "a1", T + 18 * S + 999)).await;
    send_json(&c, fs.end(q, "a1", T + 60 * S, None)).await;
    send_plain(&c, fs.start(q, "a2", T + 100 * S)).await;
    send_plain(&c, fs.bridge(q, "a2", T + 118 * S + 1_000)).await;
    send_plain(&c, fs.end(q, "a2", T + 130 * S, None)).await;
    // Abandons: 4.999 s is short, 5.000 s is not (the caller hung up:
    // BREAK_OUT).
    let q = "abandon@default";
    send_json(&c, fs.start(q, "b1", T + 200 * S)).await;
    send_json(
        &c,
        fs.end(q, "b1", T + 204 * S + 999_000, Some("BREAK_OUT")),
    )
    .await;
    send_plain(&c, fs.start(q, "b2", T + 210 * S)).await;
    send_plain(&c, fs.end(q, "b2", T + 215 * S, Some("BREAK_OUT"))).await;
    // Holds: on the agent leg (by its cc_member_uuid variable, then by the
    // remembered agent uuid) of exactly 17.000 s and of 17.001 s, on the
    // member leg, and one the call ends on (closed at the end: 20 s).
    let q = "hold@default";
    send_json(&c, fs.start(q, "h1", T + 500 * S)).await;
    send_json(&c, fs.bridge(q, "h1", T + 505 * S)).await;
    send_json(&c, fs.hold(true, "h1-agent", Some("h1"), T + 510 * S)).await;
    send_json(&c, fs.hold(false, "h1-agent", None, T + 527 * S)).await;
    send_json(&c, fs.end(q, "h1", T + 540 * S, None)).await;
    send_plain(&c, fs.start(q, "h2", T + 600 * S)).await;
    send_plain(&c, fs.bridge(q, "h2", T + 605 * S)).await;
    send_plain(&c, fs.hold(true, "h2-agent", Some("h2"), T + 610 * S)).await;
    send_plain(
        &c,
        fs.hold(false, "h2-agent", Some("h2"), T + 627 * S + 1_000),
    )
    .await;
    send_plain(&c, fs.end(q, "h2", T + 640 * S, None)).await;
    send_json(&c, fs.start(q, "h3", T + 700 * S)).await;
    send_json(&c, fs.bridge(q, "h3", T + 702 * S)).await;
    send_json(&c, fs.hold(true, "h3-leg", None, T + 710 * S)).await;
    send_json(&c, fs.hold(false, "h3-leg", None, T + 715 * S)).await;
    send_json(&c, fs.end(q, "h3", T + 720 * S, None)).await;
    send_json(&c, fs.start(q, "h4", T + 800 * S)).await;
    send_json(&c, fs.bridge(q, "h4", T + 801 * S)).await;
    send_json(&c, fs.hold(true, "h4-agent", Some("h4"), T + 810 * S)).await;
    send_json(&c, fs.end(q, "h4", T + 830 * S, None)).await;
    send_json(&c, fs.hangup("h4-agent", T + 830 * S + 10)).await;
    // Every event of one call sent twice, byte for byte.
    let q = "dup@default";
    for h in [
        fs.start(q, "d1", T + 900 * S),
        fs.bridge(q, "d1", T + 905 * S),
        fs.end(q, "d1", T + 910 * S, None),
    ] {
        let frame = json_frame(&h);
        c.send(format!("{frame}{frame}").as_bytes()).await;
    }
    settled(&d, 37.0, 35.0).await;
    check(
        &d.metrics().await,
        &[
            (
                r#"ringwatch_calls_offered_total{queue="answer@default"}"#,
                2.0,
            ),
            (
                r#"ringwatch_calls_answered_total{queue="answer@default"}"#,
                2.0,
            ),
            (
                r#"ringwatch_calls_answered_late_total{queue="answer@default"}"#,
                1.0,
            ),
            (
                r#"ringwatch_time_to_answer_seconds_bucket{queue="answer@default",le="18"}"#,
                1.0,
            ),
            (
                r#"ringwatch_time_to_answer_seconds_count{queue="answer@default"}"#,
                2.0,
            ),
            (
                r#"ringwatch_time_to_answer_seconds_sum{queue="answer@default"}"#,
                36.001,
            ),
            (
                r#"ringwatch_calls_abandoned_total{queue="abandon@default",short="true"}"#,
                1.0,
            ),
            (
                r#"ringwatch_calls_abandoned_total{queue="abandon@default",short="false"}"#,
                1.0,
            ),
            (
                r#"ringwatch_abandon_wait_seconds_sum{queue="abandon@default"}"#,
                9.999,
            ),
            (r#"ringwatch_holds_total{queue="hold@default"}"#, 4.0),
            (
                r#"ringwatch_hold_limit_exceeded_total{queue="hold@default"}"#,
                2.0,
            ),
            (
                r#"ringwatch_hold_duration_seconds_bucket{queue="hold@default",le="17"}"#,
                2.0,
            ),
            (
                r#"ringwatch_hold_duration_seconds_sum{queue="hold@default"}"#,
                59.001,
            ),
            (r#"ringwatch_calls_on_hold{queue="hold@default"}"#, 0.0),
            (r#"ringwatch_calls_active{queue="hold@default"}"#, 0.0),
            (r#"ringwatch_calls_offered_total{queue="dup@default"}"#, 1.0),
            (
                r#"ringwatch_calls_answered_total{queue="dup@default"}"#,
                1.0,
            ),
            ("ringwatch_events_duplicate_total", 3.0),
            (
                r#"ringwatch_source_skipped_total{reason="ignored",source="fs"}"#,
                2.0,
            ),
            (
                r#"ringwatch_source_skipped_total{reason="unknown_call",source="fs"}"#,
                0.0,
            ),
            (r#"ringwatch_source_reports_holds{source="fs"}"#, 1.0),
            (r#"ringwatch_source_exact_timestamps{source="fs"}"#, 1.0),
            (r#"ringwatch_source_connected{source="fs"}"#, 1.0),
            (r#"ringwatch_source_login_failures_total{source="fs"}"#, 0.0),
        ],
    );
}

#[tokio::test]
async fn timeout_exits_follow_abandon_policy() {
    for policy in ["failed", "abandoned"] {
        let server = EslServer::start(PASSWORD).await;
        let dir = tempfile::tempdir().unwrap();
        let e = env(
            &server,
            &[("RINGWATCH__SOURCES__FS__ABANDON_POLICY", policy)],
        );
        let d = common::start_in(dir.path(), &pairs(&e));
        let c = server.accept().await;
        let mut fs = Fs::default();
        let q = "timeout@default";
        send_json(&c, fs.start(q, "c1", T)).await;
        send_json(&c, fs.end(q, "c1", T + 60 * S, Some("TIMEOUT"))).await;
        send_plain(&c, fs.start(q, "c2", T + 100 * S)).await;
        send_plain(&c, fs.end(q, "c2", T + 120 * S, Some("NO_AGENT_TIMEOUT"))).await;
        // The caller pressing the exit key leaves the queue transferred.
        send_json(&c, fs.start(q, "c3", T + 200 * S)).await;
        send_json(&c, fs.end(q, "c3", T + 203 * S, Some("EXIT_WITH_KEY"))).await;
        settled(&d, 6.0, 6.0).await;
        // The rules count an unanswered call that ended `failed` as an
        // abandon too: the policy decides the reason that is recorded.
        check(
            &d.metrics().await,
            &[
                (
                    r#"ringwatch_calls_offered_total{queue="timeout@default"}"#,
                    3.0,
                ),
                (
                    r#"ringwatch_calls_abandoned_total{queue="timeout@default",short="false"}"#,
                    2.0,
                ),
                (
                    r#"ringwatch_calls_abandoned_total{queue="timeout@default",short="true"}"#,
                    0.0,
                ),
                (
                    r#"ringwatch_abandon_wait_seconds_sum{queue="timeout@default"}"#,
                    80.0,
                ),
                (r#"ringwatch_calls_waiting{queue="timeout@default"}"#, 0.0),
            ],
        );
        use ringwatch::event::EndReason;
        let want = match policy {
            "failed" => EndReason::Failed,
            _ => EndReason::Abandoned,
        };
        let reasons = journal_end_reasons(dir.path());
        let recorded = reasons.iter().filter(|&&r| r == want).count();
        assert_eq!(recorded, 2, "{policy}: {reasons:?}");
        let transferred = reasons.iter().filter(|&&r| r == EndReason::Transferred);
        assert_eq!(transferred.count(), 1, "{reasons:?}");
        d.stop().await;
    }
}

#[tokio::test]
async fn malformed_and_oversized_frames_are_skipped_and_the_connection_stays_up() {
    let server = EslServer::start(PASSWORD).await;
    let e = env(
        &server,
        &[("RINGWATCH__SOURCES__FS__MAX_MESSAGE_BYTES", "4096")],
    );
    let d = common::start(&pairs(&e));
    let c = server.accept().await;
    let mut fs = Fs::default();
    let q = "bad@default";
    send_json(&c, fs.start(q, "x1", T)).await;
    // A line that is not ESL at all.
    c.send(b"this is not an event socket line\n").await;
    // An oversized event whose body would answer the call: passed over to
    // its last byte, unread.
    let mut big = fs.bridge(q, "x1", T + 2 * S);
    big.push(("variable_padding".into(), "p".repeat(10_000)));
    c.send(json_frame(&big).as_bytes()).await;
    // A JSON body that does not parse, a plain body with a broken line.
    let broken = "{\"Event-Name\": \"CUSTOM\", ";
    c.send(
        format!(
            "Content-Length: {}\nContent-Type: text/event-json\n\n{broken}",
            broken.len()
        )
        .as_bytes(),
    )
    .await;
    let plain = "Event-Name: CUSTOM\nno colon on this line\n\n";
    c.send(
        format!(
            "Content-Length: {}\nContent-Type: text/event-plain\n\n{plain}",
            plain.len()
        )
        .as_bytes(),
    )
    .await;
    // The next valid events still count.
    send_plain(&c, fs.bridge(q, "x1", T + 10 * S)).await;
    send_json(&c, fs.end(q, "x1", T + 20 * S, None)).await;
    settled(&d, 7.0, 3.0).await;
    check(
        &d.metrics().await,
        &[
            (
                r#"ringwatch_source_skipped_total{reason="not_protocol",source="fs"}"#,
                1.0,
            ),
            (
                r#"ringwatch_source_skipped_total{reason="oversized",source="fs"}"#,
                1.0,
            ),
            (
                r#"ringwatch_source_skipped_total{reason="malformed",source="fs"}"#,
                2.0,
            ),
            (
                r#"ringwatch_calls_answered_total{queue="bad@default"}"#,
                1.0,
            ),
            (
                r#"ringwatch_time_to_answer_seconds_sum{queue="bad@default"}"#,
                10.0,
            ),
            (r#"ringwatch_source_connected{source="fs"}"#, 1.0),
            (
                r#"ringwatch_source_connection_attempts_total{source="fs"}"#,
                1.0,
            ),
            (r#"ringwatch_source_reconnects_total{source="fs"}"#, 0.0),
        ],
    );
}

#[tokio::test]
async fn a_refused_password_is_counted_retried_and_never_logged() {
    let server = EslServer::start("the-right-one").await;
    let e = env(&server, &[]);
    let d = common::start_process(&pairs(&e));
    for _ in 0..2 {
        let c = server.accept().await;
        assert!(!c.accepted);
        assert_eq!(c.auth, PASSWORD);
    }
    server.set_password(PASSWORD);
    let c = server.accept().await;
    assert!(c.accepted);
    let mut fs = Fs::default();
    send_json(&c, fs.start("q@default", "z1", T)).await;
    settled(&d, 1.0, 1.0).await;
    check(
        &d.metrics().await,
        &[
            (r#"ringwatch_source_login_failures_total{source="fs"}"#, 2.0),
            (
                r#"ringwatch_source_connection_failures_total{source="fs"}"#,
                2.0,
            ),
            (
                r#"ringwatch_source_connection_attempts_total{source="fs"}"#,
                3.0,
            ),
            (r#"ringwatch_source_connected{source="fs"}"#, 1.0),
            (r#"ringwatch_calls_waiting{queue="q@default"}"#, 1.0),
        ],
    );
    let logs = d.log_lines();
    assert!(
        logs.iter()
            .any(|l| l.contains("refused the password") && l.contains("-ERR invalid")),
        "{logs:#?}"
    );
    assert!(!logs.iter().any(|l| l.contains(PASSWORD)), "{logs:#?}");
}

#[tokio::test]
async fn a_disconnect_notice_mid_call_then_reconnect_reconciles_the_calls_in_flight() {
    let server = EslServer::start(PASSWORD).await;
    let e = env(&server, &[]);
    let d = common::start(&pairs(&e));
    let c = server.accept().await;
    let mut fs = Fs::default();
    let q = "recon@default";
    send_json(&c, fs.start(q, "r1", T)).await;
    send_json(&c, fs.start(q, "r2", T + S)).await;
    send_json(&c, fs.start(q, "r3", T + 2 * S)).await;
    send_json(&c, fs.bridge(q, "r3", T + 5 * S)).await;
    settled(&d, 4.0, 4.0).await;
    // FreeSWITCH goes away mid-call; meanwhile r2 hangs up unseen.
    c.disconnect_notice().await;
    server.members.lock().unwrap().insert(
        q.to_string(),
        vec![
            ("r1".to_string(), "Waiting".to_string()),
            ("r3".to_string(), "Answered".to_string()),
        ],
    );
    let c = server.accept().await;
    let commands = c.wait_commands(1).await;
    assert_eq!(
        commands[0],
        "api callcenter_config queue list members recon@default"
    );
    d.eventually(
        r#"ringwatch_source_reconciled_calls_total{action="dropped",source="fs"}"#,
        1.0,
    )
    .await;
    send_plain(&c, fs.bridge(q, "r1", T + 10 * S)).await;
    send_plain(&c, fs.end(q, "r1", T + 20 * S, None)).await;
    send_plain(&c, fs.end(q, "r3", T + 30 * S, None)).await;
    settled(&d, 7.0, 7.0).await;
    check(
        &d.metrics().await,
        &[
            (
                r#"ringwatch_calls_offered_total{queue="recon@default"}"#,
                3.0,
            ),
            (
                r#"ringwatch_calls_answered_total{queue="recon@default"}"#,
                2.0,
            ),
            (
                r#"ringwatch_time_to_answer_seconds_sum{queue="recon@default"}"#,
                13.0,
            ),
            (
                r#"ringwatch_calls_evicted_total{queue="recon@default"}"#,
                1.0,
            ),
            (
                r#"ringwatch_calls_abandoned_total{queue="recon@default",short="false"}"#,
                0.0,
            ),
            (r#"ringwatch_calls_waiting{queue="recon@default"}"#, 0.0),
            (r#"ringwatch_calls_active{queue="recon@default"}"#, 0.0),
            (
                r#"ringwatch_source_reconciled_calls_total{action="kept",source="fs"}"#,
                2.0,
            ),
            (
                r#"ringwatch_source_reconciled_calls_total{action="dropped",source="fs"}"#,
                1.0,
            ),
            (
                r#"ringwatch_source_disconnects_total{reason="peer",source="fs"}"#,
                1.0,
            ),
            (r#"ringwatch_source_reconnects_total{source="fs"}"#, 1.0),
            (r#"ringwatch_source_connected{source="fs"}"#, 1.0),
        ],
    );
}

#[tokio::test]
async fn a_restart_keeps_correlating_holds_on_the_agent_leg() {
    let server = EslServer::start(PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let e = env(&server, &[]);
    let d = common::start_in(dir.path(), &pairs(&e));
    let c = server.accept().await;
    let mut fs = Fs::default();
    let q = "restart@default";
    send_json(&c, fs.start(q, "p1", T)).await;
    send_json(&c, fs.bridge(q, "p1", T + 3 * S)).await;
    settled(&d, 2.0, 2.0).await;
    d.stop().await;
    drop(c);
    assert!(dir.path().join("sources/fs.esl.json").exists());
    server
        .members
        .lock()
        .unwrap()
        .insert(q.to_string(), vec![("p1".into(), "Answered".into())]);
    let d = common::start_in(dir.path(), &pairs(&e));
    let c = server.accept().await;
    assert_eq!(
        c.wait_commands(1).await[0],
        "api callcenter_config queue list members restart@default"
    );
    d.eventually(
        r#"ringwatch_source_reconciled_calls_total{action="kept",source="fs"}"#,
        1.0,
    )
    .await;
    // The agent leg's events carry only its own uuid here: matched by the
    // CC-Agent-UUID remembered across the restart.
    send_plain(&c, fs.hold(true, "p1-agent", None, T + 10 * S)).await;
    send_plain(&c, fs.hold(false, "p1-agent", None, T + 20 * S)).await;
    send_plain(&c, fs.end(q, "p1", T + 30 * S, None)).await;
    settled(&d, 3.0, 3.0).await;
    check(
        &d.metrics().await,
        &[
            (
                r#"ringwatch_calls_offered_total{queue="restart@default"}"#,
                1.0,
            ),
            (
                r#"ringwatch_calls_answered_total{queue="restart@default"}"#,
                1.0,
            ),
            (r#"ringwatch_holds_total{queue="restart@default"}"#, 1.0),
            (
                r#"ringwatch_hold_duration_seconds_sum{queue="restart@default"}"#,
                10.0,
            ),
            (r#"ringwatch_calls_active{queue="restart@default"}"#, 0.0),
            (
                r#"ringwatch_source_skipped_total{reason="unknown_call",source="fs"}"#,
                0.0,
            ),
        ],
    );
}

#[tokio::test]
async fn a_quiet_socket_is_probed_with_api_status_and_a_dead_one_reconnected() {
    let server = EslServer::start(PASSWORD).await;
    let e = env(
        &server,
        &[
            ("RINGWATCH__SOURCES__FS__PING_INTERVAL", "0.2"),
            ("RINGWATCH__SOURCES__FS__IDLE_TIMEOUT", "0.7"),
        ],
    );
    let d = common::start(&pairs(&e));
    // Answered: the connection stays up across several probes.
    let c = server.accept().await;
    let commands = c.wait_commands(3).await;
    assert!(commands.iter().all(|c| c == "api status"), "{commands:?}");
    check(
        &d.metrics().await,
        &[(
            r#"ringwatch_source_disconnects_total{reason="idle_timeout",source="fs"}"#,
            0.0,
        )],
    );
    // A switch that stops answering is dropped and connected to again.
    server.mute.store(true, std::sync::atomic::Ordering::SeqCst);
    let _again = server.accept().await;
    d.eventually(
        r#"ringwatch_source_disconnects_total{reason="idle_timeout",source="fs"}"#,
        1.0,
    )
    .await;
    d.eventually(r#"ringwatch_source_reconnects_total{source="fs"}"#, 1.0)
        .await;
    drop(c);
}
