//! A set of 64-bit keys that are already uniform random hashes (the keyed
//! hashes of `ExpiringSet`), stored flat: linear probing over one array of
//! keys, deletion by backward shift, at most two thirds full.
//!
//! Why not `HashSet<u64>`: at a million entries the set is far larger than
//! the cache, so each operation is a cache miss, and hashbrown's layout
//! (control bytes apart from the keys) makes it two. Here the key is its own
//! slot's tag: one miss per operation, and [`Keys::prefetch`] lets a caller
//! that knows a key early (the oldest entry, due to be evicted) start that
//! miss while it does other work.
//!
//! The keys are spread over 64 tables by their top bits: growing rehashes
//! everything in a table at once, and with one table of a million ids that
//! held the pipeline up for tens of milliseconds; a table holds a 64th of
//! them. The set decides when to grow from its total (at two thirds full),
//! then grows the tables one at a time, spread over the next inserts (a
//! table every `target / 32` inserts: all are grown while the average table
//! is still short of 0.73 full, and no two rehashes come together); a table
//! grows by itself only past three quarters, which its share of uniform
//! keys does not reach in steady state, so a set whose size holds still
//! allocates nothing.
//!
//! Sizes are powers of two or three times one (16, 24, 32, 48, ...), and a
//! key's home is its bits scaled to the size (a multiply, not a mask). The
//! set doubles, but stops at the size its cap needs ([`grown`]): at a
//! million ids a power of two (2^20 slots) is 95 % full, so doubling alone
//! gave 2^21 (16 MiB); the size between gives 1.5 * 2^20 (12 MiB).
//! [`next_size`] and [`scale`] are shared with the call table's index.

/// The set: its keys in [`SHARDS`] tables, by their top bits.
pub(crate) struct Keys {
    tables: Vec<Table>,
    /// Keys in all tables.
    len: usize,
    /// The slots every table is to have (they get there one per insert).
    target: usize,
    /// The next table to look at for growing to `target`.
    next: usize,
    /// Tables below `target`, as far as known (one that grew by itself
    /// may have left it: the search then finds none and says so).
    behind: usize,
    /// Inserts until the next table is grown.
    countdown: usize,
    /// The most keys the set is to hold (its owner's cap), 0 if unknown:
    /// the set grows by doubling, but no further than the size that holds
    /// this many at two thirds full.
    cap: usize,
}

const SHARDS: usize = 64;
/// How far a key is shifted to give its table (its top 6 bits).
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
const SHARD_SHIFT: u32 = 64 - SHARD_BITS;

impl Default for Keys {
    fn default() -> Self {
        Keys {
            tables: (0..SHARDS).map(|_| Table::default()).collect(),
            len: 0,
            target: 0,
            next: 0,
            behind: 0,
            countdown: 0,
            cap: 0,
        }
    }
}

impl Keys {
    fn table(&self, key: u64) -> &Table {
        &self.tables[(stored(key) >> SHARD_SHIFT) as usize]
    }

    fn table_mut(&mut self, key: u64) -> &mut Table {
        &mut self.tables[(stored(key) >> SHARD_SHIFT) as usize]
    }

    pub fn contains(&self, key: u64) -> bool {
        self.table(key).contains(key)
    }

    /// Add `key`; false if it was already there.
    pub fn insert(&mut self, key: u64) -> bool {
        if !self.table_mut(key).insert(key) {
            return false;
        }
        self.len += 1;
        if self.len * 3 > self.target * SHARDS * 2 {
            self.target = grown(self.target, self.cap);
            self.behind = SHARDS;
        }
        // One table at a time, spread out, so no insert waits long.
        if self.behind > 0 {
            if self.countdown > 0 {
                self.countdown -= 1;
                return true;
            }
            self.countdown = self.target / 32;
            self.behind -= 1;
            for _ in 0..SHARDS {
                let t = &mut self.tables[self.next];
                self.next = (self.next + 1) % SHARDS;
                if t.slots.len() < self.target {
                    t.grow_to(self.target);
                    return true;
                }
            }
            self.behind = 0;
        }
        true
    }

    /// Remove `key`; false if it was not there.
    pub fn remove(&mut self, key: u64) -> bool {
        let removed = self.table_mut(key).remove(key);
        self.len -= usize::from(removed);
        removed
    }

    /// Start loading the slot `key`'s probe begins at into the cache, so a
    /// later operation on it does not wait for memory.
    pub fn prefetch(&self, key: u64) {
        self.table(key).prefetch(key);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Set the most keys the set is to hold (see `cap`).
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }
}

/// The set's next table size after `target`: double (each step up rehashes
/// everything, and the 3/2 and 4/3 steps took twice as many on the way to
/// a million: 4 % of a replay), but not past the size that `cap` keys need
/// at two thirds full, where a set at its cap stays: 1.5 * 2^20 slots for
/// the default million, not 2^21.
fn grown(target: usize, cap: usize) -> usize {
    let doubled = target.saturating_mul(2).max(FIRST);
    let enough = size_for(cap);
    if enough > target && enough < doubled {
        enough
    } else {
        doubled
    }
}

/// The smallest table size (of [`next_size`]'s) at which `cap` keys fill
/// the set to two thirds at most; `usize::MAX` when no cap is known.
fn size_for(cap: usize) -> usize {
    if cap == 0 || cap > 1 << 40 {
        return usize::MAX;
    }
    let mut size = FIRST;
    while cap * 3 > size * SHARDS * 2 {
        size = next_size(size);
    }
    size
}

/// One table: keys in their slots; `EMPTY` marks a free slot, so a key
/// equal to it is stored as `EMPTY_STAND_IN` (two keys then share a slot's
/// meaning: as likely as any other 64-bit collision). The top bits chose
/// the table; the slot is the rest scaled to the table's size.
#[derive(Default)]
struct Table {
    slots: Vec<u64>,
    len: usize,
}

/// All ones, not zero: a table of zeros is allocated zeroed (`calloc`),
/// its pages left unmapped until touched, and a rehash reads a slot before
/// it writes it. Each page was then first mapped to the kernel's shared
/// zero page and faulted again on the write, and that second fault flushes
/// the TLB of every core running the daemon (an interrupt to each): 7 % of
/// a fresh daemon's first second, all in `grow_to` on the pipeline. A table
/// filled with ones is written when it is allocated, so its pages are
/// mapped writable at once.
const EMPTY: u64 = u64::MAX;
const EMPTY_STAND_IN: u64 = u64::MAX - 1;
/// Slots of a set that has never held anything (grown on first insert).
const FIRST: usize = 16;

fn stored(key: u64) -> u64 {
    if key == EMPTY {
        EMPTY_STAND_IN
    } else {
        key
    }
}

/// The size after `size`: 16 first, then 3/2 of a power of two and 4/3
/// of the rest (16, 24, 32, 48, 64, ...), so every size is a power of two
/// or three times one.
pub(super) fn next_size(size: usize) -> usize {
    if size < FIRST {
        FIRST
    } else if size.is_power_of_two() {
        size + size / 2
    } else {
        size / 3 * 4
    }
}

/// `bits` (uniform over all 64-bit values) scaled to a slot in `0..size`:
/// its top bits decide, as a mask would use the low ones, for any size.
pub(super) fn scale(bits: u64, size: usize) -> usize {
    ((u128::from(bits) * size as u128) >> 64) as usize
}

/// The slot after `i` in a table of `size`, wrapping to the first.
pub(super) fn after(i: usize, size: usize) -> usize {
    if i + 1 == size {
        0
    } else {
        i + 1
    }
}

impl Table {
    /// The slot a key's probe starts at: the bits below those that chose
    /// the table. Keys are uniform, so these are as good as any.
    fn home(&self, key: u64) -> usize {
        scale(key << SHARD_BITS, self.slots.len())
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        loop {
            match self.slots[i] {
                EMPTY => return None,
                k if k == key => return Some(i),
                _ => i = after(i, self.slots.len()),
            }
        }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.find(stored(key)).is_some()
    }

    /// Add `key`; false if it was already there.
    pub fn insert(&mut self, key: u64) -> bool {
        let key = stored(key);
        // Past three quarters (or never sized): grow now, whatever the set's
        // schedule, so a probe always ends.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow_to(next_size(self.slots.len()));
        }
        let mut i = self.home(key);
        loop {
            match self.slots[i] {
                EMPTY => {
                    self.slots[i] = key;
                    self.len += 1;
                    return true;
                }
                k if k == key => return false,
                _ => i = after(i, self.slots.len()),
            }
        }
    }

    /// Remove `key`; false if it was not there. The entries after it in
    /// its run move back into the hole where their probe allows, so no
    /// tombstone is left and probes stay short however long the set lives.
    pub fn remove(&mut self, key: u64) -> bool {
        let Some(mut hole) = self.find(stored(key)) else {
            return false;
        };
        let size = self.slots.len();
        let mut j = hole;
        loop {
            j = after(j, size);
            let k = self.slots[j];
            if k == EMPTY {
                break;
            }
            // `k` may fill the hole unless its home lies cyclically in
            // (hole, j]: then its probe never passes the hole.
            let home = self.home(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = k;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// The line a key's probe starts in and the next one: at two thirds
    /// full a run often goes on past its first line, and a removal's
    /// backward shift reads to the run's end (the second line was half of
    /// `remove`'s time in a profile at a million ids).
    fn prefetch(&self, key: u64) {
        let home = self.home(stored(key));
        for at in [home, home + 8] {
            if let Some(slot) = self.slots.get(at) {
                prefetch(slot);
            }
        }
    }

    /// Rehash into `size` slots (more than there are keys).
    fn grow_to(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        self.len = 0;
        for k in old.into_iter().filter(|&k| k != EMPTY) {
            let mut i = self.home(k);
            while self.slots[i] != EMPTY {
                i = after(i, size);
            }
            self.slots[i] = k;
            self.len += 1;
        }
    }
}

impl Keys {
    /// A set of `keys`, sized for at most `cap` (see `cap`).
    pub fn holding(cap: usize, keys: impl IntoIterator<Item = u64>) -> Self {
        let mut set = Keys::default();
        set.set_cap(cap);
        for k in keys {
            set.insert(k);
        }
        set
    }

    /// Slots in all tables.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.tables.iter().map(|t| t.slots.len()).sum()
    }
}

/// Start loading the cache line of `at` (a hint: it changes nothing).
#[cfg(target_arch = "x86_64")]
pub(super) fn prefetch(at: &u64) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint; it never faults and reads nothing into
    // the program (and `at` is a valid reference anyway). SSE is part of
    // every x86_64 target.
    unsafe { _mm_prefetch::<_MM_HINT_T0>((at as *const u64).cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn prefetch(at: &u64) {
    // Elsewhere, a plain read: the load starts the same miss, though the
    // processor may wait for it sooner.
    std::hint::black_box(*at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn the_empty_marker_and_its_stand_in_are_keys_like_any_other() {
        for key in [EMPTY, EMPTY_STAND_IN, 0] {
            let mut k = Keys::default();
            assert!(!k.contains(key));
            assert!(k.insert(key));
            assert!(k.contains(key) && !k.insert(key));
            assert!(k.remove(key) && !k.contains(key) && k.len() == 0);
        }
    }

    #[test]
    fn sizes_step_by_halves_and_thirds() {
        let mut sizes = vec![next_size(0)];
        while sizes.len() < 8 {
            sizes.push(next_size(*sizes.last().unwrap()));
        }
        assert_eq!(sizes, [16, 24, 32, 48, 64, 96, 128, 192]);
        assert_eq!(next_size(1 << 20), 3 << 19);
        // Scaled homes cover the whole array and stay inside it.
        assert_eq!(scale(0, 24), 0);
        assert_eq!(scale(u64::MAX, 24), 23);
        assert_eq!(scale(1 << 63, 24), 12);
    }

    /// A million keys (the default `dedup_max_ids`) under that cap fit in
    /// 1.5 * 2^20 slots, not 2^21; without a cap the set doubles.
    #[test]
    fn a_million_keys_take_twelve_mebibytes() {
        for (cap, want) in [(1_000_000, 64 * (3 << 13)), (0, 64 << 15)] {
            let mut k = Keys::default();
            k.set_cap(cap);
            for i in 1..=1_000_000u64 {
                k.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            }
            let slots: usize = k.tables.iter().map(|t| t.slots.len()).sum();
            assert_eq!(slots, want, "cap {cap}");
            assert!(k.tables.iter().all(|t| t.len * 4 <= t.slots.len() * 3));
        }
    }

    #[test]
    fn growth_doubles_up_to_what_the_cap_needs() {
        assert_eq!(grown(0, 0), 16);
        assert_eq!(grown(16, 0), 32);
        // 1M at two thirds needs 23,438 slots a table: 24,576 is the first.
        assert_eq!(size_for(1_000_000), 3 << 13);
        assert_eq!(grown(1 << 13, 1_000_000), 1 << 14);
        assert_eq!(grown(1 << 14, 1_000_000), 3 << 13);
        // Past the cap's size (a cap raised later), doubling again.
        assert_eq!(grown(3 << 13, 1_000_000), 3 << 14);
        assert_eq!(size_for(usize::MAX), usize::MAX);
    }

    #[test]
    fn grows_and_keeps_everything() {
        let mut k = Keys::default();
        for i in 0..10_000u64 {
            assert!(k.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        assert_eq!(k.len(), 10_000);
        // Spread over every table, none past three quarters.
        assert!(k
            .tables
            .iter()
            .all(|t| t.len > 0 && t.len * 4 <= t.slots.len() * 3));
        for i in 0..10_000u64 {
            assert!(k.contains(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
    }

    /// Keys that all share a home slot, and runs that wrap around the end
    /// of the array: the cases backward-shift deletion can get wrong.
    #[test]
    fn deleting_from_crowded_and_wrapping_runs() {
        let mut k = Table::default();
        k.insert(2); // sizes the array to FIRST slots; home 0
                     // Bits just under the top all have the last slot as home.
        let keys: Vec<u64> = (1..=5).map(|n| (1 << 58) - n).collect();
        assert!(keys.iter().all(|&key| k.home(key) == k.slots.len() - 1));
        for &key in &keys {
            k.insert(key);
        }
        for (n, &key) in keys.iter().enumerate() {
            assert!(k.remove(key));
            for &rest in &keys[n + 1..] {
                assert!(k.contains(rest), "lost {rest} after removing {key}");
            }
            assert!(k.contains(2));
        }
    }

    /// Key `n` of 64, in one of two tables: its bits under the table's
    /// are near the bottom or the top (homes at both ends of any array up
    /// to 2^50 slots), never the key 0 or 1.
    fn crowded(n: u64) -> u64 {
        let table = (n % 2) << SHARD_SHIFT;
        let r = n / 2;
        let low = if r.is_multiple_of(2) {
            r + 2
        } else {
            (1 << SHARD_SHIFT) - r
        };
        table | low
    }

    proptest! {
        /// Against std's set, for any sequence of inserts and removes of
        /// keys whose homes are four slots at the end and the start of the
        /// array, whatever its size (so runs collide and wrap).
        #[test]
        fn behaves_like_a_hash_set(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..400)) {
            let mut k = Keys::default();
            let mut std_set = HashSet::new();
            for (insert, key) in ops {
                let key = crowded(key);
                if insert {
                    prop_assert_eq!(k.insert(key), std_set.insert(key));
                } else {
                    prop_assert_eq!(k.remove(key), std_set.remove(&key));
                }
                prop_assert_eq!(k.len(), std_set.len());
            }
            for key in (0u64..64).map(crowded) {
                prop_assert_eq!(k.contains(key), std_set.contains(&key));
            }
        }
    }
}
