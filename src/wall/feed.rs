//! The one producer behind every stream: once a second, while anyone
//! listens, one pipeline read (a snapshot, never journaled) turned into
//! [`Figures`] and published on a watch channel; each subscriber picks its
//! queues from the latest figures, so a hundred wall screens cost the
//! pipeline what one does, and a slow one only ever misses figures (a
//! watch holds one value: nothing queues up).
//!
//! The producer holds its pipeline handle only through a `Weak`: it ends
//! when the HTTP router is dropped, so it never keeps the pipeline alive
//! past shutdown; and it ends as soon as the daemon starts shutting down,
//! which ends every stream, so open wall screens do not hold up the HTTP
//! server's graceful stop (they reconnect to the next daemon by themselves).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::figures::Figures;
use super::WallSettings;
use crate::health::Health;
use crate::pipeline::PipelineHandle;

/// How often the figures are read and pushed.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Streams open at once; more are answered 503.
pub const MAX_SUBSCRIBERS: usize = 64;

/// What the producer and `/api/v1/queues` read from.
pub struct Source {
    pub pipeline: PipelineHandle,
    pub health: Arc<Health>,
    pub settings: WallSettings,
    /// The wall's one pipeline read in flight, and the last one's result.
    reads: tokio::sync::Mutex<Option<Read>>,
}

struct Read {
    /// When the snapshot was asked for: the figures are no older.
    asked: Instant,
    done: Instant,
    figures: Arc<Figures>,
}

impl Source {
    pub fn new(pipeline: PipelineHandle, health: Arc<Health>, settings: WallSettings) -> Self {
        Source {
            pipeline,
            health,
            settings,
            reads: tokio::sync::Mutex::new(None),
        }
    }

    /// Figures from one pipeline read, with when it was asked for; `None`
    /// when the pipeline has stopped. One read at a time for the whole
    /// wall (the lock is fair: callers wait in turn): a caller that waited
    /// while a read ran takes that read's result instead of queueing a
    /// snapshot of its own, so however many requests arrive together, the
    /// pipeline sees one; a caller that finds no read finished since it
    /// arrived reads afresh, so figures are never older than the request.
    pub async fn read(&self) -> Option<(Instant, Arc<Figures>)> {
        let arrived = Instant::now();
        let mut last = self.reads.lock().await;
        if let Some(r) = last.as_ref().filter(|r| r.done > arrived) {
            return Some((r.asked, Arc::clone(&r.figures)));
        }
        let asked = Instant::now();
        let snapshot = self.pipeline.snapshot().await.ok()?;
        let figures = Arc::new(Figures::of(
            &snapshot,
            &self.settings,
            crate::clock::wall_now(),
        ));
        drop(snapshot);
        *last = Some(Read {
            asked,
            done: Instant::now(),
            figures: Arc::clone(&figures),
        });
        Some((asked, figures))
    }
}

type Latest = Option<(Instant, Arc<Figures>)>;

pub struct Feed {
    latest: watch::Receiver<Latest>,
    subscribers: Arc<AtomicUsize>,
}

/// A stream's place among the subscribers, given back when it ends.
pub struct Subscription {
    pub latest: watch::Receiver<Latest>,
    _slot: Slot,
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Feed {
    /// Start the producer on the current runtime (none outside one: then
    /// every stream is refused).
    pub fn start(source: Weak<Source>) -> Feed {
        let (tx, rx) = watch::channel(None);
        let subscribers = Arc::new(AtomicUsize::new(0));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(produce(source, tx, Arc::clone(&subscribers)));
        }
        Feed {
            latest: rx,
            subscribers,
        }
    }

    /// The producer's latest figures if read at most `max_age` ago (a
    /// stream is open): a request served from them costs no pipeline read.
    pub fn fresh(&self, max_age: Duration) -> Option<Arc<Figures>> {
        self.latest
            .borrow()
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= max_age)
            .map(|(_, f)| Arc::clone(f))
    }

    /// `None` when the producer has ended (shutting down) or
    /// [`MAX_SUBSCRIBERS`] streams are open.
    pub fn subscribe(&self) -> Option<Subscription> {
        if self.latest.has_changed().is_err() {
            return None;
        }
        let n = self.subscribers.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&self.subscribers));
        if n >= MAX_SUBSCRIBERS {
            return None;
        }
        let mut latest = self.latest.clone();
        // Figures read before this stream began and kept while nobody
        // listened are not sent as current: only those of the last period.
        let fresh = latest
            .borrow()
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < PERIOD * 2);
        if fresh {
            latest.mark_changed();
        } else {
            latest.mark_unchanged();
        }
        Some(Subscription {
            latest,
            _slot: slot,
        })
    }
}

async fn produce(source: Weak<Source>, tx: watch::Sender<Latest>, subscribers: Arc<AtomicUsize>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(src) = source.upgrade() else { break };
        if src.health.is_failed() || src.health.reason() == "shutting down" {
            break;
        }
        if subscribers.load(Ordering::Acquire) == 0 {
            continue;
        }
        // Through the wall's one read: a request reading at the same time
        // shares this read (or this tick shares the request's).
        let Some(latest) = src.read().await else {
            break;
        };
        drop(src);
        tx.send_replace(Some(latest));
    }
    // Dropping `tx` ends every stream.
}
