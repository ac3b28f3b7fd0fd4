//! Recording: the call-center figures of every series, fed by the rules
//! engine through [`Observer`], and the consistent [`Snapshot`] that `/metrics`
//! renders. The store has a single owner (the pipeline task), so recording is
//! plain arithmetic on owned memory: no lock, no allocation once a series
//! exists (but right after a snapshot, see below).
//!
//! A snapshot is taken on the pipeline, in its order (so a scrape after an
//! ack includes the acked events), and whatever it costs pauses ingest; so it
//! copies almost nothing. Each series' histograms sit behind an `Arc` that
//! the snapshot shares: the first measure after it copies that one series'
//! buckets (`Arc::make_mut`), later ones write in place. The sliding-window
//! quantiles, which cost an HDR scan per window, are cached per series and
//! recomputed only for a window that recorded something since, or whose
//! slots rolled over (see [`quantile_epoch`]). Formatting happens off the
//! pipeline (`render`).

pub mod histogram;
pub mod openmetrics;
pub mod render;
pub mod windows;

use std::sync::{Arc, Mutex};

use compact_str::CompactString;

use crate::event::{EventKind, Millis, Reason};
use crate::rules::{
    AgentId, AgentMeasure, FoldedLabel, Live, Measure, Observer, Outcome, SeriesId, SeriesInfo,
    Settings,
};
use histogram::{Buckets, HdrWindow, Scratch};
use windows::{Windows, WindowsImage};

/// Bucket boundaries of each histogram family (durations in milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    pub time_to_answer: Vec<i64>,
    pub rings: Vec<i64>,
    pub hold: Vec<i64>,
    pub lateness: Vec<i64>,
}

/// Configured boundaries, in seconds (rings for `rings`), before the rules'
/// own limits are merged in.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketConfig {
    pub time_to_answer: Vec<f64>,
    pub rings: Vec<f64>,
    pub hold: Vec<f64>,
    pub lateness: Vec<f64>,
}

impl Default for BucketConfig {
    fn default() -> Self {
        BucketConfig {
            time_to_answer: vec![90.0, 120.0, 180.0, 300.0, 600.0],
            rings: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0],
            hold: vec![
                5.0, 10.0, 15.0, 17.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 600.0,
            ],
            lateness: vec![
                60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
            ],
        }
    }
}

impl Bounds {
    /// The configured boundaries plus, for every queue's limits (default and
    /// per-queue overrides): each ring boundary up to 10 rings, the ring
    /// limit, `max_rings`, and the hold limit. One set per family, so every
    /// series of a family has the same `le` values and sums across queues.
    pub fn new(settings: &Settings, config: &BucketConfig) -> Self {
        let ms =
            |v: &Vec<f64>| -> Vec<i64> { v.iter().map(|s| (s * 1000.0).round() as i64).collect() };
        let mut b = Bounds {
            time_to_answer: ms(&config.time_to_answer),
            rings: config.rings.iter().map(|r| *r as i64).collect(),
            hold: ms(&config.hold),
            lateness: ms(&config.lateness),
        };
        for limits in std::iter::once(&settings.limits).chain(settings.queue_limits.values()) {
            b.time_to_answer
                .extend((1..=10).map(|n| n * limits.ring_cycle));
            b.time_to_answer.push(limits.answer_limit());
            b.rings.push(i64::from(limits.max_rings));
            b.hold.push(limits.hold_limit);
        }
        for v in [
            &mut b.time_to_answer,
            &mut b.rings,
            &mut b.hold,
            &mut b.lateness,
        ] {
            v.sort_unstable();
            v.dedup();
        }
        b
    }
}

/// Counters of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub offered: u64,
    pub answered: u64,
    pub answered_late: u64,
    pub abandoned_short: u64,
    pub abandoned_long: u64,
    pub holds: u64,
    pub hold_exceeded: u64,
    pub promised: u64,
    /// Indexed like [`Outcome::ALL`].
    pub resolved: [u64; Outcome::ALL.len()],
    pub evicted: u64,
}

/// Histograms of one series, in family order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Histograms {
    pub time_to_answer: Buckets,
    pub rings: Buckets,
    pub hold: Buckets,
    pub abandon_wait: Buckets,
    pub lateness: Buckets,
}

/// The encoding of a store in a snapshot file is this struct's fields in
/// order (an `Arc` encodes as what it holds); the caches are not in it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SeriesMetrics {
    queue: CompactString,
    site: Option<CompactString>,
    counters: Counters,
    /// Shared with the snapshots taken since its last change.
    histograms: Arc<Histograms>,
    tta_window: HdrWindow,
    hold_window: HdrWindow,
    #[serde(skip)]
    tta_cache: QuantileCache,
    #[serde(skip)]
    hold_cache: QuantileCache,
}

/// A window's quantiles as last computed, and the epoch of the clock they
/// were computed at; `None` once the window recorded something since.
type QuantileCache = Option<(i64, [f64; 3])>;

/// Slots of an [`HdrWindow`]: its step is `window / QUANTILE_SLOTS` (see
/// `histogram.rs`; the cache test fails if the two ever differ).
const QUANTILE_SLOTS: Millis = 5;

/// Which step of an HDR window `clock` falls in: without a new record, a
/// window's quantiles change only when this does (a slot leaves the
/// window).
fn quantile_epoch(window: Millis, clock: Millis) -> i64 {
    clock.div_euclid((window / QUANTILE_SLOTS).max(1))
}

/// `window`'s quantiles at `clock`, from `cache` when still valid.
fn cached_quantiles(
    window: &HdrWindow,
    cache: &mut QuantileCache,
    span: Millis,
    clock: Millis,
    scratch: &mut Scratch,
) -> [f64; 3] {
    let epoch = quantile_epoch(span, clock);
    match cache {
        Some((e, q)) if *e == epoch => *q,
        _ => {
            let q = window.quantiles(clock, scratch);
            *cache = Some((epoch, q));
            q
        }
    }
}

/// Counts that are not per series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub received: [u64; EventKind::ALL.len()],
    pub rejected: [u64; Reason::ALL.len()],
    pub duplicates: u64,
    /// Indexed like [`FoldedLabel::ALL`].
    pub folded: [u64; FoldedLabel::ALL.len()],
}

/// What is attributed to one agent (per-agent mode).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentCounters {
    pub agent: CompactString,
    pub answered: u64,
    pub answered_late: u64,
    pub holds: u64,
    pub hold_exceeded: u64,
    /// Indexed like [`Outcome::ALL`].
    pub resolved: [u64; Outcome::ALL.len()],
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Store {
    bounds: Arc<Bounds>,
    window: Millis,
    series: Vec<SeriesMetrics>,
    agents: Vec<AgentCounters>,
    totals: Totals,
    #[serde(skip)]
    scratch: Scratch,
    /// The wallboard's windows: not in the store's own encoding (snapshots
    /// written before them must still load), but a trailing part of the
    /// snapshot body (see [`Store::windows_image`]).
    #[serde(skip)]
    windows: Windows,
}

impl Store {
    pub fn new(bounds: Bounds, quantile_window: Millis) -> Self {
        Store {
            bounds: Arc::new(bounds),
            window: quantile_window,
            series: Vec::new(),
            agents: Vec::new(),
            totals: Totals::default(),
            scratch: Scratch::default(),
            windows: Windows::default(),
        }
    }

    /// What a durability snapshot needs of the store, taken on the
    /// pipeline (see [`StoreCopy`]).
    pub fn copy_for_snapshot(&self) -> StoreCopy {
        let (mut series, mut bins) = SPARE
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or_default();
        series.extend(self.series.iter().map(|s| SeriesCopy {
            queue: s.queue.clone(),
            site: s.site.clone(),
            counters: s.counters,
            histograms: Arc::clone(&s.histograms),
            tta_window: s.tta_window.copy_into(&mut bins),
            hold_window: s.hold_window.copy_into(&mut bins),
        }));
        StoreCopy {
            bounds: Arc::clone(&self.bounds),
            window: self.window,
            series,
            bins,
            agents: self.agents.clone(),
            totals: self.totals,
        }
    }

    /// The wallboard's windows, as a snapshot file keeps them.
    pub fn windows_image(&self) -> WindowsImage {
        self.windows.image()
    }

    /// Take the windows of a snapshot, for the series of the engine it
    /// was restored with (a decoded store knows its series but not their
    /// queues' windows, which are not in its own encoding).
    pub fn restore_windows(&mut self, series: &[SeriesInfo], image: WindowsImage) {
        let mut windows = Windows::default();
        for info in series.iter().take(self.series.len()) {
            windows.new_series(&info.queue, info.limits);
        }
        windows.restore(image);
        self.windows = windows;
    }

    /// Whether a store saved in a snapshot can carry on under the current
    /// configuration: counts per bucket cannot be re-bucketed, so the
    /// boundaries must be the same.
    pub fn fits(&self, bounds: &Bounds, quantile_window: Millis) -> bool {
        *self.bounds == *bounds && self.window == quantile_window
    }

    /// Per-agent series exist only in per-agent mode; a snapshot taken
    /// without it may lack some agents the engine knows.
    pub fn agents_len(&self) -> usize {
        self.agents.len()
    }

    /// Drop every per-agent figure (per-agent mode was turned off).
    pub fn clear_agents(&mut self) {
        self.agents.clear();
    }

    pub fn series_len(&self) -> usize {
        self.series.len()
    }

    pub fn received(&mut self, kind: EventKind) {
        self.totals.received[kind.index()] += 1;
    }

    pub fn rejected(&mut self, reason: Reason) {
        self.totals.rejected[reason.index()] += 1;
    }

    pub fn duplicate(&mut self) {
        self.totals.duplicates += 1;
    }

    /// A consistent copy of every figure, with the live gauges (indexed by
    /// series; a series they lack shows zeros) and the monitor's clock of
    /// the same instant.
    pub fn snapshot(&mut self, live: Vec<Live>, engine: EngineState) -> Snapshot {
        let mut s = self.snapshot_without_windows(live, engine);
        s.windows = self.windows.queues().to_vec();
        s
    }

    /// [`Store::snapshot`] without the wallboard's windows (what `/metrics`
    /// reads): no `Arc` of them is cloned, so none is pinned either.
    pub fn snapshot_without_windows(&mut self, live: Vec<Live>, engine: EngineState) -> Snapshot {
        let (scratch, window) = (&mut self.scratch, self.window);
        let live = live.into_iter().chain(std::iter::repeat(Live::default()));
        let series = self
            .series
            .iter_mut()
            .zip(live)
            .map(|(s, live)| SeriesSnapshot {
                queue: s.queue.clone(),
                site: s.site.clone(),
                counters: s.counters,
                histograms: Arc::clone(&s.histograms),
                live,
                tta_quantiles: cached_quantiles(
                    &s.tta_window,
                    &mut s.tta_cache,
                    window,
                    engine.clock,
                    scratch,
                ),
                hold_quantiles: cached_quantiles(
                    &s.hold_window,
                    &mut s.hold_cache,
                    window,
                    engine.clock,
                    scratch,
                ),
            })
            .collect();
        Snapshot {
            bounds: Arc::clone(&self.bounds),
            series,
            agents: self.agents.clone(),
            totals: self.totals,
            engine,
            windows: Vec::new(),
        }
    }
}

/// A store at one instant, as a durability snapshot takes it on the
/// pipeline: the histograms shared (as a `/metrics` snapshot shares them),
/// the quantile windows' filled bins copied as they lie. Sorting those into
/// the slots' images, and all the encoding, happen where
/// [`StoreCopy::encode`] runs, off the pipeline.
pub struct StoreCopy {
    bounds: Arc<Bounds>,
    window: Millis,
    series: Vec<SeriesCopy>,
    /// The filled bins of every window of `series`.
    bins: Vec<(u32, u32)>,
    agents: Vec<AgentCounters>,
    totals: Totals,
}

/// The lists of the last copy, emptied, for the next (as the engine's
/// copy keeps its own, see `rules::persist`: fresh memory costs the
/// pipeline page faults; some 500 bytes a series stay allocated).
static SPARE: Mutex<Option<SpareLists>> = Mutex::new(None);

/// A store copy's series and bins.
type SpareLists = (Vec<SeriesCopy>, Vec<(u32, u32)>);

impl Drop for StoreCopy {
    fn drop(&mut self) {
        let (mut series, mut bins) = (
            std::mem::take(&mut self.series),
            std::mem::take(&mut self.bins),
        );
        series.clear();
        bins.clear();
        if let Ok(mut s) = SPARE.lock() {
            *s = Some((series, bins));
        }
    }
}

struct SeriesCopy {
    queue: CompactString,
    site: Option<CompactString>,
    counters: Counters,
    histograms: Arc<Histograms>,
    tta_window: histogram::WindowCopy,
    hold_window: histogram::WindowCopy,
}

impl StoreCopy {
    /// How many series the copy holds.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Append exactly what the store's own encoding wrote at the instant
    /// of the copy.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::durability::snapshot::append(self, out);
    }
}

/// The layout of [`Store`]'s derived encoding (its fields in order, a
/// series as [`SeriesMetrics`] writes it).
impl serde::Serialize for StoreCopy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct StoreRef<'a, T: serde::Serialize> {
            bounds: &'a Bounds,
            window: Millis,
            series: T,
            agents: &'a [AgentCounters],
            totals: &'a Totals,
        }
        #[derive(serde::Serialize)]
        struct SeriesRef<'a, W: serde::Serialize> {
            queue: &'a CompactString,
            site: &'a Option<CompactString>,
            counters: &'a Counters,
            histograms: &'a Histograms,
            tta_window: W,
            hold_window: W,
        }
        struct Series<'a>(&'a StoreCopy, histogram::Hdr);
        impl serde::Serialize for Series<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (copy, hdr) = (self.0, &self.1);
                s.collect_seq(copy.series.iter().map(|x| SeriesRef {
                    queue: &x.queue,
                    site: &x.site,
                    counters: &x.counters,
                    histograms: &x.histograms,
                    tta_window: x.tta_window.image(&copy.bins, hdr),
                    hold_window: x.hold_window.image(&copy.bins, hdr),
                }))
            }
        }
        StoreRef {
            bounds: &self.bounds,
            window: self.window,
            series: Series(self, histogram::hdr_shape()),
            agents: &self.agents,
            totals: &self.totals,
        }
        .serialize(s)
    }
}

impl Observer for Store {
    /// Series ids are dense and announced in order; an id out of order
    /// would be the engine's bug, and is ignored rather than fatal (its
    /// figures then go nowhere, see `measure`).
    fn new_series(&mut self, id: SeriesId, info: &SeriesInfo) {
        if id as usize != self.series.len() {
            return;
        }
        let b = &self.bounds;
        self.windows.new_series(&info.queue, info.limits);
        self.series.push(SeriesMetrics {
            queue: info.queue.clone(),
            site: info.site.clone(),
            counters: Counters::default(),
            histograms: Arc::new(Histograms {
                time_to_answer: Buckets::new(&b.time_to_answer),
                rings: Buckets::new(&b.rings),
                hold: Buckets::new(&b.hold),
                abandon_wait: Buckets::new(&b.time_to_answer),
                lateness: Buckets::new(&b.lateness),
            }),
            tta_window: HdrWindow::new(self.window),
            hold_window: HdrWindow::new(self.window),
            tta_cache: None,
            hold_cache: None,
        });
    }

    fn measure(&mut self, id: SeriesId, now: Millis, m: Measure) {
        let b = &*self.bounds;
        let Some(s) = self.series.get_mut(id as usize) else {
            return;
        };
        self.windows.record(id, now, &m);
        let c = &mut s.counters;
        // A copy only when a snapshot still shares the histograms.
        let h = &mut s.histograms;
        match m {
            Measure::Offered => c.offered += 1,
            Measure::Answered { wait, rings, late } => {
                c.answered += 1;
                c.answered_late += u64::from(late);
                let h = Arc::make_mut(h);
                h.time_to_answer.record(&b.time_to_answer, wait);
                h.rings.record(&b.rings, i64::from(rings));
                s.tta_window.record(now, wait);
                s.tta_cache = None;
            }
            Measure::Abandoned { wait, short } => {
                if short {
                    c.abandoned_short += 1;
                } else {
                    c.abandoned_long += 1;
                }
                Arc::make_mut(h)
                    .abandon_wait
                    .record(&b.time_to_answer, wait);
            }
            Measure::HoldSegment {
                duration,
                over_limit,
            } => {
                c.holds += 1;
                c.hold_exceeded += u64::from(over_limit);
                Arc::make_mut(h).hold.record(&b.hold, duration);
                s.hold_window.record(now, duration);
                s.hold_cache = None;
            }
            Measure::Promised => c.promised += 1,
            Measure::Resolved { outcome, lateness } => {
                c.resolved[outcome as usize] += 1;
                if outcome == Outcome::Late {
                    Arc::make_mut(h).lateness.record(&b.lateness, lateness);
                }
            }
            Measure::Evicted => c.evicted += 1,
        }
    }

    fn folded(&mut self, label: FoldedLabel) {
        self.totals.folded[label as usize] += 1;
    }

    fn new_agent(&mut self, id: AgentId, name: &str) {
        if id as usize != self.agents.len() {
            return;
        }
        self.agents.push(AgentCounters {
            agent: name.into(),
            ..AgentCounters::default()
        });
    }

    fn agent_measure(&mut self, id: AgentId, m: AgentMeasure) {
        let Some(a) = self.agents.get_mut(id as usize) else {
            return;
        };
        match m {
            AgentMeasure::Answered { late } => {
                a.answered += 1;
                a.answered_late += u64::from(late);
            }
            AgentMeasure::HoldSegment { over_limit } => {
                a.holds += 1;
                a.hold_exceeded += u64::from(over_limit);
            }
            AgentMeasure::Resolved { outcome } => a.resolved[outcome as usize] += 1,
        }
    }
}

/// Engine-wide state at snapshot time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    /// The monitor's clock (event time in `clock = "event"`).
    pub clock: Millis,
    pub calls_in_flight: u64,
    pub dedup_ids: u64,
}

#[derive(Clone, Debug)]
pub struct SeriesSnapshot {
    pub queue: CompactString,
    pub site: Option<CompactString>,
    pub counters: Counters,
    /// Shared with the store until the series' next change.
    pub histograms: Arc<Histograms>,
    pub live: Live,
    pub tta_quantiles: [f64; 3],
    pub hold_quantiles: [f64; 3],
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub bounds: Arc<Bounds>,
    pub series: Vec<SeriesSnapshot>,
    pub agents: Vec<AgentCounters>,
    pub totals: Totals,
    pub engine: EngineState,
    /// The wallboard's windows, one per queue (sites together), shared
    /// with the store until its next measure for that queue; empty in a
    /// snapshot taken without them.
    pub windows: Vec<Arc<windows::QueueWindow>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Limits;

    fn info(queue: &str) -> SeriesInfo {
        SeriesInfo {
            queue: queue.into(),
            site: None,
            limits: Limits::default(),
        }
    }

    /// Ids come from the engine, which announces each before using it; an
    /// id the store does not know is dropped, never a panic.
    #[test]
    fn ids_the_store_does_not_know_are_dropped() {
        let s = Settings::default();
        let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
        store.new_series(0, &info("q"));
        store.new_series(5, &info("gap"));
        store.measure(0, 0, Measure::Offered);
        store.measure(1, 0, Measure::Offered);
        store.measure(u32::MAX, 0, Measure::Evicted);
        store.new_agent(3, "ann");
        store.agent_measure(3, AgentMeasure::Answered { late: false });
        assert_eq!(store.series_len(), 1);
        assert_eq!(store.agents_len(), 0);
        // Fewer live gauges than series: the rest show zeros.
        let snap = store.snapshot(Vec::new(), EngineState::default());
        assert_eq!(snap.series.len(), 1);
        assert_eq!(snap.series[0].counters.offered, 1);
        assert_eq!(snap.series[0].live, Live::default());
    }

    /// A snapshot shares the histograms; a measure after it copies them,
    /// so the snapshot keeps the figures of its own instant.
    #[test]
    fn a_snapshot_keeps_its_figures_after_later_measures() {
        let s = Settings::default();
        let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
        store.new_series(0, &info("q"));
        let answered = Measure::Answered {
            wait: 4_000,
            rings: 1,
            late: false,
        };
        store.measure(0, 10, answered);
        let first = store.snapshot_without_windows(Vec::new(), EngineState::default());
        assert!(first.windows.is_empty());
        store.measure(0, 20, answered);
        store.measure(0, 30, Measure::Offered);
        let second = store.snapshot(Vec::new(), EngineState::default());
        assert_eq!(second.windows.len(), 1);
        let (a, b) = (&first.series[0], &second.series[0]);
        assert_eq!(a.histograms.time_to_answer.count, 1);
        assert_eq!(b.histograms.time_to_answer.count, 2);
        assert_eq!((a.counters.answered, a.counters.offered), (1, 0));
        assert_eq!((b.counters.answered, b.counters.offered), (2, 1));
        // Nothing changed since: the next snapshot shares the same buckets.
        let third = store.snapshot_without_windows(Vec::new(), EngineState::default());
        assert!(Arc::ptr_eq(&b.histograms, &third.series[0].histograms));
    }

    proptest::proptest! {
        /// A store's copy encodes to the store's own bytes at the instant
        /// of the copy, whatever was recorded in which slots of which
        /// series' windows (slots rolled over and reused, values at both
        /// ends and beyond, agents and totals), and keeps them after later
        /// measures.
        #[test]
        fn a_copy_encodes_as_the_store_at_its_instant(
            records in proptest::collection::vec(
                (0u32..3, 0i64..200_000, 0u8..4, -1_000i64..4_000_000),
                0..200,
            ),
        ) {
            let s = Settings::default();
            let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
            for (id, q) in ["a", "b", "a-much-longer-queue-name-than-inline"].iter().enumerate() {
                store.new_series(id as SeriesId, &info(q));
            }
            store.new_agent(0, "ann");
            store.agent_measure(0, AgentMeasure::Answered { late: true });
            store.received(EventKind::ALL[0]);
            let mut now: Millis = 1_795_424_400_000;
            for (id, dt, what, value) in records {
                now += dt;
                let m = match what {
                    0 => Measure::Answered { wait: value, rings: 2, late: false },
                    1 => Measure::HoldSegment { duration: value, over_limit: true },
                    2 => Measure::Abandoned { wait: value, short: false },
                    _ => Measure::Offered,
                };
                store.measure(id, now, m);
            }
            let want = postcard::to_stdvec(&store).unwrap();
            let copy = store.copy_for_snapshot();
            let mut got = vec![7];
            copy.encode(&mut got);
            proptest::prop_assert_eq!(got[0], 7, "appended");
            proptest::prop_assert_eq!(&got[1..], &want[..]);
            store.measure(0, now + 1, Measure::Answered { wait: 5, rings: 1, late: false });
            store.measure(1, now + 400_000, Measure::HoldSegment { duration: 9, over_limit: false });
            let mut again = Vec::new();
            copy.encode(&mut again);
            proptest::prop_assert_eq!(again, want);
        }

        /// The cached quantiles are what the windows compute at the
        /// snapshot's clock, whatever the records and clocks in between
        /// (steps skipped, a step's edge hit exactly, the clock standing
        /// still, slots rolling out of the window).
        #[test]
        fn cached_quantiles_are_the_windows_own(
            steps in proptest::collection::vec((0i64..130_000, 0u8..4, 1i64..40_000), 1..60),
        ) {
            const WINDOW: Millis = 300_000;
            let s = Settings::default();
            let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), WINDOW);
            store.new_series(0, &info("q"));
            let (mut tta, mut hold) = (HdrWindow::new(WINDOW), HdrWindow::new(WINDOW));
            let mut scratch = Scratch::default();
            let mut now: Millis = 1_795_424_400_000;
            for (dt, what, value) in steps {
                // Half the steps land on a multiple of the HDR step.
                now = if dt % 2 == 0 { (now + dt) / 60_000 * 60_000 } else { now + dt };
                match what {
                    0 => {
                        store.measure(0, now, Measure::Answered { wait: value, rings: 1, late: false });
                        tta.record(now, value);
                    }
                    1 => {
                        store.measure(0, now, Measure::HoldSegment { duration: value, over_limit: false });
                        hold.record(now, value);
                    }
                    _ => {}
                }
                let engine = EngineState { clock: now, ..EngineState::default() };
                let snap = store.snapshot_without_windows(Vec::new(), engine);
                let x = &snap.series[0];
                let same = |a: [f64; 3], b: [f64; 3]| {
                    a.iter().zip(&b).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
                };
                proptest::prop_assert!(same(x.tta_quantiles, tta.quantiles(now, &mut scratch)));
                proptest::prop_assert!(same(x.hold_quantiles, hold.quantiles(now, &mut scratch)));
            }
        }
    }
}
