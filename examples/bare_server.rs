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
//! Usage: `bare_server [ADDR]` (default 127.0.0.1:0); the bound address is
//! printed on stdout as `listening ADDR`. Runs until killed.

use futures_util::{SinkExt, StreamExt};
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

async fn connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await
    else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(text) = msg {
            let n = parse(text.as_str());
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
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(connection(stream));
    }
}
