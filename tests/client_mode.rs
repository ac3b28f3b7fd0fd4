//! Client mode end to end: the real daemon connects out to a WebSocket
//! "platform" that this test runs. The platform streams the golden scenarios,
//! drops the connection mid-stream and resends from the last acknowledged
//! frame, plays dead, serves wss:// with a private CA, and sees the daemon
//! close cleanly on shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{scenario, Endpoints, Process, Samples};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const TOKEN: &str = "t0ken-never-logged";
const SUBSCRIBE: &str = r#"{"action":"subscribe","topics":["calls"]}"#;
const WAIT: Duration = Duration::from_secs(20);

/// The platform's side of one connection, with what the upgrade carried.
struct Peer<S> {
    ws: WebSocketStream<S>,
    /// Path and query of the upgrade request.
    target: String,
    authorization: Option<String>,
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Peer<S> {
    let seen = Arc::new(Mutex::new((String::new(), None)));
    let record = Arc::clone(&seen);
    // The Result type is tungstenite's callback signature.
    #[allow(clippy::result_large_err)]
    let record_request = move |req: &Request, resp: Response| {
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        *record.lock().unwrap() = (req.uri().to_string(), auth);
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, record_request)
        .await
        .expect("WebSocket upgrade from ringwatch");
    let (target, authorization) = seen.lock().unwrap().clone();
    Peer {
        ws,
        target,
        authorization,
    }
}

async fn accept(listener: &TcpListener) -> Peer<tokio::net::TcpStream> {
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("ringwatch connects")
        .unwrap();
    upgrade(stream).await
}

/// The next text frame (pings are answered by tungstenite while we read).
async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> String {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a text frame")
}

async fn ack<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> serde_json::Value {
    serde_json::from_str(&next_text(ws).await).expect("ack is JSON")
}

/// Send every frame at once (pipelined), then read acknowledgements in
/// order; with `stop_after`, return after that many (the caller then drops
/// the connection with the rest unread).
async fn stream<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frames: &[String],
    stop_after: Option<usize>,
) -> Vec<serde_json::Value> {
    for f in frames {
        ws.feed(Message::text(f.as_str())).await.unwrap();
    }
    ws.flush().await.unwrap();
    let want = stop_after.unwrap_or(frames.len());
    let mut acks = Vec::new();
    while acks.len() < want {
        acks.push(ack(ws).await);
    }
    acks
}

fn sum(acks: &[serde_json::Value], key: &str) -> u64 {
    acks.iter()
        .map(|a| match a[key].as_array() {
            Some(rejected) => rejected.len() as u64,
            None => a[key].as_u64().unwrap(),
        })
        .sum()
}

/// Scrape until `selector` is at least `min` (a counter still climbing).
async fn at_least(d: &Endpoints, selector: &str, min: f64) -> f64 {
    let mut got = None;
    for _ in 0..250 {
        got = d.metrics().await.get(selector);
        if got.is_some_and(|v| v >= min) {
            return got.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{selector}: expected at least {min}, last saw {got:?}");
}

fn total(m: &Samples, family: &str) -> f64 {
    m.0.iter()
        .filter(|(k, _)| k.starts_with(&format!("{family}{{")) || k.as_str() == family)
        .map(|(_, v)| v)
        .sum()
}

/// Environment for a source named `feed` at `url`, reconnecting quickly.
fn source_env(url: &str) -> Vec<(String, String)> {
    [
        ("RINGWATCH__SOURCES__FEED__URL", url),
        ("RINGWATCH__SOURCES__FEED__TOKEN", TOKEN),
        ("RINGWATCH__SOURCES__FEED__SUBSCRIBE", SUBSCRIBE),
        ("RINGWATCH__CLIENT__BACKOFF_INITIAL", "0.05"),
        ("RINGWATCH__CLIENT__BACKOFF_MAX", "0.2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The binary: every test here reads what the daemon logged about its
/// sources (and the shutdown one sends SIGTERM).
fn start(env: &[(String, String)]) -> Process {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::start_process(&env)
}

fn log_json(d: &Process) -> Vec<serde_json::Value> {
    d.log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn golden_scenarios_over_a_dropped_and_resumed_platform_stream() {
    for name in ["three_rings", "hold_limit", "callbacks"] {
        let mut s = scenario(name);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The query stands for credentials some platforms take in the URL.
        s.env
            .extend(source_env(&format!("ws://{addr}/stream?tenant=t1&key=k")));
        // The callbacks story spans 25 hours of event time.
        s.env
            .push(("RINGWATCH__RULES__DEDUP_WINDOW".into(), "172800".into()));
        let d = start(&s.env);
        let n = s.frames.len();

        // First connection: the upgrade carries the token, then the
        // subscription comes; halfway through the acks the platform drops
        // the TCP connection with frames and acks still in flight.
        let mut first = accept(&listener).await;
        assert_eq!(first.target, "/stream?tenant=t1&key=k");
        assert_eq!(
            first.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(next_text(&mut first.ws).await, SUBSCRIBE);
        let acked = n / 2;
        let acks1 = stream(&mut first.ws, &s.frames, Some(acked)).await;
        drop(first);

        // ringwatch reconnects and subscribes again; the platform resends
        // everything after the last acknowledged frame.
        let mut second = accept(&listener).await;
        assert_eq!(next_text(&mut second.ws).await, SUBSCRIBE);
        let acks2 = stream(&mut second.ws, &s.frames[acked..], None).await;

        let m = d.metrics().await;
        s.check(&m, "client mode, dropped and resumed");
        // Frames applied before the drop whose acks were lost come back as
        // duplicates; every event is applied exactly once.
        let (acc1, acc2, dup2) = (
            sum(&acks1, "accepted"),
            sum(&acks2, "accepted"),
            sum(&acks2, "duplicates"),
        );
        eprintln!("{name}: n={n} acked={acked} acc2={acc2} dup2={dup2}");
        assert_eq!(acc1, acked as u64, "{name}");
        assert_eq!(
            sum(&acks1, "duplicates") + sum(&acks2, "rejected"),
            0,
            "{name}"
        );
        assert_eq!(acc2 + dup2, (n - acked) as u64, "{name}");
        assert_eq!(
            total(&m, "ringwatch_events_received_total"),
            n as f64,
            "{name}"
        );
        assert_eq!(
            m.value("ringwatch_events_duplicate_total"),
            dup2 as f64,
            "{name}"
        );
        let src = |family: &str| m.value(&format!(r#"{family}{{source="feed"}}"#));
        assert_eq!(
            src("ringwatch_source_frames_total"),
            (n as u64 + dup2) as f64
        );
        assert_eq!(src("ringwatch_source_connection_attempts_total"), 2.0);
        assert_eq!(src("ringwatch_source_connection_failures_total"), 0.0);
        assert_eq!(src("ringwatch_source_reconnects_total"), 1.0);
        assert_eq!(src("ringwatch_source_connected"), 1.0);
        assert_eq!(
            total(&m, "ringwatch_source_disconnects_total"),
            1.0,
            "{name}: one disconnect"
        );
        assert_eq!(
            m.value(r#"ringwatch_source_disconnects_total{source="feed",reason="idle_timeout"}"#),
            0.0
        );
        let last = src("ringwatch_source_last_event_timestamp_seconds");
        let now = ringwatch::clock::wall_now() as f64 / 1000.0;
        assert!(last > now - 600.0 && last <= now, "{last} vs {now}");
        assert_eq!(m.value("ringwatch_ingest_connections"), 1.0);

        // Connects and disconnects are logged with the URL stripped of its
        // query; the token never appears anywhere.
        let logs = log_json(&d);
        let connected: Vec<_> = logs
            .iter()
            .filter(|l| l["message"] == "source connected")
            .collect();
        assert_eq!(connected.len(), 2, "{logs:?}");
        assert_eq!(connected[0]["source"], "feed");
        assert_eq!(connected[0]["url"], format!("ws://{addr}/stream"));
        assert!(logs.iter().any(|l| l["message"] == "source disconnected"));
        let raw = d.log_lines().join("\n");
        assert!(!raw.contains(TOKEN) && !raw.contains("key=k"), "{raw}");
    }
}

#[tokio::test]
async fn a_dead_platform_is_detected_and_reconnected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut env = source_env(&format!("ws://{addr}/stream"));
    env.push((
        "RINGWATCH__SOURCES__FEED__PING_INTERVAL".into(),
        "0.2".into(),
    ));
    env.push(("RINGWATCH__SOURCES__FEED__IDLE_TIMEOUT".into(), "1".into()));
    env.push(("RINGWATCH__RULES__CLOCK".into(), "event".into()));
    let d = start(&env);

    // The first connection goes silent: it is never read again, so ringwatch's
    // pings are never answered (the TCP connection itself stays up).
    let mut dead = accept(&listener).await;
    assert_eq!(next_text(&mut dead.ws).await, SUBSCRIBE);

    let mut live = accept(&listener).await;
    assert_eq!(next_text(&mut live.ws).await, SUBSCRIBE);
    let offer =
        r#"{"event_id":"d1","type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q"}"#;
    let acks = stream(&mut live.ws, &[offer.to_string()], None).await;
    assert_eq!(acks[0]["accepted"], 1);
    // Keep answering pings on the live connection.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = live.ws.next().await {} });

    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_source_disconnects_total{source="feed",reason="idle_timeout"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_source_reconnects_total{source="feed"}"#),
        1.0
    );
    assert_eq!(m.value(r#"ringwatch_source_connected{source="feed"}"#), 1.0);
    assert_eq!(m.value(r#"ringwatch_calls_offered_total{queue="q"}"#), 1.0);
    let logs = log_json(&d);
    assert!(
        logs.iter()
            .any(|l| l["message"] == "source disconnected" && l["reason"] == "idle_timeout"),
        "{logs:?}"
    );
    reader.abort();
    drop(dead);
}

#[tokio::test]
async fn shutdown_acknowledges_what_it_took_in_and_closes_cleanly() {
    let s = scenario("hold_limit");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut env = s.env.clone();
    env.extend(source_env(&format!("ws://{addr}/stream")));
    let mut d = start(&env);
    let mut peer = accept(&listener).await;
    assert_eq!(next_text(&mut peer.ws).await, SUBSCRIBE);

    // Everything goes out at once; once the first ack is back, SIGTERM.
    for f in &s.frames {
        peer.ws.feed(Message::text(f.as_str())).await.unwrap();
    }
    peer.ws.flush().await.unwrap();
    let mut acks = vec![ack(&mut peer.ws).await];
    common::signal(d.pid(), "TERM");
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match peer.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    acks.push(serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap())
                }
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected acks then a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame");
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Away);
    assert!(close.reason.contains("shutting down"), "{}", close.reason);
    // Reading on sends our half of the close handshake.
    while let Some(Ok(_)) = peer.ws.next().await {}
    assert!(d.wait_exit(WAIT).success());
    assert!(acks.iter().all(|a| a["accepted"] == 1), "{acks:?}");

    // Every frame the source took in was acknowledged before the close. (The
    // log reader thread may still be draining the pipe: wait for the end.)
    let mut logs = log_json(&d);
    for _ in 0..250 {
        if logs.iter().any(|l| l["message"] == "ringwatch stopped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        logs = log_json(&d);
    }
    let bye = logs
        .iter()
        .find(|l| l["message"] == "source disconnected")
        .unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!(bye["reason"], "shutdown");
    assert_eq!(bye["frames"], acks.len() as u64, "{bye}");
    assert!(logs.iter().any(|l| l["message"] == "ringwatch stopped"));
}

#[tokio::test]
async fn wss_with_a_private_ca_and_an_untrusted_platform_refused() {
    // A private CA and a server certificate for 127.0.0.1 signed by it.
    let (ca_pem, acceptor) = common::private_ca_acceptor();
    let ca_file =
        std::env::temp_dir().join(format!("ringwatch-test-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept every connection; only the ones whose TLS handshake succeeds
    // (the source that trusts the CA) reach the test.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    let _ = tx.send(upgrade(stream).await).await;
                }
            });
        }
    });

    let s = scenario("three_rings");
    let mut env = s.env.clone();
    env.extend(source_env(&format!(
        "wss://127.0.0.1:{}/stream",
        addr.port()
    )));
    env.push((
        "RINGWATCH__SOURCES__FEED__CA_FILE".into(),
        ca_file.to_str().unwrap().into(),
    ));
    env.push((
        "RINGWATCH__SOURCES__UNTRUSTED__URL".into(),
        format!("wss://127.0.0.1:{}/stream", addr.port()),
    ));
    let d = start(&env);

    let mut peer = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        peer.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(next_text(&mut peer.ws).await, SUBSCRIBE);
    let acks = stream(&mut peer.ws, &s.frames, None).await;
    assert_eq!(sum(&acks, "accepted"), s.frames.len() as u64);
    s.check(&d.metrics().await, "over wss://");

    // The source without the CA file never gets through TLS: counted as
    // failures, never connected, and warned about.
    at_least(
        &d,
        r#"ringwatch_source_connection_failures_total{source="untrusted"}"#,
        1.0,
    )
    .await;
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_source_connected{source="untrusted"}"#),
        0.0
    );
    assert_eq!(m.value(r#"ringwatch_source_connected{source="feed"}"#), 1.0);
    let logs = log_json(&d);
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .unwrap_or("")
            .contains("source connection failed")
            && l["source"] == "untrusted"
            && l["level"] == "WARN"),
        "{logs:?}"
    );
    server.abort();
    std::fs::remove_file(ca_file).ok();
}

#[test]
fn bad_source_configuration_exits_64_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("ringwatch-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sources.toml");
    let check = |env: &[(&str, &str)]| {
        let out = common::ringwatch_command()
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&file)
            .arg("check-config")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    std::fs::write(
        &file,
        "[sources.platform]\nurl = \"wss://events.example.com/v1/stream?key=abc\"\n\
         subscribe = '{\"action\":\"subscribe\"}'\nping_interval = 5\n",
    )
    .unwrap();
    let (code, err) = check(&[("RINGWATCH__SOURCES__PLATFORM__TOKEN", "s3cret")]);
    assert_eq!(code, Some(0), "{err}");

    let (code, err) = check(&[(
        "RINGWATCH__SOURCES__PLATFORM__TOKEN_FILE",
        "/nonexistent/token",
    )]);
    assert_eq!(code, Some(64));
    assert!(err.contains("sources.platform.token_file"), "{err}");

    let (code, err) = check(&[("RINGWATCH__SOURCES__PLATFORM__IDLE_TIMEOUT", "2")]);
    assert_eq!(code, Some(64));
    assert!(err.contains("sources.platform.idle_timeout"), "{err}");

    let (code, err) = check(&[("RINGWATCH__SOURCES__PLATFORM__PORT", "1")]);
    assert_eq!(code, Some(64));
    assert!(err.contains("port"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
