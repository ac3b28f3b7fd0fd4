//! The WebSocket ingest endpoint `GET /v1/events`: accepts connections, reads
//! text frames, hands decoded events to the pipeline and answers every frame
//! with its acknowledgement. Protocol errors close only the connection that
//! made them, with the matching close code; bad events never close anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame;
use crate::metrics::self_metrics::{ProtocolError, SelfMetrics};
use crate::pipeline::{ApplyError, PipelineHandle};

pub const PATH: &str = "/v1/events";

/// How long a closing connection waits for the peer's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
}

struct Ctx {
    settings: IngestSettings,
    pipeline: PipelineHandle,
    metrics: Arc<SelfMetrics>,
    cancel: CancellationToken,
}

/// Accept connections until `cancel`; each connection task is tracked so the
/// daemon can wait for them to finish their last frame.
pub async fn serve(
    listener: TcpListener,
    settings: IngestSettings,
    pipeline: PipelineHandle,
    metrics: Arc<SelfMetrics>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let ctx = Arc::new(Ctx {
        settings,
        pipeline,
        metrics,
        cancel,
    });
    loop {
        let accepted = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(connection(stream, peer, Arc::clone(&ctx)));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "ingest accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn ws_config(s: &IngestSettings) -> WebSocketConfig {
    // Acks are written as soon as they are made (no write batching): a
    // sender waits for each one.
    WebSocketConfig::default()
        .max_frame_size(Some(s.max_frame_bytes))
        .max_message_size(Some(s.max_frame_bytes))
        .read_buffer_size(s.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(s.max_write_buffer_bytes)
}

#[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == PATH {
        return Ok(resp);
    }
    let mut err = ErrorResponse::new(Some(format!("ringwatch ingest is at {PATH}\n")));
    *err.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
    Err(err)
}

async fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check_path,
        Some(ws_config(&ctx.settings)),
    );
    let ws = match tokio::time::timeout(ctx.settings.handshake_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "ingest handshake refused");
            ctx.metrics.protocol_error(ProtocolError::Handshake);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "ingest handshake timed out");
            ctx.metrics.protocol_error(ProtocolError::Handshake);
            return;
        }
    };
    ctx.metrics.connections.inc();
    ctx.metrics.connections_opened.inc();
    tracing::debug!(%peer, "ingest connection opened");
    let reason = Connection { ws, ctx: &ctx }.run().await;
    ctx.metrics.connections.dec();
    ctx.metrics.closed(reason);
    tracing::debug!(%peer, reason, "ingest connection closed");
}

struct Connection<'a> {
    ws: WebSocketStream<TcpStream>,
    ctx: &'a Ctx,
}

impl Connection<'_> {
    /// Serve frames until the connection ends; returns the close reason.
    async fn run(mut self) -> &'static str {
        let s = &self.ctx.settings;
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + s.ping_interval,
            s.ping_interval,
        );
        let mut last_seen = Instant::now();
        loop {
            // A frame being processed is finished (and acknowledged) before
            // shutdown is looked at again: nothing in flight is dropped.
            let msg = tokio::select! {
                biased;
                _ = self.ctx.cancel.cancelled() => {
                    self.close(CloseCode::Away, "ringwatch is shutting down").await;
                    return "shutdown";
                }
                msg = self.ws.next() => msg,
                _ = ping.tick() => {
                    if last_seen.elapsed() > s.idle_timeout {
                        self.close(CloseCode::Away, "idle timeout: no frame or pong received").await;
                        return "idle_timeout";
                    }
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        return "io_error";
                    }
                    continue;
                }
            };
            last_seen = Instant::now();
            match msg {
                None => return "peer",
                Some(Ok(Message::Text(text))) => {
                    if let Err(reason) = self.frame(&text).await {
                        return reason;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    self.ctx.metrics.protocol_error(ProtocolError::Binary);
                    self.close(
                        CloseCode::Unsupported,
                        "binary frames are not accepted: send JSON in text frames",
                    )
                    .await;
                    return "protocol_error";
                }
                // Pings are answered by tungstenite; a close is echoed and the
                // stream then ends.
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_),
                )) => {}
                Some(Err(e)) => return self.error(e).await,
            }
        }
    }

    /// Decode, apply and acknowledge one text frame.
    async fn frame(&mut self, text: &Utf8Bytes) -> Result<(), &'static str> {
        let ack = match frame::process(text, &self.ctx.pipeline, &self.ctx.metrics).await {
            Ok(ack) => ack,
            Err(ApplyError::Stopped(_)) => {
                self.close(CloseCode::Away, "ringwatch is shutting down")
                    .await;
                return Err("shutdown");
            }
            // Not acknowledged: the sender resends it after reconnecting.
            Err(ApplyError::Journal(_)) => {
                self.close(
                    CloseCode::Error,
                    "the journal could not be written: frame not acknowledged, resend it",
                )
                .await;
                return Err("journal_error");
            }
        };
        if self.ws.send(Message::text(ack)).await.is_err() {
            return Err("io_error");
        }
        Ok(())
    }

    async fn error(mut self, e: WsError) -> &'static str {
        let m = &self.ctx.metrics;
        match e {
            WsError::Capacity(_) => {
                m.protocol_error(ProtocolError::Oversize);
                let why = format!(
                    "frame larger than the {} byte limit",
                    self.ctx.settings.max_frame_bytes
                );
                // The rest of the oversize frame is still unread: send the
                // close frame but do not read anything after it.
                let frame = CloseFrame {
                    code: CloseCode::Size,
                    reason: why.into(),
                };
                let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.close(Some(frame))).await;
                "protocol_error"
            }
            WsError::Utf8(_) => {
                m.protocol_error(ProtocolError::InvalidUtf8);
                self.close(CloseCode::Invalid, "text frame is not valid UTF-8")
                    .await;
                "protocol_error"
            }
            WsError::Protocol(p) => {
                use tokio_tungstenite::tungstenite::error::ProtocolError as P;
                if matches!(p, P::ResetWithoutClosingHandshake) {
                    return "peer";
                }
                m.protocol_error(ProtocolError::Protocol);
                tracing::debug!(error = %p, "ingest protocol error");
                self.close(CloseCode::Protocol, "WebSocket protocol error")
                    .await;
                "protocol_error"
            }
            WsError::ConnectionClosed | WsError::AlreadyClosed => "peer",
            _ => "io_error",
        }
    }

    /// Send a close frame and wait (briefly) for the peer's answer.
    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }
}
