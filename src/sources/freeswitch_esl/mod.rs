//! FreeSWITCH mod_callcenter over the event socket (`kind =
//! "freeswitch_esl"`): the framing ([`frame`]), the pure translator
//! ([`translate`]) and the transport ([`session`]: inbound ESL, auth,
//! subscription, reconnect with reconciliation), plus [`convert`] for
//! captures.

pub mod frame;
pub mod session;
pub mod translate;

use super::{Address, Common, Context, Converted, Skipped, Translate};
use crate::ingest::client::Secret;
use crate::sources::metrics::Skip;
use frame::{Decoder, Item};
use translate::Translator;

/// The events ringwatch subscribes to (`event json ...`). The core event
/// names come before `CUSTOM`: mod_event_socket takes every word after
/// `CUSTOM` as a subclass name, so `CUSTOM callcenter::info CHANNEL_HOLD`
/// would never deliver a hold.
pub const SUBSCRIBE_EVENTS: &str =
    "CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_HANGUP_COMPLETE CUSTOM callcenter::info";

/// One `[sources.NAME]` with `kind = "freeswitch_esl"`, its files read.
#[derive(Clone)]
pub struct Settings {
    pub common: Common,
    /// `address`: host:port, port 8021 by default.
    pub address: Address,
    /// From `password_file` or `RINGWATCH__SOURCES__NAME__PASSWORD`; never logged.
    pub password: Secret,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("common", &self.common)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Connect, authenticate, subscribe, follow, reconnect, until `ctx.cancel`.
pub async fn run(s: Settings, ctx: Context) {
    session::run(s, ctx).await
}

/// The largest message a capture may hold.
const CAPTURE_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// An ESL capture (the framed stream as received, plain or JSON event
/// bodies) into events, with one fresh translator. Bytes that are not a
/// message (console lines around it) are skipped as `not_protocol`; replies
/// and other messages that are not events (`auth/request`,
/// `command/reply`, `api/response`, `text/disconnect-notice`) are part of
/// the protocol and are passed over without a word.
pub fn convert(text: &str, t: &Translate) -> Converted {
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line = |at: u64| -> usize {
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        newlines.partition_point(|n| *n < at) + 1
    };
    let mut out = Converted::default();
    let mut decoder = Decoder::new(CAPTURE_MAX_MESSAGE);
    decoder.push(text.as_bytes());
    let mut tr = Translator::new();
    while let Some(item) = decoder.next_item() {
        match item {
            Item::Skipped { at, reason, detail } => out.skipped.push(Skipped {
                line: line(at),
                reason: session::frame_skip(reason),
                detail,
            }),
            Item::Frame(f) => {
                let Some(body) = session::event_headers(&f) else {
                    continue;
                };
                let result = body
                    .map_err(|e| translate::Skipped {
                        reason: Skip::Malformed,
                        detail: e.to_string(),
                    })
                    .and_then(|h| tr.event(&h, t));
                match result {
                    Ok(events) => out.events.extend(events),
                    Err(s) => out.skipped.push(Skipped {
                        line: line(f.at),
                        reason: s.reason,
                        detail: s.detail,
                    }),
                }
            }
        }
    }
    if let Some(at) = decoder.unfinished() {
        out.skipped.push(Skipped {
            line: line(at),
            reason: Skip::Malformed,
            detail: "the capture ends inside a message".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Body, EndReason};

    fn plain(pairs: &[(&str, &str)]) -> String {
        let body: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", frame::url_encode(v)))
            .collect::<String>()
            + "\n";
        format!(
            "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
            body.len()
        )
    }

    fn json(pairs: &[(&str, &str)]) -> String {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let body = serde_json::Value::Object(map).to_string();
        format!(
            "Content-Length: {}\nContent-Type: text/event-json\n\n{body}",
            body.len()
        )
    }

    #[test]
    fn a_capture_with_console_lines_plain_and_json_bodies() {
        let start = [
            ("Event-Name", "CUSTOM"),
            ("Event-Subclass", "callcenter::info"),
            ("CC-Action", "member-queue-start"),
            ("CC-Queue", "support@default"),
            ("CC-Member-UUID", "m1"),
            ("CC-Member-CID-Name", "Ann Lee"),
            ("Event-Date-Timestamp", "1795424400000123"),
        ];
        let end = [
            ("Event-Name", "CUSTOM"),
            ("Event-Subclass", "callcenter::info"),
            ("CC-Action", "member-queue-end"),
            ("CC-Member-UUID", "m1"),
            ("CC-Cause", "Cancel"),
            ("CC-Cancel-Reason", "BREAK_OUT"),
            ("Event-Date-Timestamp", "1795424403000999"),
        ];
        let capture = format!(
            "Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\nfreeswitch@pbx> junk\n{}{}{}Content-Length: 50\n\n{{cut",
            plain(&start),
            json(&[("Event-Name", "HEARTBEAT")]),
            json(&end),
        );
        let c = convert(&capture, &Translate::default());
        assert_eq!(c.events.len(), 2, "{c:?}");
        assert_eq!(c.events[0].ts, 1_795_424_400_000);
        assert!(
            matches!(&c.events[0].body, Body::CallOffered { queue, .. } if queue == "support@default")
        );
        assert!(matches!(
            c.events[1].body,
            Body::CallEnded {
                reason: EndReason::Abandoned,
                ..
            }
        ));
        let skipped: Vec<(usize, Skip)> = c.skipped.iter().map(|s| (s.line, s.reason)).collect();
        assert_eq!(skipped[0], (6, Skip::NotProtocol));
        assert_eq!(skipped[1].1, Skip::Ignored);
        assert_eq!(skipped.last().unwrap().1, Skip::Malformed);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
    }
}
