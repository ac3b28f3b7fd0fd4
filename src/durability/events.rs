//! The journal's binary form of a decoded frame: its events (with their
//! index in the frame) and the reasons of the elements that failed
//! decoding, which is everything replaying the frame needs, in about a
//! third of the frame text's bytes and without JSON to parse again.
//!
//! Why not the frame text: writing it costs a copy into the page cache per
//! byte (on the hot path the largest single cost) and decoding it again is
//! most of a replay's work. The events are the decoder's output, so a
//! replay applies exactly what live applied; `tests` check that the round
//! trip gives back the decoder's output for any frame.
//!
//! Layout (integers little-endian, `n` a LEB128 varint):
//! `[n rejects][reason: u8]* [n events]` then per event
//! `[n index][kind: u8][flags: u8][ts: i64]`, the optional `event_id`,
//! `site`, `agent` (flags bits 0, 1, 2) and the kind's fields. A string is
//! `[n length][UTF-8 bytes]`. Codes are fixed here, whatever order the
//! enums list their variants in.

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

/// Encode a decoded frame onto `out`.
pub fn encode(events: &[(u32, Event)], rejects: &[Reason], out: &mut Vec<u8>) {
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
        out.extend_from_slice(&ev.ts.to_le_bytes());
        for s in [&ev.event_id, &ev.site, &ev.agent].into_iter().flatten() {
            string(s, out);
        }
        match &ev.body {
            Body::CallOffered { call, queue } => {
                string(call, out);
                string(queue, out);
            }
            Body::CallAnswered { call } | Body::HoldStarted { call } | Body::HoldEnded { call } => {
                string(call, out)
            }
            Body::CallEnded { call, reason } => {
                string(call, out);
                out.push(end_code(*reason));
            }
            Body::CallbackPromised {
                promise,
                due,
                target,
            } => {
                string(promise, out);
                out.extend_from_slice(&due.to_le_bytes());
                match target {
                    PromiseTarget::Queue { queue, call: None } => {
                        out.push(0);
                        string(queue, out);
                    }
                    PromiseTarget::Queue {
                        queue,
                        call: Some(call),
                    } => {
                        out.push(1);
                        string(queue, out);
                        string(call, out);
                    }
                    PromiseTarget::Call { call } => {
                        out.push(2);
                        string(call, out);
                    }
                }
            }
            Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } => {
                string(promise, out)
            }
            Body::Clock => {}
        }
    }
}

/// The events and reject reasons [`encode`] wrote.
pub type Decoded = (Vec<(u32, Event)>, Vec<Reason>);

/// Decode what [`encode`] wrote; anything else is [`Undecodable`].
pub fn decode(bytes: &[u8]) -> Result<Decoded, Undecodable> {
    let mut r = Reader(bytes);
    let rejects = r.count()?;
    let reasons = (0..rejects)
        .map(|_| reason_of(r.byte()?))
        .collect::<Result<Vec<_>, _>>()?;
    let n = r.count()?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(r.event()?);
    }
    if !r.0.is_empty() {
        return Err(Undecodable);
    }
    Ok((events, reasons))
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

    fn string(&mut self) -> Result<CompactString, Undecodable> {
        let len = usize::try_from(self.varint()?).map_err(|_| Undecodable)?;
        if len > self.0.len() {
            return Err(Undecodable);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        let s = std::str::from_utf8(s).map_err(|_| Undecodable)?;
        Ok(CompactString::new(s))
    }

    fn event(&mut self) -> Result<(u32, Event), Undecodable> {
        let index = u32::try_from(self.varint()?).map_err(|_| Undecodable)?;
        let kind = kind_of(self.byte()?)?;
        let flags = self.byte()?;
        if flags & !(EVENT_ID | SITE | AGENT) != 0 {
            return Err(Undecodable);
        }
        let ts = self.millis()?;
        let mut optional = |bit: u8| -> Result<Option<CompactString>, Undecodable> {
            if flags & bit != 0 {
                self.string().map(Some)
            } else {
                Ok(None)
            }
        };
        let event_id = optional(EVENT_ID)?;
        let site = optional(SITE)?;
        let agent = optional(AGENT)?;
        let body = match kind {
            EventKind::CallOffered => Body::CallOffered {
                call: self.string()?,
                queue: self.string()?,
            },
            EventKind::CallAnswered => Body::CallAnswered {
                call: self.string()?,
            },
            EventKind::HoldStarted => Body::HoldStarted {
                call: self.string()?,
            },
            EventKind::HoldEnded => Body::HoldEnded {
                call: self.string()?,
            },
            EventKind::CallEnded => Body::CallEnded {
                call: self.string()?,
                reason: end_of(self.byte()?)?,
            },
            EventKind::CallbackPromised => {
                let promise = self.string()?;
                let due = self.millis()?;
                let target = match self.byte()? {
                    0 => PromiseTarget::Queue {
                        queue: self.string()?,
                        call: None,
                    },
                    1 => PromiseTarget::Queue {
                        queue: self.string()?,
                        call: Some(self.string()?),
                    },
                    2 => PromiseTarget::Call {
                        call: self.string()?,
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
                promise: self.string()?,
            },
            EventKind::CallbackCancelled => Body::CallbackCancelled {
                promise: self.string()?,
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
        let mut out = Vec::new();
        encode(&[(3, ev)], &[Reason::InvalidField], &mut out);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Err(Undecodable), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(Undecodable));
        // A count far beyond the bytes left allocates nothing.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Err(Undecodable));
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
            prop_assert_eq!(decode(&out), Ok((events, rejects)));
        }
    }
}
