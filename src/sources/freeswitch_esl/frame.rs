//! ESL framing, pure: the byte stream of the event socket cut into
//! messages (a header block ended by a blank line, then exactly
//! `Content-Length` bytes of body), and event bodies (`text/event-plain`
//! with URL-encoded values, `text/event-json`) read into [`Headers`].
//!
//! The [`Decoder`] decides only from the bytes, never from how they were
//! split into reads, so a stream cut at any byte boundary gives the same
//! items. Whatever it cannot use is reported as [`Item::Skipped`] and passed
//! over exactly (a body of `Content-Length` bytes, oversized or not, is
//! consumed whole), so the next message is still found.

use std::fmt;

/// A message's or an event's headers, in the order received. Names are
/// compared exactly, as FreeSWITCH writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One complete message of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Byte offset of its first header in the stream.
    pub at: u64,
    pub headers: Headers,
    /// The `Content-Length` bytes after the header block (empty without).
    pub body: Vec<u8>,
}

impl Frame {
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("Content-Type")
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why bytes of the stream made no frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSkip {
    /// A line that is not `Name: value` where a message should start (a
    /// console line in a capture).
    NotProtocol,
    /// A header block with a broken line or `Content-Length`.
    Malformed,
    /// A header block or body over `max_message_bytes`.
    Oversized,
}

/// What the decoder found next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Frame(Frame),
    Skipped {
        /// Byte offset where the skipped bytes start.
        at: u64,
        reason: FrameSkip,
        detail: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Looking for the next header block.
    Start,
    /// A header block was read; waiting for `need` bytes of body.
    Body {
        at: u64,
        headers: Headers,
        need: usize,
    },
    /// Passing over `left` bytes of an oversized body.
    Discard { left: usize },
    /// Passing over an oversized header block until its blank line:
    /// `nl` is 1 after a newline, 2 after a newline and a carriage return.
    DiscardHeaders { nl: u8 },
}

/// The incremental ESL message reader.
#[derive(Clone, Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// In `Start`, how far the blank-line search already looked.
    scanned: usize,
    max: usize,
    mode: Mode,
}

impl Decoder {
    /// `max` is the largest header block and the largest body accepted.
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            scanned: 0,
            max: max.max(1),
            mode: Mode::Start,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of an item.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Where an unfinished message starts, when the bytes so far end
    /// inside one (not counting blank padding or bytes being passed over).
    pub fn unfinished(&self) -> Option<u64> {
        match &self.mode {
            Mode::Body { at, .. } => Some(*at),
            Mode::Start if self.rest().iter().any(|b| !matches!(b, b'\n' | b'\r')) => {
                Some(self.offset())
            }
            _ => None,
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn rest(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        self.scanned = 0;
    }

    /// The next complete item, or `None` until more bytes come.
    pub fn next_item(&mut self) -> Option<Item> {
        loop {
            match std::mem::replace(&mut self.mode, Mode::Start) {
                Mode::Start => return self.start(),
                Mode::Body { at, headers, need } => {
                    if self.pending() < need {
                        self.mode = Mode::Body { at, headers, need };
                        return None;
                    }
                    let body = self.rest().get(..need).unwrap_or_default().to_vec();
                    self.consume(need);
                    return Some(Item::Frame(Frame { at, headers, body }));
                }
                Mode::Discard { left } => {
                    let n = left.min(self.pending());
                    self.consume(n);
                    if n < left {
                        self.mode = Mode::Discard { left: left - n };
                        return None;
                    }
                }
                Mode::DiscardHeaders { mut nl } => {
                    let rest = self.rest();
                    let mut end = None;
                    for (i, b) in rest.iter().enumerate() {
                        nl = match (*b, nl) {
                            (b'\n', 1 | 2) => {
                                end = Some(i + 1);
                                break;
                            }
                            (b'\n', _) => 1,
                            (b'\r', 1) => 2,
                            _ => 0,
                        };
                    }
                    match end {
                        Some(n) => self.consume(n),
                        None => {
                            let n = rest.len();
                            self.consume(n);
                            self.mode = Mode::DiscardHeaders { nl };
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn start(&mut self) -> Option<Item> {
        // Blank lines between messages are padding.
        loop {
            match self.rest() {
                [b'\n', ..] => self.consume(1),
                [b'\r', b'\n', ..] => self.consume(2),
                [b'\r'] | [] => return None,
                _ => break,
            }
        }
        let at = self.offset();
        let max = self.max;
        let rest = self.rest();
        let first_line = rest.iter().position(|b| *b == b'\n');
        // Decided on the first `max` bytes alone, so that the outcome does
        // not depend on whether the line's end has arrived yet.
        if first_line.map_or(rest.len() > max, |nl| nl > max) {
            self.mode = Mode::DiscardHeaders { nl: 0 };
            return Some(Item::Skipped {
                at,
                reason: FrameSkip::Oversized,
                detail: format!("a line of more than {max} bytes"),
            });
        }
        let nl = first_line?;
        let line = trim_cr(rest.get(..nl).unwrap_or_default());
        // A first line that is not a header is junk: skip that line alone,
        // so a message right after it is still found.
        if split_header(line).is_none() {
            let detail = excerpt(line);
            self.consume(nl + 1);
            return Some(Item::Skipped {
                at,
                reason: FrameSkip::NotProtocol,
                detail,
            });
        }
        let from = self.scanned.saturating_sub(self.pos + 2);
        let oversized = || Item::Skipped {
            at,
            reason: FrameSkip::Oversized,
            detail: format!("a header block over {max} bytes"),
        };
        let Some((block_len, total)) = block_end(rest, from) else {
            if rest.len() > max + 2 {
                // No blank line can end the block within the limit any
                // more: pass over the rest of it.
                let n = rest.len();
                let nl = match rest.get(n.saturating_sub(2)..) {
                    Some([b'\n', b'\r']) => 2,
                    Some([_, b'\n']) => 1,
                    _ => 0,
                };
                self.consume(n);
                self.mode = Mode::DiscardHeaders { nl };
                return Some(oversized());
            }
            self.scanned = self.buf.len();
            return None;
        };
        if block_len > max {
            self.consume(total);
            return Some(oversized());
        }
        let parsed = parse_lines(rest.get(..block_len).unwrap_or_default());
        self.consume(total);
        let headers = match parsed {
            Ok(h) => h,
            Err(line) => {
                return Some(Item::Skipped {
                    at,
                    reason: FrameSkip::Malformed,
                    detail: format!("not a header line: {line}"),
                })
            }
        };
        let need = match headers.get("Content-Length") {
            None => 0,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    return Some(Item::Skipped {
                        at,
                        reason: FrameSkip::Malformed,
                        detail: format!("Content-Length {}", excerpt(v.as_bytes())),
                    })
                }
            },
        };
        if need > max {
            self.mode = Mode::Discard { left: need };
            return Some(Item::Skipped {
                at,
                reason: FrameSkip::Oversized,
                detail: format!("a body of {need} bytes"),
            });
        }
        self.mode = Mode::Body { at, headers, need };
        self.next_item()
    }
}

/// Where the header block of `rest` ends: (length of the block without its
/// terminating blank line, length with it). Searches from `from`.
fn block_end(rest: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < rest.len() {
        if rest.get(i) == Some(&b'\n') {
            match (rest.get(i + 1), rest.get(i + 2)) {
                (Some(b'\n'), _) => return Some((i, i + 2)),
                (Some(b'\r'), Some(b'\n')) => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `Name: value` (the space after the colon optional); names are the
/// characters FreeSWITCH uses in header and variable names.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = line.get(..colon)?;
    if name.is_empty()
        || !name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return None;
    }
    let value = line.get(colon + 1..)?;
    Some((name, value.strip_prefix(b" ").unwrap_or(value)))
}

/// Header lines into headers (values as they are); the first line that is
/// not a header, as an excerpt, otherwise.
fn parse_lines(block: &[u8]) -> Result<Headers, String> {
    let mut out = Vec::new();
    for line in block.split(|b| *b == b'\n') {
        let line = trim_cr(line);
        let (k, v) = split_header(line).ok_or_else(|| excerpt(line))?;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Ok(Headers(out))
}

/// At most 80 characters of a line, for a skip's detail.
fn excerpt(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let mut e: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        e.push('…');
    }
    e
}

/// Why an event body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("a plain event line is not a header: {0}")]
    PlainLine(String),
    #[error("a JSON event body is not a JSON object: {0}")]
    Json(String),
}

/// The body of a `text/event-plain` message: `Name: value` lines with
/// URL-encoded values, up to a blank line (what follows it is the event's
/// own body, which the callcenter events do not use).
pub fn plain_event(body: &[u8]) -> Result<Headers, BodyError> {
    let end = block_end(body, 0).map_or(body.len(), |(n, _)| n);
    let block = body.get(..end).unwrap_or_default();
    let mut out = Vec::new();
    for line in block.split(|b| *b == b'\n') {
        let line = trim_cr(line);
        if line.is_empty() {
            continue;
        }
        let (k, v) = split_header(line).ok_or_else(|| BodyError::PlainLine(excerpt(line)))?;
        out.push((String::from_utf8_lossy(k).into_owned(), url_decode(v)));
    }
    Ok(Headers(out))
}

/// The body of a `text/event-json` message: one object; string values as
/// they are, numbers and booleans as their text, anything else left out.
pub fn json_event(body: &[u8]) -> Result<Headers, BodyError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
    let serde_json::Value::Object(map) = v else {
        return Err(BodyError::Json("not an object".into()));
    };
    let out = map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect();
    Ok(Headers(out))
}

/// `%XX` escapes decoded (FreeSWITCH encodes spaces as `%20`, never `+`);
/// a `%` not followed by two hex digits stays as it is.
pub fn url_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v.get(i).copied().unwrap_or_default();
        if b == b'%' {
            let hex = |j: usize| v.get(j).and_then(|c| (*c as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX`-encode what a plain body cannot carry raw (for captures and tests).
pub fn url_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'~') {
            out.push(b as char);
        } else {
            use std::fmt::Write;
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl fmt::Display for FrameSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameSkip::NotProtocol => "not_protocol",
            FrameSkip::Malformed => "malformed",
            FrameSkip::Oversized => "oversized",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(d: &mut Decoder) -> Vec<Item> {
        std::iter::from_fn(|| d.next_item()).collect()
    }

    fn decode(bytes: &[u8], max: usize) -> Vec<Item> {
        let mut d = Decoder::new(max);
        d.push(bytes);
        all(&mut d)
    }

    fn event(body: &str, ct: &str) -> String {
        format!(
            "Content-Length: {}\nContent-Type: {ct}\n\n{body}",
            body.len()
        )
    }

    #[test]
    fn the_handshake_and_an_event_are_framed() {
        let body =
            "Event-Name: CUSTOM\nCC-Queue: support%40default\nCC-Member-CID-Name: Ann%20Lee\n\n";
        let stream = format!(
            "Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n{}",
            event(body, "text/event-plain")
        );
        let items = decode(stream.as_bytes(), 1024);
        assert_eq!(items.len(), 3, "{items:?}");
        let Item::Frame(f) = &items[0] else { panic!() };
        assert_eq!(f.content_type(), Some("auth/request"));
        assert_eq!(f.at, 0);
        let Item::Frame(f) = &items[1] else { panic!() };
        assert_eq!(f.headers.get("Reply-Text"), Some("+OK accepted"));
        let Item::Frame(f) = &items[2] else { panic!() };
        assert_eq!(f.content_type(), Some("text/event-plain"));
        let ev = plain_event(&f.body).unwrap();
        assert_eq!(ev.get("CC-Queue"), Some("support@default"));
        assert_eq!(ev.get("CC-Member-CID-Name"), Some("Ann Lee"));
    }

    #[test]
    fn json_bodies_and_crlf_are_read() {
        let body = r#"{"Event-Name":"CUSTOM","Event-Sequence":42,"Nested":{"a":1},"CC-Queue":"q"}"#;
        let stream = event(body, "text/event-json").replace('\n', "\r\n");
        let stream = stream.replace(&body.replace('\n', "\r\n"), body);
        let items = decode(stream.as_bytes(), 1024);
        let [Item::Frame(f)] = items.as_slice() else {
            panic!("{items:?}")
        };
        let ev = json_event(&f.body).unwrap();
        assert_eq!(ev.get("Event-Sequence"), Some("42"));
        assert_eq!(ev.get("Nested"), None);
        assert!(json_event(b"[1]").is_err());
        assert!(json_event(b"{broken").is_err());
    }

    #[test]
    fn junk_lines_oversized_and_broken_messages_are_skipped_exactly() {
        let good = event("Event-Name: HEARTBEAT\n\n", "text/event-plain");
        let big = "x".repeat(300);
        let stream = format!(
            "freeswitch@host> show calls\n{}Content-Length: 300\nContent-Type: text/event-plain\n\n{big}{}Content-Length: ten\n\n{}",
            good, good, good
        );
        let items = decode(stream.as_bytes(), 100);
        let kinds: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Frame(_) => "frame".to_string(),
                Item::Skipped { reason, .. } => reason.to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "not_protocol",
                "frame",
                "oversized",
                "frame",
                "malformed",
                "frame"
            ]
        );
        // A header block that never ends within the limit.
        let stream = format!("A: {}\nB: c\n\n{good}", "y".repeat(200));
        let kinds: Vec<bool> = decode(stream.as_bytes(), 100)
            .iter()
            .map(|i| matches!(i, Item::Frame(_)))
            .collect();
        assert_eq!(kinds, [false, true]);
    }

    #[test]
    fn url_decoding_keeps_broken_escapes() {
        assert_eq!(url_decode(b"a%20b%3Ac%"), "a b:c%");
        assert_eq!(url_decode(b"%zz%4"), "%zz%4");
        assert_eq!(
            url_decode(url_encode("Ann Lee: 100% <x>").as_bytes()),
            "Ann Lee: 100% <x>"
        );
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"Content-Type: auth/request\n\n".to_vec()),
            Just(event("Event-Name: CUSTOM\nA: b%20c\n\n", "text/event-plain").into_bytes()),
            Just(event(r#"{"Event-Name":"CUSTOM"}"#, "text/event-json").into_bytes()),
            Just(b"Content-Length: 400\n\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"junk line\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), max in 1usize..200) {
            let items = decode(&bytes, max);
            let mut d = Decoder::new(max);
            d.push(&bytes);
            let _ = all(&mut d);
            prop_assert!(d.pending() <= bytes.len());
            for i in items {
                if let Item::Frame(f) = i {
                    let _ = plain_event(&f.body);
                    let _ = json_event(&f.body);
                }
            }
        }

        #[test]
        fn every_split_gives_the_same_items(bytes in stream_strategy(), max in prop_oneof![Just(64usize), Just(1000)]) {
            let whole = decode(&bytes, max);
            for cut in 0..=bytes.len() {
                let mut d = Decoder::new(max);
                d.push(&bytes[..cut]);
                let mut got = all(&mut d);
                d.push(&bytes[cut..]);
                got.extend(all(&mut d));
                prop_assert_eq!(&got, &whole, "cut at {}", cut);
            }
            // Byte by byte.
            let mut d = Decoder::new(max);
            let mut got = Vec::new();
            for b in &bytes {
                d.push(std::slice::from_ref(b));
                got.extend(all(&mut d));
            }
            prop_assert_eq!(&got, &whole);
        }
    }
}
