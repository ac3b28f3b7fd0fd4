//! Wire decoding: one text frame (an event or a JSON array of events) into
//! validated [`Event`]s, or a specific rejection per element.
//!
//! A frame in plain JSON is scanned by hand ([`scan`]), any other
//! well-typed frame is parsed once by serde; otherwise every field is
//! captured as raw JSON and checked on its own, so a wrong field yields a detail that
//! names it (serde's own messages do not), and one bad element of a batch
//! never costs the others.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;

use crate::event::{Body, EndReason, Event, EventKind, Id, Millis, PromiseTarget, Reason};

mod scan;

const ID_MAX: usize = 128;
const LABEL_MAX: usize = 64;
const PERSONAL_MAX: usize = 128;
/// 9999-12-31T23:59:59.999Z: anything later is a unit mistake (micro- or nanoseconds).
const TS_MAX: Millis = 253_402_300_799_999;

/// Why one element of a frame was not decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: Reason,
    pub event_id: Option<Id>,
    pub detail: String,
}

impl DecodeError {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        DecodeError {
            reason,
            event_id: None,
            detail: detail.into(),
        }
    }
}

/// A decoded frame: each element in wire order (index = position in the batch;
/// a single event or an unparseable frame has index 0).
pub type Decoded = Vec<Result<Event, DecodeError>>;

/// A decoded frame split for the pipeline: the events to apply and the
/// elements that failed, each with its index in the frame, in index order.
#[derive(Debug, Default)]
pub struct Split {
    pub events: Vec<(u32, Event)>,
    pub rejected: Vec<(u32, DecodeError)>,
}

impl Split {
    fn push(&mut self, index: u32, result: Result<Event, DecodeError>) {
        match result {
            Ok(ev) => self.events.push((index, ev)),
            Err(e) => self.rejected.push((index, e)),
        }
    }
}

/// Events a frame's first allocation holds: a guess from its length (an
/// event is rarely under 80 bytes of JSON), capped so that a huge frame
/// grows as it goes rather than reserving for what it may not hold.
fn capacity(text: &str) -> usize {
    (text.len() / 80).clamp(1, 1024)
}

/// Decode one text frame, every element in wire order.
pub fn decode_frame(text: &str) -> Decoded {
    let split = decode_split(text);
    let mut out: Decoded = Vec::with_capacity(split.events.len() + split.rejected.len());
    let mut rejected = split.rejected.into_iter().peekable();
    for (index, ev) in split.events {
        while let Some((_, e)) = rejected.next_if(|(i, _)| *i < index) {
            out.push(Err(e));
        }
        out.push(Ok(ev));
    }
    out.extend(rejected.map(|(_, e)| Err(e)));
    out
}

/// Decode one text frame into the events to apply and the rejected elements.
///
/// Three paths, each a fallback for the one before, all ending in the same
/// `validate` that reads the fields in the same order, so they always agree.
/// First, a frame in plain JSON (no escapes, floats or nested values) is
/// scanned by hand ([`scan`]). Else it is deserialized once by serde, each
/// element validated as soon as it is parsed (no intermediate list). When
/// that fails too (a field of the wrong JSON type, a non-object element,
/// invalid JSON), every element is taken apart field by field to say
/// exactly what is wrong.
pub fn decode_split(text: &str) -> Split {
    let mut out = Split {
        events: Vec::with_capacity(capacity(text)),
        rejected: Vec::new(),
    };
    if scan::frame(text, &mut out) {
        return out;
    }
    out.events.clear();
    out.rejected.clear();
    by_serde(text, out)
}

/// [`decode_split`] without the scan: serde's one pass, then field by field.
fn by_serde(text: &str, mut out: Split) -> Split {
    if one_pass(text, &mut out) {
        return out;
    }
    out.events.clear();
    out.rejected.clear();
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => {
                for (index, raw) in (0u32..).zip(items) {
                    out.push(index, decode_element(raw));
                }
            }
            Err(e) => out.push(0, Err(malformed(&e))),
        }
    } else {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => out.push(0, decode_element(raw)),
            Err(e) => out.push(0, Err(malformed(&e))),
        }
    }
    out
}

/// The fast path: a frame that is an array of well-typed objects, or one
/// such object, decoded in one pass into `out`; false (and `out` partly
/// filled) if anything in it does not fit.
fn one_pass(text: &str, out: &mut Split) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde::de::DeserializeSeed::deserialize(Each(out), &mut de),
        Some(b'{') => {
            let one = One {
                split: out,
                index: 0,
            };
            serde::de::DeserializeSeed::deserialize(one, &mut de)
        }
        _ => return false,
    };
    parsed.is_ok() && de.end().is_ok()
}

/// The fast path over an array: each element is parsed into [`Typed`] and
/// validated at once ([`One`]). Any element that does not fit `Typed` fails
/// the whole pass (and the caller starts over on the field-by-field path).
struct Each<'o>(&'o mut Split);

impl<'de> serde::de::DeserializeSeed<'de> for Each<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Each<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of event objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u32;
        while seq
            .next_element_seed(One {
                split: &mut *self.0,
                index,
            })?
            .is_some()
        {
            index = index.saturating_add(1);
        }
        Ok(())
    }
}

/// One element on the fast path: its fields parsed into a [`Typed`] on this
/// frame's stack, validated there, and the event (or its rejection) pushed
/// to the split. Why by hand, not `#[derive(Deserialize)]`: the derived
/// struct (300 bytes) was returned by value through three layers of serde
/// and copied at each (a fifth of decoding's time went to memcpy).
struct One<'o> {
    split: &'o mut Split,
    index: u32,
}

impl<'de> serde::de::DeserializeSeed<'de> for One<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// The envelope's field names, as serde matches them; any other is skipped.
#[derive(Deserialize, Clone, Copy)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    #[serde(rename = "type")]
    Kind,
    Ts,
    EventId,
    CallId,
    Queue,
    Agent,
    Site,
    Caller,
    Customer,
    Reason,
    PromiseId,
    Due,
    #[serde(other)]
    Other,
}

impl Key {
    /// The field's name, as the slow path's reader names it.
    fn name(self) -> &'static str {
        match self {
            Key::Kind => Text::Type.name(),
            Key::Ts => When::Ts.name(),
            Key::EventId => Text::EventId.name(),
            Key::CallId => Text::CallId.name(),
            Key::Queue => Text::Queue.name(),
            Key::Agent => Text::Agent.name(),
            Key::Site => Text::Site.name(),
            Key::Caller => Text::Caller.name(),
            Key::Customer => Text::Customer.name(),
            Key::Reason => Text::Reason.name(),
            Key::PromiseId => Text::PromiseId.name(),
            Key::Due => When::Due.name(),
            Key::Other => "",
        }
    }
}

impl<'de> serde::de::Visitor<'de> for One<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        /// A field given twice fails the pass, as it always did (serde's
        /// derive refuses it); the slow path then decides.
        fn once<'de, T: Deserialize<'de>, A: serde::de::MapAccess<'de>>(
            map: &mut A,
            seen: &mut u16,
            key: Key,
            slot: &mut Option<T>,
        ) -> Result<(), A::Error> {
            let bit = 1u16 << (key as u16);
            if *seen & bit != 0 {
                return Err(serde::de::Error::duplicate_field(key.name()));
            }
            *seen |= bit;
            *slot = map.next_value()?;
            Ok(())
        }
        let mut t = Typed::default();
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<Key>()? {
            let m = &mut map;
            let seen = &mut seen;
            match key {
                Key::Kind => once(m, seen, key, &mut t.kind)?,
                Key::Ts => once(m, seen, key, &mut t.ts)?,
                Key::EventId => once(m, seen, key, &mut t.event_id)?,
                Key::CallId => once(m, seen, key, &mut t.call_id)?,
                Key::Queue => once(m, seen, key, &mut t.queue)?,
                Key::Agent => once(m, seen, key, &mut t.agent)?,
                Key::Site => once(m, seen, key, &mut t.site)?,
                Key::Caller => once(m, seen, key, &mut t.caller)?,
                Key::Customer => once(m, seen, key, &mut t.customer)?,
                Key::Reason => once(m, seen, key, &mut t.reason)?,
                Key::PromiseId => once(m, seen, key, &mut t.promise_id)?,
                Key::Due => once(m, seen, key, &mut t.due)?,
                Key::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        self.split.push(self.index, validate_with_id(&t));
        Ok(())
    }
}

fn malformed(e: &serde_json::Error) -> DecodeError {
    DecodeError::new(
        Reason::MalformedJson,
        format!("frame is not valid JSON: {e}"),
    )
}

/// A timestamp as it came: RFC 3339 text or a JSON integer.
enum Stamp<'a> {
    Text(Cow<'a, str>),
    Millis(u64),
}

impl<'de: 'a, 'a> Deserialize<'de> for Stamp<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Stamp<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 string or non-negative integer epoch milliseconds")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Stamp::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Stamp::Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Stamp::Millis(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON string, borrowed from the frame unless it has escapes. (serde's
/// own `Option<Cow<str>>` always copies, even with `#[serde(borrow)]`: that
/// was several allocations per event.)
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The envelope with every field already of the right JSON type (the fast
/// path, filled by [`One`]). Unknown fields are ignored (forward
/// compatibility); `null` counts as absent.
#[derive(Default)]
struct Typed<'a> {
    kind: Option<CowStr<'a>>,
    ts: Option<Stamp<'a>>,
    event_id: Option<CowStr<'a>>,
    call_id: Option<CowStr<'a>>,
    queue: Option<CowStr<'a>>,
    agent: Option<CowStr<'a>>,
    site: Option<CowStr<'a>>,
    caller: Option<CowStr<'a>>,
    customer: Option<CowStr<'a>>,
    reason: Option<CowStr<'a>>,
    promise_id: Option<CowStr<'a>>,
    due: Option<Stamp<'a>>,
}

/// The envelope, every field still raw (the fallback): each is checked on
/// its own, so a wrong one yields a detail that names it.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow)]
    call_id: Option<&'a RawValue>,
    #[serde(borrow)]
    queue: Option<&'a RawValue>,
    #[serde(borrow)]
    agent: Option<&'a RawValue>,
    #[serde(borrow)]
    site: Option<&'a RawValue>,
    #[serde(borrow)]
    caller: Option<&'a RawValue>,
    #[serde(borrow)]
    customer: Option<&'a RawValue>,
    #[serde(borrow)]
    reason: Option<&'a RawValue>,
    #[serde(borrow)]
    promise_id: Option<&'a RawValue>,
    #[serde(borrow)]
    due: Option<&'a RawValue>,
}

/// A text field of the envelope. Naming fields by type (not by string)
/// leaves no name a reader could fail to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Text {
    Type,
    EventId,
    CallId,
    Queue,
    Agent,
    Site,
    Caller,
    Customer,
    Reason,
    PromiseId,
}

impl Text {
    fn name(self) -> &'static str {
        match self {
            Text::Type => "type",
            Text::EventId => "event_id",
            Text::CallId => "call_id",
            Text::Queue => "queue",
            Text::Agent => "agent",
            Text::Site => "site",
            Text::Caller => "caller",
            Text::Customer => "customer",
            Text::Reason => "reason",
            Text::PromiseId => "promise_id",
        }
    }
}

/// A timestamp field of the envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Ts,
    Due,
}

impl When {
    fn name(self) -> &'static str {
        match self {
            When::Ts => "ts",
            When::Due => "due",
        }
    }
}

/// Where [`validate`] reads fields from.
trait Fields<'a> {
    fn text(&self, field: Text) -> Result<Option<Cow<'a, str>>, DecodeError>;
    fn stamp(&self, field: When) -> Result<Option<Stamp<'a>>, DecodeError>;
}

impl<'a> Fields<'a> for Typed<'a> {
    fn text(&self, field: Text) -> Result<Option<Cow<'a, str>>, DecodeError> {
        Ok(match field {
            Text::Type => self.kind.as_ref().map(|c| c.0.clone()),
            Text::EventId => self.event_id.as_ref().map(|c| c.0.clone()),
            Text::CallId => self.call_id.as_ref().map(|c| c.0.clone()),
            Text::Queue => self.queue.as_ref().map(|c| c.0.clone()),
            Text::Agent => self.agent.as_ref().map(|c| c.0.clone()),
            Text::Site => self.site.as_ref().map(|c| c.0.clone()),
            Text::Caller => self.caller.as_ref().map(|c| c.0.clone()),
            Text::Customer => self.customer.as_ref().map(|c| c.0.clone()),
            Text::Reason => self.reason.as_ref().map(|c| c.0.clone()),
            Text::PromiseId => self.promise_id.as_ref().map(|c| c.0.clone()),
        })
    }

    fn stamp(&self, field: When) -> Result<Option<Stamp<'a>>, DecodeError> {
        let s = match field {
            When::Ts => &self.ts,
            When::Due => &self.due,
        };
        Ok(s.as_ref().map(|s| match s {
            Stamp::Text(t) => Stamp::Text(t.clone()),
            Stamp::Millis(n) => Stamp::Millis(*n),
        }))
    }
}

impl<'a> Fields<'a> for Wire<'a> {
    fn text(&self, field: Text) -> Result<Option<Cow<'a, str>>, DecodeError> {
        let raw = match field {
            Text::Type => self.kind,
            Text::EventId => self.event_id,
            Text::CallId => self.call_id,
            Text::Queue => self.queue,
            Text::Agent => self.agent,
            Text::Site => self.site,
            Text::Caller => self.caller,
            Text::Customer => self.customer,
            Text::Reason => self.reason,
            Text::PromiseId => self.promise_id,
        };
        raw.map(|r| string(field.name(), r)).transpose()
    }

    fn stamp(&self, field: When) -> Result<Option<Stamp<'a>>, DecodeError> {
        let raw = match field {
            When::Ts => self.ts,
            When::Due => self.due,
        };
        let Some(raw) = raw else { return Ok(None) };
        let name = field.name();
        let text = raw.get();
        if text.starts_with('"') {
            return Ok(Some(Stamp::Text(string(name, raw)?)));
        }
        serde_json::from_str::<u64>(text).map(|n| Some(Stamp::Millis(n))).map_err(|_| {
            invalid(
                name,
                format!(
                    "expected an RFC 3339 string or non-negative integer epoch milliseconds, got {}",
                    truncate(text, 40)
                ),
            )
        })
    }
}

fn decode_element(raw: &RawValue) -> Result<Event, DecodeError> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(DecodeError::new(
            Reason::NotAnObject,
            format!("an event must be a JSON object, got {}", json_kind(text)),
        ));
    }
    let wire: Wire = serde_json::from_str(text)
        .map_err(|e| DecodeError::new(Reason::InvalidField, format!("event object: {e}")))?;
    validate_with_id(&wire)
}

/// [`validate`], with the event's `event_id` (read first) on any rejection.
fn validate_with_id<'a>(f: &impl Fields<'a>) -> Result<Event, DecodeError> {
    let event_id = f
        .text(Text::EventId)?
        .map(|v| bounded("event_id", v, 1, ID_MAX))
        .transpose()?;
    validate(f, event_id.clone()).map_err(|mut e| {
        e.event_id = event_id;
        e
    })
}

fn validate<'a>(f: &impl Fields<'a>, event_id: Option<Id>) -> Result<Event, DecodeError> {
    let kind_text = f.text(Text::Type)?.ok_or_else(|| missing("type"))?;
    let kind = EventKind::parse(&kind_text).ok_or_else(|| {
        DecodeError::new(
            Reason::UnknownType,
            format!("unknown event type {:?}", truncate(&kind_text, 64)),
        )
    })?;
    let ts = timestamp("ts", f.stamp(When::Ts)?.ok_or_else(|| missing("ts"))?)?;

    // Every present field is checked against the contract, whatever the type.
    let id = |field: Text, min, max| -> Result<Option<Id>, DecodeError> {
        f.text(field)?
            .map(|v| bounded(field.name(), v, min, max))
            .transpose()
    };
    let call = id(Text::CallId, 1, ID_MAX)?;
    let queue = id(Text::Queue, 1, LABEL_MAX)?;
    let site = id(Text::Site, 1, LABEL_MAX)?;
    let agent = id(Text::Agent, 1, LABEL_MAX)?;
    // Personal data: validated for the contract, then dropped, never stored.
    for field in [Text::Caller, Text::Customer] {
        if let Some(v) = f.text(field)? {
            check_length(field.name(), &v, 0, PERSONAL_MAX)?;
        }
    }
    let reason = f.text(Text::Reason)?.map(end_reason).transpose()?;
    let promise = id(Text::PromiseId, 1, ID_MAX)?;
    let due = f
        .stamp(When::Due)?
        .map(|d| timestamp("due", d))
        .transpose()?;

    let need = |v: Option<Id>, name: &str| v.ok_or_else(|| missing(name));
    let body = match kind {
        EventKind::CallOffered => Body::CallOffered {
            call: need(call, "call_id")?,
            queue: need(queue, "queue")?,
        },
        EventKind::CallAnswered => Body::CallAnswered {
            call: need(call, "call_id")?,
        },
        EventKind::HoldStarted => Body::HoldStarted {
            call: need(call, "call_id")?,
        },
        EventKind::HoldEnded => Body::HoldEnded {
            call: need(call, "call_id")?,
        },
        EventKind::CallEnded => Body::CallEnded {
            call: need(call, "call_id")?,
            reason: reason.unwrap_or(EndReason::Completed),
        },
        EventKind::CallbackPromised => {
            let promise = need(promise, "promise_id")?;
            let due = due.ok_or_else(|| missing("due"))?;
            let target =
                match (queue, call) {
                    (Some(queue), call) => PromiseTarget::Queue { queue, call },
                    (None, Some(call)) => PromiseTarget::Call { call },
                    (None, None) => return Err(DecodeError::new(
                        Reason::MissingField,
                        "callback.promised needs `queue` or the `call_id` of a call in progress",
                    )),
                };
            Body::CallbackPromised {
                promise,
                due,
                target,
            }
        }
        EventKind::CallbackCompleted => Body::CallbackCompleted {
            promise: need(promise, "promise_id")?,
        },
        EventKind::CallbackCancelled => Body::CallbackCancelled {
            promise: need(promise, "promise_id")?,
        },
        EventKind::Clock => Body::Clock,
    };
    Ok(Event {
        ts,
        event_id,
        site,
        agent,
        body,
    })
}

fn missing(field: &str) -> DecodeError {
    DecodeError::new(
        Reason::MissingField,
        format!("required field `{field}` is missing"),
    )
}

fn invalid(field: &str, why: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(Reason::InvalidField, format!("field `{field}`: {why}"))
}

/// A JSON string, borrowed when it has no escapes.
fn string<'a>(field: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
    if let Ok(s) = serde_json::from_str::<&str>(raw.get()) {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw.get())
        .map(Cow::Owned)
        .map_err(|_| {
            invalid(
                field,
                format!("expected a string, got {}", json_kind(raw.get())),
            )
        })
}

fn check_length(field: &str, v: &str, min: usize, max: usize) -> Result<(), DecodeError> {
    // A char is 1 to 4 bytes: within `max` bytes is within `max` chars, and
    // a non-empty string has at least one (every `min` here is 0 or 1).
    if v.len() <= max && (min == 0 || (min == 1 && !v.is_empty())) {
        return Ok(());
    }
    let chars = v.chars().count();
    if chars < min || chars > max {
        return Err(invalid(
            field,
            format!("must be {min} to {max} characters, got {chars}"),
        ));
    }
    Ok(())
}

fn bounded(field: &str, v: Cow<str>, min: usize, max: usize) -> Result<Id, DecodeError> {
    check_length(field, &v, min, max)?;
    Ok(Id::from(v.as_ref()))
}

fn end_reason(s: Cow<str>) -> Result<EndReason, DecodeError> {
    EndReason::parse(&s).ok_or_else(|| {
        invalid(
            "reason",
            format!(
                "{:?} is not one of completed, abandoned, transferred, failed",
                truncate(&s, 32)
            ),
        )
    })
}

/// RFC 3339 with an offset, or non-negative integer epoch milliseconds.
fn timestamp(field: &str, stamp: Stamp) -> Result<Millis, DecodeError> {
    let ms = match stamp {
        Stamp::Text(s) => {
            let t = time::OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| {
                invalid(
                    field,
                    format!("{:?} is not an RFC 3339 timestamp: {e}", truncate(&s, 40)),
                )
            })?;
            let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
            Millis::try_from(ms).map_err(|_| invalid(field, "timestamp out of range"))?
        }
        Stamp::Millis(n) => Millis::try_from(n).unwrap_or(Millis::MAX),
    };
    if !(0..=TS_MAX).contains(&ms) {
        return Err(invalid(
            field,
            "timestamp outside 1970..9999 (epoch milliseconds expected, not micro- or nanoseconds)",
        ));
    }
    Ok(ms)
}

fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Event, DecodeError> {
        let mut d = decode_frame(text);
        assert_eq!(d.len(), 1);
        d.pop().unwrap()
    }

    fn reason(text: &str) -> Reason {
        one(text).unwrap_err().reason
    }

    #[test]
    fn decodes_offered_with_rfc3339_and_millis() {
        let e = one(r#"{"type":"call.offered","ts":"2026-11-23T09:00:00Z","call_id":"c1","queue":"billing","caller":"+1555"}"#).unwrap();
        assert_eq!(e.ts, 1_795_424_400_000);
        assert_eq!(
            e.body,
            Body::CallOffered {
                call: "c1".into(),
                queue: "billing".into()
            }
        );
        let e = one(r#"{"type":"call.answered","ts":1795424405000,"call_id":"c1"}"#).unwrap();
        assert_eq!(e.ts, 1_795_424_405_000);
    }

    #[test]
    fn rfc3339_offsets_and_fractions() {
        let e = one(r#"{"type":"clock","ts":"2026-11-23T10:00:38.5+01:00"}"#).unwrap();
        assert_eq!(e.ts, 1_795_424_438_500);
        // sub-millisecond digits are floored, never rounded up
        let e = one(r#"{"type":"clock","ts":"2026-11-23T09:00:00.0009Z"}"#).unwrap();
        assert_eq!(e.ts, 1_795_424_400_000);
    }

    #[test]
    fn batch_keeps_good_events_around_bad_ones() {
        let d = decode_frame(
            r#"[{"type":"clock","ts":1}, 7, {"type":"nope","ts":1}, {"type":"clock","ts":2}]"#,
        );
        assert_eq!(d.len(), 4);
        assert!(d[0].is_ok());
        assert_eq!(d[1].as_ref().unwrap_err().reason, Reason::NotAnObject);
        assert_eq!(d[2].as_ref().unwrap_err().reason, Reason::UnknownType);
        assert!(d[3].is_ok());
    }

    #[test]
    fn frame_level_errors() {
        assert_eq!(reason("{this is not json"), Reason::MalformedJson);
        assert_eq!(reason("[1, 2"), Reason::MalformedJson);
        assert_eq!(reason(""), Reason::MalformedJson);
        assert_eq!(reason("42"), Reason::NotAnObject);
        assert_eq!(reason(r#""call.offered""#), Reason::NotAnObject);
        assert!(decode_frame("[]").is_empty());
    }

    #[test]
    fn field_errors_name_the_field() {
        let e = one(r#"{"type":"call.offered","ts":"not a time","call_id":"b2","queue":"q"}"#)
            .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidField);
        assert!(e.detail.contains("`ts`"), "{}", e.detail);

        let e = one(r#"{"type":"call.offered","ts":1,"queue":"q"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::MissingField);
        assert!(e.detail.contains("`call_id`"), "{}", e.detail);

        let e = one(r#"{"type":"call.answered","ts":1,"call_id":5}"#).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidField);
        assert!(e.detail.contains("`call_id`") && e.detail.contains("number"));

        let long = "x".repeat(129);
        let e = one(&format!(
            r#"{{"event_id":"e1","type":"call.offered","ts":1,"call_id":"{long}","queue":"q"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidField);
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(
            reason(&format!(
                r#"{{"type":"call.offered","ts":1,"call_id":"c","queue":"{}"}}"#,
                "q".repeat(65)
            )),
            Reason::InvalidField
        );
        assert!(one(&format!(
            r#"{{"type":"call.offered","ts":1,"call_id":"{}","queue":"q"}}"#,
            "é".repeat(128)
        ))
        .is_ok());
    }

    #[test]
    fn type_and_timestamp_rules() {
        assert_eq!(reason(r#"{"ts":1}"#), Reason::MissingField);
        assert_eq!(reason(r#"{"type":3,"ts":1}"#), Reason::InvalidField);
        assert_eq!(
            reason(r#"{"type":"call.teleported","ts":1}"#),
            Reason::UnknownType
        );
        assert_eq!(reason(r#"{"type":"clock"}"#), Reason::MissingField);
        assert_eq!(reason(r#"{"type":"clock","ts":-5}"#), Reason::InvalidField);
        assert_eq!(reason(r#"{"type":"clock","ts":1.5}"#), Reason::InvalidField);
        assert_eq!(
            reason(r#"{"type":"clock","ts":"2026-11-23T09:00:00"}"#),
            Reason::InvalidField
        );
        assert_eq!(
            reason(r#"{"type":"clock","ts":1795424400000000}"#),
            Reason::InvalidField
        );
        assert_eq!(
            reason(r#"{"type":"clock","ts":1,"ts":2}"#),
            Reason::InvalidField
        );
    }

    #[test]
    fn per_type_requirements() {
        assert_eq!(
            reason(r#"{"type":"callback.promised","ts":1,"promise_id":"p","due":2}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"callback.promised","ts":1,"queue":"q","due":2}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"callback.promised","ts":1,"queue":"q","promise_id":"p"}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"callback.completed","ts":1}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"call.ended","ts":1,"call_id":"c","reason":"bored"}"#),
            Reason::InvalidField
        );
        let e = one(r#"{"type":"call.ended","ts":1,"call_id":"c"}"#).unwrap();
        assert_eq!(
            e.body,
            Body::CallEnded {
                call: "c".into(),
                reason: EndReason::Completed
            }
        );
        let e = one(r#"{"type":"callback.promised","ts":1,"call_id":"k","promise_id":"p","due":"2026-11-23T10:00:00Z","customer":"Jane"}"#).unwrap();
        assert_eq!(
            e.body,
            Body::CallbackPromised {
                promise: "p".into(),
                due: 1_795_428_000_000,
                target: PromiseTarget::Call { call: "k".into() },
            }
        );
        let e = one(r#"{"type":"callback.promised","ts":1,"call_id":"k","queue":"q","promise_id":"p","due":2}"#).unwrap();
        assert_eq!(
            e.body,
            Body::CallbackPromised {
                promise: "p".into(),
                due: 2,
                target: PromiseTarget::Queue {
                    queue: "q".into(),
                    call: Some("k".into())
                },
            }
        );
    }

    #[test]
    fn escaped_strings_and_unknown_fields() {
        let e = one(
            r#"{"type":"call.offered","ts":1,"call_id":"a\"b","queue":"q\u00e9","future":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(
            e.body,
            Body::CallOffered {
                call: "a\"b".into(),
                queue: "qé".into()
            }
        );
        // null is treated as absent
        assert!(one(r#"{"type":"clock","ts":1,"site":null}"#).is_ok());
    }

    #[test]
    fn well_typed_frames_take_the_one_pass_path() {
        let fast = |text: &str| {
            let mut out = Split::default();
            one_pass(text, &mut out).then_some(out)
        };
        let one = r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q7","caller":"+1555","event_id":"e1"}"#;
        assert_eq!(fast(one).unwrap().events.len(), 1);
        let batch = format!("[{}]", vec![one; 100].join(","));
        assert_eq!(fast(&batch).unwrap().events.len(), 100);
        let escaped = r#"{"type":"clock","ts":"2026-11-23T09:00:00Z","site":"a\"b"}"#;
        let site = fast(escaped).unwrap().events.pop().unwrap().1.site;
        assert_eq!(site.as_deref(), Some("a\"b"));
        // A field of the wrong type, a field given twice, an element that
        // is not an object: the slow path decides.
        assert!(fast(r#"{"type":"clock","ts":true}"#).is_none());
        assert!(fast(r#"{"type":"clock","ts":1,"ts":2}"#).is_none());
        assert!(fast(r#"{"type":"clock","ts":1,"site":null,"site":"s"}"#).is_none());
        assert!(fast(r#"[{"type":"clock","ts":1}, ["clock", 1]]"#).is_none());
        assert!(fast(r#"{"type":"clock","ts":1} x"#).is_none());
        // A duplicate is rejected as it always was.
        let dup = decode_frame(r#"{"type":"clock","ts":1,"ts":2}"#);
        assert!(
            matches!(&dup[0], Err(e) if e.reason == Reason::InvalidField),
            "{dup:?}"
        );
    }

    /// The fast path's field names are the slow path's, one for one.
    #[test]
    fn the_fast_paths_keys_are_the_envelopes_fields() {
        use Key::*;
        for key in [
            Kind, Ts, EventId, CallId, Queue, Agent, Site, Caller, Customer, Reason, PromiseId, Due,
        ] {
            let parsed: Key = serde_json::from_str(&format!("{:?}", key.name())).unwrap();
            assert_eq!(parsed as u16, key as u16, "{}", key.name());
            // and the scan reads each name as serde does
            assert_eq!(scan::key(key.name()) as u16, key as u16, "{}", key.name());
        }
        let other: Key = serde_json::from_str(r#""future""#).unwrap();
        assert!(matches!(other, Other));
        assert!(matches!(scan::key("future"), Other));
    }

    /// An element that is an array is not an event, on either path (the
    /// derived struct once accepted one as its fields in order).
    #[test]
    fn an_array_element_is_not_an_object() {
        let fields = r#"["clock",1,null,null,null,null,null,null,null,null,null,null]"#;
        let got = decode_frame(&format!("[{fields}]"));
        assert!(
            matches!(&got[0], Err(e) if e.reason == Reason::NotAnObject),
            "{got:?}"
        );
    }

    mod fast_and_slow_paths_agree {
        use super::super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(r#""c1""#.to_string()),
                Just(r#""billing""#.to_string()),
                Just(r#""a\"b""#.to_string()),
                Just(format!(r#""{}""#, "x".repeat(65))),
                Just(format!(r#""{}""#, "x".repeat(129))),
                Just(r#""""#.to_string()),
                Just(r#""2026-11-23T09:00:00Z""#.to_string()),
                Just(r#""not a time""#.to_string()),
                Just("1795424400000".to_string()),
                Just("-5".to_string()),
                Just("1.5".to_string()),
                Just("null".to_string()),
                Just("true".to_string()),
                Just("[1]".to_string()),
                Just(r#"{"a":1}"#.to_string()),
                Just(r#""completed""#.to_string()),
                Just(r#""call.offered""#.to_string()),
                Just(r#""callback.promised""#.to_string()),
                Just(r#""clock""#.to_string()),
            ]
        }

        fn field() -> impl Strategy<Value = &'static str> {
            prop_oneof![
                Just("type"),
                Just("ts"),
                Just("event_id"),
                Just("call_id"),
                Just("queue"),
                Just("agent"),
                Just("site"),
                Just("caller"),
                Just("customer"),
                Just("reason"),
                Just("promise_id"),
                Just("due"),
                Just("extra"),
            ]
        }

        /// A JSON object of the fields, each key once (its first value).
        fn object(fields: &[(&str, String)]) -> String {
            let mut seen = std::collections::HashSet::new();
            let body: Vec<String> = fields
                .iter()
                .filter(|(k, _)| seen.insert(*k))
                .map(|(k, v)| format!(r#""{k}":{v}"#))
                .collect();
            format!("{{{}}}", body.join(","))
        }

        proptest! {
            #[test]
            fn same_result_either_way(fields in proptest::collection::vec((field(), value()), 0..10)) {
                let text = object(&fields);
                let raw: &RawValue = serde_json::from_str(&text).unwrap();
                let slow = decode_element(raw);
                let mut fast = decode_frame(&text);
                prop_assert_eq!(fast.pop().unwrap(), slow.clone());
                // and inside a batch, next to a well-typed event
                let batch = format!(r#"[{text}, {{"type":"clock","ts":1}}]"#);
                let both = decode_frame(&batch);
                prop_assert_eq!(&both[0], &slow);
                prop_assert!(both[1].is_ok());
            }

            /// What the journal keeps of a frame (its decoded events and
            /// rejects, in binary) decodes back to exactly what live
            /// decoding gave, so a replay applies what live applied.
            #[test]
            fn the_journal_record_gives_back_the_decoding(fields in proptest::collection::vec((field(), value()), 0..10)) {
                let batch = format!(r#"[{}, {{"type":"clock","ts":1}}, 7]"#, object(&fields));
                let live = decode_split(&batch);
                let reasons: Vec<Reason> = live.rejected.iter().map(|(_, e)| e.reason).collect();
                let mut record = Vec::new();
                crate::durability::events::encode(&live.events, &reasons, &mut record);
                prop_assert_eq!(
                    crate::durability::events::decode(&record),
                    Ok((live.events, reasons))
                );
            }
        }
    }
}
