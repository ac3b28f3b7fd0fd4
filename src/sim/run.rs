//! `ringwatch simulate`: generate a call center from a seed, push it to a
//! running ringwatch (or, with `--emit`, serve it as an Asterisk AMI or
//! FreeSWITCH ESL server for ringwatch's platform source to read), and with
//! `--verify` compare its figures to the truth.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::model::{Model, QueueSpec, Story};
use super::send::{self, Pace, Sent};
use super::{emit, emit_ami, emit_esl, WireEvent};
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
    /// Play the call center as this PBX would tell it: serve its protocol
    /// on --listen for a ringwatch platform source to connect to, instead
    /// of sending contract events to --url.
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Where the simulated PBX listens [127.0.0.1:5038 for AMI,
    /// 127.0.0.1:8021 for ESL]; port 0 picks a free one (printed).
    #[arg(long, requires = "emit")]
    pub listen: Option<String>,
    /// The AMI username to accept (with --secret-file); without both, any
    /// login is accepted.
    #[arg(long, requires = "emit")]
    pub username: Option<String>,
    /// A file holding the AMI secret (with --username) or the ESL password
    /// to accept; without it, any is accepted.
    #[arg(long, requires = "emit")]
    pub secret_file: Option<PathBuf>,
    /// With --emit: give up when the stream makes no progress for this many
    /// seconds (no client, or one that stopped reading), and, with
    /// --verify, when the daemon takes this long to translate it.
    #[arg(long, default_value_t = 300.0)]
    pub wait_timeout: f64,
}

/// The PBX `--emit` plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// Asterisk 12+ Manager Interface (banner `Asterisk Call Manager/9.0.0`).
    AsteriskAmi,
    /// FreeSWITCH event socket with mod_callcenter events.
    FreeswitchEsl,
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
    if !(args.wait_timeout.is_finite() && args.wait_timeout > 0.0) {
        return Err(SimError::Invalid(format!(
            "--wait-timeout must be a positive number, got {}",
            args.wait_timeout
        )));
    }
    let start = if args.realtime {
        crate::clock::wall_now() + 1_000
    } else {
        args.start
    };
    let model = args.model(start);
    let stories = model.stories();
    let settle = (!args.realtime).then(|| settle_time(&stories, cfg.rules.callback_expiry));
    if let Some(platform) = args.emit {
        return emit_run(args, cfg, platform, &model, stories, settle).await;
    }
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
    compare(args, &expected, metrics_token.as_deref()).await
}

/// Scrape --metrics-url and print every difference from `expected`.
async fn compare(
    args: &SimulateArgs,
    expected: &[(String, f64)],
    metrics_token: Option<&str>,
) -> Result<bool, SimError> {
    let actual = scrape(&args.metrics_url, metrics_token).await?;
    let report = verify::compare(expected, &actual);
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

/// `--emit`: serve the stream as `platform` would until it was all sent
/// (and, with --verify, taken and compared).
async fn emit_run(
    args: &SimulateArgs,
    cfg: &Validated,
    platform: Emit,
    model: &Model,
    stories: Vec<Story>,
    settle: Option<Millis>,
) -> Result<bool, SimError> {
    // mod_callcenter has no customer callbacks: none in the stream, none in the truth.
    let stories = match platform {
        Emit::AsteriskAmi => stories,
        Emit::FreeswitchEsl => emit_esl::strip_callbacks(&stories),
    };
    let messages = match platform {
        Emit::AsteriskAmi => emit_ami::render(model, &stories),
        Emit::FreeswitchEsl => emit_esl::render(model, &stories),
    };
    // What the platform source should make of it: the contract events
    // the simulator sends itself, less the settling heartbeat.
    let translated = events(model, &stories, None).len() as u64;
    let secret = read_token("--secret-file", &args.secret_file)?;
    let metrics_token = read_token("--metrics-token-file", &args.metrics_token_file)?;
    let token = read_token("--token-file", &args.token_file)?;
    let (default_listen, name) = match platform {
        Emit::AsteriskAmi => ("127.0.0.1:5038", "AMI"),
        Emit::FreeswitchEsl => ("127.0.0.1:8021", "ESL"),
    };
    let listen = args.listen.as_deref().unwrap_or(default_listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| SimError::Invalid(format!("--listen {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SimError::Invalid(format!("--listen {listen}: {e}")))?;
    let count = messages.len();
    println!(
        "simulating {} calls on {} queues, seed {}",
        stories.len(),
        model.queues.len(),
        model.seed
    );
    let feed = emit::Feed::new(messages, args.realtime);
    let stop = CancellationToken::new();
    let server = match platform {
        Emit::AsteriskAmi => {
            let login =
                match (&args.username, secret) {
                    (Some(u), Some(s)) => Some((u.clone(), s)),
                    (None, None) => None,
                    _ => return Err(SimError::Invalid(
                        "--username and --secret-file go together (neither: any login is accepted)"
                            .into(),
                    )),
                };
            tokio::spawn(emit::serve(
                listener,
                feed.clone(),
                move || emit_ami::Ami::new(login.clone()),
                stop.clone(),
            ))
        }
        Emit::FreeswitchEsl => tokio::spawn(emit::serve(
            listener,
            feed.clone(),
            move || emit_esl::Esl::new(secret.clone()),
            stop.clone(),
        )),
    };
    println!("simulate: serving {count} {name} messages ({translated} ringwatch events) on {addr}");
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    let patience = Duration::from_secs_f64(args.wait_timeout);
    let outcome = async {
        // The stream, as fast as the client reads it (or at its pace).
        let mut last = (0usize, Instant::now());
        while !feed.done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let sent = feed.sent.load(Ordering::Acquire);
            if sent != last.0 || args.realtime {
                last = (sent, Instant::now());
            } else if last.1.elapsed() > patience {
                return Err(SimError::Invalid(format!(
                    "no client took the stream for {:.0} s ({sent} of {count} messages sent); \
                     is a ringwatch source configured with address = \"{addr}\"?",
                    args.wait_timeout
                )));
            }
        }
        println!("simulate: all {count} messages sent");
        let Some(settle) = settle.filter(|_| args.verify) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(true);
        };
        let got = await_translated(args, metrics_token.as_deref(), translated, patience).await?;
        println!("simulate: the daemon translated {got} events (expected {translated})");
        // Event time settles promises only when the clock passes them: the
        // heartbeat the contract stream ends with, sent over ingest.
        let heartbeat = WireEvent {
            ts: settle,
            json: serde_json::json!({"type": "clock", "ts": settle, "event_id": format!("sim{}-settle", model.seed)}).to_string(),
        };
        let sent = send::send(&args.url, token.as_deref(), &[heartbeat], 1, Pace::Unpaced, |_| {}).await?;
        report_sent(&sent);
        let expected = truth::expected(model, &stories, &cfg.rules, &cfg.bounds());
        compare(args, &expected, metrics_token.as_deref()).await
    }
    .await;
    stop.cancel();
    // A client that stopped reading could hold a write forever.
    if tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .is_err()
    {
        eprintln!("simulate: the client did not take the last messages; leaving it");
    }
    outcome
}

/// Poll `ringwatch_source_translated_events_total` (summed over sources)
/// until it reaches `want`, or stops growing for five seconds, or
/// `patience` passes; returns the last value.
async fn await_translated(
    args: &SimulateArgs,
    token: Option<&str>,
    want: u64,
    patience: Duration,
) -> Result<u64, SimError> {
    let began = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    loop {
        let samples = scrape(&args.metrics_url, token).await;
        let now = match samples {
            Ok(s) => {
                s.0.iter()
                    .filter(|(k, _)| k.starts_with("ringwatch_source_translated_events_total{"))
                    .map(|(_, v)| *v as u64)
                    .sum::<u64>()
            }
            // Not up yet: keep waiting within `patience`.
            Err(_) if began.elapsed() < patience => 0,
            Err(e) => return Err(e),
        };
        if now >= want {
            return Ok(now);
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() > Duration::from_secs(5) {
            return Ok(now);
        }
        if began.elapsed() > patience {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
