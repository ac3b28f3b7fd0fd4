//! Fuzz target `decode_frame`: arbitrary bytes as one ingest text frame,
//! through `ringwatch::ingest::decode::decode_frame` and the acknowledgement
//! encoder, checked against what the wire contract promises for any frame.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - one result per element of a JSON array, exactly one otherwise; only
//!   text that is not JSON is `malformed_json`, and a non-object element is
//!   `not_an_object`;
//! - a batch element decodes exactly as it does alone (one bad element never
//!   costs the others);
//! - an accepted event carries the fields of its JSON object, within the
//!   contract's bounds (ids 1-128 characters, labels 1-64, timestamps in
//!   1970..9999);
//! - the acknowledgement of the result is valid JSON that says exactly what
//!   the results say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwatch::event::{Body, EndReason, Event, Reason};
use ringwatch::ingest::ack;
use ringwatch::ingest::decode::{decode_frame, DecodeError};
use ringwatch::verdict::Rejection;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;

/// 9999-12-31T23:59:59.999Z in epoch milliseconds: the contract's last instant.
const TS_MAX: i64 = 253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    // The transport refuses non-UTF-8 text frames before decoding (close 1007).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = decode_frame(text);
    check_shape(text, &decoded);
    check_ack(&decoded);
});

/// How many results the frame must give, judged by serde_json on its own
/// terms (`IgnoredAny` checks syntax without building anything).
fn check_shape(text: &str, decoded: &[Result<Event, DecodeError>]) {
    if let Ok(items) = serde_json::from_str::<Vec<IgnoredAny>>(text) {
        assert_eq!(decoded.len(), items.len(), "one result per batch element");
        let raw: Vec<&RawValue> =
            serde_json::from_str(text).expect("a valid JSON array splits into raw elements");
        for (i, (element, result)) in raw.iter().zip(decoded).enumerate() {
            check_element(element.get(), result, &format!("element {i}"));
            // An element that is not itself an array decodes alone exactly as
            // it did inside the batch.
            if !element.get().starts_with('[') {
                let alone = decode_frame(element.get());
                assert_eq!(alone.len(), 1);
                assert_eq!(&alone[0], result, "element {i} alone vs in the batch");
            }
        }
    } else if serde_json::from_str::<IgnoredAny>(text).is_ok() {
        assert_eq!(decoded.len(), 1, "a single JSON value gives one result");
        check_element(text.trim_matches(json_space), &decoded[0], "the frame");
    } else {
        assert_eq!(decoded.len(), 1, "text that is not JSON gives one result");
        let e = decoded[0].as_ref().expect_err("text that is not JSON");
        assert_eq!(e.reason, Reason::MalformedJson, "{e:?}");
        assert_eq!(e.event_id, None);
        assert!(!e.detail.is_empty());
    }
}

fn json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// One valid JSON value (`raw`) and its result.
fn check_element(raw: &str, result: &Result<Event, DecodeError>, what: &str) {
    let is_object = raw.starts_with('{');
    match result {
        Err(e) => {
            assert_ne!(
                e.reason,
                Reason::MalformedJson,
                "{what} is valid JSON: {e:?}"
            );
            assert_eq!(e.reason == Reason::NotAnObject, !is_object, "{what}: {e:?}");
            assert!(!e.detail.is_empty(), "{what}: a rejection explains itself");
            if let Some(id) = &e.event_id {
                assert_chars("event_id", id, 1, 128);
            }
            // The event_id echoed back is the element's own.
            if let (Some(id), Ok(Value::Object(o))) = (&e.event_id, serde_json::from_str(raw)) {
                assert_eq!(o.get("event_id").and_then(Value::as_str), Some(id.as_str()));
            }
        }
        Ok(ev) => {
            assert!(is_object, "{what}: only an object can be an event");
            check_event(raw, ev, what);
        }
    }
}

/// An accepted event: bounds, and the same fields as its JSON object.
fn check_event(raw: &str, ev: &Event, what: &str) {
    assert!((0..=TS_MAX).contains(&ev.ts), "{what}: ts {}", ev.ts);
    if let Some(id) = &ev.event_id {
        assert_chars("event_id", id, 1, 128);
    }
    for label in [&ev.site, &ev.agent].into_iter().flatten() {
        assert_chars("site/agent", label, 1, 64);
    }
    match &ev.body {
        Body::CallOffered { call, queue } => {
            assert_chars("call_id", call, 1, 128);
            assert_chars("queue", queue, 1, 64);
        }
        Body::CallAnswered { call }
        | Body::HoldStarted { call }
        | Body::HoldEnded { call }
        | Body::CallEnded { call, .. } => assert_chars("call_id", call, 1, 128),
        Body::CallbackPromised {
            promise,
            due,
            target,
        } => {
            assert_chars("promise_id", promise, 1, 128);
            assert!((0..=TS_MAX).contains(due), "{what}: due {due}");
            if let Some(call) = target.call() {
                assert_chars("call_id", call, 1, 128);
            }
            if let Some(queue) = target.queue() {
                assert_chars("queue", queue, 1, 64);
            }
        }
        Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } => {
            assert_chars("promise_id", promise, 1, 128)
        }
        Body::Clock => {}
    }
    // serde_json's own reading of the object. It refuses numbers out of f64
    // range that the decoder (which never reads unknown fields) accepts, so
    // only a successful read is compared.
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(raw) else {
        return;
    };
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    assert_eq!(text("type"), Some(ev.body.kind().as_str()), "{what}: type");
    assert_eq!(text("event_id"), ev.event_id.as_deref(), "{what}: event_id");
    assert_eq!(text("site"), ev.site.as_deref(), "{what}: site");
    assert_eq!(text("agent"), ev.agent.as_deref(), "{what}: agent");
    assert_eq!(Some(ev.ts), stamp(&o, "ts"), "{what}: ts");
    for personal in ["caller", "customer"] {
        if let Some(v) = text(personal) {
            assert_chars(personal, v, 0, 128);
        }
    }
    match &ev.body {
        Body::CallOffered { call, queue } => {
            assert_eq!(text("call_id"), Some(call.as_str()), "{what}: call_id");
            assert_eq!(text("queue"), Some(queue.as_str()), "{what}: queue");
        }
        Body::CallAnswered { call } | Body::HoldStarted { call } | Body::HoldEnded { call } => {
            assert_eq!(text("call_id"), Some(call.as_str()), "{what}: call_id");
        }
        Body::CallEnded { call, reason } => {
            assert_eq!(text("call_id"), Some(call.as_str()), "{what}: call_id");
            let want = text("reason").map_or(Some(EndReason::Completed), EndReason::parse);
            assert_eq!(Some(*reason), want, "{what}: reason");
        }
        Body::CallbackPromised {
            promise,
            due,
            target,
        } => {
            assert_eq!(text("promise_id"), Some(promise.as_str()), "{what}");
            let call = target.call().map(|c| c.as_str());
            assert_eq!(text("call_id"), call, "{what}: call_id");
            let queue = target.queue().map(|q| q.as_str());
            assert_eq!(text("queue"), queue, "{what}: queue");
            assert_eq!(Some(*due), stamp(&o, "due"), "{what}: due");
        }
        Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } => {
            assert_eq!(text("promise_id"), Some(promise.as_str()), "{what}");
        }
        Body::Clock => {}
    }
}

/// A timestamp field read independently: integer epoch milliseconds, or
/// RFC 3339 floored to the millisecond.
fn stamp(o: &Map<String, Value>, field: &str) -> Option<i64> {
    match o.get(field)? {
        Value::Number(n) => n.as_u64().and_then(|n| i64::try_from(n).ok()),
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
            i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
        }
        _ => None,
    }
}

fn assert_chars(field: &str, v: &str, min: usize, max: usize) {
    let n = v.chars().count();
    assert!(
        (min..=max).contains(&n),
        "{field} has {n} characters, outside {min}..={max}"
    );
}

/// The acknowledgement the daemon would send for these results (before the
/// engine sees the events, as if it accepted them all) says exactly that.
fn check_ack(decoded: &[Result<Event, DecodeError>]) {
    let accepted = decoded.iter().filter(|r| r.is_ok()).count() as u32;
    let rejected: Vec<Rejection> = decoded
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.as_ref().err().map(|e| Rejection {
                index: i as u32,
                event_id: e.event_id.clone(),
                reason: e.reason,
                detail: e.detail.clone(),
            })
        })
        .collect();
    let text = ack::encode(accepted, 0, &rejected);
    let v: Value = serde_json::from_str(&text).expect("the ack is valid JSON");
    assert_eq!(v["accepted"].as_u64(), Some(u64::from(accepted)));
    assert_eq!(v["duplicates"].as_u64(), Some(0));
    let list = v["rejected"].as_array().expect("rejected is an array");
    assert_eq!(list.len(), rejected.len());
    for (got, want) in list.iter().zip(&rejected) {
        assert_eq!(got["index"].as_u64(), Some(u64::from(want.index)));
        assert_eq!(got["reason"].as_str(), Some(want.reason.as_str()));
        assert_eq!(got["detail"].as_str(), Some(want.detail.as_str()));
        assert_eq!(
            got.get("event_id").and_then(Value::as_str),
            want.event_id.as_deref()
        );
        assert_eq!(
            got.as_object().map(Map::len),
            Some(3 + usize::from(want.event_id.is_some()))
        );
    }
}
