//! The resend protocol of docs/events.md against the real ingest endpoint: a
//! pipelining sender that loses its connection several times (dropping TCP
//! with acknowledgements unread) and resends every unacknowledged frame ends
//! with exactly the figures of a clean run, every event applied once.

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::{start, Endpoints, Samples};
use futures_util::{SinkExt, StreamExt};
use ringwatch::sim::model::Model;
use ringwatch::sim::send::{send, Pace};
use ringwatch::sim::{events, settle_time, WireEvent};
use tokio_tungstenite::tungstenite::Message;

/// Events per frame: every frame holds exactly this many, so the daemon's
/// frame counter converts to events.
const BATCH: usize = 10;
/// Frames sent ahead of their acknowledgements.
const WINDOW: usize = 8;

/// An 8-hour day on three queues, padded with `clock` heartbeats (at the
/// final heartbeat's time, so they change nothing) to whole frames.
fn day() -> Vec<WireEvent> {
    let model = Model {
        seed: 7,
        duration: 8 * 3_600_000,
        ..Model::default()
    };
    let stories = model.stories();
    let mut evs = events(&model, &stories, Some(settle_time(&stories, 86_400_000)));
    let last = evs.last().unwrap().ts;
    let mut pad = 0;
    while !evs.len().is_multiple_of(BATCH) {
        evs.push(WireEvent {
            ts: last,
            json: format!(r#"{{"event_id":"pad-{pad}","type":"clock","ts":{last}}}"#),
        });
        pad += 1;
    }
    evs
}

fn frames(evs: &[WireEvent]) -> Vec<String> {
    evs.chunks(BATCH)
        .map(|c| {
            let body: Vec<&str> = c.iter().map(|e| e.json.as_str()).collect();
            format!("[{}]", body.join(","))
        })
        .collect()
}

/// The figures that events determine (not ringwatch's own telemetry).
fn figures(m: &Samples) -> BTreeMap<String, f64> {
    const FAMILIES: [&str; 13] = [
        "ringwatch_calls_",
        "ringwatch_time_to_answer_",
        "ringwatch_answer_rings",
        "ringwatch_hold",
        "ringwatch_abandon_wait_",
        "ringwatch_callback",
        "ringwatch_oldest_wait_",
        "ringwatch_longest_hold_",
        "ringwatch_events_received_total",
        "ringwatch_events_rejected_total",
        "ringwatch_label_values_folded_total",
        "ringwatch_clock_seconds",
        "ringwatch_dedup_ids",
    ];
    m.0.iter()
        .filter(|(k, _)| FAMILIES.iter().any(|f| k.starts_with(f)))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn total(m: &Samples, family: &str) -> f64 {
    m.0.iter()
        .filter(|(k, _)| k.starts_with(&format!("{family}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// How a connection ends.
#[derive(Clone, Copy, Debug)]
enum Drop {
    /// Abruptly, after this many acks on it, with the window's other acks
    /// unread.
    AfterAcks(usize),
    /// Abruptly, after this many acks, once the daemon has taken in every
    /// frame sent: the window's acks are lost for sure, so its resends must
    /// be duplicates. First connection only (the daemon's frame counter
    /// tells "taken in" only while no frame was lost before).
    WhenAllTakenIn(usize),
    /// Never: the sender finishes on this connection.
    Never,
}

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    acks: u64,
    frames_written: u64,
    connections: u64,
}

/// The sender of docs/events.md ("Resending after a reconnect"): keep each
/// frame until its ack, resend every unacknowledged one on the next
/// connection, in order, before anything new.
async fn resending_sender(d: &Endpoints, frames: &[String], plan: &[Drop]) -> Tally {
    let mut t = Tally::default();
    let mut first_unacked = 0;
    let mut plan = plan.iter().copied();
    while first_unacked < frames.len() {
        let drop_plan = plan.next().unwrap_or(Drop::Never);
        let mut ws = d.connect().await;
        t.connections += 1;
        let mut next = first_unacked;
        let mut in_flight = VecDeque::new();
        let mut acks_here = 0;
        loop {
            while next < frames.len() && in_flight.len() < WINDOW {
                ws.send(Message::text(frames[next].as_str())).await.unwrap();
                in_flight.push_back(next);
                next += 1;
                t.frames_written += 1;
            }
            match drop_plan {
                Drop::AfterAcks(n) if acks_here == n => break,
                Drop::WhenAllTakenIn(n) if acks_here == n => {
                    assert_eq!(
                        t.connections, 1,
                        "WhenAllTakenIn is for the first connection"
                    );
                    d.eventually("ringwatch_ingest_frames_total", t.frames_written as f64)
                        .await;
                    break;
                }
                _ => {}
            }
            let ack: serde_json::Value = loop {
                match ws.next().await.expect("an ack").expect("an ack") {
                    Message::Text(a) => break serde_json::from_str(a.as_str()).unwrap(),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => panic!("expected an ack, got {other:?}"),
                }
            };
            let frame = in_flight
                .pop_front()
                .expect("an ack answers a frame in flight");
            assert_eq!(frame, first_unacked, "acks come in frame order");
            first_unacked += 1;
            acks_here += 1;
            t.acks += 1;
            t.accepted += ack["accepted"].as_u64().unwrap();
            t.duplicates += ack["duplicates"].as_u64().unwrap();
            t.rejected += ack["rejected"].as_array().unwrap().len() as u64;
            if first_unacked == frames.len() {
                break;
            }
        }
        // Dropping the stream closes the socket with acks unread: the kernel
        // resets the connection, as when a network path dies.
        drop(ws);
    }
    t
}

#[tokio::test]
async fn resending_after_abrupt_disconnects_gives_the_clean_run_figures() {
    let evs = day();
    let frames = frames(&evs);
    let n = evs.len() as u64;
    assert!(
        frames.len() > 500,
        "a day of traffic: {} frames",
        frames.len()
    );
    let env = [("RINGWATCH__RULES__CLOCK", "event")];

    let clean = start(&env);
    let url = format!("ws://{}/v1/events", clean.ingest);
    let sent = send(&url, None, &evs, BATCH, Pace::Unpaced, |_| {})
        .await
        .unwrap();
    assert_eq!((sent.accepted, sent.duplicates, sent.rejected), (n, 0, 0));
    let want = figures(&clean.metrics().await);
    drop(clean);

    let d = start(&env);
    let k = frames.len() / 10;
    let plan = [
        Drop::WhenAllTakenIn(k),
        Drop::AfterAcks(k / 2),
        // right after a reconnect: the resends themselves are cut off
        Drop::AfterAcks(1),
        Drop::AfterAcks(0),
        Drop::AfterAcks(2 * k),
        Drop::AfterAcks(3),
        Drop::AfterAcks(k + 7),
    ];
    let t = resending_sender(&d, &frames, &plan).await;
    eprintln!("{t:?}");
    assert_eq!(t.connections, plan.len() as u64 + 1, "{t:?}");
    let m = d.metrics().await;

    // Every figure equals the clean run's.
    let got = figures(&m);
    assert!(want.len() > 200, "{} figures compared", want.len());
    let differ: Vec<String> = want
        .iter()
        // Empty quantile windows are NaN in both runs: that is equal here.
        .filter(|(k, v)| {
            !got.get(*k)
                .is_some_and(|g| g == *v || (g.is_nan() && v.is_nan()))
        })
        .map(|(k, v)| format!("{k}: clean {v}, resumed {:?}", got.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "differs from the clean run:\n{}",
        differ.join("\n")
    );
    assert_eq!(got.len(), want.len());

    // Each frame was acknowledged exactly once; across those acks every
    // event is accepted or a duplicate of one applied before its ack was lost.
    assert_eq!(t.acks, frames.len() as u64);
    assert_eq!(t.accepted + t.duplicates, n, "{t:?}");
    assert_eq!(t.rejected, 0);
    assert!(t.duplicates >= 1, "lost acks were resent: {t:?}");
    // The daemon's side: every event it read, resends included, was applied
    // once or counted as a duplicate; none is missing or counted twice.
    let received = total(&m, "ringwatch_events_received_total");
    let duplicates = m.value("ringwatch_events_duplicate_total");
    let frames_read = m.value("ringwatch_ingest_frames_total");
    assert_eq!(received, n as f64);
    assert_eq!(received + duplicates, frames_read * BATCH as f64);
    assert!(duplicates >= t.duplicates as f64);
    assert!(frames_read <= t.frames_written as f64 && frames_read >= t.acks as f64);
}
