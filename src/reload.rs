//! SIGHUP: re-read the token files and TLS certificates without a restart.
//! Each is reloaded on its own; one that fails keeps what it had, and the
//! failure is logged and counted, so a typo never locks every source out.
//! The files are read on a blocking thread, never on the async workers.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::auth::metrics::{EdgeMetrics, ReloadFile};
use crate::auth::Auth;
use crate::tls::Tls;

/// Everything a SIGHUP re-reads.
pub struct Reloadable {
    pub ingest_tokens: Auth,
    pub http_tokens: Auth,
    pub ingest_tls: Option<Tls>,
    pub http_tls: Option<Tls>,
}

/// Install the SIGHUP handler now (so a SIGHUP sent once the daemon is
/// ready never kills it) and reload on every signal until `shutdown`.
/// Reloads run one at a time: a SIGHUP during a reload is served after it.
pub fn on_sighup(r: Reloadable, metrics: Arc<EdgeMetrics>, shutdown: CancellationToken) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP: token files and certificates will not be reloaded");
            return;
        }
    };
    let r = Arc::new(r);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            tracing::info!(signal = "SIGHUP", "reloading token files and certificates");
            // Files can sit on a slow or hung disk (NFS, a failing volume):
            // read them where a stall cannot hold up ingest or scrapes.
            let (r, metrics) = (Arc::clone(&r), Arc::clone(&metrics));
            if let Err(e) = tokio::task::spawn_blocking(move || reload(&r, &metrics)).await {
                tracing::error!(error = %e, "reload task failed: the previous tokens and certificates stay in force");
            }
        }
    });
}

/// Reload each configured file; returns how many failed.
pub fn reload(r: &Reloadable, metrics: &EdgeMetrics) -> usize {
    let mut failed = 0;
    for (what, auth) in [
        (ReloadFile::IngestTokens, &r.ingest_tokens),
        (ReloadFile::HttpTokens, &r.http_tokens),
    ] {
        match auth.reload() {
            None => {}
            Some(Ok(changes)) => {
                if what == ReloadFile::IngestTokens {
                    metrics.declare_sources(changes.added.iter().map(String::as_str));
                }
                tracing::info!(
                    file = what.as_str(),
                    sources = changes.sources,
                    added = ?changes.added,
                    removed = ?changes.removed,
                    new_token = ?changes.changed,
                    "token file reloaded"
                );
                metrics.reloaded(what, true);
            }
            Some(Err(e)) => {
                failed += 1;
                tracing::error!(file = what.as_str(), error = %e, "token file reload failed: the previous tokens stay in force");
                metrics.reloaded(what, false);
            }
        }
    }
    for (what, tls) in [
        (ReloadFile::IngestTls, &r.ingest_tls),
        (ReloadFile::HttpTls, &r.http_tls),
    ] {
        let Some(tls) = tls else { continue };
        match tls.reload() {
            Ok(()) => {
                tracing::info!(file = what.as_str(), "TLS certificate and key reloaded");
                metrics.reloaded(what, true);
            }
            Err(e) => {
                failed += 1;
                tracing::error!(file = what.as_str(), error = %e, "TLS reload failed: the previous certificate stays in use");
                metrics.reloaded(what, false);
            }
        }
    }
    failed
}
