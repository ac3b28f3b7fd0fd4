//! The acknowledgement frame sent after every text frame:
//! `{"accepted": n, "duplicates": n, "rejected": [{"index", "event_id", "reason", "detail"}]}`.
//!
//! Written by hand rather than through serde: one ack per frame is on the
//! hot path, its shape is fixed, and the only text that needs escaping is an
//! `event_id` and a `detail`. A test checks it against serde_json's output.

use std::fmt::Write;

use crate::verdict::{Rejection, Verdicts};

/// The ack's JSON; `rejected` must already be in index order.
pub fn encode(accepted: u32, duplicates: u32, rejected: &[Rejection]) -> String {
    let mut out = String::with_capacity(48 + rejected.len() * 96);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"{{"accepted":{accepted},"duplicates":{duplicates},"rejected":["#
    );
    for (n, r) in rejected.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"index":{}"#, r.index);
        if let Some(id) = &r.event_id {
            out.push_str(r#","event_id":"#);
            string(&mut out, id);
        }
        out.push_str(r#","reason":""#);
        // Reasons are fixed snake_case words: nothing to escape.
        out.push_str(r.reason.as_str());
        out.push_str(r#"","detail":"#);
        string(&mut out, &r.detail);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The ack of a frame's verdicts.
pub fn of(v: &Verdicts) -> String {
    encode(v.accepted, v.duplicates, &v.rejected)
}

/// `s` as a JSON string, escaped as serde_json escapes it (RFC 8259: the
/// quote, the backslash and control characters; `\n`-style short forms
/// where JSON has them).
fn string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so these are char boundaries.
        out.push_str(&s[plain..i]);
        if short.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(short);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Reason;
    use proptest::prelude::*;

    #[test]
    fn matches_the_contract() {
        let r = vec![Rejection {
            index: 7,
            event_id: Some("e-9".into()),
            reason: Reason::UnknownCall,
            detail: "call.answered for call c-77: never offered".into(),
        }];
        assert_eq!(
            encode(98, 1, &r),
            r#"{"accepted":98,"duplicates":1,"rejected":[{"index":7,"event_id":"e-9","reason":"unknown_call","detail":"call.answered for call c-77: never offered"}]}"#
        );
        assert_eq!(
            encode(1, 0, &[]),
            r#"{"accepted":1,"duplicates":0,"rejected":[]}"#
        );
    }

    /// What serde_json writes for the same ack: the reference.
    fn by_serde(accepted: u32, duplicates: u32, rejected: &[Rejection]) -> String {
        let rejected: Vec<serde_json::Value> = rejected
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("index".into(), r.index.into());
                if let Some(id) = &r.event_id {
                    m.insert("event_id".into(), id.as_str().into());
                }
                m.insert("reason".into(), r.reason.as_str().into());
                m.insert("detail".into(), r.detail.as_str().into());
                serde_json::Value::Object(m)
            })
            .collect();
        // preserve_order is off: build the text in the contract's order.
        let items: Vec<String> = rejected
            .iter()
            .map(|v| {
                let o = v.as_object().unwrap();
                let mut s = format!(r#"{{"index":{}"#, o["index"]);
                if let Some(id) = o.get("event_id") {
                    s += &format!(r#","event_id":{id}"#);
                }
                s += &format!(r#","reason":{},"detail":{}}}"#, o["reason"], o["detail"]);
                s
            })
            .collect();
        format!(
            r#"{{"accepted":{accepted},"duplicates":{duplicates},"rejected":[{}]}}"#,
            items.join(",")
        )
    }

    proptest! {
        /// Any text (quotes, backslashes, control characters, non-ASCII)
        /// comes out as serde_json writes it, and parses back to itself.
        #[test]
        fn escapes_as_serde_json_does(
            a in any::<u32>(),
            d in any::<u32>(),
            items in proptest::collection::vec(
                (any::<u32>(), proptest::option::of("\\PC{0,12}|[\\x00-\\x20\"\\\\]{0,6}"), ".{0,40}|[\\x00-\\x1f]{1,4}"),
                0..4,
            ),
        ) {
            let rejected: Vec<Rejection> = items
                .into_iter()
                .map(|(index, id, detail)| Rejection {
                    index,
                    event_id: id.map(Into::into),
                    reason: Reason::InvalidField,
                    detail,
                })
                .collect();
            let ours = encode(a, d, &rejected);
            prop_assert_eq!(&ours, &by_serde(a, d, &rejected));
            let back: serde_json::Value = serde_json::from_str(&ours).unwrap();
            for (r, v) in rejected.iter().zip(back["rejected"].as_array().unwrap()) {
                prop_assert_eq!(v["detail"].as_str().unwrap(), r.detail.as_str());
                prop_assert_eq!(v.get("event_id").and_then(|x| x.as_str()), r.event_id.as_deref());
            }
        }
    }
}
