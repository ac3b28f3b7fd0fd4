//! Ingest limits against the real binary: the connection cap (taken at
//! accept: an over-cap upgrade is answered 503 without being upgraded,
//! counted, warned about once per interval) and the per-connection event
//! rate, which slows a sender down without costing it a single event. Both
//! read the daemon's warning lines, so they run the binary.

mod common;

use common::{send, start_process};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::http::header::RETRY_AFTER;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_without_an_upgrade() {
    let d = start_process(&[("RINGWATCH__INGEST__MAX_CONNECTIONS", "2")]);
    let mut a = d.connect().await;
    let mut b = d.connect().await;
    // Both upgrades are surely done once each has an ack.
    send(&mut a, "[]").await;
    send(&mut b, "[]").await;

    for _ in 0..3 {
        let over = tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.ingest)).await;
        let resp = match over {
            Err(WsError::Http(resp)) => resp,
            Err(e) => panic!("expected an HTTP 503, got {e}"),
            Ok(_) => panic!("expected an HTTP 503, the upgrade succeeded"),
        };
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "5");
        let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
        assert!(
            body.contains("ingest.max_connections (2) are open"),
            "{body}"
        );
    }
    // The two that were in keep working.
    assert_eq!(send(&mut a, "[]").await["accepted"], 0);

    let m = d.metrics().await;
    assert_eq!(m.value("ringwatch_ingest_connections_refused_total"), 3.0);
    assert_eq!(m.value("ringwatch_ingest_connections"), 2.0);
    assert_eq!(m.value("ringwatch_ingest_connections_opened_total"), 2.0);

    // A place frees up when one leaves.
    b.close(None).await.unwrap();
    d.eventually("ringwatch_ingest_connections", 1.0).await;
    let mut c = d.connect().await;
    assert_eq!(send(&mut c, "[]").await["accepted"], 0);

    // Three refusals within the 10 s log interval: one warning line.
    let warnings = d
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("ingest connection refused"))
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(r#""level":"WARN""#), "{warnings:?}");
    assert!(
        warnings[0].contains(r#""max_connections":2"#),
        "{warnings:?}"
    );
}

/// 20 events/s with a burst of 20: a sender pushing 50 events in five frames
/// without waiting is paused after the third, fourth and fifth frame (half a
/// second each), and still gets every event acknowledged and counted.
#[tokio::test]
async fn a_burst_over_the_rate_is_slowed_down_never_dropped() {
    let d = start_process(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__INGEST__MAX_EVENTS_PER_SECOND", "20"),
        ("RINGWATCH__INGEST__EVENTS_BURST", "20"),
    ]);
    let mut ws = d.connect().await;
    let frames: Vec<String> = (0..5)
        .map(|f| {
            let events: Vec<String> = (0..10)
                .map(|i| {
                    format!(
                        r#"{{"event_id":"e{f}-{i}","type":"call.offered","ts":1795424400000,"call_id":"c{f}-{i}","queue":"q"}}"#
                    )
                })
                .collect();
            format!("[{}]", events.join(","))
        })
        .collect();
    for f in &frames {
        ws.send(Message::text(f.as_str())).await.unwrap();
    }
    let mut accepted = 0;
    let mut acks = 0;
    while acks < frames.len() {
        match ws.next().await.expect("ack").expect("ack frame") {
            Message::Text(t) => {
                let ack: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(ack["rejected"].as_array().unwrap().len(), 0, "{ack}");
                accepted += ack["accepted"].as_u64().unwrap();
                acks += 1;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    assert_eq!(accepted, 50);

    let m = d.metrics().await;
    assert_eq!(m.value(r#"ringwatch_calls_offered_total{queue="q"}"#), 50.0);
    assert_eq!(m.value("ringwatch_ingest_frames_total"), 5.0);
    assert_eq!(m.value("ringwatch_ingest_throttled_frames_total"), 3.0);
    // Each pause is at most its frame's excess (10 events at 50 ms), less
    // the time that passed since the previous frame.
    let paused = m.value("ringwatch_ingest_throttled_seconds_total");
    assert!(paused > 0.0 && paused <= 1.5, "{paused}");
    assert_eq!(
        m.value(r#"ringwatch_ingest_connections_closed_total{reason="protocol_error"}"#),
        0.0
    );
    assert_eq!(m.value("ringwatch_ingest_connections"), 1.0);
    // The connection is still good for more.
    assert_eq!(send(&mut ws, "[]").await["accepted"], 0);

    let warnings = d
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("reading paused"))
        .count();
    assert_eq!(warnings, 1, "one warning per interval");
}
