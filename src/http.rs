//! HTTP exposure: `/metrics` (Prometheus text), `/healthz` (the process is
//! alive) and `/readyz` (listeners are up, the state is loaded and the
//! journal takes writes; false again once shutdown starts or after a fatal
//! failure, so load balancers stop sending). `/metrics` may
//! require a bearer token; the probes never do. Served over TLS when
//! configured.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{Auth, Listener};
use crate::health::Health;
use crate::metrics::render;
use crate::metrics::self_metrics::SelfMetrics;
use crate::pipeline::PipelineHandle;
use crate::tls::{Tls, TlsListener};

#[derive(Clone)]
pub struct HttpState {
    pub pipeline: PipelineHandle,
    pub metrics: Arc<SelfMetrics>,
    pub health: Arc<Health>,
    /// Who may scrape `/metrics`.
    pub auth: Auth,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(f) = s.auth.check(&headers) {
        tracing::debug!(reason = f.as_str(), "/metrics refused: bearer token");
        s.metrics.edge.auth_failure(Listener::Http, f);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, f.challenge())],
            f.message(),
        )
            .into_response();
    }
    let started = Instant::now();
    let Ok(snapshot) = s.pipeline.snapshot().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "ringwatch is shutting down\n",
        )
            .into_response();
    };
    // Text encoding happens here, off the pipeline task, so a large scrape
    // does not hold up ingest.
    let body = render::render(&snapshot, &s.metrics.registry);
    s.metrics
        .scrape_duration
        .observe(started.elapsed().as_secs_f64());
    ([(header::CONTENT_TYPE, render::CONTENT_TYPE)], body).into_response()
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
    metrics: Arc<SelfMetrics>,
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
            let listener = TlsListener::new(listener, tls, TLS_HANDSHAKE_TIMEOUT, metrics)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
}
