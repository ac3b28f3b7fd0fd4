//! The simulator: a reproducible call center ([`model`]) turned into wire
//! events, pushed over the real WebSocket ingest ([`send`]), with its own
//! ground truth ([`truth`]) compared against `/metrics` ([`verify`]); or
//! played as a PBX would tell it ([`emit_ami`], [`emit_esl`], served by
//! [`emit`]) for ringwatch's own platform sources to read.

pub mod emit;
pub mod emit_ami;
pub mod emit_esl;
pub mod model;
pub mod run;
pub mod scrape;
pub mod send;
pub mod truth;
pub mod verify;

use serde_json::{json, Value};

use crate::event::Millis;
use model::{Model, Resolution, Story};

/// One event on the wire, with the `ts` it is sorted and paced by.
#[derive(Clone, Debug)]
pub struct WireEvent {
    pub ts: Millis,
    pub json: String,
}

/// Every event of the simulation in `ts` order (a call's own events keep
/// their order when several share a `ts`). With `final_clock`, a `clock`
/// heartbeat at that time ends the stream, so promises never completed
/// become missed on event time.
pub fn events(model: &Model, stories: &[Story], final_clock: Option<Millis>) -> Vec<WireEvent> {
    let mut out: Vec<(Millis, Value)> = Vec::new();
    let queue = |q: usize| model.queues[q].name.as_str();
    for story in stories {
        match story {
            Story::Abandoned {
                queue: q,
                call,
                offered,
                ended,
            } => {
                let id = format!("c{}-{call}", model.seed);
                out.push((*offered, json!({"type": "call.offered", "call_id": id, "queue": queue(*q), "caller": "+15550100"})));
                out.push((
                    *ended,
                    json!({"type": "call.ended", "call_id": id, "reason": "abandoned"}),
                ));
            }
            Story::Answered {
                queue: q,
                call,
                offered,
                answered,
                holds,
                ends_on_hold,
                ended,
                transferred,
                callback,
            } => {
                let id = format!("c{}-{call}", model.seed);
                let agent = format!("agent-{}-{}", queue(*q), call % 7);
                out.push((*offered, json!({"type": "call.offered", "call_id": id, "queue": queue(*q), "caller": "+15550100"})));
                out.push((
                    *answered,
                    json!({"type": "call.answered", "call_id": id, "agent": agent}),
                ));
                for (i, (start, end)) in holds.iter().enumerate() {
                    out.push((
                        *start,
                        json!({"type": "call.hold_started", "call_id": id, "agent": agent}),
                    ));
                    if !(*ends_on_hold && i == holds.len() - 1) {
                        out.push((*end, json!({"type": "call.hold_ended", "call_id": id})));
                    }
                }
                if let Some(cb) = callback {
                    let pid = format!("p{}-{call}", model.seed);
                    out.push((cb.promised, json!({"type": "callback.promised", "call_id": id, "promise_id": pid, "due": cb.due, "agent": agent, "customer": "Sam Sample"})));
                    match cb.resolution {
                        Resolution::Completed(at) => out.push((at, json!({"type": "callback.completed", "promise_id": pid, "agent": agent}))),
                        Resolution::Cancelled(at) => out.push((at, json!({"type": "callback.cancelled", "promise_id": pid}))),
                        Resolution::Never => {}
                    }
                }
                let reason = if *transferred {
                    "transferred"
                } else {
                    "completed"
                };
                out.push((
                    *ended,
                    json!({"type": "call.ended", "call_id": id, "reason": reason}),
                ));
            }
        }
    }
    if let Some(at) = final_clock {
        out.push((at, json!({"type": "clock"})));
    }
    // Stable: events of one call with the same ts stay in the order above.
    out.sort_by_key(|(ts, _)| *ts);
    out.into_iter()
        .enumerate()
        .map(|(n, (ts, mut v))| {
            v["ts"] = json!(ts);
            v["event_id"] = json!(format!("sim{}-{n}", model.seed));
            WireEvent {
                ts,
                json: v.to_string(),
            }
        })
        .collect()
}

/// The moment after which every promise of the simulation has its outcome.
pub fn settle_time(stories: &[Story], callback_expiry: Millis) -> Millis {
    stories
        .iter()
        .map(|s| match s {
            Story::Answered {
                ended, callback, ..
            } => match callback {
                Some(cb) => (*ended)
                    .max(cb.due + callback_expiry + 1)
                    .max(match cb.resolution {
                        Resolution::Completed(t) | Resolution::Cancelled(t) => t,
                        Resolution::Never => 0,
                    }),
                None => *ended,
            },
            Story::Abandoned { ended, .. } => *ended,
        })
        .max()
        .unwrap_or(0)
        + 1_000
}
