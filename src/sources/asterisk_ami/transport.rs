//! The AMI connection: TCP (or TLS), the banner, the login (MD5 challenge,
//! else plain `Action: Login`), reading
//! with backpressure (what the socket has is parsed, translated, delivered
//! and awaited before the next read, so a slow journal slows Asterisk
//! through the TCP window), `Ping` when idle, reconnect with full-jitter
//! backoff, the `QueueStatus` / `CoreShowChannels` reconciliation after
//! every connect, and the translator's state saved in the data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{banner_version, Item, Kind, Message, Mode, Parser};
use super::md5;
use super::translate::{Output, State, Translator};
use super::Settings;
use crate::clock::wall_now;
use crate::ingest::client::Backoff;
use crate::ingest::metrics::CloseReason;
use crate::logging::RateLimited;
use crate::sources::deliver::Deliverer;
use crate::sources::metrics::Skip;
use crate::sources::{Context, Skipped};

/// The event classes ringwatch asks for: queue events are `agent`, hold,
/// hangup and transfers `call`, the callback convention's `UserEvent` `user`.
const EVENTS: &str = "call,agent,user";
const LOGIN_ID: &str = "ringwatch-login";
const CHALLENGE_ID: &str = "ringwatch-challenge";
const PING_ID: &str = "ringwatch-ping";
const BANNER_MAX: usize = 1024;
const READ_BUFFER: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no connection and login within {0:?}")]
    Timeout(Duration),
    #[error("{0:?} is not a TLS server name")]
    ServerName(String),
    #[error("not an Asterisk manager: the banner was {0:?}")]
    Banner(String),
    #[error("the connection closed during the login")]
    Closed,
    /// The PBX refused the login (its `Message:`, never the secret).
    #[error("login refused: {0}")]
    Login(String),
}

/// A logged-in connection, with what came after the login response.
struct Conn {
    io: Box<dyn Io>,
    parser: Parser,
    version: u32,
    early: Vec<Item>,
}

pub async fn run(s: Settings, ctx: Context) {
    let name = s.common.name.clone();
    let address = s.address.to_string();
    ctx.platform.reports_holds.set(1);
    let path = ctx.data_dir.as_deref().map(|d| state_path(d, &name));
    let state = match &path {
        Some(p) => load(p.clone(), &name).await,
        None => State::default(),
    };
    let mut session = Shared {
        tr: Translator::new(s.common.translate.clone(), state),
        deliverer: Deliverer::new(&s.common, &ctx),
        path,
        actions: 0,
        skipped_log: RateLimited::new(Duration::from_secs(10)),
        save_log: RateLimited::new(Duration::from_secs(60)),
    };
    let mut backoff = Backoff::new(s.common.backoff_initial, s.common.backoff_max);
    let mut connected_before = false;
    let failure_log = RateLimited::new(Duration::from_secs(60));
    loop {
        ctx.connection.attempts.inc();
        let timeout = s.common.connect_timeout;
        let attempt = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = tokio::time::timeout(timeout, connect(&s)) => {
                r.unwrap_or(Err(ConnectError::Timeout(timeout)))
            }
        };
        match attempt {
            Ok(conn) => {
                if connected_before {
                    ctx.connection.reconnects.inc();
                }
                connected_before = true;
                ctx.connection.connected.set(1);
                tracing::info!(
                    source = name.as_str(),
                    address = address.as_str(),
                    ami_version = conn.version,
                    dialect = if conn.version >= 2 {
                        "asterisk 12+"
                    } else {
                        "asterisk 11 or older"
                    },
                    "AMI source connected and logged in"
                );
                let since = Instant::now();
                let reason = session.serve(conn, &s, &ctx).await;
                ctx.connection.connected.set(0);
                ctx.connection.disconnected(reason);
                tracing::info!(
                    source = name.as_str(),
                    address = address.as_str(),
                    reason = reason.as_str(),
                    "AMI source disconnected"
                );
                if reason == CloseReason::Shutdown {
                    break;
                }
                if since.elapsed() >= s.common.backoff_reset_after {
                    backoff.reset();
                }
            }
            Err(ConnectError::Login(why)) => {
                ctx.connection.failures.inc();
                ctx.platform.login_failures.inc();
                // Every refusal is worth a line: it will not fix itself.
                tracing::error!(
                    source = name.as_str(),
                    address = address.as_str(),
                    username = s.username.as_str(),
                    message = why.as_str(),
                    "AMI login refused (check username and secret in manager.conf); retrying with backoff"
                );
            }
            Err(e) => {
                ctx.connection.failures.inc();
                match failure_log.check() {
                    Some(suppressed) => tracing::warn!(
                        source = name.as_str(),
                        address = address.as_str(),
                        error = %e,
                        suppressed,
                        "AMI connection failed; retrying with backoff"
                    ),
                    None => {
                        tracing::debug!(source = name.as_str(), error = %e, "AMI connection failed")
                    }
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    session.save(&name).await;
    // A pipeline that stopped first still leaves the task running until
    // cancel: a source returning early would stop the daemon.
    ctx.cancel.cancelled().await;
    tracing::debug!(source = name.as_str(), "AMI source stopped");
}

/// TCP, TLS, the banner and the login: one attempt, under `connect_timeout`.
async fn connect(s: &Settings) -> Result<Conn, ConnectError> {
    let tcp = TcpStream::connect((s.address.host.as_str(), s.address.port)).await?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn Io> = match &s.tls {
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(s.address.host.clone())
                .map_err(|_| ConnectError::ServerName(s.address.host.clone()))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    // The banner is one line, before any message.
    let mut banner = Vec::new();
    let mut rest = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnectError::Closed);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                banner.extend_from_slice(chunk.get(..i).unwrap_or_default());
                rest.extend_from_slice(chunk.get(i + 1..).unwrap_or_default());
                break;
            }
            None => banner.extend_from_slice(chunk),
        }
        if banner.len() > BANNER_MAX {
            break;
        }
    }
    let banner = String::from_utf8_lossy(&banner).trim().to_string();
    let version = banner_version(&banner)
        .ok_or_else(|| ConnectError::Banner(banner.chars().take(80).collect()))?;
    let mut parser = Parser::new(Mode::Live, s.common.max_message_bytes);
    let mut items = Vec::new();
    parser.push(&rest, &mut items);
    // MD5 challenge first, so the secret never crosses the network; a
    // manager that refuses the challenge gets the plain login.
    let challenge =
        format!("Action: Challenge\r\nActionID: {CHALLENGE_ID}\r\nAuthType: MD5\r\n\r\n");
    let answer = exchange(&mut io, &mut parser, &mut items, &challenge, CHALLENGE_ID).await?;
    let login = match (answer.kind(), answer.get("Challenge")) {
        (Kind::Response(r), Some(c)) if r.eq_ignore_ascii_case("success") && !c.is_empty() => {
            let key = md5::hex(format!("{c}{}", s.secret.expose()).as_bytes());
            format!(
                "Action: Login\r\nActionID: {LOGIN_ID}\r\nAuthType: MD5\r\nUsername: {}\r\nKey: {key}\r\nEvents: {EVENTS}\r\n\r\n",
                s.username
            )
        }
        _ => {
            // Once per connection (this runs once per attempt); never the
            // secret itself.
            if s.tls.is_some() {
                tracing::warn!(
                    source = s.common.name.as_str(),
                    username = s.username.as_str(),
                    "the AMI refused the MD5 challenge: logging in with the secret in clear text inside the TLS connection"
                );
            } else {
                tracing::warn!(
                    source = s.common.name.as_str(),
                    username = s.username.as_str(),
                    "the AMI refused the MD5 challenge: logging in with the secret sent in clear text over the network; tls = true avoids it"
                );
            }
            format!(
                "Action: Login\r\nActionID: {LOGIN_ID}\r\nUsername: {}\r\nSecret: {}\r\nEvents: {EVENTS}\r\n\r\n",
                s.username,
                s.secret.expose()
            )
        }
    };
    let m = exchange(&mut io, &mut parser, &mut items, &login, LOGIN_ID).await?;
    match m.kind() {
        Kind::Response(r) if r.eq_ignore_ascii_case("success") => Ok(Conn {
            io,
            parser,
            version,
            early: items,
        }),
        _ => Err(ConnectError::Login(
            m.get("Message")
                .unwrap_or("no reason given")
                .chars()
                .take(120)
                .collect(),
        )),
    }
}

/// Send one action and read until its response; what came before the
/// response stays in `items`, what came after it too (in order).
async fn exchange(
    io: &mut Box<dyn Io>,
    parser: &mut Parser,
    items: &mut Vec<Item>,
    action: &str,
    id: &str,
) -> Result<Message, ConnectError> {
    io.write_all(action.as_bytes()).await?;
    io.flush().await?;
    let mut read = vec![0u8; 4096];
    loop {
        let answer = items.iter().position(|i| match i {
            Item::Message(m) => {
                matches!(m.kind(), Kind::Response(_)) && m.get("ActionID") == Some(id)
            }
            Item::Skipped { .. } => false,
        });
        if let Some(i) = answer {
            if let Item::Message(m) = items.remove(i) {
                return Ok(m);
            }
        }
        let n = io.read(&mut read).await?;
        if n == 0 {
            return Err(ConnectError::Closed);
        }
        parser.push(read.get(..n).unwrap_or_default(), items);
    }
}

/// What lives across connections: the translator, the way into the
/// pipeline, where the state is saved.
struct Shared {
    tr: Translator,
    deliverer: Deliverer,
    path: Option<PathBuf>,
    /// Reconciliations started (their ActionIDs are numbered).
    actions: u64,
    skipped_log: RateLimited,
    save_log: RateLimited,
}

/// What one connection knows about itself.
struct Live {
    /// The first event decided whether times are the PBX's own.
    timed: bool,
}

impl Shared {
    /// Serve one logged-in connection until it ends; returns the reason.
    async fn serve(&mut self, mut conn: Conn, s: &Settings, ctx: &Context) -> CloseReason {
        let name = s.common.name.as_str();
        self.actions += 1;
        let queues = format!("ringwatch-queuestatus-{}", self.actions);
        let channels = format!("ringwatch-channels-{}", self.actions);
        let actions = format!(
            "Action: QueueStatus\r\nActionID: {queues}\r\n\r\nAction: CoreShowChannels\r\nActionID: {channels}\r\n\r\n"
        );
        if conn.io.write_all(actions.as_bytes()).await.is_err() {
            return CloseReason::IoError;
        }
        let now = self.tr.pbx_now(wall_now());
        self.tr.begin_reconcile(&queues, &channels, now);
        let mut live = Live { timed: false };
        let early = std::mem::take(&mut conn.early);
        if let Err(r) = self.process(early, &mut live, s, ctx).await {
            return r;
        }
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + s.common.ping_interval,
            s.common.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let mut buf = vec![0u8; READ_BUFFER];
        let mut items = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => {
                    let bye = conn.io.write_all(b"Action: Logoff\r\n\r\n");
                    let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
                    return CloseReason::Shutdown;
                }
                r = conn.io.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => return CloseReason::Peer,
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(source = name, error = %e, "AMI read failed");
                            return CloseReason::IoError;
                        }
                    };
                    last_seen = Instant::now();
                    conn.parser.push(buf.get(..n).unwrap_or_default(), &mut items);
                    let batch = std::mem::take(&mut items);
                    if let Err(r) = self.process(batch, &mut live, s, ctx).await {
                        return r;
                    }
                }
                _ = ping.tick() => {
                    let quiet = last_seen.elapsed();
                    if quiet > s.common.idle_timeout {
                        return CloseReason::IdleTimeout;
                    }
                    if quiet >= s.common.ping_interval {
                        let ping = format!("Action: Ping\r\nActionID: {PING_ID}\r\n\r\n");
                        if conn.io.write_all(ping.as_bytes()).await.is_err() {
                            return CloseReason::IoError;
                        }
                    }
                    let mut out = Output::default();
                    let now = self.tr.pbx_now(wall_now());
                    self.tr.tick(now, &mut out);
                    if let Err(r) = self.settle(out, s, ctx).await {
                        return r;
                    }
                }
            }
        }
    }

    /// Translate a batch of parsed items and deliver what they made.
    async fn process(
        &mut self,
        items: Vec<Item>,
        live: &mut Live,
        s: &Settings,
        ctx: &Context,
    ) -> Result<(), CloseReason> {
        if items.is_empty() {
            return Ok(());
        }
        let wall = wall_now();
        let mut out = Output::default();
        for item in items {
            match item {
                Item::Message(m) => {
                    if m.get("ActionID") == Some(PING_ID) {
                        continue;
                    }
                    ctx.platform.messages.inc();
                    if !live.timed && is_stream_event(&m) {
                        live.timed = true;
                        self.first_event(&m, s, ctx);
                    }
                    self.tr.message(&m, Some(wall), &mut out);
                }
                Item::Skipped {
                    line,
                    reason,
                    detail,
                } => {
                    ctx.platform.messages.inc();
                    out.skipped.push(Skipped {
                        line,
                        reason,
                        detail,
                    });
                }
            }
        }
        self.settle(out, s, ctx).await
    }

    /// The exact_time gauge and its warning, from a connection's first event.
    fn first_event(&self, m: &Message, s: &Settings, ctx: &Context) {
        if m.get("Timestamp").is_some() {
            ctx.platform.exact_time.set(1);
        } else {
            ctx.platform.exact_time.set(0);
            tracing::warn!(
                source = s.common.name.as_str(),
                "AMI events carry no Timestamp: (timestampevents = yes is not set in manager.conf): \
                 times are when ringwatch received them, so answer and hold figures are only as \
                 exact as delivery (a second of delay moves a call across the 18-second limit)"
            );
        }
    }

    /// Count, log and deliver what a translation step made; save the state.
    async fn settle(
        &mut self,
        out: Output,
        s: &Settings,
        ctx: &Context,
    ) -> Result<(), CloseReason> {
        let name = s.common.name.as_str();
        for sk in &out.skipped {
            ctx.platform.skipped(sk.reason);
            if matches!(
                sk.reason,
                Skip::Malformed | Skip::Oversized | Skip::InvalidValue
            ) {
                if let Some(suppressed) = self.skipped_log.check() {
                    tracing::warn!(
                        source = name,
                        reason = sk.reason.as_str(),
                        detail = sk.detail.as_str(),
                        suppressed,
                        "AMI message skipped (counted in ringwatch_source_skipped_total)"
                    );
                }
            }
        }
        for note in &out.notes {
            tracing::warn!(source = name, "{note}");
        }
        if !out.reconciled.is_empty() {
            let get = |w| {
                out.reconciled
                    .iter()
                    .filter(|(r, _)| *r == w)
                    .map(|(_, n)| *n)
                    .sum::<u64>()
            };
            use crate::sources::metrics::Reconciled;
            for (what, n) in &out.reconciled {
                ctx.platform.reconciled(*what, *n);
            }
            tracing::info!(
                source = name,
                kept = get(Reconciled::Kept),
                offered = get(Reconciled::Offered),
                dropped = get(Reconciled::Dropped),
                "reconciled calls in progress with the PBX's QueueStatus and CoreShowChannels"
            );
        }
        let stopped = |_| CloseReason::Shutdown;
        if !out.events.is_empty() {
            self.deliverer
                .deliver(&out.events, &ctx.cancel)
                .await
                .map_err(stopped)?;
        }
        if !out.forget.is_empty() {
            self.deliverer
                .forget(&out.forget, &ctx.cancel)
                .await
                .map_err(stopped)?;
        }
        self.save(name).await;
        Ok(())
    }

    /// Write the translator's state when it changed: tmp file, then rename.
    async fn save(&mut self, name: &str) {
        let Some(path) = self.path.clone() else {
            return;
        };
        if !self.tr.take_dirty() {
            return;
        }
        let bytes = match serde_json::to_vec(self.tr.state()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(source = name, error = %e, "cannot encode the AMI state");
                return;
            }
        };
        let written =
            tokio::task::spawn_blocking(move || crate::sources::state::write(&path, &bytes))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(e) = written {
            // Tried again with the next batch (the state stays dirty).
            self.tr.mark_dirty();
            if let Some(suppressed) = self.save_log.check() {
                tracing::warn!(
                    source = name,
                    error = %e,
                    suppressed,
                    "cannot save the AMI state (call ids of calls in progress may not survive a restart)"
                );
            }
        }
    }
}

/// A real event of the stream: not an answer to one of our actions, and
/// not the `FullyBooted` a login may be answered with (Asterisk writes it
/// directly, without `Timestamp:` even when `timestampevents = yes`).
fn is_stream_event(m: &Message) -> bool {
    matches!(m.kind(), Kind::Event(_)) && m.get("ActionID").is_none() && !m.is_event("FullyBooted")
}

/// `<data_dir>/sources/<name>.ami.json`.
pub fn state_path(dir: &Path, name: &str) -> PathBuf {
    crate::sources::state::path(dir, name, "ami")
}

async fn load(path: PathBuf, name: &str) -> State {
    let shown = path.display().to_string();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
    match read {
        Ok(Ok(bytes)) => match serde_json::from_slice::<State>(&bytes) {
            Ok(state) => {
                tracing::info!(
                    source = name,
                    path = shown.as_str(),
                    calls = state.calls.len(),
                    "AMI state loaded"
                );
                state
            }
            Err(e) => {
                tracing::warn!(
                    source = name,
                    path = shown.as_str(),
                    error = %e,
                    "the saved AMI state is unreadable; starting without it"
                );
                State::default()
            }
        },
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Ok(Err(e)) => {
            tracing::warn!(source = name, path = shown.as_str(), error = %e, "cannot read the saved AMI state");
            State::default()
        }
        Err(_) => State::default(),
    }
}
