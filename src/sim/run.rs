//! `ringwatch simulate`: generate a call center from a seed, push it to a
//! running ringwatch, and with `--verify` compare its figures to the truth.

use std::io::Write;

use clap::Args;

use super::model::{Model, QueueSpec};
use super::send::{self, Pace, Sent};
use super::{events, scrape::Samples, settle_time, truth, verify};
use crate::config::Validated;
use crate::event::Millis;

#[derive(Args, Clone, Debug)]
pub struct SimulateArgs {
    /// The ringwatch ingest endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:9467/v1/events")]
    pub url: String,
    /// Where to scrape for --verify.
    #[arg(long, default_value = "http://127.0.0.1:9466/metrics")]
    pub metrics_url: String,
    /// Random seed: the same seed gives the same call center, event for event.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Queue names, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "billing,sales,support")]
    pub queues: Vec<String>,
    /// Mean arrival rate per queue (Poisson).
    #[arg(long, default_value_t = 120.0)]
    pub calls_per_hour: f64,
    /// Agents per queue.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Mean talk time in seconds (exponential).
    #[arg(long, default_value_t = 90.0)]
    pub mean_talk: f64,
    /// Mean caller patience in seconds before abandoning (exponential).
    #[arg(long, default_value_t = 60.0)]
    pub mean_patience: f64,
    /// Seconds of call arrivals to simulate.
    #[arg(long, default_value_t = 3600.0)]
    pub duration: f64,
    /// First event time (RFC 3339 or epoch milliseconds) when not --realtime;
    /// later runs can start after an earlier one's last event (which is a
    /// `clock` heartbeat a day past the last due callback) to add traffic.
    #[arg(long, default_value = "2026-11-23T08:00:00Z", value_parser = parse_start)]
    pub start: Millis,
    /// Pace events to the wall clock (ts = now) instead of sending them as
    /// fast as they are acknowledged (which needs rules.clock = "event").
    #[arg(long)]
    pub realtime: bool,
    /// Events per frame.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// After sending, scrape --metrics-url and compare every counter and
    /// bucket with the ground truth; exit 1 on any difference.
    #[arg(long, conflicts_with = "realtime")]
    pub verify: bool,
    /// A file holding the bearer token for ingest (when ringwatch has
    /// `ingest.tokens_file`): the token alone, surrounding whitespace ignored.
    /// A file, not an argument, so the token stays out of `ps`.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// The same for scraping --metrics-url (`http.metrics_tokens_file`).
    #[arg(long)]
    pub metrics_token_file: Option<std::path::PathBuf>,
}

/// The token in `path` (trimmed), if a path is given.
fn read_token(flag: &str, path: &Option<std::path::PathBuf>) -> Result<Option<String>, SimError> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| SimError::Invalid(format!("{flag} {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(SimError::Invalid(format!(
            "{flag} {} is empty",
            path.display()
        )));
    }
    Ok(Some(token.to_string()))
}

impl SimulateArgs {
    pub fn model(&self, start: Millis) -> Model {
        Model {
            seed: self.seed,
            queues: self
                .queues
                .iter()
                .map(|name| QueueSpec {
                    name: name.clone(),
                    calls_per_hour: self.calls_per_hour,
                    agents: self.agents,
                })
                .collect(),
            start,
            duration: (self.duration * 1000.0) as Millis,
            mean_talk_secs: self.mean_talk,
            mean_patience_secs: self.mean_patience,
            ..Model::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Send(#[from] send::SendError),
    #[error("scraping {url}: {why}")]
    Scrape { url: String, why: String },
    #[error("{0}")]
    Invalid(String),
}

/// Run the simulation; `Ok(false)` when --verify found differences.
pub async fn simulate(args: &SimulateArgs, cfg: &Validated) -> Result<bool, SimError> {
    for (what, v) in [
        ("--calls-per-hour", args.calls_per_hour),
        ("--mean-talk", args.mean_talk),
        ("--mean-patience", args.mean_patience),
        ("--duration", args.duration),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(SimError::Invalid(format!(
                "{what} must be a positive number, got {v}"
            )));
        }
    }
    let start = if args.realtime {
        crate::clock::wall_now() + 1_000
    } else {
        args.start
    };
    let model = args.model(start);
    let stories = model.stories();
    let settle = (!args.realtime).then(|| settle_time(&stories, cfg.rules.callback_expiry));
    let evs = events(&model, &stories, settle);
    println!(
        "simulating {} calls ({} events) on {} queues, seed {}",
        stories.len(),
        evs.len(),
        model.queues.len(),
        model.seed
    );
    let pace = if args.realtime {
        Pace::RealTime
    } else {
        Pace::Unpaced
    };
    let token = read_token("--token-file", &args.token_file)?;
    let metrics_token = read_token("--metrics-token-file", &args.metrics_token_file)?;
    let sent = send::send(&args.url, token.as_deref(), &evs, args.batch, pace, |_| {}).await?;
    report_sent(&sent);
    if !args.verify {
        return Ok(sent.rejected == 0);
    }
    let expected = truth::expected(&model, &stories, &cfg.rules, &cfg.bounds());
    let actual = scrape(&args.metrics_url, metrics_token.as_deref()).await?;
    let report = verify::compare(&expected, &actual);
    print!("{}", report.table);
    for d in &report.differences {
        println!("DIFF {d}");
    }
    if report.ok() {
        println!("verify: all {} figures match", report.compared);
    } else {
        println!(
            "verify: {} of {} figures differ",
            report.differences.len(),
            report.compared
        );
    }
    let _ = std::io::stdout().flush();
    Ok(report.ok())
}

fn report_sent(sent: &Sent) {
    println!(
        "sent {} frames: {} accepted, {} duplicates, {} rejected",
        sent.frames, sent.accepted, sent.duplicates, sent.rejected
    );
    for r in &sent.rejections {
        println!("  rejected: {r}");
    }
}

fn parse_start(s: &str) -> Result<Millis, String> {
    if let Ok(ms) = s.parse::<Millis>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as Millis)
        .map_err(|e| format!("{s:?} is neither epoch milliseconds nor RFC 3339: {e}"))
}

/// Scrape `url`, with `token` as the bearer token when `/metrics` needs one.
pub async fn scrape(url: &str, token: Option<&str>) -> Result<Samples, SimError> {
    let err = |why: String| SimError::Scrape {
        url: url.to_string(),
        why,
    };
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    Samples::parse(&text).map_err(err)
}
