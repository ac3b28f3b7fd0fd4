//! A set of ids remembered for a while: `event_id` de-duplication and the
//! tombstones of ended calls and resolved promises.
//!
//! Ids are kept as 64-bit keyed hashes (SipHash-1-3 with a random key drawn
//! when the set is created), so an entry costs 16 bytes in the order and
//! 12 to 18 in the lookup table (see `keys`) whatever the id's length, and a sender cannot aim collisions. A false match needs two live
//! ids to share a random 64-bit hash: about n/2^64 per lookup, 1 in 10^13 for
//! a million remembered ids. The key is saved with the set in snapshots, so a
//! restarted daemon still recognises the ids it remembered.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use siphasher::sip::SipHasher13;

use super::keys::Keys;
use crate::event::Millis;

/// How many evictions ahead the oldest entries' slots are fetched into the
/// cache: enough for the fetch to land before its turn (each insert does
/// other work meanwhile), few enough that the line is still cached.
const FETCH_AHEAD: usize = 8;

pub struct ExpiringSet {
    key: (u64, u64),
    keys: Keys,
    /// Insertion order with expiry; the monitor's clock never goes back, so
    /// expiries are (almost) sorted and the front is always the next to go.
    order: VecDeque<(Millis, u64)>,
    ttl: Millis,
    max: usize,
}

/// The most entries whose room the order is given at once (64 MiB of
/// address space); a larger cap grows past it by doubling.
const ORDER_ROOM: usize = 1 << 22;

/// An order with room for `max` entries from the start. Growing by
/// doubling copied the whole order into fresh memory (8 MB at half a
/// million ids: tens of milliseconds on the pipeline); the room is only
/// address space until entries fill it, front to back, so it costs no
/// memory in use before then.
fn order_with_room(max: usize) -> VecDeque<(Millis, u64)> {
    VecDeque::with_capacity(max.saturating_add(1).min(ORDER_ROOM))
}

/// SipHash-1-3 of `id` under `key`: an id set's key for it, and the call
/// table's hash (which shares the ended set's key).
pub(super) fn keyed_hash(key: (u64, u64), id: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    id.hash(&mut h);
    h.finish()
}

impl ExpiringSet {
    pub fn new(ttl: Millis, max: usize) -> Self {
        // Two draws from std's per-process random source make the key.
        let seed = RandomState::new();
        let key = (seed.hash_one(0u8), seed.hash_one(1u8));
        ExpiringSet {
            key,
            keys: Keys::holding(max, []),
            order: order_with_room(max),
            ttl,
            max,
        }
    }

    /// The key of the set's hash, for a table that is to hash as it does.
    pub(super) fn hash_key(&self) -> (u64, u64) {
        self.key
    }

    /// The set's key for `id`: hashed once, then tested and inserted with
    /// [`ExpiringSet::contains_key`] and [`ExpiringSet::insert_key`].
    pub fn key(&self, id: &str) -> u64 {
        keyed_hash(self.key, id)
    }

    /// After loading from a snapshot: the current configuration's limits.
    /// A lower `max` forgets the oldest entries now.
    pub(crate) fn restored(mut self, ttl: Millis, max: usize) -> Self {
        self.ttl = ttl;
        self.max = max;
        self.keys.set_cap(max);
        while self.order.len() > max {
            self.forget_oldest();
        }
        let room = max.saturating_add(1).min(ORDER_ROOM);
        self.order.reserve(room.saturating_sub(self.order.len()));
        self
    }

    pub fn contains(&self, id: &str) -> bool {
        self.contains_key(self.key(id))
    }

    /// Start fetching `key`'s slot into the cache (see `Engine::prefetch`).
    pub fn prefetch(&self, key: u64) {
        self.keys.prefetch(key);
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.keys.contains(key)
    }

    /// Remember `id` until `now + ttl`. Past `max` entries the oldest is
    /// forgotten early: memory stays bounded whatever the traffic.
    pub fn insert(&mut self, id: &str, now: Millis) {
        self.insert_key(self.key(id), now)
    }

    /// [`ExpiringSet::insert`] with the id's key already computed.
    pub fn insert_key(&mut self, key: u64, now: Millis) {
        if self.keys.insert(key) {
            self.order.push_back((now.saturating_add(self.ttl), key));
            if self.order.len() > self.max {
                self.forget_oldest();
            }
        }
    }

    /// Drop the oldest entry. At the cap every insert evicts one, a cache
    /// miss at a random slot; the slots of the next few to go are fetched
    /// now, so that miss overlaps the work in between.
    fn forget_oldest(&mut self) {
        if let Some((_, old)) = self.order.pop_front() {
            self.keys.remove(old);
        }
        if let Some(&(_, next)) = self.order.get(FETCH_AHEAD) {
            self.keys.prefetch(next);
        }
    }

    /// Forget every entry whose time has passed.
    pub fn expire(&mut self, now: Millis) {
        while let Some(&(until, _)) = self.order.front() {
            if until > now {
                break;
            }
            self.forget_oldest();
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }
}

/// What a snapshot keeps: the hash key and the entries in expiry order
/// (the lookup set is rebuilt from them).
#[derive(Serialize)]
struct ImageRef<'a> {
    key: (u64, u64),
    order: &'a VecDeque<(Millis, u64)>,
}

/// A copy of what a snapshot keeps, taken at one instant (a memcpy of the
/// order) and encoded later, elsewhere, exactly as the set's own encoding.
#[derive(Serialize, Deserialize)]
pub(crate) struct Image {
    key: (u64, u64),
    order: VecDeque<(Millis, u64)>,
}

impl ExpiringSet {
    pub(crate) fn image(&self) -> Image {
        Image {
            key: self.key,
            order: self.order.clone(),
        }
    }
}

impl Serialize for ExpiringSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ImageRef {
            key: self.key,
            order: &self.order,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExpiringSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let image = Image::deserialize(d)?;
        Ok(ExpiringSet {
            key: image.key,
            // Sized for what it holds (the cap is not known yet): a
            // million restored ids take the 12 MiB they took before, not
            // the 16 of a set that doubled without a cap.
            keys: Keys::holding(image.order.len(), image.order.iter().map(|&(_, k)| k)),
            order: image.order,
            // Replaced by `restored` with the configuration's values.
            ttl: 0,
            max: usize::MAX,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_ttl_then_forgets() {
        let mut s = ExpiringSet::new(100, 10);
        s.insert("a", 0);
        s.insert("b", 50);
        assert!(s.contains("a") && s.contains("b") && !s.contains("c"));
        s.expire(99);
        assert!(s.contains("a"));
        s.expire(100);
        assert!(!s.contains("a") && s.contains("b"));
        s.expire(150);
        assert!(s.is_empty());
    }

    #[test]
    fn survives_a_round_trip_with_its_key() {
        let mut s = ExpiringSet::new(100, 10);
        s.insert("a", 0);
        s.insert("b", 50);
        let bytes = postcard::to_stdvec(&s).unwrap();
        let back: ExpiringSet = postcard::from_bytes(&bytes).unwrap();
        let mut back = back.restored(100, 10);
        assert!(back.contains("a") && back.contains("b") && !back.contains("c"));
        back.expire(100);
        assert!(!back.contains("a") && back.contains("b"));
        // A fresh set has another key: the same id hashes differently.
        assert_ne!(ExpiringSet::new(1, 1).key, s.key);
    }

    /// A set read back from a snapshot is sized as one filled under its
    /// cap, not as one that doubled without knowing it.
    #[test]
    fn a_restored_set_takes_the_room_of_its_ids() {
        let n = 100_000;
        let mut s = ExpiringSet::new(Millis::MAX / 4, n);
        for i in 0..n {
            s.insert(&format!("id-{i}"), 0);
        }
        let bytes = postcard::to_stdvec(&s).unwrap();
        let back: ExpiringSet = postcard::from_bytes(&bytes).unwrap();
        let back = back.restored(Millis::MAX / 4, n);
        assert_eq!(back.len(), n);
        assert_eq!(back.keys.slots(), s.keys.slots());
        // 100,000 at two thirds full: 64 tables of 3 * 2^10 slots.
        assert_eq!(s.keys.slots(), 64 * (3 << 10));
    }

    #[test]
    fn bounded_by_max() {
        let mut s = ExpiringSet::new(1_000, 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            s.insert(id, i as Millis);
        }
        assert_eq!(s.len(), 3);
        assert!(!s.contains("a") && s.contains("d"));
        s.insert("d", 10); // re-inserting is a no-op
        assert_eq!(s.len(), 3);
    }
}
