//! Test harness: a daemon on port 0 (in-process through
//! `ringwatch::daemon::start` by default, see `in_process.rs`, or the real
//! binary where the process is the point, see `process.rs`), real WebSocket
//! clients, `/metrics` scraped and parsed, and the golden scenarios.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod ami_server;
pub mod esl_server;
mod in_process;
mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// Each test binary imports what it uses.
#[allow(unused_imports)]
pub use in_process::{start, start_here, start_in, InProcess};
#[allow(unused_imports)]
pub use process::{start_process, start_process_in, Process};
pub use ringwatch::sim::scrape::Samples;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a daemon listens, and what a client does with that: both kinds of
/// daemon dereference to this, so helpers take `&Endpoints` and serve both.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub ingest: SocketAddr,
    pub http: SocketAddr,
}

impl Endpoints {
    pub async fn connect(&self) -> Ws {
        let url = format!("ws://{}/v1/events", self.ingest);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        ws
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(self.url(path)).await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    pub async fn metrics_text(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// Scrape until `selector` equals `want` (for figures that settle after
    /// a close handshake); panics with the last value after 250 tries.
    pub async fn eventually(&self, selector: &str, want: f64) {
        let mut got = None;
        for _ in 0..250 {
            got = self.metrics().await.get(selector);
            if got == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{selector}: expected {want}, last saw {got:?}");
    }

    pub async fn metrics(&self) -> Samples {
        Samples::parse(&self.metrics_text().await).expect("valid exposition")
    }
}

/// The environment every test daemon gets before the test's own overrides:
/// loopback port 0 for both listeners.
fn base_env() -> Vec<(String, String)> {
    vec![
        ("RINGWATCH__INGEST__LISTEN".into(), "127.0.0.1:0".into()),
        ("RINGWATCH__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
    ]
}

/// A fresh data directory unless `env` names one (restart tests bring
/// theirs, to start several daemons on it).
fn data_dir(env: &[(&str, &str)]) -> Option<tempfile::TempDir> {
    if env.iter().any(|(k, _)| *k == "RINGWATCH__DURABILITY__DIR") {
        return None;
    }
    Some(
        tempfile::Builder::new()
            .prefix("ringwatch-test-")
            .tempdir()
            .expect("temporary data directory"),
    )
}

/// `base_env`, then the data directory, then the test's overrides (later
/// entries win).
fn full_env(env: &[(&str, &str)], data: Option<&tempfile::TempDir>) -> Vec<(String, String)> {
    let mut all = base_env();
    if let Some(d) = data {
        all.push((
            "RINGWATCH__DURABILITY__DIR".into(),
            d.path().to_str().unwrap().into(),
        ));
    }
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

/// The `ringwatch` binary with an empty environment but for libfaketime's
/// variables: `scripts/faketime-tests.sh` runs the tests a year ahead, and
/// the daemons they start must live in that year too, not in today's.
pub fn ringwatch_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwatch"));
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        let keep = k
            .to_str()
            .is_some_and(|k| k == "LD_PRELOAD" || k.starts_with("FAKETIME"));
        if keep {
            cmd.env(k, v);
        }
    }
    cmd
}

/// A free loopback port (bound and released: there is a short race until
/// whoever it is for binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `ringwatch simulate` against `d` (unpaced, event time; `--metrics-url`
/// points at `d` for `--verify`); returns success and stdout+stderr.
pub fn simulate(d: &Endpoints, args: &[&str]) -> (bool, String) {
    let out = ringwatch_command()
        .env("RINGWATCH__RULES__CLOCK", "event")
        .arg("simulate")
        .arg("--url")
        .arg(format!("ws://{}/v1/events", d.ingest))
        .arg("--metrics-url")
        .arg(d.url("/metrics"))
        .args(args)
        .output()
        .expect("run ringwatch simulate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Read until the server's close frame; returns its code and reason.
pub async fn close_frame(ws: &mut Ws) -> (CloseCode, String) {
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(Some(f))) => return (f.code, f.reason.to_string()),
                Ok(Message::Close(None)) => panic!("close without a code"),
                Ok(_) => continue,
                Err(e) => panic!("connection ended without a close frame: {e}"),
            }
        }
        panic!("stream ended without a close frame")
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a close frame in time")
}

/// Send one text frame and return the parsed acknowledgement.
pub async fn send(ws: &mut Ws, frame: &str) -> serde_json::Value {
    ws.send(Message::text(frame)).await.expect("send");
    loop {
        match ws.next().await.expect("ack").expect("ack frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("ack is JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

/// The golden scenarios shipped with the project (a copy of the shared ones;
/// `golden_copy_matches_shared` keeps them equal).
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub struct Scenario {
    pub name: String,
    pub frames: Vec<String>,
    /// `RINGWATCH__RULES__...` overrides from the scenario's `config` and `clock`.
    pub env: Vec<(String, String)>,
    pub expect: Vec<(String, f64)>,
}

pub fn scenario(name: &str) -> Scenario {
    let dir = golden_dir();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let frames_path = if dir.join(format!("{name}.jsonl")).exists() {
        dir.join(format!("{name}.jsonl"))
    } else {
        dir.join(format!("{name}.frames"))
    };
    let frames = std::fs::read_to_string(frames_path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    // The stories are stamped on fixed dates: on the wall clock they would
    // be days old (calls evicted, promises missed) on any day but theirs.
    assert_eq!(
        expected["clock"], "event",
        "golden scenario {name} must say \"clock\": \"event\""
    );
    let mut env = vec![("RINGWATCH__RULES__CLOCK".to_string(), "event".to_string())];
    if let Some(cfg) = expected["config"].as_object() {
        for (k, v) in cfg {
            env.push((
                format!("RINGWATCH__RULES__{}", k.to_uppercase()),
                v.to_string(),
            ));
        }
    }
    let expect = expected["expect"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    Scenario {
        name: name.to_string(),
        frames,
        env,
        expect,
    }
}

impl Scenario {
    /// The scenario's overrides, as `start` takes them.
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn start(&self) -> InProcess {
        start(&self.env())
    }

    /// Compare every expected sample exactly; report all differences at once.
    pub fn check(&self, samples: &Samples, how: &str) {
        let mut wrong = Vec::new();
        for (selector, want) in &self.expect {
            match samples.get(selector) {
                Some(got) if got == *want => {}
                Some(got) => wrong.push(format!("{selector}: expected {want}, got {got}")),
                None => wrong.push(format!("{selector}: expected {want}, missing")),
            }
        }
        assert!(
            wrong.is_empty(),
            "scenario {} ({how}) differs:\n  {}",
            self.name,
            wrong.join("\n  ")
        );
    }
}

/// Wall-clock milliseconds since the Unix epoch: tests on the wall clock
/// build their timestamps from this, never from a fixed date.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// A `call.offered` for `call_id` on queue `q`, stamped now: the valid event
/// of tests on the wall clock that need one but not a particular time.
pub fn offer_now(call_id: &str) -> String {
    format!(
        r#"{{"type":"call.offered","ts":{},"call_id":"{call_id}","queue":"q"}}"#,
        now_ms()
    )
}

/// An RFC 3339 timestamp (UTC, milliseconds) for `ms` since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("a representable timestamp");
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("formats")
}

/// Whether `promtool` is installed; when `RINGWATCH_REQUIRE_PROMTOOL` is set
/// (CI) its absence fails the test instead of skipping it.
pub fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("RINGWATCH_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (RINGWATCH_REQUIRE_PROMTOOL is set) but not installed"
        );
        eprintln!("promtool not installed: skipping its check");
    }
    found
}

/// `promtool check metrics` on an exposition (text format): it must pass
/// without a single complaint (lint warnings included).
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool: {complaints}"
    );
}

/// A private CA (its PEM, for a source's `ca_file`) and a TLS acceptor
/// for 127.0.0.1 with a certificate it signed: a peer only that CA makes
/// trusted.
pub fn private_ca_acceptor() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (
        ca.pem(),
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls)),
    )
}
