//! The WebSocket ingest endpoint `GET /v1/events`: accepts connections,
//! caps them at accept (before any TLS or upgrade work), does the TLS
//! handshake when configured, checks the bearer token at the upgrade, reads
//! text frames, hands decoded events to the pipeline and answers every frame
//! with its acknowledgement, pausing a connection that goes over its event
//! rate. Protocol errors close only the connection that made them, with the
//! matching close code; bad events never close anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ending::{self, Ending};
use super::frame;
use super::metrics::{CloseReason, IngestMetrics, ProtocolError};
use super::throttle::{Bucket, RateLimit};
use super::window::Window;
use crate::auth::metrics::EdgeMetrics;
use crate::auth::{Auth, Failure, Listener, Source, TokenSet};
use crate::logging::RateLimited;
use crate::pipeline::PipelineHandle;

pub const PATH: &str = "/v1/events";

/// Warnings a peer can provoke at will are logged at most this often.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What an over-cap plain connection is told to wait before reconnecting.
/// Places free up when any sender leaves, which nothing here can predict:
/// long enough that a crowd of senders does not spin, short enough that a
/// freed place is not left empty for long.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Over-cap connections being answered at once; past this they are dropped
/// unanswered, so a flood over the cap costs a bounded amount of work.
const MAX_REFUSALS_IN_PROGRESS: usize = 64;

/// Longest wait for an over-cap peer's request before answering it anyway
/// (the handshake timeout, when shorter, bounds it too).
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// The most of an over-cap peer's request head that is read.
const REFUSAL_READ_LIMIT: usize = 8 * 1024;

/// A plain or TLS connection.
type Stream = Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// The endpoint's connection limits and timings, as `[ingest]` gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// `None`: no per-connection event rate limit.
    pub rate: Option<RateLimit>,
}

#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub limits: Limits,
    pub auth: Auth,
    pub tls: Option<crate::tls::Tls>,
}

struct Ctx {
    settings: IngestSettings,
    pipeline: PipelineHandle,
    metrics: Arc<IngestMetrics>,
    edge: Arc<EdgeMetrics>,
    cancel: CancellationToken,
    /// Places under `max_connections`: a permit is taken right after
    /// `accept`, so TLS and the upgrade are only ever done for connections
    /// that have a place.
    slots: Arc<Semaphore>,
    /// Bounds the over-cap connections being answered at once.
    refusals: Arc<Semaphore>,
    over_cap_log: RateLimited,
    throttle_log: RateLimited,
}

/// Accept connections until `cancel`; each connection task is tracked so the
/// daemon can wait for them to finish their last frame.
pub async fn serve(
    listener: TcpListener,
    settings: IngestSettings,
    pipeline: PipelineHandle,
    metrics: Arc<IngestMetrics>,
    edge: Arc<EdgeMetrics>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    edge.declare_sources(settings.auth.source_names().iter().map(String::as_str));
    let ctx = Arc::new(Ctx {
        slots: Arc::new(Semaphore::new(settings.limits.max_connections)),
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_PROGRESS)),
        settings,
        pipeline,
        metrics,
        edge,
        cancel,
        over_cap_log: RateLimited::new(LIMIT_LOG_INTERVAL),
        throttle_log: RateLimited::new(LIMIT_LOG_INTERVAL),
    });
    loop {
        let accepted = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match Arc::clone(&ctx.slots).try_acquire_owned() {
                    Ok(slot) => {
                        tracker.spawn(connection(stream, peer, slot, Arc::clone(&ctx)));
                    }
                    Err(_) => refuse_over_cap(stream, peer, &ctx, &tracker),
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "ingest accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Acks buffered before a write to the socket: `Window::answer` feeds every
/// ack that is ready and then flushes, so none waits, and the acks of a
/// burst go out in one write. (At 0, each ack was its own `send` syscall:
/// half of the daemon's CPU with one connection sending 1-event frames.)
/// Below the smallest `ingest.max_write_buffer_bytes` (64 KiB), as
/// tungstenite requires.
const ACK_WRITE_BUFFER: usize = 16 * 1024;
const _: () = assert!(ACK_WRITE_BUFFER < crate::config::MIN_WRITE_BUFFER_BYTES);

fn ws_config(s: &IngestSettings) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(s.limits.max_frame_bytes))
        .max_message_size(Some(s.limits.max_frame_bytes))
        .read_buffer_size(s.limits.read_buffer_bytes)
        .write_buffer_size(ACK_WRITE_BUFFER)
        .max_write_buffer_size(s.limits.max_write_buffer_bytes)
}

/// What the upgrade request turned out to be.
enum Verdict {
    /// Not looked at yet (the request never got that far).
    Unseen,
    NotFound,
    Refused(Failure),
    /// `None` when ingest is open to all.
    Admitted(Option<Arc<Source>>),
}

fn refusal(status: u16, body: &str, challenge: Option<&'static str>) -> ErrorResponse {
    use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
    let mut err = ErrorResponse::new(Some(body.to_string()));
    *err.status_mut() = StatusCode::from_u16(status).expect("a valid status code");
    let h = err.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(c) = challenge {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    err
}

/// The upgrade's checks: the path, then the bearer token. Refusals are
/// counted here, before the answer is written, so whoever reads the answer
/// finds them counted.
#[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
fn check_upgrade(
    req: &Request,
    resp: Response,
    auth: &Auth,
    metrics: &IngestMetrics,
    edge: &EdgeMetrics,
    verdict: &mut Verdict,
) -> Result<Response, ErrorResponse> {
    if req.uri().path() != PATH {
        metrics.protocol_error(ProtocolError::Handshake);
        *verdict = Verdict::NotFound;
        return Err(refusal(
            404,
            &format!("ringwatch ingest is at {PATH}\n"),
            None,
        ));
    }
    match auth.check(req.headers()) {
        Ok(source) => {
            *verdict = Verdict::Admitted(source);
            Ok(resp)
        }
        Err(f) => {
            edge.auth_failure(Listener::Ingest, f);
            *verdict = Verdict::Refused(f);
            Err(refusal(401, f.message(), Some(f.challenge())))
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    ctx: Arc<Ctx>,
) {
    let s = &ctx.settings;
    let mut verdict = Verdict::Unseen;
    let mut in_tls = s.tls.is_some();
    // TLS and the upgrade together get one handshake_timeout.
    let handshake = async {
        let stream: Stream = match &s.tls {
            None => Either::Left(stream),
            Some(tls) => {
                let tls = tls
                    .handshake(
                        stream,
                        peer,
                        s.limits.handshake_timeout,
                        Listener::Ingest,
                        &ctx.edge,
                    )
                    .await
                    .ok_or(None)?;
                in_tls = false;
                Either::Right(tls)
            }
        };
        #[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
        let check = |req: &Request, resp| {
            check_upgrade(req, resp, &s.auth, &ctx.metrics, &ctx.edge, &mut verdict)
        };
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_config(s)))
            .await
            .map_err(Some)
    };
    let ws = match tokio::time::timeout(s.limits.handshake_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        // The TLS handshake failed: counted and logged there.
        Ok(Err(None)) => return,
        Ok(Err(Some(e))) => {
            match verdict {
                // Debug only: refusals are the peer's doing and cost a line
                // each. The token itself is never logged.
                Verdict::Refused(f) => {
                    tracing::debug!(%peer, reason = f.as_str(), "ingest upgrade refused: bearer token");
                }
                Verdict::NotFound => tracing::debug!(%peer, error = %e, "ingest handshake refused"),
                Verdict::Unseen | Verdict::Admitted(_) => {
                    tracing::debug!(%peer, error = %e, "ingest handshake refused");
                    ctx.metrics.protocol_error(ProtocolError::Handshake);
                }
            }
            return;
        }
        Err(_) if in_tls => {
            tracing::debug!(%peer, listener = "ingest", "TLS handshake timed out");
            ctx.edge.tls_handshake_failure(Listener::Ingest);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "ingest handshake timed out");
            ctx.metrics.protocol_error(ProtocolError::Handshake);
            return;
        }
    };
    let Verdict::Admitted(source) = verdict else {
        unreachable!("an upgrade completes only when admitted")
    };
    let name = source.as_ref().map(|s| s.name().to_string());
    let source_gauge = name.as_deref().map(|n| ctx.edge.source_connections(n));
    ctx.metrics.connections.inc();
    ctx.metrics.connections_opened.inc();
    if let Some(g) = &source_gauge {
        g.inc();
    }
    tracing::debug!(%peer, source = name.as_deref(), "ingest connection opened");
    let tokens = source.as_ref().and_then(|_| s.auth.subscribe());
    let reason = Connection {
        ws,
        ctx: &ctx,
        peer,
        source,
        tokens,
        bucket: s.limits.rate.map(|r| Bucket::new(r, Instant::now())),
        _slot: slot,
    }
    .run()
    .await;
    ctx.metrics.connections.dec();
    if let Some(g) = &source_gauge {
        g.dec();
    }
    ctx.metrics.closed(reason);
    tracing::debug!(
        %peer,
        source = name.as_deref(),
        reason = reason.as_str(),
        "ingest connection closed"
    );
}

/// Over `max_connections`, seen at accept: counted (before the peer can
/// see anything, so whoever sees the refusal finds it counted) and answered
/// without any handshake. Plain: an HTTP 503 with `Retry-After` in place of
/// the upgrade, so the sender learns why. TLS: the socket is closed before
/// the handshake; answering would mean doing the handshake the cap is there
/// to spare.
fn refuse_over_cap(stream: TcpStream, peer: SocketAddr, ctx: &Arc<Ctx>, tracker: &TaskTracker) {
    ctx.metrics.connections_refused.inc();
    let max = ctx.settings.limits.max_connections;
    if let Some(suppressed) = ctx.over_cap_log.check() {
        tracing::warn!(
            %peer,
            max_connections = max,
            suppressed,
            "ingest connection refused: ingest.max_connections are open"
        );
    }
    if ctx.settings.tls.is_some() {
        drop(stream);
        return;
    }
    let Ok(turn) = Arc::clone(&ctx.refusals).try_acquire_owned() else {
        drop(stream);
        return;
    };
    let grace = REFUSAL_GRACE.min(ctx.settings.limits.handshake_timeout);
    let cancel = ctx.cancel.clone();
    tracker.spawn(async move {
        let _turn = turn;
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = answer_503(stream, max, grace) => {}
        }
    });
}

/// Read the request head (so that closing leaves nothing unread, which
/// would turn the close into a reset that can destroy the answer), then
/// answer 503 and close.
async fn answer_503(mut stream: TcpStream, max: usize, grace: Duration) {
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 1024];
        while head.len() < REFUSAL_READ_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    // A peer that sends nothing in time is answered all the same.
    if let Ok(false) = tokio::time::timeout(grace, read).await {
        return;
    }
    let body =
        format!("too many connections: ingest.max_connections ({max}) are open, try again later\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Retry-After: {RETRY_AFTER_SECONDS}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(grace, write).await;
}

struct Connection<'a> {
    ws: WebSocketStream<Stream>,
    ctx: &'a Ctx,
    peer: SocketAddr,
    /// The token source it was admitted as (`None` when ingest is open).
    source: Option<Arc<Source>>,
    /// Token reloads, to end the connection when its token is revoked.
    tokens: Option<watch::Receiver<Arc<TokenSet>>>,
    bucket: Option<Bucket>,
    /// Held for the connection's life: its place under `max_connections`.
    _slot: OwnedSemaphorePermit,
}

/// Resolves when `source`'s token is no longer in the token set.
async fn revoked(tokens: Option<&mut watch::Receiver<Arc<TokenSet>>>, source: Option<&Source>) {
    let (Some(rx), Some(source)) = (tokens, source) else {
        return std::future::pending().await;
    };
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !rx.borrow_and_update().admits(source) {
            return;
        }
    }
}

/// Why a connection stopped reading before it closes: what is in flight is
/// answered first, then the connection closes with this.
#[derive(Clone, Copy)]
enum Stop {
    Shutdown,
    Revoked,
}

impl Connection<'_> {
    /// Serve frames until the connection ends; returns the close reason.
    async fn run(mut self) -> CloseReason {
        let s = &self.ctx.settings;
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + s.limits.ping_interval,
            s.limits.ping_interval,
        );
        let mut last_seen = Instant::now();
        // While set, the connection is over its event rate and reads nothing.
        let mut paused_until: Option<tokio::time::Instant> = None;
        // Submitted, in order, not yet acknowledged: the pipeline answers a
        // connection's frames in the order they were submitted.
        let mut in_flight = Window::default();
        let mut stopping: Option<Stop> = None;
        loop {
            if let (Some(stop), true) = (stopping, in_flight.is_empty()) {
                // Every frame read was answered: nothing in flight is dropped.
                return match stop {
                    Stop::Shutdown => {
                        self.close(CloseCode::Away, "ringwatch is shutting down")
                            .await;
                        CloseReason::Shutdown
                    }
                    Stop::Revoked => {
                        self.close(
                            CloseCode::Policy,
                            "the bearer token of this source was revoked",
                        )
                        .await;
                        CloseReason::Revoked
                    }
                };
            }
            let reading = stopping.is_none() && paused_until.is_none() && !in_flight.is_full();
            let resume = paused_until.unwrap_or_else(tokio::time::Instant::now);
            let msg = tokio::select! {
                biased;
                _ = self.ctx.cancel.cancelled(), if stopping.is_none() => {
                    stopping = Some(Stop::Shutdown);
                    continue;
                }
                _ = revoked(self.tokens.as_mut(), self.source.as_deref()), if stopping.is_none() => {
                    stopping = Some(Stop::Revoked);
                    continue;
                }
                answer = in_flight.oldest(), if !in_flight.is_empty() => {
                    if let Err(reason) = in_flight.answer(answer, &mut self.ws, true, &self.ctx.metrics).await {
                        return reason;
                    }
                    continue;
                }
                // In an async block so that no timer is made unless paused.
                _ = async { tokio::time::sleep_until(resume).await }, if paused_until.is_some() => {
                    paused_until = None;
                    // Not reading was our doing: the peer was not idle.
                    last_seen = Instant::now();
                    continue;
                }
                msg = self.ws.next(), if reading => msg,
                _ = ping.tick() => {
                    let waiting = paused_until.is_some() || !in_flight.is_empty();
                    if !waiting && last_seen.elapsed() > s.limits.idle_timeout {
                        self.close(CloseCode::Away, "idle timeout: no frame or pong received").await;
                        return CloseReason::IdleTimeout;
                    }
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        return CloseReason::IoError;
                    }
                    continue;
                }
            };
            last_seen = Instant::now();
            match msg {
                None => return CloseReason::Peer,
                Some(Ok(Message::Text(text))) => match self.submit(text).await {
                    Ok((frame, pause)) => {
                        in_flight.push(frame);
                        if !pause.is_zero() {
                            paused_until = Some(tokio::time::Instant::now() + pause);
                        }
                    }
                    Err(reason) => return reason,
                },
                Some(Ok(Message::Binary(_))) => {
                    if let Err(reason) =
                        in_flight.drain(&mut self.ws, true, &self.ctx.metrics).await
                    {
                        return reason;
                    }
                    return Ending::binary()
                        .finish(&mut self.ws, &self.ctx.metrics)
                        .await;
                }
                // Pings are answered by tungstenite; a close is echoed and the
                // stream then ends.
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_),
                )) => {}
                Some(Err(e)) => {
                    // The frames before the bad one are answered first.
                    if let Err(reason) =
                        in_flight.drain(&mut self.ws, true, &self.ctx.metrics).await
                    {
                        return reason;
                    }
                    let end = Ending::read_error(&e, self.ctx.settings.limits.max_frame_bytes);
                    return end.finish(&mut self.ws, &self.ctx.metrics).await;
                }
            }
        }
    }

    /// Decode a text frame and hand it to the pipeline; returns it in
    /// flight, and how long to stop reading to stay within the event rate.
    async fn submit(
        &mut self,
        text: Utf8Bytes,
    ) -> Result<(frame::InFlight, Duration), CloseReason> {
        let frame = match frame::submit(text, &self.ctx.pipeline, &self.ctx.metrics).await {
            Ok(f) => f,
            Err(stopped) => {
                let end = Ending::unacknowledged(&stopped.into());
                return Err(end.finish(&mut self.ws, &self.ctx.metrics).await);
            }
        };
        let pause = match &mut self.bucket {
            Some(b) => b.charge(frame.elements(), Instant::now()),
            None => Duration::ZERO,
        };
        if !pause.is_zero() {
            // Counted before the ack goes out: whoever holds the ack sees it.
            let m = &self.ctx.metrics;
            m.throttled_frames.inc();
            m.throttled_seconds.inc_by(pause.as_secs_f64());
            if let Some(suppressed) = self.ctx.throttle_log.check() {
                tracing::warn!(
                    peer = %self.peer,
                    source = self.source.as_deref().map(Source::name),
                    pause_seconds = pause.as_secs_f64(),
                    suppressed,
                    "ingest connection over ingest.max_events_per_second: reading paused"
                );
            }
        }
        Ok((frame, pause))
    }

    /// Send a close frame and wait (briefly) for the peer's answer.
    async fn close(&mut self, code: CloseCode, reason: &str) {
        ending::close(&mut self.ws, code, reason, true).await;
    }
}
