//! bare_server: the baseline of `benches/load.rs` — a minimal WebSocket server
//! that reads text frames, parses each event into borrowed typed fields
//! (`type`, `ts`, `event_id`, `call_id`, `queue`, `agent`) with serde_json and
//! answers each frame with a tiny ack.
//!
//! It does the transport and parsing work ringwatch cannot avoid, and nothing
//! else: no validation, no rules, no metrics, no shared state. The parse is
//! typed and borrowed, as ringwatch's own decoder is (a `serde_json::Value`
//! tree would be slower than what ringwatch does, and flatter the ratio). It uses the same
//! runtime (tokio multi-thread, one worker per core) and the same WebSocket
//! settings as ringwatch's ingest (4 KiB read chunk, acks written at once), so
//! the load bench's ringwatch/bare ratio is the cost of ringwatch's own work.
//!
//! With `BARE_ENGINE=1` it is the floor instead: each frame is decoded by
//! ringwatch's own decoder and applied, on the connection's task, to one
//! rules engine and metrics store shared under a mutex (ringwatch's defaults,
//! the event clock, calls kept 30 days as the load bench configures
//! ringwatch). That is ringwatch's per-event work without its hand-offs (the
//! pipeline's queue, the journal's writer thread, the replies) and without a
//! journal: what no change to ringwatch's plumbing can go below.
//! `LOAD_FLOOR=1 cargo bench --bench load -- ...` puts it in ringwatch's place.
//!
//! Usage: `bare_server [ADDR]` (default 127.0.0.1:0); the bound address is
//! printed on stdout as `listening ADDR`. Runs until killed.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use ringwatch::ingest::decode::decode_split;
use ringwatch::metrics::{Bounds, BucketConfig, Store};
use ringwatch::rules::{ClockMode, Engine, Settings, Verdict};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(1 << 20))
        .max_message_size(Some(1 << 20))
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
}

#[path = "../benches/support/bare_event.rs"]
mod bare_event;
use bare_event::Typed;

/// Parse a frame (one event or an array of events) into typed events; the
/// number of events, or 0 when it does not parse.
fn parse(text: &str) -> usize {
    if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<Typed>>(text).map_or(0, |v| v.len())
    } else {
        serde_json::from_str::<Typed>(text).map_or(0, |_| 1)
    }
}

/// The floor's state: what ringwatch's pipeline owns, minus the journal.
type Shared = Arc<Mutex<(Engine, Store)>>;

fn floor() -> Shared {
    let s = Settings {
        clock: ClockMode::Event,
        call_ttl: 30 * 86_400_000,
        // `BARE_DEDUP_MAX_IDS=N`: a smaller de-duplication window, to see
        // what the default million ids costs.
        dedup_max_ids: std::env::var("BARE_DEDUP_MAX_IDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Settings::default().dedup_max_ids),
        ..Settings::default()
    };
    let store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
    Arc::new(Mutex::new((Engine::new(s), store)))
}

/// Decode and apply a frame as ringwatch does, counting each verdict in
/// the store as ringwatch's pipeline does; the events accepted.
fn apply(shared: &Shared, text: &str) -> usize {
    let split = decode_split(text);
    let mut accepted = 0;
    let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
    let (engine, store) = &mut *guard;
    for (_, e) in &split.rejected {
        store.rejected(e.reason);
    }
    engine.apply_all(&split.events, 0, store, |store, _, ev, v| match v {
        Verdict::Accepted => {
            store.received(ev.body.kind());
            accepted += 1;
        }
        Verdict::Duplicate => store.duplicate(),
        Verdict::Rejected(r) => store.rejected(r.reason),
    });
    accepted
}

async fn connection(stream: TcpStream, shared: Option<Shared>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await
    else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(text) = msg {
            let n = match &shared {
                Some(shared) => apply(shared, text.as_str()),
                None => parse(text.as_str()),
            };
            let ack = format!(r#"{{"accepted":{n}}}"#);
            if ws.send(Message::text(ack)).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    let shared = std::env::var_os("BARE_ENGINE").map(|_| floor());
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(connection(stream, shared.clone()));
    }
}
