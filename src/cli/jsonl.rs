//! JSON lines for `ringwatch import --format jsonl`, pure: each line one
//! contract event or one array frame, decoded by the daemon's own decoder
//! (so a line it would refuse is reported here, with its line number, and
//! not sent), and an event without `event_id` given one derived from the
//! line's content and position, so importing the file again is all
//! duplicates.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::convert::{Converted, Origin, Skipped};
use crate::event::Id;
use crate::ingest::decode::decode_frame;

/// The `event_id` of the `element`-th event (from 0) of `line` (1-based),
/// whose text is `content` (surrounding whitespace removed): the same line
/// at the same place always gets the same id, a changed line another.
pub fn derived_id(content: &str, line: usize, element: usize) -> Id {
    let mut h = SipHasher13::new_with_keys(0x6a73_6f6e_6c69_6e65, 0x7269_6e67_7761_7463);
    h.write(content.as_bytes());
    h.write_u64(line as u64);
    h.write_u64(element as u64);
    Id::from(format!("jsonl:{line}:{element}:{:016x}", h.finish()))
}

/// Read every file; blank lines are skipped, bad lines and bad elements of
/// an array reported (as `unsendable`), the rest kept in file order.
pub fn read_all(files: &[(String, String)]) -> Converted {
    let mut out = Converted {
        files: files.iter().map(|(name, _)| name.clone()).collect(),
        ..Converted::default()
    };
    for (file, (_, text)) in files.iter().enumerate() {
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let content = raw.trim();
            if content.is_empty() {
                continue;
            }
            let at = Origin { file, line };
            let decoded = decode_frame(content);
            let array = content.starts_with('[');
            for (element, result) in decoded.into_iter().enumerate() {
                match result {
                    Ok(mut ev) => {
                        if ev.event_id.is_none() {
                            ev.event_id = Some(derived_id(content, line, element));
                        }
                        out.events.push(ev);
                        out.origins.push(at);
                    }
                    Err(e) => {
                        let detail = if array {
                            format!("element {element}: {}", e.detail)
                        } else {
                            e.detail
                        };
                        out.skipped.push(Skipped {
                            at,
                            reason: e.reason.as_str(),
                            detail,
                            unsendable: true,
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Body;
    use proptest::prelude::*;

    fn one(text: &str) -> Converted {
        read_all(&[("calls.jsonl".to_string(), text.to_string())])
    }

    #[test]
    fn objects_arrays_and_blank_lines() {
        let c = one(concat!(
            r#"{"type":"call.offered","ts":1000,"call_id":"c1","queue":"q","event_id":"mine"}"#,
            "\n\n   \r\n",
            r#"[{"type":"call.answered","ts":2000,"call_id":"c1"},{"type":"call.ended","ts":3000,"call_id":"c1","reason":"completed"}]"#,
            "\r\n",
        ));
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        assert_eq!(c.events.len(), 3);
        assert_eq!(c.events[0].event_id.as_deref(), Some("mine"));
        assert!(matches!(c.events[1].body, Body::CallAnswered { .. }));
        let lines: Vec<usize> = c.origins.iter().map(|o| o.line).collect();
        assert_eq!(lines, [1, 4, 4]);
        let id1 = c.events[1].event_id.clone().unwrap();
        let id2 = c.events[2].event_id.clone().unwrap();
        assert!(id1.starts_with("jsonl:4:0:"), "{id1}");
        assert!(id2.starts_with("jsonl:4:1:"), "{id2}");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_not_kept() {
        let c = one(concat!(
            "not json\n",
            r#"{"type":"call.offered","ts":1000,"call_id":"c1"}"#,
            "\n",
            r#"[{"type":"clock","ts":5},{"type":"nope","ts":5}]"#,
            "\n",
        ));
        assert_eq!(c.events.len(), 1, "the valid element of the array");
        assert_eq!(c.unsendable(), 3);
        let at: Vec<(usize, &str)> = c.skipped.iter().map(|s| (s.at.line, s.reason)).collect();
        assert_eq!(
            at,
            [
                (1, "malformed_json"),
                (2, "missing_field"),
                (3, "unknown_type")
            ]
        );
        assert!(
            c.skipped[2].detail.starts_with("element 1: "),
            "{:?}",
            c.skipped[2]
        );
        assert!(c.report(10).contains("calls.jsonl:2: missing_field"));
    }

    #[test]
    fn the_same_file_gets_the_same_ids() {
        let text = "{\"type\":\"clock\",\"ts\":1}\n{\"type\":\"clock\",\"ts\":1}\n";
        let a = one(text);
        let b = one(text);
        let ids = |c: &Converted| -> Vec<Id> {
            c.events
                .iter()
                .map(|e| e.event_id.clone().unwrap())
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
        // two identical lines are still two events
        assert_ne!(ids(&a)[0], ids(&a)[1]);
    }

    proptest! {
        #[test]
        fn derived_ids_fit_the_contract_and_differ_by_content(
            content in ".{0,300}", other in ".{0,300}", line in 1usize..10_000_000, el in 0usize..100_000,
        ) {
            let id = derived_id(&content, line, el);
            prop_assert!(id.chars().count() <= crate::sources::ids::MAX);
            prop_assert_eq!(&id, &derived_id(&content, line, el));
            if content != other {
                prop_assert_ne!(id, derived_id(&other, line, el));
            }
        }

        #[test]
        fn any_text_is_read_without_panicking(text in "(\\PC|\n){0,400}") {
            let c = one(&text);
            prop_assert_eq!(c.events.len(), c.origins.len());
        }
    }
}
