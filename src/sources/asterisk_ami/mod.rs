//! Asterisk AMI (`kind = "asterisk_ami"`): the transport (TCP or TLS to the
//! Manager Interface, login, framing, reconnect with `QueueStatus`
//! reconciliation) around the pure translator.

use std::sync::Arc;

use super::{Address, Common, Context, Converted, Translate};
use crate::ingest::client::Secret;

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
    let _ = (s, ctx);
    unimplemented_source("asterisk_ami").await
}

/// A capture (AMI text, possibly with console lines around it) into events.
pub fn convert(text: &str, t: &Translate) -> Converted {
    let _ = (text, t);
    Converted::default()
}

pub(super) async fn unimplemented_source(kind: &str) {
    tracing::error!(kind, "this source kind is not built yet");
    std::future::pending::<()>().await
}
