//! AMI framing: bytes in, messages out. Lines end in CRLF (a bare LF is
//! taken too), a blank line ends a message, each line is `Key: Value` split
//! on the first `": "`, keys repeat and compare case-insensitively. Pure and
//! incremental (bytes may arrive split anywhere), bounded by
//! `max_message_bytes`, and total: whatever the bytes, it never panics and
//! never stops; a bad message is reported and the next one parsed.

use crate::sources::metrics::Skip;

/// One AMI message: its fields in order, repeated keys kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// 1-based line of the message's first line in the stream.
    pub line: usize,
    pub fields: Vec<(String, String)>,
}

/// What a message is, by its first field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `Event: <name>`.
    Event(&'a str),
    /// `Response: <status>` (an answer to an action).
    Response(&'a str),
    /// Neither (an action echoed in a capture, or nonsense).
    Other,
}

impl Message {
    /// The first value of `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn kind(&self) -> Kind<'_> {
        // Asterisk puts `Event:` or `Response:` first; a capture tool may
        // not, so look at every field, events first.
        if let Some(e) = self.get("Event") {
            return Kind::Event(e);
        }
        if let Some(r) = self.get("Response") {
            return Kind::Response(r);
        }
        Kind::Other
    }

    pub fn is_event(&self, name: &str) -> bool {
        matches!(self.kind(), Kind::Event(e) if e.eq_ignore_ascii_case(name))
    }
}

/// One result of parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Message(Message),
    /// A message (or, in a capture, a line) that was dropped.
    Skipped {
        line: usize,
        reason: Skip,
        detail: String,
    },
}

/// Live (a manager connection) or a capture file (console lines around the
/// protocol are expected and skipped one by one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Capture,
}

/// The incremental parser.
#[derive(Debug)]
pub struct Parser {
    mode: Mode,
    max: usize,
    /// Bytes of an unfinished line.
    partial: Vec<u8>,
    /// The partial line grew past the limit: drop bytes until its newline.
    discarding: bool,
    /// Lines ended so far.
    lines: usize,
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    line: usize,
    fields: Vec<(String, String)>,
    bytes: usize,
    bad: Option<(Skip, String)>,
    /// `Response: Follows`: raw command output until `--END COMMAND--`.
    follows: bool,
}

impl Parser {
    /// `max` is the largest message kept, in bytes, line endings included.
    pub fn new(mode: Mode, max: usize) -> Self {
        Parser {
            mode,
            max: max.max(1),
            partial: Vec::new(),
            discarding: false,
            lines: 0,
            current: None,
        }
    }

    /// Lines completed so far (the line number of the last one).
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Feed bytes; every message (or skip) they complete goes to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Item>) {
        while !bytes.is_empty() {
            match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let (head, rest) = bytes.split_at(i);
                    bytes = rest.get(1..).unwrap_or_default();
                    if self.discarding {
                        self.discarding = false;
                        self.partial.clear();
                        self.lines += 1;
                        // The line itself was over the limit; the message
                        // it belongs to is skipped at its blank line.
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(head);
                    self.lines += 1;
                    self.line(&line, out);
                }
                None => {
                    if !self.discarding {
                        self.partial.extend_from_slice(bytes);
                        let pending = self.current.as_ref().map_or(0, |c| c.bytes);
                        if pending + self.partial.len() > self.max {
                            self.partial = Vec::new();
                            self.discarding = true;
                            self.oversized(self.lines + 1);
                        }
                    }
                    bytes = &[];
                }
            }
        }
    }

    /// The end of the input (a capture file): an unfinished message counts
    /// as ended.
    pub fn finish(&mut self, out: &mut Vec<Item>) {
        if !self.partial.is_empty() && !self.discarding {
            let line = std::mem::take(&mut self.partial);
            self.lines += 1;
            self.line(&line, out);
        }
        self.partial.clear();
        self.discarding = false;
        self.end_message(out);
    }

    fn oversized(&mut self, line: usize) {
        let max = self.max;
        let c = self.current.get_or_insert_with(|| Current::new(line));
        c.fields = Vec::new();
        if !matches!(c.bad, Some((Skip::Oversized, _))) {
            c.bad = Some((
                Skip::Oversized,
                format!("message over max_message_bytes ({max} bytes)"),
            ));
        }
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Item>) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let n = self.lines;
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            self.end_message(out);
            return;
        }
        let text = String::from_utf8_lossy(raw);
        let size = raw.len() + 2;
        let pair = split(&text);
        if self.mode == Mode::Capture && pair.is_none() {
            let following = self.current.as_ref().is_some_and(|c| c.follows);
            if !following {
                // A console line around (or inside) a message: skipped alone.
                out.push(Item::Skipped {
                    line: n,
                    reason: Skip::NotProtocol,
                    detail: format!("not an AMI line: {:?}", clip(&text, 60)),
                });
                return;
            }
        }
        let max = self.max;
        let c = self.current.get_or_insert_with(|| Current::new(n));
        c.bytes = c.bytes.saturating_add(size);
        if c.bytes > max {
            if !matches!(c.bad, Some((Skip::Oversized, _))) {
                c.fields = Vec::new();
                c.bad = Some((
                    Skip::Oversized,
                    format!("message over max_message_bytes ({max} bytes)"),
                ));
            }
            return;
        }
        if c.bad.is_some() {
            return;
        }
        match pair {
            Some((k, v)) => {
                if c.fields.is_empty()
                    && k.eq_ignore_ascii_case("Response")
                    && v.eq_ignore_ascii_case("Follows")
                {
                    c.follows = true;
                }
                c.fields.push((k.to_string(), v.to_string()));
            }
            // Command output of `Response: Follows` is not fields.
            None if c.follows => {}
            None => {
                c.fields = Vec::new();
                c.bad = Some((
                    Skip::Malformed,
                    format!("line {n} is not \"Key: Value\": {:?}", clip(&text, 60)),
                ));
            }
        }
    }

    fn end_message(&mut self, out: &mut Vec<Item>) {
        let Some(c) = self.current.take() else {
            return;
        };
        match c.bad {
            Some((reason, detail)) => out.push(Item::Skipped {
                line: c.line,
                reason,
                detail,
            }),
            None if c.fields.is_empty() => {}
            None => out.push(Item::Message(Message {
                line: c.line,
                fields: c.fields,
            })),
        }
    }
}

impl Current {
    fn new(line: usize) -> Self {
        Current {
            line,
            fields: Vec::new(),
            bytes: 0,
            bad: None,
            follows: false,
        }
    }
}

/// `Key: Value` on the first `": "` (a bare `Key:` has an empty value). A
/// key is a header token: letters, digits and `-_.()/@`, no spaces, which
/// is what tells console lines (`[Dec 26] VERBOSE[12] pbx.c: ...`) apart.
fn split(line: &str) -> Option<(&str, &str)> {
    let (k, v) = match line.split_once(": ") {
        Some(kv) => kv,
        None => (line.strip_suffix(':')?, ""),
    };
    let token = !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.()/@".contains(c));
    token.then_some((k, v))
}

fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The banner line `Asterisk Call Manager/X.Y.Z`: the major AMI version
/// (2 and above is Asterisk 12+).
pub fn banner_version(line: &str) -> Option<u32> {
    let rest = line.trim().strip_prefix("Asterisk Call Manager")?;
    let v = rest.rsplit('/').next()?.trim();
    v.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(mode: Mode, max: usize, text: &[u8]) -> Vec<Item> {
        let mut p = Parser::new(mode, max);
        let mut out = Vec::new();
        p.push(text, &mut out);
        p.finish(&mut out);
        out
    }

    fn messages(items: &[Item]) -> Vec<&Message> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn splits_on_the_first_colon_space_and_keeps_repeats() {
        let text = b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: SIP/a: b\r\nChanVariable: A=1\r\nchanvariable: B=2\r\nEmpty:\r\n\r\n";
        let out = parse(Mode::Live, 1024, text);
        let m = messages(&out);
        assert_eq!(m.len(), 1, "{out:?}");
        assert_eq!(m[0].kind(), Kind::Event("Hangup"));
        assert_eq!(m[0].get("channel"), Some("SIP/a: b"));
        assert_eq!(m[0].all("ChanVariable").collect::<Vec<_>>(), ["A=1", "B=2"]);
        assert_eq!(m[0].get("EMPTY"), Some(""));
        assert_eq!(m[0].line, 1);
    }

    #[test]
    fn bare_lf_and_split_input_parse_alike() {
        let crlf = b"Response: Success\r\nActionID: 1\r\n\r\nEvent: X\r\nA: 1\r\n\r\n".to_vec();
        let lf = b"Response: Success\nActionID: 1\n\nEvent: X\nA: 1\n\n".to_vec();
        let whole = parse(Mode::Live, 1024, &crlf);
        assert_eq!(messages(&whole).len(), 2);
        assert_eq!(messages(&whole)[0].kind(), Kind::Response("Success"));
        let mut p = Parser::new(Mode::Live, 1024);
        let mut out = Vec::new();
        for b in &crlf {
            p.push(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, whole);
        let lf_items = parse(Mode::Live, 1024, &lf);
        assert_eq!(messages(&lf_items), messages(&whole));
    }

    #[test]
    fn a_malformed_or_oversized_message_is_skipped_and_the_next_parsed() {
        let mut text = b"Event: A\r\nthis is not a header\r\n\r\n".to_vec();
        text.extend_from_slice(b"Event: B\r\nBig: ");
        text.extend(std::iter::repeat_n(b'x', 5000));
        text.extend_from_slice(b"\r\n\r\nEvent: C\r\n\r\n");
        let out = parse(Mode::Live, 300, &text);
        assert!(
            matches!(
                &out[0],
                Item::Skipped {
                    reason: Skip::Malformed,
                    line: 1,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(
            matches!(
                &out[1],
                Item::Skipped {
                    reason: Skip::Oversized,
                    line: 4,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(messages(&out).len(), 1);
        assert!(messages(&out)[0].is_event("c"));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn many_small_lines_over_the_limit_are_one_oversized_skip() {
        let mut text = b"Event: A\r\n".to_vec();
        for i in 0..100 {
            text.extend_from_slice(format!("K{i}: v\r\n").as_bytes());
        }
        text.extend_from_slice(b"\r\nEvent: B\r\n\r\n");
        let out = parse(Mode::Live, 256, &text);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(
            &out[0],
            Item::Skipped {
                reason: Skip::Oversized,
                ..
            }
        ));
    }

    #[test]
    fn a_capture_skips_console_lines_alone() {
        let text = "Connected to Asterisk 13.18.3 currently running on pbx (pid = 1)\n\
            [Dec 26 13:43:47] VERBOSE[1234] pbx.c: Executing Queue\n\
            Event: QueueCallerJoin\nQueue: q\n    -- Executing [600@default:1]\nUniqueid: 1.2\n\n";
        let out = parse(Mode::Capture, 1024, text.as_bytes());
        let skips: Vec<usize> = out
            .iter()
            .filter_map(|i| match i {
                Item::Skipped {
                    line,
                    reason: Skip::NotProtocol,
                    ..
                } => Some(*line),
                _ => None,
            })
            .collect();
        assert_eq!(skips, [1, 2, 5]);
        let m = messages(&out);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].get("Uniqueid"), Some("1.2"));
        assert_eq!(m[0].line, 3);
    }

    #[test]
    fn command_output_is_not_malformed() {
        let text =
            b"Response: Follows\r\nPrivilege: Command\r\nName   Channel\r\n--END COMMAND--\r\n\r\n";
        let out = parse(Mode::Live, 1024, text);
        assert_eq!(messages(&out).len(), 1, "{out:?}");
    }

    #[test]
    fn banners() {
        assert_eq!(banner_version("Asterisk Call Manager/1.3\r\n"), Some(1));
        assert_eq!(banner_version("Asterisk Call Manager/2.10.6"), Some(2));
        assert_eq!(banner_version("Asterisk Call Manager/13.0.0"), Some(13));
        assert_eq!(banner_version("SSH-2.0-OpenSSH"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cut in 0usize..2048,
            max in 1usize..512,
        ) {
            for mode in [Mode::Live, Mode::Capture] {
                let mut p = Parser::new(mode, max);
                let mut out = Vec::new();
                let cut = cut.min(bytes.len());
                p.push(&bytes[..cut], &mut out);
                p.push(&bytes[cut..], &mut out);
                p.finish(&mut out);
                for i in &out {
                    if let Item::Message(m) = i {
                        let size: usize = m.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
                        prop_assert!(size <= 3 * max + 4 * m.fields.len());
                    }
                }
            }
        }

        #[test]
        fn splitting_anywhere_gives_the_same_messages(
            fields in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,8}", "[ -~]{0,20}"), 1..6),
            n in 1usize..4,
            cut in 0usize..400,
        ) {
            let mut text = String::new();
            for _ in 0..n {
                for (k, v) in &fields {
                    text.push_str(&format!("{k}: {v}\r\n"));
                }
                text.push_str("\r\n");
            }
            let whole = parse(Mode::Live, 4096, text.as_bytes());
            let cut = cut.min(text.len());
            let mut p = Parser::new(Mode::Live, 4096);
            let mut out = Vec::new();
            p.push(&text.as_bytes()[..cut], &mut out);
            p.push(&text.as_bytes()[cut..], &mut out);
            p.finish(&mut out);
            prop_assert_eq!(&out, &whole);
            prop_assert_eq!(messages(&whole).len(), n);
        }
    }
}
