//! Concurrent scrapes of `/metrics` against the real binary: they share
//! pipeline snapshots (fewer snapshots than scrapes), every one of them shows
//! the same figures, and sharing never costs the guarantee that a scrape
//! begun after an acknowledgement includes the acknowledged events.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{send, start, InProcess, Samples};
use futures_util::future::join_all;

const QUEUES: usize = 50;
const CALLS_PER_QUEUE: usize = 4;
const SCRAPERS: usize = 50;

/// One frame of `call.offered` events, `CALLS_PER_QUEUE` in each queue.
fn offers() -> String {
    let events: Vec<String> = (0..QUEUES * CALLS_PER_QUEUE)
        .map(|i| {
            format!(
                r#"{{"event_id":"e{i}","type":"call.offered","ts":1795424400000,"call_id":"c{i}","queue":"q{}"}}"#,
                i % QUEUES
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

async fn scrape(client: &reqwest::Client, d: &InProcess) -> Samples {
    let resp = client.get(d.url("/metrics")).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    Samples::parse(&resp.text().await.unwrap()).expect("valid exposition")
}

/// The call-center figures (every series with a queue): what must not
/// differ between scrapes when no event came in between. Self-metrics do
/// differ: they count the scrapes themselves. Compared bit for bit, since
/// a quantile with no observations is NaN.
fn figures(s: &Samples) -> Vec<(String, u64)> {
    s.0.iter()
        .filter(|(k, _)| k.contains("queue=\""))
        .map(|(k, v)| (k.clone(), v.to_bits()))
        .collect()
}

fn scrapes_and_coalesced(s: &Samples) -> (f64, f64) {
    (
        s.value("ringwatch_scrape_duration_seconds_count"),
        s.value("ringwatch_scrapes_coalesced_total"),
    )
}

#[tokio::test]
async fn fifty_concurrent_scrapes_share_snapshots_and_agree() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    let ack = send(&mut ws, &offers()).await;
    assert_eq!(ack["accepted"], (QUEUES * CALLS_PER_QUEUE) as u64, "{ack}");

    let client = reqwest::Client::new();
    let first = scrape(&client, &d).await;
    let want = figures(&first);
    for q in 0..QUEUES {
        assert_eq!(
            first.value(&format!(r#"ringwatch_calls_offered_total{{queue="q{q}"}}"#)),
            CALLS_PER_QUEUE as f64
        );
    }
    let (scrapes_before, coalesced_before) = scrapes_and_coalesced(&first);

    // Whether fifty scrapes overlap is up to the scheduler: a few rounds
    // make sure some did, without asking how fast anything is.
    let mut rounds = 0;
    let (mut scrapes, mut coalesced) = (0.0, 0.0);
    while rounds < 5 {
        rounds += 1;
        let all = join_all((0..SCRAPERS).map(|_| scrape(&client, &d))).await;
        for s in &all {
            let got = figures(s);
            let differ: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
            assert!(
                differ.is_empty() && got.len() == want.len(),
                "every scrape shows the same figures; these differ: {differ:?}"
            );
        }
        let after = scrape(&client, &d).await;
        (scrapes, coalesced) = scrapes_and_coalesced(&after);
        if coalesced > coalesced_before {
            break;
        }
    }
    // The scrapes taken since `first` (which counts itself only in later
    // scrapes): `first`, the rounds and the scrapes after each round but
    // the last.
    let taken = 1.0 + (rounds * SCRAPERS + rounds - 1) as f64;
    assert_eq!(scrapes - scrapes_before, taken);
    let shared = coalesced - coalesced_before;
    assert!(
        shared >= 1.0,
        "{rounds} rounds of {SCRAPERS} concurrent scrapes never shared a snapshot"
    );
    let snapshots = taken - shared;
    assert!(
        snapshots < taken,
        "{snapshots} snapshots for {taken} scrapes"
    );
}

/// While scrapers keep a snapshot request in flight nearly all the time,
/// a scrape begun after an acknowledgement must not be answered from a
/// request sent before it: each one shows every event acknowledged so far.
#[tokio::test]
async fn a_scrape_after_an_ack_includes_it_while_others_scrape() {
    let d = Arc::new(start(&[("RINGWATCH__RULES__CLOCK", "event")]));
    let mut ws = d.connect().await;
    let stop = Arc::new(AtomicBool::new(false));
    let background: Vec<_> = (0..8)
        .map(|_| {
            let (d, stop) = (Arc::clone(&d), Arc::clone(&stop));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0;
                // Bounded, in case the foreground never says stop.
                while !stop.load(Ordering::Relaxed) && n < 20_000 {
                    let resp = client.get(d.url("/metrics")).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                    resp.bytes().await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();

    let client = reqwest::Client::new();
    for i in 1..=40u32 {
        let frame = format!(
            r#"{{"event_id":"e{i}","type":"call.offered","ts":1795424400000,"call_id":"c{i}","queue":"q"}}"#
        );
        assert_eq!(send(&mut ws, &frame).await["accepted"], 1);
        let m = scrape(&client, &d).await;
        assert_eq!(
            m.value(r#"ringwatch_calls_offered_total{queue="q"}"#),
            f64::from(i),
            "a scrape begun after the ack of event {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for b in background {
        assert!(b.await.unwrap() > 0);
    }
}

/// Reads do not write: fifty concurrent scrapers (and one more after them)
/// add nothing to the journal. On the event clock nothing but frames is
/// journaled, so the journal's size must not move at all.
#[tokio::test]
async fn fifty_concurrent_scrapes_do_not_change_what_is_journaled() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    let ack = send(&mut ws, &offers()).await;
    assert_eq!(ack["accepted"], (QUEUES * CALLS_PER_QUEUE) as u64, "{ack}");
    let client = reqwest::Client::new();
    let before = scrape(&client, &d)
        .await
        .value("ringwatch_journal_written_bytes_total");
    assert!(before > 0.0, "the frame was journaled");
    let all = join_all((0..SCRAPERS).map(|_| scrape(&client, &d))).await;
    for s in &all {
        assert_eq!(s.value("ringwatch_journal_written_bytes_total"), before);
    }
    let after = scrape(&client, &d)
        .await
        .value("ringwatch_journal_written_bytes_total");
    assert_eq!(after, before, "scrapes wrote to the journal");
}
