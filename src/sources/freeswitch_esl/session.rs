//! The transport: TCP to the event socket, `auth`, the subscription, the
//! read-translate-deliver loop (everything a read brought is delivered as
//! one batch and awaited before the next read), `api status` when the
//! socket is quiet, reconciliation of the calls in flight after every
//! connect, the translator's state on disk, and reconnect with backoff.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{self, Decoder, Frame, FrameSkip, Item};
use super::translate::{self, Translator};
use super::Settings;
use crate::event::Event;
use crate::ingest::client::Backoff;
use crate::ingest::metrics::CloseReason;
use crate::logging::RateLimited;
use crate::sources::deliver::Deliverer;
use crate::sources::metrics::{Reconciled, Skip};
use crate::sources::Context;

use super::SUBSCRIBE_EVENTS;

/// At most one warning per source this often about failed connects.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

const READ_BUFFER: usize = 64 * 1024;

/// The state is written after a delivered batch, at most this often: a
/// busy switch delivers many batches a second, each would rewrite it all.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a connection attempt failed; never carries the password.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    #[error("the event socket refused the password ({0})")]
    Refused(String),
    #[error("the event socket closed the connection during the handshake")]
    Closed,
    #[error("unexpected answer during the handshake: {0}")]
    Protocol(String),
}

/// The skip reason of bytes the framing could not use.
pub fn frame_skip(why: FrameSkip) -> Skip {
    match why {
        FrameSkip::NotProtocol => Skip::NotProtocol,
        FrameSkip::Malformed => Skip::Malformed,
        FrameSkip::Oversized => Skip::Oversized,
    }
}

/// An event message's body read into headers.
pub fn event_headers(f: &Frame) -> Option<Result<frame::Headers, frame::BodyError>> {
    match f.content_type() {
        Some("text/event-json") => Some(frame::json_event(&f.body)),
        Some("text/event-plain") => Some(frame::plain_event(&f.body)),
        _ => None,
    }
}

/// Connect, authenticate, subscribe, follow, reconnect, until `ctx.cancel`.
pub async fn run(s: Settings, ctx: Context) {
    let name = s.common.name.clone();
    let address = s.address.to_string();
    ctx.platform.reports_holds.set(1);
    ctx.platform.exact_time.set(1);
    let mut store = Store::new(ctx.data_dir.as_deref(), &name);
    let mut tr = store.load(&name).await;
    let mut deliverer = Deliverer::new(&s.common, &ctx);
    let mut backoff = Backoff::new(s.common.backoff_initial, s.common.backoff_max);
    let failure_log = RateLimited::new(FAILURE_LOG_INTERVAL);
    let m = ctx.connection.clone();
    let mut connected_before = false;
    loop {
        m.attempts.inc();
        let attempt = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = tokio::time::timeout(s.common.connect_timeout, connect(&s)) => {
                r.unwrap_or(Err(ConnectError::Timeout(s.common.connect_timeout)))
            }
        };
        match attempt {
            Ok((stream, decoder)) => {
                if connected_before {
                    m.reconnects.inc();
                }
                connected_before = true;
                m.connected.set(1);
                tracing::info!(
                    source = name.as_str(),
                    address = address.as_str(),
                    in_flight = tr.in_flight(),
                    "event socket connected and subscribed"
                );
                let since = Instant::now();
                let mut session = Session {
                    stream,
                    decoder,
                    s: &s,
                    ctx: &ctx,
                    tr: &mut tr,
                    deliverer: &mut deliverer,
                    store: &mut store,
                    pending: VecDeque::new(),
                    events: 0,
                };
                let reason = session.run().await;
                let events = session.events;
                drop(session);
                m.connected.set(0);
                m.disconnected(reason);
                tracing::info!(
                    source = name.as_str(),
                    address = address.as_str(),
                    reason = reason.as_str(),
                    events,
                    "event socket disconnected"
                );
                if tr.dirty() {
                    store.save(&name, &mut tr).await;
                }
                if reason == CloseReason::Shutdown {
                    break;
                }
                if since.elapsed() >= s.common.backoff_reset_after {
                    backoff.reset();
                }
            }
            Err(e) => {
                m.failures.inc();
                if matches!(e, ConnectError::Refused(_)) {
                    ctx.platform.login_failures.inc();
                }
                match failure_log.check() {
                    Some(suppressed) => tracing::warn!(
                        source = name.as_str(),
                        address = address.as_str(),
                        error = %e,
                        suppressed,
                        "event socket connection failed; retrying with backoff"
                    ),
                    None => tracing::debug!(
                        source = name.as_str(),
                        address = address.as_str(),
                        error = %e,
                        "event socket connection failed"
                    ),
                }
            }
        }
        let delay = backoff.next_delay();
        tracing::debug!(source = name.as_str(), ?delay, "reconnecting after a delay");
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    // A stopped pipeline ends the session too; the task still lasts until
    // the daemon's shutdown, as a source task must.
    ctx.cancel.cancelled().await;
    if tr.dirty() {
        store.save(&name, &mut tr).await;
    }
    tracing::debug!(source = name.as_str(), "source stopped");
}

/// TCP, `auth/request`, `auth`, the subscription: one attempt, under
/// `connect_timeout`. The decoder comes back with whatever followed.
async fn connect(s: &Settings) -> Result<(TcpStream, Decoder), ConnectError> {
    let mut stream = TcpStream::connect((s.address.host.as_str(), s.address.port)).await?;
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::new(s.common.max_message_bytes);
    let hello = next_frame(&mut stream, &mut decoder).await?;
    match hello.content_type() {
        Some("auth/request") => {}
        Some("text/rude-rejection") => {
            return Err(ConnectError::Refused(
                "rude-rejection: this address is not in the event socket's ACL".into(),
            ))
        }
        other => {
            return Err(ConnectError::Protocol(format!(
                "{other:?} instead of auth/request"
            )))
        }
    }
    let auth = format!("auth {}\n\n", s.password.expose());
    stream.write_all(auth.as_bytes()).await?;
    let reply = reply_text(&next_frame(&mut stream, &mut decoder).await?);
    if !reply.starts_with("+OK") {
        return Err(ConnectError::Refused(printable(&reply)));
    }
    stream
        .write_all(format!("event json {SUBSCRIBE_EVENTS}\n\n").as_bytes())
        .await?;
    loop {
        let f = next_frame(&mut stream, &mut decoder).await?;
        if f.content_type() == Some("command/reply") {
            let reply = reply_text(&f);
            if reply.starts_with("+OK") {
                return Ok((stream, decoder));
            }
            return Err(ConnectError::Protocol(format!(
                "the subscription was refused: {}",
                printable(&reply)
            )));
        }
    }
}

fn reply_text(f: &Frame) -> String {
    f.headers
        .get("Reply-Text")
        .map(str::to_string)
        .unwrap_or_else(|| f.body_text())
}

/// A platform answer fit for a log line.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

async fn next_frame(stream: &mut TcpStream, decoder: &mut Decoder) -> Result<Frame, ConnectError> {
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(item) = decoder.next_item() {
            if let Item::Frame(f) = item {
                return Ok(f);
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnectError::Closed);
        }
        decoder.push(buf.get(..n).unwrap_or_default());
    }
}

/// An `api` command sent and not answered yet: answers come in order.
enum Pending {
    Ping,
    /// `callcenter_config queue list members <queue>`, and the members of
    /// that queue that were in flight when it was asked.
    Members {
        queue: String,
        checked: Vec<String>,
    },
}

struct Session<'a> {
    stream: TcpStream,
    decoder: Decoder,
    s: &'a Settings,
    ctx: &'a Context,
    tr: &'a mut Translator,
    deliverer: &'a mut Deliverer,
    store: &'a mut Store,
    pending: VecDeque<Pending>,
    /// ESL events read on this connection.
    events: u64,
}

impl Session<'_> {
    async fn run(&mut self) -> CloseReason {
        let c = &self.s.common;
        if let Err(reason) = self.ask_members().await {
            return reason;
        }
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + c.ping_interval,
            c.ping_interval,
        );
        let mut last_seen = Instant::now();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            // What the handshake's reads already brought, then each read.
            if let Err(reason) = self.drain().await {
                return reason;
            }
            let save_in = self.store.due_in();
            tokio::select! {
                biased;
                _ = self.ctx.cancel.cancelled() => return CloseReason::Shutdown,
                r = self.stream.read(&mut buf) => match r {
                    Ok(0) => return CloseReason::Peer,
                    Ok(n) => {
                        last_seen = Instant::now();
                        self.decoder.push(buf.get(..n).unwrap_or_default());
                    }
                    Err(_) => return CloseReason::IoError,
                },
                _ = tokio::time::sleep(save_in), if self.tr.dirty() => {
                    self.store.save(&self.s.common.name, self.tr).await;
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > c.idle_timeout {
                        return CloseReason::IdleTimeout;
                    }
                    // One probe at a time: a switch that takes the
                    // command and never answers is caught by idle_timeout.
                    let probing = self.pending.iter().any(|p| matches!(p, Pending::Ping));
                    if last_seen.elapsed() >= c.ping_interval && !probing {
                        if let Err(reason) = self.send("api status").await {
                            return reason;
                        }
                        self.pending.push_back(Pending::Ping);
                    }
                }
            }
        }
    }

    async fn send(&mut self, command: &str) -> Result<(), CloseReason> {
        let text = format!("{command}\n\n");
        match tokio::time::timeout(
            self.s.common.idle_timeout,
            self.stream.write_all(text.as_bytes()),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::IoError),
            Err(_) => Err(CloseReason::IdleTimeout),
        }
    }

    /// ESL has no replay: after a connect, ask each queue with calls in
    /// flight for its members, to let go of the calls that ended meanwhile.
    async fn ask_members(&mut self) -> Result<(), CloseReason> {
        for queue in self.tr.queues_in_flight() {
            // A name the command line cannot carry is not asked about.
            if queue.chars().any(char::is_whitespace) {
                continue;
            }
            self.send(&format!("api callcenter_config queue list members {queue}"))
                .await?;
            let checked = self.tr.members_in_flight(&queue);
            self.pending.push_back(Pending::Members { queue, checked });
        }
        Ok(())
    }

    /// Translate every complete message, deliver the events as one batch
    /// (awaited), then save the translator's state.
    async fn drain(&mut self) -> Result<(), CloseReason> {
        let mut batch: Vec<Event> = Vec::new();
        let mut notice = false;
        let ctx: &Context = self.ctx;
        let platform = &ctx.platform;
        while let Some(item) = self.decoder.next_item() {
            let f = match item {
                Item::Skipped { reason, detail, .. } => {
                    platform.messages.inc();
                    platform.skipped(frame_skip(reason));
                    tracing::debug!(source = self.s.common.name.as_str(), reason = %reason, detail, "ESL bytes skipped");
                    continue;
                }
                Item::Frame(f) => f,
            };
            if let Some(body) = event_headers(&f) {
                platform.messages.inc();
                self.events += 1;
                let headers = match body {
                    Ok(h) => h,
                    Err(e) => {
                        platform.skipped(Skip::Malformed);
                        tracing::debug!(source = self.s.common.name.as_str(), error = %e, "ESL event skipped");
                        continue;
                    }
                };
                match self.tr.event(&headers, &self.s.common.translate) {
                    Ok(events) => batch.extend(events),
                    Err(skip) => {
                        platform.skipped(skip.reason);
                        tracing::trace!(
                            source = self.s.common.name.as_str(),
                            reason = skip.reason.as_str(),
                            detail = skip.detail,
                            "ESL event made no event"
                        );
                    }
                }
                continue;
            }
            match f.content_type() {
                Some("api/response") => match self.pending.pop_front() {
                    Some(Pending::Members { queue, checked }) => {
                        // The events before the answer come first.
                        self.deliver(&mut batch).await?;
                        self.reconcile(&queue, &checked, &f.body_text()).await?;
                    }
                    Some(Pending::Ping) | None => {}
                },
                Some("text/disconnect-notice") => {
                    notice = true;
                    break;
                }
                _ => {}
            }
        }
        self.deliver(&mut batch).await?;
        if notice {
            return Err(CloseReason::Peer);
        }
        Ok(())
    }

    async fn deliver(&mut self, batch: &mut Vec<Event>) -> Result<(), CloseReason> {
        if !batch.is_empty() {
            self.deliverer
                .deliver(batch, &self.ctx.cancel)
                .await
                .map_err(|_| CloseReason::Shutdown)?;
            batch.clear();
        }
        let forget = self.tr.take_forget();
        if !forget.is_empty() {
            self.deliverer
                .forget(&forget, &self.ctx.cancel)
                .await
                .map_err(|_| CloseReason::Shutdown)?;
        }
        if self.tr.dirty() && self.store.due_in().is_zero() {
            self.store.save(&self.s.common.name, self.tr).await;
        }
        Ok(())
    }

    async fn reconcile(
        &mut self,
        queue: &str,
        checked: &[String],
        answer: &str,
    ) -> Result<(), CloseReason> {
        let name = self.s.common.name.as_str();
        let Some(listed) = translate::member_list(answer) else {
            tracing::warn!(
                source = name,
                queue,
                answer = printable(answer.lines().next().unwrap_or_default()),
                "cannot list the queue's members (is mod_callcenter loaded?); its calls in flight are kept until they end or call_ttl evicts them"
            );
            return Ok(());
        };
        let r = self.tr.reconcile(checked, &listed);
        let ctx: &Context = self.ctx;
        let platform = &ctx.platform;
        platform.reconciled(Reconciled::Kept, r.kept);
        if !r.dropped.is_empty() {
            self.deliverer
                .forget(&r.dropped, &self.ctx.cancel)
                .await
                .map_err(|_| CloseReason::Shutdown)?;
            platform.reconciled(Reconciled::Dropped, r.dropped.len() as u64);
        }
        tracing::info!(
            source = name,
            queue,
            kept = r.kept,
            dropped = r.dropped.len(),
            "calls in flight reconciled with the queue's member list"
        );
        if self.tr.dirty() && self.store.due_in().is_zero() {
            self.store.save(name, self.tr).await;
        }
        Ok(())
    }
}

/// The translator's state on disk: `<data_dir>/sources/<name>.esl.json`,
/// replaced atomically (see `crate::sources::state`).
struct Store {
    path: Option<PathBuf>,
    errors: RateLimited,
    last_save: Option<Instant>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    version: u32,
    state: Translator,
}

const STORE_VERSION: u32 = 1;

impl Store {
    fn new(data_dir: Option<&std::path::Path>, name: &str) -> Self {
        Store {
            path: data_dir.map(|d| crate::sources::state::path(d, name, "esl")),
            errors: RateLimited::new(FAILURE_LOG_INTERVAL),
            last_save: None,
        }
    }

    /// How long until the next save may be written (zero: now).
    fn due_in(&self) -> Duration {
        self.last_save.map_or(Duration::ZERO, |t| {
            SAVE_INTERVAL.saturating_sub(t.elapsed())
        })
    }

    async fn load(&self, name: &str) -> Translator {
        let Some(path) = &self.path else {
            return Translator::new();
        };
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(path)).await
        };
        let read = read.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match read {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(s) if s.version == STORE_VERSION => {
                    let tr = s.state.restored();
                    tracing::info!(
                        source = name,
                        path = %path.display(),
                        in_flight = tr.in_flight(),
                        "restored the calls in flight of the last run"
                    );
                    tr
                }
                Ok(s) => {
                    tracing::warn!(source = name, path = %path.display(), version = s.version, "unknown state version; starting without calls in flight");
                    Translator::new()
                }
                Err(e) => {
                    tracing::warn!(source = name, path = %path.display(), error = %e, "unreadable state; starting without calls in flight");
                    Translator::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Translator::new(),
            Err(e) => {
                tracing::warn!(source = name, path = %path.display(), error = %e, "cannot read the state; starting without calls in flight");
                Translator::new()
            }
        }
    }

    /// Write the state; a failure is logged and retried at the next batch.
    async fn save(&mut self, name: &str, tr: &mut Translator) {
        self.last_save = Some(Instant::now());
        let Some(path) = self.path.clone() else {
            tr.saved();
            return;
        };
        let stored = Stored {
            version: STORE_VERSION,
            state: tr.clone(),
        };
        let bytes = match serde_json::to_vec(&stored) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(source = name, error = %e, "cannot encode the state");
                return;
            }
        };
        let written =
            tokio::task::spawn_blocking(move || crate::sources::state::write(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => tr.saved(),
            Ok(Err(e)) => {
                if let Some(suppressed) = self.errors.check() {
                    tracing::warn!(source = name, error = %e, suppressed, "cannot write the state (retried after the next batch)");
                }
            }
            Err(e) => tracing::warn!(source = name, error = %e, "the state writer failed"),
        }
    }
}
