//! `ringwatch convert`, `ringwatch import` and `ringwatch simulate --emit`
//! as an operator runs them: the binary against a real daemon, figures
//! compared exactly with the simulator's ground truth; importing twice
//! changes no figure; a connection cut mid-import is resumed with nothing
//! lost or counted twice; the simulated AMI and ESL servers feed the
//! daemon's platform sources and `--verify` finds every figure equal.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, ringwatch_command, start, Endpoints, Samples};
use ringwatch::config::{Config, Validated};
use ringwatch::sim::model::{Model, Resolution, Story};
use ringwatch::sim::{events, settle_time, truth, verify};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENT_CLOCK: (&str, &str) = ("RINGWATCH__RULES__CLOCK", "event");
/// Event ids are remembered for `dedup_window` on the monitor's clock; the
/// settling heartbeat of a simulated day is a day past the last promise, so
/// a test that imports a day twice remembers three days.
const LONG_DEDUP: (&str, &str) = ("RINGWATCH__RULES__DEDUP_WINDOW", "259200");

fn config() -> Validated {
    Config::load(
        None,
        vec![("RINGWATCH__RULES__CLOCK".to_string(), "event".to_string())],
    )
    .and_then(|c| c.validate())
    .expect("the default configuration on event time")
}

fn model(seed: u64, duration_secs: i64) -> Model {
    Model {
        seed,
        duration: duration_secs * 1000,
        ..Model::default()
    }
}

/// The model's stories with every callback resolved too late made one that
/// is never resolved: the same figures (missed), but no event the daemon
/// rejects, so an import of them succeeds outright.
fn stories(model: &Model, cfg: &Validated) -> Vec<Story> {
    let expiry = cfg.rules.callback_expiry;
    model
        .stories()
        .into_iter()
        .map(|mut s| {
            if let Story::Answered {
                callback: Some(cb), ..
            } = &mut s
            {
                if let Resolution::Completed(at) | Resolution::Cancelled(at) = cb.resolution {
                    if at > cb.due + expiry {
                        cb.resolution = Resolution::Never;
                    }
                }
            }
            s
        })
        .collect()
}

fn run(args: &[&str]) -> Output {
    ringwatch_command()
        .args(args)
        .output()
        .expect("run ringwatch")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn import(d: &Endpoints, format: &str, files: &[&Path], extra: &[&str]) -> Output {
    let url = format!("ws://{}/v1/events", d.ingest);
    let mut args = vec!["import", "--format", format, "--url", &url];
    args.extend_from_slice(extra);
    let names: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend(names);
    run(&args)
}

/// Every truth figure equals the scrape.
fn assert_truth(expected: &[(String, f64)], samples: &Samples) {
    let report = verify::compare(expected, samples);
    assert!(
        report.ok(),
        "{}\n{}",
        report.table,
        report.differences.join("\n")
    );
}

/// The figures of `selectors` in `samples`.
fn figures(samples: &Samples, selectors: &[(String, f64)]) -> BTreeMap<String, Option<f64>> {
    selectors
        .iter()
        .map(|(s, _)| (s.clone(), samples.get(s)))
        .collect()
}

/// The simulation as JSON lines without event ids (the import derives
/// them), single objects and arrays mixed, blank lines between.
fn jsonl(model: &Model, stories: &[Story], settle: i64) -> String {
    let evs = events(model, stories, Some(settle));
    let mut out = String::new();
    let mut i = 0;
    let mut line = 0;
    while i < evs.len() {
        let take = if line % 3 == 0 { 1 } else { 7 };
        let chunk: Vec<serde_json::Value> = evs[i..(i + take).min(evs.len())]
            .iter()
            .map(|e| {
                let mut v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
                v.as_object_mut().unwrap().remove("event_id");
                v
            })
            .collect();
        if take == 1 {
            out.push_str(&chunk[0].to_string());
        } else {
            out.push_str(&serde_json::Value::Array(chunk).to_string());
        }
        out.push('\n');
        if line % 5 == 0 {
            out.push_str("\n  \n");
        }
        i += take;
        line += 1;
    }
    out
}

#[tokio::test]
async fn import_jsonl_counts_exactly_and_a_second_import_changes_nothing() {
    let cfg = config();
    let model = model(11, 1800);
    let stories = stories(&model, &cfg);
    let settle = settle_time(&stories, cfg.rules.callback_expiry);
    let total = events(&model, &stories, Some(settle)).len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.jsonl");
    std::fs::write(&file, jsonl(&model, &stories, settle)).unwrap();
    let d = start(&[EVENT_CLOCK, LONG_DEDUP]);

    let out = import(&d, "jsonl", &[&file], &["--batch", "40"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "imported {total} events in {} frames: {total} accepted, 0 duplicates, 0 rejected",
            total.div_ceil(40)
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("day.jsonl: {total} events, 0 skipped")),
        "{stderr}"
    );
    let expected = truth::expected(&model, &stories, &cfg.rules, &cfg.bounds());
    let first = d.metrics().await;
    assert_truth(&expected, &first);

    let out = import(&d, "jsonl", &[&file], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("0 accepted, {total} duplicates, 0 rejected")),
        "{stdout}"
    );
    let second = d.metrics().await;
    let figures_only: Vec<(String, f64)> = expected
        .iter()
        .filter(|(s, _)| !s.starts_with("ringwatch_events_duplicate_total"))
        .cloned()
        .collect();
    assert_eq!(
        figures(&first, &figures_only),
        figures(&second, &figures_only)
    );
    assert_eq!(
        second.value("ringwatch_events_duplicate_total"),
        total as f64
    );
}

#[tokio::test]
async fn bad_jsonl_lines_are_reported_by_number_and_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"call.offered","ts":1795420800000,"call_id":"a","queue":"billing"}"#,
            "\n",
            "2026-11-23 08:00:01 console noise\n",
            "\n",
            r#"[{"type":"call.answered","ts":1795420805000,"call_id":"a","agent":"ann"},{"type":"call.ended","ts":1795420806000,"reason":"completed"}]"#,
            "\n",
        ),
    )
    .unwrap();
    let d = start(&[EVENT_CLOCK]);
    let out = import(&d, "jsonl", &[&file], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("mixed.jsonl: 2 events, 2 skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mixed.jsonl:2: malformed_json: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("mixed.jsonl:4: missing_field: element 1: "),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 accepted, 0 duplicates, 0 rejected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 lines or elements were not events"),
        "{stdout}"
    );
    let m = d.metrics().await;
    assert_eq!(
        m.value(r#"ringwatch_calls_answered_total{queue="billing"}"#),
        1.0
    );
    assert_eq!(m.value(r#"ringwatch_calls_active{queue="billing"}"#), 1.0);
}

#[tokio::test]
async fn rejections_make_the_import_fail_and_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"call.answered","ts":1795420805000,"call_id":"never-offered"}"#,
            "\n"
        ),
    )
    .unwrap();
    let d = start(&[EVENT_CLOCK]);
    let out = import(&d, "jsonl", &[&file], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 accepted, 0 duplicates, 1 rejected"),
        "{stdout}"
    );
    assert!(stdout.contains("  rejected unknown_call: 1"), "{stdout}");
    assert!(stdout.contains("r.jsonl:1: {"), "{stdout}");
}

#[test]
fn unreadable_files_and_wrong_flags_are_clear_errors() {
    let out = run(&[
        "convert",
        "--format",
        "asterisk-ami",
        "/nonexistent/capture.txt",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/capture.txt"),
        "{stderr}"
    );
    let long = "s".repeat(65);
    let out = run(&[
        "convert",
        "--format",
        "asterisk-ami",
        "--site",
        &long,
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(64), "{:?}", text(&out));
    let out = run(&[
        "import",
        "--format",
        "jsonl",
        "--url",
        "ws://127.0.0.1:1/v1/events",
        "/nonexistent",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("cannot read /nonexistent"));
}

#[test]
fn a_daemon_that_cannot_be_reached_is_given_up_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.jsonl");
    std::fs::write(&file, "{\"type\":\"clock\",\"ts\":1}\n").unwrap();
    let url = format!("ws://127.0.0.1:{}/v1/events", free_port());
    let out = run(&[
        "import",
        "--format",
        "jsonl",
        "--url",
        &url,
        "--retries",
        "2",
        file.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("gave up after 3 attempts"), "{stderr}");
}

/// A TCP proxy to `target` that cuts each of its first `cuts` connections
/// once it forwarded `budget` bytes from the client (mid-frame, acks of
/// what went through unread).
async fn cutting_proxy(
    target: std::net::SocketAddr,
    cuts: usize,
    budget: usize,
) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            tokio::spawn(async move {
                if n >= cuts {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = async {
                    let mut left = budget;
                    let mut buf = vec![0u8; 4096];
                    while left > 0 {
                        let Ok(k) = cr.read(&mut buf).await else {
                            return;
                        };
                        if k == 0 {
                            return;
                        }
                        let k = k.min(left);
                        if sw.write_all(&buf[..k]).await.is_err() {
                            return;
                        }
                        left -= k;
                    }
                };
                let down = tokio::io::copy(&mut sr, &mut cw);
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
                // Give the daemon a moment with what it got, then drop both.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    (port, connections)
}

#[tokio::test]
async fn a_connection_lost_mid_import_is_resumed_with_exact_figures() {
    let cfg = config();
    let model = model(12, 1800);
    let stories = stories(&model, &cfg);
    let settle = settle_time(&stories, cfg.rules.callback_expiry);
    let total = events(&model, &stories, Some(settle)).len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.jsonl");
    std::fs::write(&file, jsonl(&model, &stories, settle)).unwrap();
    let d = start(&[EVENT_CLOCK]);
    let (port, connections) = cutting_proxy(d.ingest, 3, 9_000).await;
    let url = format!("ws://127.0.0.1:{port}/v1/events");
    let file_arg = file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "import", "--format", "jsonl", "--url", &url, "--batch", "20", "--window", "3",
            &file_arg,
        ])
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(connections.load(Ordering::SeqCst) >= 4, "{stdout}");
    assert!(
        stdout.contains("the connection was lost 3 times"),
        "{stdout}"
    );
    // Each event acknowledged once: accepted, or a duplicate when its
    // first ack was lost (the daemon may have seen it more than twice).
    let summary = stdout.lines().next().unwrap_or("");
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [imported, _frames, accepted, duplicates, rejected] = numbers[..] else {
        panic!("{stdout}")
    };
    assert_eq!(
        (imported, accepted + duplicates, rejected),
        (total as u64, total as u64, 0),
        "{stdout}"
    );
    let m = d.metrics().await;
    assert!(m.value("ringwatch_events_duplicate_total") >= duplicates as f64);
    let expected: Vec<(String, f64)> = truth::expected(&model, &stories, &cfg.rules, &cfg.bounds())
        .into_iter()
        .filter(|(s, _)| !s.starts_with("ringwatch_events_duplicate_total"))
        .collect();
    assert_truth(&expected, &m);
}

/// The simulation as an AMI capture the way an operator saves one: console
/// lines around the protocol text, and one event without `Timestamp:`.
fn ami_capture(model: &Model, stories: &[Story]) -> String {
    use ringwatch::sim::emit_ami::{encode, render};
    let mut text =
        String::from("Connected to Asterisk 20.5.0 currently running on pbx (pid = 1234)\r\n");
    for (i, m) in render(model, stories).iter().enumerate() {
        text.push_str(&encode(m));
        if i == 3 {
            text.push_str("  == Using SIP RTP CoS mark 5\r\n\r\n");
        }
    }
    text.push_str(
        "Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nChannel: PJSIP/x-1\r\n\
         Uniqueid: 1.1\r\nLinkedid: 1.1\r\nQueue: billing\r\nPosition: 1\r\nCount: 1\r\n\r\n",
    );
    text
}

#[tokio::test]
async fn convert_and_import_an_ami_capture_back_fill_twice() {
    let cfg = config();
    let model = model(13, 1200);
    let stories = stories(&model, &cfg);
    let settle = settle_time(&stories, cfg.rules.callback_expiry);
    let want = events(&model, &stories, None).len();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("ami.txt");
    std::fs::write(&capture, ami_capture(&model, &stories)).unwrap();
    let out = run(&[
        "convert",
        "--format",
        "asterisk-ami",
        capture.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), want, "{stderr}");
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["event_id"].as_str().unwrap().starts_with("ast:"),
            "{line}"
        );
    }
    assert!(stderr.contains("ami.txt: "), "{stderr}");
    assert!(stderr.contains("skipped not_protocol: "), "{stderr}");
    assert!(stderr.contains("ami.txt:1: not_protocol"), "{stderr}");
    assert!(stderr.contains("skipped no_timestamp: 1"), "{stderr}");
    assert!(stderr.contains("timestampevents = yes"), "{stderr}");

    // The back-fill: the capture, then the heartbeat that settles promises.
    let clock = dir.path().join("settle.jsonl");
    std::fs::write(&clock, format!("{{\"type\":\"clock\",\"ts\":{settle}}}\n")).unwrap();
    let d = start(&[EVENT_CLOCK, LONG_DEDUP]);
    for round in 0..2 {
        let out = import(&d, "asterisk-ami", &[&capture], &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        let (accepted, duplicates) = if round == 0 { (want, 0) } else { (0, want) };
        assert!(
            stdout.contains(&format!(
                "{accepted} accepted, {duplicates} duplicates, 0 rejected"
            )),
            "{stdout}"
        );
        let out = import(&d, "jsonl", &[&clock], &[]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let expected: Vec<(String, f64)> = truth::expected(&model, &stories, &cfg.rules, &cfg.bounds())
        .into_iter()
        .filter(|(s, _)| !s.starts_with("ringwatch_events_duplicate_total"))
        .collect();
    let m = d.metrics().await;
    assert_truth(&expected, &m);
    assert_eq!(
        m.value("ringwatch_events_duplicate_total"),
        (want + 1) as f64
    );
}

/// Run `ringwatch simulate --emit PLATFORM --verify` against a daemon whose
/// platform source connects to it; returns success and the output.
async fn emit_and_verify(kind: &str, platform: &str, secret_env: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let pbx = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        EVENT_CLOCK,
        ("RINGWATCH__SOURCES__PBX__KIND", kind),
        ("RINGWATCH__SOURCES__PBX__ADDRESS", pbx.as_str()),
        (secret_env, "s3cret"),
        ("RINGWATCH__CLIENT__BACKOFF_INITIAL", "0.05"),
        ("RINGWATCH__CLIENT__BACKOFF_MAX", "0.2"),
    ];
    if kind == "asterisk_ami" {
        env.push(("RINGWATCH__SOURCES__PBX__USERNAME", "ringwatch"));
    }
    let d = start(&env);
    let mut cmd = ringwatch_command();
    cmd.env("RINGWATCH__RULES__CLOCK", "event")
        .args(["simulate", "--emit", platform, "--listen", &pbx, "--verify"])
        .args(["--url", &format!("ws://{}/v1/events", d.ingest)])
        .args(["--metrics-url", &d.url("/metrics")])
        .args(["--seed", "21", "--duration", "1800", "--wait-timeout", "60"])
        .args(["--secret-file", secret.to_str().unwrap()]);
    if kind == "asterisk_ami" {
        cmd.args(["--username", "ringwatch"]);
    }
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        let status = child.wait().unwrap();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        (status.success(), format!("{}\n{err}", lines.join("\n")))
    })
    .await
    .unwrap();
    drop(d);
    out
}

#[tokio::test]
async fn simulate_emit_asterisk_ami_verifies_through_the_ami_source() {
    let (ok, out) = emit_and_verify(
        "asterisk_ami",
        "asterisk-ami",
        "RINGWATCH__SOURCES__PBX__SECRET",
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("listening on 127.0.0.1:"), "{out}");
    assert!(out.contains("figures match"), "{out}");
}

#[tokio::test]
async fn simulate_emit_freeswitch_esl_verifies_through_the_esl_source() {
    let (ok, out) = emit_and_verify(
        "freeswitch_esl",
        "freeswitch-esl",
        "RINGWATCH__SOURCES__PBX__PASSWORD",
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("figures match"), "{out}");
}
