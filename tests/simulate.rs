//! The simulator against the real daemon: thousands of calls pushed over the
//! WebSocket ingest, every counter and bucket verified against ground truth;
//! a tampered daemon is caught; the demo runs and reports.

mod common;

use common::{send, simulate, start};

#[tokio::test]
async fn thousands_of_simulated_calls_verify_exactly() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let (ok, out) = simulate(
        &d,
        &[
            "--verify",
            "--seed",
            "42",
            "--calls-per-hour",
            "600",
            "--agents",
            "18",
            "--duration",
            "7200",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("simulating 3604 calls"), "{out}");
    assert!(out.contains("verify: all 284 figures match"), "{out}");
    // the traffic exercised every rule, not just the easy path
    let m = d.metrics().await;
    for selector in [
        r#"ringwatch_calls_answered_late_total{queue="billing"}"#,
        r#"ringwatch_calls_abandoned_total{queue="billing",short="true"}"#,
        r#"ringwatch_calls_abandoned_total{queue="billing",short="false"}"#,
        r#"ringwatch_hold_limit_exceeded_total{queue="billing"}"#,
        r#"ringwatch_callbacks_resolved_total{queue="billing",outcome="kept"}"#,
        r#"ringwatch_callbacks_resolved_total{queue="billing",outcome="late"}"#,
        r#"ringwatch_callbacks_resolved_total{queue="billing",outcome="missed"}"#,
        r#"ringwatch_callbacks_resolved_total{queue="billing",outcome="cancelled"}"#,
    ] {
        assert!(m.value(selector) > 0.0, "{selector} never happened");
    }
}

#[tokio::test]
async fn verify_catches_figures_that_differ() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    // one extra call the simulator knows nothing about
    let mut ws = d.connect().await;
    send(
        &mut ws,
        r#"{"type":"call.offered","ts":1795420800000,"call_id":"stray","queue":"billing"}"#,
    )
    .await;
    let (ok, out) = simulate(&d, &["--verify", "--duration", "600"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"DIFF ringwatch_calls_offered_total{queue="billing"}: expected"#),
        "{out}"
    );
    assert!(out.contains("figures differ"), "{out}");
}

#[test]
fn the_same_seed_gives_the_same_call_center() {
    use ringwatch::sim::{events, model::Model};
    let run = |seed| {
        let model = Model {
            seed,
            ..Model::default()
        };
        let stories = model.stories();
        events(&model, &stories, None)
            .into_iter()
            .map(|e| e.json)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn demo_runs_and_reports_live_figures() {
    let out = common::ringwatch_command()
        .env("RINGWATCH__INGEST__LISTEN", "127.0.0.1:0")
        .env("RINGWATCH__HTTP__LISTEN", "127.0.0.1:0")
        .args(["demo", "--duration", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("metrics:  http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("curl -s http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("3-ring SL"), "{stdout}");
}

#[tokio::test]
async fn consecutive_runs_add_traffic_without_collisions() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let (ok, out) = simulate(&d, &["--seed", "1", "--duration", "900"]);
    assert!(ok && out.contains("0 rejected"), "{out}");
    let first = d
        .metrics()
        .await
        .value(r#"ringwatch_events_received_total{type="call.offered"}"#);
    // later in event time than the first run's settling heartbeat
    let (ok, out) = simulate(
        &d,
        &[
            "--seed",
            "2",
            "--duration",
            "900",
            "--start",
            "2026-11-26T08:00:00Z",
        ],
    );
    assert!(ok && out.contains("0 rejected"), "{out}");
    let both = d
        .metrics()
        .await
        .value(r#"ringwatch_events_received_total{type="call.offered"}"#);
    assert!(first > 0.0 && both > first, "{first} then {both}");
}

#[tokio::test]
async fn simulate_sends_and_scrapes_with_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ingest_token = "sim-ingest-token-0123456789abcdef";
    let metrics_token = "sim-metrics-token-0123456789abcdef";
    let tokens = dir.path().join("ingest-tokens");
    let metrics_tokens = dir.path().join("metrics-tokens");
    std::fs::write(&tokens, format!("simulator {ingest_token}\n")).unwrap();
    std::fs::write(&metrics_tokens, format!("scraper {metrics_token}\n")).unwrap();
    let token_file = dir.path().join("token");
    let metrics_token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{ingest_token}\n")).unwrap();
    std::fs::write(&metrics_token_file, metrics_token).unwrap();
    let d = start(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__INGEST__TOKENS_FILE", tokens.to_str().unwrap()),
        (
            "RINGWATCH__HTTP__METRICS_TOKENS_FILE",
            metrics_tokens.to_str().unwrap(),
        ),
    ]);
    let (ok, out) = simulate(
        &d,
        &[
            "--duration",
            "600",
            "--verify",
            "--token-file",
            token_file.to_str().unwrap(),
            "--metrics-token-file",
            metrics_token_file.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("figures match"), "{out}");
    // Without the token, ingest refuses the upgrade.
    let (ok, out) = simulate(&d, &["--duration", "600"]);
    assert!(!ok && out.contains("401"), "{out}");
}
