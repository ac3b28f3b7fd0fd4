//! A set of 64-bit keys that are already uniform random hashes (the keyed
//! hashes of `ExpiringSet`), stored flat: linear probing over one array of
//! keys, deletion by backward shift, at most half full.
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
//! them. The set decides when to grow from its total (at half full), then
//! grows the tables one at a time, spread over the next inserts (a table
//! every `target / 16` inserts: all are grown while the average table is
//! still short of five eighths full, before any should reach three quarters, and no two rehashes come together); a table grows
//! by itself only past
//! three quarters, which its share of uniform keys does not reach in
//! steady state, so a set whose size holds still allocates nothing.

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
}

const SHARDS: usize = 64;
/// How far a key is shifted to give its table (its top 6 bits).
const SHARD_SHIFT: u32 = 64 - SHARDS.trailing_zeros();

impl Default for Keys {
    fn default() -> Self {
        Keys {
            tables: (0..SHARDS).map(|_| Table::default()).collect(),
            len: 0,
            target: 0,
            next: 0,
            behind: 0,
            countdown: 0,
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
        if self.len * 2 > self.target * SHARDS {
            self.target = (self.target * 2).max(FIRST);
            self.behind = SHARDS;
        }
        // One table at a time, spread out, so no insert waits long.
        if self.behind > 0 {
            if self.countdown > 0 {
                self.countdown -= 1;
                return true;
            }
            self.countdown = self.target / 16;
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
}

/// One table: keys in their slots; `EMPTY` marks a free slot, so a key
/// equal to it is stored as `ZERO_KEY` (two keys then share a slot's
/// meaning: as likely as any other 64-bit collision). The slot index is
/// the key's low bits; the top bits chose the table.
#[derive(Default)]
struct Table {
    slots: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = 0;
const ZERO_KEY: u64 = 1;
/// Slots of a set that has never held anything (grown on first insert).
const FIRST: usize = 16;

fn stored(key: u64) -> u64 {
    if key == EMPTY {
        ZERO_KEY
    } else {
        key
    }
}

impl Table {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The slot a key's probe starts at. Keys are uniform, so their low
    /// bits are as good an index as any.
    fn home(&self, key: u64) -> usize {
        key as usize & self.mask()
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
                _ => i = (i + 1) & self.mask(),
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
            self.grow_to((self.slots.len() * 2).max(FIRST));
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
                _ => i = (i + 1) & self.mask(),
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
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
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

    fn prefetch(&self, key: u64) {
        if let Some(slot) = self.slots.get(self.home(stored(key))) {
            prefetch(slot);
        }
    }

    /// Rehash into `size` slots (a power of two, more than there are).
    fn grow_to(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        self.len = 0;
        for k in old.into_iter().filter(|&k| k != EMPTY) {
            let mut i = self.home(k);
            while self.slots[i] != EMPTY {
                i = (i + 1) & self.mask();
            }
            self.slots[i] = k;
            self.len += 1;
        }
    }
}

impl FromIterator<u64> for Keys {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut keys = Keys::default();
        for k in iter {
            keys.insert(k);
        }
        keys
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
    fn zero_is_a_key_like_any_other() {
        let mut k = Keys::default();
        assert!(!k.contains(0));
        assert!(k.insert(0));
        assert!(k.contains(0) && !k.insert(0));
        assert!(k.remove(0) && !k.contains(0) && k.len() == 0);
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
        k.insert(1); // sizes the array to FIRST slots
        let size = k.slots.len() as u64;
        let last = size - 1;
        let keys: Vec<u64> = (1..=5).map(|n| last + n * size).collect();
        for &key in &keys {
            k.insert(key);
        }
        for (n, &key) in keys.iter().enumerate() {
            assert!(k.remove(key));
            for &rest in &keys[n + 1..] {
                assert!(k.contains(rest), "lost {rest} after removing {key}");
            }
            assert!(k.contains(1));
        }
    }

    /// Key `n` of 64: its low 20 bits are one of -2, -1, 0, 1 (homes at
    /// both ends of any array up to 2^20 slots), never the key 0 or 1.
    fn crowded(n: u64) -> u64 {
        (n % 4).wrapping_sub(2) ^ ((n / 4 + 1) << 20)
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
