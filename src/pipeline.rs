//! The pipeline task: the single owner of the rules engine, the metrics
//! store and the journal. Connections send it decoded frames and get verdicts
//! back once the frame is journaled; `/metrics` asks it for a snapshot
//! through the same queue, so a scrape taken after an acknowledgement always
//! includes the acknowledged events.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use compact_str::CompactString;

use crate::clock::wall_now;
use crate::durability::{
    events as journal_events, journal, writer as journal_writer, Journal, JournalFailed, Record,
};
use crate::event::{Event, Id, Millis, Reason};
use crate::fault;
use crate::health::Health;
use crate::logging::RateLimited;
use crate::metrics::{EngineState, Snapshot, Store};
use crate::rules::{AlertKind, ClockMode, Engine, Verdict};
use crate::verdict::{Rejection, Verdicts};

/// How often wall-clock timers (missed callbacks, eviction) are checked.
const TICK: Duration = Duration::from_millis(250);
/// Frames queued before senders wait (backpressure through the socket).
const QUEUE: usize = 1024;

enum Command {
    Apply {
        /// The events and rejects in the journal's binary form, encoded by
        /// the sender (so on its thread, not the pipeline's).
        record: Bytes,
        events: Vec<(u32, Event)>,
        /// Reasons of the frame's elements that failed decoding, to be counted.
        decode_rejects: Vec<Reason>,
        reply: oneshot::Sender<Result<Verdicts, JournalFailed>>,
    },
    /// Drop calls without an outcome (a platform source's reconciliation).
    Forget {
        /// The call ids, one per line: what the journal keeps.
        calls: String,
        reply: oneshot::Sender<Result<u64, JournalFailed>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
        /// With the wall's windows (`/metrics` has no use for them, and a
        /// snapshot holding them pins a copy of each window changed
        /// meanwhile).
        windows: bool,
    },
    Alerts {
        reply: oneshot::Sender<Vec<Alert>>,
    },
}

/// One call or promise past its limit, with names resolved for Alertmanager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub queue: CompactString,
    pub site: Option<CompactString>,
    pub agent: Option<CompactString>,
    /// The call id (ringing, hold) or promise id (callback).
    pub subject: Id,
    pub since: Millis,
    pub elapsed: Millis,
}

/// The pipeline has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the pipeline has stopped")]
pub struct Stopped;

/// Why a frame was not applied and acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error(transparent)]
    Journal(#[from] JournalFailed),
}

#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Command>,
}

/// The receiving end of a [`PipelineHandle`], until [`task`] runs it.
pub struct Inbox(mpsc::Receiver<Command>);

/// A handle and its inbox: handles can be given out (to the HTTP server,
/// say) before the state is recovered and the pipeline spawned.
pub fn channel() -> (PipelineHandle, Inbox) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (PipelineHandle { tx }, Inbox(rx))
}

/// The verdicts of a frame handed to the pipeline, once it is journaled
/// and applied: a future, so a connection can keep reading and submitting
/// while earlier frames wait for the journal.
pub struct Reply(oneshot::Receiver<Result<Verdicts, JournalFailed>>);

impl Future for Reply {
    type Output = Result<Verdicts, ApplyError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApplyError::Journal(e)),
            Err(_) => Err(ApplyError::Stopped(Stopped)),
        })
    }
}

impl PipelineHandle {
    /// Apply a decoded frame; the verdicts come back once the frame is in
    /// the journal (when durability is on), never before.
    pub async fn apply(
        &self,
        events: Vec<(u32, Event)>,
        decode_rejects: Vec<Reason>,
    ) -> Result<Verdicts, ApplyError> {
        self.submit(events, decode_rejects).await?.await
    }

    /// Queue a decoded frame (waiting while the queue is full: that is the
    /// backpressure) and return the future of its verdicts. Frames queued
    /// by one caller are journaled and applied in the order they were
    /// queued, so their replies come in that order too.
    pub async fn submit(
        &self,
        events: Vec<(u32, Event)>,
        decode_rejects: Vec<Reason>,
    ) -> Result<Reply, Stopped> {
        // Encoded here, on the sender's task, whether or not durability is
        // on (a few percent of a frame's cost): the pipeline's one thread
        // only hands the buffer on.
        let record = journal_record(&events, &decode_rejects);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                record,
                events,
                decode_rejects,
                reply,
            })
            .await
            .map_err(|_| Stopped)?;
        Ok(Reply(rx))
    }

    /// Forget calls a platform no longer reports, without an outcome
    /// (counted as evicted); journaled before it is applied. Returns how
    /// many were in flight.
    pub async fn forget(&self, calls: Vec<Id>) -> Result<u64, ApplyError> {
        let mut text = String::new();
        for c in &calls {
            // Ids never hold a newline (the decoder takes them from JSON
            // strings, and sources build them): one per line is unambiguous.
            if !c.contains('\n') {
                text.push_str(c);
                text.push('\n');
            }
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Forget { calls: text, reply })
            .await
            .map_err(|_| Stopped)?;
        Ok(rx.await.map_err(|_| Stopped)??)
    }

    /// The calls and promises past a limit right now.
    pub async fn alerts(&self) -> Result<Vec<Alert>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Alerts { reply })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Everything, the wall's windows included (the wall's read).
    pub async fn snapshot(&self) -> Result<Snapshot, Stopped> {
        self.read(true).await
    }

    /// Everything but the wall's windows (a scrape of `/metrics`).
    pub async fn snapshot_without_windows(&self) -> Result<Snapshot, Stopped> {
        self.read(false).await
    }

    async fn read(&self, windows: bool) -> Result<Snapshot, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot { reply, windows })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// The pipeline on a (recovered) state, as a future for the daemon to spawn
/// and supervise. It runs until every
/// [`PipelineHandle`] is dropped (after applying everything already queued)
/// or until `force` (the drain deadline passed: what is still queued is
/// refused), and then closes the journal with a last snapshot.
pub fn task(
    engine: Engine,
    store: Store,
    journal: Option<(Journal, Duration)>,
    inbox: Inbox,
    health: Arc<Health>,
    force: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let (journal, snapshot_every) = match journal {
        Some((j, every)) => (Some(j), Some(every)),
        None => (None, None),
    };
    let p = Pipeline {
        engine,
        store,
        journal,
        health,
        capacity_log: RateLimited::new(Duration::from_secs(10)),
    };
    run(p, inbox.0, snapshot_every, force)
}

/// Commands taken in one go: frames that arrive together share one journal
/// write (and, with `fsync = "batch"`, one fsync).
const BURST: usize = 256;

/// One input of a burst: a command, or the wall-clock timer.
enum Input {
    Command(Command),
    Tick,
}

/// Bursts whose journal write may be in flight at once. While the writer
/// thread writes one, the pipeline applies the one before it and gathers
/// the next, so the hand-over to the writer does not idle the pipeline.
const IN_FLIGHT: usize = 2;

async fn run(
    mut p: Pipeline,
    mut rx: mpsc::Receiver<Command>,
    snapshot_every: Option<Duration>,
    force: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Without a journal there is nothing to snapshot: a timer that never fires.
    let every = snapshot_every.unwrap_or(Duration::from_secs(100 * 365 * 86_400));
    let mut snapshots = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Written (or being written) but not yet applied, in journal order.
    let mut in_flight: VecDeque<Submitted> = VecDeque::with_capacity(IN_FLIGHT);
    // A snapshot waits until everything written is applied.
    let mut snapshot_due = false;
    loop {
        if snapshot_due && in_flight.is_empty() {
            p.snapshot().await;
            snapshot_due = false;
        }
        let taking = in_flight.len() < IN_FLIGHT && !snapshot_due;
        // Grown as inputs come: most bursts are a few frames, and a loop
        // that only settles a write takes none.
        let mut burst = Vec::new();
        tokio::select! {
            // Timers before the queue: under a constant stream of frames the
            // queue is always ready, and must not starve the tick or the
            // snapshot (which bounds the journal).
            biased;
            _ = force.cancelled() => {
                tracing::warn!("drain deadline: the pipeline stops; frames still queued are refused");
                break;
            }
            written = written(in_flight.front_mut()), if !in_flight.is_empty() => {
                if let Some(done) = in_flight.pop_front() {
                    p.settle(done.burst, done.now, written);
                }
                continue;
            }
            _ = snapshots.tick() => {
                snapshot_due = true;
                continue;
            }
            _ = tick.tick(), if taking => burst.push(Input::Tick),
            cmd = rx.recv(), if taking => {
                let Some(cmd) = cmd else { break };
                burst.push(Input::Command(cmd));
            }
        }
        // What else is queued shares the burst (and its write and fsync).
        while burst.len() < BURST {
            match rx.try_recv() {
                Ok(cmd) => burst.push(Input::Command(cmd)),
                Err(_) => break,
            }
        }
        in_flight.push_back(p.submit(burst).await);
    }
    // What was written is applied, so memory and journal agree at the final
    // snapshot; whatever is still queued (a forced stop) is dropped now:
    // its senders see the pipeline stopped at once.
    while let Some(mut done) = in_flight.pop_front() {
        let result = written(Some(&mut done)).await;
        p.settle(done.burst, done.now, result);
    }
    rx.close();
    while rx.try_recv().is_ok() {}
    if let Some(journal) = p.journal.take() {
        journal.close(&p.engine, &p.store).await;
    }
    tracing::debug!("pipeline drained and stopped");
}

/// A burst handed to the journal, with what the journal answered (or will).
struct Submitted {
    burst: Vec<Input>,
    now: Millis,
    written: Written,
}

enum Written {
    /// Nothing to write (reads only, no journal), or refused at once.
    Ready(Result<(), JournalFailed>),
    Waiting(journal_writer::Pending),
}

/// The journal's answer for `s` (the first in flight).
async fn written(s: Option<&mut Submitted>) -> Result<(), JournalFailed> {
    match s {
        None => Err(JournalFailed),
        Some(s) => match &mut s.written {
            Written::Ready(r) => *r,
            Written::Waiting(pending) => pending.answer().await,
        },
    }
}

/// The state and its journal, owned by the pipeline task alone.
struct Pipeline {
    engine: Engine,
    store: Store,
    journal: Option<Journal>,
    health: Arc<Health>,
    /// A full engine rejects every new call: say so at most every 10 s.
    capacity_log: RateLimited,
}

impl Pipeline {
    /// Journal a burst (see [`Pipeline::settle`] for the rest): every input
    /// that changes the state is encoded, with the wall time it will be
    /// applied at (so a replay calls the engine identically), and handed to
    /// the journal's writer thread.
    async fn submit(&mut self, burst: Vec<Input>) -> Submitted {
        let now = wall_now();
        let written = match &self.journal {
            // After a fatal failure the state stays what was acknowledged.
            _ if self.health.is_failed() => Written::Ready(Err(JournalFailed)),
            None => Written::Ready(Ok(())),
            Some(journal) => {
                let mut batch = journal::Batch::default();
                for input in burst.iter() {
                    self.journal_into(input, now, &mut batch);
                }
                if batch.is_empty() {
                    Written::Ready(Ok(()))
                } else {
                    match journal.submit(batch).await {
                        Ok(pending) => Written::Waiting(pending),
                        Err(e) => Written::Ready(Err(e)),
                    }
                }
            }
        };
        Submitted {
            burst,
            now,
            written,
        }
    }

    /// Apply a burst once the journal has it. If the write failed, nothing
    /// of the burst is applied (frames are refused, reads still answered),
    /// so what `/metrics` shows is always what a restart would rebuild.
    fn settle(&mut self, burst: Vec<Input>, now: Millis, written: Result<(), JournalFailed>) {
        for input in burst {
            match written {
                Ok(()) => self.apply(input, now),
                Err(e) => {
                    if let Some(read) = refuse(input, e) {
                        self.apply(read, now);
                    }
                }
            }
        }
    }

    /// Add an input's journal record to `batch`, if it changes the state.
    fn journal_into(&self, input: &Input, now: Millis, batch: &mut journal::Batch) {
        match input {
            // The sender's buffer goes to the writer: no copy.
            Input::Command(Command::Apply { record, .. }) => batch.events(now, record.clone()),
            Input::Command(Command::Forget { calls, .. }) => batch.record(&Record::Forget {
                now,
                calls: calls.as_str(),
            }),
            // Reads change nothing: never journaled.
            Input::Command(Command::Snapshot { .. } | Command::Alerts { .. }) => {}
            // In event mode a tick changes nothing: no need to journal it,
            // except as a probe while journal writes fail, so that /readyz
            // turns ready again once the disk has room without waiting for
            // a frame (a no-op at replay).
            Input::Tick => {
                if self.engine.settings().clock == ClockMode::Wall
                    || !self.health.journal_writable()
                {
                    batch.record(&Record::Tick { now });
                }
            }
        }
    }

    fn apply(&mut self, input: Input, now: Millis) {
        match input {
            Input::Command(Command::Apply {
                events,
                decode_rejects,
                reply,
                ..
            }) => {
                if fault::hit(fault::Point::PipelinePanic) {
                    panic!("fault injection: pipeline_panic");
                }
                let v = apply(
                    &mut self.engine,
                    &mut self.store,
                    events,
                    &decode_rejects,
                    now,
                );
                self.warn_capacity(&v);
                // The sender may have gone (connection dropped): nothing to do.
                let _ = reply.send(Ok(v));
            }
            Input::Command(Command::Forget { calls, reply }) => {
                let _ = reply.send(Ok(forget(&mut self.engine, &mut self.store, &calls)));
            }
            Input::Command(Command::Snapshot { reply, windows }) => {
                let s = if windows {
                    snapshot(&self.engine, &mut self.store)
                } else {
                    // No window shared, so none is copied at its next measure.
                    snapshot_without_windows(&self.engine, &mut self.store)
                };
                let _ = reply.send(s);
            }
            Input::Command(Command::Alerts { reply }) => {
                let _ = reply.send(alerts(&self.engine));
            }
            Input::Tick => {
                if self.engine.settings().clock == ClockMode::Wall {
                    self.engine.tick(now, &mut self.store);
                }
            }
        }
    }

    /// A `capacity` rejection means a configured cap (`rules.max_calls`,
    /// `rules.max_promises`) is reached: operators must hear of it, but
    /// a log line per event would flood the log exactly when it is full.
    fn warn_capacity(&mut self, v: &Verdicts) {
        let Some(example) = v.rejected.iter().find(|r| r.reason == Reason::Capacity) else {
            return;
        };
        if let Some(suppressed) = self.capacity_log.check() {
            tracing::warn!(
                suppressed,
                calls_in_flight = self.engine.calls_in_flight(),
                promises_pending = self.engine.promises_pending(),
                example = example.detail.as_str(),
                "capacity reached: events rejected with reason capacity (rules.max_calls / rules.max_promises)"
            );
        }
    }

    async fn snapshot(&mut self) {
        if self.health.is_failed() {
            return;
        }
        if let Some(j) = &mut self.journal {
            j.snapshot(&self.engine, &self.store).await;
        }
    }
}

/// A frame's journal record.
fn journal_record(events: &[(u32, Event)], rejects: &[Reason]) -> Bytes {
    // About what an event of a full call's life takes, so this seldom grows.
    let mut out = Vec::with_capacity(8 + 48 * events.len() + rejects.len());
    journal_events::encode(events, rejects, &mut out);
    Bytes::from(out)
}

/// A frame whose journal write failed is refused (the connection closes
/// with 1011 and the sender resends); a tick is dropped (the next one
/// catches up). Returns the input if it is a read, which needs no journal.
fn refuse(input: Input, e: JournalFailed) -> Option<Input> {
    match input {
        Input::Command(Command::Apply { reply, .. }) => {
            let _ = reply.send(Err(e));
            None
        }
        Input::Command(Command::Forget { reply, .. }) => {
            let _ = reply.send(Err(e));
            None
        }
        Input::Tick => None,
        read => Some(read),
    }
}

/// A frame decoded for replay: its events (with their index in the frame)
/// and the reasons of the elements that failed decoding.
pub type Decoded = (Vec<(u32, Event)>, Vec<Reason>);

/// A journal record made ready to apply: a frame decoded, the rest as it
/// was. Recovery prepares records on one thread while it applies the ones
/// before on another.
pub enum Prepared {
    Frame {
        now: Millis,
        decoded: Decoded,
    },
    Tick {
        now: Millis,
    },
    Forget {
        calls: String,
    },
    /// A frame record whose events cannot be decoded: it is cut off, as a
    /// record that fails its checksum is.
    Undecodable,
}

/// Prepare one journal record for [`replay_prepared`]. `decode` is the
/// ingest decoder, for frame texts written by earlier versions (passed in:
/// the pipeline does not depend on ingest, ingest depends on the pipeline).
pub fn prepare(rec: Record<'_>, decode: impl Fn(&str) -> Decoded) -> Prepared {
    match rec {
        Record::Packed { now, body } => binary(now, journal_events::decode(body)),
        Record::Events { now, body } => binary(now, journal_events::decode_plain(body)),
        Record::Frame { now, text } => Prepared::Frame {
            now,
            decoded: decode(text),
        },
        // Journals written before reads stopped being journaled hold
        // scrapes and alert checks: what they did besides reading was a tick.
        Record::Tick { now } | Record::Live { now } | Record::Alerts { now } => {
            Prepared::Tick { now }
        }
        Record::Forget { calls, .. } => Prepared::Forget {
            calls: calls.to_string(),
        },
    }
}

/// A binary frame record, decoded or not.
fn binary(now: Millis, decoded: Result<Decoded, journal_events::Undecodable>) -> Prepared {
    match decoded {
        Ok(decoded) => Prepared::Frame { now, decoded },
        Err(_) => Prepared::Undecodable,
    }
}

/// Apply one prepared journal record during recovery, exactly as the
/// pipeline did when it wrote it.
pub fn replay_prepared(
    engine: &mut Engine,
    store: &mut Store,
    p: Prepared,
) -> Result<(), journal_events::Undecodable> {
    match p {
        Prepared::Frame {
            now,
            decoded: (events, reasons),
        } => {
            if fault::hit(fault::Point::ReplayPanic) {
                panic!("fault injection: replay_panic");
            }
            apply(engine, store, events, &reasons, now);
        }
        Prepared::Tick { now } => engine.tick(now, store),
        Prepared::Forget { calls } => {
            forget(engine, store, &calls);
        }
        Prepared::Undecodable => return Err(journal_events::Undecodable),
    }
    Ok(())
}

/// Apply one journal record during recovery: [`prepare`], then
/// [`replay_prepared`], on one thread.
pub fn replay(
    engine: &mut Engine,
    store: &mut Store,
    rec: Record<'_>,
    decode: impl Fn(&str) -> Decoded,
) -> Result<(), journal_events::Undecodable> {
    replay_prepared(engine, store, prepare(rec, decode))
}

/// Drop the calls named one per line; how many were in flight.
fn forget(engine: &mut Engine, store: &mut Store, calls: &str) -> u64 {
    calls.lines().filter(|c| engine.forget(c, store)).count() as u64
}

fn apply(
    engine: &mut Engine,
    store: &mut Store,
    events: Vec<(u32, Event)>,
    decode_rejects: &[Reason],
    now: Millis,
) -> Verdicts {
    for r in decode_rejects {
        store.rejected(*r);
    }
    let mut v = Verdicts::default();
    engine.apply_all(
        &events,
        now,
        store,
        |store, index, ev, verdict| match verdict {
            Verdict::Accepted => {
                store.received(ev.body.kind());
                v.accepted += 1;
            }
            Verdict::Duplicate => {
                store.duplicate();
                v.duplicates += 1;
            }
            Verdict::Rejected(r) => {
                store.rejected(r.reason);
                let kind = ev.body.kind().as_str();
                let detail = match ev.body.subject() {
                    Some((what, id)) => format!("{kind} for {what} {id}: {}", r.why),
                    None => format!("{kind}: {}", r.why),
                };
                tracing::debug!(reason = %r.reason, %detail, "event rejected");
                v.rejected.push(Rejection {
                    index,
                    event_id: ev.event_id.clone(),
                    reason: r.reason,
                    detail,
                });
            }
        },
    );
    v
}

/// What an alert check reads, with names resolved; like a scrape, as of
/// the last event or tick, and not journaled.
fn alerts(engine: &Engine) -> Vec<Alert> {
    let conditions = engine.alerts();
    conditions
        .into_iter()
        .map(|c| {
            let series = engine.series().get(c.series);
            Alert {
                kind: c.kind,
                queue: series.queue.clone(),
                site: series.site.clone(),
                agent: c.agent.map(|a| engine.agent_name(a).into()),
                subject: c.subject,
                since: c.since,
                elapsed: c.elapsed,
            }
        })
        .collect()
}

/// What a scrape reads: the state as of the last event or timer tick
/// (every 250 ms on the wall clock). A read changes nothing, so it is not
/// journaled.
pub fn snapshot(engine: &Engine, store: &mut Store) -> Snapshot {
    store.snapshot(engine.live(), engine_state(engine))
}

/// [`snapshot`] without the wall's windows: what the pipeline does for a
/// scrape of `/metrics`, and so all a scrape pauses ingest for.
pub fn snapshot_without_windows(engine: &Engine, store: &mut Store) -> Snapshot {
    store.snapshot_without_windows(engine.live(), engine_state(engine))
}

/// The engine's figures a snapshot shows beside the store's.
fn engine_state(engine: &Engine) -> EngineState {
    EngineState {
        clock: engine.clock(),
        calls_in_flight: engine.calls_in_flight() as u64,
        dedup_ids: engine.dedup_ids() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Bounds, BucketConfig};
    use crate::rules::Settings;

    /// A reconciliation's forget is replayed as it was applied: the calls
    /// leave, counted as evicted, whatever else the journal holds.
    #[test]
    fn forget_records_replay_as_applied() {
        let s = Settings {
            clock: ClockMode::Event,
            ..Settings::default()
        };
        let mut engine = Engine::new(s.clone());
        let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
        let decode = |text: &str| -> Decoded {
            let events = serde_json::from_str::<Vec<String>>(text)
                .unwrap()
                .into_iter()
                .enumerate()
                .map(|(i, call)| {
                    let ev = Event {
                        ts: 1_000 + i as Millis,
                        event_id: None,
                        site: None,
                        agent: None,
                        body: crate::event::Body::CallOffered {
                            call: call.into(),
                            queue: "q".into(),
                        },
                    };
                    (i as u32, ev)
                })
                .collect();
            (events, Vec::new())
        };
        let frame = Record::Frame {
            now: 5,
            text: r#"["a","b","c"]"#,
        };
        replay(&mut engine, &mut store, frame, decode).unwrap();
        assert_eq!(engine.calls_in_flight(), 3);
        let forget = Record::Forget {
            now: 6,
            calls: "a\nc\nnever\n",
        };
        replay(&mut engine, &mut store, forget, decode).unwrap();
        assert_eq!(engine.calls_in_flight(), 1);
        assert_eq!(engine.live()[0].waiting, 1);
    }
}
