//! Asterisk queue_log (`kind = "asterisk_queue_log"`): the transport (a
//! `tail -F` of the file, its read position kept in the data directory)
//! around the pure translator.

use std::path::PathBuf;

use super::{Common, Context, Converted, Translate};

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
    let _ = (s, ctx);
    super::asterisk_ami::unimplemented_source("asterisk_queue_log").await
}

/// A queue_log file into events.
pub fn convert(text: &str, t: &Translate) -> Converted {
    let _ = (text, t);
    Converted::default()
}
