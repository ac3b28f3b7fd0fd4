//! Client mode: ringwatch connects out to a platform's WebSocket event stream
//! (`[sources.<name>]`), reads event frames, and answers each one with the
//! same acknowledgement as the ingest endpoint, through [`super::frame`].
//! Owns the reconnect loop (full-jitter backoff), keepalive, dead-peer
//! detection, TLS setup and the per-source metrics and logs, and the settings
//! a source runs with ([`SourceSettings`], its token a [`Secret`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::RngExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::ending::{self, Ending};
use super::frame::{self, InFlight};
use super::metrics::{CloseReason, IngestMetrics, SourceHandles};
use super::window::Window;
use crate::clock::wall_now;
use crate::pipeline::PipelineHandle;

/// At most one warning per source this often about failed connects; the
/// ones in between go to debug and are counted in the next warning.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a source connects: the full URL (which may carry credentials in its
/// query) and the form that is safe to log.
#[derive(Clone)]
pub struct Target {
    url: String,
    /// `scheme://host[:port]/path`: no user info, no query.
    pub display: String,
    pub tls: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl Target {
    /// Accepts `ws://` and `wss://` URLs with a host; the error says why not.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| "is not a valid URL (ws://host:port/path or wss://...)".to_string())?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err("must start with ws:// or wss://".to_string()),
        };
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h,
            _ => return Err("has no host".to_string()),
        };
        let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        let display = format!(
            "{}://{host}{port}{}",
            if tls { "wss" } else { "ws" },
            uri.path()
        );
        // tungstenite must accept it too, or every attempt would fail later.
        url.into_client_request()
            .map_err(|e| format!("is not usable as a WebSocket URL: {e}"))?;
        Ok(Target {
            url: url.to_string(),
            display,
            tls,
        })
    }
}

/// The certificates of a PEM file (a private CA); the error says why not.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE", path.display()));
    }
    Ok(certs)
}

/// TLS for a wss:// source: the Mozilla roots plus `extra` (a private CA).
/// The provider is named explicitly so it does not depend on which rustls
/// features other crates enable.
pub fn tls_config(extra: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("holds a certificate that cannot be used as a root: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A credential: deserializes like a string, never shows in `Debug` output
/// (configurations and settings are debug-printed; tokens must not be).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One `[sources.<name>]`, validated and with its files read.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    pub name: String,
    pub target: Target,
    pub token: Option<Secret>,
    pub subscribe: Option<String>,
    /// Set for wss:// sources.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub conn: Connection,
}

/// How a source's connection behaves: acknowledgements, timings, and the
/// frame and buffer limits (`[ingest]`'s: one frame format, one limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub acks: bool,
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_reset_after: Duration,
    pub max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
}

/// Reconnect delays with full jitter: uniform in
/// `[0, min(max, initial * 2^n)]` after the n-th consecutive failure, so
/// many ringwatches that lost the same platform do not return in lockstep.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    /// The largest delay the next call can return.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Ws(#[from] WsError),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

/// One task per source, for the daemon to spawn and supervise; every
/// source's series exist (at 0) when this returns.
pub fn tasks(
    sources: &[SourceSettings],
    pipeline: &PipelineHandle,
    metrics: &Arc<IngestMetrics>,
    cancel: &CancellationToken,
) -> Vec<impl std::future::Future<Output = ()> + Send + 'static> {
    sources
        .iter()
        .map(|s| {
            run(
                s.clone(),
                pipeline.clone(),
                Arc::clone(metrics),
                metrics.sources.declare(&s.name),
                cancel.clone(),
            )
        })
        .collect()
}

/// Connect, serve, reconnect, until `cancel`. `m` is the source's own
/// series, from [`super::metrics::SourceMetrics::declare`].
pub async fn run(
    s: SourceSettings,
    pipeline: PipelineHandle,
    metrics: Arc<IngestMetrics>,
    m: SourceHandles,
    cancel: CancellationToken,
) {
    let name = s.name.as_str();
    let url = s.target.display.as_str();
    let mut backoff = Backoff::new(s.conn.backoff_initial, s.conn.backoff_max);
    let mut connected_before = false;
    let mut failure_log = FailureLog::default();
    loop {
        m.attempts.inc();
        let attempt = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(s.conn.connect_timeout, connect(&s)) => {
                r.unwrap_or(Err(ConnectError::Timeout(s.conn.connect_timeout)))
            }
        };
        match attempt {
            Ok(ws) => {
                if connected_before {
                    m.reconnects.inc();
                }
                connected_before = true;
                failure_log = FailureLog::default();
                m.connected.set(1);
                metrics.connections.inc();
                tracing::info!(source = name, url, "source connected");
                let since = Instant::now();
                let mut session = Session {
                    ws,
                    s: &s,
                    pipeline: &pipeline,
                    metrics: &metrics,
                    source: &m,
                    cancel: &cancel,
                    frames: 0,
                };
                let reason = session.run().await;
                let frames = session.frames;
                drop(session);
                metrics.connections.dec();
                m.connected.set(0);
                m.disconnected(reason);
                tracing::info!(
                    source = name,
                    url,
                    reason = reason.as_str(),
                    frames,
                    "source disconnected"
                );
                if reason == CloseReason::Shutdown {
                    break;
                }
                if since.elapsed() >= s.conn.backoff_reset_after {
                    backoff.reset();
                }
            }
            Err(e) => {
                m.failures.inc();
                failure_log.failed(name, url, &e);
            }
        }
        let delay = backoff.next_delay();
        tracing::debug!(source = name, ?delay, "reconnecting after a delay");
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::debug!(source = name, "source stopped");
}

/// Rate-limits connect-failure warnings: a platform that is down for an hour
/// would otherwise log every attempt.
#[derive(Default)]
struct FailureLog {
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    fn failed(&mut self, source: &str, url: &str, e: &ConnectError) {
        let due = self
            .last_warning
            .is_none_or(|t| t.elapsed() >= FAILURE_LOG_INTERVAL);
        if due {
            tracing::warn!(
                source,
                url,
                error = %e,
                suppressed = self.suppressed,
                "source connection failed; retrying with backoff"
            );
            self.last_warning = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
            tracing::debug!(source, url, error = %e, "source connection failed");
        }
    }
}

fn ws_config(s: &SourceSettings) -> WebSocketConfig {
    // Acks go out as soon as they are made, as on the ingest endpoint.
    WebSocketConfig::default()
        .max_frame_size(Some(s.conn.max_frame_bytes))
        .max_message_size(Some(s.conn.max_frame_bytes))
        .read_buffer_size(s.conn.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(s.conn.max_write_buffer_bytes)
}

/// TCP, TLS (wss), the upgrade with the bearer token, and the subscribe
/// message: all of it is one attempt, under `connect_timeout`.
async fn connect(s: &SourceSettings) -> Result<Ws, ConnectError> {
    let mut request = s.target.url.as_str().into_client_request()?;
    if let Some(token) = &s.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .expect("validated as printable ASCII");
        value.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let connector = s.tls.clone().map(Connector::Rustls);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config(s)),
        true,
        connector,
    )
    .await?;
    if let Some(subscribe) = &s.subscribe {
        ws.send(Message::text(subscribe.as_str())).await?;
    }
    Ok(ws)
}

struct Session<'a> {
    ws: Ws,
    s: &'a SourceSettings,
    pipeline: &'a PipelineHandle,
    metrics: &'a IngestMetrics,
    source: &'a SourceHandles,
    cancel: &'a CancellationToken,
    /// Text frames taken in (each one acknowledged when acks are on).
    frames: u64,
}

impl Session<'_> {
    /// Serve the connection until it ends; returns the reason.
    async fn run(&mut self) -> CloseReason {
        let s = self.s;
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + s.conn.ping_interval,
            s.conn.ping_interval,
        );
        let mut last_seen = Instant::now();
        // Submitted, not yet answered: reading goes on while earlier frames
        // wait for the journal.
        let mut in_flight = Window::default();
        let mut stopping = false;
        loop {
            if stopping && in_flight.is_empty() {
                // Every frame read was answered: nothing in flight is dropped.
                self.close(CloseCode::Away, "ringwatch is shutting down", true)
                    .await;
                return CloseReason::Shutdown;
            }
            let reading = !stopping && !in_flight.is_full();
            let msg = tokio::select! {
                biased;
                _ = self.cancel.cancelled(), if !stopping => {
                    stopping = true;
                    continue;
                }
                answer = in_flight.oldest(), if !in_flight.is_empty() => {
                    let acks = self.s.conn.acks;
                    if let Err(reason) = in_flight.answer(answer, &mut self.ws, acks, self.metrics).await {
                        return reason;
                    }
                    continue;
                }
                msg = self.ws.next(), if reading => msg,
                _ = ping.tick() => {
                    if in_flight.is_empty() && last_seen.elapsed() > s.conn.idle_timeout {
                        // A dead peer will not answer a close handshake.
                        self.close(CloseCode::Away, "idle timeout: no frame or pong received", false).await;
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
                    Ok(frame) => in_flight.push(frame),
                    Err(reason) => return reason,
                },
                Some(Ok(Message::Binary(_))) => {
                    let acks = self.s.conn.acks;
                    if let Err(reason) = in_flight.drain(&mut self.ws, acks, self.metrics).await {
                        return reason;
                    }
                    return Ending::binary().finish(&mut self.ws, self.metrics).await;
                }
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_),
                )) => {}
                Some(Err(e)) => {
                    // The frames before the bad one are answered first.
                    let acks = self.s.conn.acks;
                    if let Err(reason) = in_flight.drain(&mut self.ws, acks, self.metrics).await {
                        return reason;
                    }
                    let end = Ending::read_error(&e, self.s.conn.max_frame_bytes);
                    return end.finish(&mut self.ws, self.metrics).await;
                }
            }
        }
    }

    /// Decode an event frame and hand it to the pipeline; it is answered
    /// (acknowledged, when acks are on) once its verdicts come back.
    async fn submit(&mut self, text: Utf8Bytes) -> Result<InFlight, CloseReason> {
        self.source.frames.inc();
        self.source.last_event.set(wall_now() as f64 / 1000.0);
        self.frames += 1;
        match frame::submit(text, self.pipeline, self.metrics).await {
            Ok(f) => Ok(f),
            Err(stopped) => Err(Ending::unacknowledged(&stopped.into())
                .finish(&mut self.ws, self.metrics)
                .await),
        }
    }

    /// Send a close frame; with `wait`, give the platform a moment to answer.
    async fn close(&mut self, code: CloseCode, reason: &str, wait: bool) {
        ending::close(&mut self.ws, code, reason, wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_capped_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c, "{d:?} over {c:?}");
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        // Jittered: a thousand draws under the cap are not all the same.
        let draws: std::collections::BTreeSet<_> = (0..1000)
            .map(|_| {
                b.reset();
                b.next_delay()
            })
            .collect();
        assert!(draws.len() > 10, "{draws:?}");
    }

    #[test]
    fn targets_hide_credentials_and_query() {
        let t =
            Target::parse("wss://user:pw@events.example.com:8443/ari/events?api_key=a:b").unwrap();
        assert!(t.tls);
        assert_eq!(t.display, "wss://events.example.com:8443/ari/events");
        assert_eq!(format!("{t:?}"), t.display);
        let t = Target::parse("ws://127.0.0.1/stream").unwrap();
        assert!(!t.tls);
        assert_eq!(t.display, "ws://127.0.0.1/stream");
        for bad in ["http://x/", "x", "ws:///path", "ftp://host/"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
