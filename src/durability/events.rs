//! The journal's binary form of a decoded frame: its events (with their
//! index in the frame) and the reasons of the elements that failed
//! decoding, which is everything replaying the frame needs, in a fraction
//! of the frame text's bytes and without JSON to parse again.
//!
//! Why not the frame text: writing it costs a copy into the page cache per
//! byte (on the hot path the largest single cost) and decoding it again is
//! most of a replay's work. The events are the decoder's output, so a
//! replay applies exactly what live applied; `tests` check that the round
//! trip gives back the decoder's output for any frame.
//!
//! Layout (integers little-endian, `n` a LEB128 varint):
//! `[n rejects][reason: u8]* [n events]` then per event
//! `[n index][kind: u8][flags: u8][ts]`, the optional `event_id`,
//! `site`, `agent` (flags bits 0, 1, 2) and the kind's fields.
//!
//! Two forms share that layout and differ in `ts` and strings:
//! - packed (journal tag 7, what [`encode`] writes): `ts` is the zigzag
//!   varint of its difference from the frame's previous event's (the first
//!   from 0), and a string is `[n shared][n length][UTF-8 bytes]`: the
//!   first `shared` bytes of the previous string of the same kind in the
//!   frame (event id, site, agent, call, queue, promise), then the rest.
//!   Ids of one platform differ in their last characters, and a call's
//!   events often follow each other: a frame of whole call lives takes
//!   12.8 bytes per event against the plain form's 39 (a test checks it
//!   stays under two fifths), interleaved calls 20 against 30 (the replay
//!   bench), so less to copy into the page cache, write to disk and read
//!   back at a replay.
//! - plain (tag 6, what versions before the packed form wrote, still
//!   replayed by [`decode_plain`]): `ts` is an `i64` and a string is
//!   `[n length][UTF-8 bytes]`.
//!
//! A record decodes on its own (nothing is shared across records), so a
//! replay can start at any record. Codes are fixed here, whatever order
//! the enums list their variants in.

use compact_str::CompactString;

use crate::event::{Body, EndReason, Event, EventKind, Millis, PromiseTarget, Reason};

/// A body that is not this encoding (corruption that the record's checksum
/// missed, or a bug): the record cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a journal frame record whose events cannot be decoded")]
pub struct Undecodable;

const EVENT_ID: u8 = 1;
const SITE: u8 = 2;
const AGENT: u8 = 4;

/// The kinds of string a frame's events hold: each is shared against the
/// previous string of its kind in the packed form.
#[derive(Clone, Copy)]
enum Slot {
    EventId,
    Site,
    Agent,
    Call,
    Queue,
    Promise,
}

const SLOTS: usize = 6;

/// How a form writes what the two forms differ in.
trait Put<'a> {
    fn ts(&mut self, ts: Millis, out: &mut Vec<u8>);
    fn text(&mut self, slot: Slot, s: &'a str, out: &mut Vec<u8>);
}

/// The plain form (tag 6).
struct Plain;

impl<'a> Put<'a> for Plain {
    fn ts(&mut self, ts: Millis, out: &mut Vec<u8>) {
        out.extend_from_slice(&ts.to_le_bytes());
    }

    fn text(&mut self, _: Slot, s: &'a str, out: &mut Vec<u8>) {
        string(s, out);
    }
}

/// The packed form (tag 7): what the frame's previous event left.
#[derive(Default)]
struct Packing<'a> {
    ts: Millis,
    prev: [&'a str; SLOTS],
}

impl<'a> Put<'a> for Packing<'a> {
    fn ts(&mut self, ts: Millis, out: &mut Vec<u8>) {
        varint(zigzag(ts.wrapping_sub(self.ts)), out);
        self.ts = ts;
    }

    fn text(&mut self, slot: Slot, s: &'a str, out: &mut Vec<u8>) {
        let prev = &mut self.prev[slot as usize];
        let mut shared = prev
            .bytes()
            .zip(s.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        // Equal bytes so far: a boundary in one string is one in the other.
        while !s.is_char_boundary(shared) {
            shared -= 1;
        }
        varint(shared as u64, out);
        string(&s[shared..], out);
        *prev = s;
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Encode a decoded frame onto `out`, in the packed form.
pub fn encode(events: &[(u32, Event)], rejects: &[Reason], out: &mut Vec<u8>) {
    encode_with(events, rejects, out, &mut Packing::default());
}

/// Encode in the plain form, as versions before the packed one did: for
/// tests and tools that write the journals those versions left.
pub fn encode_plain(events: &[(u32, Event)], rejects: &[Reason], out: &mut Vec<u8>) {
    encode_with(events, rejects, out, &mut Plain);
}

fn encode_with<'a>(
    events: &'a [(u32, Event)],
    rejects: &[Reason],
    out: &mut Vec<u8>,
    put: &mut impl Put<'a>,
) {
    varint(rejects.len() as u64, out);
    out.extend(rejects.iter().map(|&r| reason_code(r)));
    varint(events.len() as u64, out);
    for (index, ev) in events {
        varint(u64::from(*index), out);
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        let flags = flag(ev.event_id.is_some(), EVENT_ID)
            | flag(ev.site.is_some(), SITE)
            | flag(ev.agent.is_some(), AGENT);
        out.push(kind_code(ev.body.kind()));
        out.push(flags);
        put.ts(ev.ts, out);
        let optional = [
            (Slot::EventId, &ev.event_id),
            (Slot::Site, &ev.site),
            (Slot::Agent, &ev.agent),
        ];
        for (slot, s) in optional {
            if let Some(s) = s {
                put.text(slot, s, out);
            }
        }
        match &ev.body {
            Body::CallOffered { call, queue } => {
                put.text(Slot::Call, call, out);
                put.text(Slot::Queue, queue, out);
            }
            Body::CallAnswered { call } | Body::HoldStarted { call } | Body::HoldEnded { call } => {
                put.text(Slot::Call, call, out)
            }
            Body::CallEnded { call, reason } => {
                put.text(Slot::Call, call, out);
                out.push(end_code(*reason));
            }
            Body::CallbackPromised {
                promise,
                due,
                target,
            } => {
                put.text(Slot::Promise, promise, out);
                out.extend_from_slice(&due.to_le_bytes());
                match target {
                    PromiseTarget::Queue { queue, call: None } => {
                        out.push(0);
                        put.text(Slot::Queue, queue, out);
                    }
                    PromiseTarget::Queue {
                        queue,
                        call: Some(call),
                    } => {
                        out.push(1);
                        put.text(Slot::Queue, queue, out);
                        put.text(Slot::Call, call, out);
                    }
                    PromiseTarget::Call { call } => {
                        out.push(2);
                        put.text(Slot::Call, call, out);
                    }
                }
            }
            Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } => {
                put.text(Slot::Promise, promise, out)
            }
            Body::Clock => {}
        }
    }
}

/// The events and reject reasons [`encode`] wrote.
pub type Decoded = (Vec<(u32, Event)>, Vec<Reason>);

/// Decode what [`encode`] wrote (the packed form); anything else is
/// [`Undecodable`].
pub fn decode(bytes: &[u8]) -> Result<Decoded, Undecodable> {
    decode_with(bytes, &mut Unpacking::default())
}

/// Decode the plain form, what versions before the packed one wrote.
pub fn decode_plain(bytes: &[u8]) -> Result<Decoded, Undecodable> {
    decode_with(bytes, &mut Plain)
}

fn decode_with(bytes: &[u8], take: &mut impl Take) -> Result<Decoded, Undecodable> {
    let mut r = Reader(bytes);
    let rejects = r.count()?;
    let reasons = (0..rejects)
        .map(|_| reason_of(r.byte()?))
        .collect::<Result<Vec<_>, _>>()?;
    let n = r.count()?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(r.event(take)?);
    }
    if !r.0.is_empty() {
        return Err(Undecodable);
    }
    Ok((events, reasons))
}

/// How a form reads what the two forms differ in.
trait Take {
    fn ts(&mut self, r: &mut Reader) -> Result<Millis, Undecodable>;
    fn text(&mut self, slot: Slot, r: &mut Reader) -> Result<CompactString, Undecodable>;
}

impl Take for Plain {
    fn ts(&mut self, r: &mut Reader) -> Result<Millis, Undecodable> {
        r.millis()
    }

    fn text(&mut self, _: Slot, r: &mut Reader) -> Result<CompactString, Undecodable> {
        r.str().map(CompactString::new)
    }
}

/// The packed form being read: what the frame's previous event left, the
/// strings in buffers kept for the frame (so sharing allocates nothing).
#[derive(Default)]
struct Unpacking {
    ts: Millis,
    prev: [String; SLOTS],
}

impl Take for Unpacking {
    fn ts(&mut self, r: &mut Reader) -> Result<Millis, Undecodable> {
        self.ts = self.ts.wrapping_add(unzigzag(r.varint()?));
        Ok(self.ts)
    }

    fn text(&mut self, slot: Slot, r: &mut Reader) -> Result<CompactString, Undecodable> {
        let shared = usize::try_from(r.varint()?).map_err(|_| Undecodable)?;
        let prev = &mut self.prev[slot as usize];
        if shared > prev.len() || !prev.is_char_boundary(shared) {
            return Err(Undecodable);
        }
        let rest = r.str()?;
        prev.truncate(shared);
        prev.push_str(rest);
        Ok(CompactString::new(prev.as_str()))
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn string(s: &str, out: &mut Vec<u8>) {
    varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Undecodable> {
        let (&b, rest) = self.0.split_first().ok_or(Undecodable)?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Undecodable> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(Undecodable)
    }

    /// A count of items that each take at least a byte: never more than
    /// the bytes left, so a corrupt count cannot make a huge allocation.
    fn count(&mut self) -> Result<usize, Undecodable> {
        let n = usize::try_from(self.varint()?).map_err(|_| Undecodable)?;
        if n > self.0.len() {
            return Err(Undecodable);
        }
        Ok(n)
    }

    fn millis(&mut self) -> Result<Millis, Undecodable> {
        let (b, rest) = self.0.split_first_chunk::<8>().ok_or(Undecodable)?;
        self.0 = rest;
        Ok(Millis::from_le_bytes(*b))
    }

    /// `[n length][UTF-8 bytes]`, borrowed.
    fn str(&mut self) -> Result<&str, Undecodable> {
        let len = usize::try_from(self.varint()?).map_err(|_| Undecodable)?;
        if len > self.0.len() {
            return Err(Undecodable);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|_| Undecodable)
    }

    fn event(&mut self, take: &mut impl Take) -> Result<(u32, Event), Undecodable> {
        let index = u32::try_from(self.varint()?).map_err(|_| Undecodable)?;
        let kind = kind_of(self.byte()?)?;
        let flags = self.byte()?;
        if flags & !(EVENT_ID | SITE | AGENT) != 0 {
            return Err(Undecodable);
        }
        let ts = take.ts(self)?;
        let mut optional = |bit: u8, slot: Slot| -> Result<Option<CompactString>, Undecodable> {
            if flags & bit != 0 {
                take.text(slot, self).map(Some)
            } else {
                Ok(None)
            }
        };
        let event_id = optional(EVENT_ID, Slot::EventId)?;
        let site = optional(SITE, Slot::Site)?;
        let agent = optional(AGENT, Slot::Agent)?;
        let body = match kind {
            EventKind::CallOffered => Body::CallOffered {
                call: take.text(Slot::Call, self)?,
                queue: take.text(Slot::Queue, self)?,
            },
            EventKind::CallAnswered => Body::CallAnswered {
                call: take.text(Slot::Call, self)?,
            },
            EventKind::HoldStarted => Body::HoldStarted {
                call: take.text(Slot::Call, self)?,
            },
            EventKind::HoldEnded => Body::HoldEnded {
                call: take.text(Slot::Call, self)?,
            },
            EventKind::CallEnded => Body::CallEnded {
                call: take.text(Slot::Call, self)?,
                reason: end_of(self.byte()?)?,
            },
            EventKind::CallbackPromised => {
                let promise = take.text(Slot::Promise, self)?;
                let due = self.millis()?;
                let target = match self.byte()? {
                    0 => PromiseTarget::Queue {
                        queue: take.text(Slot::Queue, self)?,
                        call: None,
                    },
                    1 => PromiseTarget::Queue {
                        queue: take.text(Slot::Queue, self)?,
                        call: Some(take.text(Slot::Call, self)?),
                    },
                    2 => PromiseTarget::Call {
                        call: take.text(Slot::Call, self)?,
                    },
                    _ => return Err(Undecodable),
                };
                Body::CallbackPromised {
                    promise,
                    due,
                    target,
                }
            }
            EventKind::CallbackCompleted => Body::CallbackCompleted {
                promise: take.text(Slot::Promise, self)?,
            },
            EventKind::CallbackCancelled => Body::CallbackCancelled {
                promise: take.text(Slot::Promise, self)?,
            },
            EventKind::Clock => Body::Clock,
        };
        Ok((
            index,
            Event {
                ts,
                event_id,
                site,
                agent,
                body,
            },
        ))
    }
}

/// The fixed codes: (code, value) pairs, looked up both ways.
const KINDS: [(u8, EventKind); 9] = [
    (0, EventKind::CallOffered),
    (1, EventKind::CallAnswered),
    (2, EventKind::HoldStarted),
    (3, EventKind::HoldEnded),
    (4, EventKind::CallEnded),
    (5, EventKind::CallbackPromised),
    (6, EventKind::CallbackCompleted),
    (7, EventKind::CallbackCancelled),
    (8, EventKind::Clock),
];

const REASONS: [(u8, Reason); 13] = [
    (0, Reason::MalformedJson),
    (1, Reason::NotAnObject),
    (2, Reason::UnknownType),
    (3, Reason::MissingField),
    (4, Reason::InvalidField),
    (5, Reason::UnknownCall),
    (6, Reason::DuplicateCall),
    (7, Reason::InvalidTransition),
    (8, Reason::TimeGoesBackwards),
    (9, Reason::UnknownPromise),
    (10, Reason::DuplicatePromise),
    (11, Reason::AlreadyResolved),
    (12, Reason::Capacity),
];

const ENDS: [(u8, EndReason); 4] = [
    (0, EndReason::Completed),
    (1, EndReason::Abandoned),
    (2, EndReason::Transferred),
    (3, EndReason::Failed),
];

fn code<T: PartialEq + Copy>(table: &[(u8, T)], v: T) -> u8 {
    // Every variant is in its table (the tests check it).
    table
        .iter()
        .find(|(_, t)| *t == v)
        .map_or(u8::MAX, |(c, _)| *c)
}

fn of<T: Copy>(table: &[(u8, T)], c: u8) -> Result<T, Undecodable> {
    table
        .iter()
        .find(|(code, _)| *code == c)
        .map(|(_, t)| *t)
        .ok_or(Undecodable)
}

fn kind_code(k: EventKind) -> u8 {
    code(&KINDS, k)
}
fn kind_of(c: u8) -> Result<EventKind, Undecodable> {
    of(&KINDS, c)
}
fn reason_code(r: Reason) -> u8 {
    code(&REASONS, r)
}
fn reason_of(c: u8) -> Result<Reason, Undecodable> {
    of(&REASONS, c)
}
fn end_code(r: EndReason) -> u8 {
    code(&ENDS, r)
}
fn end_of(c: u8) -> Result<EndReason, Undecodable> {
    of(&ENDS, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_variant_has_a_code_and_codes_are_distinct() {
        for k in EventKind::ALL {
            assert_eq!(kind_of(kind_code(k)), Ok(k));
        }
        for r in Reason::ALL {
            assert_eq!(reason_of(reason_code(r)), Ok(r));
        }
        for e in [
            EndReason::Completed,
            EndReason::Abandoned,
            EndReason::Transferred,
            EndReason::Failed,
        ] {
            assert_eq!(end_of(end_code(e)), Ok(e));
        }
        assert_eq!(KINDS.len(), EventKind::ALL.len());
        assert_eq!(REASONS.len(), Reason::ALL.len());
    }

    #[test]
    fn an_empty_frame_is_two_bytes() {
        let mut out = Vec::new();
        encode(&[], &[], &mut out);
        assert_eq!(out, [0, 0]);
        assert_eq!(decode(&out), Ok((Vec::new(), Vec::new())));
    }

    #[test]
    fn anything_else_is_undecodable_never_a_panic() {
        let ev = Event {
            ts: 1,
            event_id: Some("e".into()),
            site: None,
            agent: Some("a".into()),
            body: Body::CallEnded {
                call: "c".into(),
                reason: EndReason::Failed,
            },
        };
        type Form = (
            fn(&[(u32, Event)], &[Reason], &mut Vec<u8>),
            fn(&[u8]) -> Result<Decoded, Undecodable>,
        );
        let forms: [Form; 2] = [(encode, decode), (encode_plain, decode_plain)];
        for (encode, decode) in forms {
            let mut out = Vec::new();
            encode(&[(3, ev.clone())], &[Reason::InvalidField], &mut out);
            for cut in 0..out.len() {
                assert_eq!(decode(&out[..cut]), Err(Undecodable), "cut at {cut}");
            }
            let mut longer = out.clone();
            longer.push(0);
            assert_eq!(decode(&longer), Err(Undecodable));
            // A count far beyond the bytes left allocates nothing.
            assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Err(Undecodable));
        }
    }

    /// A shared prefix longer than the previous string, or ending inside
    /// one of its characters, is corruption, not a panic.
    #[test]
    fn a_share_the_previous_string_cannot_give_is_undecodable() {
        let answered = |call: &str| Event {
            ts: 5,
            event_id: None,
            site: None,
            agent: None,
            body: Body::CallAnswered { call: call.into() },
        };
        let mut out = Vec::new();
        encode(&[(0, answered("é1")), (1, answered("é2"))], &[], &mut out);
        // rejects 0, events 2; event 0: index, kind, flags, ts 10 (5 zigzagged),
        // call shares 0 and is 3 bytes; event 1: index, kind, flags, ts +0,
        // then the call: shares 2 bytes ("é"), then "2".
        assert_eq!(
            out,
            [0, 2, 0, 1, 0, 10, 0, 3, 0xc3, 0xa9, b'1', 1, 1, 0, 0, 2, 1, b'2']
        );
        assert_eq!(decode(&out).map(|d| d.0[1].1.clone()), Ok(answered("é2")));
        for bad in [1, 4] {
            let mut corrupt = out.clone();
            corrupt[15] = bad;
            assert_eq!(decode(&corrupt), Err(Undecodable), "shared {bad}");
        }
    }

    /// The bench's frames (a call's life, ids that differ in their last
    /// characters) take under two fifths of the plain form (12.8 bytes per
    /// event against 39).
    #[test]
    fn a_calls_life_packs_under_two_fifths() {
        let p = "o1c7-";
        let events: Vec<(u32, Event)> = (0..100u32)
            .map(|i| {
                let k = i / 5;
                let call = CompactString::from(format!("{p}{}", 40_000 + k));
                let body = match i % 5 {
                    0 => Body::CallOffered {
                        call,
                        queue: format!("q{}", k % 10).into(),
                    },
                    1 => Body::CallAnswered { call },
                    2 => Body::HoldStarted { call },
                    3 => Body::HoldEnded { call },
                    _ => Body::CallEnded {
                        call,
                        reason: EndReason::Completed,
                    },
                };
                let agent = matches!(i % 5, 1 | 2).then(|| format!("agent-{}", k % 10).into());
                let ev = Event {
                    ts: 1_795_424_400_000
                        + i64::from(k) * 10
                        + [0, 4_000, 10_000, 15_000, 64_000][i as usize % 5],
                    event_id: Some(format!("{p}e{}", 200_000 + i).into()),
                    site: None,
                    agent,
                    body,
                };
                (i, ev)
            })
            .collect();
        let (mut packed, mut plain) = (Vec::new(), Vec::new());
        encode(&events, &[], &mut packed);
        encode_plain(&events, &[], &mut plain);
        assert_eq!(decode(&packed), Ok((events.clone(), Vec::new())));
        assert_eq!(decode_plain(&plain), Ok((events, Vec::new())));
        assert!(
            packed.len() * 5 < plain.len() * 2,
            "{} vs {} bytes",
            packed.len(),
            plain.len()
        );
    }

    fn id() -> impl Strategy<Value = CompactString> {
        // Up to 128 characters, some past the inline limit, some not ASCII.
        "[a-zé☎.:-]{1,40}|[a-z0-9]{100,128}".prop_map(CompactString::from)
    }

    fn body() -> impl Strategy<Value = Body> {
        let end = prop_oneof![
            Just(EndReason::Completed),
            Just(EndReason::Abandoned),
            Just(EndReason::Transferred),
            Just(EndReason::Failed),
        ];
        let target = prop_oneof![
            (id(), proptest::option::of(id()))
                .prop_map(|(queue, call)| PromiseTarget::Queue { queue, call }),
            id().prop_map(|call| PromiseTarget::Call { call }),
        ];
        prop_oneof![
            (id(), id()).prop_map(|(call, queue)| Body::CallOffered { call, queue }),
            id().prop_map(|call| Body::CallAnswered { call }),
            id().prop_map(|call| Body::HoldStarted { call }),
            id().prop_map(|call| Body::HoldEnded { call }),
            (id(), end).prop_map(|(call, reason)| Body::CallEnded { call, reason }),
            (id(), any::<i64>(), target).prop_map(|(promise, due, target)| {
                Body::CallbackPromised {
                    promise,
                    due,
                    target,
                }
            }),
            id().prop_map(|promise| Body::CallbackCompleted { promise }),
            id().prop_map(|promise| Body::CallbackCancelled { promise }),
            Just(Body::Clock),
        ]
    }

    fn event() -> impl Strategy<Value = (u32, Event)> {
        (
            any::<u32>(),
            any::<i64>(),
            proptest::option::of(id()),
            proptest::option::of(id()),
            proptest::option::of(id()),
            body(),
        )
            .prop_map(|(index, ts, event_id, site, agent, body)| {
                (
                    index,
                    Event {
                        ts,
                        event_id,
                        site,
                        agent,
                        body,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn round_trips(
            events in proptest::collection::vec(event(), 0..20),
            rejects in proptest::collection::vec(proptest::sample::select(Reason::ALL.to_vec()), 0..5),
        ) {
            let mut out = Vec::new();
            encode(&events, &rejects, &mut out);
            prop_assert_eq!(decode(&out), Ok((events.clone(), rejects.clone())));
            let mut plain = Vec::new();
            encode_plain(&events, &rejects, &mut plain);
            prop_assert_eq!(decode_plain(&plain), Ok((events, rejects)));
        }

        /// Any bytes decode or are undecodable, in either form: never a panic.
        #[test]
        fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = decode_plain(&bytes);
        }
    }
}
