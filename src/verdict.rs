//! What the pipeline answers for a frame: how many events were accepted or
//! duplicates, and why each refused one was refused. Ingest turns it into the
//! acknowledgement; it lives apart from both so neither imports the other.

use crate::event::{Id, Reason};

/// One event that was not applied, as the acknowledgement reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub index: u32,
    pub event_id: Option<Id>,
    pub reason: Reason,
    pub detail: String,
}

/// The engine's answer for one frame's decoded events.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub accepted: u32,
    pub duplicates: u32,
    pub rejected: Vec<Rejection>,
}
