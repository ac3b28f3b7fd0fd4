//! Fuzz target `esl_frame`: arbitrary bytes as an event-socket stream,
//! through `ringwatch::sources::freeswitch_esl`'s framing, body readers and
//! translator, and through `convert`.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - the stream cut at any point (the first input byte picks where) gives
//!   the same items as read whole;
//! - no item's body is over the limit, and every byte is accounted for:
//!   what is left over is less than a whole message;
//! - every event the translator makes fits the contract (ids 1-128
//!   characters, labels 1-64) and names its call in its event id;
//! - `convert` never panics, and its skipped lines are within the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwatch::sources::freeswitch_esl::frame::{self, Decoder, Item};
use ringwatch::sources::freeswitch_esl::translate::Translator;
use ringwatch::sources::{AbandonPolicy, Translate};

const MAX: usize = 512;

fn items(chunks: &[&[u8]]) -> (Vec<Item>, usize) {
    let mut d = Decoder::new(MAX);
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        while let Some(i) = d.next_item() {
            out.push(i);
        }
    }
    (out, d.pending())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let (whole, left) = items(&[stream]);
    let at = usize::from(cut) * stream.len() / 256;
    let (a, b) = stream.split_at(at.min(stream.len()));
    let (split, _) = items(&[a, b]);
    assert_eq!(whole, split, "cut at {at}");
    assert!(left <= stream.len());
    let t = Translate {
        site: Some("hq".into()),
        abandon_policy: if cut % 2 == 0 {
            AbandonPolicy::Failed
        } else {
            AbandonPolicy::Abandoned
        },
    };
    let mut tr = Translator::new();
    for item in &whole {
        let Item::Frame(f) = item else { continue };
        assert!(f.body.len() <= MAX);
        for headers in [frame::plain_event(&f.body), frame::json_event(&f.body)]
            .into_iter()
            .flatten()
        {
            if let Ok(events) = tr.event(&headers, &t) {
                for ev in events {
                    let id = ev.event_id.clone().expect("every event has an id");
                    assert!((1..=128).contains(&id.chars().count()));
                    let (_, call) = ev.body.subject().expect("a call event");
                    assert!((1..=128).contains(&call.chars().count()));
                    assert!(id.starts_with(call) || id.contains('~'));
                    for l in [&ev.site, &ev.agent].into_iter().flatten() {
                        assert!((1..=64).contains(&l.chars().count()));
                    }
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(stream) {
        let c = ringwatch::sources::freeswitch_esl::convert(text, &t);
        let lines = text.matches('\n').count() + 1;
        assert!(c.skipped.iter().all(|s| (1..=lines).contains(&s.line)));
    }
});
