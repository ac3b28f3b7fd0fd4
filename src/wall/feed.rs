//! The one producer behind every stream: once a second, while anyone
//! listens, one pipeline read (a snapshot, never journaled) turned into
//! [`Figures`] and published on a watch channel; each subscriber picks its
//! queues from the latest figures, so a hundred wall screens cost the
//! pipeline what one does, and a slow one only ever misses figures (a
//! watch holds one value: nothing queues up). Each published value
//! serialises a selection's document once, for every stream showing that
//! selection ([`Published::message`]). `/api/v1/queues` reads through the
//! same place ([`Source::read`]): one pipeline read in flight for the wall.
//!
//! The producer holds its pipeline handle only through a `Weak`: it ends
//! when the HTTP router is dropped, so it never keeps the pipeline alive
//! past shutdown; and it ends as soon as the daemon starts shutting down,
//! which ends every stream, so open wall screens do not hold up the HTTP
//! server's graceful stop (they reconnect to the next daemon by themselves).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{watch, OnceCell};

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

/// Documents of more queues than this are built and serialised on the
/// blocking pool (a queue's document is some 7 KB, mostly its chart).
pub const INLINE_QUEUES: usize = 4;

/// A selection of queues as a stream asked for it (`None`: every queue).
pub type Selection = Option<Vec<String>>;

/// One published update: the figures, and each selection's message built
/// from them by the first stream that needed it. The cache lives and dies
/// with the update, so a new update starts with none; it holds at most one
/// entry per open stream.
pub struct Published {
    pub at: Instant,
    pub figures: Arc<Figures>,
    messages: Mutex<HashMap<Selection, Arc<OnceCell<Arc<str>>>>>,
}

impl Published {
    pub fn new(at: Instant, figures: Arc<Figures>) -> Self {
        Published {
            at,
            figures,
            messages: Mutex::new(HashMap::new()),
        }
    }

    /// The document for `picked` as one line of JSON, built once for all
    /// the streams with that selection (those asking while it is built
    /// wait for it).
    pub async fn message(&self, picked: &Selection) -> Arc<str> {
        let cell = {
            let mut cache = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(cache.entry(picked.clone()).or_default())
        };
        let figures = Arc::clone(&self.figures);
        let picked = picked.clone();
        cell.get_or_init(|| async move {
            let large = picked.as_ref().map_or(figures.queues.len(), Vec::len) > INLINE_QUEUES;
            let render = move || -> Arc<str> {
                serde_json::to_string(&figures.document(picked.as_deref()))
                    .map_or_else(|_| Arc::from("{}"), Arc::from)
            };
            if large {
                tokio::task::spawn_blocking(render)
                    .await
                    .unwrap_or_else(|_| Arc::from("{}"))
            } else {
                render()
            }
        })
        .await
        .clone()
    }
}

type Latest = Option<Arc<Published>>;

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
            .filter(|p| p.at.elapsed() <= max_age)
            .map(|p| Arc::clone(&p.figures))
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
            .is_some_and(|p| p.at.elapsed() < PERIOD * 2);
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
        let Some((at, figures)) = src.read().await else {
            break;
        };
        drop(src);
        tx.send_replace(Some(Arc::new(Published::new(at, figures))));
    }
    // Dropping `tx` ends every stream.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Bounds, BucketConfig, EngineState, Store};
    use crate::rules::{Limits, Observer, SeriesInfo, Settings};

    fn figures(queues: usize) -> Arc<Figures> {
        let mut store = Store::new(
            Bounds::new(&Settings::default(), &BucketConfig::default()),
            300_000,
        );
        for id in 0..queues {
            store.new_series(
                id as u32,
                &SeriesInfo {
                    queue: format!("q{id}").into(),
                    site: None,
                    limits: Limits::default(),
                },
            );
        }
        let snap = store.snapshot(
            vec![],
            EngineState {
                clock: 1_795_424_500_000,
                ..EngineState::default()
            },
        );
        Arc::new(Figures::of(&snap, &WallSettings::default(), 0))
    }

    /// Streams with the same selection share one serialised message; each
    /// selection's is the document's JSON exactly, small or large (built on
    /// the blocking pool).
    #[tokio::test]
    async fn a_selection_is_serialised_once_per_update() {
        for queues in [2, INLINE_QUEUES + 3] {
            let f = figures(queues);
            let published = Published::new(Instant::now(), Arc::clone(&f));
            let all = published.message(&None).await;
            assert!(Arc::ptr_eq(&all, &published.message(&None).await));
            assert_eq!(&*all, serde_json::to_string(&f.document(None)).unwrap());
            let one: Selection = Some(vec!["q1".into()]);
            let picked = published.message(&one).await;
            assert!(!Arc::ptr_eq(&all, &picked));
            assert_eq!(
                &*picked,
                serde_json::to_string(&f.document(one.as_deref())).unwrap()
            );
            // Concurrent askers get the one message.
            let (a, b) = tokio::join!(published.message(&one), published.message(&one));
            assert!(Arc::ptr_eq(&a, &picked) && Arc::ptr_eq(&b, &picked));
            // The next update starts with no messages of its own.
            let next = Published::new(Instant::now(), f);
            assert!(!Arc::ptr_eq(&all, &next.message(&None).await));
        }
    }
}
