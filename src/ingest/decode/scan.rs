//! The first decoding path: a frame in the plain subset of JSON that
//! platforms send (flat objects whose values are strings without escapes,
//! non-negative integers, `null`, `true` or `false`) read byte by byte into
//! the same [`Typed`] envelope serde fills, and validated by the same code.
//!
//! Why by hand: serde_json's visitor machinery (an `Option` and a field
//! identifier per value, a map access per element) cost twice the bare
//! parse of the same frame, and decoding was a third of ringwatch's CPU
//! under load. Nothing here decides what a frame means: on anything outside
//! the subset (an escape, a float, a nested value, a duplicate field, any
//! syntax error) the scan gives up and the caller starts over with serde,
//! whose answer, error details included, stays the contract. So the scan may
//! refuse more than JSON does, never less, and what it accepts decodes
//! exactly as serde would (`tests::scan_agrees_with_serde`).

use std::borrow::Cow;

use super::{validate_with_id, CowStr, Key, Split, Stamp, Typed};

/// Decode `text` into `out`; false (and `out` possibly part filled) when the
/// frame is not in the subset.
pub(super) fn frame(text: &str, out: &mut Split) -> bool {
    let mut s = Scan { text, at: 0 };
    s.ws();
    let whole = match s.peek() {
        Some(b'[') => s.array(out),
        Some(b'{') => s.object(out, 0),
        _ => None,
    };
    s.ws();
    whole.is_some() && s.at == text.len()
}

/// The frame and how far it has been read. `None` from any method means
/// "outside the subset": the scan stops there.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's whitespace (not Unicode's).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn array(&mut self, out: &mut Split) -> Option<()> {
        self.expect(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        let mut index = 0u32;
        loop {
            self.ws();
            if self.peek()? != b'{' {
                return None;
            }
            self.object(out, index)?;
            index = index.saturating_add(1);
            self.ws();
            match self.next()? {
                b',' => continue,
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// One element: its fields into a [`Typed`], then validated and pushed
    /// as serde's path does.
    fn object(&mut self, out: &mut Split, index: u32) -> Option<()> {
        self.expect(b'{')?;
        let mut t = Typed::default();
        let mut seen = 0u16;
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                self.ws();
                let key = key(self.string()?);
                self.ws();
                self.expect(b':')?;
                self.ws();
                if !matches!(key, Key::Other) {
                    // A field given twice: serde's path decides.
                    let bit = 1u16 << (key as u16);
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                }
                match key {
                    Key::Kind => t.kind = self.text()?,
                    Key::Ts => t.ts = self.stamp()?,
                    Key::EventId => t.event_id = self.text()?,
                    Key::CallId => t.call_id = self.text()?,
                    Key::Queue => t.queue = self.text()?,
                    Key::Agent => t.agent = self.text()?,
                    Key::Site => t.site = self.text()?,
                    Key::Caller => t.caller = self.text()?,
                    Key::Customer => t.customer = self.text()?,
                    Key::Reason => t.reason = self.text()?,
                    Key::PromiseId => t.promise_id = self.text()?,
                    Key::Due => t.due = self.stamp()?,
                    Key::Other => self.skip()?,
                }
                self.ws();
                match self.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        out.push(index, validate_with_id(&t));
        Some(())
    }

    /// A string without escapes or control characters, borrowed from the
    /// frame (the frame is UTF-8 and `"` is ASCII, so the slice is too).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let rest = &self.bytes()[start..];
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        self.text.get(start..start + len)
    }

    /// A text field: a string, or `null` for absent.
    fn text(&mut self) -> Option<Option<CowStr<'a>>> {
        match self.peek()? {
            b'"' => Some(Some(CowStr(Cow::Borrowed(self.string()?)))),
            b'n' => self.word("null").map(|()| None),
            _ => None,
        }
    }

    /// A timestamp field: a string, an integer, or `null` for absent.
    fn stamp(&mut self) -> Option<Option<Stamp<'a>>> {
        match self.peek()? {
            b'"' => Some(Some(Stamp::Text(Cow::Borrowed(self.string()?)))),
            b'0'..=b'9' => Some(Some(Stamp::Millis(self.integer()?))),
            b'n' => self.word("null").map(|()| None),
            _ => None,
        }
    }

    /// A field ringwatch does not read: skipped if it is a plain value.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'0'..=b'9' => self.integer().map(drop),
            b'n' => self.word("null"),
            b't' => self.word("true"),
            b'f' => self.word("false"),
            _ => None,
        }
    }

    /// A non-negative integer as JSON writes it (no leading zero) that fits
    /// a u64; a fraction or exponent after it ends the scan at the caller,
    /// which finds no `,` or `}` there.
    fn integer(&mut self) -> Option<u64> {
        if self.peek()? == b'0' {
            self.at += 1;
            return match self.peek() {
                Some(b'0'..=b'9') => None,
                _ => Some(0),
            };
        }
        let mut n = 0u64;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        Some(n)
    }

    fn word(&mut self, w: &str) -> Option<()> {
        let end = self.at + w.len();
        (self.bytes().get(self.at..end)? == w.as_bytes()).then(|| self.at = end)
    }
}

/// A field's name as serde's `Key` reads it.
pub(super) fn key(name: &str) -> Key {
    match name {
        "type" => Key::Kind,
        "ts" => Key::Ts,
        "event_id" => Key::EventId,
        "call_id" => Key::CallId,
        "queue" => Key::Queue,
        "agent" => Key::Agent,
        "site" => Key::Site,
        "caller" => Key::Caller,
        "customer" => Key::Customer,
        "reason" => Key::Reason,
        "promise_id" => Key::PromiseId,
        "due" => Key::Due,
        _ => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{by_serde, decode_split, Split};
    use super::*;
    use proptest::prelude::*;

    fn scanned(text: &str) -> Option<Split> {
        let mut out = Split::default();
        frame(text, &mut out).then_some(out)
    }

    fn same(a: &Split, b: &Split) -> bool {
        a.events == b.events && a.rejected == b.rejected
    }

    /// What platforms send is in the subset: the scan, not serde, decodes it.
    #[test]
    fn plain_frames_are_scanned() {
        for text in [
            r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q7","event_id":"e1"}"#,
            r#" [ {"type":"call.answered","ts":"2026-11-23T09:00:00.123Z","call_id":"c1","agent":"a9","x":true,"y":null,"z":0} ,
                 {"type":"clock","ts":1} ] "#,
            "[]",
            "[{}]",
            r#"{"type":"call.offered","ts":1,"call_id":"ünïcode","queue":"q"}"#,
        ] {
            let got = scanned(text).unwrap_or_else(|| panic!("not scanned: {text}"));
            assert!(same(&got, &by_serde(text, Split::default())), "{text}");
        }
    }

    /// Outside the subset the scan gives up (and decode_split still answers,
    /// by serde's path).
    #[test]
    fn anything_else_is_left_to_serde() {
        for text in [
            r#"{"type":"clock","ts":1,"call_id":"a\"b"}"#,
            r#"{"\u0074ype":"clock","ts":1}"#,
            r#"{"type":"clock","ts":1.5}"#,
            r#"{"type":"clock","ts":1e3}"#,
            r#"{"type":"clock","ts":-1}"#,
            r#"{"type":"clock","ts":01}"#,
            r#"{"type":"clock","ts":18446744073709551616}"#,
            r#"{"type":"clock","ts":1,"x":{"a":1}}"#,
            r#"{"type":"clock","ts":1,"x":[1]}"#,
            r#"{"type":"clock","ts":1,"x":-2}"#,
            r#"{"type":"clock","type":"clock","ts":1}"#,
            "{\"type\":\"clock\",\"ts\":1,\"queue\":\"a\u{1}b\"}",
            r#"{"type":"clock","ts":1,}"#,
            r#"[{"type":"clock","ts":1},]"#,
            r#"[{"type":"clock","ts":1}] x"#,
            r#"[{"type":"clock","ts":1}"#,
            r#"{"type":"clock","ts":nul}"#,
            r#"{"type":true,"ts":1}"#,
            r#"[1]"#,
            r#""clock""#,
            "",
        ] {
            assert!(scanned(text).is_none(), "scanned: {text}");
            let _ = decode_split(text);
        }
    }

    /// Pieces of JSON, valid and not, that random frames are made of.
    fn token() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just(" "),
            Just("\n"),
            Just(r#""type""#),
            Just(r#""ts""#),
            Just(r#""due""#),
            Just(r#""event_id""#),
            Just(r#""call_id""#),
            Just(r#""queue""#),
            Just(r#""reason""#),
            Just(r#""promise_id""#),
            Just(r#""other""#),
            Just(r#""call.offered""#),
            Just(r#""callback.promised""#),
            Just(r#""2026-11-23T09:00:00Z""#),
            Just(r#""a\nb""#),
            Just(r#""""#),
            Just("\"\u{7}\""),
            Just("\"é\""),
            Just("1795424400000"),
            Just("0"),
            Just("007"),
            Just("-3"),
            Just("2.5"),
            Just("99999999999999999999"),
            Just("null"),
            Just("nul"),
            Just("true"),
            Just("false"),
        ]
    }

    /// A well-formed frame with random fields, values, order and spacing.
    fn element() -> impl Strategy<Value = String> {
        let field = (0usize..13, 0usize..20, any::<bool>()).prop_map(|(k, v, spaced)| {
            const KEYS: [&str; 13] = [
                "type",
                "ts",
                "event_id",
                "call_id",
                "queue",
                "agent",
                "site",
                "caller",
                "customer",
                "reason",
                "promise_id",
                "due",
                "extra",
            ];
            const VALUES: [&str; 20] = [
                r#""call.offered""#,
                r#""call.ended""#,
                r#""callback.promised""#,
                r#""clock""#,
                r#""c-1""#,
                r#""q""#,
                r#""abandoned""#,
                r#""2026-11-23T09:00:00.5+01:00""#,
                r#""yesterday""#,
                r#""""#,
                r#""ünï""#,
                "1795424400000",
                "0",
                "253402300800000",
                "null",
                "true",
                "7",
                r#""a\u0041""#,
                r#"{"n":1}"#,
                "-1",
            ];
            let sep = if spaced { " : " } else { ":" };
            format!(r#""{}"{sep}{}"#, KEYS[k], VALUES[v])
        });
        proptest::collection::vec(field, 0..8).prop_map(|f| format!("{{{}}}", f.join(",")))
    }

    proptest! {
        /// Whatever the scan accepts decodes exactly as serde's path does.
        #[test]
        fn scan_agrees_with_serde(elements in proptest::collection::vec(element(), 1..4), array in any::<bool>()) {
            let text = if array || elements.len() > 1 {
                format!("[{}]", elements.join(", "))
            } else {
                elements[0].clone()
            };
            let serde = by_serde(&text, Split::default());
            if let Some(got) = scanned(&text) {
                prop_assert!(same(&got, &serde), "{}", text);
            }
            let all = decode_split(&text);
            prop_assert!(same(&all, &serde), "{}", text);
        }

        /// Random runs of tokens (mostly not JSON): never a panic, never a
        /// different answer.
        #[test]
        fn tokens_never_disagree(tokens in proptest::collection::vec(token(), 0..24)) {
            let text = tokens.concat();
            let serde = by_serde(&text, Split::default());
            if let Some(got) = scanned(&text) {
                prop_assert!(same(&got, &serde), "{}", text);
            }
        }
    }
}
