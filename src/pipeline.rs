//! The pipeline task: the single owner of the rules engine, the metrics
//! store and the journal. Connections send it decoded frames and get verdicts
//! back once the frame is journaled; `/metrics` asks it for a snapshot
//! through the same queue, so a scrape taken after an acknowledgement always
//! includes the acknowledged events.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use compact_str::CompactString;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::clock::wall_now;
use crate::durability::{Ack, Journal, JournalFailed, Record};
use crate::event::{Event, Id, Millis, Reason};
use crate::ingest::{decode, frame};
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
        /// The frame as received: what the journal keeps.
        text: Utf8Bytes,
        events: Vec<(u32, Event)>,
        /// Reasons of the frame's elements that failed decoding, to be counted.
        decode_rejects: Vec<Reason>,
        reply: oneshot::Sender<Result<Verdicts, JournalFailed>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
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

/// The receiving end of a [`PipelineHandle`], until [`spawn`] runs it.
pub struct Inbox(mpsc::Receiver<Command>);

/// A handle and its inbox: handles can be given out (to the HTTP server,
/// say) before the state is recovered and the pipeline spawned.
pub fn channel() -> (PipelineHandle, Inbox) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (PipelineHandle { tx }, Inbox(rx))
}

impl PipelineHandle {
    /// Apply a decoded frame; the verdicts come back once the frame is in
    /// the journal (when durability is on), never before.
    pub async fn apply(
        &self,
        text: Utf8Bytes,
        events: Vec<(u32, Event)>,
        decode_rejects: Vec<Reason>,
    ) -> Result<Verdicts, ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                text,
                events,
                decode_rejects,
                reply,
            })
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

    pub async fn snapshot(&self) -> Result<Snapshot, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot { reply })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Start the pipeline on a (recovered) state. It runs until every
/// [`PipelineHandle`] is dropped, after applying everything already queued,
/// and then closes the journal with a last snapshot.
pub fn spawn(
    engine: Engine,
    store: Store,
    journal: Option<(Journal, Duration)>,
    inbox: Inbox,
) -> JoinHandle<()> {
    let (journal, snapshot_every) = match journal {
        Some((j, every)) => (Some(j), Some(every)),
        None => (None, None),
    };
    let p = Pipeline {
        engine,
        store,
        journal,
        acks: Vec::new(),
        capacity_log: RateLimited::new(Duration::from_secs(10)),
    };
    tokio::spawn(run(p, inbox.0, snapshot_every))
}

/// Commands applied in one go before the journal is committed: frames that
/// arrive together share one write (and, with `fsync = "batch"`, one fsync).
const BURST: usize = 256;

async fn run(mut p: Pipeline, mut rx: mpsc::Receiver<Command>, snapshot_every: Option<Duration>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Without a journal there is nothing to snapshot: a timer that never fires.
    let every = snapshot_every.unwrap_or(Duration::from_secs(100 * 365 * 86_400));
    let mut snapshots = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                p.handle(cmd);
                for _ in 1..BURST {
                    match rx.try_recv() {
                        Ok(cmd) => p.handle(cmd),
                        Err(_) => break,
                    }
                }
                p.commit();
            }
            _ = tick.tick() => p.tick(),
            _ = snapshots.tick() => p.snapshot(),
        }
    }
    p.commit();
    if let Some(journal) = p.journal.take() {
        journal.close(&p.engine, &p.store).await;
    }
    tracing::debug!("pipeline drained and stopped");
}

/// The state and its journal, owned by the pipeline task alone.
struct Pipeline {
    engine: Engine,
    store: Store,
    journal: Option<Journal>,
    /// Acknowledgements waiting for the next journal commit.
    acks: Vec<Ack>,
    /// A full engine rejects every new call: say so at most every 10 s.
    capacity_log: RateLimited,
}

impl Pipeline {
    /// Every input is journaled before it touches the state, with the wall
    /// time it is applied at, so a replay calls the engine identically.
    fn record(&mut self, rec: Record<'_>) {
        if let Some(j) = &mut self.journal {
            j.append(&rec);
        }
    }

    fn handle(&mut self, cmd: Command) {
        let now = wall_now();
        match cmd {
            Command::Apply {
                text,
                events,
                decode_rejects,
                reply,
            } => {
                self.record(Record::Frame {
                    now,
                    text: text.as_str(),
                });
                let v = apply(
                    &mut self.engine,
                    &mut self.store,
                    events,
                    &decode_rejects,
                    now,
                );
                self.warn_capacity(&v);
                if self.journal.is_some() {
                    self.acks.push(Box::new(move |journaled| {
                        // The sender may have gone (connection dropped): nothing to do.
                        let _ = reply.send(journaled.map(|()| v));
                    }));
                } else {
                    let _ = reply.send(Ok(v));
                }
            }
            Command::Snapshot { reply } => {
                self.record(Record::Live { now });
                let _ = reply.send(snapshot(&mut self.engine, &mut self.store, now));
            }
            Command::Alerts { reply } => {
                self.record(Record::Alerts { now });
                let _ = reply.send(alerts(&mut self.engine, &mut self.store, now));
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

    fn tick(&mut self) {
        // In event mode a tick changes nothing: no need to journal it.
        if self.engine.settings().clock == ClockMode::Wall {
            let now = wall_now();
            self.record(Record::Tick { now });
            self.engine.tick(now, &mut self.store);
        }
    }

    fn commit(&mut self) {
        if let Some(j) = &mut self.journal {
            j.commit(std::mem::take(&mut self.acks));
        }
    }

    fn snapshot(&mut self) {
        if let Some(j) = &mut self.journal {
            j.snapshot(&self.engine, &self.store);
        }
    }
}

/// Apply one journal record during recovery, exactly as [`Pipeline`] did
/// when it wrote it.
pub fn replay(engine: &mut Engine, store: &mut Store, rec: Record<'_>) {
    match rec {
        Record::Frame { now, text } => {
            let (events, rejected) = frame::split(decode::decode_frame(text));
            let reasons: Vec<Reason> = rejected.iter().map(|r| r.reason).collect();
            apply(engine, store, events, &reasons, now);
        }
        // A scrape or an alert check reads; what it did besides was a tick.
        Record::Tick { now } | Record::Live { now } | Record::Alerts { now } => {
            engine.tick(now, store)
        }
    }
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
    for (index, ev) in events {
        match engine.apply(&ev, now, store) {
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
                    event_id: ev.event_id,
                    reason: r.reason,
                    detail,
                });
            }
        }
    }
    v
}

fn alerts(engine: &mut Engine, store: &mut Store, now: Millis) -> Vec<Alert> {
    // Only because the check is journaled (Record::Alerts) and replayed as a
    // tick: once it is not, drop this tick, and the check reads the state of
    // the last tick or event.
    engine.tick(now, store);
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

pub(crate) fn snapshot(engine: &mut Engine, store: &mut Store, now: Millis) -> Snapshot {
    // As in `alerts`: the scrape is journaled (Record::Live) and replayed as
    // a tick, so it ticks; drop both together, and a scrape reads the state
    // of the last tick (every 250 ms) or event, changing nothing.
    engine.tick(now, store);
    let live = engine.live();
    let state = EngineState {
        clock: engine.clock(),
        calls_in_flight: engine.calls_in_flight() as u64,
        dedup_ids: engine.dedup_ids() as u64,
    };
    store.snapshot(live, state)
}
