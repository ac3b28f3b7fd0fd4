//! Files into events, pure: a platform capture through its translator (the
//! files of one import read as one capture, line numbers mapped back to
//! each file), and the report of what was skipped and why.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Format;
use crate::event::Event;
use crate::sources::{self, metrics::Skip, Translate};

/// Where an event or a skipped message came from: a file (index into
/// [`Converted::files`]) and its 1-based line (0: not known).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: usize,
    pub line: usize,
}

/// One message or line that made no event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub at: Origin,
    /// A [`Skip`] reason, or the decoder's rejection reason for JSON lines.
    pub reason: &'static str,
    pub detail: String,
    /// True when it was meant as an event and could not be sent (a bad
    /// JSON line); false for what a capture normally holds besides events.
    pub unsendable: bool,
}

/// What the files made.
#[derive(Debug, Default)]
pub struct Converted {
    pub files: Vec<String>,
    pub events: Vec<Event>,
    /// Beside `events`, one per event (for platform captures the line is
    /// not known: 0).
    pub origins: Vec<Origin>,
    pub skipped: Vec<Skipped>,
}

/// How to make AMI timestamps appear, said wherever they are missing.
pub const TIMESTAMP_HINT: &str = "set `timestampevents = yes` in the [general] section of \
     manager.conf and run `manager reload`: a file has no receipt time, so an event without \
     `Timestamp:` cannot be placed in time";

/// Convert `files` (name, text) of a platform `format` as one capture.
/// `Format::Jsonl` is not a platform: see [`super::jsonl`].
pub fn platform(format: Format, files: &[(String, String)], t: &Translate) -> Converted {
    let (text, starts) = join(files);
    let raw = match format {
        Format::AsteriskAmi => sources::asterisk_ami::convert(&text, t),
        Format::AsteriskQueueLog => sources::asterisk_queue_log::convert(&text, t),
        Format::FreeswitchEsl => sources::freeswitch_esl::convert(&text, t),
        Format::Jsonl => sources::Converted::default(),
    };
    let n = raw.events.len();
    Converted {
        files: files.iter().map(|(name, _)| name.clone()).collect(),
        events: raw.events,
        origins: vec![Origin::default(); n],
        skipped: raw
            .skipped
            .into_iter()
            .map(|s| Skipped {
                at: locate(&starts, s.line),
                reason: s.reason.as_str(),
                detail: s.detail,
                unsendable: false,
            })
            .collect(),
    }
}

/// The files as one text, and where each begins: (first line, file index).
fn join(files: &[(String, String)]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::with_capacity(files.iter().map(|(_, b)| b.len() + 1).sum());
    let mut starts = Vec::with_capacity(files.len());
    let mut line = 1;
    for (i, (_, body)) in files.iter().enumerate() {
        starts.push((line, i));
        text.push_str(body);
        line += body.matches('\n').count();
        // A last line without its newline gets one, so the next file's
        // first line is a line of its own.
        if !body.is_empty() && !body.ends_with('\n') {
            text.push('\n');
            line += 1;
        }
    }
    (text, starts)
}

/// A line of the joined text back to its file and line there.
fn locate(starts: &[(usize, usize)], line: usize) -> Origin {
    let idx = starts.partition_point(|(start, _)| *start <= line);
    match idx.checked_sub(1).and_then(|i| starts.get(i)) {
        Some((start, file)) => Origin {
            file: *file,
            line: line - start + 1,
        },
        None => Origin { file: 0, line },
    }
}

impl Converted {
    /// How many lines were meant as events and could not be sent.
    pub fn unsendable(&self) -> usize {
        self.skipped.iter().filter(|s| s.unsendable).count()
    }

    /// `file:line`, or `file` alone when the line is not known.
    pub fn place(&self, at: Origin) -> String {
        let name = self.files.get(at.file).map_or("?", String::as_str);
        if at.line == 0 {
            name.to_string()
        } else {
            format!("{name}:{}", at.line)
        }
    }

    /// The summary for stderr: events made, skips counted per reason (with
    /// the fix for missing AMI timestamps), then the first `show` skipped
    /// one by one.
    pub fn report(&self, show: usize) -> String {
        let mut s = String::new();
        let files = match self.files.as_slice() {
            [one] => one.clone(),
            many => format!("{} files", many.len()),
        };
        let _ = writeln!(
            s,
            "{files}: {} events, {} skipped",
            self.events.len(),
            self.skipped.len()
        );
        let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
        for k in &self.skipped {
            *by_reason.entry(k.reason).or_default() += 1;
        }
        for (reason, n) in &by_reason {
            let _ = writeln!(s, "  skipped {reason}: {n}");
        }
        if by_reason.contains_key(Skip::NoTimestamp.as_str()) {
            let _ = writeln!(s, "  (no_timestamp: {TIMESTAMP_HINT})");
        }
        for k in self.skipped.iter().take(show) {
            let _ = writeln!(s, "  {}: {}: {}", self.place(k.at), k.reason, k.detail);
        }
        if self.skipped.len() > show && show > 0 {
            let _ = writeln!(s, "  ... and {} more", self.skipped.len() - show);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(at: Origin, reason: Skip) -> Skipped {
        Skipped {
            at,
            reason: reason.as_str(),
            detail: "why".into(),
            unsendable: false,
        }
    }

    #[test]
    fn the_report_counts_per_reason_and_lists_the_first() {
        let c = Converted {
            files: vec!["cap.txt".into()],
            skipped: vec![
                skipped(Origin { file: 0, line: 3 }, Skip::NotProtocol),
                skipped(Origin { file: 0, line: 9 }, Skip::NoTimestamp),
                skipped(Origin { file: 0, line: 20 }, Skip::NotProtocol),
            ],
            ..Converted::default()
        };
        let r = c.report(2);
        assert!(r.starts_with("cap.txt: 0 events, 3 skipped\n"), "{r}");
        assert!(r.contains("  skipped not_protocol: 2\n"), "{r}");
        assert!(r.contains("  skipped no_timestamp: 1\n"), "{r}");
        assert!(r.contains("timestampevents = yes"), "{r}");
        assert!(r.contains("  cap.txt:3: not_protocol: why\n"), "{r}");
        assert!(r.contains("  cap.txt:9: no_timestamp: why\n"), "{r}");
        assert!(!r.contains("cap.txt:20"), "{r}");
        assert!(r.contains("... and 1 more"), "{r}");
    }

    #[test]
    fn lines_of_joined_files_map_back_to_each_file() {
        let files = vec![
            ("a".to_string(), "1\n2\n".to_string()),
            ("b".to_string(), "1\n2".to_string()),
            ("empty".to_string(), String::new()),
            ("c".to_string(), "1\n".to_string()),
        ];
        let (text, starts) = join(&files);
        assert_eq!(text, "1\n2\n1\n2\n1\n");
        let at = |line| {
            let o = locate(&starts, line);
            (o.file, o.line)
        };
        assert_eq!(at(1), (0, 1));
        assert_eq!(at(2), (0, 2));
        assert_eq!(at(3), (1, 1));
        assert_eq!(at(4), (1, 2));
        assert_eq!(at(5), (3, 1));
        assert_eq!(at(0), (0, 0));
    }

    #[test]
    fn no_hint_without_missing_timestamps() {
        let c = Converted {
            files: vec!["a".into(), "b".into()],
            skipped: vec![skipped(Origin { file: 1, line: 1 }, Skip::Ignored)],
            ..Converted::default()
        };
        let r = c.report(10);
        assert!(r.starts_with("2 files: 0 events, 1 skipped"), "{r}");
        assert!(r.contains("  b:1: ignored: why"), "{r}");
        assert!(!r.contains("timestampevents"), "{r}");
    }
}
