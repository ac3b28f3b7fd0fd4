//! Fuzz target `ami_frame`: arbitrary bytes as an AMI stream, through
//! `ringwatch::sources::asterisk_ami::frame::Parser` (live and capture
//! mode) and the translator, checked against what the framing promises.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - where the bytes are split between reads does not change the result;
//! - a message kept is within `max_message_bytes` (before lossy UTF-8
//!   repair) and its keys are header tokens with no `": "` in them;
//! - messages and skips come out in stream order (non-decreasing lines);
//! - the translator takes anything, and the events it makes have unique
//!   ids, each call offered before any other step of it.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use ringwatch::event::Body;
use ringwatch::sources::asterisk_ami::frame::{Item, Mode, Parser};
use ringwatch::sources::asterisk_ami::translate::{Output, State, Translator};
use ringwatch::sources::Translate;

fn parse(mode: Mode, max: usize, chunks: &[&[u8]]) -> Vec<Item> {
    let mut p = Parser::new(mode, max);
    let mut out = Vec::new();
    for c in chunks {
        p.push(c, &mut out);
    }
    p.finish(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the size limit and the split point.
    let (max, cut, bytes) = match data {
        [a, b, rest @ ..] => (64 + usize::from(*a) * 8, usize::from(*b), rest),
        _ => (256, 0, data),
    };
    let cut = cut.min(bytes.len());
    for mode in [Mode::Live, Mode::Capture] {
        let whole = parse(mode, max, &[bytes]);
        let (head, tail) = bytes.split_at(cut);
        let split = parse(mode, max, &[head, tail]);
        assert_eq!(whole, split, "the split point changed the result");
        let mut last = 0;
        for item in &whole {
            let line = match item {
                Item::Message(m) => {
                    for (k, _) in &m.fields {
                        assert!(!k.is_empty() && !k.contains(": ") && !k.contains(' '), "key {k:?}");
                    }
                    let size: usize = m.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
                    assert!(size <= 3 * max + 4 * m.fields.len(), "message of {size} bytes kept");
                    m.line
                }
                Item::Skipped { line, .. } => *line,
            };
            assert!(line >= last || mode == Mode::Capture, "lines out of order");
            last = last.max(line);
        }
        let mut t = Translator::new(Translate::default(), State::default());
        let mut out = Output::default();
        for item in &whole {
            if let Item::Message(m) = item {
                t.message(m, Some(1_795_424_400_000), &mut out);
            }
        }
        t.finish(&mut out);
        let mut ids = HashSet::new();
        let mut offered = HashSet::new();
        for e in &out.events {
            let id = e.event_id.clone().expect("every translated event has an id");
            assert!(ids.insert(id.clone()), "event id {id} twice");
            match &e.body {
                Body::CallOffered { call, .. } => {
                    offered.insert(call.clone());
                }
                Body::CallAnswered { call }
                | Body::HoldStarted { call }
                | Body::HoldEnded { call }
                | Body::CallEnded { call, .. } => {
                    assert!(offered.contains(call), "{id} before its offer");
                }
                _ => {}
            }
        }
    }
});
