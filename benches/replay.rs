//! benches/replay.rs: journal replay at start, the time `durability::recover`
//! takes to be ready (what the daemon runs before it answers `/readyz`)
//! over a journal of about 1M events written with the real journal encoder
//! and segment writer, replayed with the pipeline's own replay. Twice: with
//! the binary event records the pipeline writes, and with the frame-text
//! records of journals written by earlier versions (decoded again by the
//! ingest decoder). `cargo bench --bench replay [-- RUNS]`; `REPLAY_FORM=events`,
//! `plain` or `text` runs one of them.
//!
//! Each call has a full life (offered, answered, hold started, hold ended,
//! ended), every event an `event_id` and an integer-millisecond `ts`, in
//! frames of 100 events applied on the event clock, as `benches/load.rs`
//! sends them.

use std::time::{Duration, Instant};

use ringwatch::durability::{self, journal, DataDir, Fsync, Record, Settings, StateConfig};
use ringwatch::event::Millis;
use ringwatch::ingest::frame::decode_for_replay;
use ringwatch::metrics::{Bounds, BucketConfig};
use ringwatch::pipeline;
use ringwatch::rules::{ClockMode, Settings as RuleSettings};

const BASE_TS: Millis = 1_795_424_400_000;
const CALLS: u64 = 200_000;
const PER_FRAME: usize = 100;

fn events() -> Vec<String> {
    let mut out = Vec::with_capacity(CALLS as usize * 5);
    for n in 0..CALLS {
        let t = BASE_TS + n as Millis * 10;
        let q = n % 10;
        let lines = [
            ("call.offered", t, format!(r#","queue":"q{q}""#)),
            ("call.answered", t + 4_000, String::new()),
            ("call.hold_started", t + 20_000, String::new()),
            ("call.hold_ended", t + 30_000, String::new()),
            ("call.ended", t + 64_000, String::new()),
        ];
        for (i, (kind, ts, extra)) in lines.into_iter().enumerate() {
            out.push(format!(
                r#"{{"type":"{kind}","ts":{ts},"call_id":"c{n}"{extra},"event_id":"c{n}-e{i}"}}"#
            ));
        }
    }
    // A call's events in order, calls interleaved as a live feed has them.
    out.sort_by_cached_key(|e| {
        let ts = e.split(r#""ts":"#).nth(1).unwrap_or("");
        ts.split(',')
            .next()
            .unwrap_or("")
            .parse::<i64>()
            .unwrap_or(0)
    });
    out
}

fn config() -> StateConfig {
    let rules = RuleSettings {
        clock: ClockMode::Event,
        ..RuleSettings::default()
    };
    StateConfig {
        bounds: Bounds::new(&rules, &BucketConfig::default()),
        rules,
        quantile_window: 300_000,
        declared_queues: Vec::new(),
    }
}

/// How the journal holds the frames: as the pipeline writes them now
/// (packed binary events), or as versions before it did (plain binary
/// events, the frame text).
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Events,
    Plain,
    Text,
}

fn main() {
    let runs = std::env::args()
        .filter_map(|a| a.parse::<usize>().ok())
        .next()
        .unwrap_or(3);
    let events = events();
    // `REPLAY_FORM=events`, `plain` or `text` runs one form alone (to
    // profile it).
    let only = std::env::var("REPLAY_FORM").ok();
    let forms = [
        ("events", Form::Events),
        ("plain", Form::Plain),
        ("text", Form::Text),
    ];
    for (name, form) in forms {
        if only.as_deref().is_none_or(|o| o == name) {
            bench(&events, form, runs);
        }
    }
}

fn bench(events: &[String], form: Form, runs: usize) {
    let data = tempfile::tempdir().expect("temporary directory");
    let settings = Settings {
        dir: data.path().to_path_buf(),
        fsync: Fsync::Interval(Duration::from_secs(1)),
        snapshot_interval: Duration::from_secs(60),
    };
    let mut bytes = Vec::new();
    let mut frames = 0u64;
    {
        let mut w = journal::Writer::create(data.path(), 1).expect("segment");
        for (i, chunk) in events.chunks(PER_FRAME).enumerate() {
            let text = format!("[{}]", chunk.join(","));
            let now = BASE_TS + i as Millis;
            // The pipeline's record: the live decoder's output, encoded.
            let (decoded, rejects) = decode_for_replay(&text);
            let mut body = Vec::new();
            let rec = match form {
                Form::Events => {
                    durability::events::encode(&decoded, &rejects, &mut body);
                    Record::Packed { now, body: &body }
                }
                Form::Plain => {
                    durability::events::encode_plain(&decoded, &rejects, &mut body);
                    Record::Events { now, body: &body }
                }
                Form::Text => Record::Frame { now, text: &text },
            };
            journal::encode(&rec, &mut bytes);
            frames += 1;
            if bytes.len() > 1 << 20 {
                let batch = journal::Batch::from(std::mem::take(&mut bytes));
                w.write(&batch, None).expect("journal write");
            }
        }
        w.write(&journal::Batch::from(bytes), None)
            .expect("journal write");
        w.sync().expect("journal sync");
    }
    let journal_bytes = std::fs::metadata(data.path().join(journal::segment_name(1)))
        .map(|m| m.len())
        .unwrap_or(0);
    let cfg = config();
    println!(
        "replay, {}: {} events in {frames} frames, {:.1} MB of journal",
        match form {
            Form::Events => "packed event records (what the pipeline writes)",
            Form::Plain => "plain event records (journals of the version before)",
            Form::Text => "frame text records (journals of earlier versions)",
        },
        events.len(),
        journal_bytes as f64 / 1e6
    );
    for run in 1..=runs {
        let dir = DataDir::open(&settings).expect("data directory");
        let started = Instant::now();
        let (engine, _store, writer, report) = durability::recover(
            &dir,
            &cfg,
            |rec| pipeline::prepare(rec, decode_for_replay),
            pipeline::replay_prepared,
        )
        .expect("recovery");
        let took = started.elapsed();
        assert_eq!(report.records, frames, "every frame replayed");
        assert_eq!(engine.calls_in_flight(), 0, "every call ended");
        println!(
            "run {run}: {:.3} s to ready, {:.2}M events/s",
            took.as_secs_f64(),
            events.len() as f64 / took.as_secs_f64() / 1e6
        );
        // The next run replays the same journal: drop the segment this
        // start opened.
        let next = writer.seq();
        drop((writer, dir));
        let _ = std::fs::remove_file(data.path().join(journal::segment_name(next)));
    }
}
