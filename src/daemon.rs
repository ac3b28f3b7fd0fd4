//! Wiring: binds the listeners, starts the pipeline, the ingest server and the
//! HTTP server, and runs the drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Auth};
use crate::config::{Files, Validated};
use crate::durability::metrics::DiskMetrics;
use crate::durability::{self, DataDir, DurabilityError, Journal};
use crate::health::{Fatal, Health};
use crate::http::{self, HttpState};
use crate::ingest::server;
use crate::ingest::{self, client};
use crate::metrics::Store;
use crate::pipeline;
use crate::rules::Engine;
use crate::telemetry::SelfMetrics;
use crate::tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("recovery panicked: {0}")]
    RecoveryPanicked(String),
    #[error("cannot start the journal writer thread: {source}")]
    WriterThread {
        #[source]
        source: std::io::Error,
    },
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

/// A started daemon: where it listens, and the supervisor that ends after
/// shutdown.
pub struct Running {
    pub ingest_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub health: Arc<Health>,
    task: JoinHandle<Option<Fatal>>,
}

impl Running {
    /// Wait until the daemon has stopped: after the shutdown token given to
    /// [`start`] is cancelled, or after a fatal failure (a critical task
    /// panicked or ended, the journal could not be synced). `Err` says which
    /// failure; the process should exit with its [`Fatal::exit_code`].
    pub async fn wait(self) -> Result<(), Fatal> {
        match self.task.await {
            Ok(None) => Ok(()),
            Ok(Some(fatal)) => Err(fatal),
            Err(e) => Err(Fatal::Panicked {
                task: "supervisor",
                message: panic_message(e),
            }),
        }
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
    let data_dir = match cfg.durability.clone() {
        // File I/O (mkdir, open, flock): on a blocking thread, as all of it.
        Some(settings) => Some(
            tokio::task::spawn_blocking(move || DataDir::open(&settings))
                .await
                .map_err(|e| DaemonError::RecoveryPanicked(panic_message(e)))??,
        ),
        None => None,
    };
    let ingest_listener = bind("ingest.listen", cfg.ingest.listen).await?;
    let http_listener = bind("http.listen", cfg.http.listen).await?;
    let ingest_addr = ingest_listener.local_addr().expect("bound socket");
    let http_addr = http_listener.local_addr().expect("bound socket");

    let metrics = SelfMetrics::new();
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
        Arc::clone(&metrics.edge),
        shutdown.clone(),
    );
    let (pipeline, inbox) = pipeline::channel();
    let health = Arc::new(Health::default());
    // Every task below stops on `root`: a signal (`shutdown`) or a fatal
    // failure (the supervisor) cancels it.
    let root = shutdown.child_token();
    // HTTP first: during recovery /healthz answers and /readyz says not yet.
    let stop_http = CancellationToken::new();
    let app = http::router(HttpState {
        pipeline: pipeline.clone(),
        registry: metrics.registry.clone(),
        scrape: Arc::clone(&metrics.scrape),
        edge: Arc::clone(&metrics.edge),
        health: Arc::clone(&health),
        auth: http_auth,
        wall: cfg.wall.clone().secure(http_tls.is_some()),
    });
    let http_stop = stop_http.clone();
    let http_metrics = Arc::clone(&metrics.edge);
    let http_task = critical("http server", &health, &root, async move {
        if let Err(e) = http::serve(http_listener, http_tls, app, http_metrics, http_stop).await {
            tracing::error!(error = %e, "http server failed");
        }
    });

    tracing::info!(addr = %http_addr, "http listening");

    let disk = Arc::clone(&metrics.disk);
    let (engine, store, journal) = match recover(&cfg, data_dir, &disk, &health).await {
        Ok(recovered) => recovered,
        Err(e) => {
            // Nothing else runs yet: stop the HTTP server too (an embedding
            // process may go on after a failed start).
            http_task.abort.abort();
            return Err(e);
        }
    };
    let force = CancellationToken::new();
    let pipeline_task = critical(
        "pipeline",
        &health,
        &root,
        pipeline::task(
            engine,
            store,
            journal,
            inbox,
            Arc::clone(&health),
            force.clone(),
        ),
    );
    let stop_ingest = root.child_token();
    let connections = TaskTracker::new();
    let ingest_task = critical(
        "ingest listener",
        &health,
        &root,
        server::serve(
            ingest_listener,
            cfg.ingest.settings(ingest_auth.clone(), ingest_tls.clone()),
            pipeline.clone(),
            Arc::clone(&metrics.ingest),
            Arc::clone(&metrics.edge),
            stop_ingest.clone(),
            connections.clone(),
        ),
    );
    // Client-mode sources stop with the ingest endpoint, on the same token.
    let sources: Vec<Critical> =
        client::tasks(&files.sources, &pipeline, &metrics.ingest, &stop_ingest)
            .into_iter()
            .map(|source| critical("client-mode source", &health, &root, source))
            .chain(
                crate::sources::tasks(
                    &files.platforms,
                    &pipeline,
                    &metrics.ingest,
                    &metrics.platforms,
                    cfg.durability.as_ref().map(|d| d.dir.clone()),
                    &stop_ingest,
                )
                .into_iter()
                .map(|source| critical("PBX source", &health, &root, source)),
            )
            .collect();
    let alerts_task = cfg.alerts.clone().map(|settings| {
        tracing::info!(url = %settings.alertmanager_url, "pushing alerts to Alertmanager");
        critical(
            "alert pusher",
            &health,
            &root,
            crate::alerts::run(
                settings,
                pipeline.clone(),
                Arc::clone(&metrics.alerts),
                root.clone(),
            ),
        )
    });
    drop(pipeline);
    // Ready before the addresses are announced: whoever reads them can rely
    // on /readyz already answering 200.
    health.set_started();
    tracing::info!(addr = %ingest_addr, path = server::PATH, "ingest listening");
    tracing::info!(
        clock = ?cfg.rules.clock,
        version = env!("CARGO_PKG_VERSION"),
        "ringwatch ready"
    );

    let drain = cfg.shutdown.drain_timeout;
    let supervisor_health = Arc::clone(&health);
    let task = tokio::spawn(async move {
        let health = supervisor_health;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = health.failed() => {}
        }
        health.set_stopping();
        root.cancel();
        let deadline = tokio::time::Instant::now() + drain;
        // 1. Stop accepting; every connection acknowledges its frame in
        //    flight, sends a close frame and ends.
        ingest_task.finish(deadline).await;
        connections.close();
        if tokio::time::timeout_at(deadline, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline reached with ingest connections still open");
        }
        for source in sources {
            source.finish(deadline).await;
        }
        // 2. Stop alerts (a POST in flight is cancelled) and HTTP (they hold
        //    the last pipeline handles), then let the pipeline apply whatever
        //    is still queued and write the final snapshot.
        if let Some(task) = alerts_task {
            task.finish(deadline).await;
        }
        stop_http.cancel();
        http_task.finish(deadline).await;
        // 3. Force: past the deadline the pipeline refuses what is still
        //    queued (connections that did not drain lose their pipeline and
        //    end) and still writes the final snapshot.
        let mut pipeline_task = pipeline_task;
        if !pipeline_task.wait_until(deadline).await {
            tracing::warn!("drain deadline reached before the pipeline finished: forcing");
            force.cancel();
            pipeline_task
                .finish(tokio::time::Instant::now() + FINAL_SNAPSHOT)
                .await;
        }
        let fatal = health.fatal();
        match &fatal {
            None => tracing::info!("ringwatch stopped"),
            Some(f) => tracing::error!(error = %f, "ringwatch stopped after a fatal failure"),
        }
        fatal
    });
    Ok(Running {
        ingest_addr,
        http_addr,
        health,
        task,
    })
}

/// How long the forced pipeline gets to write its final snapshot.
const FINAL_SNAPSHOT: Duration = Duration::from_secs(30);

/// A task the daemon cannot live without. If it panics, or ends before
/// shutdown began, the failure is reported to [`Health`]: `/readyz` turns
/// 503 and the supervisor stops the daemon, which exits non-zero.
struct Critical {
    name: &'static str,
    watcher: Option<JoinHandle<()>>,
    abort: AbortHandle,
}

fn critical<F>(
    name: &'static str,
    health: &Arc<Health>,
    root: &CancellationToken,
    task: F,
) -> Critical
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let inner = tokio::spawn(task);
    let abort = inner.abort_handle();
    let (health, root) = (Arc::clone(health), root.clone());
    let watcher = tokio::spawn(async move {
        match inner.await {
            Ok(_) if root.is_cancelled() => {}
            Ok(_) => health.fail(Fatal::Ended { task: name }),
            Err(e) if e.is_panic() => health.fail(Fatal::Panicked {
                task: name,
                message: panic_message(e),
            }),
            // Aborted by the forced shutdown.
            Err(_) => {}
        }
    });
    Critical {
        name,
        watcher: Some(watcher),
        abort,
    }
}

impl Critical {
    /// Wait for the task to end until `deadline`; false if it is still running.
    async fn wait_until(&mut self, deadline: tokio::time::Instant) -> bool {
        let Some(watcher) = self.watcher.as_mut() else {
            return true;
        };
        if tokio::time::timeout_at(deadline, watcher).await.is_err() {
            return false;
        }
        self.watcher = None;
        true
    }

    /// Wait until `deadline`, then abort the task.
    async fn finish(mut self, deadline: tokio::time::Instant) {
        if !self.wait_until(deadline).await {
            tracing::warn!(task = self.name, "drain deadline reached: task aborted");
            self.abort.abort();
            if let Some(watcher) = self.watcher.take() {
                let _ = watcher.await;
            }
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into()),
        Err(e) => e.to_string(),
    }
}

type Recovered = (Engine, Store, Option<(Journal, std::time::Duration)>);

/// The state to start from: fresh without durability, else the snapshot
/// and journal in the data directory (replayed on a blocking thread).
async fn recover(
    cfg: &Validated,
    data_dir: Option<DataDir>,
    disk: &Arc<DiskMetrics>,
    health: &Arc<Health>,
) -> Result<Recovered, DaemonError> {
    let state = cfg.state();
    let (Some(dir), Some(d)) = (data_dir, cfg.durability.clone()) else {
        tracing::warn!("durability.dir is empty: state is kept in memory only and lost on restart");
        let (engine, store) = state.fresh();
        return Ok((engine, store, None));
    };
    let (engine, store, writer, report, dir) = tokio::task::spawn_blocking(move || {
        durability::recover(
            &dir,
            &state,
            |rec| pipeline::prepare(rec, ingest::frame::decode_for_replay),
            pipeline::replay_prepared,
        )
        .map(|(engine, store, writer, report)| (engine, store, writer, report, dir))
    })
    .await
    .map_err(|e| DaemonError::RecoveryPanicked(panic_message(e)))??;
    let m = disk;
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
    let journal = Journal::new(dir, writer, d.fsync, Arc::clone(disk), Arc::clone(health))
        .map_err(|source| DaemonError::WriterThread { source })?;
    Ok((engine, store, Some((journal, d.snapshot_interval))))
}
