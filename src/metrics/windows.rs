//! The wallboard's windows: per queue, what the engine measured in each of
//! the last 60 minutes (the hourly chart and "last 15 minutes") and in each
//! of the last 104 quarter hours (26 hours: "today" in any time zone, DST
//! days included; Antarctica/Troll's day when it leaves +2 for +0 has 26
//! hours). Recorded by the [`Store`](super::Store) from the same
//! measures as the counters, on the monitor's clock passed with each, so a
//! journal replay rebuilds them exactly; carried in snapshots as a trailing
//! part of the body.
//!
//! No time zone here: every zone's offset is a whole number of quarter
//! hours (Nepal +5:45, Chatham +12:45 included), so local midnight is always
//! a quarter boundary and "today" is a sum of quarters chosen at read time.
//! A change of `[wall] timezone` therefore applies to the kept data too.
//!
//! Bounded: a queue's window is two fixed rings of [`Slot`]s allocated when
//! the queue is first seen (see [`QueueWindow::BYTES`]), and queues are
//! bounded by the engine's `max_queues` (plus `other`).

use std::sync::Arc;

use compact_str::CompactString;

use crate::event::Millis;
use crate::rules::{Limits, Measure, Outcome};

pub const MINUTE: Millis = 60_000;
pub const QUARTER: Millis = 15 * MINUTE;
/// One-minute slots: the hourly chart.
pub const MINUTES: usize = 60;
/// Quarter-hour slots: 26 hours, the longest local day (Antarctica/Troll
/// goes from UTC+2 back to UTC+0 in one step; the usual DST day has 25).
pub const QUARTERS: usize = 104;

/// What was measured in one slot of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub offered: u32,
    pub answered: u32,
    /// Answered after the queue's ring limit.
    pub answered_late: u32,
    pub abandoned_short: u32,
    pub abandoned_long: u32,
    pub holds: u32,
    pub hold_exceeded: u32,
    pub kept: u32,
    pub late: u32,
    pub missed: u32,
    pub cancelled: u32,
    /// Sum of the times to answer of `answered`, in milliseconds.
    pub answer_ms: u64,
}

impl Tally {
    /// Saturating, like recording.
    pub fn add(&mut self, o: &Tally) {
        for (a, b) in [
            (&mut self.offered, o.offered),
            (&mut self.answered, o.answered),
            (&mut self.answered_late, o.answered_late),
            (&mut self.abandoned_short, o.abandoned_short),
            (&mut self.abandoned_long, o.abandoned_long),
            (&mut self.holds, o.holds),
            (&mut self.hold_exceeded, o.hold_exceeded),
            (&mut self.kept, o.kept),
            (&mut self.late, o.late),
            (&mut self.missed, o.missed),
            (&mut self.cancelled, o.cancelled),
        ] {
            *a = a.saturating_add(b);
        }
        self.answer_ms = self.answer_ms.saturating_add(o.answer_ms);
    }

    /// Saturating: a slot of u32 counts would need four billion calls in
    /// a quarter hour to wrap; it stops there instead.
    fn record(&mut self, m: &Measure) {
        let inc = |c: &mut u32| *c = c.saturating_add(1);
        match *m {
            Measure::Offered => inc(&mut self.offered),
            Measure::Answered { wait, late, .. } => {
                inc(&mut self.answered);
                if late {
                    inc(&mut self.answered_late);
                }
                self.answer_ms = self.answer_ms.saturating_add(wait.max(0) as u64);
            }
            Measure::Abandoned { short: true, .. } => inc(&mut self.abandoned_short),
            Measure::Abandoned { short: false, .. } => inc(&mut self.abandoned_long),
            Measure::HoldSegment { over_limit, .. } => {
                inc(&mut self.holds);
                if over_limit {
                    inc(&mut self.hold_exceeded);
                }
            }
            Measure::Resolved { outcome, .. } => match outcome {
                Outcome::Kept => inc(&mut self.kept),
                Outcome::Late => inc(&mut self.late),
                Outcome::Missed => inc(&mut self.missed),
                Outcome::Cancelled => inc(&mut self.cancelled),
            },
            Measure::Promised | Measure::Evicted => {}
        }
    }
}

/// One slot of a ring: the number of its minute (or quarter) since the
/// epoch, and what was measured in it. A ring position holds the slot of
/// the latest period that maps to it; an older one reads as empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    pub period: i64,
    pub tally: Tally,
}

/// The windows of one queue (all its sites together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueWindow {
    pub queue: CompactString,
    /// The queue's limits (from the engine; not persisted, the engine
    /// announces them again).
    pub limits: Limits,
    minutes: Vec<Slot>,
    quarters: Vec<Slot>,
}

impl QueueWindow {
    /// Memory of one queue's window (a name of up to 24 bytes is inline):
    /// the two rings, the struct in its `Arc` (two counters) and the
    /// pointer to it (`window_memory_is_bounded` checks it).
    pub const BYTES: usize = (MINUTES + QUARTERS) * std::mem::size_of::<Slot>()
        + std::mem::size_of::<QueueWindow>()
        + 2 * std::mem::size_of::<usize>()
        + std::mem::size_of::<Arc<QueueWindow>>();

    fn new(queue: CompactString, limits: Limits) -> Self {
        // `period` MIN: no slot is current until something is recorded.
        let empty = Slot {
            period: i64::MIN,
            tally: Tally::default(),
        };
        QueueWindow {
            queue,
            limits,
            minutes: vec![empty; MINUTES],
            quarters: vec![empty; QUARTERS],
        }
    }

    fn record(&mut self, now: Millis, m: &Measure) {
        for (ring, len) in [(&mut self.minutes, MINUTE), (&mut self.quarters, QUARTER)] {
            let period = now.div_euclid(len);
            let at = position(period, ring.len());
            let Some(slot) = ring.get_mut(at) else {
                continue;
            };
            if slot.period != period {
                *slot = Slot {
                    period,
                    tally: Tally::default(),
                };
            }
            slot.tally.record(m);
        }
    }

    /// What was measured in minute `period` (minutes since the epoch).
    pub fn minute(&self, period: i64) -> Tally {
        slot_of(&self.minutes, period)
    }

    /// What was measured in quarter `period`.
    pub fn quarter(&self, period: i64) -> Tally {
        slot_of(&self.quarters, period)
    }

    /// Sum of the minutes `first..=last`, at most the last [`MINUTES`].
    pub fn minutes_sum(&self, first: i64, last: i64) -> Tally {
        sum(&self.minutes, first, last)
    }

    /// Sum of the quarters `first..=last`, at most the last [`QUARTERS`].
    pub fn quarters_sum(&self, first: i64, last: i64) -> Tally {
        sum(&self.quarters, first, last)
    }
}

fn position(period: i64, len: usize) -> usize {
    period.rem_euclid(len as i64) as usize
}

fn slot_of(ring: &[Slot], period: i64) -> Tally {
    match ring.get(position(period, ring.len())) {
        Some(s) if s.period == period => s.tally,
        _ => Tally::default(),
    }
}

/// Each ring position is looked at once: a range longer than the ring
/// counts each kept period once.
fn sum(ring: &[Slot], first: i64, last: i64) -> Tally {
    let mut t = Tally::default();
    for s in ring {
        if s.period >= first && s.period <= last {
            t.add(&s.tally);
        }
    }
    t
}

/// Every queue's window, and which queue each series belongs to.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    /// Shared with snapshots: a read clones the `Arc`s, and the pipeline
    /// copies a queue's window only if a read still holds it when the next
    /// measure for that queue comes.
    queues: Vec<Arc<QueueWindow>>,
    /// Indexed by series id.
    by_series: Vec<u32>,
}

impl Windows {
    /// Series ids are dense and announced in order (the store checks).
    pub fn new_series(&mut self, queue: &str, limits: Limits) {
        let index = match self.queues.iter().position(|q| q.queue == queue) {
            Some(i) => i,
            None => {
                self.queues
                    .push(Arc::new(QueueWindow::new(queue.into(), limits)));
                self.queues.len() - 1
            }
        };
        self.by_series.push(index as u32);
    }

    pub fn record(&mut self, series: u32, now: Millis, m: &Measure) {
        let Some(&q) = self.by_series.get(series as usize) else {
            return;
        };
        if let Some(w) = self.queues.get_mut(q as usize) {
            Arc::make_mut(w).record(now, m);
        }
    }

    pub fn queues(&self) -> &[Arc<QueueWindow>] {
        &self.queues
    }

    /// What a snapshot file keeps: the rings by queue name. Cheap: the
    /// windows are shared (as with a read), and encoded where the image
    /// goes, off the pipeline.
    pub fn image(&self) -> WindowsImage {
        WindowsImage {
            queues: Vec::new(),
            shared: self.queues.clone(),
        }
    }

    /// Take the rings of a snapshot for the queues this store has. A queue
    /// the store does not have is dropped (the image cannot add queues:
    /// the bound holds), and so is a slot not where its period belongs.
    pub fn restore(&mut self, image: WindowsImage) {
        let shared = image.shared.iter().map(|q| QueueImage {
            queue: q.queue.clone(),
            minutes: q.minutes.clone(),
            quarters: q.quarters.clone(),
        });
        for saved in image.queues.into_iter().chain(shared) {
            let Some(w) = self.queues.iter_mut().find(|q| q.queue == saved.queue) else {
                continue;
            };
            let w = Arc::make_mut(w);
            for (ring, saved) in [
                (&mut w.minutes, saved.minutes),
                (&mut w.quarters, saved.quarters),
            ] {
                let len = ring.len();
                for s in saved {
                    if s.period == i64::MIN {
                        continue;
                    }
                    if let Some(slot) = ring.get_mut(position(s.period, len)) {
                        if s.period > slot.period {
                            *slot = s;
                        }
                    }
                }
            }
        }
    }
}

/// The windows as a snapshot file holds them: read back as `queues`;
/// taken from a store as `shared` windows, which are written in the same
/// layout. Slots never recorded in are left out (a ring position with
/// nothing is restored as nothing), so an image is as large as what was
/// measured, not 164 slots a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowsImage {
    pub queues: Vec<QueueImage>,
    shared: Vec<Arc<QueueWindow>>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueImage {
    pub queue: CompactString,
    pub minutes: Vec<Slot>,
    pub quarters: Vec<Slot>,
}

/// The layout of [`WindowsImage`]: a struct of one field, a sequence of
/// [`QueueImage`]s.
#[derive(serde::Serialize)]
struct ImageRef<'a> {
    queues: Queues<'a>,
}

struct Queues<'a>(&'a WindowsImage);

/// A [`QueueImage`] of borrowed rings.
#[derive(serde::Serialize)]
struct QueueRef<'a> {
    queue: &'a CompactString,
    minutes: Recorded<'a>,
    quarters: Recorded<'a>,
}

/// The slots of a ring that hold a period.
struct Recorded<'a>(&'a [Slot]);

impl serde::Serialize for Recorded<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let kept = |slot: &&Slot| slot.period != i64::MIN;
        let mut seq = s.serialize_seq(Some(self.0.iter().filter(kept).count()))?;
        for slot in self.0.iter().filter(kept) {
            seq.serialize_element(slot)?;
        }
        seq.end()
    }
}

impl serde::Serialize for Queues<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let image = self.0;
        let mut seq = s.serialize_seq(Some(image.queues.len() + image.shared.len()))?;
        for q in &image.queues {
            seq.serialize_element(&QueueRef {
                queue: &q.queue,
                minutes: Recorded(&q.minutes),
                quarters: Recorded(&q.quarters),
            })?;
        }
        for q in &image.shared {
            seq.serialize_element(&QueueRef {
                queue: &q.queue,
                minutes: Recorded(&q.minutes),
                quarters: Recorded(&q.quarters),
            })?;
        }
        seq.end()
    }
}

impl serde::Serialize for WindowsImage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ImageRef {
            queues: Queues(self),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for WindowsImage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Image {
            queues: Vec<QueueImage>,
        }
        let Image { queues } = Image::deserialize(d)?;
        Ok(WindowsImage {
            queues,
            shared: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(wait: Millis, late: bool) -> Measure {
        Measure::Answered {
            wait,
            rings: 1,
            late,
        }
    }

    fn one(queue: &str) -> Windows {
        let mut w = Windows::default();
        w.new_series(queue, Limits::default());
        w
    }

    #[test]
    fn minutes_and_quarters_count_what_falls_in_them() {
        let mut w = one("q");
        let t0 = 1_795_424_400_000; // 2026-11-23T09:00:00Z, a quarter boundary
        w.record(0, t0, &answered(4_000, false));
        w.record(0, t0 + MINUTE - 1, &answered(20_000, true));
        w.record(
            0,
            t0 + MINUTE,
            &Measure::Abandoned {
                wait: 9_000,
                short: false,
            },
        );
        let q = &w.queues()[0];
        let m0 = t0 / MINUTE;
        assert_eq!(q.minute(m0).answered, 2);
        assert_eq!(q.minute(m0).answered_late, 1);
        assert_eq!(q.minute(m0).answer_ms, 24_000);
        assert_eq!(q.minute(m0 + 1).abandoned_long, 1);
        assert_eq!(q.quarter(t0 / QUARTER).answered, 2);
        assert_eq!(q.quarter(t0 / QUARTER).abandoned_long, 1);
        assert_eq!(q.quarter(t0 / QUARTER - 1), Tally::default());
    }

    /// A ring keeps the last 60 minutes: an hour later a position is
    /// taken over, and the old minute reads as empty, never summed twice.
    #[test]
    fn rings_forget_what_is_older_than_they_hold() {
        let mut w = one("q");
        let t0 = 1_795_424_400_000;
        w.record(0, t0, &Measure::Offered);
        w.record(0, t0 + 60 * MINUTE, &Measure::Offered);
        let q = &w.queues()[0];
        let m0 = t0 / MINUTE;
        assert_eq!(q.minute(m0), Tally::default());
        assert_eq!(q.minute(m0 + 60).offered, 1);
        assert_eq!(q.minutes_sum(m0, m0 + 60).offered, 1);
        // The quarters still have both (26 hours).
        assert_eq!(q.quarters_sum(t0 / QUARTER, t0 / QUARTER + 4).offered, 2);
    }

    /// Sites of a queue share its window; a series id never announced
    /// records nothing.
    #[test]
    fn series_of_one_queue_share_its_window() {
        let mut w = Windows::default();
        w.new_series("q", Limits::default());
        w.new_series("r", Limits::default());
        w.new_series("q", Limits::default());
        w.record(0, 0, &Measure::Offered);
        w.record(2, 0, &Measure::Offered);
        w.record(1, 0, &Measure::Offered);
        w.record(9, 0, &Measure::Offered);
        assert_eq!(w.queues().len(), 2);
        assert_eq!(w.queues()[0].minute(0).offered, 2);
        assert_eq!(w.queues()[1].minute(0).offered, 1);
    }

    #[test]
    fn image_round_trips_and_cannot_add_queues() {
        let mut w = one("q");
        let t0 = 1_795_424_400_000;
        for i in 0..130 {
            w.record(0, t0 + i * MINUTE, &answered(1_000, false));
        }
        let image = w.image();
        let bytes = postcard::to_stdvec(&image).unwrap();
        let back: WindowsImage = postcard::from_bytes(&bytes).unwrap();
        // Only the slots recorded in are written: 60 minutes, 9 quarters.
        assert_eq!(back.queues[0].minutes.len(), MINUTES);
        assert_eq!(back.queues[0].quarters.len(), 9);
        assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
        let mut fresh = one("q");
        let mut with_other = back.clone();
        with_other.queues.push(QueueImage {
            queue: "stranger".into(),
            minutes: vec![Slot::default(); 3],
            quarters: Vec::new(),
        });
        fresh.restore(with_other);
        assert_eq!(fresh.queues().len(), 1);
        assert_eq!(*fresh.queues()[0], *w.queues()[0]);
    }

    /// A snapshot's slot at the wrong position (a damaged or foreign image)
    /// goes where its period belongs, and a ring never grows.
    #[test]
    fn restore_puts_slots_where_they_belong() {
        let mut fresh = one("q");
        let slot = Slot {
            period: 61,
            tally: Tally {
                offered: 3,
                ..Tally::default()
            },
        };
        fresh.restore(WindowsImage {
            queues: vec![QueueImage {
                queue: "q".into(),
                minutes: vec![slot; 200],
                quarters: vec![],
            }],
            ..WindowsImage::default()
        });
        assert_eq!(fresh.queues()[0].minute(61).offered, 3);
        assert_eq!(fresh.queues()[0].minutes.len(), MINUTES);
    }

    #[test]
    fn window_memory_is_bounded() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        // 164 slots of 64 bytes, the struct (104), its Arc's counters and
        // pointer (24): 10,624 bytes a queue, 10,634,624 (10.1 MiB) at the
        // default max_queues = 1000 plus `other`.
        assert_eq!(std::mem::size_of::<QueueWindow>(), 104);
        assert_eq!(QueueWindow::BYTES, 10_624);
        assert_eq!(QueueWindow::BYTES * 1_001, 10_634_624);
        let w = one("q");
        let q = &w.queues()[0];
        assert_eq!(q.minutes.capacity(), MINUTES);
        assert_eq!(q.quarters.capacity(), QUARTERS);
    }

    #[test]
    fn counts_saturate() {
        let mut t = Tally {
            offered: u32::MAX,
            ..Tally::default()
        };
        t.record(&Measure::Offered);
        assert_eq!(t.offered, u32::MAX);
    }
}
