//! Snapshots and replay agree: a state snapshotted at any record of a
//! simulated hour of journal records, then replayed on from there, ends
//! exactly where an uninterrupted replay ends; changed histogram buckets
//! restart the counters but keep the calls. Pure (no daemon, no disk): the
//! pipeline's own replay over the ingest decoder.

use ringwatch::durability::{decode_state, encode_state, events, Record, StateConfig};
use ringwatch::event::Millis;
use ringwatch::ingest::frame::decode_for_replay;
use ringwatch::metrics::{Bounds, BucketConfig, Store};
use ringwatch::pipeline::replay;
use ringwatch::rules::{ClockMode, Engine, Settings as RuleSettings};
use ringwatch::sim::model::Model;

fn config() -> StateConfig {
    let rules = RuleSettings {
        clock: ClockMode::Wall,
        per_agent: true,
        dedup_window: 600_000,
        call_ttl: 900_000,
        ..RuleSettings::default()
    };
    StateConfig {
        bounds: Bounds::new(&rules, &BucketConfig::default()),
        rules,
        quantile_window: 300_000,
        declared_queues: vec!["declared".into()],
    }
}

/// A simulated hour as journal records on the wall clock: frames of
/// five events applied at their own `ts`, with timer ticks, scrapes and
/// alert checks in between, as the pipeline writes them.
fn records() -> Vec<(u8, Millis, String)> {
    let model = Model::default();
    let events = ringwatch::sim::events(&model, &model.stories(), None);
    let mut out = Vec::new();
    for (i, chunk) in events.chunks(5).enumerate() {
        let now = chunk.last().unwrap().ts;
        let body: Vec<&str> = chunk.iter().map(|e| e.json.as_str()).collect();
        out.push((1, now, format!("[{}]", body.join(","))));
        out.push((2 + (i % 3) as u8, now + 250, String::new()));
    }
    out
}

fn rec(r: &(u8, Millis, String)) -> Record<'_> {
    match r.0 {
        1 => Record::Frame {
            now: r.1,
            text: &r.2,
        },
        2 => Record::Tick { now: r.1 },
        3 => Record::Live { now: r.1 },
        _ => Record::Alerts { now: r.1 },
    }
}

fn exposition(engine: &mut Engine, store: &mut Store, now: Millis) -> String {
    // The clock moves to `now` by a tick, as the pipeline's timer does.
    engine.tick(now, store);
    let snap = ringwatch::pipeline::snapshot(engine, store);
    ringwatch::metrics::render::render(&snap, &prometheus::Registry::new())
}

#[test]
fn a_snapshot_anywhere_then_replay_gives_the_same_state() {
    let cfg = config();
    let recs = records();
    let end = recs.last().unwrap().1 + 3_600_000;
    let (mut e1, mut s1) = cfg.fresh();
    for r in &recs {
        replay(&mut e1, &mut s1, rec(r), decode_for_replay).unwrap();
    }
    let want = exposition(&mut e1, &mut s1, end);
    assert!(want.contains("ringwatch_calls_answered_total"));
    for k in [0, 1, recs.len() / 3, recs.len() / 2, recs.len() - 1] {
        let (mut e2, mut s2) = cfg.fresh();
        for r in &recs[..k] {
            replay(&mut e2, &mut s2, rec(r), decode_for_replay).unwrap();
        }
        let body = encode_state(&e2, &s2);
        let (mut e3, mut s3, _) = decode_state(&body, &cfg).unwrap();
        assert_eq!(e3.calls_in_flight(), e2.calls_in_flight());
        assert_eq!(e3.dedup_ids(), e2.dedup_ids());
        for r in &recs[k..] {
            replay(&mut e3, &mut s3, rec(r), decode_for_replay).unwrap();
        }
        assert_eq!(
            exposition(&mut e3, &mut s3, end),
            want,
            "snapshot after {k} records"
        );
    }
}

#[test]
fn changed_buckets_restart_the_counters_but_keep_the_calls() {
    let cfg = config();
    let recs = records();
    let (mut e, mut s) = cfg.fresh();
    for r in &recs[..recs.len() / 2] {
        replay(&mut e, &mut s, rec(r), decode_for_replay).unwrap();
    }
    let body = encode_state(&e, &s);
    let mut other = config();
    other.bounds.hold.push(99_000);
    let (e2, s2, _) = decode_state(&body, &other).unwrap();
    assert_eq!(e2.calls_in_flight(), e.calls_in_flight());
    assert_eq!(e2.dedup_ids(), e.dedup_ids());
    assert_eq!(
        s2.series_len(),
        e.series().len(),
        "every series known again"
    );
    assert_eq!(s2.agents_len(), s.agents_len(), "every agent known again");
    assert!(s2.fits(&other.bounds, other.quantile_window));
}

/// The pipeline journals a frame as its decoded events in binary (packed;
/// earlier versions wrote the plain form, still replayed); a journal of
/// either replays to exactly the state the frame texts give.
#[test]
fn binary_event_records_replay_exactly_as_the_frame_texts() {
    let cfg = config();
    let recs = records();
    let end = recs.last().unwrap().1 + 3_600_000;
    let (mut e1, mut s1) = cfg.fresh();
    let (mut e2, mut s2) = cfg.fresh();
    let (mut e3, mut s3) = cfg.fresh();
    let mut frames = 0;
    for r in &recs {
        replay(&mut e1, &mut s1, rec(r), decode_for_replay).unwrap();
        match rec(r) {
            Record::Frame { now, text } => {
                let (decoded, rejects) = decode_for_replay(text);
                let (mut packed, mut plain) = (Vec::new(), Vec::new());
                events::encode(&decoded, &rejects, &mut packed);
                events::encode_plain(&decoded, &rejects, &mut plain);
                // Never the text decoder for these.
                let binary = Record::Packed { now, body: &packed };
                replay(&mut e2, &mut s2, binary, |_| unreachable!()).unwrap();
                let older = Record::Events { now, body: &plain };
                replay(&mut e3, &mut s3, older, |_| unreachable!()).unwrap();
                frames += 1;
            }
            other => {
                replay(&mut e2, &mut s2, other.clone(), decode_for_replay).unwrap();
                replay(&mut e3, &mut s3, other, decode_for_replay).unwrap();
            }
        }
    }
    assert!(frames > 100);
    let want = exposition(&mut e1, &mut s1, end);
    assert!(want.contains("ringwatch_calls_answered_total"));
    assert_eq!(exposition(&mut e2, &mut s2, end), want);
    assert_eq!(exposition(&mut e3, &mut s3, end), want);
}
