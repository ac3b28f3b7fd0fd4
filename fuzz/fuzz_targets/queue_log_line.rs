//! Fuzz target `queue_log_line`: arbitrary bytes as a queue_log file, each
//! line through the same size check, parser and translator the follower
//! and `ringwatch convert` use, checked against what they promise.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - every line gives an event or a counted reason with a detail, never a
//!   panic;
//! - a parsed line has a time in 1970..9999 and a callid and a verb;
//! - every event is within the wire contract: encoded and decoded again it
//!   is itself;
//! - the translator is deterministic, and its state survives the JSON
//!   round trip of the saved position unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwatch::ingest::decode::decode_frame;
use ringwatch::sources::asterisk_queue_log::line::{self, MAX_EPOCH};
use ringwatch::sources::asterisk_queue_log::translate::{State, Translator};
use ringwatch::sources::asterisk_queue_log::{convert, one_line};
use ringwatch::sources::{wire, Translate};

/// Small, so the fuzzer also meets oversized lines.
const MAX: usize = 300;

fuzz_target!(|data: &[u8]| {
    let t = Translate {
        site: Some("hq".into()),
        ..Translate::default()
    };
    let mut tr = Translator::new(t.clone(), State::default());
    let mut events = Vec::new();
    let mut outcomes = Vec::new();
    for bytes in data.split(|b| *b == b'\n') {
        if let Ok(l) = line::parse(bytes) {
            assert!((0..=MAX_EPOCH * 1000 + 999).contains(&l.ts), "{l:?}");
            assert!(!l.callid.is_empty() && !l.verb.is_empty(), "{l:?}");
        }
        match one_line(bytes, MAX, &mut tr) {
            Ok(ev) => {
                outcomes.push(Ok(ev.clone()));
                events.push(ev);
            }
            Err(r) => {
                assert!(!r.detail.is_empty(), "{r:?}");
                outcomes.push(Err(r.reason));
            }
        }
    }
    let text = wire::frame(&events);
    let back: Vec<_> = decode_frame(&text)
        .into_iter()
        .map(|d| d.expect("a translated event is within the contract"))
        .collect();
    if !events.is_empty() {
        assert_eq!(back, events);
    }
    let json = serde_json::to_string(tr.state()).expect("the state encodes");
    let restored: State = serde_json::from_str(&json).expect("the state decodes");
    assert_eq!(&restored, tr.state());
    // The same bytes again give the same outcomes.
    let mut again = Translator::new(t.clone(), State::default());
    for (bytes, want) in data.split(|b| *b == b'\n').zip(&outcomes) {
        let got = one_line(bytes, MAX, &mut again).map_err(|r| r.reason);
        assert_eq!(&got, want);
    }
    // convert agrees on UTF-8 text of short lines.
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.contains('\r') && text.split('\n').all(|l| l.len() <= MAX) {
            let c = convert(text, &t);
            let n = text.lines().count();
            assert_eq!(c.events.len() + c.skipped.len(), n);
        }
    }
});
