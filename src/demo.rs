//! `ringwatch demo`: the daemon and the simulator in one process, at a human
//! pace on the wall clock, with a status line read back from `/metrics`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{Files, Validated};
use crate::daemon;
use crate::rules::ClockMode;
use crate::sim::model::{Model, QueueSpec};
use crate::sim::run::scrape;
use crate::sim::scrape::Samples;
use crate::sim::send::{self, Pace};

#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Seconds (wall time) before the demo stops by itself.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Random seed of the simulated call center.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error(transparent)]
    Send(#[from] send::SendError),
    #[error("cannot create the demo's data directory: {0}")]
    DataDir(#[from] std::io::Error),
    #[error(transparent)]
    Fatal(#[from] crate::health::Fatal),
}

/// Three queues, a call every ~10 s on each, 7 agents each: busy enough that
/// some callers wait past three rings, some abandon, some holds pass 17 s.
fn demo_model(seed: u64, duration: f64) -> Model {
    Model {
        seed,
        queues: ["billing", "sales", "support"]
            .iter()
            .map(|q| QueueSpec {
                name: q.to_string(),
                calls_per_hour: 360.0,
                agents: 7,
            })
            .collect(),
        start: crate::clock::wall_now() + 1_000,
        duration: (duration * 1000.0) as i64,
        mean_talk_secs: 40.0,
        mean_patience_secs: 45.0,
        ..Model::default()
    }
}

pub async fn run(
    mut cfg: Validated,
    files: Files,
    args: &DemoArgs,
    shutdown: CancellationToken,
) -> Result<(), DemoError> {
    cfg.rules.clock = ClockMode::Wall;
    // Each demo is a new simulated day: its journal lives in a temporary
    // directory, removed when the demo ends.
    let data = tempfile::Builder::new()
        .prefix("ringwatch-demo-")
        .tempdir()?;
    if let Some(d) = &mut cfg.durability {
        d.dir = data.path().to_path_buf();
    }
    let running = daemon::start(cfg, files, shutdown.clone()).await?;
    let metrics_url = format!("http://{}/metrics", running.http_addr);
    let ingest_url = format!("ws://{}/v1/events", running.ingest_addr);
    // The wall first: it is what someone trying the demo wants to open.
    println!("ringwatch wall: http://{}/wall", running.http_addr);
    println!("ringwatch demo: a simulated call center is calling in now.");
    println!("  metrics:  {metrics_url}");
    println!("  ingest:   {ingest_url}");
    println!("  try:      curl -s {metrics_url} | grep -E '^ringwatch_(calls_waiting|calls_on_hold|calls_answered_total|calls_abandoned_total)'");
    println!("  stop:     Ctrl-C");
    println!();

    let model = demo_model(args.seed, args.duration);
    let stories = model.stories();
    let evs = crate::sim::events(&model, &stories, None);
    let sender = tokio::spawn(async move {
        send::send(&ingest_url, None, &evs, 100, Pace::RealTime, |_| {}).await
    });

    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 2 }));
    let started = std::time::Instant::now();
    // Calls keep producing events (answers, holds, callbacks due hours later)
    // long after the last arrival: the demo ends after --duration of wall
    // time whatever is still to come.
    let end = tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0)));
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut end => break,
            _ = tick.tick() => {}
        }
        if let Ok(m) = scrape(&metrics_url, None).await {
            let line = status_line(&m, started.elapsed());
            if tty {
                print!("\r\x1b[2K{line}");
            } else {
                println!("{line}");
            }
            let _ = std::io::stdout().flush();
        }
        if sender.is_finished() {
            break;
        }
    }
    println!();
    shutdown.cancel();
    if sender.is_finished() {
        sender.await.expect("sender task").map(|_| ())?;
    } else {
        sender.abort();
    }
    running.wait().await?;
    Ok(())
}

/// Totals across queues of the figures a wall would show.
pub fn status_line(m: &Samples, elapsed: Duration) -> String {
    let sum = |family: &str, filter: &str| -> f64 {
        m.0.iter()
            .filter(|(k, _)| k.starts_with(&format!("{family}{{")) && k.contains(filter))
            .map(|(_, v)| v)
            // f64's Sum starts at -0.0, which would print as "-0".
            .fold(0.0, |a, b| a + b)
    };
    let answered = sum("ringwatch_calls_answered_total", "");
    let in_limit = sum("ringwatch_time_to_answer_seconds_bucket", "le=\"18.0\"");
    let long_abandons = sum("ringwatch_calls_abandoned_total", "short=\"false\"");
    let service = if answered + long_abandons > 0.0 {
        format!("{:.0}%", 100.0 * in_limit / (answered + long_abandons))
    } else {
        "-".into()
    };
    let secs = elapsed.as_secs();
    format!(
        "{:02}:{:02} offered {} answered {} abandoned {} | 3-ring SL {} | waiting {} (past 3 rings {}) | on hold {} (past 17 s {}) | callbacks pending {} overdue {} kept {}",
        secs / 60,
        secs % 60,
        sum("ringwatch_calls_offered_total", ""),
        answered,
        sum("ringwatch_calls_abandoned_total", ""),
        service,
        sum("ringwatch_calls_waiting", ""),
        sum("ringwatch_calls_waiting_over_limit", ""),
        sum("ringwatch_calls_on_hold", ""),
        sum("ringwatch_calls_on_hold_over_limit", ""),
        sum("ringwatch_callbacks_pending", ""),
        sum("ringwatch_callbacks_overdue", ""),
        sum("ringwatch_callbacks_resolved_total", "outcome=\"kept\""),
    )
}
