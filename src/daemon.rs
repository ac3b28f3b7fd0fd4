//! Wiring: binds the listeners, starts the pipeline, the ingest server and the
//! HTTP server, and runs the drain on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Auth};
use crate::config::{Files, Validated};
use crate::durability::{self, DataDir, DurabilityError, Journal};
use crate::http::{self, HttpState};
use crate::ingest::client;
use crate::ingest::server;
use crate::metrics::self_metrics::SelfMetrics;
use crate::metrics::Store;
use crate::pipeline;
use crate::rules::Engine;
use crate::tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Durability(#[from] DurabilityError),
    #[error("cannot listen on {addr} ({key})")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A started daemon: where it listens, and the task that ends after shutdown.
pub struct Running {
    pub ingest_addr: SocketAddr,
    pub http_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Running {
    /// Wait until shutdown (triggered by the token given to [`start`]) is done.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { key, addr, source })
}

/// Bind and start everything; returns once the daemon is ready. `files` is
/// what `cfg` names, already read. Cancelling `shutdown` drains it within
/// `shutdown.drain_timeout`.
pub async fn start(
    cfg: Validated,
    files: Files,
    shutdown: CancellationToken,
) -> Result<Running, DaemonError> {
    // Locked before any port is bound: a second daemon on the same data
    // directory stops here.
    let data_dir = cfg.durability.as_ref().map(DataDir::open).transpose()?;
    let ingest_listener = bind("ingest.listen", cfg.ingest.listen).await?;
    let http_listener = bind("http.listen", cfg.http.listen).await?;
    let ingest_addr = ingest_listener.local_addr().expect("bound socket");
    let http_addr = http_listener.local_addr().expect("bound socket");

    let metrics = Arc::new(SelfMetrics::new());
    let ingest_auth = Auth::new(auth::Listener::Ingest, files.ingest.tokens.as_ref());
    let http_auth = Auth::new(auth::Listener::Http, files.http.tokens.as_ref());
    let ingest_tls = files.ingest.tls.as_ref().map(Tls::new);
    let http_tls = files.http.tls.as_ref().map(Tls::new);
    auth::warn_if_exposed(
        auth::Listener::Ingest,
        ingest_addr,
        &ingest_auth,
        ingest_tls.is_some(),
    );
    auth::warn_if_exposed(
        auth::Listener::Http,
        http_addr,
        &http_auth,
        http_tls.is_some(),
    );
    crate::reload::on_sighup(
        crate::reload::Reloadable {
            ingest_tokens: ingest_auth.clone(),
            http_tokens: http_auth.clone(),
            ingest_tls: ingest_tls.clone(),
            http_tls: http_tls.clone(),
        },
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    let (pipeline, inbox) = pipeline::channel();
    let ready = Arc::new(AtomicBool::new(false));
    // HTTP first: during recovery /healthz answers and /readyz says not yet.
    let stop_http = CancellationToken::new();
    let app = http::router(HttpState {
        pipeline: pipeline.clone(),
        metrics: Arc::clone(&metrics),
        ready: Arc::clone(&ready),
        auth: http_auth,
    });
    let http_stop = stop_http.clone();
    let http_metrics = Arc::clone(&metrics);
    let http_task = tokio::spawn(async move {
        if let Err(e) = http::serve(http_listener, http_tls, app, http_metrics, http_stop).await {
            tracing::error!(error = %e, "http server failed");
        }
    });

    tracing::info!(addr = %http_addr, "http listening");

    let (engine, store, journal) = recover(&cfg, data_dir, &metrics).await?;
    let pipeline_task = pipeline::spawn(engine, store, journal, inbox);
    let stop_ingest = shutdown.child_token();
    let connections = TaskTracker::new();
    let ingest_task = tokio::spawn(server::serve(
        ingest_listener,
        cfg.ingest.settings(ingest_auth.clone(), ingest_tls.clone()),
        pipeline.clone(),
        Arc::clone(&metrics),
        stop_ingest.clone(),
        connections.clone(),
    ));
    // Client-mode sources stop with the ingest endpoint, on the same token.
    let sources = client::spawn_all(&files.sources, &pipeline, &metrics, &stop_ingest);
    let alerts_task = cfg.alerts.clone().map(|settings| {
        tracing::info!(url = %settings.alertmanager_url, "pushing alerts to Alertmanager");
        tokio::spawn(crate::alerts::run(
            settings,
            pipeline.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        ))
    });
    drop(pipeline);
    // Ready before the addresses are announced: whoever reads them can rely
    // on /readyz already answering 200.
    ready.store(true, Ordering::Release);
    tracing::info!(addr = %ingest_addr, path = server::PATH, "ingest listening");
    tracing::info!(
        clock = ?cfg.rules.clock,
        version = env!("CARGO_PKG_VERSION"),
        "ringwatch ready"
    );

    let drain = cfg.shutdown.drain_timeout;
    let task = tokio::spawn(async move {
        shutdown.cancelled().await;
        ready.store(false, Ordering::Release);
        let deadline = tokio::time::Instant::now() + drain;
        // 1. Stop accepting; every connection acknowledges its frame in
        //    flight, sends a close frame and ends.
        let _ = ingest_task.await;
        connections.close();
        if tokio::time::timeout_at(deadline, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline reached with ingest connections still open");
        }
        if tokio::time::timeout_at(deadline, sources.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline reached with client-mode sources still open");
        }
        // 2. Stop alerts and HTTP (they hold the last pipeline handles),
        //    then let the pipeline apply whatever is still queued.
        if let Some(task) = alerts_task {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        stop_http.cancel();
        if tokio::time::timeout_at(deadline, http_task).await.is_err() {
            tracing::warn!("drain deadline reached with HTTP requests in flight");
        }
        if tokio::time::timeout_at(deadline, pipeline_task)
            .await
            .is_err()
        {
            tracing::warn!("drain deadline reached before the pipeline finished");
        }
        tracing::info!("ringwatch stopped");
    });
    Ok(Running {
        ingest_addr,
        http_addr,
        task,
    })
}

type Recovered = (Engine, Store, Option<(Journal, std::time::Duration)>);

/// The state to start from: fresh without durability, else the snapshot
/// and journal in the data directory (replayed on a blocking thread).
async fn recover(
    cfg: &Validated,
    data_dir: Option<DataDir>,
    metrics: &Arc<SelfMetrics>,
) -> Result<Recovered, DaemonError> {
    let state = cfg.state();
    let (Some(dir), Some(d)) = (data_dir, cfg.durability.clone()) else {
        tracing::warn!("durability.dir is empty: state is kept in memory only and lost on restart");
        let (engine, store) = state.fresh();
        return Ok((engine, store, None));
    };
    let (engine, store, writer, report, dir) = tokio::task::spawn_blocking(move || {
        durability::recover(&dir, &state, pipeline::replay)
            .map(|(engine, store, writer, report)| (engine, store, writer, report, dir))
    })
    .await
    .expect("recovery does not panic")?;
    let m = &metrics.disk;
    m.recovery_duration.set(report.duration.as_secs_f64());
    m.recovery_records.set(report.records as i64);
    m.recovery_cut_bytes.set(report.cut_bytes as i64);
    m.recovery_bad_snapshots.set(report.bad_snapshots as i64);
    tracing::info!(
        dir = %d.dir.display(),
        snapshot = ?report.snapshot,
        segments = report.segments,
        records = report.records,
        cut_bytes = report.cut_bytes,
        calls_in_flight = engine.calls_in_flight(),
        promises_pending = engine.promises_pending(),
        millis = report.duration.as_millis() as u64,
        "state recovered"
    );
    let journal = Journal::new(dir, writer, d.fsync, Arc::clone(metrics));
    Ok((engine, store, Some((journal, d.snapshot_interval))))
}
