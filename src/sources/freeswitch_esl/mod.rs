//! FreeSWITCH mod_callcenter over the event socket (`kind =
//! "freeswitch_esl"`): the transport (inbound ESL, auth, subscription,
//! `Content-Length` framing, reconnect) around the pure translator.

pub mod frame;
pub mod translate;

use super::{Address, Common, Context, Converted, Translate};
use crate::ingest::client::Secret;

/// One `[sources.NAME]` with `kind = "freeswitch_esl"`, its files read.
#[derive(Clone)]
pub struct Settings {
    pub common: Common,
    /// `address`: host:port, port 8021 by default.
    pub address: Address,
    /// From `password_file` or `RINGWATCH__SOURCES__NAME__PASSWORD`; never logged.
    pub password: Secret,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("common", &self.common)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Connect, authenticate, subscribe, follow, reconnect, until `ctx.cancel`.
pub async fn run(s: Settings, ctx: Context) {
    let _ = (s, ctx);
    super::asterisk_ami::unimplemented_source("freeswitch_esl").await
}

/// An ESL capture (plain or JSON event bodies with their framing) into events.
pub fn convert(text: &str, t: &Translate) -> Converted {
    let _ = (text, t);
    Converted::default()
}
