//! Events back into the wire contract: the JSON a platform source's
//! translated events are journaled as (so replay decodes them exactly as a
//! WebSocket frame), what `ringwatch convert` prints and `ringwatch import`
//! sends.

use serde_json::{Map, Value};

use crate::event::{Body, EndReason, Event, PromiseTarget};

/// One event as a JSON object of the contract (`docs/events.md`): `ts` and
/// `due` as integer milliseconds, optional fields only when set.
pub fn to_value(ev: &Event) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("type", ev.body.kind().as_str().into());
    put("ts", ev.ts.into());
    if let Some(id) = &ev.event_id {
        put("event_id", id.as_str().into());
    }
    if let Some(site) = &ev.site {
        put("site", site.as_str().into());
    }
    if let Some(agent) = &ev.agent {
        put("agent", agent.as_str().into());
    }
    match &ev.body {
        Body::CallOffered { call, queue } => {
            put("call_id", call.as_str().into());
            put("queue", queue.as_str().into());
        }
        Body::CallAnswered { call } | Body::HoldStarted { call } | Body::HoldEnded { call } => {
            put("call_id", call.as_str().into());
        }
        Body::CallEnded { call, reason } => {
            put("call_id", call.as_str().into());
            put("reason", reason_str(*reason).into());
        }
        Body::CallbackPromised {
            promise,
            due,
            target,
        } => {
            put("promise_id", promise.as_str().into());
            put("due", (*due).into());
            match target {
                PromiseTarget::Queue { queue, call } => {
                    put("queue", queue.as_str().into());
                    if let Some(call) = call {
                        put("call_id", call.as_str().into());
                    }
                }
                PromiseTarget::Call { call } => put("call_id", call.as_str().into()),
            }
        }
        Body::CallbackCompleted { promise } | Body::CallbackCancelled { promise } => {
            put("promise_id", promise.as_str().into());
        }
        Body::Clock => {}
    }
    Value::Object(m)
}

/// One event as a JSON line (no newline).
pub fn to_json(ev: &Event) -> String {
    to_value(ev).to_string()
}

/// Several events as one frame: a JSON array.
pub fn frame(events: &[Event]) -> String {
    frames(events, usize::MAX, usize::MAX)
        .pop()
        .map_or_else(|| "[]".to_string(), |(text, _)| text)
}

/// `events` cut, in order, into frames (JSON arrays) of at most
/// `max_events` events and `max_bytes` bytes, each with the range of
/// `events` it holds. An event bigger than `max_bytes` on its own is a frame
/// of its own (the daemon then refuses it, counted, rather than it being
/// lost here).
pub fn frames(
    events: &[Event],
    max_events: usize,
    max_bytes: usize,
) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut start = 0;
    for (i, ev) in events.iter().enumerate() {
        let one = to_json(ev);
        let n = i - start;
        // `[`/`,` before it and `]` after.
        if n > 0 && (n >= max_events.max(1) || text.len() + one.len() + 2 > max_bytes) {
            text.push(']');
            out.push((std::mem::take(&mut text), start..i));
            start = i;
        }
        text.push(if i == start { '[' } else { ',' });
        text.push_str(&one);
    }
    if start < events.len() {
        text.push(']');
        out.push((text, start..events.len()));
    }
    out
}

pub fn reason_str(r: EndReason) -> &'static str {
    match r {
        EndReason::Completed => "completed",
        EndReason::Abandoned => "abandoned",
        EndReason::Transferred => "transferred",
        EndReason::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::decode_frame;

    fn ev(body: Body) -> Event {
        Event {
            ts: 1_795_424_400_123,
            event_id: Some("ast:1.2:1:offered".into()),
            site: Some("hq".into()),
            agent: Some("PJSIP/2001".into()),
            body,
        }
    }

    /// Whatever a translator can build decodes back to itself.
    #[test]
    fn every_body_round_trips_through_the_decoder() {
        let bodies = vec![
            Body::CallOffered {
                call: "c".into(),
                queue: "q".into(),
            },
            Body::CallAnswered { call: "c".into() },
            Body::HoldStarted { call: "c".into() },
            Body::HoldEnded { call: "c".into() },
            Body::CallEnded {
                call: "c".into(),
                reason: EndReason::Transferred,
            },
            Body::CallbackPromised {
                promise: "p".into(),
                due: 1_795_424_500_000,
                target: PromiseTarget::Queue {
                    queue: "q".into(),
                    call: Some("c".into()),
                },
            },
            Body::CallbackPromised {
                promise: "p".into(),
                due: 1_795_424_500_000,
                target: PromiseTarget::Call { call: "c".into() },
            },
            Body::CallbackCompleted {
                promise: "p".into(),
            },
            Body::CallbackCancelled {
                promise: "p".into(),
            },
            Body::Clock,
        ];
        let events: Vec<Event> = bodies.into_iter().map(ev).collect();
        let text = frame(&events);
        let back: Vec<Event> = decode_frame(&text)
            .into_iter()
            .map(|d| d.expect("decodes"))
            .collect();
        assert_eq!(back, events);
        assert_eq!(frame(&[]), "[]");
    }

    /// Frames keep every event once, in order, under both limits.
    #[test]
    fn frames_respect_both_limits() {
        let events: Vec<Event> = (0..10)
            .map(|i| {
                ev(Body::CallAnswered {
                    call: format!("c{i}").into(),
                })
            })
            .collect();
        let one = to_json(&events[0]).len();
        let by_count = frames(&events, 4, usize::MAX);
        let ranges: Vec<_> = by_count.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(ranges, vec![0..4, 4..8, 8..10]);
        // Room for two events and the brackets and comma, not three.
        let by_bytes = frames(&events, usize::MAX, 2 * one + 3);
        assert!(by_bytes
            .iter()
            .all(|(t, r)| r.len() == 2 && t.len() <= 2 * one + 3));
        let back: Vec<Event> = by_bytes
            .iter()
            .flat_map(|(t, _)| decode_frame(t))
            .map(|d| d.expect("decodes"))
            .collect();
        assert_eq!(back, events);
        // Too small for even one: one event per frame, nothing dropped.
        assert_eq!(frames(&events, 100, 1).len(), 10);
    }
}
