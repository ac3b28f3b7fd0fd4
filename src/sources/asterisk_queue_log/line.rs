//! One queue_log line, parsed: `epoch|callid|queue|agent|VERB|data...` as
//! Asterisk's file backend writes it (`main/logger.c`, `ast_queue_log`).
//! Pure and total: any bytes give a [`Line`] or a [`LineError`], never a
//! panic (the `queue_log_line` fuzz target holds it to that).

use crate::event::Millis;

/// 9999-12-31T23:59:59Z: the contract's last whole second. A larger epoch
/// is a time in milli- or microseconds written by some other tool.
pub const MAX_EPOCH: i64 = 253_402_300_799;

/// The five fixed fields and the verb's data of one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// `epoch` seconds as milliseconds (whole seconds from Asterisk; a
    /// fraction, which some tools write, is kept to the millisecond).
    pub ts: Millis,
    pub callid: &'a str,
    pub queue: &'a str,
    pub agent: &'a str,
    pub verb: &'a str,
    /// Everything after the verb's `|` (empty when there is none).
    pub data: &'a str,
}

impl<'a> Line<'a> {
    /// The `|`-separated data fields (one empty field for no data).
    pub fn fields(&self) -> impl Iterator<Item = &'a str> {
        self.data.split('|')
    }

    /// The n-th data field (from 0), if present.
    pub fn field(&self, n: usize) -> Option<&'a str> {
        self.fields().nth(n)
    }
}

/// Why a line is not a queue_log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    NotUtf8,
    Empty,
    /// Fewer than the five fixed fields.
    TooFewFields,
    /// The first field is not a time in epoch seconds.
    BadTime,
    /// A time past the year 9999 (milli- or microseconds by mistake).
    TimeOutOfRange,
    EmptyCallid,
    EmptyVerb,
}

impl LineError {
    pub fn as_str(self) -> &'static str {
        match self {
            LineError::NotUtf8 => "the line is not UTF-8",
            LineError::Empty => "empty line",
            LineError::TooFewFields => {
                "fewer than 5 |-separated fields (epoch|callid|queue|agent|verb)"
            }
            LineError::BadTime => "the first field is not a time in epoch seconds",
            LineError::TimeOutOfRange => {
                "the time is past the year 9999 (milliseconds or microseconds instead of seconds?)"
            }
            LineError::EmptyCallid => "the callid field is empty",
            LineError::EmptyVerb => "the verb field is empty",
        }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parse one line's bytes (without its `\n`; a final `\r` is dropped).
pub fn parse(bytes: &[u8]) -> Result<Line<'_>, LineError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LineError::NotUtf8)?;
    parse_str(text)
}

/// [`parse`] on text.
pub fn parse_str(text: &str) -> Result<Line<'_>, LineError> {
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(LineError::Empty);
    }
    let mut it = text.splitn(6, '|');
    let (Some(epoch), Some(callid), Some(queue), Some(agent), Some(verb)) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(LineError::TooFewFields);
    };
    let data = it.next().unwrap_or("");
    let ts = epoch_ms(epoch.trim())?;
    let callid = callid.trim();
    if callid.is_empty() {
        return Err(LineError::EmptyCallid);
    }
    let verb = verb.trim();
    if verb.is_empty() {
        return Err(LineError::EmptyVerb);
    }
    Ok(Line {
        ts,
        callid,
        queue: queue.trim(),
        agent: agent.trim(),
        verb,
        data,
    })
}

/// `1514295827` or `1514295827.25` as milliseconds (digits below the
/// millisecond floored).
pub fn epoch_ms(s: &str) -> Result<Millis, LineError> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if whole.is_empty() || whole.len() > 18 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::BadTime);
    }
    let secs: i64 = whole.parse().map_err(|_| LineError::BadTime)?;
    let mut ms: i64 = 0;
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LineError::BadTime);
        }
        let digits = f.as_bytes();
        for k in 0..3 {
            ms = ms * 10 + digits.get(k).map_or(0, |b| i64::from(b - b'0'));
        }
    }
    if secs > MAX_EPOCH {
        return Err(LineError::TimeOutOfRange);
    }
    Ok(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stock_lines_parse() {
        let l = parse(b"1366720340|1366720340.303267|MYQUEUE|SIP/8007|RINGNOANSWER|1000").unwrap();
        assert_eq!(l.ts, 1_366_720_340_000);
        assert_eq!(
            (l.callid, l.queue, l.agent, l.verb, l.data),
            (
                "1366720340.303267",
                "MYQUEUE",
                "SIP/8007",
                "RINGNOANSWER",
                "1000"
            )
        );
        let l =
            parse(b"1717397243|1717397243.239826|1501|NONE|ENTERQUEUE||0123456789|1\r").unwrap();
        assert_eq!(l.fields().collect::<Vec<_>>(), ["", "0123456789", "1"]);
        assert_eq!(l.field(1), Some("0123456789"));
        assert_eq!(l.field(3), None);
        // QUEUESTART's trailing | gives one empty data field; none at all is
        // also fine.
        let l = parse(b"1366720340|NONE|NONE|NONE|QUEUESTART|").unwrap();
        assert_eq!((l.verb, l.data), ("QUEUESTART", ""));
        let l = parse(b"1366720340|NONE|NONE|NONE|QUEUESTART").unwrap();
        assert_eq!((l.verb, l.data), ("QUEUESTART", ""));
        assert_eq!(parse(b"1.5|c|q|a|V").unwrap().ts, 1_500);
        assert_eq!(parse(b"1.0009|c|q|a|V").unwrap().ts, 1_000);
    }

    #[test]
    fn broken_lines_say_why() {
        let cases: [(&[u8], LineError); 11] = [
            (b"", LineError::Empty),
            (b"  \r", LineError::Empty),
            (b"\xff\xfe|c|q|a|V", LineError::NotUtf8),
            (b"1366720340|c|q|a", LineError::TooFewFields),
            (b"Apr 23 12:00|c|q|a|V", LineError::BadTime),
            (b"-1|c|q|a|V", LineError::BadTime),
            (b"1.|c|q|a|V", LineError::BadTime),
            (b"1.x|c|q|a|V", LineError::BadTime),
            (b"13667203400000000000000|c|q|a|V", LineError::BadTime),
            (b"1|  |q|a|V", LineError::EmptyCallid),
            (b"1|c|q|a| ", LineError::EmptyVerb),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(
            parse(b"253402300800|c|q|a|V"),
            Err(LineError::TimeOutOfRange)
        );
        assert_eq!(
            parse(b"1366720340000|c|q|a|V"),
            Err(LineError::TimeOutOfRange)
        );
        assert!(parse(b"253402300799|c|q|a|V").is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_pipes_never_panic(s in "[0-9|.a-zA-Z \r]{0,80}") {
            if let Ok(l) = parse_str(&s) {
                prop_assert!(l.ts >= 0 && l.ts <= MAX_EPOCH * 1000 + 999);
                prop_assert!(!l.callid.is_empty() && !l.verb.is_empty());
            }
        }

        #[test]
        fn well_formed_lines_round_trip(
            epoch in 0i64..=MAX_EPOCH,
            callid in "[0-9]{1,10}\\.[0-9]{1,6}",
            queue in "[a-z0-9]{1,20}",
            agent in "(NONE|PJSIP/[0-9]{3,4})",
            verb in "[A-Z]{3,16}",
            data in "[a-z0-9|]{0,30}",
        ) {
            let text = format!("{epoch}|{callid}|{queue}|{agent}|{verb}|{data}");
            let l = parse_str(&text).unwrap();
            prop_assert_eq!(l.ts, epoch * 1000);
            prop_assert_eq!((l.callid, l.queue, l.agent, l.verb, l.data),
                (callid.as_str(), queue.as_str(), agent.as_str(), verb.as_str(), data.as_str()));
        }
    }
}
