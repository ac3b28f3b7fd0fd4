//! The daemon as a child process (the real `ringwatch` binary), for the
//! tests where the process is the point: signals (SIGTERM, SIGHUP, SIGKILL),
//! exit codes, log text, memory of the process. Its listening addresses are
//! read from its JSON log, as an operator would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{data_dir, full_env, ringwatch_command, signal, Endpoints};

pub struct Process {
    child: Child,
    endpoints: Endpoints,
    /// Every log line the daemon wrote so far (JSON).
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The daemon's own data directory, removed when the test ends.
    _data: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Process {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

/// Start the binary with `RINGWATCH__...` overrides (port 0 on loopback,
/// JSON logs and a fresh data directory are added), and wait until it logged
/// both listening addresses.
pub fn start_process(env: &[(&str, &str)]) -> Process {
    let data = data_dir(env);
    spawn(&full_env(env, data.as_ref()), data)
}

/// Start the binary on the data directory `dir` (kept after the test:
/// restart tests start several daemons on one directory).
pub fn start_process_in(dir: &Path, env: &[(&str, &str)]) -> Process {
    let mut with_dir = vec![("RINGWATCH__DURABILITY__DIR", dir.to_str().unwrap())];
    with_dir.extend_from_slice(env);
    start_process(&with_dir)
}

fn spawn(env: &[(String, String)], data: Option<tempfile::TempDir>) -> Process {
    let mut cmd = ringwatch_command();
    cmd.env("RINGWATCH__LOG__FORMAT", "json")
        .env("RINGWATCH__LOG__LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn ringwatch");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            sink.lock().unwrap().push(line);
        }
    });
    let (mut ingest, mut http) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingest.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("daemon did not start; logs: {:?}", logs.lock().unwrap()));
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let addr = v["addr"].as_str().map(|a| a.parse::<SocketAddr>().unwrap());
        match v["message"].as_str() {
            Some("ingest listening") => ingest = addr,
            Some("http listening") => http = addr,
            _ => {}
        }
    }
    Process {
        child,
        endpoints: Endpoints {
            ingest: ingest.unwrap(),
            http: http.unwrap(),
        },
        logs,
        _data: data,
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM and wait for the exit status (panics after `within`).
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait_exit(within)
    }

    /// Wait for the process to exit (panics after `within`).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
