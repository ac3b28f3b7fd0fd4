//! benches/support/bare_event.rs: the fields the bare server parses from an
//! event, shared by `examples/bare_server.rs` and the `hot_path` bench so
//! the bench's "bare parse" is exactly the server's.

use serde::Deserialize;

/// The fields every event has or may have, borrowed from the frame; unknown
/// fields are skipped, as ringwatch's decoder skips them.
#[derive(Deserialize)]
#[allow(dead_code)] // Parsed to be paid for, never read.
pub struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    ts: Option<i64>,
    #[serde(borrow)]
    event_id: Option<&'a str>,
    #[serde(borrow)]
    call_id: Option<&'a str>,
    #[serde(borrow)]
    queue: Option<&'a str>,
    #[serde(borrow)]
    agent: Option<&'a str>,
}
