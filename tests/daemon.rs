//! The daemon as an SRE runs it: health endpoints, exposition validity
//! (promtool), labels and cardinality, configuration errors, logs, shutdown.
//! In-process but for exit codes, log text and signals (the binary there).

mod common;

use std::time::Duration;

use common::{now_ms, rfc3339, scenario, send, start, start_process};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn health_and_readiness() {
    let d = start(&[]);
    assert_eq!(d.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(d.get("/readyz").await, (200, "ready\n".to_string()));
    assert_eq!(d.get("/nope").await.0, 404);
    let resp = reqwest::get(d.url("/metrics")).await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    let m = common::Samples::parse(&body).unwrap();
    let build =
        m.0.keys()
            .find(|k| k.starts_with("ringwatch_build_info{"))
            .expect("build info");
    assert!(build.contains(concat!("version=\"", env!("CARGO_PKG_VERSION"), "\"")));
    assert_eq!(m.value("ringwatch_ingest_connections"), 0.0);
}

/// `promtool check metrics` on a populated exposition: every family, sites,
/// folded queues, quantiles (NaN and real). Required in CI.
#[tokio::test]
async fn exposition_passes_promtool() {
    if !common::promtool_available() {
        return;
    }
    let d = start(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__METRICS__MAX_QUEUES", "3"),
        ("RINGWATCH__METRICS__QUEUES", "declared"),
    ]);
    let mut ws = d.connect().await;
    for name in ["three_rings", "hold_limit", "callbacks"] {
        let s = scenario(name);
        send(&mut ws, &format!("[{}]", s.frames.join(","))).await;
    }
    send(
        &mut ws,
        r#"{"type":"call.offered","ts":1795424500000,"call_id":"s1","queue":"east-q","site":"east \"1\""}"#,
    )
    .await;
    common::promtool_check_metrics(&d.metrics_text().await);
}

#[tokio::test]
async fn labels_are_bounded_and_sites_labelled() {
    let d = start(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        // the declared queue counts: standby, a, b are real; c, d fold
        ("RINGWATCH__METRICS__MAX_QUEUES", "3"),
        ("RINGWATCH__METRICS__QUEUES", "standby"),
    ]);
    let m = d.metrics().await;
    // a declared queue shows its series at 0 before any event
    assert_eq!(
        m.value(r#"ringwatch_calls_offered_total{queue="standby"}"#),
        0.0
    );
    assert_eq!(m.value(r#"ringwatch_calls_waiting{queue="standby"}"#), 0.0);
    let mut ws = d.connect().await;
    let offers: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, q)| {
            format!(r#"{{"type":"call.offered","ts":1795424400000,"call_id":"c{i}","queue":"{q}","caller":"+15550001"}}"#)
        })
        .collect();
    send(&mut ws, &format!("[{}]", offers.join(","))).await;
    send(
        &mut ws,
        r#"{"type":"call.offered","ts":1795424400000,"call_id":"s","queue":"a","site":"east"}"#,
    )
    .await;
    let m = d.metrics().await;
    assert_eq!(m.value(r#"ringwatch_calls_offered_total{queue="a"}"#), 1.0);
    assert_eq!(
        m.value(r#"ringwatch_calls_offered_total{queue="other"}"#),
        2.0
    );
    assert!(m
        .get(r#"ringwatch_calls_offered_total{queue="c"}"#)
        .is_none());
    assert_eq!(
        m.value(r#"ringwatch_label_values_folded_total{label="queue"}"#),
        2.0
    );
    assert_eq!(
        m.value(r#"ringwatch_calls_offered_total{queue="a",site="east"}"#),
        1.0
    );
    // no caller data anywhere in the exposition
    assert!(!d.metrics_text().await.contains("15550001"));
}

#[tokio::test]
async fn quantile_gauges_come_from_the_window() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let m = d.metrics().await;
    assert!(
        m.0.keys().all(|k| !k.contains("quantile_seconds")),
        "no series before any queue"
    );
    let mut ws = d.connect().await;
    let s = scenario("three_rings");
    send(&mut ws, &format!("[{}]", s.frames.join(","))).await;
    let m = d.metrics().await;
    // billing answered in 5, 18 and 18.5 s
    let q = |p: &str| {
        m.value(&format!(
            r#"ringwatch_time_to_answer_quantile_seconds{{queue="billing",quantile="{p}"}}"#
        ))
    };
    assert!((18.0..18.02).contains(&q("0.5")), "{}", q("0.5"));
    assert!((18.5..18.52).contains(&q("0.99")), "{}", q("0.99"));
    assert!(m
        .value(r#"ringwatch_hold_duration_quantile_seconds{queue="billing",quantile="0.5"}"#)
        .is_nan());
    // an hour later (event time) the window is empty again
    send(&mut ws, r#"{"type":"clock","ts":"2026-11-23T10:30:00Z"}"#).await;
    let m = d.metrics().await;
    assert!(m
        .value(r#"ringwatch_time_to_answer_quantile_seconds{queue="billing",quantile="0.5"}"#)
        .is_nan());
    assert_eq!(m.value("ringwatch_clock_seconds"), 1_795_429_800.0);
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let out = common::ringwatch_command()
        .env("RINGWATCH__RULES__HOLD_LIMIT", "-3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.hold_limit"), "{err}");

    let dir = std::env::temp_dir().join(format!("ringwatch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[ingest]\nmax_frame_bytes = \"lots\"\n").unwrap();
    let out = common::ringwatch_command()
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_frame_bytes"));

    std::fs::write(&file, "[rules]\nhold_limit = 20\n").unwrap();
    let out = common::ringwatch_command()
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();

    // a port is never bound with a bad config: the error comes first
    let out = common::ringwatch_command()
        .env("RINGWATCH__HTTP__LISTEN", "127.0.0.1:1")
        .env("RINGWATCH__RULES__CLOCK", "sundial")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn no_personal_data_in_logs_even_at_debug() {
    let d = start_process(&[
        ("RINGWATCH__LOG__LEVEL", "debug"),
        ("RINGWATCH__RULES__CLOCK", "event"),
    ]);
    let mut ws = d.connect().await;
    send(&mut ws, r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q","caller":"+15557654321"}"#).await;
    send(&mut ws, r#"{"type":"callback.promised","ts":1795424400000,"promise_id":"p","queue":"q","due":1,"customer":"Jane Q. Public"}"#).await;
    send(&mut ws, r#"{"type":"callback.promised","ts":1795424400000,"promise_id":"p","queue":"q","due":1,"customer":"Jane Q. Public"}"#).await;
    send(
        &mut ws,
        r#"{"type":"call.offered","ts":"bad","call_id":"c1","queue":"q","caller":"+15557654321"}"#,
    )
    .await;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("event rejected"), "debug logs are on: {logs}");
    assert!(
        !logs.contains("7654321") && !logs.contains("Jane"),
        "{logs}"
    );
}

#[tokio::test]
async fn sigterm_drains_connections_and_exits_cleanly() {
    let mut d = start_process(&[("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "5")]);
    let mut ws = d.connect().await;
    assert_eq!(
        send(&mut ws, r#"{"type":"clock","ts":1}"#).await["accepted"],
        1
    );
    common::signal(d.pid(), "TERM");
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(Some(f))) = msg {
                return f.code;
            }
        }
        panic!("no close frame");
    })
    .await
    .unwrap();
    assert_eq!(close, CloseCode::Away);
    let status = d.wait_exit(Duration::from_secs(6));
    assert!(status.success(), "{status:?}");
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("ringwatch stopped"), "{logs}");
}

#[tokio::test]
async fn shutdown_respects_the_drain_deadline() {
    // A client that never answers the close handshake cannot hold the daemon.
    // Asserted on what the daemon says it did, not on a stopwatch: the
    // drain hit its deadline, forced the rest, and still stopped cleanly.
    let mut d = start_process(&[("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "1")]);
    let _silent = d.connect().await;
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    let logs = d.log_lines().join("\n");
    assert!(
        logs.contains("drain deadline reached with ingest connections still open"),
        "{logs}"
    );
    assert!(logs.contains("ringwatch stopped"), "{logs}");
}

#[tokio::test]
async fn per_agent_series_only_when_enabled_and_capped() {
    let frames = [
        r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q"}"#,
        r#"{"type":"call.answered","ts":1795424405000,"call_id":"c1","agent":"ann"}"#,
        r#"{"type":"call.offered","ts":1795424400000,"call_id":"c2","queue":"q"}"#,
        r#"{"type":"call.answered","ts":1795424430000,"call_id":"c2","agent":"bob"}"#,
        r#"{"type":"call.hold_started","ts":1795424431000,"call_id":"c2"}"#,
        r#"{"type":"call.ended","ts":1795424460000,"call_id":"c2"}"#,
    ];
    let off = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = off.connect().await;
    send(&mut ws, &format!("[{}]", frames.join(","))).await;
    assert!(!off.metrics_text().await.contains("ringwatch_agent_"));

    let on = start(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__METRICS__PER_AGENT", "true"),
        ("RINGWATCH__METRICS__MAX_AGENTS", "1"),
    ]);
    let mut ws = on.connect().await;
    send(&mut ws, &format!("[{}]", frames.join(","))).await;
    let m = on.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_agent_calls_answered_total{agent="ann"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_agent_calls_answered_total{agent="other"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_agent_calls_answered_late_total{agent="other"}"#),
        1.0
    );
    // bob's call ended on hold after 29 s: a breach, attributed to him (folded)
    assert_eq!(
        m.value(r#"ringwatch_agent_hold_limit_exceeded_total{agent="other"}"#),
        1.0
    );
    assert!(m
        .get(r#"ringwatch_agent_calls_answered_total{agent="bob"}"#)
        .is_none());
    // one event named bob (the hold_started carries no agent)
    assert_eq!(
        m.value(r#"ringwatch_label_values_folded_total{label="agent"}"#),
        1.0
    );
}

#[tokio::test]
async fn capacity_rejections_are_counted_and_logged_once_per_interval() {
    // The process: the test reads its warning lines.
    let d = start_process(&[
        ("RINGWATCH__RULES__MAX_CALLS", "2"),
        ("RINGWATCH__RULES__MAX_PROMISES", "1"),
    ]);
    let mut ws = d.connect().await;
    // On the wall clock: stamped now, promises due in three hours.
    let now = now_ms();
    let offers: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"type":"call.offered","ts":"{}","call_id":"cap-{i}","queue":"sales"}}"#,
                rfc3339(now + i)
            )
        })
        .collect();
    let ack = send(&mut ws, &format!("[{}]", offers.join(","))).await;
    assert_eq!(ack["accepted"], 2, "{ack}");
    let rejected = ack["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3);
    assert!(rejected.iter().all(|r| r["reason"] == "capacity"), "{ack}");
    let promises: Vec<String> = (0..3)
        .map(|i| {
            format!(
                r#"{{"type":"callback.promised","ts":"{}","promise_id":"p-{i}","queue":"sales","due":"{}"}}"#,
                rfc3339(now + 10 + i),
                rfc3339(now + 3 * 3_600_000)
            )
        })
        .collect();
    let ack = send(&mut ws, &format!("[{}]", promises.join(","))).await;
    assert_eq!(ack["accepted"], 1, "{ack}");
    d.eventually(r#"ringwatch_events_rejected_total{reason="capacity"}"#, 5.0)
        .await;
    // Five rejections in two frames, within one interval: one warning.
    let warnings: Vec<String> = d
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("capacity reached"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("\"level\":\"WARN\""),
        "{}",
        warnings[0]
    );
}
