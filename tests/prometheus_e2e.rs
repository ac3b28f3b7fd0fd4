//! Owns the end-to-end checks against a real Prometheus: dashboard panel queries and recording rules return data, figures add up across instances, and an OpenMetrics scrape gives the same figures as a text scrape.
//!
//! Every Grafana panel query (`python3 dashboards/gen.py --list-queries`) and
//! every recording rule of deploy/prometheus returns data once Prometheus
//! scrapes a real ringwatch fed by the simulator; counters and histogram
//! buckets of two ringwatch instances sharded by site add up in Prometheus.
//!
//! Prometheus computes `rate()` and `increase()` over its own scrape times
//! (wall clock), not over the events' timestamps, so the traffic goes in three
//! parts with scrapes in between: the unpaced simulator first, then two bursts
//! of hand-made calls sent over the WebSocket after the monitor's clock. (A
//! second `ringwatch simulate` run would not do: the first one ends with a
//! `clock` heartbeat a day ahead, past every promise's expiry, so the second
//! run's calls, which start at the same 08:00, are evicted at once and their
//! later events rejected as `unknown_call`; its call ids also repeat.)
//!
//! Skipped, with a notice, when `prometheus` (or, for the dashboard queries,
//! `python3`) is not installed, unless RINGWATCH_REQUIRE_PROMTOOL is set: then
//! a missing tool fails the test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const REQUIRE: &str = "RINGWATCH_REQUIRE_PROMTOOL";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program --version` runs: a skip notice when it does not, a
/// failure instead when RINGWATCH_REQUIRE_PROMTOOL is set (as in CI).
fn available(program: &str, what: &str) -> bool {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            assert!(
                std::env::var_os(REQUIRE).is_none(),
                "{program} is required ({REQUIRE} is set) but not installed: cannot run {what}"
            );
            eprintln!("{program} not installed: skipping {what}");
            false
        }
    }
}

/// `application/x-www-form-urlencoded` value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `record:` names of deploy/prometheus/recording_rules.yml, in order.
fn record_names() -> Vec<String> {
    let path = root().join("deploy/prometheus/recording_rules.yml");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// A real Prometheus on a free loopback port with a temporary data directory:
/// job `ringwatch` scrapes the given targets every second, and both rule files
/// of deploy/prometheus are evaluated every second. Killed and its directory
/// removed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Prometheus {
    /// Start and wait until ready; panics with Prometheus' own error lines
    /// when it exits instead (a rule file it refuses, say).
    async fn start(name: &str, targets: &[SocketAddr]) -> Prometheus {
        let scrape = format!(
            "  - job_name: ringwatch\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
            targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Prometheus::start_with(name, true, &scrape).await
    }

    /// Start with `scrape` as its scrape_configs entries, and both rule
    /// files of deploy/prometheus when `rules`.
    async fn start_with(name: &str, rules: bool, scrape: &str) -> Prometheus {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let dir = std::env::temp_dir().join(format!(
                "ringwatch-prometheus-e2e-{name}-{}-{nanos}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(dir.join("data")).unwrap();
            let dir_rules = root().join("deploy/prometheus");
            let rule_files = if rules {
                format!(
                    "rule_files:\n  - '{}'\n  - '{}'\n",
                    dir_rules.join("recording_rules.yml").display(),
                    dir_rules.join("alerting_rules.yml").display(),
                )
            } else {
                String::new()
            };
            let config = format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 {rule_files}scrape_configs:\n{scrape}"
            );
            std::fs::write(dir.join("prometheus.yml"), config).unwrap();
            let port = common::free_port();
            let mut child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn prometheus");
            let log = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&log);
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            let mut prom = Prometheus {
                child,
                dir,
                base: format!("http://127.0.0.1:{port}"),
                log,
                http: http.clone(),
            };
            match prom.ready().await {
                Ok(()) => return prom,
                Err(why) if why.contains("address already in use") && attempt < 3 => continue,
                Err(why) => panic!("Prometheus did not start: {why}"),
            }
        }
    }

    /// Wait for /-/ready; the error carries Prometheus' error lines.
    async fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the log thread read the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!("prometheus exited ({status}):\n{}", self.errors()));
            }
            if let Ok(resp) = self.http.get(format!("{}/-/ready", self.base)).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within 30 s:\n{}", self.errors()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prometheus' warning and error lines (else its last lines).
    fn errors(&self) -> String {
        let log = self.log.lock().unwrap();
        let bad: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("level=error") || l.contains("level=warn"))
            .collect();
        if bad.is_empty() {
            log.iter()
                .rev()
                .take(20)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            bad.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_str(&resp.text().await.unwrap()).expect("Prometheus answers JSON")
    }

    /// An instant query through /api/v1/query: the samples of a vector (a
    /// scalar counts as one), or Prometheus' error.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let resp = self
            .http
            .post(format!("{}/api/v1/query", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!("query={}", form_encode(promql)))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        let data = &body["data"];
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => Ok(data["result"].as_array().unwrap().clone()),
            _ => Ok(vec![data["result"].clone()]),
        }
    }

    /// The value of each sample of an instant vector query, by the value of
    /// `label` (empty when the sample has no such label).
    async fn values_by(&self, promql: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(promql)
            .await
            .unwrap_or_else(|e| panic!("{promql}: {e}"))
            .iter()
            .map(|s| {
                (
                    s["metric"][label].as_str().unwrap_or("").to_string(),
                    sample_value(s),
                )
            })
            .collect()
    }

    /// The single value of a query (None when it returns nothing).
    async fn value(&self, promql: &str) -> Option<f64> {
        let samples = self
            .query(promql)
            .await
            .unwrap_or_else(|e| panic!("{promql}: {e}"));
        samples.first().map(sample_value)
    }

    /// Wait until Prometheus has scraped `d` after everything sent to it so
    /// far (its frame counter matches /metrics), then for one more scrape.
    async fn wait_scraped(&self, d: &common::Endpoints) {
        let want = d.metrics().await.value("ringwatch_ingest_frames_total");
        let q = format!("ringwatch_ingest_frames_total{{instance=\"{}\"}}", d.http);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.value(&q).await;
            if got == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not scrape {} (frames {got:?}, want {want}):\n{}",
                d.http,
                self.errors()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    /// Every rule Prometheus loaded (name -> "recording" or "alerting"),
    /// once each has been evaluated; panics listing the rules whose
    /// evaluation failed.
    async fn rules(&self) -> BTreeMap<String, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.get("/api/v1/rules").await;
            let mut rules = BTreeMap::new();
            let mut unknown = 0;
            let mut broken = Vec::new();
            for group in body["data"]["groups"].as_array().expect("rule groups") {
                for rule in group["rules"].as_array().unwrap() {
                    let name = rule["name"].as_str().unwrap().to_string();
                    match rule["health"].as_str() {
                        Some("ok") => {}
                        Some("err") => broken.push(format!("{name}: {}", rule["lastError"])),
                        _ => unknown += 1,
                    }
                    rules.insert(name, rule["type"].as_str().unwrap_or("").to_string());
                }
            }
            assert!(
                broken.is_empty(),
                "rule evaluation failed in Prometheus:\n  {}",
                broken.join("\n  ")
            );
            if unknown == 0 && !rules.is_empty() {
                return rules;
            }
            assert!(
                Instant::now() < deadline,
                "{unknown} rules never evaluated (rules loaded: {})",
                rules.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Run every query until each returns at least one sample or `within`
    /// passes. Returns the first answer of each (query -> samples); panics
    /// listing the queries that failed or stayed empty.
    async fn all_return_data(
        &self,
        what: &str,
        queries: &[String],
        within: Duration,
    ) -> BTreeMap<String, Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut answers = BTreeMap::new();
        let mut pending: Vec<&String> = queries.iter().collect();
        loop {
            let mut errors = Vec::new();
            let mut empty = Vec::new();
            for q in pending {
                match self.query(q).await {
                    Ok(samples) if !samples.is_empty() => {
                        answers.insert(q.clone(), samples);
                    }
                    Ok(_) => empty.push(q),
                    Err(e) => errors.push(format!("{q}\n    -> {e}")),
                }
            }
            assert!(
                errors.is_empty(),
                "{} of {} {what} failed in Prometheus:\n  {}",
                errors.len(),
                queries.len(),
                errors.join("\n  ")
            );
            if empty.is_empty() {
                return answers;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {} {what} returned no data:\n  {}",
                    empty.len(),
                    queries.len(),
                    empty
                        .iter()
                        .map(|q| q.as_str())
                        .collect::<Vec<_>>()
                        .join("\n  ")
                );
            }
            pending = empty;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of one sample of the query API (`[ts, "value"]`), or of a scalar.
fn sample_value(s: &Value) -> f64 {
    let v = if s["value"].is_array() {
        &s["value"][1]
    } else {
        &s[1]
    };
    v.as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {s}"))
}

/// `ringwatch simulate` against `d`; panics with its output unless every
/// event was accepted.
fn simulate(d: &common::Endpoints, args: &[&str]) {
    let (ok, out) = common::simulate(d, args);
    assert!(ok, "ringwatch simulate {args:?} failed:\n{out}");
}

/// The monitor's clock of `d`, in Unix milliseconds.
async fn clock_ms(d: &common::Endpoints) -> i64 {
    (d.metrics().await.value("ringwatch_clock_seconds") * 1000.0).round() as i64
}

/// A batch frame of `(ts, event)` pairs, sorted by `ts` (a call's own events
/// keep their order), each given its `ts` and an `event_id` from `prefix`.
fn frame(prefix: &str, mut events: Vec<(i64, Value)>) -> (String, usize) {
    events.sort_by_key(|(ts, _)| *ts);
    let n = events.len();
    let batch: Vec<Value> = events
        .into_iter()
        .enumerate()
        .map(|(i, (ts, mut v))| {
            v["ts"] = json!(ts);
            v["event_id"] = json!(format!("{prefix}-{i}"));
            v
        })
        .collect();
    (Value::Array(batch).to_string(), n)
}

/// One part of hand-made traffic on the simulator's three queues, starting at
/// `t0` (event time, ms): per queue a call answered within three rings with a
/// short hold and a kept callback, one answered late with a hold over 17 s and
/// a late callback, a long and a short abandon, and, still open when the part
/// ends, a caller waiting past three rings, one on hold past 17 s and an
/// overdue promise; then a `clock` heartbeat.
fn burst(part: u32, t0: i64) -> (String, usize) {
    let s = |secs: i64| t0 + secs * 1000;
    let mut ev = Vec::new();
    for q in ["billing", "sales", "support"] {
        let id = |c: &str| format!("e2e{part}-{q}-{c}");
        let agent = format!("agent-{q}-e2e");
        // answered in 8 s, held 10 s, callback kept
        ev.push((
            s(0),
            json!({"type": "call.offered", "call_id": id("a"), "queue": q}),
        ));
        ev.push((
            s(8),
            json!({"type": "call.answered", "call_id": id("a"), "agent": agent}),
        ));
        ev.push((
            s(20),
            json!({"type": "call.hold_started", "call_id": id("a")}),
        ));
        ev.push((
            s(30),
            json!({"type": "call.hold_ended", "call_id": id("a")}),
        ));
        ev.push((s(35), json!({"type": "callback.promised", "call_id": id("a"), "promise_id": id("pa"), "due": s(60)})));
        ev.push((s(40), json!({"type": "call.ended", "call_id": id("a")})));
        ev.push((
            s(50),
            json!({"type": "callback.completed", "promise_id": id("pa")}),
        ));
        // answered in 25 s (past three rings), held 25 s, callback 30 s late
        ev.push((
            s(0),
            json!({"type": "call.offered", "call_id": id("b"), "queue": q}),
        ));
        ev.push((
            s(25),
            json!({"type": "call.answered", "call_id": id("b"), "agent": agent}),
        ));
        ev.push((
            s(30),
            json!({"type": "call.hold_started", "call_id": id("b")}),
        ));
        ev.push((
            s(55),
            json!({"type": "call.hold_ended", "call_id": id("b")}),
        ));
        ev.push((s(58), json!({"type": "callback.promised", "call_id": id("b"), "promise_id": id("pb"), "due": s(70)})));
        ev.push((s(60), json!({"type": "call.ended", "call_id": id("b")})));
        ev.push((
            s(100),
            json!({"type": "callback.completed", "promise_id": id("pb")}),
        ));
        // hangs up after 30 s, and one after 2 s (a short abandon)
        ev.push((
            s(1),
            json!({"type": "call.offered", "call_id": id("c"), "queue": q}),
        ));
        ev.push((
            s(31),
            json!({"type": "call.ended", "call_id": id("c"), "reason": "abandoned"}),
        ));
        ev.push((
            s(2),
            json!({"type": "call.offered", "call_id": id("d"), "queue": q}),
        ));
        ev.push((
            s(4),
            json!({"type": "call.ended", "call_id": id("d"), "reason": "abandoned"}),
        ));
        // still open at the end: waiting 30 s, on hold 25 s, a promise 20 s overdue
        ev.push((
            s(100),
            json!({"type": "call.offered", "call_id": id("e"), "queue": q}),
        ));
        ev.push((
            s(90),
            json!({"type": "call.offered", "call_id": id("f"), "queue": q}),
        ));
        ev.push((
            s(95),
            json!({"type": "call.answered", "call_id": id("f"), "agent": agent}),
        ));
        ev.push((
            s(105),
            json!({"type": "call.hold_started", "call_id": id("f")}),
        ));
        ev.push((
            s(80),
            json!({"type": "callback.promised", "queue": q, "promise_id": id("pg"), "due": s(110)}),
        ));
    }
    ev.push((s(130), json!({"type": "clock"})));
    frame(&format!("e2e{part}"), ev)
}

/// A client-mode "platform" for the SRE dashboard's source panels: it takes
/// ringwatch's connection, sends one empty batch (`[]`: no event, so no
/// figure moves, but the source's last-event time is set) and then keeps
/// reading, which answers pings, so the source stays connected. Returns the
/// URL to configure and the task (abort it when done).
async fn platform() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/stream", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("ringwatch connects");
        let mut ws = tokio_tungstenite::accept_async(stream)
            .await
            .expect("WebSocket upgrade from ringwatch");
        ws.send(Message::text("[]")).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    });
    (url, task)
}

/// Send one frame and check that every event in it was applied.
async fn send_all(ws: &mut common::Ws, (frame, n): (String, usize)) {
    let ack = common::send(ws, &frame).await;
    assert_eq!(ack["accepted"], json!(n), "not every event applied: {ack}");
}

/// `python3 dashboards/gen.py <arg>`: its stdout, or a panic with its output.
fn gen_py(arg: &str) -> String {
    let out = Command::new("python3")
        .current_dir(root())
        .args(["dashboards/gen.py", arg])
        .output()
        .expect("run python3 dashboards/gen.py");
    assert!(
        out.status.success(),
        "python3 dashboards/gen.py {arg} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every `expr` in the committed dashboards, with the variables replaced as
/// `--list-queries` does, to check that the list misses no panel.
fn dashboard_exprs() -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    let e = e
                        .replace("$__rate_interval", "1m")
                        .replace("$queue", ".*")
                        .replace("$site", ".*")
                        .replace("$instance", ".*");
                    out.insert(e.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for name in [
        "ringwatch-wall.json",
        "ringwatch-supervisor.json",
        "ringwatch-sre.json",
    ] {
        let path = root().join("dashboards").join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        walk(&serde_json::from_str(&text).unwrap(), &mut out);
    }
    out
}

/// How a query's answer reads in the report: its first values.
fn show(samples: &[Value]) -> String {
    let mut vals: Vec<String> = samples
        .iter()
        .take(3)
        .map(|s| format!("{}", sample_value(s)))
        .collect();
    if samples.len() > 3 {
        vals.push(format!("... ({} series)", samples.len()));
    }
    vals.join(", ")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_query_and_recording_rule_returns_data() {
    if !available("prometheus", "the Prometheus end-to-end test") {
        return;
    }
    let started = Instant::now();
    // The dashboard queries, checked against the committed JSON first.
    let panel_queries: Option<Vec<String>> =
        available("python3", "the dashboard queries").then(|| {
            gen_py("--check");
            let listed: Vec<String> = gen_py("--list-queries")
                .lines()
                .map(str::to_string)
                .collect();
            let in_json = dashboard_exprs();
            let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
            assert_eq!(
                listed_set, in_json,
                "gen.py --list-queries and the exprs of dashboards/*.json differ"
            );
            assert!(listed.len() > 30, "only {} panel queries", listed.len());
            listed
        });

    // A client-mode source, so that the ringwatch_source_* series exist and
    // have an event; snapshots every 2 s, so that the snapshot age and
    // durations have values within the test.
    let (platform_url, platform_task) = platform().await;
    let d = common::start(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__SOURCES__PLATFORM__URL", &platform_url),
        ("RINGWATCH__DURABILITY__SNAPSHOT_INTERVAL", "2"),
    ]);
    d.eventually("ringwatch_source_frames_total{source=\"platform\"}", 1.0)
        .await;
    let prom = Prometheus::start("panels", &[d.http]).await;

    // Part 1: the simulator, half an hour of three queues.
    simulate(&d, &["--duration", "1800", "--seed", "5"]);
    prom.wait_scraped(&d).await;
    // Parts 2 and 3: more calls after the simulation's last event, so that
    // every counter grows between Prometheus' scrapes. The connection stays
    // open, so ringwatch_ingest_connections is 2 (it and the source) while
    // the queries run.
    let mut ws = d.connect().await;
    for part in [2, 3] {
        let t0 = clock_ms(&d).await + 1_000;
        send_all(&mut ws, burst(part, t0)).await;
        prom.wait_scraped(&d).await;
    }

    // Every rule of both files is loaded and evaluates without error.
    let rules = prom.rules().await;
    let records = record_names();
    let loaded: BTreeSet<&String> = rules
        .iter()
        .filter(|(_, kind)| *kind == "recording")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        loaded,
        records.iter().collect::<BTreeSet<_>>(),
        "Prometheus loaded other recording rules than recording_rules.yml names"
    );
    assert!(
        rules.values().any(|kind| kind == "alerting"),
        "no alerting rule loaded"
    );

    // Every recorded series has a value.
    let recorded = prom
        .all_return_data("recording rules", &records, Duration::from_secs(20))
        .await;
    // Every panel query returns data.
    let panels = match &panel_queries {
        Some(q) => {
            prom.all_return_data("panel queries", q, Duration::from_secs(10))
                .await
        }
        None => BTreeMap::new(),
    };

    // What came back, for the record (shown with --nocapture).
    let nan_only: Vec<&String> = recorded
        .iter()
        .chain(&panels)
        .filter(|(_, s)| s.iter().all(|s| sample_value(s).is_nan()))
        .map(|(q, _)| q)
        .collect();
    for (q, s) in recorded.iter().chain(&panels) {
        eprintln!("{:<60} {}", show(s), q);
    }
    eprintln!(
        "{} recording rules and {} panel queries returned data in {:.1} s; NaN only: {nan_only:?}",
        recorded.len(),
        panels.len(),
        started.elapsed().as_secs_f64()
    );
    // The traffic reached the ratios: the wall's service level is a number.
    let sl = prom
        .value("all:ringwatch_service_level_three_rings:ratio_15m")
        .await
        .unwrap();
    assert!(
        (0.0..=1.0).contains(&sl),
        "three-ring service level over the parts: {sl}"
    );
    drop(ws);
    platform_task.abort();
}

/// How one call of the scale-out test ends.
#[derive(Clone, Copy)]
enum Fate {
    /// Answered after this many seconds.
    Answered(i64),
    /// Hung up after this many seconds.
    Abandoned(i64),
    /// Still waiting.
    Waiting,
}

/// Calls of one site, one second apart from 2026-11-23T09:00Z, in one frame.
fn site_calls(site: &str, calls: &[(&str, Fate)]) -> (String, usize) {
    let t0 = 1_795_424_400_000; // 2026-11-23T09:00:00Z
    let mut ev = Vec::new();
    for (i, (queue, fate)) in calls.iter().enumerate() {
        let id = format!("{site}-{i}");
        let at = t0 + i as i64 * 1000;
        ev.push((
            at,
            json!({"type": "call.offered", "call_id": id, "queue": queue, "site": site}),
        ));
        match *fate {
            Fate::Answered(wait) => {
                ev.push((
                    at + wait * 1000,
                    json!({"type": "call.answered", "call_id": id}),
                ));
                ev.push((
                    at + wait * 1000 + 60_000,
                    json!({"type": "call.ended", "call_id": id}),
                ));
            }
            Fate::Abandoned(wait) => ev.push((
                at + wait * 1000,
                json!({"type": "call.ended", "call_id": id, "reason": "abandoned"}),
            )),
            Fate::Waiting => {}
        }
    }
    frame(site, ev)
}

/// Sum of every sample of `family` (exact name before `{`) in a scrape.
fn scrape_sum(samples: &common::Samples, family: &str) -> f64 {
    samples
        .0
        .iter()
        .filter(|(k, _)| k.split('{').next() == Some(family))
        .map(|(_, v)| v)
        .sum()
}

/// `le` written the same way whatever its source ("18", "18.0", "+Inf").
fn norm_le(le: &str) -> String {
    format!("{}", le.parse::<f64>().expect("le is a number"))
}

/// Per-`le` sums of ringwatch_time_to_answer_seconds_bucket in scrapes.
fn scrape_buckets(scrapes: &[&common::Samples]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for samples in scrapes {
        for (k, v) in &samples.0 {
            if k.split('{').next() != Some("ringwatch_time_to_answer_seconds_bucket") {
                continue;
            }
            let le = k.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            *out.entry(norm_le(le)).or_insert(0.0) += v;
        }
    }
    out
}

/// Two ringwatch instances sharded by site (east and west), one Prometheus
/// scraping both under job `ringwatch`: counters and histogram buckets add up
/// across instances, so `sum(...)` and `histogram_quantile(.., sum by (le)
/// (...))` are right for the whole contact center. The
/// `*_quantile_seconds` gauges are each instance's own sliding-window
/// quantile: no sum, average or maximum of them is the quantile of the whole.
#[tokio::test(flavor = "multi_thread")]
async fn counters_and_buckets_add_up_across_site_shards() {
    if !available("prometheus", "the Prometheus scale-out test") {
        return;
    }
    let east = common::start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let west = common::start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let prom = Prometheus::start("shards", &[east.http, west.http]).await;

    // East answers fast (ten billing calls in 5 s, two sales calls in 13 s);
    // west is slow (three billing calls in 40 s) and has a caller waiting.
    let mut east_calls = vec![("billing", Fate::Answered(5)); 10];
    east_calls.extend([
        ("sales", Fate::Answered(13)),
        ("sales", Fate::Answered(13)),
        ("billing", Fate::Abandoned(20)),
    ]);
    let west_calls = [
        ("billing", Fate::Answered(40)),
        ("billing", Fate::Answered(40)),
        ("billing", Fate::Answered(40)),
        ("billing", Fate::Waiting),
    ];
    for (d, site, calls) in [
        (&east, "east", &east_calls[..]),
        (&west, "west", &west_calls[..]),
    ] {
        let mut ws = d.connect().await;
        send_all(&mut ws, site_calls(site, calls)).await;
    }
    prom.wait_scraped(&east).await;
    prom.wait_scraped(&west).await;
    let (e, w) = (east.metrics().await, west.metrics().await);

    // Counters: Prometheus' sum is the sum of both instances' own counts.
    let offered = prom
        .value("sum(ringwatch_calls_offered_total)")
        .await
        .unwrap();
    let (e_offered, w_offered) = (
        scrape_sum(&e, "ringwatch_calls_offered_total"),
        scrape_sum(&w, "ringwatch_calls_offered_total"),
    );
    assert_eq!((e_offered, w_offered), (13.0, 4.0));
    assert_eq!(offered, e_offered + w_offered);
    let by_site = prom
        .values_by("sum by (site) (ringwatch_calls_offered_total)", "site")
        .await;
    assert_eq!(
        by_site,
        BTreeMap::from([("east".to_string(), 13.0), ("west".to_string(), 4.0)])
    );
    // The dashboards' `site` variable: label_values(ringwatch_calls_offered_total, site).
    let sites = prom
        .get("/api/v1/label/site/values?match[]=ringwatch_calls_offered_total")
        .await;
    assert_eq!(sites["data"], json!(["east", "west"]), "{sites}");

    // Histogram buckets: `sum by (le)` equals the per-le sums of both scrapes.
    let want = scrape_buckets(&[&e, &w]);
    let got: BTreeMap<String, f64> = prom
        .values_by(
            "sum by (le) (ringwatch_time_to_answer_seconds_bucket)",
            "le",
        )
        .await
        .into_iter()
        .map(|(le, v)| (norm_le(&le), v))
        .collect();
    assert_eq!(got, want, "sum by (le) of the buckets across instances");
    assert_eq!(want["18"], 12.0, "answered within three rings, both sites");
    assert_eq!(want["inf"], 15.0, "answered, both sites");
    let count = prom
        .value("sum(ringwatch_time_to_answer_seconds_count)")
        .await
        .unwrap();
    assert_eq!(
        count,
        scrape_sum(&e, "ringwatch_time_to_answer_seconds_count")
            + scrape_sum(&w, "ringwatch_time_to_answer_seconds_count")
    );

    // The recording rules add instances up too (a queue over both sites).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let waiting = prom
            .value("queue:ringwatch_calls_waiting:sum{queue=\"billing\"}")
            .await;
        if waiting == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue:ringwatch_calls_waiting:sum{{queue=\"billing\"}}: {waiting:?}, want 1"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Quantiles: the true median of the 15 answers is 5 s (east's ten). The
    // histogram over the summed buckets puts it in the first ring bucket
    // (0, 6 s]; the quantile gauges, one per instance and series, cannot be
    // combined: their average is about (5 + 13 + 40) / 3 s.
    let p50 = prom
        .value("histogram_quantile(0.5, sum by (le) (ringwatch_time_to_answer_seconds_bucket))")
        .await
        .unwrap();
    assert!(p50 > 0.0 && p50 <= 6.0, "median from summed buckets: {p50}");
    let gauges_avg = prom
        .value("avg(ringwatch_time_to_answer_quantile_seconds{quantile=\"0.5\"} >= 0)")
        .await
        .unwrap();
    assert!(
        gauges_avg > 15.0,
        "average of the per-instance median gauges: {gauges_avg}"
    );
}

/// An HTTP proxy for Prometheus' `proxy_url` that forwards every scrape with
/// `Accept: text/plain;version=0.0.4` in place of Prometheus' own header.
///
/// Prometheus 2.42 (the Debian package) has no `scrape_protocols` (2.49 and
/// later): it always asks for OpenMetrics first, and no flag of 2.42 changes
/// that (`native-histograms` only puts protobuf before it). Prometheus picks
/// its parser from the answer's Content-Type, so a job scraped through this
/// proxy is answered, and parsed by Prometheus, in the text format. Counts
/// the requests it rewrote.
struct TextProxy {
    addr: SocketAddr,
    rewritten: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TextProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn text_proxy() -> TextProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rewritten = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&rewritten);
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(proxy_connection(client, Arc::clone(&count)));
        }
    });
    TextProxy {
        addr,
        rewritten,
        task,
    }
}

/// One connection from Prometheus: request heads (GETs, so no bodies) are
/// read one at a time, rewritten to origin form with the text format's
/// Accept, and sent on one connection to the target; its answers are copied
/// back as they come.
async fn proxy_connection(client: tokio::net::TcpStream, count: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, to_client) = client.into_split();
    let mut to_client = Some(to_client);
    let mut upstream: Option<tokio::net::tcp::OwnedWriteHalf> = None;
    let mut back: Option<tokio::task::JoinHandle<()>> = None;
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break String::from_utf8(buf.drain(..end + 4).collect()).unwrap();
            }
            let mut chunk = [0u8; 4096];
            match from_client.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => {
                    if let Some(back) = back {
                        back.abort();
                    }
                    return;
                }
            }
        };
        let mut lines = head.split("\r\n");
        let request: Vec<&str> = lines.next().unwrap().split(' ').collect();
        let [method, uri, version] = request[..] else {
            panic!("not a request line: {head:?}");
        };
        let target = uri
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("not an absolute-form request: {uri}"));
        let (authority, path) = target.split_at(target.find('/').unwrap_or(target.len()));
        let mut out = format!("{method} {path} {version}\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap().trim().to_ascii_lowercase();
            if name != "accept" && name != "proxy-connection" {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("Accept: text/plain;version=0.0.4\r\n\r\n");
        if upstream.is_none() {
            let Ok(up) = tokio::net::TcpStream::connect(authority).await else {
                return;
            };
            let (mut from_up, to_up) = up.into_split();
            let mut to_client = to_client.take().unwrap();
            back = Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_up, &mut to_client).await;
            }));
            upstream = Some(to_up);
        }
        if upstream
            .as_mut()
            .unwrap()
            .write_all(out.as_bytes())
            .await
            .is_err()
        {
            return;
        }
        count.fetch_add(1, Ordering::SeqCst);
    }
}

/// `job`'s series of ringwatch (`ringwatch_*` and `process_*`) in Prometheus,
/// keyed by their labels without `job` and `instance`.
async fn job_series(prom: &Prometheus, job: &str) -> BTreeMap<String, f64> {
    let q = format!("{{job=\"{job}\",__name__=~\"ringwatch_.+|process_.+\"}}");
    prom.query(&q)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .iter()
        .map(|s| {
            let labels = s["metric"].as_object().unwrap();
            let name = labels["__name__"].as_str().unwrap();
            let rest: Vec<String> = labels
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (format!("{name}{{{}}}", rest.join(",")), sample_value(s))
        })
        .collect()
}

/// Prometheus' metadata of `metric` as scraped by `job`: (type, unit).
async fn metadata(prom: &Prometheus, job: &str, metric: &str) -> Option<(String, String)> {
    let path = format!(
        "/api/v1/targets/metadata?match_target={}&metric={metric}",
        form_encode(&format!("{{job=\"{job}\"}}"))
    );
    let body = prom.get(&path).await;
    let first = body["data"].as_array()?.first()?.clone();
    Some((
        first["type"].as_str()?.to_string(),
        first["unit"].as_str().unwrap_or("").to_string(),
    ))
}

/// The same ringwatch scraped by the real Prometheus twice: job
/// `openmetrics` as Prometheus asks by default (OpenMetrics first), job
/// `text` through [`TextProxy`] (the text format). Prometheus stores the
/// same series with the same figures both ways, and its metadata shows which
/// parser each job went through.
#[tokio::test(flavor = "multi_thread")]
async fn openmetrics_and_text_scrapes_give_the_same_figures() {
    if !available("prometheus", "the OpenMetrics end-to-end test") {
        return;
    }
    let d = common::start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let proxy = text_proxy().await;
    let scrape = format!(
        "  - job_name: openmetrics\n    static_configs:\n      - targets: ['{t}']\n\
         \x20 - job_name: text\n    proxy_url: 'http://{p}'\n    static_configs:\n      - targets: ['{t}']\n",
        t = d.http,
        p = proxy.addr
    );
    let prom = Prometheus::start_with("formats", false, &scrape).await;
    simulate(&d, &["--duration", "900", "--seed", "11"]);

    // Both jobs scraped after the last frame.
    let frames = d.metrics().await.value("ringwatch_ingest_frames_total");
    let want = BTreeMap::from([
        ("openmetrics".to_string(), frames),
        ("text".to_string(), frames),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = prom.values_by("ringwatch_ingest_frames_total", "job").await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not scraped both ways: {got:?}, want {want:?}:\n{}",
            prom.errors()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        prom.values_by("up", "job").await,
        BTreeMap::from([("openmetrics".to_string(), 1.0), ("text".to_string(), 1.0)]),
        "{}",
        prom.errors()
    );
    assert!(proxy.rewritten.load(Ordering::SeqCst) > 0);

    // Which parser each job went through: OpenMetrics names a counter
    // without `_total` and carries units; the text format does neither.
    assert_eq!(
        metadata(&prom, "openmetrics", "ringwatch_calls_offered").await,
        Some(("counter".to_string(), String::new()))
    );
    assert_eq!(
        metadata(&prom, "openmetrics", "ringwatch_time_to_answer_seconds").await,
        Some(("histogram".to_string(), "seconds".to_string()))
    );
    assert_eq!(
        metadata(&prom, "text", "ringwatch_calls_offered_total").await,
        Some(("counter".to_string(), String::new()))
    );
    assert_eq!(
        metadata(&prom, "text", "ringwatch_time_to_answer_seconds").await,
        Some(("histogram".to_string(), String::new()))
    );
    assert_eq!(
        metadata(&prom, "text", "ringwatch_calls_offered").await,
        None
    );

    // The same series both ways, and the same figures but for those that
    // move on their own between the two jobs' scrapes.
    let (om, text) = (
        job_series(&prom, "openmetrics").await,
        job_series(&prom, "text").await,
    );
    assert_eq!(
        om.keys().collect::<BTreeSet<_>>(),
        text.keys().collect::<BTreeSet<_>>(),
        "Prometheus stored other series from the two formats"
    );
    let moving = |k: &str| {
        [
            "process_",
            "ringwatch_scrape",
            "ringwatch_snapshot_",
            "ringwatch_journal_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    };
    let mut compared = 0;
    let mut differ = Vec::new();
    for (k, v) in om.iter().filter(|(k, _)| !moving(k)) {
        let t = text[k];
        if !(t == *v || (t.is_nan() && v.is_nan())) {
            differ.push(format!("{k}: openmetrics {v}, text {t}"));
        }
        compared += 1;
    }
    assert!(
        differ.is_empty(),
        "figures differ:\n  {}",
        differ.join("\n  ")
    );
    let buckets = om
        .keys()
        .filter(|k| {
            k.starts_with("ringwatch_time_to_answer_seconds_bucket") && k.contains("le=\"18.0\"")
        })
        .count();
    assert!(buckets > 0, "no le=\"18.0\" bucket stored");
    eprintln!(
        "{} series both ways, {compared} figures equal; {} scrapes rewritten to the text format",
        om.len(),
        proxy.rewritten.load(Ordering::SeqCst)
    );
}
