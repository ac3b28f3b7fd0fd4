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

/// What the producer reads from.
pub struct Source {
    pub pipeline: PipelineHandle,
    pub health: Arc<Health>,
    pub settings: WallSettings,
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
        let (pipeline, settings) = (src.pipeline.clone(), src.settings.clone());
        drop(src);
        let Ok(snapshot) = pipeline.snapshot().await else {
            break;
        };
        drop(pipeline);
        let figures = Figures::of(&snapshot, &settings, crate::clock::wall_now());
        tx.send_replace(Some((Instant::now(), Arc::new(figures))));
    }
    // Dropping `tx` ends every stream.
}
