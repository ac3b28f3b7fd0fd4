//! The two kinds of histogram behind every duration family.
//!
//! [`Buckets`] counts observations exactly at fixed boundaries (milliseconds
//! are integers, so `le="18.0"` holds a call answered in 18.000 s and never one
//! answered in 18.001 s): the Prometheus buckets, and what the service-level
//! rules are computed from. [`HdrWindow`] keeps HDR histograms over a sliding
//! window for the quantile gauges, exact to 3 significant digits. HDR bins near
//! a boundary are wider than a millisecond (16 ms around 18 s), which is why
//! the cumulative buckets are not read back from the HDR data.

use hdrhistogram::Histogram;

use crate::event::Millis;

/// Observation counts per boundary (non-cumulative; the last slot is +Inf).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Buckets {
    pub counts: Vec<u64>,
    /// Sum of observations in the family's unit (milliseconds or rings).
    pub sum: i64,
    pub count: u64,
}

impl Buckets {
    pub fn new(bounds: &[i64]) -> Self {
        Buckets {
            counts: vec![0; bounds.len() + 1],
            sum: 0,
            count: 0,
        }
    }

    /// `bounds` must be the (sorted) boundaries this was created with.
    pub fn record(&mut self, bounds: &[i64], value: i64) {
        let slot = bounds.partition_point(|&b| b < value);
        self.counts[slot] += 1;
        // Saturating: wire timestamps reach the year 9999, so some 37,000
        // hostile observations could otherwise wrap the sum negative.
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }

    /// Cumulative counts, one per boundary (without +Inf, which is `count`).
    pub fn cumulative(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts[..self.counts.len() - 1]
            .iter()
            .scan(0, |acc, c| {
                *acc += c;
                Some(*acc)
            })
    }
}

/// Quantiles reported by the `*_quantile_seconds` gauges.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// HDR histograms of durations (ms) over the last `window`, in `SLOTS` steps
/// plus the step being filled, so a quantile covers between `window` and
/// `window * (1 + 1/SLOTS)` of data. Slots are allocated on first use.
pub struct HdrWindow {
    step: Millis,
    slots: Vec<Option<Slot>>,
}

/// One step's histogram, and a value of each of its non-empty bins (in
/// the order they were first hit), so a snapshot visits only those: the
/// histogram has some 13,000 bins, of which a step of one queue fills a
/// few hundred at most, and walking all of them for each of a thousand
/// queues' slots was most of a snapshot's time. At most one entry per bin
/// (4 bytes against the bin's own 4).
struct Slot {
    epoch: i64,
    hist: Histogram<u32>,
    bins: Vec<u32>,
}

impl Slot {
    fn new(epoch: i64) -> Slot {
        Slot {
            epoch,
            hist: new_hdr(),
            bins: Vec::new(),
        }
    }

    fn record(&mut self, value: Millis) {
        let v = value.clamp(0, HDR_MAX as i64) as u64;
        if self.hist.count_at(v) == 0 {
            // HDR_MAX fits in u32.
            self.bins.push(v as u32);
        }
        self.hist.saturating_record(v);
    }

    fn reset(&mut self, epoch: i64) {
        self.hist.reset();
        self.bins.clear();
        self.epoch = epoch;
    }

    /// The recorded bins as `iter_recorded` gives them: (highest value of
    /// the bin, count), in value order.
    fn image(&self) -> Vec<(u64, u64)> {
        let mut bins: Vec<(u64, u64)> = self
            .bins
            .iter()
            .map(|&v| {
                let v = u64::from(v);
                (
                    self.hist.highest_equivalent(v),
                    u64::from(self.hist.count_at(v)),
                )
            })
            .collect();
        bins.sort_unstable();
        bins
    }
}

const SLOTS: i64 = 5;
/// Highest recorded duration; longer ones are recorded as this (1 hour).
const HDR_MAX: u64 = 3_600_000;

impl HdrWindow {
    pub fn new(window: Millis) -> Self {
        HdrWindow {
            step: (window / SLOTS).max(1),
            slots: (0..=SLOTS).map(|_| None).collect(),
        }
    }

    pub fn record(&mut self, now: Millis, value: Millis) {
        let epoch = now.div_euclid(self.step);
        let slot = &mut self.slots[epoch.rem_euclid(SLOTS + 1) as usize];
        let slot = match slot {
            Some(s) => {
                if s.epoch != epoch {
                    s.reset(epoch);
                }
                s
            }
            None => slot.insert(Slot::new(epoch)),
        };
        slot.record(value);
    }

    /// [`QUANTILES`] in seconds over the window ending at `now`; NaN when the
    /// window holds no observation (as Prometheus summaries do). Several
    /// slots are merged into `scratch` (one reused histogram for all
    /// windows), so a scrape allocates nothing here.
    pub fn quantiles(&self, now: Millis, scratch: &mut Scratch) -> [f64; 3] {
        let epoch = now.div_euclid(self.step);
        let live =
            self.slots.iter().flatten().filter(|s| {
                s.epoch > epoch - (SLOTS + 1) && s.epoch <= epoch && !s.hist.is_empty()
            });
        // The live slots' filled bins, (lowest value of the bin, count),
        // sorted: the merged histogram's recorded bins without building it.
        // A slot fills a few hundred of its ~13,000 bins, so this visits
        // those alone (merging whole histograms visited every bin of every
        // slot: most of a scrape's time at a thousand queues).
        let bins = &mut scratch.0;
        bins.clear();
        let mut any = None;
        for slot in live {
            any = Some(&slot.hist);
            bins.extend(slot.bins.iter().map(|&v| {
                let v = u64::from(v);
                (
                    slot.hist.lowest_equivalent(v),
                    u64::from(slot.hist.count_at(v)),
                )
            }));
        }
        let Some(h) = any else {
            return [f64::NAN; 3];
        };
        bins.sort_unstable_by_key(|&(bin, _)| bin);
        let total: u64 = bins.iter().map(|&(_, n)| n).sum();
        let targets = QUANTILES.map(|q| ((q * total as f64).ceil() as u64).max(1));
        let mut out = [0u64; 3];
        let mut next = 0;
        let mut seen = 0u64;
        for &(bin, n) in bins.iter() {
            seen += n;
            while next < targets.len() && seen >= targets[next] {
                out[next] = h.highest_equivalent(bin);
                next += 1;
            }
            if next == targets.len() {
                break;
            }
        }
        out.map(|v| v as f64 / 1000.0)
    }

    /// The same quantiles through a merged histogram (the reference the
    /// sparse walk is tested against).
    #[cfg(test)]
    fn quantiles_merged(&self, now: Millis) -> [f64; 3] {
        let epoch = now.div_euclid(self.step);
        let mut m = new_hdr();
        let mut any = false;
        for s in self.slots.iter().flatten() {
            if s.epoch > epoch - (SLOTS + 1) && s.epoch <= epoch && !s.hist.is_empty() {
                m.add(&s.hist).expect("same bounds");
                any = true;
            }
        }
        if !any {
            return [f64::NAN; 3];
        }
        quantiles_of(&m).map(|v| v as f64 / 1000.0)
    }
}

/// [`QUANTILES`] of `h` in one pass over its recorded bins, stopping at the
/// last one needed; the same values as `value_at_quantile` (the top of the
/// bin where the cumulative count reaches ceil(q * total), at least 1).
#[cfg(test)]
fn quantiles_of(h: &Histogram<u32>) -> [u64; 3] {
    let total = h.len();
    let targets = QUANTILES.map(|q| ((q * total as f64).ceil() as u64).max(1));
    let mut out = [0; 3];
    let mut next = 0;
    let mut seen: u64 = 0;
    for v in h.iter_recorded() {
        seen += u64::from(v.count_at_value());
        while next < targets.len() && seen >= targets[next] {
            out[next] = h.highest_equivalent(v.value_iterated_to());
            next += 1;
        }
        if next == targets.len() {
            break;
        }
    }
    out
}

/// One slot as a snapshot holds it: its epoch and the recorded bins as
/// (highest value of the bin, count), which re-record into the same bins.
/// A slot with nothing recorded is written as none (it reads the same).
type SlotImage = Option<(i64, Vec<(u64, u64)>)>;

impl serde::Serialize for HdrWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let slots: Vec<SlotImage> = self
            .slots
            .iter()
            .map(|slot| {
                slot.as_ref()
                    .filter(|s| !s.hist.is_empty())
                    .map(|s| (s.epoch, s.image()))
            })
            .collect();
        (self.step, slots).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for HdrWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (step, slots): (Millis, Vec<SlotImage>) = serde::Deserialize::deserialize(d)?;
        if step < 1 || slots.len() != (SLOTS + 1) as usize {
            return Err(serde::de::Error::custom("HDR window of another shape"));
        }
        let slots = slots
            .into_iter()
            .map(|slot| {
                slot.map(|(epoch, bins)| {
                    let mut s = Slot::new(epoch);
                    for (value, count) in bins {
                        let v = value.min(HDR_MAX);
                        if s.hist.count_at(v) == 0 {
                            s.bins.push(v as u32);
                        }
                        s.hist
                            .saturating_record_n(v, u32::try_from(count).unwrap_or(u32::MAX));
                    }
                    s
                })
            })
            .collect();
        Ok(HdrWindow { step, slots })
    }
}

/// A window as a snapshot copies it on the pipeline: each slot's epoch and
/// where its filled bins, as (a value of the bin, count) in the order they
/// were first hit, sit in a buffer shared by all the windows of a store
/// copy. Turning them into the slots' images (the bins' highest values,
/// sorted) is left to [`WindowCopy::image`], off the pipeline.
#[derive(Clone, Copy)]
pub(crate) struct WindowCopy {
    step: Millis,
    /// `(epoch, start, len)` of each non-empty slot, in the window's order.
    slots: [Option<(i64, u32, u32)>; (SLOTS + 1) as usize],
}

impl HdrWindow {
    /// Copy the filled bins into `bins` (a copy's shared buffer).
    pub(crate) fn copy_into(&self, bins: &mut Vec<(u32, u32)>) -> WindowCopy {
        let mut slots = [None; (SLOTS + 1) as usize];
        for (to, slot) in slots.iter_mut().zip(&self.slots) {
            let Some(s) = slot.as_ref().filter(|s| !s.hist.is_empty()) else {
                continue;
            };
            let start = bins.len();
            // A value of a bin fits in u32 (HDR_MAX does), a count is one.
            bins.extend(s.bins.iter().map(|&v| (v, s.hist.count_at(u64::from(v)))));
            *to = Some((s.epoch, start as u32, (bins.len() - start) as u32));
        }
        WindowCopy {
            step: self.step,
            slots,
        }
    }
}

impl WindowCopy {
    /// What [`HdrWindow`]'s own encoding writes, from the bins this copy
    /// took into `bins`; `hdr` is any histogram of the windows' shape (the
    /// bins' highest values depend on the shape alone).
    pub(crate) fn image<'a>(&'a self, bins: &'a [(u32, u32)], hdr: &'a Hdr) -> WindowImage<'a> {
        WindowImage {
            copy: self,
            bins,
            hdr,
        }
    }
}

/// A [`WindowCopy`] encoded as its window.
pub(crate) struct WindowImage<'a> {
    copy: &'a WindowCopy,
    bins: &'a [(u32, u32)],
    hdr: &'a Hdr,
}

impl serde::Serialize for WindowImage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let slots: Vec<SlotImage> = self
            .copy
            .slots
            .iter()
            .map(|slot| {
                let (epoch, start, len) = (*slot)?;
                let (start, len) = (start as usize, len as usize);
                let filled = self.bins.get(start..start + len).unwrap_or_default();
                let mut image: Vec<(u64, u64)> = filled
                    .iter()
                    .map(|&(v, n)| (self.hdr.highest_equivalent(u64::from(v)), u64::from(n)))
                    .collect();
                image.sort_unstable();
                Some((epoch, image))
            })
            .collect();
        (self.copy.step, slots).serialize(s)
    }
}

/// The histogram of a window's slot.
pub(crate) type Hdr = Histogram<u32>;

/// A histogram of the windows' shape (for [`WindowCopy::image`]).
pub(crate) fn hdr_shape() -> Hdr {
    new_hdr()
}

/// A buffer reused to gather window slots' bins.
#[derive(Default)]
pub struct Scratch(Vec<(u64, u64)>);

fn new_hdr() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HDR_MAX, 3).expect("valid HDR bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a hostile sender can make every observation ~2.5e14 ms
    /// (offered now, answered at 9999-12-31); some 37,000 of them overflowed
    /// the i64 sum (a panic with overflow checks, a negative `_sum` without).
    #[test]
    fn sum_saturates_instead_of_wrapping() {
        let bounds = [18_000];
        let mut b = Buckets::new(&bounds);
        let longest = 253_402_300_799_999 - 1_795_424_400_000;
        for _ in 0..40_000 {
            b.record(&bounds, longest);
        }
        assert_eq!(b.sum, i64::MAX);
        assert_eq!(b.count, 40_000);
        assert_eq!(b.counts, vec![0, 40_000]);
    }

    #[test]
    fn buckets_are_exact_at_boundaries() {
        let bounds = [6_000, 12_000, 18_000];
        let mut b = Buckets::new(&bounds);
        for v in [5_000, 18_000, 18_001, 0, 99_000] {
            b.record(&bounds, v);
        }
        assert_eq!(b.cumulative().collect::<Vec<_>>(), vec![2, 2, 3]);
        assert_eq!(b.count, 5);
        assert_eq!(b.sum, 140_001);
    }

    #[test]
    fn window_quantiles_and_expiry() {
        let mut w = HdrWindow::new(300_000);
        assert!(w.quantiles(0, &mut Scratch::default())[0].is_nan());
        for v in 1..=100 {
            w.record(1_000, v * 1_000);
        }
        // HDR reports the top of the value's bin: an upper bound within
        // 3 significant digits, never below the true quantile.
        let mut scratch = Scratch::default();
        let q = w.quantiles(1_000, &mut scratch);
        for (got, want) in q.iter().zip([50.0, 90.0, 99.0]) {
            assert!(
                *got >= want && (got - want) / want < 1e-3,
                "{got} vs {want}"
            );
        }
        // still inside the window 5 minutes later, gone after 6
        assert_eq!(w.quantiles(301_000, &mut scratch), q);
        assert!(w.quantiles(361_000, &mut scratch)[0].is_nan());
        // a reused slot starts empty
        w.record(361_000, 7_000);
        assert!(w
            .quantiles(361_000, &mut scratch)
            .iter()
            .all(|q| (7.0..7.01).contains(q)));
    }

    #[test]
    fn slots_are_merged_across_the_window() {
        let mut w = HdrWindow::new(300_000);
        w.record(0, 1_000);
        w.record(60_000, 3_000);
        w.record(120_000, 2_000);
        let mut scratch = Scratch::default();
        let q = w.quantiles(120_000, &mut scratch);
        assert!(
            (2.0..2.01).contains(&q[0]) && (3.0..3.01).contains(&q[2]),
            "{q:?}"
        );
        // merging again into the same scratch starts from empty
        assert_eq!(w.quantiles(120_000, &mut scratch), q);
    }

    #[test]
    fn one_pass_quantiles_match_hdr() {
        // pseudo-random but reproducible values across the whole range
        let mut h = new_hdr();
        let mut x: u64 = 12345;
        for n in [1, 2, 3, 10, 99, 100, 101, 1000, 5000] {
            h.reset();
            for _ in 0..n {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                h.record((x >> 33) % HDR_MAX).unwrap();
            }
            let want = QUANTILES.map(|q| h.value_at_quantile(q));
            assert_eq!(quantiles_of(&h), want, "{n} values");
        }
    }

    /// A snapshot visits only the bins a slot filled, and finds what a
    /// walk over every bin finds; a reset slot forgets them.
    #[test]
    fn slot_images_are_the_recorded_bins() {
        let mut x: u64 = 99;
        let mut s = Slot::new(0);
        for round in 0..3 {
            s.reset(round);
            for _ in 0..(500 * round + 7) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Both ends and beyond: clamped as recording clamps.
                let v = ((x >> 33) % (HDR_MAX + 1_000)) as i64 - 500;
                s.record(v);
                s.record(v);
            }
            let want: Vec<(u64, u64)> = s
                .hist
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value().into()))
                .collect();
            assert_eq!(s.image(), want, "round {round}");
        }
        let mut w = HdrWindow::new(300_000);
        w.record(0, 18_001);
        w.record(60_000, 0);
        let bytes = postcard::to_stdvec(&w).unwrap();
        let back: HdrWindow = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
        let mut scratch = Scratch::default();
        assert_eq!(
            back.quantiles(60_000, &mut scratch),
            w.quantiles(60_000, &mut scratch)
        );
    }

    proptest::proptest! {
        /// The sparse walk over the slots' filled bins gives exactly the
        /// quantiles of the merged histogram, at any clock, across slots
        /// that expire and are reused.
        #[test]
        fn sparse_quantiles_are_the_merged_histograms(
            records in proptest::collection::vec((0i64..900_000, 0i64..200_000), 1..300),
            reads in proptest::collection::vec(0i64..1_200_000, 1..8),
        ) {
            let mut w = HdrWindow::new(300_000);
            let mut scratch = Scratch::default();
            let mut records = records;
            records.sort_by_key(|&(at, _)| at);
            for (at, v) in records {
                w.record(at, v);
                let got = w.quantiles(at, &mut scratch);
                let want = w.quantiles_merged(at);
                proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits));
            }
            for now in reads {
                let got = w.quantiles(now, &mut scratch);
                let want = w.quantiles_merged(now);
                proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits));
            }
        }
    }

    #[test]
    fn three_significant_digits() {
        let mut w = HdrWindow::new(60_000);
        w.record(0, 18_001);
        let q = w.quantiles(0, &mut Scratch::default())[0];
        assert!((q - 18.001).abs() / 18.001 < 1e-3, "{q}");
    }
}
