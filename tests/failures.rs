//! What the daemon does when it can no longer be trusted, end to end on the
//! real process with test-only fault injection (`RINGWATCH_FAULT`, debug
//! builds only): a pipeline panic, a failed journal fsync, a failed journal
//! write (a full disk). Each must show in `/readyz`, never show an event in
//! `/metrics` that was not acknowledged, and (for the fatal ones) end the
//! process with a non-zero status; a restart recovers every acknowledged
//! event. Process-level on purpose: exit codes are the point.

mod common;

use std::time::Duration;

use common::{close_frame, send, start_process, start_process_in, Process};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const EVENT_CLOCK: (&str, &str) = ("RINGWATCH__RULES__CLOCK", "event");

/// A frame offering calls `from..from+n` to queue `q` (event clock: fixed dates).
fn offers(from: usize, n: usize) -> String {
    let events: Vec<String> = (from..from + n)
        .map(|i| {
            format!(
                r#"{{"type":"call.offered","ts":"2026-03-02T09:00:{:02}Z","event_id":"e-{i}","call_id":"c-{i}","queue":"q"}}"#,
                i % 60
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

async fn offered(d: &Process) -> f64 {
    d.metrics()
        .await
        .get(r#"ringwatch_calls_offered_total{queue="q"}"#)
        .unwrap_or(0.0)
}

async fn readyz(d: &Process) -> (u16, String) {
    d.get("/readyz").await
}

/// Send a frame whose journal write or fsync fails: the connection is
/// closed with 1011 and no acknowledgement comes.
async fn refused(d: &Process, frame: &str) {
    let mut ws = d.connect().await;
    ws.send(Message::text(frame)).await.unwrap();
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, CloseCode::Error, "{reason}");
}

#[tokio::test]
async fn a_pipeline_panic_turns_readyz_503_and_exits_non_zero() {
    let data = tempfile::tempdir().unwrap();
    let mut d = start_process_in(
        data.path(),
        &[
            EVENT_CLOCK,
            ("RINGWATCH_FAULT", "pipeline_panic@2"),
            ("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "3"),
        ],
    );
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(0, 3)).await["accepted"], 3);
    // An idle connection that never answers the close handshake keeps the
    // drain going until its deadline, so the 503 can be seen.
    let _idle = d.connect().await;
    ws.send(Message::text(offers(3, 2))).await.unwrap();
    let (status, body) = readyz_until(&d, 503).await;
    assert_eq!((status, body.as_str()), (503, "not ready: failed\n"));
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(70), "EX_SOFTWARE");
    let logs = d.log_lines().join("\n");
    assert!(
        logs.contains("the pipeline panicked: fault injection: pipeline_panic"),
        "{logs}"
    );
    // The restart replays the journal: the acknowledged frame is there. The
    // frame the pipeline died on was journaled before it was applied, so it
    // is replayed too: its sender never got an ack and resends it, and the
    // event ids make the resend duplicates.
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    assert_eq!(offered(&d).await, 5.0);
    let mut ws = d.connect().await;
    let ack = send(&mut ws, &offers(3, 2)).await;
    assert_eq!(
        (ack["accepted"].as_u64(), ack["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
}

/// Poll `/readyz` until it answers `want` (the daemon's state changes on
/// another thread); panics after 10 s.
async fn readyz_until(d: &Process, want: u16) -> (u16, String) {
    for _ in 0..500 {
        let got = readyz(d).await;
        if got.0 == want {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz never answered {want}");
}

#[tokio::test]
async fn a_failed_fsync_stops_acknowledgements_and_exits_non_zero() {
    let data = tempfile::tempdir().unwrap();
    let mut d = start_process_in(
        data.path(),
        &[
            EVENT_CLOCK,
            ("RINGWATCH__DURABILITY__FSYNC", "batch"),
            // Every write is fsynced before its answer: fsyncs 1 and 2 work.
            ("RINGWATCH_FAULT", "journal_sync@3.."),
            ("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "3"),
        ],
    );
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(0, 2)).await["accepted"], 2);
    assert_eq!(send(&mut ws, &offers(2, 2)).await["accepted"], 2);
    let _idle = d.connect().await;
    refused(&d, &offers(4, 3)).await;
    assert_eq!(readyz(&d).await, (503, "not ready: failed\n".to_string()));
    // What is shown is what was acknowledged: the refused frame was never
    // applied. The daemon is draining: no new connection is taken.
    assert_eq!(offered(&d).await, 4.0);
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.ingest))
            .await
            .is_err()
    );
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(74), "EX_IOERR");
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("journal fsync failed"), "{logs}");
    assert!(!logs.contains("final snapshot written"), "{logs}");
    // The next start recovers from what is on disk: exactly the acks.
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    assert_eq!(offered(&d).await, 4.0);
    assert_eq!(readyz(&d).await.0, 200);
}

/// Under the interval policy the fsync runs on a thread of its own, beside
/// the writes: its failure is as fatal as under batch.
#[tokio::test]
async fn a_failed_interval_fsync_is_fatal_too() {
    let data = tempfile::tempdir().unwrap();
    let mut d = start_process_in(
        data.path(),
        &[
            EVENT_CLOCK,
            ("RINGWATCH__DURABILITY__FSYNC_INTERVAL", "0.05"),
            ("RINGWATCH_FAULT", "journal_sync@1.."),
            ("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "3"),
        ],
    );
    let mut ws = d.connect().await;
    // Acknowledged once written; the fsync 50 ms later fails.
    assert_eq!(send(&mut ws, &offers(0, 2)).await["accepted"], 2);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).code(),
        Some(74),
        "EX_IOERR"
    );
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("journal fsync failed"), "{logs}");
    assert!(!logs.contains("final snapshot written"), "{logs}");
    // The pages are still in the page cache (no power was lost): the next
    // start recovers the acknowledged frame.
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    assert_eq!(offered(&d).await, 2.0);
}

#[tokio::test]
async fn a_failed_write_refuses_the_frame_applies_nothing_and_recovers() {
    let data = tempfile::tempdir().unwrap();
    let mut d = start_process_in(
        data.path(),
        &[
            EVENT_CLOCK,
            // Writes 2 to 20 fail as on a full disk (the frames below, and
            // the probes the daemon writes every 250 ms while it cannot
            // write), then space is back.
            ("RINGWATCH_FAULT", "journal_write@2..20"),
        ],
    );
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(0, 2)).await["accepted"], 2);
    refused(&d, &offers(2, 50)).await;
    // Not ready while the journal takes no writes, but alive: no restart loop.
    assert_eq!(
        readyz(&d).await,
        (503, "not ready: journal not writable\n".to_string())
    );
    assert_eq!(d.get("/healthz").await.0, 200);
    refused(&d, &offers(2, 50)).await;
    assert_eq!(offered(&d).await, 2.0, "refused frames are not applied");
    // The disk has room again: a probe write succeeds and the daemon is
    // ready again without waiting for a frame; the sender resends.
    readyz_until(&d, 200).await;
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(2, 50)).await["accepted"], 50);
    assert_eq!(offered(&d).await, 52.0);
    let errors = d
        .metrics()
        .await
        .get(r#"ringwatch_journal_errors_total{op="write"}"#);
    assert_eq!(errors, Some(19.0), "writes 2 to 20, each tried once");
    assert_eq!(d.terminate(Duration::from_secs(10)).code(), Some(0));
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    assert_eq!(offered(&d).await, 52.0);
}

#[tokio::test]
async fn a_forced_drain_still_writes_the_final_snapshot() {
    let data = tempfile::tempdir().unwrap();
    let mut d = start_process_in(
        data.path(),
        &[EVENT_CLOCK, ("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "1")],
    );
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(0, 3)).await["accepted"], 3);
    // Holds its pipeline handle past the deadline: it never answers the
    // close handshake.
    let _silent = d.connect().await;
    assert_eq!(d.terminate(Duration::from_secs(20)).code(), Some(0));
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("forcing"), "{logs}");
    assert!(logs.contains("final snapshot written"), "{logs}");
    // The next start loads that snapshot and has nothing to replay.
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    let m = d.metrics().await;
    assert_eq!(m.get("ringwatch_recovery_replayed_records"), Some(0.0));
    assert_eq!(
        m.get(r#"ringwatch_calls_offered_total{queue="q"}"#),
        Some(3.0)
    );
}

#[tokio::test]
async fn shutdown_cancels_an_alertmanager_post_in_flight() {
    // An Alertmanager that accepts the connection and never answers.
    let am = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", am.local_addr().unwrap());
    let (posted_tx, posted) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (conn, _) = am.accept().await.unwrap();
        let _ = posted_tx.send(());
        // Keep it open, silent, for the rest of the test.
        std::future::pending::<()>().await;
        drop(conn);
    });
    let mut d = start_process(&[
        ("RINGWATCH__ALERTS__ALERTMANAGER_URL", url.as_str()),
        ("RINGWATCH__ALERTS__INTERVAL", "0.1"),
        ("RINGWATCH__ALERTS__TIMEOUT", "60"),
        ("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "30"),
    ]);
    // On the wall clock: a caller ringing for 30 s already is past 3 rings.
    let offered = common::rfc3339(common::now_ms() - 30_000);
    let mut ws = d.connect().await;
    let frame =
        format!(r#"{{"type":"call.offered","ts":"{offered}","call_id":"ringing","queue":"q"}}"#);
    assert_eq!(send(&mut ws, &frame).await["accepted"], 1);
    drop(ws);
    posted.await.unwrap();
    assert_eq!(d.terminate(Duration::from_secs(20)).code(), Some(0));
    let logs = d.log_lines().join("\n");
    // Cancelled at once on shutdown, not aborted at the 30 s deadline.
    assert!(!logs.contains("task aborted"), "{logs}");
    assert!(logs.contains("ringwatch stopped"), "{logs}");
}

#[tokio::test]
async fn a_journal_writer_panic_is_fatal_too() {
    let data = tempfile::tempdir().unwrap();
    let mut d = start_process_in(
        data.path(),
        &[EVENT_CLOCK, ("RINGWATCH_FAULT", "writer_panic@2")],
    );
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(0, 1)).await["accepted"], 1);
    refused(&d, &offers(1, 1)).await;
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(70));
    let logs = d.log_lines().join("\n");
    assert!(
        logs.contains("the journal writer thread panicked"),
        "{logs}"
    );
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    assert_eq!(offered(&d).await, 1.0);
}

#[tokio::test]
async fn a_frame_that_panics_the_engine_does_not_make_a_crash_loop() {
    let data = tempfile::tempdir().unwrap();
    // The pipeline dies applying the second frame, after journaling it.
    let mut d = start_process_in(
        data.path(),
        &[EVENT_CLOCK, ("RINGWATCH_FAULT", "pipeline_panic@2")],
    );
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(0, 3)).await["accepted"], 3);
    refused_or_dropped(&mut ws, &offers(3, 2)).await;
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(70));
    // A frame that panics the engine panics its replay too: recovery cuts
    // it off (it was never acknowledged) instead of failing every start.
    let mut d = start_process_in(
        data.path(),
        &[EVENT_CLOCK, ("RINGWATCH_FAULT", "replay_panic@2")],
    );
    assert_eq!(offered(&d).await, 3.0);
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("could not be replayed"), "{logs}");
    let m = d.metrics().await;
    assert!(m.value("ringwatch_recovery_cut_bytes") > 0.0);
    // Its sender resends it; it is new to this journal.
    let mut ws = d.connect().await;
    assert_eq!(send(&mut ws, &offers(3, 2)).await["accepted"], 2);
    assert_eq!(d.terminate(Duration::from_secs(10)).code(), Some(0));
    let d = start_process_in(data.path(), &[EVENT_CLOCK]);
    assert_eq!(offered(&d).await, 5.0);
}

/// Send a frame that the daemon will never acknowledge (it dies on it).
async fn refused_or_dropped(ws: &mut common::Ws, frame: &str) {
    use futures_util::StreamExt;
    ws.send(Message::text(frame)).await.unwrap();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => panic!("acknowledged: {t}"),
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
