//! The call state machine: offered -> answered -> (hold_started -> hold_ended)* -> ended,
//! what each transition measures, and the eviction of calls left idle; and
//! the table the calls in flight live in ([`CallTable`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, RandomState};

use super::expiring::ExpiringSet;
use super::gauges::{Gauges, LaneKind};
use super::keys;
use super::ordered::Pool;
use super::Handle;
use super::{AgentId, AgentMeasure, Call, CallState, Engine, Measure, Observer, Reject};
use crate::event::{EndReason, Id, Millis, Reason};

const UNKNOWN_CALL: Reject = Reject::new(
    Reason::UnknownCall,
    "names a call that was never offered (or was evicted after call_ttl)",
);
const AFTER_END: Reject = Reject::new(Reason::InvalidTransition, "the call has already ended");
const CAPACITY: Reject = Reject::new(Reason::Capacity, "max_calls calls are already in flight");
const BACKWARDS: Reject = Reject::new(
    Reason::TimeGoesBackwards,
    "is earlier than the call's previous event",
);

impl Engine {
    pub(super) fn offered(
        &mut self,
        call: CallRef,
        queue: &str,
        site: Option<&str>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        // No call idle past call_ttl is left by now: the clock's advance to
        // `now` evicted them, so an id whose call went idle may be offered.
        if self.calls.contains(call) || self.ended.contains_key(call.hash) {
            return Err(Reject::new(
                Reason::DuplicateCall,
                "was already offered (call ids are never reused)",
            ));
        }
        if self.calls.len() >= self.settings.max_calls {
            return Err(CAPACITY);
        }
        let series = self.series_for(queue, site, obs);
        let c = Call {
            series,
            agent: None,
            offered: ts,
            last: ts,
            state: CallState::Waiting,
        };
        let Some(h) = self.calls.insert_ref(call, c) else {
            return Err(CAPACITY);
        };
        enter(&mut self.gauges, h, &c, now);
        obs.measure(series, now, Measure::Offered);
        Ok(())
    }

    pub(super) fn answered(
        &mut self,
        call: CallRef,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let (h, c) = call_at(&mut self.calls, &self.ended, call, ts)?;
        if c.state != CallState::Waiting {
            return Err(Reject::new(
                Reason::InvalidTransition,
                "the call was already answered",
            ));
        }
        let limits = self.series.get(c.series).limits;
        let wait = ts - c.offered;
        let rings = limits.rings(wait);
        let before = *c;
        c.state = CallState::Talking;
        c.last = ts;
        c.agent = agent;
        restate(&mut self.gauges, h, &before, c, now);
        self.arm_idle(h, ts);
        let late = rings > limits.max_rings;
        obs.measure(before.series, now, Measure::Answered { wait, rings, late });
        self.attribute(agent, AgentMeasure::Answered { late }, obs);
        Ok(())
    }

    pub(super) fn hold_started(
        &mut self,
        call: CallRef,
        agent: Option<AgentId>,
        ts: Millis,
        now: Millis,
        _obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let (h, c) = call_at(&mut self.calls, &self.ended, call, ts)?;
        match c.state {
            CallState::Talking => {
                let before = *c;
                c.state = CallState::OnHold;
                c.last = ts;
                // The agent who puts the caller on hold owns the hold.
                c.agent = agent.or(c.agent);
                restate(&mut self.gauges, h, &before, c, now);
                Ok(())
            }
            CallState::Waiting => Err(Reject::new(
                Reason::InvalidTransition,
                "hold on a call that was not answered",
            )),
            CallState::OnHold => Err(Reject::new(
                Reason::InvalidTransition,
                "the call is already on hold",
            )),
        }
    }

    pub(super) fn hold_ended(
        &mut self,
        call: CallRef,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let (h, c) = call_at(&mut self.calls, &self.ended, call, ts)?;
        if c.state != CallState::OnHold {
            return Err(Reject::new(
                Reason::InvalidTransition,
                "hold_ended while the call is not on hold",
            ));
        }
        let since = c.last;
        let before = *c;
        c.state = CallState::Talking;
        c.last = ts;
        restate(&mut self.gauges, h, &before, c, now);
        let (series, agent) = (c.series, c.agent);
        self.arm_idle(h, ts);
        self.hold_segment(series, agent, ts - since, now, obs);
        Ok(())
    }

    pub(super) fn ended(
        &mut self,
        call: CallRef,
        reason: EndReason,
        ts: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        let (h, c) = call_at(&mut self.calls, &self.ended, call, ts)?;
        let c = *c;
        self.calls.remove_ref(call);
        leave(&mut self.gauges, h, &c, now);
        self.ended.insert_key(call.hash, now);
        let limits = self.series.get(c.series).limits;
        match c.state {
            // Ringing and never answered: abandoned whatever the reason says,
            // unless the call was transferred elsewhere.
            CallState::Waiting if reason != EndReason::Transferred => {
                let wait = ts - c.offered;
                obs.measure(
                    c.series,
                    now,
                    Measure::Abandoned {
                        wait,
                        short: wait < limits.short_abandon,
                    },
                );
            }
            CallState::Waiting | CallState::Talking => {}
            // Ending on hold closes the open segment at the end of the call.
            CallState::OnHold => {
                self.hold_segment(c.series, c.agent, ts - c.last, now, obs);
            }
        }
        Ok(())
    }

    fn hold_segment(
        &self,
        series: super::SeriesId,
        agent: Option<AgentId>,
        duration: Millis,
        now: Millis,
        obs: &mut impl Observer,
    ) {
        let over_limit = duration > self.series.get(series).limits.hold_limit;
        obs.measure(
            series,
            now,
            Measure::HoldSegment {
                duration,
                over_limit,
            },
        );
        self.attribute(agent, AgentMeasure::HoldSegment { over_limit }, obs);
    }

    /// Start the eviction timer of call `h`, which starts talking at
    /// `last`. The entry of a call that ends or goes on hold stays until it
    /// comes up, `call_ttl` after `last` (never, for a `ts` in the year
    /// 9999), so calls answered and ended in a loop would grow the heap
    /// without end: once its entries outnumber the calls in flight twice
    /// over it is rebuilt, one entry per talking call. It stays within twice
    /// `max_calls` (plus a floor that keeps rebuilds rare), at an amortized
    /// constant cost per call. An entry names the call by its handle, which
    /// a later call may take: an entry counts only if the call in that slot
    /// is talking and due at the entry's moment, and then it is due.
    fn arm_idle(&mut self, h: Handle, last: Millis) {
        if self.idle.len() >= 2 * self.calls.len() + 1024 {
            self.rebuild_idle();
        } else {
            let at = last.saturating_add(self.settings.call_ttl);
            self.idle.push(Reverse((at, h)));
        }
    }

    /// One eviction timer per talking call, at its moment, in the heap's
    /// own room (the rebuild allocates nothing once the heap has grown).
    pub(super) fn rebuild_idle(&mut self) {
        let ttl = self.settings.call_ttl;
        let mut entries = std::mem::take(&mut self.idle).into_vec();
        entries.clear();
        entries.extend(
            self.calls
                .handles()
                .filter(|(_, c)| c.state == CallState::Talking)
                .map(|(h, c)| Reverse((c.last.saturating_add(ttl), h))),
        );
        self.idle = BinaryHeap::from(entries);
    }

    /// Forget a call without an outcome: a platform source's reconnect
    /// found that the PBX no longer has it (AMI and ESL do not replay what
    /// was missed). Measured as evicted, never guessed into an answer or an
    /// abandon; `false` when no such call is in flight. Applied at the
    /// monitor's clock, as eviction is.
    pub fn forget(&mut self, call: &str, obs: &mut impl Observer) -> bool {
        let Some((h, c)) = self.calls.remove(call) else {
            return false;
        };
        let now = self.clock;
        leave(&mut self.gauges, h, &c, now);
        obs.measure(c.series, now, Measure::Evicted);
        true
    }

    /// Evict every call with no event for more than `call_ttl`, those whose
    /// `last + call_ttl` the clock has passed: `due` holds the waiting and
    /// held ones as (moment, call) (their lanes took them off), talking ones
    /// come off `idle`. `due` is left empty, its room kept.
    pub(super) fn evict(
        &mut self,
        due: &mut Vec<(Millis, Handle)>,
        now: Millis,
        obs: &mut impl Observer,
    ) {
        let ttl = self.settings.call_ttl;
        while let Some(&Reverse((at, h))) = self.idle.peek() {
            if at >= now {
                break;
            }
            self.idle.pop();
            // Only the entry of the current talk of the call in the slot.
            let current = self
                .calls
                .get_handle(h)
                .is_some_and(|c| c.state == CallState::Talking && c.last.saturating_add(ttl) == at);
            if current {
                due.push((at, h));
            }
        }
        // One order whatever the structure each came from: moment, then id.
        let calls = &self.calls;
        due.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| calls.id(a.1).cmp(&calls.id(b.1)))
        });
        // A stale entry and the current one of the same call.
        due.dedup();
        for &(_, h) in due.iter() {
            let Some(c) = self.calls.remove_handle(h) else {
                continue;
            };
            if c.state == CallState::Talking {
                self.gauges.talking(c.series, false);
            }
            obs.measure(c.series, now, Measure::Evicted);
        }
        due.clear();
    }
}

/// The call an event names, checked for existence and time order. A free
/// function over the fields it reads, so the caller keeps the other fields
/// (the gauges, the series) while it holds the call.
fn call_at<'a>(
    calls: &'a mut CallTable,
    ended: &ExpiringSet,
    call: CallRef,
    ts: Millis,
) -> Result<(Handle, &'a mut Call), Reject> {
    match calls.find_ref(call) {
        None if ended.contains_key(call.hash) => Err(AFTER_END),
        None => Err(UNKNOWN_CALL),
        Some((_, c)) if ts < c.last => Err(BACKWARDS),
        Some(found) => Ok(found),
    }
}

/// Count call `h` in the gauges of its state.
pub(super) fn enter(gauges: &mut Gauges, h: Handle, c: &Call, now: Millis) {
    match c.state {
        CallState::Waiting => {
            gauges.enter_call(c.series, LaneKind::Waiting, c.offered, h, c.agent, now)
        }
        CallState::Talking => gauges.talking(c.series, true),
        CallState::OnHold => gauges.enter_call(c.series, LaneKind::OnHold, c.last, h, c.agent, now),
    }
}

/// Uncount call `h` from the gauges of its state.
fn leave(gauges: &mut Gauges, h: Handle, c: &Call, now: Millis) {
    match c.state {
        CallState::Waiting => gauges.leave_call(c.series, LaneKind::Waiting, c.offered, h, now),
        CallState::Talking => gauges.talking(c.series, false),
        CallState::OnHold => gauges.leave_call(c.series, LaneKind::OnHold, c.last, h, now),
    }
}

fn restate(gauges: &mut Gauges, h: Handle, before: &Call, after: &Call, now: Millis) {
    leave(gauges, h, before, now);
    enter(gauges, h, after, now);
}

/// The calls in flight, by id: one slot per call, in a [`Pool`], holding the
/// id and the call (56 bytes), and an open-addressing index of 8-byte
/// entries (the slot and 32 bits of the id's hash) between 0.44 and 0.67
/// full (sized as the id sets' tables), so a call costs about 56 + 12 to
/// 18 bytes here, the id stored once.
///
/// The hash is SipHash-1-3 keyed at random when the engine is created, so
/// a sender cannot aim collisions; it is the key of the ended calls' set
/// (the same function, the same key), so an event's call id is hashed once
/// for both ([`CallRef`]); probing is linear and a removal shifts the
/// entries that follow back (no tombstones). Slots freed go on a free list
/// and are reused: in steady state the table allocates nothing. Like a
/// `HashMap`, it keeps the room of its busiest moment.
#[derive(Clone)]
pub(super) struct CallTable {
    slots: Pool<Slot>,
    /// The first free slot, or [`NO_SLOT`].
    free: u32,
    /// `hash << 32 | slot`, or [`EMPTY`]; sized as the id sets' tables
    /// (`keys::next_size`), at most two thirds full.
    index: Vec<u64>,
    len: usize,
    key: (u64, u64),
}

#[derive(Clone)]
pub(super) enum Slot {
    Live { id: Id, call: Call },
    Free { next: u32 },
}

const EMPTY: u64 = u64::MAX;
/// No slot: also the one handle never given (it would read as `EMPTY`).
const NO_SLOT: u32 = u32::MAX;

/// A call id with its hash, as [`CallTable::hash`] (and the ended calls'
/// set) gives it: computed once per event, while the event before it is
/// applied, and used for every lookup the event makes.
#[derive(Clone, Copy)]
pub(super) struct CallRef<'a> {
    pub id: &'a str,
    pub hash: u64,
}

impl Default for CallTable {
    fn default() -> Self {
        let seed = RandomState::new();
        CallTable::keyed((seed.hash_one(0u8), seed.hash_one(1u8)))
    }
}

impl CallTable {
    /// An empty table hashing with `key` (the ended calls' set's).
    pub(super) fn keyed(key: (u64, u64)) -> Self {
        CallTable {
            slots: Pool::default(),
            free: NO_SLOT,
            index: Vec::new(),
            len: 0,
            key,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// `id`'s hash, as `ExpiringSet::key` gives it under the same key.
    pub(super) fn hash(&self, id: &str) -> u64 {
        super::expiring::keyed_hash(self.key, id)
    }

    /// The 32 bits of a hash an index entry keeps.
    fn fold(hash: u64) -> u32 {
        (hash ^ (hash >> 32)) as u32
    }

    /// `id` with its hash.
    pub(super) fn call_ref<'a>(&self, id: &'a str) -> CallRef<'a> {
        CallRef {
            id,
            hash: self.hash(id),
        }
    }

    /// The index position an entry's (or a hash's) probe starts at.
    fn home(&self, hash: u32) -> usize {
        keys::scale(u64::from(hash) << 32, self.index.len())
    }

    /// Where the call is in the index, and its slot.
    fn locate(&self, call: CallRef) -> Option<(usize, Handle)> {
        if self.index.is_empty() {
            return None;
        }
        let (id, hash) = (call.id, Self::fold(call.hash));
        let size = self.index.len();
        let mut pos = self.home(hash);
        loop {
            let e = *self.index.get(pos)?;
            if e == EMPTY {
                return None;
            }
            let h = e as u32;
            if (e >> 32) as u32 == hash && self.id(h).is_some_and(|live| live == id) {
                return Some((pos, h));
            }
            pos = keys::after(pos, size);
        }
    }

    #[cfg(test)]
    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.contains(self.call_ref(id))
    }

    pub(super) fn contains(&self, call: CallRef) -> bool {
        self.locate(call).is_some()
    }

    /// Start fetching the index entry a call's probe begins at.
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(e) = self.index.get(self.home(Self::fold(hash))) {
            keys::prefetch(e);
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<&Call> {
        let (_, h) = self.locate(self.call_ref(id))?;
        self.get_handle(h)
    }

    #[cfg(test)]
    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Call> {
        self.find_mut(id).map(|(_, c)| c)
    }

    #[cfg(test)]
    pub(super) fn find_mut(&mut self, id: &str) -> Option<(Handle, &mut Call)> {
        self.find_ref(self.call_ref(id))
    }

    pub(super) fn find_ref(&mut self, call: CallRef) -> Option<(Handle, &mut Call)> {
        let (_, h) = self.locate(call)?;
        match self.slots.get_mut(h) {
            Some(Slot::Live { call, .. }) => Some((h, call)),
            _ => None,
        }
    }

    pub(super) fn get_handle(&self, h: Handle) -> Option<&Call> {
        match self.slots.get(h) {
            Some(Slot::Live { call, .. }) => Some(call),
            _ => None,
        }
    }

    /// The id of the call in slot `h`.
    pub(super) fn id(&self, h: Handle) -> Option<&Id> {
        match self.slots.get(h) {
            Some(Slot::Live { id, .. }) => Some(id),
            _ => None,
        }
    }

    /// Put `call` under `id` (replacing the call there, if any) and return
    /// its handle; `None` only past 2^32 - 1 slots, which no cap allows.
    pub(super) fn insert(&mut self, id: Id, call: Call) -> Option<Handle> {
        let hash = self.hash(&id);
        self.insert_hashed(id, hash, call)
    }

    /// [`CallTable::insert`] under a [`CallRef`]'s id and hash.
    pub(super) fn insert_ref(&mut self, at: CallRef, call: Call) -> Option<Handle> {
        self.insert_hashed(at.id.into(), at.hash, call)
    }

    fn insert_hashed(&mut self, id: Id, hash: u64, call: Call) -> Option<Handle> {
        if let Some((_, h)) = self.locate(CallRef { id: &id, hash }) {
            if let Some(Slot::Live { call: old, .. }) = self.slots.get_mut(h) {
                *old = call;
            }
            return Some(h);
        }
        if (self.len + 1) * 3 > self.index.len() * 2 {
            self.grow();
        }
        let slot = Slot::Live { id, call };
        let h = if self.free != NO_SLOT {
            let h = self.free;
            let cell = self.slots.get_mut(h)?;
            if let Slot::Free { next } = cell {
                self.free = *next;
            }
            *cell = slot;
            h
        } else {
            self.slots.push(slot)?
        };
        self.place(u64::from(Self::fold(hash)) << 32 | u64::from(h));
        self.len += 1;
        Some(h)
    }

    /// Put an index entry at the first empty position from its home.
    fn place(&mut self, entry: u64) {
        let size = self.index.len();
        let mut pos = self.home((entry >> 32) as u32);
        while let Some(e) = self.index.get_mut(pos) {
            if *e == EMPTY {
                *e = entry;
                return;
            }
            pos = keys::after(pos, size);
        }
    }

    fn grow(&mut self) {
        let size = keys::next_size(self.index.len());
        let old = std::mem::replace(&mut self.index, vec![EMPTY; size]);
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            self.place(e);
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<(Handle, Call)> {
        self.remove_ref(self.call_ref(id))
    }

    pub(super) fn remove_ref(&mut self, call: CallRef) -> Option<(Handle, Call)> {
        let (pos, h) = self.locate(call)?;
        self.unindex(pos);
        self.free_slot(h).map(|c| (h, c))
    }

    /// Remove the call in slot `h`, if one is there.
    pub(super) fn remove_handle(&mut self, h: Handle) -> Option<Call> {
        let id = self.id(h)?;
        let (pos, found) = self.locate(self.call_ref(id))?;
        debug_assert_eq!(found, h);
        self.unindex(pos);
        self.free_slot(h)
    }

    fn free_slot(&mut self, h: Handle) -> Option<Call> {
        let cell = self.slots.get_mut(h)?;
        match std::mem::replace(cell, Slot::Free { next: self.free }) {
            Slot::Live { call, .. } => {
                self.free = h;
                self.len -= 1;
                Some(call)
            }
            free => {
                *cell = free;
                None
            }
        }
    }

    /// Empty index position `pos`, shifting back the entries after it that
    /// would otherwise be cut off from their home.
    fn unindex(&mut self, mut pos: usize) {
        let size = self.index.len();
        let mut next = pos;
        loop {
            next = keys::after(next, size);
            let e = self.index.get(next).copied().unwrap_or(EMPTY);
            if e == EMPTY {
                break;
            }
            let home = self.home((e >> 32) as u32);
            // `e` may move to `pos` unless its home lies in (pos, next].
            let stays = if pos <= next {
                pos < home && home <= next
            } else {
                pos < home || home <= next
            };
            if !stays {
                if let Some(cell) = self.index.get_mut(pos) {
                    *cell = e;
                }
                pos = next;
            }
        }
        if let Some(cell) = self.index.get_mut(pos) {
            *cell = EMPTY;
        }
    }

    /// Every call in flight with its id, in slot order; of exact length
    /// (a snapshot writes the count first).
    pub(super) fn iter(&self) -> Iter<impl Iterator<Item = &Slot>> {
        Iter {
            slots: self.slots.iter(),
            left: self.len,
        }
    }

    /// Every call in flight with its handle.
    pub(super) fn handles(&self) -> impl Iterator<Item = (Handle, &Call)> {
        (0..).zip(self.slots.iter()).filter_map(|(h, s)| match s {
            Slot::Live { call, .. } => Some((h, call)),
            Slot::Free { .. } => None,
        })
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Call> {
        self.slots.iter_mut().filter_map(|s| match s {
            Slot::Live { call, .. } => Some(call),
            Slot::Free { .. } => None,
        })
    }
}

pub(super) struct Iter<S> {
    slots: S,
    left: usize,
}

impl<'a, S: Iterator<Item = &'a Slot>> Iterator for Iter<S> {
    type Item = (&'a Id, &'a Call);

    fn next(&mut self) -> Option<Self::Item> {
        for s in self.slots.by_ref() {
            if let Slot::Live { id, call } = s {
                self.left = self.left.saturating_sub(1);
                return Some((id, call));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a, S: Iterator<Item = &'a Slot>> ExactSizeIterator for Iter<S> {}

impl FromIterator<(Id, Call)> for CallTable {
    fn from_iter<I: IntoIterator<Item = (Id, Call)>>(iter: I) -> Self {
        let mut t = CallTable::default();
        for (id, c) in iter {
            t.insert(id, c);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev as at, Recorded};
    use super::super::*;
    use super::{CallTable, Slot};
    use crate::event::{Body, EndReason};
    use proptest::prelude::*;

    fn call(n: u8) -> Call {
        Call {
            series: u32::from(n),
            agent: None,
            offered: 0,
            last: Millis::from(n),
            state: CallState::Waiting,
        }
    }

    #[test]
    fn a_slot_holds_the_id_and_the_call_and_nothing_more() {
        assert_eq!(std::mem::size_of::<Call>(), 32);
        assert_eq!(std::mem::size_of::<Slot>(), 56);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u8),
        Remove(u16),
        RemoveHandle(u16),
    }

    proptest! {
        /// The table is a map: against `HashMap`, over a key space narrow
        /// enough that probes collide, removals shift and slots are reused.
        #[test]
        fn behaves_as_a_hashmap(ops in proptest::collection::vec(
            prop_oneof![
                3 => (0u16..200, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
                2 => (0u16..200).prop_map(Op::Remove),
                1 => (0u16..200).prop_map(Op::RemoveHandle),
            ],
            0..600,
        )) {
            let mut t = CallTable::default();
            let mut m: HashMap<Id, (u32, u8)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let id = Id::from(format!("call-{k}"));
                        let h = t.insert(id.clone(), call(v));
                        prop_assert!(h.is_some());
                        let h = h.unwrap_or_default();
                        if let Some(&(old, _)) = m.get(&id) {
                            prop_assert_eq!(old, h, "a call keeps its handle");
                        }
                        m.insert(id, (h, v));
                    }
                    Op::Remove(k) => {
                        let id = format!("call-{k}");
                        let got = t.remove(&id).map(|(h, c)| (h, c.series as u8));
                        prop_assert_eq!(got, m.remove(id.as_str()));
                    }
                    Op::RemoveHandle(h) => {
                        let h = u32::from(h % 64);
                        let id = m.iter().find(|(_, (mh, _))| *mh == h).map(|(id, _)| id.clone());
                        let want = id.and_then(|id| m.remove(&id)).map(|(_, v)| v);
                        prop_assert_eq!(t.remove_handle(h).map(|c| c.series as u8), want);
                    }
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for (id, &(h, v)) in &m {
                prop_assert_eq!(t.get(id).map(|c| c.series as u8), Some(v));
                prop_assert_eq!(t.id(h), Some(id));
                prop_assert!(t.contains_key(id));
            }
            prop_assert!(!t.contains_key("call-none"));
            let mut listed: Vec<_> = t.iter().map(|(id, c)| (id.clone(), c.series as u8)).collect();
            listed.sort();
            let mut want: Vec<_> = m.iter().map(|(id, &(_, v))| (id.clone(), v)).collect();
            want.sort();
            prop_assert_eq!(t.iter().len(), want.len());
            prop_assert_eq!(listed, want);
        }
    }

    /// Calls answered and ended at once, stamped in the year 9999 (their
    /// eviction timers never come up), in a loop: the heap of timers stays
    /// bounded. A call put on hold and back many times is still evicted
    /// exactly `call_ttl` after its last event.
    #[test]
    fn calls_ended_early_or_busy_leave_no_timer_behind() {
        let ttl = 60_000;
        let mut e = Engine::new(Settings {
            clock: ClockMode::Wall,
            call_ttl: ttl,
            ..Settings::default()
        });
        let mut rec = Recorded::default();
        let wall = 1_795_424_400_000; // 2026-11-23T09:00:00Z
        let far = 253_402_214_400_000; // 9999-12-31T00:00:00Z
        let mut apply = |e: &mut Engine, ts, body| {
            assert_eq!(e.apply(&at(ts, body), wall, &mut rec), Verdict::Accepted);
        };
        let offer = |id: &str| Body::CallOffered {
            call: id.into(),
            queue: "q".into(),
        };
        let busy = || Id::from("busy");
        apply(&mut e, wall, offer("busy"));
        apply(&mut e, wall, Body::CallAnswered { call: busy() });
        let mut last = wall;
        for i in 0..20_000 {
            let id = format!("churn-{i}");
            // On the wall clock a far `ts` leaves the clock where it is.
            apply(&mut e, far, offer(&id));
            let answer = Body::CallAnswered {
                call: id.as_str().into(),
            };
            apply(&mut e, far, answer);
            let end = Body::CallEnded {
                call: id.as_str().into(),
                reason: EndReason::Completed,
            };
            apply(&mut e, far, end);
            last = wall + i / 4;
            let hold = if i % 2 == 0 {
                Body::HoldStarted { call: busy() }
            } else {
                Body::HoldEnded { call: busy() }
            };
            apply(&mut e, last, hold);
            // Checked at each offer, with the call offered counted.
            assert!(
                e.idle.len() <= 2 * (e.calls.len() + 1) + 1024,
                "{}",
                e.idle.len()
            );
        }
        let mut rec = Recorded::default();
        e.advance(last + ttl, &mut rec);
        assert!(rec.measures.is_empty(), "not at exactly call_ttl");
        assert_eq!(e.calls_in_flight(), 1);
        e.advance(last + ttl + 1, &mut rec);
        assert_eq!(rec.measures, vec![(0, Measure::Evicted)]);
        assert_eq!(e.calls_in_flight(), 0);
        assert_eq!(e.live()[0], Live::default());
    }
}
