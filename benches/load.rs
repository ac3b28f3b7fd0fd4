//! benches/load.rs: the end-to-end load, latency and memory benchmark. This
//! process is the client; it starts the release `ringwatch` binary
//! (clock = event) and the `bare_server` example as separate processes, on
//! 127.0.0.1 ports chosen by the kernel, drives them over real WebSockets and
//! kills them when a case ends. Figures are printed as Markdown tables.
//!
//! `cargo bench --bench load -- [throughput] [latency] [memory] [pipelined] [quick]`
//! (no mode: the first three; `quick`: 1 s per case instead of 3 s;
//! `pipelined`: issue 11's cases alone, the pipelined throughput and the
//! open-loop latency at half its maximum; `open` with
//! `LOAD_OPEN_RATE=<events/s>`: that latency alone, at half the given rate;
//! `LOAD_RINGWATCH_BIN=<path>`: run that ringwatch binary instead of the
//! one it builds, to compare two commits; `LOAD_BARE_FIRST=1`: the bare
//! server runs first in each open-loop round, to see what the order does;
//! `LOAD_FLOOR=1`: the bare server applying ringwatch's decoder and engine
//! takes ringwatch's place (see examples/bare_server.rs);
//! `LOAD_SERVER_WORKERS=N`: both servers run N tokio workers, the client
//! keeps its own).
//!
//! Throughput runs each case three times, alternating ringwatch and the bare
//! server, and reports medians, so a ratio always compares two servers in the
//! same run. Depth 1 (send, wait for the ack) measures round trips; the
//! pipelined cases (8 frames in flight per connection, and no window at all,
//! acks read concurrently) measure what a platform firehose sees, where the
//! server and not the round trip is the bottleneck. Events are full call
//! lifecycles (offered, answered, hold started, hold ended, ended) with
//! unique event ids, and `call_ttl` is at its maximum so nothing is evicted. It builds
//! `--release --bin ringwatch --example bare_server` itself before starting.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// 2026-11-23T09:00:00Z: event time starts here.
const BASE_TS: i64 = 1_795_424_400_000;

// ---------------------------------------------------------------- processes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ringwatch,
    Bare,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ringwatch => "ringwatch",
            Kind::Bare => "bare",
        }
    }
}

struct Bins {
    ringwatch: PathBuf,
    bare: PathBuf,
}

/// Build the release daemon and the bare server (a no-op when up to date).
fn build() -> Bins {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A target dir of its own: built from inside `cargo bench`, whose
    // environment differs, the shared one rebuilt ring, rustls and the
    // library on every run, and the bench's build then rebuilt them back.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"))
        .join("load-bins");
    let status = Command::new(cargo)
        .current_dir(&manifest)
        .args([
            "build",
            "--release",
            "--bin",
            "ringwatch",
            "--example",
            "bare_server",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    Bins {
        // `LOAD_RINGWATCH_BIN=<path>`: another build of ringwatch (an
        // earlier commit's) against the same bare server, to compare two
        // commits in alternating runs.
        ringwatch: std::env::var_os("LOAD_RINGWATCH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("release/ringwatch")),
        bare: target.join("release/examples/bare_server"),
    }
}

/// The command that starts a server binary. With `LOAD_SERVER_CPUS` set
/// (a `taskset -c` list such as `0`), both servers run pinned to those
/// cores, and the client keeps all of them: one core against two is how
/// the bench shows what a second core buys.
fn server_command(bin: &PathBuf) -> Command {
    match std::env::var("LOAD_SERVER_CPUS") {
        Ok(cpus) if !cpus.is_empty() => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpus]).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// `LOAD_SERVER_WORKERS=N`: the tokio workers of either server (as
/// `TOKIO_WORKER_THREADS`, which the bench's own runtime would read too if
/// it were set for the whole bench).
fn server_workers(cmd: &mut Command) {
    if let Ok(n) = std::env::var("LOAD_SERVER_WORKERS") {
        cmd.env("TOKIO_WORKER_THREADS", n);
    }
}

/// A server process, killed (and reaped) when dropped.
struct Server {
    child: Child,
    ingest: SocketAddr,
    http: Option<SocketAddr>,
    /// ringwatch's data directory (journal, snapshots), removed afterwards.
    _data: Option<tempfile::TempDir>,
}

impl Server {
    fn start(bins: &Bins, kind: Kind, env: &[(&str, &str)]) -> Server {
        match kind {
            // `LOAD_FLOOR=1`: ringwatch's place is taken by the bare server
            // applying every frame to ringwatch's rules engine on the
            // connection's task (see examples/bare_server.rs).
            Kind::Ringwatch if std::env::var_os("LOAD_FLOOR").is_some() => {
                Self::bare_with(bins, &[("BARE_ENGINE", "1")])
            }
            Kind::Ringwatch => Self::ringwatch(bins, env),
            Kind::Bare => Self::bare(bins),
        }
    }

    fn ringwatch(bins: &Bins, env: &[(&str, &str)]) -> Server {
        let data = tempfile::Builder::new()
            .prefix("ringwatch-bench-")
            .tempdir()
            .expect("temporary data directory");
        let mut cmd = server_command(&bins.ringwatch);
        cmd.env_clear()
            .env("RINGWATCH__DURABILITY__DIR", data.path())
            .env("RINGWATCH__INGEST__LISTEN", "127.0.0.1:0")
            .env("RINGWATCH__HTTP__LISTEN", "127.0.0.1:0")
            .env("RINGWATCH__LOG__FORMAT", "json")
            .env("RINGWATCH__LOG__LEVEL", "info")
            .env("RINGWATCH__RULES__CLOCK", "event")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // RINGWATCH__* variables of the bench's own environment are passed
        // on, so any configuration can be benchmarked.
        for (k, v) in std::env::vars()
            .filter(|(k, _)| k.starts_with("RINGWATCH__") || k == "TOKIO_WORKER_THREADS")
        {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        server_workers(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ringwatch");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining the log for the life of the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut ingest, mut http) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ingest.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("ringwatch did not start");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let addr = v["addr"].as_str().and_then(|a| a.parse().ok());
            match v["message"].as_str() {
                Some("ingest listening") => ingest = addr,
                Some("http listening") => http = addr,
                _ => {}
            }
        }
        Server {
            child,
            ingest: ingest.unwrap(),
            http,
            _data: Some(data),
        }
    }

    fn bare(bins: &Bins) -> Server {
        Self::bare_with(bins, &[])
    }

    fn bare_with(bins: &Bins, env: &[(&str, &str)]) -> Server {
        let mut cmd = server_command(&bins.bare);
        cmd.env_remove("BARE_ENGINE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        server_workers(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn bare_server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("bare_server address");
        let ingest = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bare_server said {line:?}"));
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        Server {
            child,
            ingest,
            http: None,
            _data: None,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/events", self.ingest)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes (VmRSS of /proc/PID/status).
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    async fn scrape(&self, client: &reqwest::Client) -> String {
        let url = format!("http://{}/metrics", self.http.expect("ringwatch only"));
        let resp = client.get(url).send().await.expect("GET /metrics");
        assert!(resp.status().is_success());
        resp.text().await.unwrap()
    }

    /// `/metrics` read as a scraper reads it, into `buf` (kept between
    /// scrapes); its length.
    async fn scrape_into(&self, client: &reqwest::Client, buf: &mut Vec<u8>) -> usize {
        let url = format!("http://{}/metrics", self.http.expect("ringwatch only"));
        let mut resp = client.get(url).send().await.expect("GET /metrics");
        assert!(resp.status().is_success());
        buf.clear();
        while let Some(chunk) = resp.chunk().await.expect("/metrics body") {
            buf.extend_from_slice(&chunk);
        }
        std::str::from_utf8(buf).expect("/metrics is UTF-8").len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- events

/// Valid events with unique ids: per call, the full lifecycle offered ->
/// answered (4 s later, one ring) -> hold started (10 s after the offer) ->
/// hold ended (5 s of hold) -> ended (64 s after the offer), every event
/// with an event_id and an integer-millisecond `ts`. Calls of one generator
/// follow each other 10 ms apart in event time.
struct Gen {
    prefix: String,
    call: u64,
    step: u8,
    event: u64,
    with_event_ids: bool,
}

/// Events per call of [`Gen`].
const STEPS: u8 = 5;

impl Gen {
    fn new(prefix: String) -> Gen {
        Gen {
            prefix,
            call: 0,
            step: 0,
            event: 0,
            with_event_ids: true,
        }
    }

    fn push(&mut self, out: &mut String) {
        use std::fmt::Write;
        let (p, k, e) = (&self.prefix, self.call, self.event);
        let ts = BASE_TS + k as i64 * 10;
        let q = k % 10;
        let eid = if self.with_event_ids {
            format!(r#","event_id":"{p}e{e}""#)
        } else {
            String::new()
        };
        let _ = match self.step {
            0 => write!(
                out,
                r#"{{"type":"call.offered","ts":{ts},"call_id":"{p}{k}","queue":"q{q}","caller":"+15550100"{eid}}}"#
            ),
            1 => write!(
                out,
                r#"{{"type":"call.answered","ts":{},"call_id":"{p}{k}","agent":"agent-{q}"{eid}}}"#,
                ts + 4_000
            ),
            2 => write!(
                out,
                r#"{{"type":"call.hold_started","ts":{},"call_id":"{p}{k}","agent":"agent-{q}"{eid}}}"#,
                ts + 10_000
            ),
            3 => write!(
                out,
                r#"{{"type":"call.hold_ended","ts":{},"call_id":"{p}{k}"{eid}}}"#,
                ts + 15_000
            ),
            _ => write!(
                out,
                r#"{{"type":"call.ended","ts":{},"call_id":"{p}{k}","reason":"completed"{eid}}}"#,
                ts + 64_000
            ),
        };
        self.event += 1;
        self.step = (self.step + 1) % STEPS;
        if self.step == 0 {
            self.call += 1;
        }
    }

    /// One frame: a bare object for `batch == 1`, else a JSON array.
    fn frame(&mut self, batch: usize) -> String {
        let mut out = String::with_capacity(batch * 140 + 2);
        if batch == 1 {
            self.push(&mut out);
            return out;
        }
        out.push('[');
        for i in 0..batch {
            if i > 0 {
                out.push(',');
            }
            self.push(&mut out);
        }
        out.push(']');
        out
    }
}

// ---------------------------------------------------------------- client

async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("connect");
    ws
}

async fn connect_many(url: &str, n: usize) -> Vec<Ws> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let chunk = (n - out.len()).min(200);
        let batch = futures_util::future::join_all((0..chunk).map(|_| connect(url))).await;
        out.extend(batch);
    }
    out
}

/// The `accepted` count of an ack (ringwatch's or the bare server's).
fn accepted(ack: &str) -> u64 {
    ack.split_once(r#""accepted":"#)
        .map(|(_, rest)| {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Wait for the next text message (an ack), skipping pings and pongs.
async fn next_ack<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended while waiting for an ack: {other:?}"),
        }
    }
}

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    frames: AtomicU64,
    /// Events sent but not reported accepted (must stay 0).
    not_accepted: AtomicU64,
}

impl Counts {
    fn ack(&self, ack: &str, sent: usize) {
        let n = accepted(ack);
        self.events.fetch_add(n, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
        let missing = (sent as u64).saturating_sub(n);
        if missing > 0 && self.not_accepted.fetch_add(missing, Ordering::Relaxed) == 0 {
            eprintln!("  first incomplete ack: {}", &ack[..ack.len().min(300)]);
        }
    }
}

/// A window with no limit: frames are written as fast as the socket takes
/// them while acks are read concurrently (a platform firehose).
const UNLIMITED: usize = usize::MAX;

/// One connection, `depth` frames in flight (1: send, wait for the ack,
/// repeat; [`UNLIMITED`]: no window).
async fn drive(
    mut ws: Ws,
    mut gen: Gen,
    batch: usize,
    depth: usize,
    stop: Arc<AtomicBool>,
    c: Arc<Counts>,
) {
    if depth == 1 {
        while !stop.load(Ordering::Relaxed) {
            let frame = gen.frame(batch);
            ws.send(Message::text(frame)).await.expect("send");
            let ack = next_ack(&mut ws).await;
            c.ack(&ack, batch);
        }
        let _ = ws.close(None).await;
        return;
    }
    let (mut tx, mut rx) = ws.split();
    // An unlimited window is a semaphore that never runs out.
    let window = Arc::new(Semaphore::new(depth.min(Semaphore::MAX_PERMITS / 2)));
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let (window, sent, stop) = (Arc::clone(&window), Arc::clone(&sent), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                window.acquire().await.expect("open").forget();
                let frame = gen.frame(batch);
                tx.send(Message::text(frame)).await.expect("send");
                sent.fetch_add(1, Ordering::Release);
            }
            tx
        })
    };
    let mut got = 0u64;
    loop {
        if stop.load(Ordering::Relaxed)
            && writer.is_finished()
            && got == sent.load(Ordering::Acquire)
        {
            break;
        }
        let Ok(ack) = tokio::time::timeout(Duration::from_millis(50), next_ack(&mut rx)).await
        else {
            continue;
        };
        got += 1;
        if depth != UNLIMITED {
            window.add_permits(1);
        }
        c.ack(&ack, batch);
    }
    let tx = writer.await.unwrap();
    if let Ok(mut ws) = tx.reunite(rx) {
        let _ = ws.close(None).await;
    }
}

struct Rate {
    events_per_s: f64,
    frames_per_s: f64,
    not_accepted: u64,
}

async fn throughput(
    server: &Server,
    tag: &str,
    conns: usize,
    batch: usize,
    depth: usize,
    warm: Duration,
    run: Duration,
) -> Rate {
    let sockets = connect_many(&server.url(), conns).await;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let gen = Gen::new(format!("{tag}c{i}-"));
            tokio::spawn(drive(
                ws,
                gen,
                batch,
                depth,
                Arc::clone(&stop),
                Arc::clone(&counts),
            ))
        })
        .collect();
    tokio::time::sleep(warm).await;
    let (e0, f0, t0) = (
        counts.events.load(Ordering::Relaxed),
        counts.frames.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(run).await;
    let (e1, f1, t1) = (
        counts.events.load(Ordering::Relaxed),
        counts.frames.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("connection task stops")
            .unwrap();
    }
    let secs = (t1 - t0).as_secs_f64();
    Rate {
        events_per_s: (e1 - e0) as f64 / secs,
        frames_per_s: (f1 - f0) as f64 / secs,
        not_accepted: counts.not_accepted.load(Ordering::Relaxed),
    }
}

struct Latency {
    hist: Histogram<u64>,
    events_per_s: f64,
}

/// A microsecond histogram of send -> ack times.
fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()
}

/// The connections' histograms merged, and the events they sent over `run`.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<(Histogram<u64>, u64)>>,
    run: Duration,
) -> Latency {
    let mut hist = latency_histogram();
    let mut events = 0;
    for t in tasks {
        let (h, e) = t.await.unwrap();
        hist.add(h).unwrap();
        events += e;
    }
    Latency {
        hist,
        events_per_s: events as f64 / run.as_secs_f64(),
    }
}

/// `conns` connections, each sending a `batch`-event frame on a fixed
/// schedule (total `rate` events/s) and timing send -> ack in microseconds.
async fn latency(
    server: &Server,
    tag: &str,
    conns: usize,
    batch: usize,
    rate: f64,
    run: Duration,
) -> Latency {
    let sockets = connect_many(&server.url(), conns).await;
    let interval = Duration::from_secs_f64(conns as f64 * batch as f64 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = start + run;
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let mut gen = Gen::new(format!("{tag}c{i}-"));
            tokio::spawn(async move {
                let mut hist = latency_histogram();
                let mut next = start + interval.mul_f64(i as f64 / conns as f64);
                let mut events = 0u64;
                while next < end {
                    tokio::time::sleep_until(next).await;
                    let frame = gen.frame(batch);
                    let sent = Instant::now();
                    ws.send(Message::text(frame)).await.expect("send");
                    let ack = next_ack(&mut ws).await;
                    hist.saturating_record(sent.elapsed().as_micros() as u64);
                    assert_eq!(accepted(&ack), batch as u64, "ack {ack}");
                    events += batch as u64;
                    next += interval;
                }
                let _ = ws.close(None).await;
                (hist, events)
            })
        })
        .collect();
    gather(tasks, run).await
}

/// As [`latency`], but open loop: each connection writes its frames on the
/// schedule whatever the acks do (a late ack never delays the next frame),
/// and a reader matches acks to send times in order. This is how a
/// platform's firehose loads a server, and it does not hide a slow ack
/// behind the frame it held back.
async fn latency_open(
    server: &Server,
    tag: &str,
    conns: usize,
    batch: usize,
    rate: f64,
    run: Duration,
) -> Latency {
    let sockets = connect_many(&server.url(), conns).await;
    let interval = Duration::from_secs_f64(conns as f64 * batch as f64 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = start + run;
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let mut gen = Gen::new(format!("{tag}c{i}-"));
            let (mut tx, mut rx) = ws.split();
            let (times, mut sent_at) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            tokio::spawn(async move {
                let writer = tokio::spawn(async move {
                    let mut next = start + interval.mul_f64(i as f64 / conns as f64);
                    let mut frames = 0u64;
                    while next < end {
                        tokio::time::sleep_until(next).await;
                        let frame = gen.frame(batch);
                        times.send(Instant::now()).expect("reader alive");
                        tx.send(Message::text(frame)).await.expect("send");
                        frames += 1;
                        next += interval;
                    }
                    (tx, frames)
                });
                let mut hist = latency_histogram();
                let mut events = 0u64;
                while let Some(sent) = sent_at.recv().await {
                    let ack = next_ack(&mut rx).await;
                    hist.saturating_record(sent.elapsed().as_micros() as u64);
                    assert_eq!(accepted(&ack), batch as u64, "ack {ack}");
                    events += batch as u64;
                }
                let (tx, frames) = writer.await.unwrap();
                assert_eq!(hist.len(), frames);
                if let Ok(mut ws) = tx.reunite(rx) {
                    let _ = ws.close(None).await;
                }
                (hist, events)
            })
        })
        .collect();
    gather(tasks, run).await
}

/// Check "ack means counted": a frame of offered calls on a queue of its
/// own, then a scrape right after each ack must already count them.
async fn verify_ack_means_counted(server: &Server, rounds: u64) -> (u64, u64) {
    let client = reqwest::Client::new();
    let mut ws = connect(&server.url()).await;
    let mut mismatches = 0;
    for round in 0..rounds {
        let events: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    r#"{{"type":"call.offered","ts":{BASE_TS},"call_id":"verify-{round}-{i}","queue":"verify"}}"#
                )
            })
            .collect();
        ws.send(Message::text(format!("[{}]", events.join(","))))
            .await
            .unwrap();
        let ack = next_ack(&mut ws).await;
        assert_eq!(accepted(&ack), 10, "{ack}");
        let text = server.scrape(&client).await;
        let samples = ringwatch::sim::scrape::Samples::parse(&text).unwrap();
        let got = samples
            .get(r#"ringwatch_calls_offered_total{queue="verify"}"#)
            .unwrap_or(-1.0);
        if got != ((round + 1) * 10) as f64 {
            mismatches += 1;
            eprintln!(
                "  after ack {round}: scrape shows {got}, expected {}",
                (round + 1) * 10
            );
        }
    }
    let _ = ws.close(None).await;
    (rounds, mismatches)
}

// ---------------------------------------------------------------- cases

fn fmt_rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

struct Opts {
    warm: Duration,
    run: Duration,
    /// Alternating rounds per throughput case (medians reported).
    rounds: usize,
}

/// `LOAD_CASE=CONNSxBATCHxDEPTH` (depth a number or `unlimited`) runs that
/// throughput case alone: for profiling one case (`perf record -p` on the
/// server while it runs, with `LOAD_RUN_SECS` long enough).
fn keep_case((conns, batch, depth): (usize, usize, usize)) -> bool {
    let Ok(only) = std::env::var("LOAD_CASE") else {
        return true;
    };
    let depth = if depth == UNLIMITED {
        "unlimited".to_string()
    } else {
        depth.to_string()
    };
    only == format!("{conns}x{batch}x{depth}")
}

/// Max rates, returned for the latency runs: (conns, batch, depth) -> ringwatch rate.
///
/// Every case runs `rounds` times, alternating ringwatch and the bare
/// server, and reports the median of each: the ratio is always taken in the
/// same run, on the same machine state.
async fn run_throughput(
    bins: &Bins,
    o: &Opts,
    only_pipelined: bool,
) -> Vec<((usize, usize, usize), f64)> {
    println!(
        "\n## Throughput (events/s, median of {} alternating rounds; depth 1 sends a frame and waits for its ack, W frames in flight otherwise, unlimited = no window)\n",
        o.rounds
    );
    println!("| frame | conns | depth | ringwatch ev/s | bare ev/s | ratio | ringwatch frames/s | not accepted |");
    println!("|---|---|---|---|---|---|---|---|");
    let all_cases = [
        (1, 1, 1),
        (16, 1, 1),
        (256, 1, 1),
        (1, 100, 1),
        (16, 100, 1),
        (256, 100, 1),
        (16, 100, 8),
        (16, 100, UNLIMITED),
        (1, 1, 8),
        (1, 1, UNLIMITED),
    ];
    // Issue 11's cases: a firehose over 16 connections and over one.
    let cases: Vec<_> = all_cases
        .into_iter()
        .filter(|&(_, _, depth)| !only_pipelined || depth != 1)
        .filter(|&case| keep_case(case))
        .collect();
    // Nothing is evicted during a case, whatever its event times.
    let env = [("RINGWATCH__RULES__CALL_TTL", "2592000")];
    let mut out = Vec::new();
    for (n, &(conns, batch, depth)) in cases.iter().enumerate() {
        let mut rw = Vec::new();
        let mut bare = Vec::new();
        let mut not_accepted = 0;
        for round in 0..o.rounds {
            for kind in [Kind::Ringwatch, Kind::Bare] {
                let server = Server::start(bins, kind, &env);
                let tag = format!("t{n}r{round}");
                let r = throughput(&server, &tag, conns, batch, depth, o.warm, o.run).await;
                not_accepted += r.not_accepted;
                match kind {
                    Kind::Ringwatch => rw.push(r),
                    Kind::Bare => bare.push(r),
                }
                drop(server);
            }
        }
        let median = |v: &mut Vec<Rate>, f: fn(&Rate) -> f64| {
            let mut xs: Vec<f64> = v.iter().map(f).collect();
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let rw_events = median(&mut rw, |r| r.events_per_s);
        let rw_frames = median(&mut rw, |r| r.frames_per_s);
        let bare_events = median(&mut bare, |r| r.events_per_s);
        println!(
            "| {} | {conns} | {} | {} | {} | {:.2} | {} | {} |",
            if batch == 1 {
                "1 event".into()
            } else {
                format!("{batch} events")
            },
            match depth {
                1 => "1".to_string(),
                UNLIMITED => "unlimited".to_string(),
                w => format!("{w}"),
            },
            fmt_rate(rw_events),
            fmt_rate(bare_events),
            rw_events / bare_events,
            fmt_rate(rw_frames),
            not_accepted,
        );
        out.push(((conns, batch, depth), rw_events));
    }
    out
}

/// p99 send -> ack of 16 connections x 100-event frames, open loop, at half
/// ringwatch's pipelined maximum of the same run, for ringwatch and the bare
/// server alternately (`rounds` times each; every round's figures printed).
async fn run_open_latency(bins: &Bins, o: &Opts, max: &[((usize, usize, usize), f64)]) {
    let Some(&(_, rate)) = max.iter().find(|(k, _)| *k == (16, 100, UNLIMITED)) else {
        return;
    };
    let target = rate / 2.0;
    println!("\n## Latency send -> ack, open loop, 16 x 100-event frames at half the pipelined max ({})\n", fmt_rate(target));
    println!("| round | server | achieved ev/s | p50 ms | p99 ms | p99.9 ms | max ms | frames | server CPU µs/event |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let env = [("RINGWATCH__RULES__CALL_TTL", "2592000")];
    let mut p99 = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        let order = if std::env::var_os("LOAD_BARE_FIRST").is_some() {
            [Kind::Bare, Kind::Ringwatch]
        } else {
            [Kind::Ringwatch, Kind::Bare]
        };
        for kind in order {
            let k = usize::from(kind == Kind::Bare);
            let server = Server::start(bins, kind, &env);
            let tag = format!("o{round}");
            let before = cpu_time(server.child.id());
            let l = latency_open(&server, &tag, 16, 100, target, o.run).await;
            let h = &l.hist;
            // Everything the server spent while the run lasted (connecting
            // included), per event sent: at one rate for both servers, the
            // cost that the cores' queueing turns into latency.
            let per_event = before
                .zip(cpu_time(server.child.id()))
                .map(|(a, b)| (b - a).as_secs_f64() * 1e6 / (h.len() as f64 * 100.0));
            p99[k].push(h.value_at_quantile(0.99));
            cpu[k].extend(per_event);
            println!(
                "| {round} | {} | {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                fmt_rate(l.events_per_s),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
                h.len(),
                per_event.map_or("-".into(), |us| format!("{us:.2}")),
            );
        }
    }
    for v in &mut p99 {
        v.sort();
    }
    let (rw, bare) = (p99[0][p99[0].len() / 2], p99[1][p99[1].len() / 2]);
    println!(
        "\nmedian p99: ringwatch {} ms, bare {} ms, ratio {:.2} (target <= 2)",
        ms(rw),
        ms(bare),
        rw as f64 / bare as f64
    );
    for v in &mut cpu {
        v.sort_by(f64::total_cmp);
    }
    if let (Some(rw), Some(bare)) = (cpu[0].get(cpu[0].len() / 2), cpu[1].get(cpu[1].len() / 2)) {
        println!(
            "median server CPU per event: ringwatch {rw:.2} µs, bare {bare:.2} µs, ratio {:.2}",
            rw / bare
        );
    }
}

/// CPU time (user and system) process `pid` has used so far, from
/// `/proc/PID/stat` (Linux; `None` elsewhere).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, and it may hold
    // spaces) start with the state, field 3: utime and stime are 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ').skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // In clock ticks of USER_HZ, which Linux's ABI fixes at 100 per second.
    Some(Duration::from_millis(ticks * 10))
}

async fn run_latency(bins: &Bins, o: &Opts, max: &[((usize, usize, usize), f64)]) {
    println!("\n## Latency send -> ack (= send -> counted), at half the measured max rate\n");
    println!("| server | frame | conns | target ev/s | achieved ev/s | p50 ms | p99 ms | p99.9 ms | max ms | frames |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (conns, batch) in [(1, 1), (16, 1), (16, 100)] {
        // Half the pipelined (no window) maximum where it was measured, as
        // a firehose platform would load it; else half the depth-1 maximum.
        let find = |depth| max.iter().find(|(k, _)| *k == (conns, batch, depth));
        let Some(&(_, rate)) = find(UNLIMITED).or_else(|| find(1)) else {
            continue;
        };
        let target = rate / 2.0;
        // The 16 x 100 case runs once more on ringwatch with the
        // ack-means-counted check (a scrape after each of 50 acks) alongside.
        let with_check = conns == 16 && batch == 100;
        let runs: &[(Kind, bool)] = if with_check {
            &[
                (Kind::Ringwatch, false),
                (Kind::Ringwatch, true),
                (Kind::Bare, false),
            ]
        } else {
            &[(Kind::Ringwatch, false), (Kind::Bare, false)]
        };
        for &(kind, check) in runs {
            let server = Server::start(bins, kind, &[]);
            let tag = format!("l{conns}x{batch}");
            let verify = async {
                if check {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Some(verify_ack_means_counted(&server, 50).await)
                } else {
                    None
                }
            };
            let (l, v) = tokio::join!(latency(&server, &tag, conns, batch, target, o.run), verify);
            let h = &l.hist;
            println!(
                "| {}{} | {} | {conns} | {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                if check { " + 50 scrapes" } else { "" },
                if batch == 1 {
                    "1 event".into()
                } else {
                    format!("{batch} events")
                },
                fmt_rate(target),
                fmt_rate(l.events_per_s),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
                h.len(),
            );
            if let Some((rounds, bad)) = v {
                eprintln!("  ack-means-counted check under load: {rounds} scrapes right after an ack, {bad} missing the acknowledged events");
            }
        }
    }
}

async fn run_memory(bins: &Bins) {
    println!("\n## Memory and /metrics\n");
    let client = reqwest::Client::new();

    // Calls in flight: offered, never ended.
    for with_ids in [false, true] {
        let n: u64 = 1_000_000;
        let server = Server::start(
            bins,
            Kind::Ringwatch,
            &[("RINGWATCH__RULES__MAX_CALLS", "2000000")],
        );
        let mut ws = connect(&server.url()).await;
        ws.send(Message::text(r#"{"type":"clock","ts":1795424400000}"#))
            .await
            .unwrap();
        next_ack(&mut ws).await;
        let _ = server.scrape(&client).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server.rss();
        let mut gen = Gen::new("m".into());
        gen.with_event_ids = with_ids;
        let mut sent = 0u64;
        let mut steps = Vec::new();
        let t = Instant::now();
        while sent < n {
            let mut frame = String::with_capacity(1000 * 120);
            frame.push('[');
            for i in 0..1000 {
                if i > 0 {
                    frame.push(',');
                }
                gen.step = 0; // offered only
                gen.push(&mut frame);
                gen.step = 0;
                gen.call += 1;
            }
            frame.push(']');
            ws.send(Message::text(frame)).await.unwrap();
            let ack = next_ack(&mut ws).await;
            assert_eq!(accepted(&ack), 1000, "{ack}");
            sent += 1000;
            if sent.is_multiple_of(250_000) {
                steps.push((sent, server.rss()));
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let samples =
            ringwatch::sim::scrape::Samples::parse(&server.scrape(&client).await).unwrap();
        let in_flight = samples.value("ringwatch_calls_in_flight");
        let after = server.rss();
        println!(
            "in-flight calls{}: {in_flight} calls, RSS {:.1} MiB -> {:.1} MiB = **{:.0} bytes per call** (sent at {}/s)",
            if with_ids { " (event_ids on, so the dedup window holds 1M ids too)" } else { " (no event_id)" },
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            (after - before) as f64 / n as f64,
            fmt_rate(n as f64 / secs),
        );
        let steps: Vec<String> = steps
            .iter()
            .map(|(k, r)| {
                format!(
                    "{}k: {:.0} B/call",
                    k / 1000,
                    (r - before) as f64 / *k as f64
                )
            })
            .collect();
        println!("  growth: {}\n", steps.join(", "));
        drop(ws);
        drop(server);
    }

    // Idle connections.
    for kind in [Kind::Ringwatch, Kind::Bare] {
        let n = 10_000;
        // Over the default ingest.max_connections (1,000), which would
        // answer the rest with 503.
        let server = Server::start(
            bins,
            kind,
            &[("RINGWATCH__INGEST__MAX_CONNECTIONS", "20000")],
        );
        let mut warm = connect(&server.url()).await;
        warm.send(Message::text(r#"{"type":"clock","ts":1795424400000}"#))
            .await
            .unwrap();
        next_ack(&mut warm).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server.rss();
        let t = Instant::now();
        let conns = connect_many(&server.url(), n).await;
        let opened = t.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = server.rss();
        let gauge = if kind == Kind::Ringwatch {
            let s = ringwatch::sim::scrape::Samples::parse(&server.scrape(&client).await).unwrap();
            format!(
                ", ringwatch_ingest_connections = {}",
                s.value("ringwatch_ingest_connections")
            )
        } else {
            String::new()
        };
        println!(
            "idle connections, {}: {n} opened in {:.1} s, RSS {:.1} MiB -> {:.1} MiB = **{:.0} bytes per connection**{gauge}",
            kind.name(),
            opened.as_secs_f64(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            (after - before) as f64 / n as f64,
        );
        drop(conns);
        drop(warm);
        drop(server);
    }

    // /metrics with 1,000 queues.
    for queues in [10usize, 100, 1000] {
        let server = Server::start(bins, Kind::Ringwatch, &[]);
        let mut ws = connect(&server.url()).await;
        let mut events = Vec::new();
        for q in 0..queues {
            for c in 0..4 {
                let id = format!("mq{q}-{c}");
                let t = BASE_TS + (q * 10 + c) as i64;
                let queue = format!("queue-{q}");
                events.push(format!(
                    r#"{{"type":"call.offered","ts":{t},"call_id":"{id}","queue":"{queue}"}}"#
                ));
                if c == 3 {
                    continue; // one waiting call per queue
                }
                events.push(format!(
                    r#"{{"type":"call.answered","ts":{},"call_id":"{id}"}}"#,
                    t + 5_000 * (c as i64 + 1)
                ));
                events.push(format!(
                    r#"{{"type":"call.hold_started","ts":{},"call_id":"{id}"}}"#,
                    t + 30_000
                ));
                events.push(format!(
                    r#"{{"type":"call.hold_ended","ts":{},"call_id":"{id}"}}"#,
                    t + 40_000 + 5_000 * c as i64
                ));
                if c == 2 {
                    events.push(format!(r#"{{"type":"callback.promised","ts":{},"call_id":"{id}","promise_id":"p{id}","due":{}}}"#, t + 50_000, t + 3_600_000));
                }
                events.push(format!(
                    r#"{{"type":"call.ended","ts":{},"call_id":"{id}"}}"#,
                    t + 60_000
                ));
            }
        }
        for chunk in events.chunks(500) {
            ws.send(Message::text(format!("[{}]", chunk.join(","))))
                .await
                .unwrap();
            let ack = next_ack(&mut ws).await;
            assert_eq!(accepted(&ack), chunk.len() as u64, "{ack}");
        }
        // Warm-up.
        let body = server.scrape(&client).await;
        // LOAD_SCRAPES=N times N scrapes instead of 30 (to profile the
        // daemon meanwhile: its pid and address are printed).
        let scrapes = std::env::var("LOAD_SCRAPES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n: &usize| *n >= 10)
            .unwrap_or(30);
        if scrapes != 30 {
            eprintln!(
                "  {queues} queues: pid {}, http://{}/metrics, {scrapes} scrapes",
                server.pid(),
                server.http.expect("ringwatch only")
            );
        }
        // Two clients, turn about: a scraper's (the body streamed into a
        // buffer kept between scrapes, checked as UTF-8 in one pass) and
        // reqwest's `text()`, which costs the client several ms of its own
        // per 7 MB body (a fresh buffer, a copy, a lossy char-by-char
        // decode) and so says more about the client than the server.
        let (mut times, mut text_times) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        for _ in 0..scrapes {
            let t = Instant::now();
            let n = server.scrape_into(&client, &mut buf).await;
            times.push(t.elapsed());
            assert!(n > body.len() / 2);
            let t = Instant::now();
            let b = server.scrape(&client).await;
            text_times.push(t.elapsed());
            assert!(b.len() > body.len() / 2);
        }
        times.sort();
        text_times.sort();
        println!(
            "/metrics with {queues} queues: {:.0} KiB, {} lines; scrape wall time over {scrapes} GETs: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            body.len() as f64 / 1024.0,
            body.lines().count(),
            times[scrapes / 2].as_secs_f64() * 1000.0,
            times[scrapes * 9 / 10].as_secs_f64() * 1000.0,
            times[scrapes - 1].as_secs_f64() * 1000.0,
        );
        println!(
            "  the same read with reqwest's text(): median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            text_times[scrapes / 2].as_secs_f64() * 1000.0,
            text_times[scrapes * 9 / 10].as_secs_f64() * 1000.0,
            text_times[scrapes - 1].as_secs_f64() * 1000.0,
        );
        drop(ws);
        drop(server);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let has = |m: &str| args.iter().any(|a| a == m);
    let all =
        !(has("throughput") || has("latency") || has("memory") || has("pipelined") || has("open"));
    let o = if has("quick") {
        Opts {
            warm: Duration::from_millis(300),
            run: Duration::from_secs(1),
            rounds: 3,
        }
    } else {
        Opts {
            warm: Duration::from_millis(500),
            run: Duration::from_secs(3),
            rounds: 3,
        }
    };
    let o = match std::env::var("LOAD_RUN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(secs) => Opts {
            run: Duration::from_secs(secs),
            ..o
        },
        None => o,
    };
    let bins = build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# ringwatch load bench: {} cores, client runtime {} workers, {} s per case",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        o.run.as_secs_f64()
    );
    rt.block_on(async {
        let mut max = Vec::new();
        if has("pipelined") {
            // Issue 11's figures alone: the pipelined cases, then the open
            // loop latency at half their maximum.
            max = run_throughput(&bins, &o, true).await;
            run_open_latency(&bins, &o, &max).await;
        }
        if has("open") {
            // The open-loop latency alone, at LOAD_OPEN_RATE events/s (to
            // compare configurations at one rate without the throughput
            // cases first).
            let rate: f64 = std::env::var("LOAD_OPEN_RATE")
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("`open` needs LOAD_OPEN_RATE=<events/s of the pipelined maximum>");
            run_open_latency(&bins, &o, &[((16, 100, UNLIMITED), rate)]).await;
        }
        if all || has("throughput") || has("latency") {
            max = run_throughput(&bins, &o, false).await;
        }
        if all || has("latency") {
            run_latency(&bins, &o, &max).await;
            run_open_latency(&bins, &o, &max).await;
        }
        if all || has("memory") {
            run_memory(&bins).await;
        }
    });
}
