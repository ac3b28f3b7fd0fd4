//! Deterministic call, promise and event ids for platform sources, built
//! from the platform's own identity, so the same platform event read twice
//! (a reconnect, a restart, a queue_log back-fill after an AMI outage, an
//! import run twice) is one event to the pipeline's de-duplication.
//!
//! AMI and queue_log build the same ids for the same call: both name it by
//! the caller channel's Uniqueid and the number of the queue visit (the
//! n-th `QueueCallerJoin` / `ENTERQUEUE` of that Uniqueid), and name its
//! offered, answered and ended events by that call id and the step.

use std::fmt::Write;
use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use crate::event::Id;

/// The contract's limit on `call_id`, `promise_id` and `event_id`.
pub const MAX: usize = 128;

/// Which platform family names the call (the first part of every id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Asterisk: AMI and queue_log share it.
    Asterisk,
    FreeSwitch,
}

impl Family {
    fn prefix(self) -> &'static str {
        match self {
            Family::Asterisk => "ast",
            Family::FreeSwitch => "fs",
        }
    }
}

/// One step of a call, the last part of its event ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Offered,
    Answered,
    /// The n-th hold of the call (from 1).
    HoldStarted(u32),
    HoldEnded(u32),
    Ended,
}

/// One step of a promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromiseStep {
    Promised,
    Completed,
    Cancelled,
}

/// `ast:{uniqueid}:{visit}`, or `ast:{site}:{uniqueid}:{visit}` when the
/// source has a `site` (two PBXs whose Uniqueids could collide are told
/// apart by it). `visit` counts from 1.
pub fn call(family: Family, site: Option<&str>, platform_id: &str, visit: u32) -> Id {
    let mut s = String::with_capacity(48);
    s.push_str(family.prefix());
    s.push(':');
    if let Some(site) = site {
        s.push_str(site);
        s.push(':');
    }
    s.push_str(platform_id);
    let _ = write!(s, ":{visit}");
    bounded(s)
}

/// A promise named by the platform (the dialplan's `Promise:` value).
pub fn promise(family: Family, site: Option<&str>, platform_id: &str) -> Id {
    let mut s = String::with_capacity(48);
    s.push_str(family.prefix());
    s.push_str(":cb:");
    if let Some(site) = site {
        s.push_str(site);
        s.push(':');
    }
    s.push_str(platform_id);
    bounded(s)
}

/// The event id of one step of a call.
pub fn call_event(call: &str, step: Step) -> Id {
    let mut s = String::with_capacity(call.len() + 12);
    s.push_str(call);
    let _ = match step {
        Step::Offered => write!(s, ":offered"),
        Step::Answered => write!(s, ":answered"),
        Step::HoldStarted(n) => write!(s, ":hold{n}"),
        Step::HoldEnded(n) => write!(s, ":unhold{n}"),
        Step::Ended => write!(s, ":ended"),
    };
    bounded(s)
}

/// The event id of one step of a promise.
pub fn promise_event(promise: &str, step: PromiseStep) -> Id {
    let suffix = match step {
        PromiseStep::Promised => ":promised",
        PromiseStep::Completed => ":completed",
        PromiseStep::Cancelled => ":cancelled",
    };
    bounded(format!("{promise}{suffix}"))
}

/// An id over the contract's 128 characters (an unusually long Uniqueid or
/// site) keeps its first 100 characters and a hash of the whole: still
/// deterministic, still distinct.
fn bounded(s: String) -> Id {
    if s.chars().count() <= MAX {
        return Id::from(s);
    }
    let mut h = SipHasher13::new_with_keys(0x7269_6e67_7761_7463, 0x6820_6964_7320_7631);
    h.write(s.as_bytes());
    let head: String = s.chars().take(100).collect();
    Id::from(format!("{head}~{:016x}", h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_built_from_meaning() {
        let c = call(Family::Asterisk, None, "1514295827.372", 1);
        assert_eq!(c, "ast:1514295827.372:1");
        assert_eq!(
            call_event(&c, Step::Offered),
            "ast:1514295827.372:1:offered"
        );
        assert_eq!(
            call_event(&c, Step::HoldEnded(2)),
            "ast:1514295827.372:1:unhold2"
        );
        let c = call(Family::FreeSwitch, Some("hq"), "0b7c-uuid", 2);
        assert_eq!(c, "fs:hq:0b7c-uuid:2");
        let p = promise(Family::Asterisk, Some("hq"), "42");
        assert_eq!(
            promise_event(&p, PromiseStep::Completed),
            "ast:cb:hq:42:completed"
        );
    }

    #[test]
    fn long_ids_stay_within_the_contract_and_distinct() {
        let long = "x".repeat(200);
        let a = call(Family::Asterisk, None, &long, 1);
        let b = call(Family::Asterisk, None, &long, 2);
        assert!(a.chars().count() <= MAX && b.chars().count() <= MAX);
        assert_ne!(a, b);
        assert_eq!(a, call(Family::Asterisk, None, &long, 1));
        let e = call_event(&a, Step::HoldStarted(7));
        assert!(e.chars().count() <= MAX);
    }
}
