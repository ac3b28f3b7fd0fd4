//! Asterisk queue_log (`kind = "asterisk_queue_log"`): the transport (a
//! `tail -F` of the file, its read position kept in the data directory,
//! [`follow`]) around the pure line parser ([`line`]) and translator
//! ([`translate`]); [`convert`] runs the same parser and translator over a
//! whole file for `ringwatch convert` and `import`.

pub mod follow;
pub mod line;
pub mod translate;

use std::path::PathBuf;

use super::{Common, Context, Converted, Skipped, Translate};
use crate::event::Event;
use translate::{Rejected, State, Translator};

/// Where a newly configured file is first read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Only lines appended from now on (the default).
    #[default]
    End,
    /// The whole file as it is, then what is appended.
    Beginning,
}

/// One `[sources.NAME]` with `kind = "asterisk_queue_log"`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub common: Common,
    pub path: PathBuf,
    pub start: Start,
}

/// Follow the file until `ctx.cancel`.
pub async fn run(s: Settings, ctx: Context) {
    follow::run(s, ctx).await
}

/// `convert` and `import` take lines up to the follower's default
/// `max_message_bytes`, so a file gives the same events either way.
pub const CONVERT_MAX_LINE_BYTES: usize = 64 * 1024;

/// One line's bytes (no `\n`) through the size limit, the parser and the
/// translator: what the follower and [`convert`] both do with a line.
pub fn one_line(bytes: &[u8], max: usize, t: &mut Translator) -> Result<Event, Rejected> {
    if bytes.len() > max {
        return Err(Rejected {
            reason: super::metrics::Skip::Oversized,
            detail: format!(
                "a line of {} bytes (max_message_bytes = {max})",
                bytes.len()
            ),
        });
    }
    match line::parse(bytes) {
        Ok(l) => t.line(&l),
        Err(e) => Err(Rejected {
            reason: super::metrics::Skip::Malformed,
            detail: e.as_str().to_string(),
        }),
    }
}

/// A queue_log file into events.
pub fn convert(text: &str, t: &Translate) -> Converted {
    let mut tr = Translator::new(t.clone(), State::default());
    let mut out = Converted::default();
    for (i, l) in text.lines().enumerate() {
        match one_line(l.as_bytes(), CONVERT_MAX_LINE_BYTES, &mut tr) {
            Ok(ev) => out.events.push(ev),
            Err(r) => out.skipped.push(Skipped {
                line: i + 1,
                reason: r.reason,
                detail: r.detail,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::metrics::Skip;

    #[test]
    fn convert_numbers_the_lines_it_skips() {
        let text = "1700000000|NONE|NONE|NONE|QUEUESTART|\n\
                    1700000001|1700000001.1|sales|NONE|ENTERQUEUE||555|1\n\
                    garbage\n\
                    1700000019|1700000001.1|sales|PJSIP/2001|CONNECT|18|1700000019.2|3\n\
                    \n\
                    1700000079|1700000001.1|sales|PJSIP/2001|COMPLETECALLER|18|60|1\n";
        let c = convert(text, &Translate::default());
        assert_eq!(c.events.len(), 3);
        let skipped: Vec<(usize, Skip)> = c.skipped.iter().map(|s| (s.line, s.reason)).collect();
        assert_eq!(
            skipped,
            [
                (1, Skip::Ignored),
                (3, Skip::Malformed),
                (5, Skip::Malformed)
            ]
        );
        let long = format!("1|c|q|a|ENTERQUEUE|{}", "x".repeat(CONVERT_MAX_LINE_BYTES));
        let c = convert(&long, &Translate::default());
        assert_eq!(c.skipped[0].reason, Skip::Oversized);
    }
}
