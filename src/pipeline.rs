//! The pipeline task: the single owner of the rules engine and the metrics
//! store. Connections send it decoded frames and get verdicts back; `/metrics`
//! asks it for a snapshot through the same queue, so a scrape taken after an
//! acknowledgement always includes the acknowledged events.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::{Event, Id, Millis, Reason};
use crate::metrics::{EngineState, Snapshot, Store};
use crate::rules::{AlertKind, Engine, Verdict};
use compact_str::CompactString;

/// How often wall-clock timers (missed callbacks, eviction) are checked.
const TICK: Duration = Duration::from_millis(250);
/// Frames queued before senders wait (backpressure through the socket).
const QUEUE: usize = 1024;

/// One event that was not applied, as the acknowledgement reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub index: u32,
    pub event_id: Option<Id>,
    pub reason: Reason,
    pub detail: String,
}

/// The engine's answer for one frame's decoded events.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub accepted: u32,
    pub duplicates: u32,
    pub rejected: Vec<Rejection>,
}

enum Command {
    Apply {
        events: Vec<(u32, Event)>,
        /// Reasons of the frame's elements that failed decoding, to be counted.
        decode_rejects: Vec<Reason>,
        reply: oneshot::Sender<Verdicts>,
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

#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Command>,
}

impl PipelineHandle {
    pub async fn apply(
        &self,
        events: Vec<(u32, Event)>,
        decode_rejects: Vec<Reason>,
    ) -> Result<Verdicts, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                events,
                decode_rejects,
                reply,
            })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
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

/// Start the pipeline. It runs until every [`PipelineHandle`] is dropped,
/// after applying everything already queued.
pub fn spawn(engine: Engine, store: Store) -> (PipelineHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(engine, store, rx));
    (PipelineHandle { tx }, task)
}

async fn run(mut engine: Engine, mut store: Store, mut rx: mpsc::Receiver<Command>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Apply { events, decode_rejects, reply }) => {
                    let verdicts = apply(&mut engine, &mut store, events, &decode_rejects);
                    // The sender may have gone (connection dropped): nothing to do.
                    let _ = reply.send(verdicts);
                }
                Some(Command::Snapshot { reply }) => {
                    let _ = reply.send(snapshot(&mut engine, &mut store));
                }
                Some(Command::Alerts { reply }) => {
                    let _ = reply.send(alerts(&mut engine, &mut store));
                }
                None => break,
            },
            _ = tick.tick() => engine.tick(wall_now(), &mut store),
        }
    }
    tracing::debug!("pipeline drained and stopped");
}

fn apply(
    engine: &mut Engine,
    store: &mut Store,
    events: Vec<(u32, Event)>,
    decode_rejects: &[Reason],
) -> Verdicts {
    for r in decode_rejects {
        store.rejected(*r);
    }
    let now = wall_now();
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

fn alerts(engine: &mut Engine, store: &mut Store) -> Vec<Alert> {
    let conditions = engine.alerts(wall_now(), store);
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

fn snapshot(engine: &mut Engine, store: &mut Store) -> Snapshot {
    let live = engine.live(wall_now(), store);
    let state = EngineState {
        clock: engine.clock(),
        calls_in_flight: engine.calls_in_flight() as u64,
        dedup_ids: engine.dedup_ids() as u64,
    };
    store.snapshot(live, state)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
