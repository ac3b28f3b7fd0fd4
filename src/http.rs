//! HTTP exposure: `/metrics` (Prometheus text, or OpenMetrics when the
//! scraper's `Accept` asks for it; gzip-compressed when its
//! `Accept-Encoding` does), the wallboard and the landing page (`/`,
//! `/wall`, `/api/v1/*`, in `crate::wall`), `/healthz` (the process is
//! alive) and `/readyz` (listeners are up, the state is loaded and the
//! journal takes writes; false again once shutdown starts or after a fatal
//! failure, so load balancers stop sending). `/metrics` may
//! require a bearer token; the probes never do. Served over TLS when
//! configured. Concurrent scrapes of one format share one pipeline snapshot
//! and its rendering, so fifty scrapers cost the pipeline what one does.

pub mod metrics;

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::future::{BoxFuture, FutureExt, Shared};

use self::metrics::ScrapeMetrics;
use crate::auth::metrics::EdgeMetrics;
use crate::auth::{Auth, Listener};
use crate::health::Health;
use crate::metrics::render::{self, Format};
use crate::pipeline::PipelineHandle;
use crate::tls::{Tls, TlsListener};

#[derive(Clone)]
pub struct HttpState {
    pub pipeline: PipelineHandle,
    /// Every self-metric, rendered after the call-center families.
    pub registry: prometheus::Registry,
    pub scrape: Arc<ScrapeMetrics>,
    /// Where `/metrics` counts its 401s.
    pub edge: Arc<EdgeMetrics>,
    pub health: Arc<Health>,
    /// Who may scrape `/metrics` (and read the wall).
    pub auth: Auth,
    /// `[wall]`: the wallboard's time zone.
    pub wall: crate::wall::WallSettings,
}

pub fn router(state: HttpState) -> Router {
    let scrapes = Arc::new(Format::ALL.map(|format| Scrapes {
        pipeline: state.pipeline.clone(),
        registry: state.registry.clone(),
        latest: Arc::new(Mutex::new(Latest::default())),
        spare: Arc::new(Mutex::new(None)),
        format,
    }));
    // tower-http's layer: gzip when Accept-Encoding asks for it (Prometheus
    // always does), `Vary: Accept-Encoding`, plain otherwise. It compresses
    // as the body is sent, chunk by chunk.
    // The fastest gzip level: a 1,000-queue body (6.4 MB) shrinks about as
    // much as at the default level's, for a fraction of the CPU a scrape
    // costs (the default level made a gzip scrape several times slower
    // than a plain one).
    let compressed = tower_http::compression::CompressionLayer::new()
        .quality(tower_http::CompressionLevel::Fastest);
    let wall = crate::wall::router(crate::wall::WallState::new(
        state.pipeline.clone(),
        Arc::clone(&state.health),
        state.wall.clone(),
        state.auth.clone(),
        Arc::clone(&state.edge),
        state.registry.clone(),
    ));
    Router::new()
        .route("/metrics", get(metrics).layer(compressed))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Served {
            http: state,
            scrapes,
        })
        .merge(wall)
}

#[derive(Clone)]
struct Served {
    http: HttpState,
    /// One batching per format, indexed by `Format as usize`.
    scrapes: Arc<[Scrapes; 2]>,
}

impl axum::extract::FromRef<Served> for HttpState {
    fn from_ref(s: &Served) -> HttpState {
        s.http.clone()
    }
}

/// One pipeline snapshot and its rendering, awaited by every scrape of its
/// batch; `None` once the pipeline has stopped.
type Batch = Shared<BoxFuture<'static, Option<Bytes>>>;

/// Scrapes batched onto shared snapshot requests.
///
/// The rule: a scrape joins a batch only if that batch has not sent its
/// snapshot request yet; otherwise it starts the next batch, which waits for
/// the one before it and then asks. So every snapshot a scrape is answered
/// from was requested after the scrape began, and the pipeline, which
/// handles commands in order, applied every frame acknowledged before then:
/// a scrape that starts after an acknowledgement includes its events, as
/// without batching. At most one request is in flight; everyone who arrives
/// meanwhile shares the next.
struct Scrapes {
    pipeline: PipelineHandle,
    registry: prometheus::Registry,
    latest: Arc<Mutex<Latest>>,
    /// The buffer of a finished response, for the next rendering.
    spare: Spare,
    /// What this batching renders.
    format: Format,
}

/// Where a body's buffer goes back once every response sharing it is sent
/// (see [`Recycled`]).
type Spare = Arc<Mutex<Option<String>>>;

/// A rendered body that gives its buffer back to its batching's [`Spare`]
/// when the last response sharing it is dropped. Rendering into memory the
/// process already touched instead of a fresh allocation saves the kernel
/// faulting in and zeroing some 1,700 pages per 1,000-queue scrape, which
/// cost more than a tenth of the scrape; the buffer kept is as large as the
/// largest body, which a scrape needs anyway.
struct Recycled {
    text: String,
    home: Weak<Mutex<Option<String>>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            let mut spare = home.lock().unwrap_or_else(PoisonError::into_inner);
            // One is enough: a second only exists while two bodies are
            // being sent at once.
            if spare.is_none() {
                *spare = Some(std::mem::take(&mut self.text));
            }
        }
    }
}

#[derive(Default)]
struct Latest {
    /// The newest batch (kept after it finishes, for the next to wait on).
    batch: Option<Batch>,
    /// `batch` has not sent its request yet: new scrapes may still join it.
    open: bool,
}

impl Scrapes {
    /// The batch this scrape is answered from, and whether another scrape
    /// started it.
    fn join(&self) -> (Batch, bool) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let (true, Some(batch)) = (latest.open, &latest.batch) {
            return (batch.clone(), true);
        }
        let previous = latest.batch.take();
        // Weak: the batch is kept in `Latest`, which must not keep itself.
        let shut = Arc::downgrade(&self.latest);
        let (pipeline, registry) = (self.pipeline.clone(), self.registry.clone());
        let spare = Arc::clone(&self.spare);
        let format = self.format;
        let batch = std::panic::AssertUnwindSafe(async move {
            if let Some(previous) = previous {
                previous.await;
            }
            close(&shut);
            let snapshot = pipeline.snapshot_without_windows().await.ok()?;
            // Encoding happens here, off the pipeline task, so a large
            // scrape does not hold up ingest; and on a blocking thread, since
            // it is megabytes of CPU work and the process collector reads
            // /proc.
            let home = Arc::downgrade(&spare);
            let rendered = tokio::task::spawn_blocking(move || {
                let taken = spare.lock().unwrap_or_else(PoisonError::into_inner).take();
                let mut text = taken.unwrap_or_default();
                render::render_into(&mut text, &snapshot, &registry, format);
                text
            })
            .await;
            match rendered {
                Ok(text) => Some(Bytes::from_owner(Recycled { text, home })),
                Err(e) => {
                    tracing::error!(error = %e, "a /metrics rendering failed; this scrape is answered 503");
                    None
                }
            }
        })
        // A shared future that panicked panics every later poll, and each
        // batch awaits the one before it: one panic would break /metrics
        // for good. It costs this batch's scrapes instead (503).
        .catch_unwind()
        .map(|rendered| {
            rendered.unwrap_or_else(|_| {
                tracing::error!("a /metrics rendering panicked; this scrape is answered 503");
                None
            })
        })
        .boxed()
        .shared();
        latest.batch = Some(batch.clone());
        latest.open = true;
        (batch, false)
    }
}

/// Under the lock, so no scrape can join a batch once its request is sent.
fn close(latest: &Weak<Mutex<Latest>>) {
    if let Some(latest) = latest.upgrade() {
        latest.lock().unwrap_or_else(PoisonError::into_inner).open = false;
    }
}

async fn metrics(
    State(Served { http: s, scrapes }): State<Served>,
    headers: HeaderMap,
) -> Response {
    if let Err(f) = s.auth.check(&headers) {
        tracing::debug!(reason = f.as_str(), "/metrics refused: bearer token");
        s.edge.auth_failure(Listener::Http, f);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, f.challenge())],
            f.message(),
        )
            .into_response();
    }
    let started = Instant::now();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let (batch, joined) = scrapes[format as usize].join();
    let Some(body) = batch.await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "ringwatch is shutting down\n",
        )
            .into_response();
    };
    if joined {
        s.scrape.scrapes_coalesced.inc();
    }
    s.scrape
        .scrape_duration
        .observe(started.elapsed().as_secs_f64());
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            // The body depends on Accept (the compression layer adds
            // Accept-Encoding), so caches keep one per format.
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response()
}

async fn readyz(State(s): State<HttpState>) -> Response {
    // The body says why, for whoever is looking at a failing probe.
    if s.health.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", s.health.reason()),
        )
            .into_response()
    }
}

/// Time a client gets to finish the TLS handshake on the HTTP listener.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve `app` on `listener`, over TLS when `tls` is set, until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Tls>,
    app: Router,
    edge: Arc<EdgeMetrics>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let stopped = async move { stop.cancelled().await };
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, tls, TLS_HANDSHAKE_TIMEOUT, edge)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
}
