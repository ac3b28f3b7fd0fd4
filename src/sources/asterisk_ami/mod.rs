//! Asterisk AMI (`kind = "asterisk_ami"`): the transport (TCP or TLS to the
//! Manager Interface, login, framing, reconnect with `QueueStatus`
//! reconciliation, in [`transport`]) around the pure framing parser
//! ([`frame`]) and translator ([`translate`]); [`convert`] runs the same two
//! over a capture file.

pub mod frame;
pub mod md5;
pub mod translate;
mod transport;

use std::sync::Arc;

use super::{Address, Common, Context, Converted, Skipped, Translate};
use crate::ingest::client::Secret;
use frame::{Item, Mode, Parser};
use translate::{Output, State, Translator};

/// One `[sources.NAME]` with `kind = "asterisk_ami"`, its files read.
#[derive(Clone)]
pub struct Settings {
    pub common: Common,
    /// `address`: host:port, port 5038 by default.
    pub address: Address,
    pub username: String,
    /// From `secret_file` or `RINGWATCH__SOURCES__NAME__SECRET`; never logged.
    pub secret: Secret,
    /// `tls = true`: AMI over TLS (Mozilla roots plus `ca_file`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("common", &self.common)
            .field("address", &self.address)
            .field("username", &self.username)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Connect, log in, follow, reconnect, until `ctx.cancel`.
pub async fn run(s: Settings, ctx: Context) {
    transport::run(s, ctx).await
}

/// The largest message a capture keeps (the most `max_message_bytes`
/// allows): a file is not a peer to protect against.
const CAPTURE_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A capture (AMI text, possibly with console lines around it) into events.
/// A capture has no receipt time: an event without `Timestamp:` is skipped
/// (`no_timestamp`).
pub fn convert(text: &str, t: &Translate) -> Converted {
    let mut parser = Parser::new(Mode::Capture, CAPTURE_MAX_MESSAGE);
    let mut items = Vec::new();
    parser.push(text.as_bytes(), &mut items);
    parser.finish(&mut items);
    let mut tr = Translator::new(t.clone(), State::default());
    let mut out = Output::default();
    for item in items {
        match item {
            Item::Message(m) => tr.message(&m, None, &mut out),
            Item::Skipped {
                line,
                reason,
                detail,
            } => out.skipped.push(Skipped {
                line,
                reason,
                detail,
            }),
        }
    }
    tr.finish(&mut out);
    out.skipped.sort_by_key(|s| s.line);
    Converted {
        events: out.events,
        skipped: out.skipped,
    }
}
