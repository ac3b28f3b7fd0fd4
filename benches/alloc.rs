//! benches/alloc.rs: heap allocations per frame and per event on the whole
//! ingest path, in steady state, counted by a global allocator.
//!
//! The daemon runs in this process (real config, journal on with
//! `fsync = "interval"`, `clock = "event"`) and a WebSocket client on a
//! runtime of its own sends full call lifecycles (offered, answered, hold
//! started, hold ended, ended, each with an `event_id`) with 8 frames in
//! flight. Allocations made on the client's threads are not counted; every
//! other thread (the daemon's workers, its journal writer, its blocking
//! pool) is. After a warm-up, the count over a fixed number of frames is
//! divided by the frames and by the events.
//!
//! `cargo bench --bench alloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the client's threads: their allocations are the client's.
    static CLIENT: Cell<bool> = const { Cell::new(false) };
}

fn counted(size: usize) {
    if !CLIENT.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        counted(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        counted(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        counted(new);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BASE_TS: i64 = 1_795_424_400_000;

/// Frames of `batch` events: whole lifecycles, unique ids under 24 bytes.
fn frames(conn: usize, batch: usize, n: usize) -> Vec<String> {
    let steps = ["offered", "answered", "hold_started", "hold_ended", "ended"];
    let mut out = Vec::with_capacity(n);
    let mut e = 0u64;
    for _ in 0..n {
        let mut f = String::from("[");
        for i in 0..batch {
            let (call, step) = (e / 5, steps[(e % 5) as usize]);
            let ts = BASE_TS + call as i64 * 10 + (e % 5) as i64 * 1000;
            let kind = match step {
                "offered" => "call.offered",
                "answered" => "call.answered",
                "hold_started" => "call.hold_started",
                "hold_ended" => "call.hold_ended",
                _ => "call.ended",
            };
            if i > 0 {
                f.push(',');
            }
            f.push_str(&format!(
                r#"{{"type":"{kind}","ts":{ts},"call_id":"a{conn}c{call}","queue":"q{}","agent":"agent-{}","event_id":"a{conn}e{e}"}}"#,
                call % 10,
                call % 10
            ));
            e += 1;
        }
        f.push(']');
        out.push(f);
    }
    out
}

/// Send `frames` with 8 in flight; returns once every ack is in.
async fn send(url: &str, frames: Vec<String>) {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    let n = frames.len();
    let window = Arc::new(Semaphore::new(8));
    let w = Arc::clone(&window);
    let writer = tokio::spawn(async move {
        for f in frames {
            w.acquire().await.unwrap().forget();
            tx.send(Message::text(f)).await.unwrap();
        }
        tx
    });
    let mut got = 0;
    while got < n {
        match rx.next().await {
            Some(Ok(Message::Text(_))) => {
                got += 1;
                window.add_permits(1);
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    let _ = writer.await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "RINGWATCH__INGEST__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("RINGWATCH__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        ("RINGWATCH__RULES__CLOCK".into(), "event".into()),
        ("RINGWATCH__RULES__CALL_TTL".into(), "2592000".into()),
        ("RINGWATCH__LOG__LEVEL".into(), "warn".into()),
        (
            "RINGWATCH__DURABILITY__DIR".into(),
            data.path().to_str().unwrap().into(),
        ),
    ];
    let cfg = ringwatch::config::Config::load(None, env)
        .and_then(|c| c.validate())
        .expect("config");
    let files = cfg.read_files().expect("files");
    let daemon = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = daemon
        .block_on(ringwatch::daemon::start(cfg, files, stop.clone()))
        .expect("daemon starts");
    let url = format!("ws://{}/v1/events", running.ingest_addr);
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| CLIENT.with(|c| c.set(true)))
        .enable_all()
        .build()
        .unwrap();
    CLIENT.with(|c| c.set(true));
    println!("| frame | frames counted | allocations per frame | per event | bytes per frame |");
    println!("|---|---|---|---|---|");
    for (conn, batch, warm, n) in [(0, 100, 2_000, 5_000), (1, 1, 20_000, 50_000)] {
        let mut all = frames(conn, batch, warm + n);
        let measured = all.split_off(warm);
        client.block_on(send(&url, all));
        let (a0, b0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        client.block_on(send(&url, measured));
        let (a1, b1) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let allocs = (a1 - a0) as f64;
        println!(
            "| {batch} event{} | {n} | {:.2} | {:.3} | {:.0} |",
            if batch == 1 { "" } else { "s" },
            allocs / n as f64,
            allocs / (n * batch) as f64,
            (b1 - b0) as f64 / n as f64,
        );
    }
    stop.cancel();
    let _ = daemon.block_on(running.wait());
}
