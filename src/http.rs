//! HTTP exposure: `/metrics` (Prometheus text), `/healthz` (the process is
//! alive) and `/readyz` (listeners are up and the state is loaded; false again
//! once shutdown starts, so load balancers stop sending).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::metrics::render;
use crate::metrics::self_metrics::SelfMetrics;
use crate::pipeline::PipelineHandle;

#[derive(Clone)]
pub struct HttpState {
    pub pipeline: PipelineHandle,
    pub metrics: Arc<SelfMetrics>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> Response {
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
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
