//! The daemon in-process: `ringwatch::daemon::start` on port 0, the
//! addresses it returns, shutdown by its cancellation token. This file is
//! the tests' only caller of `Config::load`, `validate`, `daemon::start` and
//! `Running::wait`, so a change to their signatures is fixed here alone.

use std::path::Path;
use std::thread::JoinHandle;

use ringwatch::config::{Config, Files, Validated};
use ringwatch::daemon::Running;
use tokio_util::sync::CancellationToken;

use super::{data_dir, full_env, Endpoints};

/// The validated configuration of `env` (`RINGWATCH__...` pairs, later ones
/// winning), with no file and none of the test process's own variables.
// An iterator rather than the Vec: `load` takes an IntoIterator today and
// may take an Iterator tomorrow.
#[allow(clippy::useless_conversion)]
fn config(env: Vec<(String, String)>) -> (Validated, Files) {
    Config::load(None, env.into_iter())
        .and_then(|c| c.validate())
        .and_then(|c| c.read_files().map(|files| (c, files)))
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// Wait until the daemon has shut down, whatever `wait` reports: how it
/// ended is the process's business (exit codes are tested on the binary).
async fn finished(running: Running) {
    let _ = running.wait().await;
}

/// A daemon running inside the test process.
pub struct InProcess {
    endpoints: Endpoints,
    shutdown: CancellationToken,
    run: Run,
    _data: Option<tempfile::TempDir>,
}

enum Run {
    /// On a runtime of its own in a thread of its own, as in production: a
    /// test may block (run a child process, sleep) without stalling it.
    Thread {
        /// Ends the runtime at once, tasks dropped mid-flight (as a kill).
        kill: CancellationToken,
        thread: Option<JoinHandle<()>>,
    },
    /// On the test's own runtime (`start_here`), so that the test's paused
    /// clock is the daemon's clock too.
    Here { running: Option<Running> },
}

impl std::ops::Deref for InProcess {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

/// Start a daemon with `RINGWATCH__...` overrides (port 0 on loopback and a
/// fresh data directory are added) on a runtime of its own; returns once it
/// is ready (its `/readyz` answers 200).
pub fn start(env: &[(&str, &str)]) -> InProcess {
    let data = data_dir(env);
    let (cfg, files) = config(full_env(env, data.as_ref()));
    let shutdown = CancellationToken::new();
    let kill = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, end) = (shutdown.clone(), kill.clone());
    let thread = std::thread::Builder::new()
        .name("ringwatch-daemon".into())
        .spawn(move || {
            // Two workers, as the binary has on this two-core machine.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the daemon");
            rt.block_on(async move {
                let running = match ringwatch::daemon::start(cfg, files, stop).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let _ = tx.send(Ok(Endpoints {
                    ingest: running.ingest_addr,
                    http: running.http_addr,
                }));
                tokio::select! {
                    _ = finished(running) => {}
                    _ = end.cancelled() => {}
                }
            });
        })
        .expect("spawn the daemon's thread");
    let endpoints = rx
        .recv()
        .expect("the daemon's thread reports")
        .unwrap_or_else(|e| panic!("daemon did not start: {e}"));
    InProcess {
        endpoints,
        shutdown,
        run: Run::Thread {
            kill,
            thread: Some(thread),
        },
        _data: data,
    }
}

/// Start a daemon on the data directory `dir` (kept after the test: restart
/// tests start several daemons on one directory).
pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> InProcess {
    let mut with_dir = vec![("RINGWATCH__DURABILITY__DIR", dir.to_str().unwrap())];
    with_dir.extend_from_slice(env);
    start(&with_dir)
}

/// Start a daemon on the test's own runtime: with
/// `#[tokio::test(start_paused = true)]` its timers run on the paused clock.
pub async fn start_here(env: &[(&str, &str)]) -> InProcess {
    let data = data_dir(env);
    let (cfg, files) = config(full_env(env, data.as_ref()));
    let shutdown = CancellationToken::new();
    let running = ringwatch::daemon::start(cfg, files, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("daemon did not start: {e:#}"));
    InProcess {
        endpoints: Endpoints {
            ingest: running.ingest_addr,
            http: running.http_addr,
        },
        shutdown,
        run: Run::Here {
            running: Some(running),
        },
        _data: data,
    }
}

impl InProcess {
    /// Graceful shutdown, as on SIGTERM: cancel the token and wait until the
    /// drain is done (final snapshot written, data directory unlocked).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        match &mut self.run {
            Run::Thread { thread, .. } => {
                let thread = thread.take().expect("stopped once");
                tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .expect("join")
                    .expect("the daemon's thread does not panic");
            }
            Run::Here { running } => finished(running.take().expect("stopped once")).await,
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        match &mut self.run {
            // Like a kill: no drain to wait for (a test's clients may still
            // be open), and the directory is unlocked once the runtime is gone.
            Run::Thread { kill, thread } => {
                kill.cancel();
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            // Its tasks end with the test's runtime.
            Run::Here { .. } => self.shutdown.cancel(),
        }
    }
}
