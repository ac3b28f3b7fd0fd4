//! Durability end to end: the real daemon killed with SIGKILL at random
//! points while a simulated day streams in, restarted on the same data
//! directory each time, must end with exactly the figures of an
//! uninterrupted run; graceful restarts, torn journal tails, unreadable
//! snapshots and a second daemon on the same directory are covered too.
//! Kills, and what recovery logs, are tested on the binary; the reference
//! runs and graceful restarts are in-process.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use common::{
    scenario, send, signal, start, start_in, start_process_in, Endpoints, Process, Samples,
};
use futures_util::{SinkExt, StreamExt};
use rand::{RngExt, SeedableRng};
use ringwatch::sim::model::{Model, QueueSpec};
use tokio_tungstenite::tungstenite::Message;

/// A simulated working day (08:00 to 18:00) as frames of 1 to 40 events.
fn day_frames(seed: u64, hours: i64) -> Vec<String> {
    let model = Model {
        seed,
        queues: ["billing", "sales", "support"]
            .iter()
            .map(|q| QueueSpec {
                name: q.to_string(),
                calls_per_hour: 200.0,
                agents: 6,
            })
            .collect(),
        duration: hours * 3_600_000,
        ..Model::default()
    };
    let stories = model.stories();
    let end = model.start + model.duration + 30 * 3_600_000;
    let events = ringwatch::sim::events(&model, &stories, Some(end));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut frames = Vec::new();
    let mut rest = &events[..];
    while !rest.is_empty() {
        let n = rng.random_range(1..=40).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let body: Vec<&str> = chunk.iter().map(|e| e.json.as_str()).collect();
        frames.push(format!("[{}]", body.join(",")));
        rest = tail;
    }
    frames
}

/// Stream `frames[from..]` with up to `window` frames in flight; acks come
/// back in order. Returns how many frames are acknowledged in all, when the
/// stream ends or the connection breaks. `kill_after` (acks counted from
/// `from`, and the daemon's pid) kills the daemon with SIGKILL right after
/// that ack arrives, with frames still in flight.
async fn pump(
    d: &Endpoints,
    frames: &[String],
    from: usize,
    kill_after: Option<(usize, u32)>,
) -> usize {
    const WINDOW: usize = 8;
    let Ok((ws, _)) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.ingest)).await
    else {
        return from;
    };
    let (mut tx, mut rx) = ws.split();
    let mut acked = from;
    let mut next = from;
    let mut in_flight = VecDeque::new();
    while acked < frames.len() {
        while next < frames.len() && in_flight.len() < WINDOW {
            if tx.send(Message::text(frames[next].clone())).await.is_err() {
                return acked;
            }
            in_flight.push_back(next);
            next += 1;
        }
        match rx.next().await {
            Some(Ok(Message::Text(t))) => {
                let ack: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                let i = in_flight.pop_front().expect("an ack answers a frame");
                let n = ack["accepted"].as_u64().unwrap() + ack["duplicates"].as_u64().unwrap();
                let events = serde_json::from_str::<Vec<serde_json::Value>>(&frames[i])
                    .unwrap()
                    .len();
                assert_eq!(n as usize, events, "frame {i}: {ack}");
                acked = i + 1;
                if let Some((n, pid)) = kill_after {
                    if n == acked - from {
                        signal(pid, "KILL");
                    }
                }
            }
            Some(Ok(_)) => {}
            _ => return acked,
        }
    }
    acked
}

/// The call-center figures of a scrape: everything but ringwatch's own
/// telemetry (connections, journal, ...), and the duplicates counter, which
/// counts resends.
fn figures(s: &Samples) -> BTreeMap<String, String> {
    let registry = ringwatch::telemetry::SelfMetrics::new().registry;
    let own: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    s.0.iter()
        .filter(|(k, _)| {
            let name = k.split('{').next().unwrap();
            !own.iter().any(|o| name.starts_with(o.as_str()))
                && name != "ringwatch_events_duplicate_total"
        })
        // Formatted, so NaN quantiles of empty windows compare equal.
        .map(|(k, v)| (k.clone(), format!("{v}")))
        .collect()
}

fn assert_same(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, how: &str) {
    let diff: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: want {v}, got {:?}", got.get(k)))
        .chain(
            got.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k}: unexpected")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "{how}: {} differences:\n  {}",
        diff.len(),
        diff.join("\n  ")
    );
}

const EVENT_CLOCK: (&str, &str) = ("RINGWATCH__RULES__CLOCK", "event");

/// Log lines of `d` with this message.
fn logged(d: &Process, message: &str) -> Vec<serde_json::Value> {
    d.log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

async fn crash_run(seed: u64, hours: i64, kills: usize, env: &[(&str, &str)]) {
    let frames = day_frames(seed, hours);
    let mut all_env = vec![EVENT_CLOCK];
    all_env.extend_from_slice(env);

    let reference = start(&all_env);
    assert_eq!(pump(&reference, &frames, 0, None).await, frames.len());
    let want = figures(&reference.metrics().await);
    drop(reference);

    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x9e37);
    let mut d = start_process_in(dir.path(), &all_env);
    let mut acked = 0;
    for k in 0..kills {
        // A random point in what is left, before its last tenth.
        let left = frames.len() - acked;
        let after = rng.random_range(1..=left * 9 / 10 / (kills - k));
        let before = acked;
        acked = pump(&d, &frames, acked, Some((after, d.pid()))).await;
        // Acks already on their way when the kill lands still arrive (and
        // must hold): the kill came at or just after ack `after`.
        assert!(acked - before >= after, "{} < {after}", acked - before);
        d.wait_exit(Duration::from_secs(10));
        // Some kills land just after a snapshot started: give them time.
        if k % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        d = start_process_in(dir.path(), &all_env);
        let recovered = logged(&d, "state recovered");
        assert_eq!(recovered.len(), 1, "{:?}", d.log_lines());
    }
    assert_eq!(pump(&d, &frames, acked, None).await, frames.len());
    let got = figures(&d.metrics().await);
    assert_same(&got, &want, &format!("after {kills} kill -9"));
    assert!(
        got.len() > 100,
        "the comparison covers the figures: {}",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_loses_nothing() {
    // Snapshots every second, so kills land before, during and after them.
    crash_run(
        11,
        10,
        6,
        &[("RINGWATCH__DURABILITY__SNAPSHOT_INTERVAL", "1")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_with_fsync_per_batch_loses_nothing() {
    crash_run(
        12,
        3,
        3,
        &[
            ("RINGWATCH__DURABILITY__FSYNC", "batch"),
            ("RINGWATCH__DURABILITY__SNAPSHOT_INTERVAL", "2"),
        ],
    )
    .await;
}

#[tokio::test]
async fn graceful_restart_carries_calls_across_it() {
    for name in ["three_rings", "hold_limit", "callbacks"] {
        let s = scenario(name);
        let env = s.env();
        let dir = tempfile::tempdir().unwrap();
        // Stop where calls (or promises) are still open.
        let half = s.frames.len() / 2;
        let d = start_in(dir.path(), &env);
        let mut ws = d.connect().await;
        for frame in &s.frames[..half] {
            assert_eq!(send(&mut ws, frame).await["accepted"], 1);
        }
        let before = d.metrics().await;
        let open = before.value("ringwatch_calls_in_flight")
            + before
                .0
                .iter()
                .filter(|(k, _)| k.starts_with("ringwatch_callbacks_pending{"))
                .map(|(_, v)| v)
                .sum::<f64>();
        assert!(open > 0.0, "{name}: something is open at the restart");
        drop(ws);
        d.stop().await;
        // The final snapshot (no periodic one is due within the test).
        let snapshots = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("snapshot-") && n.ends_with(".bin"))
            .count();
        assert_eq!(snapshots, 1, "{name}: one final snapshot");

        let d = start_in(dir.path(), &env);
        let after = d.metrics().await;
        assert_eq!(
            after.value("ringwatch_recovery_replayed_records"),
            0.0,
            "{name}: a graceful stop leaves nothing to replay"
        );
        assert_same(&figures(&after), &figures(&before), name);
        let mut ws = d.connect().await;
        // Events from before the restart are still known duplicates.
        let ack = send(&mut ws, &s.frames[half - 1]).await;
        assert_eq!(ack["duplicates"], 1, "{name}: {ack}");
        for frame in &s.frames[half..] {
            assert_eq!(send(&mut ws, frame).await["accepted"], 1);
        }
        s.check(&d.metrics().await, "across a graceful restart");
    }
}

fn newest(dir: &Path, prefix: &str) -> std::path::PathBuf {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(prefix) && !n.ends_with(".tmp")
        })
        .collect();
    names.sort();
    names.pop().unwrap_or_else(|| panic!("no {prefix} file"))
}

#[tokio::test]
async fn a_torn_journal_tail_is_cut_and_reported() {
    let frames = day_frames(21, 1);
    let dir = tempfile::tempdir().unwrap();
    let d = start_process_in(dir.path(), &[EVENT_CLOCK]);
    assert_eq!(pump(&d, &frames, 0, None).await, frames.len());
    let want = figures(&d.metrics().await);
    signal(d.pid(), "KILL");
    drop(d);
    // A crash in the middle of a write: half a record header and garbage.
    let segment = newest(dir.path(), "journal-");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xde, 0xad, 0xbe]);
    std::fs::write(&segment, &bytes).unwrap();
    // And a snapshot whose write the crash interrupted.
    let partial = dir.path().join("snapshot-00000000000000000099.bin.tmp");
    std::fs::write(&partial, b"RWSNAP01 half").unwrap();

    let d = start_process_in(dir.path(), &[EVENT_CLOCK]);
    assert!(
        !partial.exists(),
        "a partial snapshot is removed, never used"
    );
    let m = d.metrics().await;
    assert_eq!(m.value("ringwatch_recovery_cut_bytes"), 7.0);
    assert!(m.value("ringwatch_recovery_replayed_records") >= 1.0);
    assert_eq!(logged(&d, "journal tail cut (a write torn by a crash, or corruption); nothing after it had been acknowledged").len(), 1);
    assert_same(&figures(&m), &want, "after a torn tail");
    // The cut is made durable: the next start finds a clean journal.
    drop(d);
    let d = start_process_in(dir.path(), &[EVENT_CLOCK]);
    assert_eq!(d.metrics().await.value("ringwatch_recovery_cut_bytes"), 0.0);
}

#[tokio::test]
async fn an_unreadable_snapshot_falls_back_to_the_one_before() {
    let frames = day_frames(31, 2);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        EVENT_CLOCK,
        ("RINGWATCH__DURABILITY__SNAPSHOT_INTERVAL", "1"),
    ];
    let d = start_in(dir.path(), &env);
    let half = frames.len() / 2;
    assert_eq!(pump(&d, &frames[..half], 0, None).await, half);
    // Let a periodic snapshot happen, then stop (a second, final one).
    d.eventually("ringwatch_snapshot_failures_total", 0.0).await;
    for _ in 0..100 {
        if d.metrics()
            .await
            .value("ringwatch_snapshot_last_success_timestamp_seconds")
            > 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pump(&d, &frames, half, None).await, frames.len());
    let want = figures(&d.metrics().await);
    d.stop().await;
    // Old snapshots and the journal before the older kept one are deleted.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let seq = |n: &str| n[n.find('-').unwrap() + 1..][..20].parse::<u64>().unwrap();
    let mut snapshots: Vec<u64> = names
        .iter()
        .filter(|n| n.starts_with("snapshot-"))
        .map(|n| seq(n))
        .collect();
    snapshots.sort();
    assert_eq!(snapshots.len(), 2, "{names:?}");
    assert!(
        snapshots[0] > 1,
        "periodic snapshots were taken before the final one: {names:?}"
    );
    for n in names.iter().filter(|n| n.starts_with("journal-")) {
        assert!(
            seq(n) >= snapshots[0],
            "{n} is older than every kept snapshot: {names:?}"
        );
    }

    let snap = newest(dir.path(), "snapshot-");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();

    let d = start_in(dir.path(), &env);
    let m = d.metrics().await;
    assert_eq!(m.value("ringwatch_recovery_unusable_snapshots"), 1.0);
    assert!(m.value("ringwatch_recovery_replayed_records") > 0.0);
    assert_same(
        &figures(&m),
        &want,
        "from the older snapshot and its journal",
    );
}

#[test]
fn a_second_daemon_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start_in(dir.path(), &[]);
    let out = common::ringwatch_command()
        .env("RINGWATCH__INGEST__LISTEN", "127.0.0.1:0")
        .env("RINGWATCH__HTTP__LISTEN", "127.0.0.1:0")
        .env("RINGWATCH__DURABILITY__DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another ringwatch"),
        "{stderr}"
    );
}

#[tokio::test]
async fn readiness_comes_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_process_in(dir.path(), &[]);
    // The last line may still be on its way from the daemon's stderr.
    for _ in 0..100 {
        if !logged(&d, "ringwatch ready").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let order: Vec<String> = d
        .log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .filter(|m| {
            [
                "http listening",
                "state recovered",
                "ingest listening",
                "ringwatch ready",
            ]
            .contains(&m.as_str())
        })
        .collect();
    assert_eq!(
        order,
        [
            "http listening",
            "state recovered",
            "ingest listening",
            "ringwatch ready"
        ]
    );
    assert_eq!(d.get("/readyz").await.0, 200);
}

/// Sends `n` single-event frames one after another, each waiting for its ack
/// (stamped now: these daemons are on the wall clock).
async fn sequential_frames(d: &Endpoints, n: usize) {
    let mut ws = d.connect().await;
    for i in 0..n {
        let frame = common::offer_now(&format!("seq-{i}"));
        assert_eq!(send(&mut ws, &frame).await["accepted"], 1);
    }
}

#[tokio::test]
async fn fsync_per_batch_syncs_before_each_ack_and_interval_does_not() {
    const FSYNCS: &str = "ringwatch_journal_fsync_duration_seconds_count";
    let batch = start(&[("RINGWATCH__DURABILITY__FSYNC", "batch")]);
    sequential_frames(&batch, 20).await;
    // Each frame waited for its ack before the next was sent: 20 fsyncs at least.
    assert!(batch.metrics().await.value(FSYNCS) >= 20.0);
    // With a long interval nothing has been fsynced yet, acks went out anyway.
    let interval = start(&[("RINGWATCH__DURABILITY__FSYNC_INTERVAL", "60")]);
    sequential_frames(&interval, 20).await;
    assert_eq!(interval.metrics().await.value(FSYNCS), 0.0);
}
