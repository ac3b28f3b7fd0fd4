//! The golden scenarios end to end: the real daemon, a real WebSocket client,
//! every expected sample compared exactly, frame by frame and batched.

mod common;

use common::{scenario, send, Scenario};

const CALL_SCENARIOS: [&str; 3] = ["three_rings", "hold_limit", "callbacks"];

async fn frame_by_frame(s: &Scenario) {
    let d = s.start();
    let mut ws = d.connect().await;
    for frame in &s.frames {
        let ack = send(&mut ws, frame).await;
        assert_eq!(ack["accepted"], 1, "{}: {frame} -> {ack}", s.name);
        assert_eq!(ack["rejected"].as_array().unwrap().len(), 0);
    }
    s.check(&d.metrics().await, "frame by frame");
}

async fn batched(s: &Scenario, size: usize) {
    let d = s.start();
    let mut ws = d.connect().await;
    for chunk in s.frames.chunks(size) {
        let frame = format!("[{}]", chunk.join(","));
        let ack = send(&mut ws, &frame).await;
        assert_eq!(ack["accepted"], chunk.len(), "{}: {ack}", s.name);
    }
    s.check(&d.metrics().await, &format!("batches of {size}"));
}

#[tokio::test]
async fn call_scenarios_frame_by_frame() {
    for name in CALL_SCENARIOS {
        frame_by_frame(&scenario(name)).await;
    }
}

#[tokio::test]
async fn call_scenarios_in_one_batch() {
    for name in CALL_SCENARIOS {
        let s = scenario(name);
        batched(&s, s.frames.len()).await;
    }
}

#[tokio::test]
async fn call_scenarios_in_small_batches() {
    for name in CALL_SCENARIOS {
        batched(&scenario(name), 4).await;
    }
}

#[tokio::test]
async fn call_scenarios_resent_after_reconnect_count_once() {
    // An at-least-once sender resends everything on a new connection: every
    // resent event is a duplicate and the figures do not move.
    // The callbacks story spans 25 hours of event time: the de-duplication
    // window must cover the whole resend, as it would for a real sender.
    for name in CALL_SCENARIOS {
        let mut s = scenario(name);
        s.env
            .push(("RINGWATCH__RULES__DEDUP_WINDOW".into(), "172800".into()));
        let d = s.start();
        let mut ws = d.connect().await;
        for frame in &s.frames {
            send(&mut ws, frame).await;
        }
        drop(ws);
        let mut ws = d.connect().await;
        for frame in &s.frames {
            let ack = send(&mut ws, frame).await;
            assert_eq!(ack["duplicates"], 1, "{name}: {ack}");
        }
        s.check(&d.metrics().await, "resent");
        assert_eq!(
            d.metrics().await.value("ringwatch_events_duplicate_total"),
            s.frames.len() as f64
        );
    }
}

#[tokio::test]
async fn bad_input_frames_as_written() {
    let s = scenario("bad_input");
    let d = s.start();
    let mut ws = d.connect().await;
    let mut acks = Vec::new();
    for frame in &s.frames {
        acks.push(send(&mut ws, frame).await);
    }
    s.check(&d.metrics().await, "frames as written");

    // The acknowledgements say exactly what happened to each frame.
    let reasons: Vec<Vec<&str>> = acks
        .iter()
        .map(|a| {
            a["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["reason"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            vec![],
            vec!["invalid_field"],
            vec!["unknown_type"],
            vec!["missing_field"],
            vec!["not_an_object"; 3],
            vec!["unknown_call"],
            vec!["duplicate_call"],
            vec!["invalid_transition"],
            vec![],
            vec![],
            vec!["invalid_transition"],
            vec!["time_goes_backwards"],
            vec!["malformed_json"],
            vec!["unknown_promise"],
            vec!["invalid_field"],
        ]
    );
    assert_eq!(acks[4]["rejected"][2]["index"], 2);
    assert_eq!(acks[6]["rejected"][0]["event_id"], "bi-014");
    assert_eq!(acks[9]["duplicates"], 1);
    let detail = acks[5]["rejected"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("nobody"), "{detail}");
    let detail = acks[14]["rejected"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("call_id"), "{detail}");
}

#[test]
fn golden_copy_matches_shared() {
    // tests/golden is the project's copy of the shared golden scenarios; when
    // the shared originals are beside the checkout they must be identical.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/scenarios");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        eprintln!("{} not present: nothing to compare", shared.display());
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let ours = common::golden_dir().join(path.file_name().unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&ours).unwrap_or_default(),
            "{} differs from the shared scenario; copy it again",
            ours.display()
        );
    }
}
