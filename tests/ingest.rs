//! The WebSocket ingest as a sender sees it: acknowledgements, protocol errors
//! and their close codes, keepalive, and connections that must stay open.

mod common;

use std::time::Duration;

use common::{close_frame, offer_now, send, start, start_here};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// For the tests on the event clock; those on the wall clock use
/// `offer_now` (a fixed date there is a call days old, evicted at once).
const OFFER: &str = r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q"}"#;

#[tokio::test]
async fn bad_events_never_close_the_connection() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    for frame in [
        "{not json",
        "42",
        "[]",
        r#"{"type":"x","ts":1}"#,
        "[1, {\"a\": 2}]",
        "",
    ] {
        let ack = send(&mut ws, frame).await;
        assert_eq!(ack["accepted"], 0, "{frame}: {ack}");
    }
    let ack = send(&mut ws, OFFER).await;
    assert_eq!(ack["accepted"], 1);
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_events_rejected_total{reason="malformed_json"}"#),
        2.0
    );
    assert_eq!(
        m.value(r#"ringwatch_events_rejected_total{reason="not_an_object"}"#),
        2.0
    );
    assert_eq!(
        m.value(r#"ringwatch_events_rejected_total{reason="missing_field"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_events_rejected_total{reason="unknown_type"}"#),
        1.0
    );
    assert_eq!(m.value("ringwatch_ingest_frames_total"), 7.0);
    assert_eq!(m.value("ringwatch_ingest_connections"), 1.0);
}

#[tokio::test]
async fn a_bad_element_never_costs_the_rest_of_its_batch() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    let frame = format!(
        r#"[{OFFER}, {{"type":"call.answered","ts":"yesterday","call_id":"c1","event_id":"e2"}}, "x", {{"type":"call.answered","ts":1795424405000,"call_id":"c1"}}]"#
    );
    let ack = send(&mut ws, &frame).await;
    assert_eq!(ack["accepted"], 2, "{ack}");
    let rejected = ack["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["event_id"], "e2");
    assert_eq!(rejected[0]["reason"], "invalid_field");
    assert!(rejected[0]["detail"].as_str().unwrap().contains("`ts`"));
    assert_eq!(rejected[1]["index"], 2);
    assert_eq!(rejected[1]["reason"], "not_an_object");
    assert!(rejected[1].get("event_id").is_none());
    let m = d.metrics().await;
    assert_eq!(m.value(r#"ringwatch_calls_answered_total{queue="q"}"#), 1.0);
    assert_eq!(
        m.value(r#"ringwatch_time_to_answer_seconds_sum{queue="q"}"#),
        5.0
    );
}

#[tokio::test]
async fn binary_frames_close_with_1003_and_leave_others_alone() {
    let d = start(&[]);
    let mut bystander = d.connect().await;
    let mut ws = d.connect().await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, CloseCode::Unsupported);
    assert!(reason.contains("binary"), "{reason}");
    assert_eq!(send(&mut bystander, &offer_now("c1")).await["accepted"], 1);
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_ingest_protocol_errors_total{kind="binary_frame"}"#),
        1.0
    );
    d.eventually(
        r#"ringwatch_ingest_connections_closed_total{reason="protocol_error"}"#,
        1.0,
    )
    .await;
    d.eventually("ringwatch_ingest_connections", 1.0).await;
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    let d = start(&[("RINGWATCH__INGEST__MAX_FRAME_BYTES", "1024")]);
    let mut ws = d.connect().await;
    // exactly at the limit is fine
    let pad = 1024 - r#"{"type":"clock","ts":1,"x":""}"#.len();
    let at_limit = format!(r#"{{"type":"clock","ts":1,"x":"{}"}}"#, "a".repeat(pad));
    assert_eq!(at_limit.len(), 1024);
    assert_eq!(send(&mut ws, &at_limit).await["accepted"], 1);
    let big = format!(r#"{{"type":"clock","ts":1,"x":"{}"}}"#, "a".repeat(4096));
    ws.send(Message::text(big)).await.unwrap();
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, CloseCode::Size);
    assert!(reason.contains("1024"), "{reason}");
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_ingest_protocol_errors_total{kind="oversize_frame"}"#),
        1.0
    );
}

#[tokio::test]
async fn wrong_path_is_refused_at_the_handshake() {
    let d = start(&[]);
    let err = tokio_tungstenite::connect_async(format!("ws://{}/events", d.ingest))
        .await
        .expect_err("only /v1/events upgrades");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 404),
        other => panic!("expected an HTTP 404, got {other}"),
    }
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_ingest_protocol_errors_total{kind="handshake"}"#),
        1.0
    );
}

#[tokio::test]
async fn keepalive_pings_and_idle_peers_are_closed() {
    let d = start(&[
        ("RINGWATCH__INGEST__PING_INTERVAL", "0.2"),
        ("RINGWATCH__INGEST__IDLE_TIMEOUT", "1"),
    ]);
    // A live client (it reads, so tungstenite answers every ping) stays open
    // well past the idle timeout.
    let mut live = d.connect().await;
    let pings = tokio::time::timeout(Duration::from_millis(1800), async {
        let mut n = 0;
        while let Some(Ok(m)) = live.next().await {
            assert!(matches!(m, Message::Ping(_)), "{m:?}");
            n += 1;
        }
        n
    })
    .await;
    assert!(pings.is_err(), "the live connection must not end");
    assert_eq!(send(&mut live, &offer_now("c1")).await["accepted"], 1);
    live.close(None).await.unwrap();
    d.eventually(
        r#"ringwatch_ingest_connections_closed_total{reason="peer"}"#,
        1.0,
    )
    .await;

    // A dead client (never reads, never answers) is closed with 1001.
    let mut dead = d.connect().await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (code, reason) = close_frame(&mut dead).await;
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("idle"), "{reason}");
    d.eventually(
        r#"ringwatch_ingest_connections_closed_total{reason="idle_timeout"}"#,
        1.0,
    )
    .await;
    d.eventually("ringwatch_ingest_connections", 0.0).await;
}

#[tokio::test]
async fn connection_gauge_follows_open_connections() {
    let d = start(&[]);
    let a = d.connect().await;
    let mut b = d.connect().await;
    send(&mut b, "[]").await; // both handshakes are surely done
    assert_eq!(d.metrics().await.value("ringwatch_ingest_connections"), 2.0);
    drop(a);
    b.close(None).await.unwrap();
    d.eventually("ringwatch_ingest_connections", 0.0).await;
    assert_eq!(
        d.metrics()
            .await
            .value("ringwatch_ingest_connections_opened_total"),
        2.0
    );
}

/// A peer that opens TCP and never finishes the upgrade is cut off at
/// `ingest.handshake_timeout` and counted; one that upgraded stays. On the
/// paused clock (the daemon runs on the test's runtime) five minutes of
/// timeout pass in no real time: the runtime, once idle, moves the clock to
/// the next timer (the pipeline's tick, pings, the handshake deadline).
#[tokio::test(start_paused = true)]
async fn a_stalled_upgrade_is_cut_off_at_the_handshake_timeout() {
    let d = start_here(&[
        ("RINGWATCH__INGEST__HANDSHAKE_TIMEOUT", "300"),
        ("RINGWATCH__RULES__CLOCK", "event"),
        // In memory: the journal's fsync thread is no task of the runtime,
        // and the paused clock would not wait for it.
        ("RINGWATCH__DURABILITY__DIR", ""),
    ])
    .await;
    let mut upgraded = d.connect().await;
    let t0 = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(d.ingest).await.unwrap();
    let mut halfway = TcpStream::connect(d.ingest).await.unwrap();
    halfway
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    // Not a moment early...
    let early = tokio::time::timeout(Duration::from_secs(299), silent.read(&mut buf)).await;
    assert!(early.is_err(), "closed before the timeout: {early:?}");
    // ...and then closed without a word (no HTTP answer, no close frame).
    assert_eq!(silent.read(&mut buf).await.unwrap(), 0);
    assert_eq!(halfway.read(&mut buf).await.unwrap(), 0);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited < Duration::from_secs(301),
        "cut off after {waited:?} of paused time"
    );
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_ingest_protocol_errors_total{kind="handshake"}"#),
        2.0
    );
    assert_eq!(m.value("ringwatch_ingest_connections_opened_total"), 1.0);
    assert_eq!(m.value("ringwatch_ingest_connections"), 1.0);
    // The upgraded connection is untouched by the handshake deadline.
    assert_eq!(send(&mut upgraded, OFFER).await["accepted"], 1);
}

/// The next text message (an ack) as JSON, skipping pings and pongs.
async fn next_ack(ws: &mut common::Ws) -> serde_json::Value {
    loop {
        match ws.next().await.expect("ack").expect("ack frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("ack is JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

/// A sender that streams (many frames written before any ack is read) gets
/// one ack per frame, in frame order, each with that frame's own figures;
/// more frames than the connection keeps in flight just wait in the socket.
#[tokio::test]
async fn streamed_frames_are_acknowledged_in_order() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    let frames = 300; // over the 64 a connection keeps in flight
    for i in 0..frames {
        // Frame i holds i % 5 offers and, every third frame, a bad element
        // at the end: every ack is told apart from its neighbours.
        let mut events: Vec<String> = (0..i % 5)
            .map(|k| {
                format!(
                    r#"{{"type":"call.offered","ts":{},"call_id":"s{i}-{k}","queue":"q"}}"#,
                    1_795_424_400_000i64 + i as i64
                )
            })
            .collect();
        if i % 3 == 0 {
            events.push(format!(r#"{{"type":"nope","ts":1,"event_id":"bad-{i}"}}"#));
        }
        ws.feed(Message::text(format!("[{}]", events.join(","))))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    let mut offered = 0;
    for i in 0..frames {
        let ack = next_ack(&mut ws).await;
        assert_eq!(ack["accepted"], i % 5, "frame {i}: {ack}");
        assert_eq!(ack["duplicates"], 0, "frame {i}: {ack}");
        let rejected = ack["rejected"].as_array().unwrap();
        if i % 3 == 0 {
            assert_eq!(rejected.len(), 1, "frame {i}: {ack}");
            assert_eq!(rejected[0]["index"], i % 5, "frame {i}: {ack}");
            assert_eq!(rejected[0]["event_id"], format!("bad-{i}"));
            assert_eq!(rejected[0]["reason"], "unknown_type");
        } else {
            assert!(rejected.is_empty(), "frame {i}: {ack}");
        }
        offered += i % 5;
    }
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_calls_offered_total{queue="q"}"#),
        offered as f64
    );
    assert_eq!(m.value("ringwatch_ingest_frames_total"), frames as f64);
}

/// Frames streamed ahead of a binary frame are all answered before the
/// connection closes with 1003: nothing read is left unacknowledged.
#[tokio::test]
async fn frames_before_a_protocol_error_are_answered_first() {
    let d = start(&[]);
    let mut ws = d.connect().await;
    for i in 0..20 {
        ws.feed(Message::text(offer_now(&format!("p{i}"))))
            .await
            .unwrap();
    }
    ws.feed(Message::binary(vec![1, 2, 3])).await.unwrap();
    ws.flush().await.unwrap();
    for i in 0..20 {
        assert_eq!(next_ack(&mut ws).await["accepted"], 1, "frame {i}");
    }
    let (code, _) = close_frame(&mut ws).await;
    assert_eq!(code, CloseCode::Unsupported);
    let m = d.metrics().await;
    assert_eq!(m.value(r#"ringwatch_calls_offered_total{queue="q"}"#), 20.0);
}
